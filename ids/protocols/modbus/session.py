"""Modbus/TCP session: MBAP framing over the reassembled stream, request/response pairing by transaction
id, resynchronisation after gaps and garbage, and every bound a long-lived session needs.

Each exchange becomes one ids.events.ModbusTransaction; requests that never get an answer are emitted on
timeout or flow end with outcome "unknown", never dropped. Parsing of the PDU body is in parser.py.
"""
from __future__ import annotations

import struct

from ...events import ModbusTransaction
from .consts import MAX_MBAP_LENGTH, exception_name, function_name
from .parser import parse_request, parse_response

_MBAP = struct.Struct(">HHHBB").unpack_from  # transaction id, protocol id, length, unit id, function code
NS = 1_000_000_000
#: A flow reached by port is declared "not Modbus" after this many bad headers with no good one.
VIOLATION_LIMIT = 3


def probe(buf: bytes, to_server: bool) -> int:
    """Content probe for Modbus on other ports: one whole, well-formed MBAP frame with a plausible
    function code. Returns 1 (yes), 0 (no) or -1 (need more bytes)."""
    if len(buf) < 8:
        return -1 if (len(buf) < 4 or buf[2:4] == b"\0\0") else 0
    tid, pid, length, unit, fc = _MBAP(buf)
    if pid != 0 or not 2 <= length <= MAX_MBAP_LENGTH:
        return 0
    if len(buf) < 6 + length:
        return -1
    f = fc & 0x7F
    if f == 0 or (fc & 0x80 and to_server):
        return 0
    # One frame of six header bytes is thin evidence: require the frame to end the buffer or be followed
    # by the start of another plausible frame.
    rest = buf[6 + length:]
    if rest and (len(rest) >= 4 and rest[2:4] != b"\0\0"):
        return 0
    return 1


class _Protocol:
    name = "modbus"
    default_ports = (502,)
    probe = staticmethod(probe)

    def session(self, flow, table):
        return ModbusSession(flow, table)


MODBUS = _Protocol()


