"""OPC UA Binary over TCP (OPC 10000-6 UA Secure Conversation and UA TCP; OPC 10000-4 services): everything
otids knows about the protocol lives in this folder, declared once in `PROTOCOL`."""
from pathlib import Path

from ..spec import ProtocolSpec
from .anomalies import ANOMALIES
from .assets import opcua_identity
from .config import OpcuaConfig
from .messages import OpcuaEvent
from .ml import opcua_view
from .rules import RULES
from .session import OpcuaSession, probe

PROTOCOL = ProtocolSpec(
    name="opcua", transport="tcp", ports=(4840,), probe=probe, session=OpcuaSession,
    roles={"client": "opcua_client", "server": "opcua_server"}, category="ics",
    description="OPC UA Binary: secure channels, sessions and services, certificates and user tokens",
    records=(OpcuaEvent,), dataset="otids.opcua", config=OpcuaConfig, anomalies=ANOMALIES,
    fields=str(Path(__file__).with_name("fields.yml")), identity=opcua_identity, rules=RULES,
    extra={"baseline": "ids.protocols.opcua.baseline", "ml": opcua_view})
OPCUA = PROTOCOL  # the wave-1 name

__all__ = ["PROTOCOL", "OPCUA", "OpcuaSession"]
