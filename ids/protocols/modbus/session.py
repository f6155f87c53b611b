"""Modbus/TCP session: MBAP framing over the reassembled stream, request/response pairing by transaction
id, resynchronisation after gaps and garbage, and every bound a long-lived session needs.

Each exchange becomes one ids.protocols.modbus.messages.ModbusTransaction; requests that never get an answer are emitted on
timeout or flow end with outcome "unknown", never dropped. Parsing of the PDU body is in parser.py; what
is suspicious is for ids.detect.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import struct

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from ... import _cy as cython
if not cython.compiled:  # compiled, the C version is cimported (session.pxd)
    from ..._records import new_record

from ...flow.budget import Charged
from .messages import ModbusRequest, ModbusResponse, ModbusTransaction
from .consts import MAX_MBAP_LENGTH, MAX_TOLERATED_LENGTH, MIN_MBAP_LENGTH, exception_name, function_name
from .parser import MALFORMED, parse_request, parse_response

if TYPE_CHECKING:
    from ...flow.context import SessionContext

_MBAP = struct.Struct(">HHHBB").unpack_from  # transaction id, protocol id, length, unit id, function code
NS = 1_000_000_000


def _pending_cost(p) -> int:
    """Bytes one pending request holds (tracemalloc, tests/test_hostile_state.py): 256 for a read, about 8
    more per value a write carries (a 123-register write: 1,280)."""
    req = p[3]
    vals = getattr(req, "values", None) if req is not None else None
    return 270 + 8 * len(vals) if vals else 260
_FUNCTION_NAMES = [function_name(f) for f in range(128)]  # per transaction: a list index, not a call
#: A flow picked up mid-stream is declared "not Modbus" after this many broken headers with no good one.
VIOLATION_LIMIT = 3
_BAD_LENGTH = ("malformed_mbap", "bad_length")


def probe(buf: bytes, to_server: bool) -> int:
    """Content probe for Modbus on other ports: one whole, well-formed MBAP frame with a plausible
    function code. Returns 1 (yes), 0 (no) or -1 (need more bytes)."""
    if len(buf) < 8:
        return -1 if (len(buf) < 4 or buf[2:4] == b"\0\0") else 0
    tid, pid, length, unit, fc = _MBAP(buf)
    if pid != 0 or not MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH:
        return 0
    if len(buf) < 6 + length:
        return -1
    if fc & 0x7F == 0:
        return 0
    # An exception PDU from the connection's opener is no proof against Modbus: a device that opens the
    # connection from port 502 and answers (QuickDraw test data) is still Modbus, and worth seeing.
    # One frame of six header bytes is thin evidence: require the frame to end the buffer or be followed
    # by the start of another plausible frame.
    rest = buf[6 + length:]
    if rest and (len(rest) >= 4 and rest[2:4] != b"\0\0"):
        return 0
    return 1


class ModbusSession:
    __slots__ = ("sc", "emit", "buf", "pending", "valid", "bad", "resync", "cap", "max_pending",
                 "timeout", "ctx")

    def __init__(self, sc: SessionContext):
        self.sc = sc
        self.emit = sc.emit
        cfg = sc.config.modbus
        self.cap = cfg.max_values
        self.max_pending = cfg.max_pending
        self.timeout = cfg.request_timeout * NS
        self.buf = [b"", b""]  # partial frame per direction (at most one MBAP frame, 266 bytes)
        # transaction id -> (ts, unit, fc, request, anomalies), counted across flows (limits.pending_total)
        self.pending: Charged = Charged(sc.pending_pool, _pending_cost)  # typed so: compiled code keeps its methods
        self.valid = 0  # well-formed frames seen (both directions)
        self.bad = 0  # broken headers seen before the first well-formed frame
        # Hunting for the next frame boundary, quietly: after a gap, and from the start on a flow picked up
        # mid-stream (its first byte need not start a frame).
        mid = sc.midstream
        self.resync = [mid, mid]
        self.ctx = None  # the flow's FlowContext, fetched once at the first event

    # ------------------------------------------------------------------ stream input
    @cython.locals(b=cython.p_uchar, length=cython.Py_ssize_t)
    def data(self, to_server: bool, data: bytes, ts: int) -> None:
        i = 0 if to_server else 1
        if self.buf[i]:
            data = self.buf[i] + data
        elif len(data) >= 8 and not self.resync[i]:
            # Nearly every segment is exactly one whole, well-formed frame: no loop, no slicing of the rest.
            if cython.compiled and type(data) is bytes:
                # Compiled: the header read from the bytes (no tuple), the same values as _MBAP.
                b = data
                pid = b[2] << 8 | b[3]
                length = b[4] << 8 | b[5]
                tid, unit, fc = b[0] << 8 | b[1], b[6], b[7]
            else:
                tid, pid, length, unit, fc = _MBAP(data)
            if not pid and MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH and length + 6 == len(data):
                self.valid += 1
                if to_server:
                    self._request(ts, tid, unit, fc, data[8:], ())
                else:
                    self._response(ts, tid, unit, fc, data[8:], ())
                return
        n = len(data)
        off = 0
        while n - off >= 8:
            tid, pid, length, unit, fc = _MBAP(data, off)
            an = ()
            if pid or length < MIN_MBAP_LENGTH or length > MAX_MBAP_LENGTH:
                if not pid and MAX_MBAP_LENGTH < length <= MAX_TOLERATED_LENGTH and self.valid \
                        and not self.resync[i]:
                    an = _BAD_LENGTH  # framed all the same: the stream is in sync, the overshoot small
                else:
                    off = self._bad_frame(data, off, to_server, ts, tid, pid, length, unit, fc)
                    if off < 0:  # flow handed back: not Modbus
                        return
                    continue
            end = off + 6 + length
            if end > n:
                break
            if self.resync[i]:
                # Where the stream resumes after a gap (or a mid-stream pickup starts) data inside a frame
                # can look like a header: demand the probe's evidence before trusting it.
                if not probe(data[off:off + 270], to_server) or (to_server and fc & 0x80):
                    off = self._bad_frame(data, off, to_server, ts, tid, pid, length, unit, fc)
                    if off < 0:
                        return
                    continue
                self.resync[i] = False
            self.valid += 1
            if to_server:
                self._request(ts, tid, unit, fc, data[off + 8:end], an)
            else:
                self._response(ts, tid, unit, fc, data[off + 8:end], an)
            off = end
        self.buf[i] = data[off:] if off < n else b""

    def _bad_frame(self, data, off, to_server, ts, tid, pid, length, unit, fc) -> int:
        """A header that cannot start a frame. Returns where to look next, or -1 when the flow was handed
        back as not Modbus."""
        i = 0 if to_server else 1
        if not self.valid:
            # Nothing on this flow was ever Modbus. From the first byte of a connection that is a protocol
            # violation at once (as Zeek's &enforce on the protocol id): scanners and other protocols on
            # port 502 yield no transactions. Mid-stream, allow a few tries to find a frame boundary.
            self.bad += 1
            if not self.resync[i]:
                why = f"protocol id {pid:#06x}" if pid else f"length {length}"
                reason = f"invalid MBAP header ({why}) at the start of the {'client' if to_server else 'server'} stream"
            elif self.bad >= VIOLATION_LIMIT:
                reason = f"no valid MBAP frame ({self.bad} invalid headers)"
            else:
                return self._hunt(data, off, to_server)
            self.sc.detach(ts, reason)
            self.buf = [b"", b""]
            return -1
        elif not self.resync[i]:
            # In sync until now: report the broken frame once, with the header values, then hunt quietly.
            why = "bad_protocol_id" if pid else "bad_length"
            mbap = {"protocol_id": pid, "length": length}
            req = ModbusRequest(details=mbap) if to_server else None
            resp = None if to_server else ModbusResponse(details=mbap)
            self.emit(ModbusTransaction(ts, self.sc.context, tid, unit, fc & 0x7F, function_name(fc & 0x7F),
                                        req, resp, None, None, ("malformed_mbap", why),
                                        None if to_server else ts))
            self.resync[i] = True
        return self._hunt(data, off, to_server)

    @staticmethod
    def _hunt(data: bytes, off: int, to_server: bool) -> int:
        """Next offset after `off` that may start a frame: protocol id 0, a length in bounds, a non-zero
        function code (requests: without the exception bit), and a frame that ends the buffer or is followed
        by another plausible header (the probe's test: register values full of zeros look like headers too).
        Keeps a 7-byte tail that may hold the start."""
        n = len(data)
        q = off + 3
        while True:
            p = data.find(b"\0\0", q)
            if p < 0:
                return max(off + 1, n - 7)
            start = p - 2
            if start + 8 > n:
                return max(off + 1, start)
            fc = data[p + 5]
            if fc and not (to_server and fc & 0x80) and probe(data[start:start + 270], to_server):
                return start
            q = p + 1

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None:
        i = 0 if to_server else 1
        self.buf[i] = b""  # the frame in progress lost bytes: what follows starts mid-frame
        self.resync[i] = True

    # ------------------------------------------------------------------ pairing
    def _request(self, ts, tid, unit, fc, pdu, an0=()) -> None:
        if fc & 0x80:
            # An exception PDU sent by the master: not a request anyone can answer; reported as it stands.
            an = an0 + (("exception_in_request",) if len(pdu) == 1 else ("exception_in_request", MALFORMED))
            code = pdu[0] if pdu else None
            self._emit(ts, tid, unit, fc & 0x7F, None, None, code, an, None)
            return
        req, an = parse_request(fc, pdu, self.cap)
        if an0:
            an = an0 + an
        pending = self.pending
        old = pending.pop(tid, None)
        if old is not None:  # the transaction id was reused before an answer: the old one got none
            self._unanswered(old, tid, ("duplicate_transaction_id",))
        elif len(pending) >= self.max_pending:
            otid = next(iter(pending))
            self._unanswered(pending.pop(otid), otid, ("too_many_pending",))
        pending[tid] = (ts, unit, fc, req, an)
        if pending.take_over():  # limits.pending_total: this flow gives up its oldest
            otid = next(iter(pending))
            self._unanswered(pending.pop(otid), otid, ("too_many_pending",))
            self.sc.memory_cap(ts, pending.pool)

    def _response(self, ts, tid, unit, fc, pdu, an0=()) -> None:
        base = fc & 0x7F
        p = self.pending.get(tid)
        if p is None:
            req, an0, rts = None, an0 + ("unsolicited_response",), ts
        elif p[2] != base:
            # Same transaction id, other function: not the answer to that request (a response repeats the
            # request's function code, section 4.1), which stays pending.
            req, an0, rts = None, an0 + ("function_code_mismatch",), ts
        else:
            del self.pending[tid]
            rts, runit, _, req, ran = p
            an0 = ran + an0
            if runit != unit:
                an0 += ("unit_id_mismatch",)
        if fc & 0x80:
            if len(pdu) != 1:
                an0 += (MALFORMED,)
            code = pdu[0] if pdu else None
            self._emit(rts, tid, unit, base, req, None, code, an0, ts)
            return
        resp, an = parse_response(fc, pdu, req, self.cap)
        self._emit(rts, tid, unit, base, req, resp, None, an0 + an if an else an0, ts)

    def _emit(self, ts, tid, unit, fc, req, resp, exc, anomalies, rts) -> None:
        if fc == 43:
            d = (req.details if req is not None else None) or (resp.details if resp is not None else None)
            name = function_name(fc, d.get("mei_type") if d else None)
        else:
            name = _FUNCTION_NAMES[fc]
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = self.sc.context
        self.emit(new_record(ModbusTransaction, (ts, ctx, tid, unit, fc, name, req, resp, exc,
                                           exception_name(exc) if exc is not None else None, anomalies, rts)))

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
        if not self.valid and self.bad:  # picked up mid-stream and never found a frame: not Modbus
            self.sc.detach(ts, f"no valid MBAP frame ({self.bad} invalid "
                                             f"header{'s' if self.bad > 1 else ''})")
        else:
            for i, b in enumerate(self.buf):
                if b:
                    self.sc.truncated(ts, "modbus", len(b), i == 0)
        self.buf = [b"", b""]
