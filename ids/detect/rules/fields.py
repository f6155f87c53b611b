"""Which document fields a rule may name, per protocol, and their types: the rule validators reject a field
the protocol's documents never carry (a typo would otherwise be a rule that silently never fires).

Source of truth: the shared field definitions in ids/data/fields/*.yml (one file per group, written with
each protocol); the built-in table below covers the fields the shipped rules and the Suricata importer rely
on, including the documented MQTT and OPC UA contracts, so validation works before those files land.
Types are Elasticsearch types; `flattened`/`object` fields accept any sub-path.
"""
from __future__ import annotations

import functools
from pathlib import Path

import yaml

FIELDS_DIR = Path(__file__).resolve().parents[2] / "data" / "fields"

_COMMON = {
    "@timestamp": "date",
    "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword", "event.dataset": "keyword",
    "event.action": "keyword", "event.outcome": "keyword", "event.duration": "long",
    "source.ip": "ip", "source.port": "long", "source.mac": "keyword",
    "destination.ip": "ip", "destination.port": "long", "destination.mac": "keyword",
    "network.transport": "keyword", "network.community_id": "keyword", "network.type": "keyword",
    "network.protocol": "keyword", "network.vlan.id": "keyword", "network.inner.vlan.id": "keyword",
    "related.ip": "ip", "otids.anomalies": "keyword",
}

_MODBUS_PART = {
    "address": "long", "quantity": "long", "last_address": "long", "read_last_address": "long", "values": "value", "sub_function": "long",
    "sub_function_name": "keyword", "and_mask": "long", "or_mask": "long", "read_address": "long",
    "read_quantity": "long", "data_length": "long", "mei_type": "long", "read_device_id_code": "long",
    "read_device_id": "keyword", "object_id": "long", "conformity_level": "long", "more_follows": "boolean",
    "next_object_id": "long", "objects": "object", "objects.id": "long", "objects.name": "keyword",
    "objects.value": "keyword", "device_identification": "flattened", "server_id": "keyword",
    "server_id_text": "keyword", "run_indicator": "boolean", "status": "long", "event_count": "long",
    "message_count": "long", "events": "long", "file_records": "object",
    "file_records.reference_type": "long", "file_records.file_number": "long",
    "file_records.record_number": "long", "file_records.record_length": "long",
    "file_records.values": "long", "umas": "object", "umas.session": "long", "umas.function_code": "long",
    "umas.function": "keyword", "umas.data_length": "long",
}

_MODBUS = {
    "modbus": "object", "modbus.transaction_id": "long", "modbus.unit_id": "long",
    "modbus.function_code": "long", "modbus.function": "keyword", "modbus.exception_code": "long",
    "modbus.exception": "keyword", "modbus.request": "object", "modbus.response": "object",
    **{f"modbus.request.{k}": t for k, t in _MODBUS_PART.items()},
    **{f"modbus.response.{k}": t for k, t in _MODBUS_PART.items()},
}

# MQTT: the documented contract, mirroring Suricata's EVE mqtt record. Every message object carries its
# fixed-header flags (qos, retain, dup) as EVE does.
_MQTT_TYPES = ("connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp", "subscribe",
               "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth")
_MQTT = {"mqtt": "object", "mqtt.types": "keyword", "mqtt.protocol_version": "long"}
for _t in _MQTT_TYPES:
    _MQTT.update({f"mqtt.{_t}": "object", f"mqtt.{_t}.qos": "long", f"mqtt.{_t}.retain": "boolean",
                  f"mqtt.{_t}.dup": "boolean", f"mqtt.{_t}.properties": "flattened"})
