"""Typed fast paths: document fields read straight from event records, so the common rule fields
(function code, unit, addresses, exception) cost no ECS document. Each entry returns exactly what the
document holds at that path (MISSING where the document has no such field); a test checks the two agree
on every event of the Modbus captures.
"""
from __future__ import annotations

from ...protocols.modbus.ecs import last_address
from ...protocols.modbus.messages import ModbusTransaction
from ...protocols.mqtt.messages import MqttExchange, MqttPublish
from ...protocols.opcua.messages import OpcuaEvent
from .compile import MISSING


def _opt(v):
    return MISSING if v is None else v


def _req(attr):
    def f(e):
        r = e.request
        if r is None:
            return MISSING
        v = getattr(r, attr)
        return MISSING if v is None else v
    return f


def _req_values(e):
    r = e.request
    if r is None or r.values is None or not r.values:
        return MISSING
    return list(r.values)


def _req_last(e):
    r = e.request
    if r is None or r.address is None:
        return MISSING
    return last_address(r.address, r.quantity)


def _req_read_last(e):
    r = e.request
    d = r.details if r is not None else None
    if not d or d.get("read_address") is None:
        return MISSING
    return last_address(d["read_address"], d.get("read_quantity"))


def _req_detail(*keys):
    def f(e):
        r = e.request
        if r is None or not r.details:
            return MISSING
        v = r.details
        for k in keys:
            if not isinstance(v, dict) or k not in v:
                return MISSING
            v = v[k]
        return MISSING if v is None else v
    return f


MODBUS = {
    "event.dataset": lambda e: e.dataset,
    "source.ip": lambda e: e.flow.client_ip,
    "destination.ip": lambda e: e.flow.server_ip,
    "source.port": lambda e: e.flow.client_port,
    "destination.port": lambda e: e.flow.server_port,
    "modbus.function_code": lambda e: e.function_code,
    "modbus.function": lambda e: e.function,
    "modbus.unit_id": lambda e: e.unit_id,
    "modbus.transaction_id": lambda e: e.transaction_id,
    "modbus.exception_code": lambda e: _opt(e.exception_code),
    "modbus.exception": lambda e: _opt(e.exception),
    "modbus.request.address": _req("address"),
    "modbus.request.quantity": _req("quantity"),
    "modbus.request.last_address": _req_last,
    "modbus.request.read_last_address": _req_read_last,
    "modbus.request.sub_function": _req("sub_function"),
    "modbus.request.values": _req_values,
    "modbus.request.mei_type": _req_detail("mei_type"),
    "modbus.request.read_address": _req_detail("read_address"),
    "modbus.request.read_quantity": _req_detail("read_quantity"),
    "modbus.request.umas.function_code": _req_detail("umas", "function_code"),
}

def _policy_name(e):
    u = e.security_policy_uri
    if u is None:
        return MISSING
    return u.rsplit("#", 1)[-1] if "#" in u else u


OPCUA = {
    "event.dataset": lambda e: e.dataset,
    "source.ip": lambda e: e.flow.client_ip,
    "destination.ip": lambda e: e.flow.server_ip,
    "source.port": lambda e: e.flow.client_port,
    "destination.port": lambda e: e.flow.server_port,
    "opcua.service": lambda e: e.service,
    "opcua.message_type": lambda e: e.message_type,
    "opcua.status_code": lambda e: _opt(e.status_code),
    "opcua.status": lambda e: _opt(e.status),
    "opcua.user_token_type": lambda e: _opt(e.user_token_type),
    "opcua.security_mode": lambda e: _opt(e.security_mode),
    "opcua.security_policy.uri": lambda e: _opt(e.security_policy_uri),
    "opcua.security_policy.name": _policy_name,
    "opcua.nodes": lambda e: list(e.nodes) if e.nodes else MISSING,
}

def _mqtt_publish_message(e):
    """The application message as the bytes on the wire (its first mqtt.string_log_limit bytes): the
    document's text form escapes non-UTF-8 bytes, which Suricata-style content matches must not see."""
    for m in e.messages:
        if type(m) is MqttPublish and m.payload is not None and not m.truncated:
            return m.payload
    return MISSING


MQTT = {"mqtt.publish.message": _mqtt_publish_message}

FAST = {ModbusTransaction: MODBUS, OpcuaEvent: OPCUA, MqttExchange: MQTT}
