"""Detection engine: fans every event out to the detectors and every alert out to the sinks.

Detectors own one kind of finding each (anomaly here; rules/, baseline/, ml/, auth/ as they land) and
share one interface: `on_event(event) -> iterable of Alert` (or None), `flush(ts) -> iterable of Alert`
at the end of input. Every event type has `dataset` and `label` (function, service or action), which is
what the run summary counts. The engine keeps no state of its own beyond counters.
"""
from __future__ import annotations

from collections import Counter


class Engine:
    def __init__(self, detectors: list, alert_sinks: list, event_sinks: list):
        self.detectors = detectors
        self.alert_sinks = alert_sinks
        self.event_sinks = event_sinks
        self.events = Counter()  # (dataset, action) -> count, for the summary
        self.alerts = Counter()  # severity -> count
        self.alert_rules = Counter()  # (rule id, name) -> count
        self.last_ts = 0

    def on_event(self, ev) -> None:
        self.events[ev.dataset, ev.label] += 1
        for s in self.event_sinks:
            s.write_event(ev)
        for d in self.detectors:
            alerts = d.on_event(ev)
            if alerts:
                for a in alerts:
                    self._alert(a)

    def _alert(self, a) -> None:
        self.alerts[a.severity] += 1
        self.alert_rules[(a.rule_id, a.rule_name)] += 1
        for s in self.alert_sinks:
            s.write_alert(a)

    def flush(self, ts: int) -> None:
        for d in self.detectors:
            for a in d.flush(ts) or ():
                self._alert(a)
