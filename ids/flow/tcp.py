"""Per-direction TCP reassembly: in-order delivery, out-of-order buffering, retransmissions and overlaps
(first copy wins), and gaps declared rather than waited on forever.

A Stream never keeps delivered bytes, so a session may run for months in bounded memory: what it holds is
at most `max_buffer` bytes of out-of-order segments, counted with what each one really costs (its bytes
plus SEG_OVERHEAD for the dict entry, key and heap slot), and, across all streams, what the shared
ids.flow.budget Pool allows. A cap hit declares a gap and says so. Out-of-order segments sit in a dict by
position plus a heap of positions, so reassembly is n·log n in segments whatever order they come in.
What the bytes mean is left to the protocol session that `deliver` hands them to.
"""
from __future__ import annotations

from heapq import heappop, heappush

M32 = 0xFFFFFFFF
HALF = 1 << 31
#: What one buffered segment costs beyond its payload (dict entry and int key, heap slot, bytes header),
#: measured with tracemalloc on CPython 3.11 (tests/test_hostile.py holds the count to the measurement).
SEG_OVERHEAD = 112


class Stream:
    """One direction of a TCP connection.

    Buffered segments are keyed by their offset from `anchor` (the sequence number the stream stood at
    when it started buffering), so keys order correctly across sequence-number wrap."""

    __slots__ = ("next_seq", "segs", "heap", "anchor", "buffered", "fin_seq", "bytes", "gaps", "gap_bytes",
                 "overlaps", "retrans", "closed", "pool", "last_at", "last_end", "last_sum")

    def __init__(self, pool=None):
        self.next_seq: int | None = None  # sequence number of the next byte to deliver
        self.segs: dict[int, bytes] | None = None  # out-of-order segments by offset from `anchor`
        self.heap: list[int] = []  # the keys of segs, as a heap
        self.anchor = 0
        self.buffered = 0  # bytes held, overhead included
        self.fin_seq: int | None = None
        self.bytes = 0  # bytes delivered
        self.gaps = 0
        self.gap_bytes = 0
        self.overlaps = 0  # out-of-order copies that disagreed with the first copy
        self.retrans = 0
        self.closed = False
        self.pool = pool  # the global bound shared by every stream (ids.flow.budget.Pool), or None
        # The last segment delivered in order: where it started and ended, and hash(bytes) (a C integer when
        # compiled: nothing allocated per packet). A retransmission of exactly it with other bytes is an
        # overlap conflict (delivered bytes are not kept to compare).
        self.last_at: int | None = None
        self.last_end: int | None = None
        self.last_sum = 0

    def add(self, seq: int, data: bytes, max_buffer: int, out: list) -> int:
        """Accept a segment. Appends deliverable chunks (bytes, or an int: a gap of that many bytes) to `out`.

        Returns a status: 0 normal, 1 when the per-stream cap forced a gap, 2 when the global pool did.
        """
        nxt = self.next_seq
        if nxt is None:  # mid-stream pickup: start at the first byte we see
            nxt = self.next_seq = seq
        diff = (seq - nxt) & M32
        if diff == 0 and not self.segs:  # the common case: in order, nothing waiting
            self.next_seq = (nxt + len(data)) & M32
            self.bytes += len(data)
            self.last_at, self.last_end, self.last_sum = seq, self.next_seq, hash(data)
            out.append(data)
            return 0
        if diff >= HALF:  # starts before next_seq: retransmission, maybe with new bytes at its end
            behind = (nxt - seq) & M32
            if behind >= len(data):
                self.retrans += 1
                if self.last_at == seq and self.last_end == nxt and self.last_sum != hash(data) \
                        and (seq + len(data)) & M32 == nxt:
                    self.overlaps += 1
                return 0
            data = data[behind:]
            seq = nxt
            diff = 0
        if diff == 0:
            self.next_seq = (nxt + len(data)) & M32
            self.bytes += len(data)
            out.append(data)
            if self.segs:
                self._drain(out)
            return 0
        # Out of order: keep it (first copy at a position wins) until the hole fills or we give up.
        segs = self.segs
        if not segs:
            segs = self.segs = {}
            self.heap = []
            self.anchor = nxt
        else:
            self._rebase()
            segs = self.segs  # _rebase built a new dict: the segment goes there, not into the old one
        key = (seq - self.anchor) & M32
        old = segs.get(key)
        cost = len(data) + SEG_OVERHEAD
        if old is not None:
            if old[:len(data)] != data[:len(old)]:
                self.overlaps += 1
            if len(data) <= len(old):
                return 0
            data = old + data[len(old):]  # keep the first copy, extend with any new tail
            cost = len(data) - len(old)
        else:
            heappush(self.heap, key)
        segs[key] = data
        self.buffered += cost
        pool = self.pool
        if pool is not None and not pool.take(cost):
            self.skip_gap(out)
            return 2
        if self.buffered > max_buffer:
            self.skip_gap(out)
            return 1
        return 0

    def _rebase(self) -> None:
        """Keep keys small: once next_seq is half the sequence space past the anchor, move the anchor."""
        cur = (self.next_seq - self.anchor) & M32
        if cur < HALF >> 1:
            return
        self.anchor = self.next_seq
        self.segs = {(k - cur) & M32: v for k, v in self.segs.items()}
        self.heap = sorted(self.segs)

    def _pop(self) -> tuple[int, bytes]:
        key = heappop(self.heap)
        data = self.segs.pop(key)
        cost = len(data) + SEG_OVERHEAD
        self.buffered -= cost
        if self.pool is not None:
            self.pool.used -= cost
        return key, data

    def _drain(self, out: list) -> None:
        """Deliver what now follows next_seq. Segments starting before it are trimmed (the earliest start
        wins where several overlap) or dropped when nothing of them is new."""
        segs, heap = self.segs, self.heap
        anchor = self.anchor
        prev = None  # the bytes this drain delivered last, from position prev_at: a later segment that
        prev_at = 0  # overlaps them is compared (a partial overlap with other bytes is a conflict too)
        while heap:
            cur = (self.next_seq - anchor) & M32
            if cur >= HALF:  # next_seq moved back behind the anchor (a SYN renumbered the stream)
                while heap:
                    self._pop()
                return
            if heap[0] > cur:
                return
            key, data = self._pop()
            behind = cur - key
            if prev is not None and behind and key < cur:
                o = key - prev_at
                if o >= 0:
                    n = min(len(prev) - o, len(data), behind)
                    if n > 0 and prev[o:o + n] != data[:n]:
                        self.overlaps += 1
            if behind >= len(data):
                continue
            if behind:
                data = data[behind:]
            prev, prev_at = data, cur
            self.next_seq = (self.next_seq + len(data)) & M32
            self.bytes += len(data)
            out.append(data)
        if not segs:
            self.heap = []

    def skip_gap(self, out: list, upto: int | None = None) -> None:
        """Give up on the hole before the earliest buffered segment: report it and deliver what follows.

        `upto`: the peer acknowledged bytes up to here; when that falls inside the hole only the part before
        it is lost (the rest may still arrive), so the gap ends there."""
        if not self.segs:
            return
        nxt = self.next_seq
        cur = (nxt - self.anchor) & M32
        missing = (self.heap[0] - cur) & M32
        if missing >= HALF:  # the earliest segment lies behind next_seq: drop it (every call makes progress)
            self._pop()
            if not self.segs:
                self.heap = []
            self._drain(out)
            return
        if upto is not None and 0 < ((upto - nxt) & M32) < missing:
            missing = (upto - nxt) & M32
        self.gaps += 1
        self.gap_bytes += missing
        out.append(missing)  # an int in the output list marks a gap of that many bytes
        self.next_seq = (nxt + missing) & M32
        self._drain(out)

    def renumber(self, seq: int) -> None:
        """A SYN set the next byte to `seq`. Segments waiting under another numbering are dropped: their
        positions mean nothing in the new one, and kept they would break the order of the keys (a SYN that
        moved the stream backwards left segments behind next_seq that no drain reached, and closing the flow
        then looped for ever, 1.4 GB in 30 s on 12,000 random-flag segments, 2026-12-05)."""
        if self.segs and seq != self.next_seq:
            if self.pool is not None:
                self.pool.used -= self.buffered
            self.segs = None
            self.heap = []
            self.buffered = 0
        self.next_seq = seq

    def ack_past(self, ack: int) -> bool:
        """True when the peer acknowledges bytes we never saw while segments wait behind a hole
        (the capture lost them; waiting longer cannot help)."""
        return bool(self.segs) and self.next_seq is not None and ((ack - self.next_seq) & M32) < HALF \
            and ack != self.next_seq

    def release(self) -> None:
        """Drop whatever is still buffered (the flow is gone) and give its bytes back to the pool."""
        if self.segs:
            if self.pool is not None:
                self.pool.used -= self.buffered
            self.segs = None
            self.heap = []
            self.buffered = 0
