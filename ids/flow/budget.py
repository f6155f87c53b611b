"""Global memory bounds: one Pool per kind of state that grows with traffic and is bounded per flow only
(out-of-order TCP segments, protocol reassembly buffers), so that many flows cannot add up past what the
sensor can hold. Per-flow caps stay where they are; a pool adds the bound across flows.

A pool counts bytes as its owners report them (payload plus the measured per-object overhead: what the
structure really holds). Owners charge before keeping and release when they let go; when a charge goes
over the limit the owner gives the bytes up (declares a gap, drops a partial message) and the pool reports
the hit (FlowTable.memory_cap: a FlowNotice `memory_cap` naming the flow, which the anomaly detector turns
into an alert) when `report(ts)` says so: at most once per `quiet` nanoseconds of capture time, so a flood
yields one line, not millions.
"""
from __future__ import annotations

from itertools import islice

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython

NS = 1_000_000_000


class Pool:
    __slots__ = ("name", "limit", "used", "peak", "hits", "reported", "last_notice", "quiet")

    def __init__(self, name: str, limit: int, quiet: int = 60 * NS):
        self.name = name
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.hits = 0  # charges refused
        self.last_notice: int | None = None
        self.reported = 0  # hits already reported
        self.quiet = quiet

    def take(self, n: int) -> bool:
        """Charge `n` bytes. False when that goes over the limit: the caller must give bytes back (the
        charge stands until it releases them, so the count stays true while it does)."""
        used = self.used = self.used + n
        if used <= self.limit:
            if used > self.peak:
                self.peak = used
            return True
        self.hits += 1
        return False

    def report(self, ts: int) -> dict | None:
        """The details of a `memory_cap` notice when one is due (first hit, then once per quiet period)."""
        if self.last_notice is not None and ts - self.last_notice < self.quiet:
            return None
        self.last_notice = ts
        n, self.reported = self.hits - self.reported, self.hits
        return {"pool": self.name, "max_bytes": self.limit, "refused": n}

    def give(self, n: int) -> None:
        self.used -= n

    def stats(self) -> dict:
        return {"used": self.used, "peak": self.peak, "max_bytes": self.limit, "hits": self.hits}



_MISSING = object()


class Charged(dict):
    """A session's table of requests awaiting answers, charged entry by entry to a run-wide pool
    (limits.pending_total) so that per-flow caps (max_pending) cannot add up over many flows. `cost(value)`
    is what one entry holds in bytes (measured with tracemalloc, the decoded request included). After
    adding, `over` says the pool refused: the session then gives up its oldest entry (reports it
    unanswered) and says so (memory_cap). Every way out of the table gives the bytes back."""

    __slots__ = ("pool", "cost", "over")

    def __init__(self, pool: Pool | None, cost):
        super().__init__()
        self.pool = pool
        self.cost = cost
        self.over = False

    # Compiled, the dict underneath is reached through its C API (cast: budget.pxd), not by calling dict's
    # methods by name; as Python, through dict's methods. The same operations either way.
    def __setitem__(self, key, value) -> None:
        pool = self.pool
        if cython.compiled:
            d = cython.cast(dict, self)
            old = d.get(key, _MISSING) if pool is not None else _MISSING
            d[key] = value
        else:
            old = dict.get(self, key, _MISSING) if pool is not None else _MISSING
            dict.__setitem__(self, key, value)
        if pool is None:
            return
        if old is not _MISSING:
            pool.give(self.cost(old))
        if not pool.take(self.cost(value)):
            self.over = True

    def __delitem__(self, key) -> None:
        value = cython.cast(dict, self).pop(key) if cython.compiled else dict.pop(self, key)
        if self.pool is not None:
            self.pool.give(self.cost(value))

    def pop(self, key, *default):
        value = cython.cast(dict, self).pop(key, _MISSING) if cython.compiled else dict.pop(self, key, _MISSING)
        if value is _MISSING:
            if default:
                return default[0]
            raise KeyError(key)
        if self.pool is not None:
            self.pool.give(self.cost(value))
        return value

    def take_over(self) -> bool:
        """True once after an insertion the pool refused (the caller drops its oldest entry)."""
        if self.over:
            self.over = False
            return True
        return False


def trim_oldest(d: dict, keep: int) -> int:
    """Forget the oldest keys of `d` (insertion order) so that `keep` less an eighth remain, in one pass.
    Popping `next(iter(d))` one key at a time is quadratic in CPython (each call walks over the slots that
    earlier pops emptied at the front): a spoofed-source flood then cost a network detector 0.4 ms per
    record. Returns how many keys were forgotten."""
    n = _excess(len(d), keep)
    if n <= 0:
        return 0
    for k in list(islice(d, n)):
        del d[k]
    return n


def _excess(size: int, keep: int) -> int:
    """How many of `size` keys trim_oldest forgets to keep `keep` less an eighth."""
    return size - keep + max(1, keep // 8)


class KeyCap:
    """A bound in bytes on a table of per-key state whose entries are themselves bounded (by a threshold
    or a cap): `entry` is what one key holds at most (measured with tracemalloc, Python overhead
    included), so `max_keys` = max_bytes // entry keys can never hold more than max_bytes. `make_room(d)`
    forgets the oldest keys when `d` is full; `report(ts)` gives the details of a memory_cap alert, at
    most once per quiet period of capture time."""

    __slots__ = ("name", "max_bytes", "entry", "max_keys", "hits", "reported", "last_notice", "quiet", "lost",
                 "lost_reported")

    def __init__(self, name: str, max_bytes: int, entry: int, ceiling: int | None = None, quiet: int = 60 * NS):
        self.name = name
        self.max_bytes = max_bytes
        self.entry = entry
        self.max_keys = max(16, max_bytes // entry)
        if ceiling is not None:
            self.max_keys = min(self.max_keys, ceiling)
        self.hits = 0  # keys forgotten
        self.lost = 0  # occurrences the forgotten keys held back, not yet in any alert (make_room's `held`)
        self.lost_reported = 0
        self.reported = 0
        self.last_notice: int | None = None
        self.quiet = quiet

    def make_room(self, d: dict, held=None) -> None:
        """Forget the oldest keys of a full `d`; `held(value)`, when given, is how many occurrences an entry
        holds back from alerts so far: they are counted as lost and the memory_cap alert says how many."""
        if len(d) >= self.max_keys:
            if held is not None:
                self.lost += sum(held(v) for v in islice(d.values(), max(0, _excess(len(d), self.max_keys))))
            self.hits += trim_oldest(d, self.max_keys)

    def report(self, ts: int) -> dict | None:
        if self.hits == self.reported or (self.last_notice is not None and ts - self.last_notice < self.quiet):
            return None
        self.last_notice = ts
        n, self.reported = self.hits - self.reported, self.hits
        d = {"pool": self.name, "max_bytes": self.max_bytes, "max_keys": self.max_keys, "forgotten": n}
        if self.lost != self.lost_reported:
            d["occurrences_lost"], self.lost_reported = self.lost - self.lost_reported, self.lost
        return d
