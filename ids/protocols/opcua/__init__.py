"""OPC UA Binary over TCP (OPC 10000-6 UA Secure Conversation and UA TCP; OPC 10000-4 services)."""
from .session import OPCUA, OpcuaSession

__all__ = ["OPCUA", "OpcuaSession"]
