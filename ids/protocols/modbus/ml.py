"""Modbus/TCP feature view: what the ML detector reads of one exchange (ids/detect/ml/view.py says what
each field of the view must hold). Runs on the hot path: compiled (ml.pxd), the transaction read as the tuple
it is, key strings built once per distinct (unit, table, address) and the view built by the record builder."""
from __future__ import annotations

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from ... import _cy as cython
if not cython.compiled:  # compiled, the C version is cimported (ml.pxd)
    from ..._records import new_record

from ...detect.ml.view import FeatureView
from .messages import ModbusTransaction

#: Data table each function code addresses (Modbus Application Protocol v1.1b3, section 4.3): coils,
#: discrete inputs, holding registers, input registers, FIFO queue. Keys are "unit:table:address".
_TABLE = {1: "co", 5: "co", 15: "co", 2: "di", 3: "hr", 6: "hr", 16: "hr", 22: "hr", 23: "hr", 4: "ir", 24: "fifo"}
_WRITES = frozenset((5, 6, 15, 16, 21, 22, 23))  # as ids.protocols.modbus.consts.WRITE_CODES
#: Anomalies that the request/response balance feature already counts; the rest mark the exchange anomalous.
_BALANCE = frozenset(("unanswered_request", "unsolicited_response"))
_MBAP = 8  # MBAP header (7 bytes) + function code

#: (unit, table, address) -> ("unit:table:address",): a plant polls the same few registers over and over, so
#: each key string (and the one-key tuple of a read) is built once and its hash computed once. Table None
#: is the function-code form "unit:fcN" (address = the code). Emptied when full: the strings are the same.
_KEYS: dict = {}
_MAX_KEYS = 1 << 16


def _key(unit, table, addr) -> tuple:
    t = (unit, table, addr)
    k = _KEYS.get(t)
    if k is None:
        if len(_KEYS) >= _MAX_KEYS:
            _KEYS.clear()
        k = _KEYS[t] = (f"{unit}:{table}:{addr}",) if table is not None else (f"{unit}:fc{addr}",)
    return k


def _modbus_keys(unit: int, fc: int, req) -> tuple[str, ...]:
    if req is None:
        return _key(unit, None, fc)
    table = _TABLE.get(fc)
    address = req.address
    if table is not None and address is not None:
        if fc == 23 and req.details:
            return _key(unit, "hr", req.details.get("read_address")) + _key(unit, "hr", address)
        return _key(unit, table, address)
    if fc == 8:
        return _key(unit, "diag", req.sub_function)
    if fc == 43 and req.details:
        return _key(unit, "mei", req.details.get("mei_type"))
    return _key(unit, None, fc)


def _modbus_writes(unit: int, fc: int, req) -> tuple[tuple[str, float], ...]:
    if req is None or not req.values or req.address is None:
        return ()
    table = _TABLE.get(fc, "hr")
    addr = req.address
    # One key per register or coil: the value profile of register 20 must not mix with register 21's.
    out = []
    for v in req.values:
        out.append((_key(unit, table, addr)[0], float(v)))
        addr += 1
    return tuple(out)


def _modbus_bytes(fc: int, req, resp, exc) -> int:
    """ADU bytes of request and response, from the decoded fields. The event carries no lengths; for the
    public function codes the layout fixes them (exact), for others the PDU data length stands in."""
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
    if exc is not None:
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
    if not isinstance(ev, tuple):  # (compiled, the unpack reads it as a tuple without checking)
        raise TypeError(f"modbus_view needs a ModbusTransaction, not {type(ev).__name__}")
    (ts, f, _tid, unit, fc, function, req, resp, exc, _exc_name, an, rts) = cython.cast(tuple, ev)
    has_request = req is not None or "unsolicited_response" not in an
    answered = resp is not None or exc is not None
    lat = rts - ts if (answered and has_request and rts is not None) else None
    is_write = fc in _WRITES
    return new_record(FeatureView, (
        ts, "modbus", f.client_ip, f.server_ip, function, is_write, exc is not None, _modbus_keys(unit, fc, req),
        _modbus_writes(unit, fc, req) if is_write else (), answered, has_request, lat, _modbus_bytes(fc, req, resp, exc),
        bool(an) and any(a not in _BALANCE for a in an), f))
