"""MQTT rule keywords: rules are indexed by message type (`mqtt.types`, several per exchange), and any
condition on `mqtt.<type>.*` implies that type. Pure functions; ids/detect/rules asks them through the registry.
"""
from __future__ import annotations

from ..spec import MISSING, RuleTable

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


def _mqtt_publish_message(e):
    """The application message as the bytes on the wire (its first mqtt.string_log_limit bytes): the
    document's text form escapes non-UTF-8 bytes, which Suricata-style content matches must not see."""
    for m in e.messages:
        if m.doc_kind == "publish" and m.payload is not None and not m.truncated:
            return m.payload
    return MISSING


RULES = RuleTable(
    index_field="mqtt.types", multi_key=True, index_keys=index_keys, prefix_keys=prefix_keys,
    domains={"mqtt.protocol_version": (0, 255), "mqtt.connack.return_code": (0, 255), "mqtt.publish.qos": (0, 2),
             "mqtt.subscribe.topics.qos": (0, 2)},
    secret_fields=frozenset(("mqtt.connect.password",)), single_valued=frozenset(("mqtt.protocol_version",)),
    readers={"mqtt.publish.message": _mqtt_publish_message})
