"""Adapters from protocol events to FeatureViews: one function per event type (see view.py).

Modbus/TCP (ModbusTransaction), OPC UA (OpcuaEvent) and MQTT (MqttExchange), each registered with
`@adapter_for(TheirEvent)`. docs/ML.md "Adapters" has the field-by-field rules; a new protocol adds one
function here and nothing else.
"""
from __future__ import annotations

import json
import math

from ...protocols.modbus.messages import ModbusTransaction
from ...protocols.mqtt.messages import MqttConnack, MqttConnect, MqttExchange, MqttPublish
from ...protocols.opcua.messages import OpcuaEvent
from .view import FeatureView, adapter_for

# ---------------------------------------------------------------------------------------------- Modbus

#: Data table each function code addresses (Modbus Application Protocol v1.1b3, section 4.3): coils,
#: discrete inputs, holding registers, input registers, FIFO queue. Keys are "unit:table:address".
_TABLE = {1: "co", 5: "co", 15: "co", 2: "di", 3: "hr", 6: "hr", 16: "hr", 22: "hr", 23: "hr", 4: "ir", 24: "fifo"}
_WRITES = frozenset((5, 6, 15, 16, 21, 22, 23))  # as ids.protocols.modbus.consts.WRITE_CODES
#: Anomalies that the request/response balance feature already counts; the rest mark the exchange anomalous.
_BALANCE = frozenset(("unanswered_request", "unsolicited_response"))
_MBAP = 8  # MBAP header (7 bytes) + function code


def _modbus_keys(ev: ModbusTransaction) -> tuple[str, ...]:
    fc, unit = ev.function_code, ev.unit_id
    req = ev.request
    table = _TABLE.get(fc)
    if req is None:
        return (f"{unit}:fc{fc}",)
    if table is not None and req.address is not None:
        if fc == 23 and req.details:
            return (f"{unit}:hr:{req.details.get('read_address')}", f"{unit}:hr:{req.address}")
        return (f"{unit}:{table}:{req.address}",)
    if fc == 8:
        return (f"{unit}:diag:{req.sub_function}",)
    if fc == 43 and req.details:
        return (f"{unit}:mei:{req.details.get('mei_type')}",)
    return (f"{unit}:fc{fc}",)


def _modbus_writes(ev: ModbusTransaction) -> tuple[tuple[str, float], ...]:
    req = ev.request
    if req is None or not req.values or req.address is None:
        return ()
    table = _TABLE.get(ev.function_code, "hr")
    unit, addr = ev.unit_id, req.address
    # One key per register or coil: the value profile of register 20 must not mix with register 21's.
    return tuple((f"{unit}:{table}:{addr + i}", float(v)) for i, v in enumerate(req.values))


def _modbus_bytes(ev: ModbusTransaction) -> int:
    """ADU bytes of request and response, from the decoded fields. The event carries no lengths; for the
    public function codes the layout fixes them (exact), for others the PDU data length stands in."""
    fc = ev.function_code
    req, resp = ev.request, ev.response
    n = 0
    if req is not None:
        q = req.quantity or 0
        if fc in (1, 2, 3, 4, 5, 6):
            body = 4
        elif fc == 15:
            body = 5 + (q + 7) // 8
        elif fc == 16:
            body = 5 + 2 * q
        elif fc == 23:
            body = 9 + 2 * q
        elif fc == 22:
            body = 6
        elif fc == 8:
            body = 2 + 2 * len(req.values or ())
        elif fc == 43:
            body = 3
        else:
            body = (req.details or {}).get("data_length", 0) if req.details else 0
        n += _MBAP + body
    if ev.exception_code is not None:
        n += _MBAP + 1
    elif resp is not None:
        q = resp.quantity or 0
        if fc in (1, 2):
            body = 1 + (q + 7) // 8
        elif fc in (3, 4, 23):
            body = 1 + 2 * q
        elif fc in (5, 6, 15, 16):
            body = 4
        elif fc == 22:
            body = 6
        elif fc == 8:
            body = 2 + 2 * len(resp.values or ())
        else:
            body = (resp.details or {}).get("data_length", 0) if resp.details else 0
        n += _MBAP + body
    return n