_MQTT.update({
    "mqtt.connect.protocol_string": "keyword", "mqtt.connect.protocol_version": "long",
    "mqtt.connect.client_id": "keyword", "mqtt.connect.username": "keyword",
    "mqtt.connect.password": "keyword", "mqtt.connect.keepalive": "long",
    "mqtt.connect.flags": "object", "mqtt.connect.flags.username": "boolean",
    "mqtt.connect.flags.password": "boolean", "mqtt.connect.flags.will": "boolean",
    "mqtt.connect.flags.will_retain": "boolean", "mqtt.connect.flags.clean_session": "boolean",
    "mqtt.connect.will": "object", "mqtt.connect.will.topic": "keyword", "mqtt.connect.will.message": "keyword",
    "mqtt.connect.will.properties": "flattened",
    "mqtt.connack.session_present": "boolean", "mqtt.connack.return_code": "long",
    "mqtt.publish.topic": "keyword", "mqtt.publish.message_id": "long", "mqtt.publish.message": "keyword",
    "mqtt.puback.message_id": "long", "mqtt.puback.reason_code": "long",
    "mqtt.pubrec.message_id": "long", "mqtt.pubrec.reason_code": "long",
    "mqtt.pubrel.message_id": "long", "mqtt.pubrel.reason_code": "long",
    "mqtt.pubcomp.message_id": "long", "mqtt.pubcomp.reason_code": "long",
    "mqtt.subscribe.message_id": "long", "mqtt.subscribe.topics": "object",
    "mqtt.subscribe.topics.topic": "keyword", "mqtt.subscribe.topics.qos": "long",
    "mqtt.suback.message_id": "long", "mqtt.suback.qos_granted": "long", "mqtt.suback.reason_codes": "long",
    "mqtt.unsubscribe.message_id": "long", "mqtt.unsubscribe.topics": "keyword",
    "mqtt.unsuback.message_id": "long", "mqtt.unsuback.reason_codes": "long",
    "mqtt.disconnect.reason_code": "long", "mqtt.auth.reason_code": "long",
})

# OPC UA: ids/data/fields/opcua.yml is the authority; this subset only bridges a checkout without it.
_OPCUA = {
    "opcua": "object", "opcua.service": "keyword", "opcua.nodes": "keyword", "opcua.security_policy": "object",
    "opcua.security_policy.uri": "keyword", "opcua.security_policy.name": "keyword",
    "opcua.security_mode": "keyword", "opcua.user_token_type": "keyword", "opcua.status_code": "long",
    "opcua.status": "keyword", "opcua.message_type": "keyword", "opcua.endpoint_url": "keyword",
    "opcua.request_handle": "long",
}

BUILTIN = {"modbus": _MODBUS, "mqtt": _MQTT, "opcua": _OPCUA}

#: Fields that hold secrets: documents carry them only when built with include_secrets=True.
SECRET_FIELDS = frozenset(("mqtt.connect.password",))

#: Value domains for never-matches checks: (min, max) of integer fields.
DOMAINS = {
    "modbus.unit_id": (0, 255), "modbus.function_code": (0, 127), "modbus.exception_code": (0, 255),
    "modbus.request.address": (0, 65535), "modbus.response.address": (0, 65535),
    "modbus.request.quantity": (0, 65535), "modbus.response.quantity": (0, 65535),
    "modbus.request.last_address": (0, 65535), "modbus.request.read_last_address": (0, 65535),
    "modbus.request.sub_function": (0, 65535), "source.port": (0, 65535), "destination.port": (0, 65535),
    "mqtt.protocol_version": (0, 255), "mqtt.connack.return_code": (0, 255), "mqtt.publish.qos": (0, 2),
    "mqtt.subscribe.topics.qos": (0, 2),
}


@functools.lru_cache(maxsize=None)
def shared_fields() -> dict[str, str]:
    """Fields declared in ids/data/fields/*.yml (name -> type); empty if none are there yet."""
    out: dict[str, str] = {}
    if FIELDS_DIR.is_dir():
        for p in sorted(FIELDS_DIR.glob("*.yml")):
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                continue
            for f in data.get("fields") or ():
                if isinstance(f, dict) and isinstance(f.get("name"), str):
                    out[f["name"]] = str(f.get("type", "keyword"))
    return out


@functools.lru_cache(maxsize=None)
def catalog(protocol: str) -> dict[str, str]:
    cat = dict(_COMMON)
    prefix = protocol + "."
    shared = shared_fields()
    own = {n: t for n, t in shared.items() if n.startswith(prefix)}
    # The protocol's own fields file, once it exists, is the authority; the built-in table only bridges.
    cat.update(own if own else BUILTIN.get(protocol, {}))
    if own:
        for part in {n.rsplit(".", 1)[0] for n in own}:  # parents of declared fields are objects
            while part.startswith(prefix) and part not in cat:
                cat[part] = "object"
                part = part.rsplit(".", 1)[0]
        cat.setdefault(protocol, "object")
    for name, t in shared.items():
        if not any(name.startswith(p + ".") for p in BUILTIN):
            cat.setdefault(name, t)  # shared non-protocol fields (user.name, ...)
    return cat


def field_type(protocol: str, name: str) -> str | None:
    """The field's type, or None if the protocol's documents never carry it."""
    cat = catalog(protocol)
    t = cat.get(name)
    if t is not None:
        return t
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if cat.get(".".join(parts[:i])) in ("flattened",):
            return "keyword"
    return None
