"""Detection engine: fans every event out to the detectors and every alert out to the sinks.

Detectors own one kind of finding each (anomaly.py, rules/, baseline/, ml/, auth/, loss.py) and share one
interface, `ids.detect.api.Detector`: `on_event(event) -> iterable of Alert` (or None), `flush(ts) ->
iterable of Alert` at the end of input, and optionally `reload(config)` (SIGHUP). A detector may also have
`accepts(event_type) -> bool`: the engine then routes
only those event types to it (asked once per type), so a detector costs nothing on traffic it ignores.
Every event type has `dataset` and `label` (function, service or action), which is what the run summary
counts. A record type with `internal = True` (ids.flow.conn.ArpPacket) goes to the detectors only: it is never
counted in the summary nor written by an event sink. The engine keeps no state of its own beyond counters and
the routes.
"""
from __future__ import annotations

from collections import Counter

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython

from ..flow import budget
from .api import Detector

#: Source addresses the summary's alerts-by-host table keeps (a Counter of every one grew without bound under
#: a spoofed flood: 100,000 MQTT clients each alerting held ~10 MB); later ones are counted together, as they are
#: once limits.memory_total is reached with this table over its share (budget.room).
MAX_ALERT_HOSTS = 16384
OTHER_HOSTS = "(other hosts)"
ALERT_HOSTS = "summary.alert_hosts"  # its name in limits.memory_total


class Engine:
    def __init__(self, detectors: list[Detector], alert_sinks: list, event_sinks: list):
        self.detectors = detectors
        self.alert_sinks = alert_sinks
        self.event_sinks = event_sinks
        self.events = Counter()  # (dataset, action) -> count, for the summary
        self.alerts = Counter()  # severity -> count
        self.alert_rules = Counter()  # (rule id, name) -> count
        self.alert_hosts = Counter()  # source (client) address of the alert's flow -> count
        self.last_ts = 0
        self._routes: dict[type, tuple] = {}  # event type -> the on_event methods that want it
        # site suppressions over every detector's alerts (detect/suppress.py); counted for the summary
        self.alert_filters = [d.suppress for d in detectors if hasattr(d, "suppress")]
        self.suppressed = 0
        # detectors that want to know what the others found (the ML's adaptation never learns those windows)
        self.alert_observers = [d.on_alert for d in detectors if hasattr(d, "on_alert")]
        self._internal: dict[type, bool] = {}  # event type -> internal (detectors only)

    def _route(self, t: type) -> tuple:
        r = self._routes[t] = tuple(d.on_event for d in self.detectors
                                    if getattr(d, "accepts", None) is None or d.accepts(t))
        self._internal[t] = getattr(t, "internal", False) is True
        return r

    def reroute(self) -> None:
        """Call after changing `detectors`."""
        self._routes.clear()
        self._internal.clear()

    def on_event(self, ev) -> None:
        t = type(ev)
        route = self._routes.get(t)
        if route is None:
            route = self._route(t)
        if not self._internal[t]:
            if cython.compiled:  # the Counter updated as the dict it is (C calls, no Counter item slot: engine.pxd)
                counts = cython.cast(dict, self.events)
                k = (ev.dataset, ev.label)
                counts[k] = counts.get(k, 0) + 1
            else:
                self.events[ev.dataset, ev.label] += 1
            for s in self.event_sinks:
                s.write_event(ev)
        for on_event in route:
            alerts = on_event(ev)
            if alerts:
                for a in alerts:
                    self._alert(a)

    def _alert(self, a) -> None:
        for f in self.alert_filters:
            if f(a):
                self.suppressed += 1
                return
        self.alerts[a.severity] += 1
        fl = a.flow or getattr(a.event, "flow", None)
        h = getattr(fl, "client_ip", None) or "-"
        hosts = self.alert_hosts
        if h in hosts or (len(hosts) < MAX_ALERT_HOSTS and budget.room(ALERT_HOSTS, len(hosts), budget.ALERT_HOST_BYTES,
                                                                  MAX_ALERT_HOSTS * budget.ALERT_HOST_BYTES)):
            hosts[h] += 1
        else:  # a spoofed flood alerts from every address: the summary's table keeps the first ones
            first = OTHER_HOSTS not in hosts
            hosts[OTHER_HOSTS] += 1
            if first and len(hosts) <= MAX_ALERT_HOSTS:  # stopped by limits.memory_total, not its cap: say so
                from ..events import FlowNotice
                self.on_event(FlowNotice(a.ts, "memory_cap", None, None, budget.room_refused(ALERT_HOSTS)))
        self.alert_rules[(a.rule_id, a.rule_name)] += 1
        for s in self.alert_sinks:
            s.write_alert(a)
        for o in self.alert_observers:
            o(a)

    def flush(self, ts: int) -> None:
        for d in self.detectors:
            for a in d.flush(ts) or ():
                self._alert(a)
