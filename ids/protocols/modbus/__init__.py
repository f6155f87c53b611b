"""Modbus/TCP (Modbus Application Protocol v1.1b3, Modbus Messaging on TCP/IP Implementation Guide v1.0b):
everything otids knows about the protocol lives in this folder, declared once in `PROTOCOL`."""
from pathlib import Path

from ..spec import ProtocolSpec
from .anomalies import ANOMALIES
from .config import ModbusConfig
from .messages import ModbusTransaction
from .ml import modbus_view
from .rules import RULES
from .session import ModbusSession, probe

PROTOCOL = ProtocolSpec(
    name="modbus", transport="tcp", ports=(502,), probe=probe, session=ModbusSession,
    roles={"client": "modbus_master", "server": "modbus_slave"}, category="ics",
    description="Modbus/TCP: request/response pairs with function, unit, addresses and values",
    records=(ModbusTransaction,), dataset="otids.modbus", config=ModbusConfig, anomalies=ANOMALIES,
    fields=str(Path(__file__).with_name("fields.yml")), rules=RULES,
    extra={"baseline": "ids.protocols.modbus.baseline", "ml": modbus_view,
           "without": {"identity": "FC 43/14 and FC 17 facts are kept per unit id: ids.assets.Inventory reads "
                                   "them with assets.modbus_identity"}})
MODBUS = PROTOCOL  # the wave-1 name

__all__ = ["PROTOCOL", "MODBUS", "ModbusSession"]