@adapter_for(ModbusTransaction)
def modbus_view(ev: ModbusTransaction) -> FeatureView:
    f = ev.flow
    an = ev.anomalies
    has_request = ev.request is not None or "unsolicited_response" not in an
    answered = ev.response is not None or ev.exception_code is not None
    lat = ev.response_ts - ev.ts if (answered and has_request and ev.response_ts is not None) else None
    fc = ev.function_code
    return FeatureView(
        ev.ts, "modbus", f.client_ip, f.server_ip, ev.function, fc in _WRITES, ev.exception_code is not None,
        _modbus_keys(ev), _modbus_writes(ev) if fc in _WRITES else (), answered, has_request, lat,
        _modbus_bytes(ev), bool(an) and any(a not in _BALANCE for a in an), f)


# ---------------------------------------------------------------------------------------------- numbers

_NUMERIC_MAX = 1024  # longest payload read for numbers (longer ones are blobs, not readings)
_JSON_FIELDS = 16  # numeric fields taken from one JSON object payload


def _number(v) -> float | None:
    """A finite float from a bool, int or float; None for anything else (strings, arrays, NaN, infinities):
    one NaN would turn every written-value statistic of its window into NaN."""
    t = type(v)
    if t is bool:
        return 1.0 if v else 0.0
    if t is int or t is float:
        f = float(v) if t is float or -(1 << 53) <= v <= 1 << 53 else None
        return f if f is not None and math.isfinite(f) else None
    return None


# ---------------------------------------------------------------------------------------------- OPC UA

#: Services that change server state (OPC UA Part 4): attribute writes (5.10.4), method calls (5.11.2), history
#: updates (5.10.5) and node management (5.7). Subscriptions and sessions change server state too, but only
#: the client's own; they are the routine of every client, not commands to the process.
_OPCUA_WRITES = frozenset(("Write", "Call", "HistoryUpdate", "AddNodes", "AddReferences", "DeleteNodes",
                           "DeleteReferences"))
_BAD = 0x80000000  # StatusCode severity Bad (Part 4 7.39); Uncertain (0x40000000) is not an error
_OPCUA_BALANCE = frozenset(("unanswered_request", "unsolicited_response"))
#: Transport messages without a size in the event: fixed layout (Part 6 7.1.2.3-7.1.2.5), strings added below.
_HEL, _ACK, _ERR = 32, 28, 16


def _opcua_error(ev: OpcuaEvent) -> bool:
    code = ev.status_code
    if code is not None and code & _BAD:
        return True
    resp = ev.response
    if resp is None:
        return ev.message_type == "ERR"
    if resp.get("service_fault"):
        return True
    if "operation_status" in resp:  # set by the session when any per-operation result is Bad or Uncertain
        for r in resp.get("results") or ():
            if type(r) is dict and (r.get("status_code") or 0) & _BAD:
                return True
    return False


def _opcua_writes(ev: OpcuaEvent) -> tuple[tuple[str, float], ...]:
    req = ev.request
    if req is None:
        return ()
    out = []
    if ev.service == "Write":
        for w in req.get("nodes_to_write") or ():
            v = _number(w.get("value"))
            if v is not None:
                attr = w.get("attribute")
                node = w.get("node", "")
                out.append((node if attr in (None, "Value") else f"{node}#{attr}", v))
    elif ev.service == "Call":  # numeric input arguments, one key per argument position of the method
        for c in req.get("methods_to_call") or ():
            m = c.get("method", "")
            for i, a in enumerate(c.get("arguments") or ()):
                v = _number(a.get("value")) if type(a) is dict else None
                if v is not None:
                    out.append((f"{m}#{i}", v))
    return tuple(out)


def _opcua_bytes(ev: OpcuaEvent) -> int:
    n = 0
    req, resp = ev.request, ev.response
    if ev.message_type == "HEL":
        if req is not None:
            n += _HEL + len((req.get("endpoint_url") or "").encode())
        if resp is not None:
            n += _ERR + len((resp.get("reason") or "").encode()) if ev.status_code is not None else _ACK
        return n
    if req is not None:
        n += req.get("size") or 0
    if resp is not None:
        n += resp.get("size") or (_ERR + len((resp.get("reason") or "").encode()) if ev.message_type == "ERR" else 0)
    return n


@adapter_for(OpcuaEvent)
def opcua_view(ev: OpcuaEvent) -> FeatureView:
    f = ev.flow
    an = ev.anomalies
    req, resp, mt = ev.request, ev.response, ev.message_type
    if req is None:  # a response nobody asked for, or a message the server sends on its own (ERR, RHE)
        request = False
        answered: bool | None = True if resp is not None and "unsolicited_response" in an else None
    else:
        request = True
        if mt == "CLO" or (ev.encrypted and mt == "MSG"):
            answered = None  # no response follows a CLO (Part 6 7.1.3); ciphertext cannot be paired
        else:
            answered = resp is not None
    service = ev.service
    is_write = service in _OPCUA_WRITES
    lat = ev.response_ts - ev.ts if ev.response_ts is not None and req is not None else None
    return FeatureView(
        ev.ts, "opcua", f.client_ip, f.server_ip, service, is_write, _opcua_error(ev), ev.nodes,
        _opcua_writes(ev) if is_write else (), answered, request, lat, _opcua_bytes(ev),
        bool(an) and any(a not in _OPCUA_BALANCE for a in an), f)


