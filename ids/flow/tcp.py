"""Per-direction TCP reassembly: in-order delivery, out-of-order buffering, retransmissions and overlaps
(first copy wins), and gaps declared rather than waited on forever.

A Stream never keeps delivered bytes, so a session may run for months in bounded memory: what it holds is
at most `max_buffer` bytes of out-of-order segments (a cap hit declares a gap and says so). What the bytes
mean is left to the protocol session that `deliver` hands them to.
"""
from __future__ import annotations

M32 = 0xFFFFFFFF
HALF = 1 << 31


class Stream:
    """One direction of a TCP connection."""

    __slots__ = ("next_seq", "segs", "buffered", "fin_seq", "bytes", "gaps", "gap_bytes", "overlaps",
                 "retrans", "closed")

    def __init__(self):
        self.next_seq: int | None = None  # sequence number of the next byte to deliver
        self.segs: dict[int, bytes] | None = None  # out-of-order segments by sequence number
        self.buffered = 0
        self.fin_seq: int | None = None
        self.bytes = 0  # bytes delivered
        self.gaps = 0
        self.gap_bytes = 0
        self.overlaps = 0  # out-of-order copies that disagreed with the first copy
        self.retrans = 0
        self.closed = False

    def add(self, seq: int, data: bytes, max_buffer: int, out: list) -> int:
        """Accept a segment. Appends deliverable chunks (("data", bytes) or ("gap", nbytes)) to `out`.

        Returns a status: 0 normal, 1 when the out-of-order cap forced a gap.
        """
        nxt = self.next_seq
        if nxt is None:  # mid-stream pickup: start at the first byte we see
            nxt = self.next_seq = seq
        diff = (seq - nxt) & M32
        if diff == 0 and not self.segs:  # the common case: in order, nothing waiting
            self.next_seq = (nxt + len(data)) & M32
            self.bytes += len(data)
            out.append(data)
            return 0
        if diff >= HALF:  # starts before next_seq: retransmission, maybe with new bytes at its end
            behind = (nxt - seq) & M32
            if behind >= len(data):
                self.retrans += 1
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
        # Out of order: keep it (first copy at a sequence number wins) until the hole fills or we give up.
        segs = self.segs
        if segs is None:
            segs = self.segs = {}
        old = segs.get(seq)
        if old is not None:
            if old[:len(data)] != data[:len(old)]:
                self.overlaps += 1
            if len(data) <= len(old):
                return 0
            data = old + data[len(old):]  # keep the first copy, extend with any new tail
            self.buffered -= len(old)
        segs[seq] = data
        self.buffered += len(data)
        if self.buffered > max_buffer:
            self.skip_gap(out)
            return 1
        return 0

    def _drain(self, out: list) -> None:
        segs = self.segs
        while segs:
            nxt = self.next_seq
            best = None
            for s in list(segs):
                d = (s - nxt) & M32
                if d >= HALF:  # entirely or partly before next_seq
                    data = segs.pop(s)
                    self.buffered -= len(data)
                    behind = (nxt - s) & M32
                    if behind < len(data):
                        segs[nxt] = segs.get(nxt) or data[behind:]
                        self.buffered += len(segs[nxt])
                    continue
                if d == 0:
                    best = s
            if best is None:
                if nxt not in segs:  # a segment trimmed to start at next_seq above is deliverable now
                    return
                best = nxt
            data = segs.pop(best)
            self.buffered -= len(data)
            self.next_seq = (nxt + len(data)) & M32
            self.bytes += len(data)
            out.append(data)

    def skip_gap(self, out: list, upto: int | None = None) -> None:
        """Give up on the hole before the earliest buffered segment: report it and deliver what follows.

        `upto`: the peer acknowledged bytes up to here; when that falls inside the hole only the part before
        it is lost (the rest may still arrive), so the gap ends there."""
        if not self.segs:
            return
        nxt = self.next_seq
        first = min(self.segs, key=lambda s: (s - nxt) & M32)
        missing = (first - nxt) & M32
        if upto is not None and 0 < ((upto - nxt) & M32) < missing:
            first, missing = upto, (upto - nxt) & M32
        self.gaps += 1
        self.gap_bytes += missing
        out.append(missing)  # an int in the output list marks a gap of that many bytes
        self.next_seq = first
        self._drain(out)

    def ack_past(self, ack: int) -> bool:
        """True when the peer acknowledges bytes we never saw while segments wait behind a hole
        (the capture lost them; waiting longer cannot help)."""
        return bool(self.segs) and self.next_seq is not None and ((ack - self.next_seq) & M32) < HALF \
            and ack != self.next_seq
