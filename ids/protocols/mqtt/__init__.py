"""MQTT: IBM MQIsdp 3.1, OASIS MQTT 3.1.1 and 5.0 (docs.oasis-open.org/mqtt/mqtt/v5.0/mqtt-v5.0.html):
everything otids knows about the protocol lives in this folder, declared once in `PROTOCOL`."""
from pathlib import Path

from ..spec import ProtocolSpec
from .anomalies import ANOMALIES
from .assets import mqtt_identity
from .config import MqttConfig
from .messages import MqttExchange
from .ml import mqtt_view
from .rules import RULES
from .session import MqttSession, probe

PROTOCOL = ProtocolSpec(
    name="mqtt", transport="tcp", ports=(1883,), probe=probe, session=MqttSession,
    roles={"client": "mqtt_client", "server": "mqtt_broker"}, category="ics",
    description="MQTT 3.1/3.1.1/5.0: control packets grouped into exchanges",
    records=(MqttExchange,), dataset="otids.mqtt", config=MqttConfig, anomalies=ANOMALIES,
    fields=str(Path(__file__).with_name("fields.yml")), identity=mqtt_identity, rules=RULES,
    extra={"baseline": ("ids.protocols.mqtt.baseline", "ids.protocols.mqtt.sparkplug.baseline",
                        "ids.protocols.mqtt.pubsub.baseline", "ids.protocols.mqtt.sparkplug.namespace"),
           "ml": mqtt_view})
MQTT = PROTOCOL  # the wave-1 name

__all__ = ["PROTOCOL", "MQTT", "MqttSession"]
