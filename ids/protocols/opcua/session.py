"""OPC UA Binary session: transport framing over the reassembled TCP stream, the HEL/ACK handshake,
secure-channel state (policy, mode, token, certificates, sequence numbers), chunk reassembly per request
id within negotiated and hard limits, and request/response pairing by request handle.

Each exchange becomes one ids.protocols.opcua.messages.OpcuaEvent; requests that never get an answer are emitted on timeout
or flow end (anomaly unanswered_request), never dropped. Bodies a channel encrypts are reported as
`encrypted` and never decoded. Byte-level decoding is in parser.py, certificates in certs.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import struct

from ...flow.budget import Charged
from .messages import OpcuaEvent
from ... import x509 as _certs
from .consts import CHUNK_TYPES, MESSAGE_TYPES, POLICY_PREFIX, SIGNATURE_SIZES, policy_name
from .parser import (HEADER, Bad, is_service_start, parse_ack, parse_asymmetric_header, parse_body,
                     parse_error, parse_hello, parse_reverse_hello)

if TYPE_CHECKING:
    from ...flow.context import SessionContext

NS = 1_000_000_000


def _pending_cost(p) -> int:
    """Bytes a pending request holds with its decoded body (tracemalloc, tests/test_hostile_state.py):
    1,290 for a one-node request, 9,860 for a 100-node write of 3.9 kB."""
    return 1100 + (p.size or 0) * 12 // 5
_HDR = HEADER.unpack_from
_U32 = struct.Struct("<I").unpack_from
_II = struct.Struct("<II").unpack_from
NONE_POLICY = POLICY_PREFIX + "None"
#: A flow reached by port is declared "not OPC UA" after this many bad headers with no good one.
VIOLATION_LIMIT = 3
MAX_CHANNELS = 16  # secure channels remembered per flow (renewals keep the id; reconnects open new flows)
#: Smallest legal size per message type: header 8 + fields (HEL: 5 UInt32 + String length).
_MIN_SIZE = {b"HEL": 32, b"ACK": 28, b"ERR": 16, b"RHE": 16, b"OPN": 24, b"MSG": 24, b"CLO": 24}
_MAX_HANDSHAKE = 8 + 20 + 4 + 4096 * 2  # HEL/ACK/ERR/RHE are small: strings at most 4096 bytes each
_SEQ_ROLLOVER = 0xFFFFFFFF - 1024  # 6.7.2.4: wraps to a value below 1024 once past UInt32.Max - 1024
_TAGS = (b"MSG", b"OPN", b"CLO", b"HEL", b"ACK", b"ERR", b"RHE")
#: What a kept piece costs beyond its bytes (bytes header, list slot), charged to the table's global
#: reassembly pool (limits.reassembly_total) so that many flows cannot add their per-flow caps up.
_PIECE = 48


def probe(buf: bytes, to_server: bool) -> int:
    """Content probe on other ports: a HEL from the client or an ACK/ERR from the server (or a
    ReverseHello either way), one whole transport header with a plausible size. 1 yes, 0 no, -1 more."""
    if len(buf) < 8:
        for tag in (b"HELF", b"RHEF") if to_server else (b"ACKF", b"ERRF", b"RHEF"):
            if tag.startswith(buf[:4]):
                return -1
        return 0
    mt, ct, size = _HDR(buf)
    if ct != b"F":
        return 0
    if to_server and mt == b"HEL" and 32 <= size <= _MAX_HANDSHAKE:
        return 1
    if not to_server and mt == b"ACK" and size == 28:
        return 1
    if not to_server and mt == b"ERR" and 16 <= size <= _MAX_HANDSHAKE:
        return 1
    if mt == b"RHE" and 16 <= size <= _MAX_HANDSHAKE:
        return 1
    return 0


class _Dir:
    """Framing state of one TCP direction."""

    __slots__ = ("parts", "have", "need", "skip", "lost", "held")

    def __init__(self):
        self.held = 0  # bytes of `parts` charged to the reassembly pool
        self.parts: list[bytes] = []  # bytes of an incomplete chunk (joined once it is whole)
        self.have = 0
        self.need = 8
        self.skip = 0  # bytes of an oversized chunk still to pass over unread
        self.lost = False  # after a gap or garbage: hunting for the next plausible header


class _Channel:
    __slots__ = ("policy_uri", "mode", "token_id", "sig", "client_cert", "server_cert", "clear")

    def __init__(self, policy_uri: str | None):
        self.policy_uri = policy_uri
        self.mode: str | None = "None" if policy_uri == NONE_POLICY else None
        self.token_id: int | None = None
        self.sig = SIGNATURE_SIZES.get(policy_name(policy_uri) or "", 0)
        self.client_cert: bytes | None = None
        self.server_cert: bytes | None = None
        self.clear = [policy_uri == NONE_POLICY or None] * 2  # per direction: body readable?


class _Partial:
    """A message being reassembled from chunks (6.7.2.2): bodies in order, within the caps."""

    __slots__ = ("ts", "mt", "cid", "token", "seq", "parts", "size", "chunks", "dropped", "head", "anomalies",
                 "held")

    def __init__(self, ts, mt, cid, token, seq):
        self.held = 0  # bytes of `parts` charged to the reassembly pool
        self.ts = ts
        self.mt = mt
        self.cid = cid
        self.token = token
        self.seq = seq
        self.parts: list[bytes] = []
        self.size = 0
        self.chunks = 0
        self.dropped = False
        self.head = b""  # first bytes of the body, kept when the rest is dropped: names the service
        self.anomalies: tuple = ()


class _Pending:
    __slots__ = ("ts", "mt", "body", "cid", "token", "rid", "seq", "size", "chunks", "opn", "anomalies", "deadline")

    def __init__(self, ts, mt, body, cid, token, rid, seq, size, chunks, opn, anomalies, deadline):
        self.ts, self.mt, self.body, self.cid, self.token, self.rid = ts, mt, body, cid, token, rid
        self.seq, self.size, self.chunks, self.opn, self.anomalies, self.deadline = seq, size, chunks, opn, anomalies, deadline


class OpcuaSession:
    __slots__ = ("sc", "emit", "cfg", "cap", "timeout", "dirs", "flip", "hello", "limits",
                 "channels", "partial", "pending", "opn_pending", "enc", "last_seq", "valid", "bad",
                 "server_sha1", "stats", "pool")

    def __init__(self, sc: SessionContext):
        self.sc = sc
        self.emit = sc.emit
        cfg = self.cfg = sc.config.opcua
        self.cap = cfg.max_values
        self.timeout = cfg.request_timeout * NS
        self.dirs = (_Dir(), _Dir())
        self.flip = 0  # 1 when the TCP client is the OPC UA server (reverse connect, 7.1.2.6)
        self.hello: tuple | None = None  # (ts, HEL fields, anomalies) until the ACK or ERR
        self.limits = [(0, 0), (0, 0)]  # per UA direction (0 = to server): (max message size, max chunks)
        self.channels: dict[int, _Channel] = {}
        self.partial: tuple[dict, dict] = ({}, {})  # per UA direction: request id -> _Partial
        # request handle -> request awaiting its response, counted across flows (limits.pending_total)
        self.pending: Charged = Charged(sc.pending_pool, _pending_cost)  # typed so: compiled code keeps its methods
        self.opn_pending: tuple | None = None  # encrypted OPN request awaiting its response
        self.enc = [[0, 0, 0], [0, 0, 0]]  # per UA direction: chunks, bytes, first ts of an encrypted message
        self.last_seq: list[int | None] = [None, None]
        self.valid = 0
        self.bad = 0
        self.server_sha1: set[bytes] = set()  # leaf SHA-1 of every server certificate seen on this flow
        self.stats = {"messages": 0, "encrypted": 0}
        self.pool = sc.reassembly_pool

    # ------------------------------------------------------------------ stream input
    def data(self, to_server: bool, data: bytes, ts: int) -> None:
        i = 0 if to_server else 1
        st = self.dirs[i]
        if st.skip:
            if len(data) <= st.skip:
                st.skip -= len(data)
                return
            data = data[st.skip:]
            st.skip = 0
        if st.parts:
            st.parts.append(data)
            st.have += len(data)
            if st.have < st.need:
                if not self._charge(st, len(data), ts):
                    self._drop_chunk(i, st, ts)
                return
            data = b"".join(st.parts)
            st.parts = []
            st.have = 0
            self._release(st)
        off = 0
        if st.lost:
            off = self._hunt(data, 0)
            if off < 0:
                if self.valid == 0:  # nothing OPC UA seen yet and still no header: count it against the flow
                    self.bad += 1
                    if self.bad >= VIOLATION_LIMIT:
                        self.sc.detach(ts, f"no OPC UA header in {self.bad} segments")
                        return
                keep = data[-7:]
                st.parts, st.have, st.need = [keep], len(keep), 8
                return
            st.lost = False
        n = len(data)
        max_chunk = self.cfg.max_chunk_size
        while n - off >= 8:
            mt, ct, size = _HDR(data, off)
            if mt not in MESSAGE_TYPES or ct not in CHUNK_TYPES or size < _MIN_SIZE[mt] or \
                    (mt in (b"HEL", b"ACK", b"ERR", b"RHE") and (ct != b"F" or size > _MAX_HANDSHAKE)):
                if self._bad_header(i, ts, data, off):
                    return
                nxt = self._hunt(data, off + 1)
                if nxt < 0:
                    keep = data[max(off + 1, n - 7):]
                    st.parts, st.have, st.need, st.lost = [keep], len(keep), 8, True
                    return
                off = nxt
                continue
            if size > max_chunk:
                self._oversized(i, ts, mt, size, data, off)
                if off + size <= n:
                    off += size
                    continue
                st.skip = off + size - n
                return
            end = off + size
            if end > n:
                st.need = size
                break
            self.valid += 1
            self._frame(i, mt, ct, data, off, end, ts)
            off = end
        else:
            st.need = 8
        if off < n:
            rest = data[off:] if off else data
            st.parts = [rest]
            st.have = len(rest)
            if len(rest) < 8:
                st.need = 8
            elif not self._charge(st, len(rest), ts):
                self._drop_chunk(i, st, ts)
        else:
            st.need = 8

    # ------------------------------------------------------------------ the global reassembly bound
    def _charge(self, holder, n: int, ts: int) -> bool:
        """Charge `n` kept bytes of `holder` (a _Dir or _Partial) to the pool; False when it is full."""
        pool = self.pool
        if pool is None:
            return True
        cost = n + _PIECE
        holder.held += cost
        if pool.take(cost):
            return True
        self.sc.memory_cap(ts, pool)
        return False

    def _release(self, holder) -> None:
        if holder.held:
            if self.pool is not None:
                self.pool.give(holder.held)
            holder.held = 0

    def _drop_chunk(self, i: int, st: _Dir, ts: int) -> None:
        """The pool is full: give up the chunk being received, pass over its rest unread, say so."""
        head = st.parts[0] if st.parts else b""
        mt = head[:3] if len(head) >= 3 and head[:3] in _TAGS else b"MSG"
        self._emit_simple(ts, mt.decode(), "Oversized", {"chunk_size": st.need, "held": st.have}, i,
                          ("chunk_cap_hit", "reassembly_memory_cap"))
        st.skip = max(0, st.need - st.have)
        st.parts, st.have, st.need = [], 0, 8
        self._release(st)

    def _bad_header(self, i: int, ts: int, data: bytes, off: int) -> bool:
        """Record a header that cannot be OPC UA; True when the flow was handed back (never was OPC UA)."""
        self.bad += 1
        if self.valid == 0 and self.bad >= VIOLATION_LIMIT:
            self.sc.detach(ts, f"{self.bad} invalid OPC UA headers and no valid one")
            return True
        if self.valid or self.bad == 1:
            raw = bytes(data[off:off + 3])
            mt = raw.decode("ascii", "backslashreplace")
            self._emit_simple(ts, mt if raw in MESSAGE_TYPES else "unknown", "Malformed",
                              {"header": bytes(data[off:off + 8]).hex()}, i, ("malformed_message",))
        return False

    def _hunt(self, data: bytes, start: int) -> int:
        """Offset of the next plausible transport header at or after `start`, or -1. MSG/CLO headers must
        name a channel already seen (when any is), which makes a false resynchronisation unlikely."""
        n = len(data)
        max_chunk = self.cfg.max_chunk_size
        chans = self.channels
        pos = start
        while True:
            best = -1
            for tag in _TAGS:
                p = data.find(tag, pos)
                if p >= 0 and (best < 0 or p < best):
                    best = p
            if best < 0:
                return -1
            if best + 8 > n:
                return best
            mt, ct, size = _HDR(data, best)
            ok = ct in CHUNK_TYPES and _MIN_SIZE[mt] <= size <= max_chunk
            if ok and mt in (b"MSG", b"CLO") and chans and best + 12 <= n:
                ok = _U32(data, best + 8)[0] in chans
            if ok and mt in (b"HEL", b"ACK", b"ERR", b"RHE"):
                ok = ct == b"F" and size <= _MAX_HANDSHAKE
            if ok:
                return best
            pos = best + 1

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None:
        i = 0 if to_server else 1
        st = self.dirs[i]
        if st.skip:  # the hole fell inside a chunk we were skipping anyway: still in step
            if nbytes <= st.skip:
                st.skip -= nbytes
                return
            st.skip = 0
        st.parts, st.have, st.need, st.lost = [], 0, 8, True
        self._release(st)
        ua = i ^ self.flip
        for p in self.partial[ua].values():
            self._emit_partial(p, ua, ts, ("tcp_gap", "incomplete_message"))
        self.partial[ua].clear()
        self.last_seq[ua] = None
        self.enc[ua] = [0, 0, 0]

    def _oversized(self, i, ts, mt, size, data, off) -> None:
        cid = _U32(data, off + 8)[0] if mt in (b"OPN", b"MSG", b"CLO") and off + 12 <= len(data) else None
        self._emit_simple(ts, mt.decode(), "Oversized", {"chunk_size": size, "max_chunk_size": self.cfg.max_chunk_size},
                          i, ("chunk_cap_hit",), cid)

    # ------------------------------------------------------------------ transport messages
    def _frame(self, i, mt, ct, data, off, end, ts) -> None:
        if mt == b"MSG" or mt == b"OPN" or mt == b"CLO":
            self._secure(i, mt, ct, data, off, end, ts)
        elif mt == b"HEL":
            if i == 1:
                self.flip = 1  # the TCP server said HEL: the TCP client is the UA server (reverse connect)
            if self.hello is not None:
                self._hello_done(ts, None, ("unanswered_request",))
            d, an = parse_hello(data[off + 8:end])
            self.hello = (ts, d, an)
            for dd in self.dirs:
                dd.lost = False
            ml = (d.get("max_message_size", 0), d.get("max_chunk_count", 0))
            self.limits[1] = ml  # the client's limits bound what the server may send it
        elif mt == b"ACK":
            d, an = parse_ack(data[off + 8:end])
            self.limits[0] = (d.get("max_message_size", 0), d.get("max_chunk_count", 0))
            self._hello_done(ts, d, an)
        elif mt == b"ERR":
            d, an = parse_error(data[off + 8:end])
            if self.hello is not None:
                self._hello_done(ts, d, an)
            else:
                self._emit_simple(ts, "ERR", "Error", d, i, an, status=d.get("status_code"))
        else:  # RHE
            if i == 0 and self.valid == 1:
                self.flip = 1
            d, an = parse_reverse_hello(data[off + 8:end])
            self._emit_simple(ts, "RHE", "ReverseHello", d, i, an, url=d.get("endpoint_url"))

    def _hello_done(self, ts, resp: dict | None, an: tuple) -> None:
        if self.hello is None:  # ACK without a HEL (capture started between them)
            hts, hel, han = ts, None, ("unsolicited_response",)
        else:
            hts, hel, han = self.hello
        self.hello = None
        code = resp.get("status_code") if resp else None
        self.emit(OpcuaEvent(hts, self.sc.context, "HEL", "Hello", None, None, None, None, None, None, False,
                             code, resp.get("status") if code is not None else None, (),
                             (hel or {}).get("endpoint_url"), None, None, hel, resp, None, han + an,
                             ts if resp is not None else None))

    def _emit_simple(self, ts, mt, service, d, i, an, cid=None, status=None, url=None) -> None:
        to_server = (i ^ self.flip) == 0
        self.emit(OpcuaEvent(ts, self.sc.context, mt, service, cid, None, None, None, None, None, False,
                             status, d.get("status") if status is not None else None, (), url, None, None,
                             d if to_server else None, None if to_server else d, None, an, None))

    # ------------------------------------------------------------------ secure conversation
    def _secure(self, i, mt, ct, data, off, end, ts) -> None:
        ua = i ^ self.flip
        cid = _U32(data, off + 8)[0]
        p = off + 12
        opn = None
        token = None
        if mt == b"OPN":
            try:
                opn, p = parse_asymmetric_header(data, p)
            except Bad as e:
                self._emit_simple(ts, "OPN", "OpenSecureChannel", {"chunk_size": end - off}, i,
                                  ("malformed_message", e.args[0]), cid)
                return
            if p > end:
                self._emit_simple(ts, "OPN", "OpenSecureChannel", {"chunk_size": end - off}, i,
                                  ("malformed_message",), cid)
                return
            uri = opn[0]
            ch = None
        else:
            token = _U32(data, p)[0]
            p += 4
            ch = self.channels.get(cid)
            uri = ch.policy_uri if ch is not None else None
        parts = self.partial[ua]
        if end - p < 8:
            self._emit_simple(ts, mt.decode(), "Malformed", {"chunk_size": end - off}, i, ("malformed_message",), cid)
            return
        seq, rid = _II(data, p)
        # Readable? Policy None always; otherwise only if the bytes look like clear text: a continuation of
        # a message being reassembled, or the start of a service this message type can carry.
        if uri == NONE_POLICY:
            clear = True
        else:
            prev = parts.get(rid)
            last = self.last_seq[ua]
            clear = (prev is not None and prev.mt == mt and (last is None or seq == last + 1)) or \
                is_service_start(data, p + 8, mt)
        if not clear:
            self._encrypted(i, ua, mt, ct, cid, token, end - off, ts, opn)
            return
        if ch is not None and uri != NONE_POLICY and ch.mode is None:
            ch.mode = "Sign"
        an = self._seq_check(ua, mt, seq)
        p += 8
        body_end = end - (ch.sig if ch is not None and uri != NONE_POLICY and mt != b"OPN" else 0)
        if body_end < p:
            body_end = p
        part = parts.get(rid)
        if ct == b"F" and part is None:
            self._message(ua, mt, cid, token, seq, rid, data[p:body_end], ts, 1, end - off, an, opn)
            return
        if ct == b"A":
            d, an2 = parse_error(data[p:body_end])
            if part is not None:
                del parts[rid]
                self._emit_partial(part, ua, ts, an + an2 + ("aborted",), d)
            else:
                self._emit_simple(ts, mt.decode(), "Abort", d, i, an + an2 + ("aborted",), cid,
                                  status=d.get("status_code"))
            return
        if part is None:
            if len(parts) >= self.cfg.max_partial_messages:
                old = next(iter(parts))
                self._emit_partial(parts.pop(old), ua, ts, ("too_many_partial_messages", "incomplete_message"))
            part = parts[rid] = _Partial(ts, mt, cid, token, seq)
        part.chunks += 1
        n = body_end - p
        part.size += end - off
        part.anomalies += an
        if not part.dropped:
            mms, mcc = self.limits[ua]
            over = ""
            if (mcc and part.chunks > mcc) or (mms and part.size > mms):
                part.anomalies += ("chunk_limit_exceeded",)
                over = "negotiated"
            if part.size > self.cfg.max_message_size or part.chunks > self.cfg.max_chunks:
                over = "cap"
            if over == "cap":
                part.dropped = True
                part.anomalies += ("chunk_cap_hit",)
                if not part.head and part.parts:
                    part.head = part.parts[0][:512]
                part.parts = []
                self._release(part)
            elif n:
                if self._charge(part, n, ts):
                    part.parts.append(data[p:body_end])
                else:
                    part.dropped = True
                    part.anomalies += ("chunk_cap_hit", "reassembly_memory_cap")
                    if not part.head:
                        part.head = (part.parts[0] if part.parts else data[p:body_end])[:512]
                    part.parts = []
                    self._release(part)
            if over == "negotiated" and not part.dropped:
                self.limits[ua] = (0, 0)  # flagged once; keep reassembling within our own cap
        if ct == b"F":
            del parts[rid]
            if part.dropped:
                self._emit_partial(part, ua, ts, ())
            else:
                self._release(part)
                self._message(ua, mt, cid, token, part.seq, rid, b"".join(part.parts), part.ts, part.chunks,
                              part.size, part.anomalies, opn)

    def _seq_check(self, ua: int, mt: bytes, seq: int) -> tuple:
        last = self.last_seq[ua]
        self.last_seq[ua] = seq
        if last is None or mt == b"OPN":
            return ()
        if seq == last + 1 or (last >= _SEQ_ROLLOVER and seq < 1024):
            return ()
        return ("sequence_replay",) if seq <= last else ("sequence_gap",)

    def _emit_partial(self, part: _Partial, ua: int, ts: int, an: tuple, abort: dict | None = None) -> None:
        """A message that will not be decoded whole (cap hit, aborted, cut by a gap): report what it was."""
        head = part.head or (part.parts[0][:512] if part.parts else b"")
        self._release(part)
        b = parse_body(head, self.cap) if head else None
        service = b.service if b is not None and b.kind != "unknown" else "unknown"
        d = {"chunks": part.chunks, "size": part.size, "sequence_number": part.seq}
        if abort:
            d["abort"] = abort
        handle = b.header.get("request_handle") if b is not None and b.header else None
        to_server = ua == 0
        if to_server and handle is not None and b.kind == "request":
            self.pending.pop(handle, None)
        ch = self.channels.get(part.cid)
        self.emit(OpcuaEvent(part.ts, self.sc.context, part.mt.decode(), service, part.cid, part.token, None,
                             handle, ch.policy_uri if ch else None, ch.mode if ch else None, False, None, None,
                             (), None, None, None, d if to_server else None, None if to_server else d, None,
                             part.anomalies + an, None))

    # ------------------------------------------------------------------ encrypted channels
    def _encrypted(self, i, ua, mt, ct, cid, token, size, ts, opn) -> None:
        self.stats["encrypted"] += 1
        if mt == b"OPN":
            if ct != b"F":
                return  # the header repeats on every chunk; report once, on the final one
            if ua == 0:
                if self.opn_pending is not None:
                    self._opn_encrypted_done(ts, None, None, ("unanswered_request",))
                self.opn_pending = (ts, cid, opn, size)
            else:
                self._opn_encrypted_done(ts, cid, opn, ())
            return
        ch = self.channels.get(cid)
        if ch is not None and ch.mode is None:
            ch.mode = "SignAndEncrypt"
        e = self.enc[ua]
        if not e[0]:
            e[2] = ts
        e[0] += 1
        e[1] += size
        if ct == b"C":
            return
        d = {"chunks": e[0], "size": e[1]}
        an = ("aborted",) if ct == b"A" else ()
        first = e[2]
        self.enc[ua] = [0, 0, 0]
        to_server = ua == 0
        self.emit(OpcuaEvent(first, self.sc.context, mt.decode(),
                             "CloseSecureChannel" if mt == b"CLO" else "Encrypted", cid, token, None, None,
                             ch.policy_uri if ch else None, ch.mode if ch else None, True, None, None, (), None,
                             None, None, d if to_server else None, None if to_server else d, None, an, None))

    def _opn_encrypted_done(self, ts, cid, ropn, an) -> None:
        """An OPN pair whose bodies are ciphertext: the security headers still say who talks to whom."""
        q = self.opn_pending
        self.opn_pending = None
        if q is None:  # a response without the request (capture started late)
            qts, qcid, qopn, qsize = ts, cid, None, None
            an = an + ("unsolicited_response",)
        else:
            qts, qcid, qopn, qsize = q
        uri = (qopn or ropn)[0]
        ccert = qopn[1] if qopn else None
        scert = ropn[1] if ropn else None
        req = {"size": qsize} if q is not None else None
        resp = {"secure_channel_id": cid} if ropn is not None else None
        an = an + self._thumb_check(qopn, ropn, ccert, scert, req, resp)
        ch = None
        if cid is not None and ropn is not None:
            ch = self.channels.get(cid)
            if ch is None or ch.policy_uri != uri:
                ch = self._new_channel(cid, uri)
            ch.client_cert, ch.server_cert = ccert, scert
        self.emit(OpcuaEvent(qts, self.sc.context, "OPN", "OpenSecureChannel", cid if cid is not None else qcid,
                             None, None, None, uri, ch.mode if ch else None, True, None, None, (), None, None,
                             None, req, resp, self._cert_docs(((("client", ccert),) if ccert else ()) +
                                                              ((("server", scert),) if scert else ())),
                             an, ts if ropn is not None else None))

    def _new_channel(self, cid: int, uri: str | None) -> _Channel:
        chans = self.channels
        if len(chans) >= MAX_CHANNELS and cid not in chans:
            del chans[next(iter(chans))]  # one TCP connection carries one channel at a time; old ones go
        ch = chans[cid] = _Channel(uri)
        return ch

    def _thumb_check(self, qopn, ropn, ccert, scert, req, resp) -> tuple:
        """ReceiverCertificateThumbprint is the SHA-1 of the peer's certificate (6.7.2.3): check it against
        the certificate the peer actually presented, whenever both are seen."""
        an = ()
        if qopn is not None and qopn[2]:
            if req is not None:
                req["receiver_thumbprint"] = qopn[2].hex().upper()
            known = ({_certs.leaf_sha1(scert)} if scert else set()) or self.server_sha1
            if known and qopn[2] not in known:
                an += ("thumbprint_mismatch",)
        if ropn is not None and ropn[2]:
            if resp is not None:
                resp["receiver_thumbprint"] = ropn[2].hex().upper()
            if ccert and ropn[2] != _certs.leaf_sha1(ccert):
                an += ("thumbprint_mismatch",) if "thumbprint_mismatch" not in an else ()
        if scert:
            self.server_sha1.add(_certs.leaf_sha1(scert))
        return an

    def _cert_docs(self, pairs) -> dict | None:
        out: dict = {}
        extra = []
        for role, blob in pairs:
            if not blob:
                continue
            if role not in out:
                out[role] = _certs.describe_chain(blob)
            elif _certs.describe(blob)["hash"] != out[role]["hash"] and role == "server":
                doc = _certs.describe_chain(blob)
                if all(doc["hash"] != e["hash"] for e in extra):
                    extra.append(doc)
            if role == "server":
                self.server_sha1.add(_certs.leaf_sha1(blob))
        if extra:
            out["endpoint"] = extra
        return out or None

    # ------------------------------------------------------------------ services
    def _message(self, ua, mt, cid, token, seq, rid, body, ts, chunks, size, an, opn) -> None:
        self.stats["messages"] += 1
        b = parse_body(body, self.cap)
        if b.kind == "request":
            if ua != 0:
                an += ("request_from_server",)
            self._request(ua, mt, b, cid, token, seq, rid, ts, chunks, size, an, opn)
        elif b.kind in ("response", "fault"):
            if ua != 1:
                an += ("response_from_client",)
            self._response(mt, b, cid, token, seq, rid, ts, chunks, size, an, opn)
        else:
            d = {"sequence_number": seq, "chunks": chunks, "size": size}
            ch = self.channels.get(cid)
            self.emit(OpcuaEvent(ts, self.sc.context, mt.decode(), b.service, cid, token, rid, None,
                                 ch.policy_uri if ch else (opn[0] if opn else None), ch.mode if ch else None,
                                 False, None, None, (), None, None, None, d if ua == 0 else None,
                                 None if ua == 0 else d, None, an + b.anomalies, None))

    def _request(self, ua, mt, b, cid, token, seq, rid, ts, chunks, size, an, opn) -> None:
        h = b.header or {}
        handle = h.get("request_handle")
        p = _Pending(ts, mt, b, cid, token, rid, seq, size, chunks, opn, an + b.anomalies, 0)
        hint = h.get("timeout_hint") or 0
        p.deadline = ts + max(self.timeout, hint * 1_000_000 + 5 * NS)
        if mt == b"CLO" or b.service == "CloseSecureChannel":  # no response follows (4: 5.5.3)
            # the channel stays known: requests still pending on it are reported with its policy and mode
            self._emit_pair(p, None, None, ts)
            return
        if handle is None:
            self._emit_pair(p, None, None, ts)
            return
        pending = self.pending
        old = pending.pop(handle, None)
        if old is not None:  # reused before an answer: the old request got none
            self._emit_pair(old, None, None, ts, extra=("unanswered_request", "duplicate_request_handle"))
        elif len(pending) >= self.cfg.max_pending:
            oh = next(iter(pending))
            self._emit_pair(pending.pop(oh), None, None, ts, extra=("unanswered_request", "too_many_pending"))
        pending[handle] = p
        if pending.take_over():  # limits.pending_total: this flow gives up its oldest
            oh = next(iter(pending))
            self._emit_pair(pending.pop(oh), None, None, ts, extra=("unanswered_request", "too_many_pending"))
            self.sc.memory_cap(ts, pending.pool)

    def _response(self, mt, b, cid, token, seq, rid, ts, chunks, size, an, opn) -> None:
        h = b.header or {}
        handle = h.get("request_handle")
        p = self.pending.pop(handle, None) if handle is not None else None
        r = (mt, b, cid, token, seq, rid, chunks, size, an + b.anomalies, opn)
        if p is None:
            self._emit_pair(None, r, None, ts, extra=("unsolicited_response",))
            return
        extra = ()
        if b.kind == "response" and b.service != p.body.service:
            extra += ("service_mismatch",)
        if rid != p.rid:
            extra += ("request_id_mismatch",)
        self._emit_pair(p, r, None, ts, extra=extra)

    def _emit_pair(self, p: _Pending | None, r: tuple | None, _unused, ts: int, extra: tuple = (), ch=None) -> None:
        """Build the one event for a request and/or its response."""
        an = extra
        req = resp = None
        nodes: list = []
        certs: list = []
        url = app = utok = None
        rts = None
        if p is not None:
            qb = p.body
            an = p.anomalies + an
            req = {"sequence_number": p.seq, "chunks": p.chunks, "size": p.size}
            h = qb.header or {}
            if h.get("timeout_hint"):
                req["timeout_hint"] = h["timeout_hint"]
            if h.get("return_diagnostics"):
                req["return_diagnostics"] = h["return_diagnostics"]
            req.update(qb.details)
            if qb.identity is not None:
                req["identity"] = qb.identity
                utok = qb.identity.get("token_type")
            nodes = qb.nodes
            certs += qb.certs
            if p.opn is not None and p.opn[1]:
                certs.append(("client", p.opn[1]))
            url = qb.details.get("endpoint_url")
            client = qb.details.get("client")
            if client:
                app = client.get("application_uri")
            service, mt, cid, token, rid, handle, ts0 = (qb.service, p.mt, p.cid, p.token, p.rid,
                                                         h.get("request_handle"), p.ts)
        status = code = None
        if r is not None:
            rmt, rb, rcid, rtoken, rseq, rrid, rchunks, rsize, ran, ropn = r
            an = an + ran
            resp = {"sequence_number": rseq, "chunks": rchunks, "size": rsize}
            rh = rb.header or {}
            if rb.kind == "fault":
                resp["service_fault"] = True
            for k in ("diagnostic_info", "string_table"):
                if k in rh:
                    resp[k] = rh[k]
            resp.update(rb.details)
            code = rh.get("status_code")
            status = rh.get("status")
            res = rb.details.get("results")
            if res and type(res[0]) is dict:
                bad = sorted({x["status"] for x in res if x.get("status_code", 0) & 0xC0000000})
                if bad:
                    resp["operation_status"] = bad
            certs += rb.certs
            if ropn is not None and ropn[1]:
                certs.append(("server", ropn[1]))
            if not nodes and rb.nodes:
                nodes = rb.nodes
            if app is None:
                eps = rb.details.get("endpoints") or rb.details.get("servers")
                if eps:
                    first = eps[0]
                    app = (first.get("server") or first).get("application_uri")
            rts = ts
            if p is None:
                service, mt, cid, token, rid, handle, ts0 = (rb.service, rmt, rcid, rtoken, rrid,
                                                             rh.get("request_handle"), ts)
            elif rb.kind == "fault" and service == "unknown":
                service = "ServiceFault"
        if p is not None and r is not None:
            cid = r[2] if p.cid == 0 else p.cid
        # channel state from an OpenSecureChannel exchange in clear (policy None, or signed-only OPN)
        ch = ch or self.channels.get(cid)
        qopn = p.opn if p is not None else None
        ropn = r[9] if r is not None else None
        if service == "OpenSecureChannel":
            if r is not None and r[1].kind == "response":
                d = r[1].details
                cid = d.get("secure_channel_id", cid)
                ch = self.channels.get(cid)
                uri = (qopn or ropn or (None,))[0]
                if ch is None or (req or {}).get("request_type") == "issue":
                    ch = self._new_channel(cid, uri)
                ch.token_id = d.get("token_id")
                token = ch.token_id
                if req and req.get("security_mode"):
                    ch.mode = req["security_mode"]
            an = an + self._thumb_check(qopn, ropn, qopn[1] if qopn else None, ropn[1] if ropn else None, req, resp)
        policy = ch.policy_uri if ch is not None else (qopn or ropn or (None,))[0]
        mode = ch.mode if ch is not None else (req or {}).get("security_mode")
        if url is None and req is not None and service == "Hello":
            url = req.get("endpoint_url")
        self.emit(OpcuaEvent(ts0, self.sc.context, mt.decode(), service, cid, token, rid, handle, policy, mode,
                             False, code, status, tuple(nodes), url, app, utok, req, resp,
                             self._cert_docs(certs) if certs else None, an, rts))

    # ------------------------------------------------------------------ time and end
    def expire(self, now: int) -> None:
        pending = self.pending
        if pending:
            old = [h for h, p in pending.items() if p.deadline < now]
            for h in old:
                self._emit_pair(pending.pop(h), None, None, now, extra=("unanswered_request",))
        if self.hello is not None and self.hello[0] < now - self.timeout:
            self._hello_done(now, None, ("unanswered_request",))
        for ua in (0, 1):
            parts = self.partial[ua]
            if parts:
                stale = [rid for rid, p in parts.items() if p.ts < now - self.timeout]
                for rid in stale:
                    self._emit_partial(parts.pop(rid), ua, now, ("incomplete_message",))

    def close(self, ts: int) -> None:
        for h in list(self.pending):
            self._emit_pair(self.pending.pop(h), None, None, ts, extra=("unanswered_request",))
        if self.hello is not None:
            self._hello_done(ts, None, ("unanswered_request",))
        if self.opn_pending is not None:
            self._opn_encrypted_done(ts, None, None, ("unanswered_request",))
        for ua in (0, 1):
            for p in self.partial[ua].values():
                self._emit_partial(p, ua, ts, ("incomplete_message",))
            self.partial[ua].clear()
        for i, st in enumerate(self.dirs):
            if st.have and not st.lost:
                self.sc.truncated(ts, "opcua", st.have, i == 0)
            st.parts, st.have = [], 0
            self._release(st)
