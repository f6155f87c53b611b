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


class Shared:
    """limits.memory_total: one bound over the sum of what the bounded tables hold (the flow table, the
    stream, reassembly and pending-request pools, the detectors' per-key tables), each of which keeps its own
    bound too. Under a flood that fills one table, that table may use all the room the others leave (up to
    its own bound); when the tables together reach the total, a table that asks for more gives up state as
    at its own bound if it holds more than its share (its own bound scaled so that the shares add up to the
    total), and is let grow otherwise (another, over its share, gives up when it next grows). So a flood
    that fills several tables at once leaves each about its share, and the alert each table raises when it
    gives up (memory_cap, flow_table_full) says `memory_total` with how many times it gave up for it.

    What a table reports is its own count (a KeyCap: its keys at their worst case), updated when it grows;
    a table that shrinks without growing again keeps its last report until it does (counted high, never
    low). One per process (`SHARED`, installed by the pipeline's Run): the tables read it when they grow."""

    __slots__ = ("limit", "used", "held", "bounds", "total", "refused")

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.held: dict[str, int] = {}  # table -> bytes it last reported
        self.bounds: dict[str, int] = {}  # table -> its own bound
        self.total = 0  # sum of the own bounds
        self.refused: dict[str, int] = {}  # table -> times it gave up state for this bound

    def hold(self, table: str, n: int, bound: int) -> bool:
        """`table` (whose own bound is `bound`) now holds `n` bytes. False when the tables together are over
        the total and this one is over its share: it gives up state as at its own bound."""
        old = self.held.get(table)
        if old is None:
            old = 0
            self.bounds[table] = bound
            self.total += bound
        self.held[table] = n
        used = self.used = self.used + n - old
        if used <= self.limit or n * self.total <= bound * self.limit:
            return True
        self.refused[table] = self.refused.get(table, 0) + 1
        return False

    def share(self, table: str) -> int:
        return self.bounds[table] * self.limit // max(1, self.total)


#: a pool reports to the Shared bound only when what it holds crosses a step of this many bytes
REPORT_STEP = 16 << 10

#: the process's Shared bound (None: only the per-table bounds), set by install()
SHARED: Shared | None = None


def install(limit: int) -> Shared | None:
    """Make `limit` bytes (limits.memory_total; 0: none) the bound the tables of this process share."""
    global SHARED
    SHARED = Shared(limit) if limit > 0 else None
    return SHARED


