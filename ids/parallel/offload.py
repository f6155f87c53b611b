"""Detection that runs in the workers of `--workers N` (file analysis), so that most events never cross to the
parent.

The anomaly detector's checks of protocol records (ModbusTransaction, OpcuaMessage, ...) keep all their state
per host pair: the re-alert limiter by (rule, client, server), the flood windows by (rule, client, server),
Modbus exception shares by (client, server). Every record of one pair comes from one worker (ids.parallel.shard
routes by host pair; MQTT by broker), so a worker that runs these checks on its own records, in its own
emission order, reaches exactly the state and the alerts one process reaches. MQTT's records are the exception
(routed by broker on its dissected ports, by pair elsewhere): the parent checks them, as before. The alerts travel to the parent
keyed like the event they belong to and are written there (filters, counters, sinks, observers) before the
parent's own detectors see the event, which is where the anomaly detector, first in the engine, puts them.

An event then crosses only when the parent needs it: an event sink writes it, or another detector is routed
to it (rules, baseline, ML, network detectors). Otherwise the worker only counts it for the summary. When the
ML detector is the parent's only reader of a type, the worker builds the event's feature view (the detector's
adapter, a pure function of the event) and sends that instead: a few shared strings and numbers rather than
the whole record, and the parent's windowing reads it in the same merged order (worker_view, parent_views).

At the end the held-back repeats of every limiter (the workers' and the parent's, whose anomaly detector
still handles flow notices and connection records) are written in the order one limiter would hold them:
the order of each key's first alert, which every side records as the merge key of the event that made it.
"""
from __future__ import annotations

from itertools import islice

from ..detect.anomaly import AnomalyDetector


def offloaded(engine):
    """(detector, record types) the workers check themselves, or (None, frozenset()). Only the anomaly detector
    in first place qualifies: its alerts then come first for every event, as the workers deliver them."""
    ds = engine.detectors
    if not ds:
        return None, frozenset()
    d = ds[0]
    if not isinstance(d, AnomalyDetector) or type(d).flush is not AnomalyDetector.flush \
            or getattr(d, "accepts", None) is not None:
        return None, frozenset()
    # Records of MQTT's dissected ports come from the worker of their broker, the same pair's records on any
    # other port from the worker of the pair: their per-pair state is only whole in the parent, so they stay there.
    return d, frozenset(t for t in d.checks if not t.__module__.startswith(BROKER_ROUTED))


BROKER_ROUTED = "ids.protocols.mqtt"  # ids.parallel.shard.Router routes these flows by broker, not by pair


def parent_route(engine, d, t: type) -> tuple:
    """The engine's route for `t` without `d` (its part runs in the workers)."""
    return tuple(m for m in engine._route(t) if getattr(m, "__self__", None) is not d)


def worker_view(route: tuple, t: type):
    """The feature view adapter a worker runs for events of type `t` when the parent's route for them is the ML
    detector alone, else None (the event itself crosses)."""
    if len(route) != 1:
        return None
    fn = getattr(getattr(route[0], "__self__", None), "worker_view", None)
    return fn(t) if fn is not None else None


def parent_views(engine):
    """The entry for the feature views that workers send (worker_view): the ML detector's alone, uncounted
    (the workers counted their events), called by the parent's merge loop itself; None without one. A view
    crosses as a plain tuple, which no event is (they are NamedTuple subclasses and classes): half the
    pickling of the NamedTuple, whose unpickling calls its Python __new__."""
    for d in engine.detectors:
        if getattr(d, "worker_view", None) is not None:
            return d.on_view
    return None


class Inserted:
    """Records, for each key of a limiter, the merge key of the event at which it was (last) inserted."""

    __slots__ = ("entries", "max_keys", "at")

    def __init__(self, limiter):
        self.entries = limiter.entries
        self.max_keys = limiter.max_keys
        self.at: dict = {}

    def grew(self, n: int, key) -> None:
        """The limiter held `n` keys before the event with merge `key` and holds more now."""
        ent = self.entries
        new = list(islice(reversed(ent), len(ent) - n))
        new.reverse()
        at = self.at
        for j, k in enumerate(new):
            at[k] = (key, j)
        if len(at) > 2 * self.max_keys + 1024:  # keys evicted from the limiter are forgotten here too
            self.at = {k: v for k, v in at.items() if k in ent}

    def call(self, on_event, ev, key):
        """on_event(ev) for the event with merge `key`, recording the limiter keys it inserts."""
        ent = self.entries
        n = len(ent)
        if n < self.max_keys:
            out = on_event(ev)
            if len(ent) != n:
                self.grew(n, key)
            return out
        last = next(reversed(ent))  # full: a new key evicts the oldest, the count stays
        out = on_event(ev)
        if next(reversed(ent)) != last:
            self.at[next(reversed(ent))] = (key, 0)
        return out

    def pending(self) -> list:
        """[(insertion key, limiter key, entry)] of every key with held-back occurrences."""
        at = self.at
        return [(at.get(k, ((0,), 0)), k, e) for k, e in self.entries.items() if e.suppressed]
