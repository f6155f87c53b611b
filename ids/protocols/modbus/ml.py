"""Modbus/TCP feature view: what the ML detector reads of one exchange (ids/detect/ml/view.py says what
each field of the view must hold). Runs on the hot path: plain attribute reads, no allocation beyond the view."""
from __future__ import annotations

from ...detect.ml.view import FeatureView
from .messages import ModbusTransaction

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
