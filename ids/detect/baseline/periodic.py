"""Periods of repeated requests (Modbus polls, MQTT publishes): learned as the median interval and its
median absolute deviation (jitter), enforced on the median of a sliding window of recent intervals.

Medians, not means: one late poll on a busy HMI, or a retransmission, must not move the estimate. Learning
keeps a bounded reservoir sample of intervals (Vitter's algorithm R), so a week of learning costs the
same memory as an hour; its random choices come from a fixed-seed generator per key, so the result
depends on nothing but the traffic. (Keeping every k-th interval instead would alias with cycles in the
traffic: an HMI alternating 0.99 s and 1.01 s would be learned as one of the two.)

A request is only learned as periodic if enforcing its period on the learning traffic itself would have
been quiet: every sliding-window median within the tolerance, no silence longer than the stop limit, and
present from the start to the end of every stretch of capture. A baseline asserts nothing its own
traffic contradicts (bursty pollers and polls that come and go are learned as requests, not as polls).
"""
from __future__ import annotations

from collections import deque

NS = 1_000_000_000
SAMPLE_CAP = 4096  # intervals kept per key while learning (reservoir)
SAMPLE_STEP = 256  # the learner's bound is charged for every SAMPLE_STEP intervals a sample grows by
INTERVAL_BYTES = 40  # one interval in a sample (an int and its list slot)
_M64 = (1 << 64) - 1


def median(xs) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return 0.0
    m = n // 2
    return float(s[m]) if n & 1 else (s[m - 1] + s[m]) / 2


class IntervalSample:
    """Intervals between occurrences of one key: all of them up to SAMPLE_CAP, then a uniform reservoir;
    plus what the self-check needs: the extremes of the sliding-window medians, the longest interval, and
    when the key was first and last seen in each stretch of capture (epoch)."""

    __slots__ = ("last", "epoch", "sample", "rng", "n", "win", "wpos", "wsize", "wmin", "wmax", "max_gap", "seen",
                 "budget", "cap")

    def __init__(self, window: int = 8, budget=None):
        self.budget = budget  # the learner's bound (limits.learner_bytes): the sample is charged as it grows
        self.cap = SAMPLE_CAP  # lowered to what it holds when the bound refuses more: a reservoir from then on
        self.last = None
        self.epoch = -1
        self.sample: list[int] | None = None  # allocated at the first interval: most keys never repeat
        self.rng = 0x9E3779B97F4A7C15  # fixed seed: same traffic, same sample
        self.n = 0  # intervals seen
        self.win: list[int] = []  # the last `window` intervals, as a ring (a deque costs 600 bytes a key)
        self.wpos = 0
        self.wsize = window
        self.wmin = self.wmax = None
        self.max_gap = 0
        self.seen: dict[int, list[int]] = {}  # epoch -> [first, last]

    def _reservoir(self, iv: int, n: int) -> None:
        self.rng = (self.rng * 6364136223846793005 + 1442695040888963407) & _M64
        j = (self.rng >> 11) % n
        if j < self.cap:
            self.sample[j] = iv

    def add(self, ts: int, epoch: int) -> None:
        if self.last is not None and self.epoch == epoch and ts >= self.last:
            iv = ts - self.last
            n = self.n = self.n + 1
            if n == 1:
                self.sample = [iv]
            elif n <= self.cap:
                if not n & (SAMPLE_STEP - 1) and self.budget is not None and \
                        not self.budget.take("intervals", SAMPLE_STEP * INTERVAL_BYTES):
                    self.cap = n - 1  # the bound is reached: keep what is held, sample into it
                    self._reservoir(iv, n)
                else:
                    self.sample.append(iv)
            else:
                self._reservoir(iv, n)
            if iv > self.max_gap:
                self.max_gap = iv
            w = self.win
            if len(w) < self.wsize:
                w.append(iv)
            else:
                w[self.wpos] = iv
                self.wpos = (self.wpos + 1) % self.wsize
            if len(w) == self.wsize:
                m = median(w)
                if self.wmin is None or m < self.wmin:
                    self.wmin = m
                if self.wmax is None or m > self.wmax:
                    self.wmax = m
        elif self.epoch != epoch:
            self.win = []
            self.wpos = 0
        span = self.seen.get(epoch)
        if span is None:
            self.seen[epoch] = [ts, ts]
        elif ts > span[1]:
            span[1] = ts
        self.last = ts
        self.epoch = epoch

    def period(self, cfg, epochs: dict[int, list[int]] | None = None) -> tuple[float, float] | None:
        """(period, jitter) in seconds when the key is periodic, else None. `cfg` is the baseline
        configuration (poll_* keys); `epochs` maps each stretch of the learning capture to its [first,
        last] event time, for the presence check."""
        if self.n < cfg.poll_min_samples or not self.sample:
            return None
        p = median(self.sample)
        if p <= 0:
            return None
        jitter = median(abs(x - p) for x in self.sample)
        if jitter * 100 > cfg.poll_max_jitter_percent * p:
            return None
        tol = max(p * cfg.poll_tolerance_percent / 100, 3 * jitter)
        if self.wmin is not None and (p - self.wmin > tol or self.wmax - p > tol):
            return None  # enforcing would have called its own learning traffic a period change
        limit = max(cfg.poll_stop_factor * p, cfg.poll_stop_min * NS)
        if self.max_gap > limit:
            return None  # it stopped for a while during learning
        if epochs:
            for e, (first, last) in epochs.items():
                span = self.seen.get(e)
                if span is None or span[0] - first > limit or last - span[1] > limit:
                    return None  # absent from the start, the end, or a whole stretch of the learning capture
        return p / NS, jitter / NS


def seconds(x: float) -> float:
    """Seconds rounded for the file: milliseconds above 10 ms, else 0.1 ms."""
    return round(x, 3) if x >= 0.01 else round(x, 4)


class PeriodTracker:
    """Enforcement state of one learned periodic key."""

    __slots__ = ("period", "jitter", "last", "epoch", "window", "stopped", "ctx")

    def __init__(self, period_s: float, jitter_s: float, window: int):
        self.period = int(period_s * NS)
        self.jitter = int(jitter_s * NS)
        self.last: int | None = None
        self.epoch = -1
        self.window: deque = deque(maxlen=window)
        self.stopped = False
        self.ctx = None  # FlowContext of the last occurrence, for alerts raised without an event

    def observe(self, ts: int, epoch: int, tolerance_pct: int) -> int | None:
        """Record one occurrence; returns the window's median interval (ns) when it is off the learned
        period by more than the tolerance, else None."""
        last = self.last
        self.last = ts
        self.stopped = False
        if last is None or self.epoch != epoch or ts < last:
            self.epoch = epoch
            self.window.clear()
            return None
        w = self.window
        w.append(ts - last)
        if len(w) < w.maxlen:
            return None
        m = median(w)
        tol = max(self.period * tolerance_pct // 100, 3 * self.jitter)
        if abs(m - self.period) > tol:
            return int(m)
        return None

    def silent_for(self, now: int, epoch: int, epoch_start: int) -> int:
        ref = self.last if (self.last is not None and self.epoch == epoch) else epoch_start
        return now - ref


def period_seen(medians, period: int) -> str:
    """The window median farthest from the learned period, and the range of all of them."""
    worst = max(medians, key=lambda x: abs(x - period))
    lo, hi = min(medians), max(medians)
    s = f"every {worst / 1e9:.3g} s"
    return s if lo == hi else f"{s} (window medians {lo / 1e9:.3g}..{hi / 1e9:.3g} s)"
