"""IPv4/IPv6 fragment reassembly, bounded in datagrams, bytes and time.

First copy wins on overlap (and the overlap is reported: it is a classic evasion); a datagram whose
fragments do not all arrive within the timeout is dropped with a notice, never silently.
"""
from __future__ import annotations


class _Datagram:
    __slots__ = ("first_ts", "parts", "size", "total", "overlap")

    def __init__(self, ts: int):
        self.first_ts = ts
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.total: int | None = None
        self.overlap = False


class FragmentReassembler:
    def __init__(self, max_datagrams: int = 1024, max_bytes: int = 65535 + 2048, timeout_ns: int = 30 * 10**9):
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_ns = timeout_ns
        self.pending: dict[tuple, _Datagram] = {}
        self.completed = 0
        self.dropped = 0

    def add(self, ts: int, key: tuple, offset: int, more: bool, data: bytes, notices: list) -> bytes | None:
        """Add one fragment; return the whole payload once complete, else None."""
        if len(self.pending) >= self.max_datagrams and key not in self.pending:
            self.expire(ts, notices, force_oldest=True)
        d = self.pending.get(key)
        if d is None:
            d = self.pending[key] = _Datagram(ts)
        if offset in d.parts or any(o < offset + len(data) and offset < o + len(p) for o, p in d.parts.items()):
            d.overlap = True
        if offset not in d.parts:
            d.parts[offset] = data
            d.size += len(data)
        if not more:
            d.total = offset + len(data)
        if d.size > self.max_bytes:
            del self.pending[key]
            self.dropped += 1
            notices.append((ts, "ip_fragment_oversize", {"bytes": d.size}))
            return None
        if d.total is None:
            return None
        # Assemble in offset order, first copy wins: later bytes covering earlier ones are skipped.
        out = bytearray()
        for o in sorted(d.parts):
            p = d.parts[o]
            if o > len(out):
                return None  # hole still open
            if o + len(p) > len(out):
                out += p[len(out) - o:]
        if len(out) < d.total:
            return None
        del self.pending[key]
        self.completed += 1
        if d.overlap:
            notices.append((ts, "ip_fragment_overlap", {"bytes": d.total}))
        return bytes(out[:d.total])

    def expire(self, now: int, notices: list, force_oldest: bool = False) -> None:
        old = [k for k, d in self.pending.items() if now - d.first_ts > self.timeout_ns]
        if force_oldest and not old and self.pending:
            old = [min(self.pending, key=lambda k: self.pending[k].first_ts)]
            notices.append((now, "ip_fragment_table_full", {"max_datagrams": self.max_datagrams}))
        for k in old:
            del self.pending[k]
            self.dropped += 1
            notices.append((now, "ip_fragment_timeout", {}))
