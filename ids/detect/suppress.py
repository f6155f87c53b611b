"""Site suppressions over every detector's alerts (anomaly, auth, baseline, ML; the rules engine applies its
own before thresholds count): a suppression names a rule id or '*' for every alert, an optional `match` on
the alert's fields (those of the event that triggered it), an `expires` date compared with event time.

The engine asks `suppress(alert)` before an alert reaches any sink and counts what was suppressed.
"""
from __future__ import annotations

from collections import Counter

from .rules.compile import Compiler, DocView
from .rules.rule import SiteLists


class AlertSuppressor:
    """Applies the site file's suppressions to alerts of the built-in detectors. Takes no events."""

    def __init__(self, site: SiteLists):
        self.site = site
        self._preds: dict = {}  # (suppression index, protocol) -> predicate or None (does not compile there)
        self.by_rule: Counter = Counter()  # rule id -> alerts suppressed here

    @staticmethod
    def accepts(_t) -> bool:
        return False

    def on_event(self, ev):
        return None

    def flush(self, ts: int):
        return None

    def _pred(self, i: int, s, protocol: str):
        key = (i, protocol)
        if key not in self._preds:
            cx = Compiler(protocol, self.site.lists, self.site.positions, self.site.item_positions, None, [])
            p = cx.compile(s.match)
            self._preds[key] = None if cx.failed else p
        return self._preds[key]

    def suppress(self, a) -> bool:
        if a.source == "rules":  # already weighed by the rules engine, before its thresholds
            return False
        doc = None
        for i, s in enumerate(self.site.suppressions):
            if "*" not in s.rules and a.rule_id not in s.rules:
                continue
            if s.expires_ns is not None and a.ts > s.expires_ns:
                continue
            if s.match is not None:
                pred = self._pred(i, s, a.protocol if a.protocol in ("modbus", "opcua", "mqtt") else "modbus")
                if pred is None:
                    continue
                if doc is None:
                    doc = DocView(doc=a.to_doc())
                if not pred(doc.get):
                    continue
            self.by_rule[a.rule_id] += 1
            return True
        return False
