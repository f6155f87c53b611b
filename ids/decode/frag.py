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

from ..flow import budget

#: What one held fragment costs beyond its bytes (its bytes object's header, dict entry, int key), each
#: disjoint interval of what arrived (two list slots, two ints), and one datagram (its object, dict, lists,
#: key tuple): tracemalloc, tests/test_memory_total_tables.py. Before, 120 a fragment and nothing else: a
#: datagram of one fragment held 5x what it counted, 500 fragments with holes between them 1.2x.
FRAG_OVERHEAD = 80
INTERVAL_OVERHEAD = 36
DATAGRAM_OVERHEAD = 440
#: the pool's name in memory_cap notices and in limits.memory_total (ids/flow/budget.py: Shared)
POOL = "ip_fragments"


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
        self.cost = DATAGRAM_OVERHEAD  # bytes held, overhead included


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
        self.shown = 0  # what limits.memory_total was last told (a multiple of budget.REPORT_STEP)
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
            self.held += DATAGRAM_OVERHEAD
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
            before = len(d.starts)
            self._cover(d, offset, end)
            grew = (len(d.starts) - before) * INTERVAL_OVERHEAD  # a hole more (or fewer: a gap closed)
            d.cost += grew
            self.held += grew
        if not more:
            d.total = end
        if d.size > self.max_bytes:
            self._drop(key, d)
            notices.append((ts, "ip_fragment_oversize", {"bytes": d.size}))
            return None
        held = self.held
        if held > self.max_total_bytes:
            self._shed(ts, key, notices, self.max_total_bytes)
            if key not in pending:
                return None
        elif budget.SHARED is not None and (held > self.shown or held + 2 * budget.REPORT_STEP < self.shown):
            if not self._report():  # limits.memory_total reached, this pool over its share: as at its bound
                share = budget.SHARED.share(POOL)
                self._shed(ts, key, notices, share - share // 8, True)  # an eighth of room: not every fragment
                self._report()
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

    def _report(self) -> bool:
        """Tell limits.memory_total what the pool holds, rounded up to a step (counted high, never low);
        False when the tables together are over it and this pool over its share."""
        held = self.held
        self.shown = held + budget.REPORT_STEP - held % budget.REPORT_STEP
        return budget.SHARED.hold(POOL, self.shown, self.max_total_bytes)

    def _shed(self, ts: int, keep: tuple, notices: list, limit: int, shared: bool = False) -> None:
        """Over `limit` (the pool's bound, or its share of limits.memory_total): drop the oldest datagrams
        (the one being added last) and say so once."""
        n = 0
        for k in list(self.pending):
            if self.held <= limit:
                break
            if k == keep and len(self.pending) > 1:
                continue
            self._drop(k, self.pending[k])
            n += 1
        if self.held > limit and keep in self.pending:
            self._drop(keep, self.pending[keep])
            n += 1
        d = {"pool": POOL, "max_bytes": self.max_total_bytes, "refused": n}
        if shared:
            d["memory_total"] = budget.SHARED.limit
        notices.append((ts, "memory_cap", d))

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
