"""Byte bounds on the detectors' and the baseline learner's per-key state (issue #16, docs/ROBUSTNESS.md), on
top of ids/flow/budget.py: `Budget`, one bound shared by tables that keep what they have and refuse what is
new (the learner's per-protocol sections: a baseline learned under a flood keeps what it learned first),
`evict_oldest`, forgetting the oldest eighth of a charged table in one pass (never one key per new key, F9),
and `memory_cap_alert`, the sensor's memory_cap alert (ids/detect/anomaly.py) saying which table, what was
dropped and how much, for a detector to raise at most once per quiet period of capture time.

Costs are in bytes that count what an entry really holds (Python objects included, measured with
tracemalloc; tests/test_bounds_state.py holds each to its measurement within 25 %).
"""
from __future__ import annotations

from collections import deque
from itertools import islice

NS = 1_000_000_000

# What strings and containers cost in CPython 3 (64-bit): a str of ASCII is 49 bytes plus its length (plus
# 8 per pointer to it); a set or dict slot with its share of the table about 40 to 100 bytes.
STR = 57
SLOT = 72


def text(s) -> int:
    """What a short text (or bytes, or number) held in a table costs with its pointer."""
    return STR + len(s) if isinstance(s, (str, bytes)) else 32


class Budget:
    """One bound in bytes over several tables that refuse new keys when it is reached (what they hold is
    kept). `take(table, n)` charges and says whether the caller may keep the new thing; refusals are counted
    per table, so the warning or alert says what was not kept where."""

    __slots__ = ("name", "limit", "used", "refused")

    def __init__(self, name: str, limit: int):
        self.name = name
        self.limit = limit
        self.used = 0
        self.refused: dict[str, int] = {}

    def take(self, table: str, n: int) -> bool:
        if self.used + n > self.limit:
            self.refused[table] = self.refused.get(table, 0) + 1
            return False
        self.used += n
        return True

    def capped(self) -> list[dict]:
        """One entry per table that refused something: {pool: NAME.table, max_bytes, not_kept}."""
        return [{"pool": f"{self.name}.{t}", "max_bytes": self.limit, "not_kept": n}
                for t, n in sorted(self.refused.items())]


def evict_oldest(d: dict, cost) -> tuple[int, int]:
    """Forget the oldest eighth of `d` (insertion order; at least one key) in one pass; `cost(value)` is what
    each entry was charged. Returns (keys forgotten, bytes released)."""
    n = max(1, len(d) // 8)
    freed = 0
    for k in list(islice(d, n)):
        freed += cost(d.pop(k))
    return n, freed


class WindowCount:
    """How many times something happened within the last `window` ns, in bounded memory: the first `slots`
    times are kept exactly; past that, a time less than window / slots after the newest kept one is counted
    with it. At most 2 x `slots` + 1 entries are held whatever the rate (a deque of every time grew with
    the flood), and the count is exact until `slots` times fall within the window; past that it may miss
    at most one entry's span (window / slots) at the old edge, where a merged entry leaves the window
    with its first time."""

    __slots__ = ("times", "counts", "n", "width", "slots")

    def __init__(self, window: int, slots: int):
        self.times: deque = deque()
        self.counts: deque = deque()
        self.n = 0
        self.slots = slots
        self.width = max(1, window // slots)

    def add(self, ts: int, since: int) -> int:
        """Count one at `ts`, forget what came before `since`; returns the count within the window."""
        t = self.times
        if len(t) >= self.slots and ts - t[-1] < self.width:
            self.counts[-1] += 1
        else:
            t.append(ts)
            self.counts.append(1)
        self.n += 1
        while t and t[0] < since:
            t.popleft()
            self.n -= self.counts.popleft()
        return self.n

    def __len__(self) -> int:
        return self.n


class Gate:
    """At most one memory_cap alert per `quiet` ns of capture time; what was dropped in between is summed
    into the next one (so the counts of all alerts add up to everything dropped)."""

    __slots__ = ("quiet", "last", "due")

    def __init__(self, quiet: int = 60 * NS):
        self.quiet = quiet
        self.last: int | None = None
        self.due: dict[str, dict] = {}  # table -> {max_bytes, counts...}

    def note(self, table: str, max_bytes: int, **counts: int) -> None:
        d = self.due.get(table)
        if d is None:
            d = self.due[table] = {"pool": table, "max_bytes": max_bytes}
        for k, v in counts.items():
            d[k] = d.get(k, 0) + v

    def alerts(self, ts: int, source: str, setting: str, force: bool = False) -> list:
        if not self.due or (not force and self.last is not None and ts - self.last < self.quiet):
            return []
        self.last = ts
        due, self.due = list(self.due.values()), {}
        return [memory_cap_alert(ts, due, source, setting)]


def memory_cap_alert(ts: int, tables: list[dict], source: str, setting: str):
    """The sensor's memory_cap alert for `tables` ({pool, max_bytes, what was dropped: count, ...})."""
    from ..events import Alert
    from .anomaly import RULES
    r = RULES["otids.anomaly.sensor.memory_cap"]
    what = "; ".join(f"{d['pool']} reached {d['max_bytes']:,} bytes, "
                     + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in d.items() if k not in ("pool", "max_bytes"))
                     for d in tables)
    return Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description, severity=r.severity,
                 reason=f"{r.name}: {what} ({setting})", source=source,
                 extra={"sensor": tables[0] if len(tables) == 1 else {"pool": source, "tables": tables}})
