"""MQTT: IBM MQIsdp 3.1, OASIS MQTT 3.1.1 and 5.0 (docs.oasis-open.org/mqtt/mqtt/v5.0/mqtt-v5.0.html)."""
from .session import MQTT, MqttSession

__all__ = ["MQTT", "MqttSession"]
