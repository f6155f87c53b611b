"""MQTT rule keywords: rules are indexed by message type (`mqtt.types`, several per exchange), and any
condition on `mqtt.<type>.*` implies that type. Pure functions; ids/detect/rules asks them through the registry.
"""
from __future__ import annotations

from ..spec import RuleTable

#: Message types that are keys of the document's `mqtt` object (PINGREQ/PINGRESP included).
TYPES = ("connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp", "subscribe", "suback",
         "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth")


def prefix_keys(f: str):
    parts = f.split(".")
    if len(parts) >= 3 and parts[0] == "mqtt" and parts[1] in TYPES:
        return {parts[1]}
    return None


def index_keys(f: str, op: str, arg, values, nocase: bool):
    if f == "mqtt.types" and op in ("equals", "in", "contains") and not nocase:
        if values is not None and all(isinstance(v, str) for v in values):
            return set(values)
    if op != "exists" or arg is True:
        return prefix_keys(f)
    return None


RULES = RuleTable(
    index_field="mqtt.types", multi_key=True, index_keys=index_keys, prefix_keys=prefix_keys,
    domains={"mqtt.protocol_version": (0, 255), "mqtt.connack.return_code": (0, 255), "mqtt.publish.qos": (0, 2),
             "mqtt.subscribe.topics.qos": (0, 2)},
    secret_fields=frozenset(("mqtt.connect.password",)))
