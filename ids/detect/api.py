"""What every detector shares: the `Detector` interface the engine calls, `RuleInfo` (one rule of a built-in
catalogue: protocol anomalies, authentication findings, baseline deviations) and the one re-alert `Limiter`.

Detectors own their findings; this module owns only the shapes they have in common (Zeek's notice framework:
each part declares its notice types, one framework suppresses and rate-limits them by identifier).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Protocol


class Detector(Protocol):
    """Fed every event the engine routes to it; returns alerts (a list) or None.

    `flush(ts)` is called at the end of a run (and every second live) for what waits on time; `reload(config)`
    (optional) re-reads the detector's files on SIGHUP, raising UserError and keeping the old state when bad.
    """

    def on_event(self, ev) -> list | None: ...

    def flush(self, ts: int) -> list: ...


def reloadable(detector) -> bool:
    """Whether the detector has a `reload(config)` hook (the optional part of the interface)."""
    return callable(getattr(detector, "reload", None))


@dataclass(frozen=True)
class RuleInfo:
    """One rule of a built-in catalogue: what an alert's `rule.*` fields and its ATT&CK techniques say."""

    id: str
    name: str
    severity: str  # info | low | medium | high | critical (the usual one; a finding may carry its own)
    description: str
    attack: tuple[str, ...] = ()  # ATT&CK for ICS technique ids (ids.detect.attack)


class LimitEntry:
    """One key's state: when its last alert fired, how many occurrences were held back since, the last one."""

    __slots__ = ("start", "suppressed", "last", "tag")

    def __init__(self, ts: int, tag=None):
        self.start = ts
        self.suppressed = 0
        self.last: Any = None
        self.tag = tag  # the caller's note on what fired last (e.g. the flow, so one connection counts once)


class Limiter:
    """Re-alert limiting by key: the first occurrence fires at once; later ones within `window` ns are counted
    (never dropped) and reported in one follow-up once the window has passed, or when the key is evicted.

    Bounded to `max_keys`; the oldest key goes first (by first alert, or by latest alert when `lru`).
    """

    __slots__ = ("window", "max_keys", "lru", "entries")

    def __init__(self, window: int, max_keys: int, lru: bool = False):
        self.window = window
        self.max_keys = max_keys
        self.lru = lru
        self.entries: OrderedDict[Any, LimitEntry] = OrderedDict()

    def get(self, key) -> LimitEntry | None:
        return self.entries.get(key)

    def hit(self, key, ts: int, payload=None, count: int = 1, tag=None) -> list[tuple[Any, LimitEntry]] | None:
        """None: held back and counted (payload kept as the latest). Otherwise the caller alerts now, after
        writing a follow-up for each (key, entry) returned: the key's own held-back count, or an evicted key's."""
        e = self.entries.get(key)
        if e is not None and ts - e.start < self.window:
            e.suppressed += count
            e.last = payload
            e.tag = tag
            return None
        out = []
        if e is not None and e.suppressed:
            out.append((key, e))
        if e is None and len(self.entries) >= self.max_keys:
            old = self.entries.popitem(last=False)
            if old[1].suppressed:
                out.append(old)
        self.entries[key] = LimitEntry(ts, tag)
        if self.lru:
            self.entries.move_to_end(key)
        return out

    def pending(self) -> Iterator[tuple[Any, LimitEntry]]:
        """Every key with held-back occurrences (for flush)."""
        for key, e in self.entries.items():
            if e.suppressed:
                yield key, e
