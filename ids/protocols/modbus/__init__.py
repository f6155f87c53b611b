"""Modbus/TCP (Modbus Application Protocol v1.1b3, Modbus Messaging on TCP/IP Implementation Guide v1.0b)."""
from .session import MODBUS, ModbusSession

__all__ = ["MODBUS", "ModbusSession"]