# ---------------------------------------------------------------------------------------------- MQTT

#: Anomalies that mean "an answer to nothing seen": the balance feature counts them (status unsolicited).
_MQTT_BALANCE = frozenset(("missing_connect", "missing_publish", "missing_subscribe", "missing_unsubscribe"))


def _mqtt_payload_numbers(topic: str, p: MqttPublish) -> tuple[tuple[str, float], ...]:
    """Numbers in a publish payload: a plain number (`61.5`, `true`), or the numeric top-level fields of a
    flat JSON object (`{"t": 61.5}` -> key `topic#t`). Anything else (binary, Sparkplug, text) gives none."""
    b = p.payload
    if not b or len(b) > _NUMERIC_MAX or (p.payload_length is not None and p.payload_length != len(b)):
        return ()
    c = b[0]
    if c == 0x7B:  # '{'
        try:
            obj = json.loads(b)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return ()
        if type(obj) is not dict:
            return ()
        out = []
        for k in sorted(obj)[:_JSON_FIELDS]:  # sorted: a publisher's key order must not change the keys
            v = _number(obj[k])
            if v is not None:
                out.append((f"{topic}#{k}", v))
        return tuple(out)
    if len(b) > 32:
        return ()
    try:
        s = b.decode("ascii").strip()
    except UnicodeDecodeError:
        return ()
    if s == "true" or s == "false":
        return ((topic, 1.0 if s == "true" else 0.0),)
    try:
        v = float(s)
    except ValueError:
        return ()
    return ((topic, v),) if math.isfinite(v) else ()


@adapter_for(MqttExchange)
def mqtt_view(ev: MqttExchange) -> FeatureView:
    f = ev.flow
    msgs = ev.messages
    first = msgs[0]
    op = first.type
    from_client = first.to_server
    status = ev.status
    err = False
    nbytes = 0
    for m in msgs:
        nbytes += m.length
        t = type(m)
        if t is MqttConnack:
            if m.return_code:  # 3.1.1 return codes 1-5 and 5.0 reason codes >= 0x80 all refuse
                err = True
        elif t is not MqttConnect and t is not MqttPublish:
            rc = getattr(m, "reason_code", None)
            if rc is not None and rc >= 0x80:
                err = True
            for c in getattr(m, "codes", ()):  # SUBACK / UNSUBACK, one per filter: 0x80 and above fail
                if c >= 0x80:
                    err = True
    keys: tuple[str, ...] = ()
    writes: tuple[tuple[str, float], ...] = ()
    t = type(first)
    if t is MqttPublish:
        topic = first.topic
        if topic is not None:
            keys = (topic,)
            if from_client:
                writes = _mqtt_payload_numbers(topic, first)
    elif t is MqttConnect:
        # The account, not the client id: client ids are often random per connection, usernames are stable
        keys = ("user:" + (first.username or ""),)
    elif op == "subscribe" or op == "unsubscribe":
        keys = tuple(x[0] if type(x) is tuple else x for x in first.topics)
    unsolicited = status == "unsolicited"
    if unsolicited:
        answered: bool | None = True
    elif status == "incomplete":
        answered = False
    elif len(msgs) > 1:
        answered = True
    else:
        answered = None  # QoS 0 PUBLISH, PINGREQ/PINGRESP (paired by nobody), DISCONNECT: no answer expected
    # Server-initiated exchanges (deliveries to a subscriber, PINGRESP, a broker's DISCONNECT) are not requests
    # of the client: they count in bytes, operations and keys, not in request rates or the balance.
    request = from_client and not unsolicited
    if not from_client and not unsolicited:
        answered = None
    lat = msgs[-1].ts - first.ts if answered and request and len(msgs) > 1 else None
    an = ev.anomalies
    return FeatureView(
        ev.ts, "mqtt", f.client_ip, f.server_ip, op, op == "publish" and from_client, err, keys, writes,
        answered, request, lat, nbytes, bool(an) and any(a not in _MQTT_BALANCE for a in an), f)