class ModbusSession:
    __slots__ = ("flow", "table", "emit", "buf", "pending", "valid", "bad", "resync", "cap", "max_pending",
                 "timeout", "stats")

    def __init__(self, flow, table):
        self.flow = flow
        self.table = table
        self.emit = table.emit
        cfg = table.config.modbus
        self.cap = cfg.max_values
        self.max_pending = cfg.max_pending
        self.timeout = cfg.request_timeout * NS
        self.buf = [b"", b""]  # partial frame per direction (at most one MBAP frame, 260 bytes)
        self.pending: dict[int, tuple] = {}  # transaction id -> (ts, unit, fc, request, anomalies)
        self.valid = 0
        self.bad = 0
        self.resync = [False, False]  # after a gap: hunt for the next frame quietly

    # ------------------------------------------------------------------ stream input
    def data(self, to_server: bool, data: bytes, ts: int) -> None:
        i = 0 if to_server else 1
        if self.buf[i]:
            data = self.buf[i] + data
        n = len(data)
        off = 0
        while n - off >= 8:
            tid, pid, length, unit, fc = _MBAP(data, off)
            if pid or length < 2 or length > MAX_MBAP_LENGTH:
                off = self._bad_frame(data, off, to_server, ts, tid, pid, length, unit, fc)
                if off < 0:  # flow handed back: not Modbus
                    return
                continue
            end = off + 6 + length
            if end > n:
                break
            self.resync[i] = False
            self.valid += 1
            if to_server:
                self._request(ts, tid, unit, fc, data[off + 8:end])
            else:
                self._response(ts, tid, unit, fc, data[off + 8:end])
            off = end
        self.buf[i] = data[off:] if off < n else b""

    def _bad_frame(self, data, off, to_server, ts, tid, pid, length, unit, fc) -> int:
        i = 0 if to_server else 1
        if not self.resync[i]:
            self.bad += 1
            if self.valid == 0 and self.bad >= VIOLATION_LIMIT:
                self.table.detach(self.flow, ts, f"{self.bad} invalid MBAP headers and no valid one")
                return -1
            if self.valid or self.bad == 1:
                why = "bad_protocol_id" if pid else "bad_length"
                self.emit(ModbusTransaction(ts, self.flow.context, tid, unit, fc & 0x7F,
                                            function_name(fc & 0x7F), None, None, None, None,
                                            ("malformed_mbap", why), None))
        # Hunt for the next plausible header: protocol id 0 and a sane length, at least one byte on.
        n = len(data)
        q = off + 3
        while True:
            p = data.find(b"\0\0", q)
            if p < 0:
                return max(off + 1, n - 7)  # keep a tail that may hold the start of the next header
            start = p - 2
            if start + 8 > n:
                return start
            length = (data[p + 2] << 8) | data[p + 3]
            if 2 <= length <= MAX_MBAP_LENGTH:
                return start
            q = p + 1

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None:
        i = 0 if to_server else 1
        self.buf[i] = b""  # the frame in progress lost bytes: what follows starts mid-frame
        self.resync[i] = True

    # ------------------------------------------------------------------ pairing
    def _request(self, ts, tid, unit, fc, pdu) -> None:
        if fc & 0x80:
            self._emit(ts, tid, unit, fc & 0x7F, None, None, None, ("exception_in_request",), None)
            return
        req, an = parse_request(fc, pdu, self.cap)
        pending = self.pending
        old = pending.pop(tid, None)
        if old is not None:  # the transaction id was reused before an answer: the old one got none
            self._unanswered(old, tid, ("duplicate_transaction_id",))
        elif len(pending) >= self.max_pending:
            otid = next(iter(pending))
            self._unanswered(pending.pop(otid), otid, ("too_many_pending",))
        pending[tid] = (ts, unit, fc, req, an)

    def _response(self, ts, tid, unit, fc, pdu) -> None:
        base = fc & 0x7F
        p = self.pending.pop(tid, None)
        if p is None:
            req, an0, rts = None, ("unsolicited_response",), ts
        else:
            rts, runit, rfc, req, an0 = p
            if rfc != base:
                an0 += ("function_code_mismatch",)
            if runit != unit:
                an0 += ("unit_id_mismatch",)
        if fc & 0x80:
            if len(pdu) != 1:
                an0 += ("malformed_pdu",)
            code = pdu[0] if pdu else 0
            self._emit(rts, tid, unit, base, req, None, code, an0, ts)
            return
        resp, an = parse_response(fc, pdu, req, self.cap)
        self._emit(rts, tid, unit, base, req, resp, None, an0 + an if an else an0, ts)

    def _emit(self, ts, tid, unit, fc, req, resp, exc, anomalies, rts) -> None:
        mei = None
        if fc == 43:
            d = (req.details if req is not None else None) or (resp.details if resp is not None else None)
            mei = d.get("mei_type") if d else None
        self.emit(ModbusTransaction(ts, self.flow.context, tid, unit, fc, function_name(fc, mei), req, resp,
                                    exc, exception_name(exc) if exc is not None else None, anomalies, rts))

    def _unanswered(self, p, tid, extra=()) -> None:
        ts, unit, fc, req, an = p
        self._emit(ts, tid, unit, fc, req, None, None, an + ("unanswered_request",) + extra, None)

    # ------------------------------------------------------------------ time and end
    def expire(self, now: int) -> None:
        pending = self.pending
        if not pending:
            return
        limit = now - self.timeout
        old = [tid for tid, p in pending.items() if p[0] < limit]
        for tid in old:
            self._unanswered(pending.pop(tid), tid)

    def close(self, ts: int) -> None:
        for tid in list(self.pending):
            self._unanswered(self.pending.pop(tid), tid)
        for i, b in enumerate(self.buf):
            if b:
                self.table.truncated(self.flow, ts, "modbus", len(b), i == 0)
        self.buf = [b"", b""]