def live_share(total: int, processes: int, fixed: int) -> int:
    """limits.memory_total for the tables of one of `processes` capturing processes of `otids live`: its
    part (split_total) less what it holds outside the tables by configuration, `fixed` bytes (its capture
    rings, mapped whole into its RSS; the evidence ring). Without this the 64 MiB default ring came on top
    of the tables' total: 277 MiB RSS under the live floods, 196 anonymous and 81 mapped (docs/ROBUSTNESS.md).
    Never less than half the part: rings larger than the total (two processes with the default 64 MiB ring
    each) must not leave tables too small to follow a quiet network."""
    if total <= 0:
        return total
    part = split_total(total, processes)
    return max(part // 2, part - fixed)


#: What one address costs in the run summary's tables, at worst: the host set, a bytes object and its set
#: slot (IPv6 90 to 154 bytes as the set's load varies, IPv4 70 to 142); alerts-by-host, its text and count
#: in a Counter (IPv6 113, IPv4 88): tracemalloc, tests/test_memory_total_tables.py
HOST_BYTES = 160
ALERT_HOST_BYTES = 120
#: such a table tells limits.memory_total what it holds every this many keys
HOST_STEP = 1024


def room(table: str, n: int, entry: int, bound: int) -> bool:
    """Whether a summary table (count-capped at `bound` // `entry` keys, each `entry` bytes at most) holding
    `n` keys may take one more under limits.memory_total. Told every HOST_STEP keys, counted high; once
    refused at the total (over its share), it takes no more: it counts and never forgets, so what it would
    give up is its count's completeness, and its owner says "or more"."""
    g = SHARED
    if g is None:
        return True
    if table in g.refused:
        return False
    return n % HOST_STEP != 0 or g.hold(table, (n + HOST_STEP) * entry, bound)


def room_refused(table: str) -> dict:
    """The details of the memory_cap notice a summary table raises when room() first refuses it."""
    g = SHARED
    return {"pool": table, "max_bytes": g.bounds[table], "memory_total": g.limit}


#: What each further process of `--workers N` costs beside its tables (interpreter, libraries, nDPI,
#: its own copies of what the parent had: PSS of a worker less what its tables hold, tcp_random_flags).
PROCESS_BYTES = 30 << 20


def process_share(total: int, workers: int) -> int:
    """One process's part of limits.memory_total when the parent and `workers` forked workers share it: the
    further processes' own cost comes off first, the rest is split evenly (the workers hold the flow
    tables, the parent the detectors that see every pair). `--workers 1` forks none: the whole total."""
    if workers <= 1:
        return total
    return split_total(total, workers + 1)


def split_total(total: int, processes: int) -> int:
    """One process's part of limits.memory_total among `processes` processes, all but the first forked: each
    further one's own cost (PROCESS_BYTES) off first, the rest split evenly. `otids live --workers N` is N
    processes that each capture (the sensor and N-1 workers); `analyze --workers N` is N+1."""
    if total <= 0 or processes <= 1:
        return total
    return max(1 << 20, (total - (processes - 1) * PROCESS_BYTES) // processes)


class Pool:
    __slots__ = ("name", "limit", "used", "peak", "hits", "reported", "last_notice", "quiet", "shown")

    def __init__(self, name: str, limit: int, quiet: int = 60 * NS):
        self.name = name
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.hits = 0  # charges refused
        self.last_notice: int | None = None
        self.reported = 0  # hits already reported
        self.quiet = quiet
        self.shown = 0  # what limits.memory_total was last told (a multiple of REPORT_STEP at or above used)

    def take(self, n: int) -> bool:
        """Charge `n` bytes. False when that goes over the limit: the caller must give bytes back (the
        charge stands until it releases them, so the count stays true while it does).

        limits.memory_total hears of the pool in steps of REPORT_STEP, rounded up (counted high, never
        low): asking it on every charge cost the reference capture 5% (two calls per Modbus request)."""
        used = self.used = self.used + n
        if used > self.limit:
            self.hits += 1
            return False
        g = SHARED
        if g is not None and used > self.shown:
            step = used + REPORT_STEP - used % REPORT_STEP
            if not g.hold(self.name, step, self.limit):
                self.hits += 1
                return False
            self.shown = step
        if used > self.peak:
            self.peak = used
        return True

    def report(self, ts: int) -> dict | None:
        """The details of a `memory_cap` notice when one is due (first hit, then once per quiet period)."""
        if self.last_notice is not None and ts - self.last_notice < self.quiet:
            return None
        self.last_notice = ts
        n, self.reported = self.hits - self.reported, self.hits
        d = {"pool": self.name, "max_bytes": self.limit, "refused": n}
        if SHARED is not None and self.name in SHARED.refused:
            d["memory_total"] = SHARED.limit
        return d

    def give(self, n: int) -> None:
        used = self.used = self.used - n
        g = SHARED
        if g is not None and used + 2 * REPORT_STEP < self.shown and self.name in g.held:
            self.shown = used + REPORT_STEP - used % REPORT_STEP  # well below its last report: say so
            g.hold(self.name, self.shown, self.limit)

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

    def full(self, d: dict) -> bool:
        """Whether `d` must make room before a new key: at max_keys, or over its share of memory_total
        when the tables together are at it (ids/flow/budget.py: Shared)."""
        n = len(d)
        if n >= self.max_keys:
            return True
        g = SHARED
        return g is not None and n >= 16 and not g.hold(self.name, (n + 1) * self.entry, self.max_bytes)

    def make_room(self, d: dict, held=None, checked: bool = False) -> None:
        """Forget the oldest keys of a full `d` (see full(); `checked`: the caller has just asked it):
        an eighth of what it holds. `held(value)`, when given, is how many occurrences an entry holds back
        from alerts so far: they are counted as lost and the memory_cap alert says how many."""
        if not checked and not self.full(d):
            return
        keep = min(self.max_keys, len(d))
        if held is not None:
            self.lost += sum(held(v) for v in islice(d.values(), max(0, _excess(len(d), keep))))
        self.hits += trim_oldest(d, keep)

    def report(self, ts: int) -> dict | None:
        if self.hits == self.reported or (self.last_notice is not None and ts - self.last_notice < self.quiet):
            return None
        self.last_notice = ts
        n, self.reported = self.hits - self.reported, self.hits
        d = {"pool": self.name, "max_bytes": self.max_bytes, "max_keys": self.max_keys, "forgotten": n}
        if SHARED is not None and self.name in SHARED.refused:
            d["memory_total"] = SHARED.limit
        if self.lost != self.lost_reported:
            d["occurrences_lost"], self.lost_reported = self.lost - self.lost_reported, self.lost
        return d
