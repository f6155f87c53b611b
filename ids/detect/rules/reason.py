"""What happened, in words, for a rule alert's `event.reason`: the function, unit, address and values of a
Modbus exchange, the service and nodes of an OPC UA message, the packet type, topic and client id of an
MQTT exchange. A rule's title says why it matters; this says what the traffic did."""
from __future__ import annotations

from .compile import MISSING

MAX_ITEMS = 6


def _get(view, path):
    try:
        v = view.get(path)
    except Exception:  # an event that cannot render a document (a typed record read on the fast path only)
        return None
    return None if v is MISSING or v is None or v == [] else v


def _short(v) -> str:
    if isinstance(v, list):
        head = ", ".join(str(x) for x in v[:MAX_ITEMS])
        return f"[{head}{', ...' if len(v) > MAX_ITEMS else ''}]"
    return str(v)


def describe(view, protocol: str) -> str:
    """A short clause on the triggering document, "" when there is nothing to add."""
    g = lambda p: _get(view, p)  # noqa: E731
    parts: list[str] = []
    if protocol == "modbus":
        fn, fc = g("modbus.function"), g("modbus.function_code")
        if fn is not None or fc is not None:
            parts.append(f"{fn or 'function'} (FC {fc})" if fc is not None else str(fn))
        if g("modbus.unit_id") is not None:
            parts.append(f"unit {g('modbus.unit_id')}")
        addr = g("modbus.request.address")
        if addr is not None:
            q = g("modbus.request.quantity")
            parts.append(f"address {addr}" + (f" x{q}" if q not in (None, 1) else ""))
        vals = g("modbus.request.values")
        if vals is None and g("modbus.request.value") is not None:
            vals = g("modbus.request.value")
        if vals is not None:
            parts.append(f"value {_short(vals)}")
        if g("modbus.exception") is not None:
            parts.append(f"exception {g('modbus.exception')}")
    elif protocol == "opcua":
        if g("opcua.service") is not None:
            parts.append(str(g("opcua.service")))
        if g("opcua.nodes") is not None:
            parts.append(f"nodes {_short(g('opcua.nodes'))}")
        if g("opcua.user_token_type") is not None:
            parts.append(f"token {g('opcua.user_token_type')}")
        if g("opcua.security_policy.name") is not None:
            parts.append(f"policy {g('opcua.security_policy.name')}")
    elif protocol == "mqtt":
        types = g("mqtt.types")
        if types is not None:
            parts.append("/".join(str(t).upper() for t in (types if isinstance(types, list) else [types])))
        if g("mqtt.publish.topic") is not None:
            parts.append(f"topic '{g('mqtt.publish.topic')}'")
        if g("mqtt.subscribe.topics.topic") is not None:
            parts.append(f"filters {_short(g('mqtt.subscribe.topics.topic'))}")
        if g("mqtt.connect.client_id") is not None:
            parts.append(f"client id '{g('mqtt.connect.client_id')}'")
    return ", ".join(parts)
