"""IPv4/IPv6 fragment reassembly, bounded in datagrams, fragments per datagram, bytes (per datagram and in
total, counted with per-fragment overhead) and time.

First copy wins on overlap (and the overlap is reported: it is a classic evasion); a datagram whose
fragments do not all arrive within the timeout is dropped with a notice, never silently. The bytes covered
so far are kept as a merged list of intervals, so each fragment costs O(log n) plus the intervals it
joins, and a datagram is assembled once, when the intervals close up: linear in fragments however they
are ordered or overlap.
"""
from __future__ import annotations

from bisect import bisect_right

#: What one held fragment costs beyond its bytes (dict entry, int key, interval list slots), tracemalloc
FRAG_OVERHEAD = 120


class _Datagram:
    __slots__ = ("first_ts", "parts", "size", "total", "overlap", "starts", "ends", "cost")

    def __init__(self, ts: int):
        self.first_ts = ts
        self.parts: dict[int, bytes] = {}
        self.size = 0
        self.total: int | None = None
        self.overlap = False
        self.starts: list[int] = []  # the union of what arrived, as disjoint sorted intervals
        self.ends: list[int] = []
        self.cost = 0  # bytes held, overhead included


class FragmentReassembler:
    def __init__(self, max_datagrams: int = 1024, max_bytes: int = 65535 + 2048, timeout_ns: int = 30 * 10**9,
                 max_fragments: int = 1024, max_total_bytes: int = 16 << 20):
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_ns = timeout_ns
        self.max_fragments = max_fragments
        self.max_total_bytes = max_total_bytes
        self.pending: dict[tuple, _Datagram] = {}
        self.held = 0  # bytes held over all pending datagrams, overhead included
        self.completed = 0
        self.dropped = 0

    def add(self, ts: int, key: tuple, offset: int, more: bool, data: bytes, notices: list) -> bytes | None:
        """Add one fragment; return the whole payload once complete, else None."""
        pending = self.pending
        d = pending.get(key)
        if d is None:
            if len(pending) >= self.max_datagrams:
                self.expire(ts, notices, force_oldest=True)
            d = pending[key] = _Datagram(ts)
        end = offset + len(data)
        if offset not in d.parts:
            if len(d.parts) >= self.max_fragments:
                self._drop(key, d)
                notices.append((ts, "ip_fragment_too_many", {"max_fragments": self.max_fragments,
                                                             "bytes": d.size}))
                return None
            d.parts[offset] = data
            d.size += len(data)
            cost = len(data) + FRAG_OVERHEAD
            d.cost += cost
            self.held += cost
        else:
            d.overlap = True
        if data:
            self._cover(d, offset, end)
        if not more:
            d.total = end
        if d.size > self.max_bytes:
            self._drop(key, d)
            notices.append((ts, "ip_fragment_oversize", {"bytes": d.size}))
            return None
        if self.held > self.max_total_bytes:
            self._shed(ts, key, notices)
            if key not in pending:
                return None
        if d.total is None or len(d.starts) != 1 or d.starts[0] != 0 or d.ends[0] < d.total:
            return None
        # Assemble in offset order, first copy wins: later bytes covering earlier ones are skipped.
        out = bytearray()
        for o in sorted(d.parts):
            p = d.parts[o]
            if o + len(p) > len(out):
                out += p[len(out) - o:]
        self._drop(key, d, dropped=False)
        self.completed += 1
        if d.overlap:
            notices.append((ts, "ip_fragment_overlap", {"bytes": d.total}))
        return bytes(out[:d.total])

    @staticmethod
    def _cover(d: _Datagram, a: int, b: int) -> None:
        """Merge [a, b) into the datagram's intervals; note an overlap with what was there."""
        starts, ends = d.starts, d.ends
        i = bisect_right(starts, a)
        if i and ends[i - 1] >= a:
            i -= 1
        j = i
        lo, hi = a, b
        n = len(starts)
        while j < n and starts[j] <= hi:
            s, e = starts[j], ends[j]
            if s < b and a < e:
                d.overlap = True
            if s < lo:
                lo = s
            if e > hi:
                hi = e
            j += 1
        starts[i:j] = [lo]
        ends[i:j] = [hi]

    def _drop(self, key: tuple, d: _Datagram, dropped: bool = True) -> None:
        del self.pending[key]
        self.held -= d.cost
        if dropped:
            self.dropped += 1

    def _shed(self, ts: int, keep: tuple, notices: list) -> None:
        """Over the total: drop the oldest datagrams (the one being added last) and say so once."""
        n = 0
        for k in list(self.pending):
            if self.held <= self.max_total_bytes:
                break
            if k == keep and len(self.pending) > 1:
                continue
            self._drop(k, self.pending[k])
            n += 1
        if self.held > self.max_total_bytes and keep in self.pending:
            self._drop(keep, self.pending[keep])
            n += 1
        notices.append((ts, "memory_cap", {"pool": "ip_fragments", "max_bytes": self.max_total_bytes,
                                           "refused": n}))

    def expire(self, now: int, notices: list, force_oldest: bool = False) -> None:
        # Datagrams sit in arrival order: the expired ones are at the front.
        old = []
        for k, d in self.pending.items():
            if now - d.first_ts <= self.timeout_ns:
                break
            old.append(k)
        if force_oldest and not old and self.pending:
            old = [next(iter(self.pending))]
            notices.append((now, "ip_fragment_table_full", {"max_datagrams": self.max_datagrams}))
        for k in old:
            self._drop(k, self.pending[k])
            notices.append((now, "ip_fragment_timeout", {}))
