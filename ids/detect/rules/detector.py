"""The rules detector: compiled rules indexed by protocol and, within it, each under its most selective
condition (index.py: function code, service, message type, address range, host, topic, node id), so an event
is tested only against rules that can match it; thresholds, suppressions with expiry, and hot reload that
keeps the running rules when a changed file is broken.

An event's ECS document is built only when some indexed rule can apply to it (the fields the index reads
come from the typed event where the protocol has a reader), and once per event whatever the number of rules.
"""
from __future__ import annotations

import gc
import inspect
import os
import sys
import time
from collections import deque
from dataclasses import dataclass

from ...errors import UserError
from ...events import Alert
from ...flow.budget import KeyCap
from ..bounds import WindowCount
from ..attack import techniques
from .compile import MISSING, Compiler, DocView
from .fastpath import FAST
from .fields import SECRET_FIELDS
from .groups import FALLBACK
from .index import ProtoIndex
from .loader import RuleSet, is_lists_file, load_lists, load_paths, rule_files
from .rule import RULE_DATASETS, Issue, Rule, SiteLists, fields_of, warning
from .reason import describe
from .validators import SuppressionValidator, validate

NS = 1_000_000_000
_new_view = dict.__new__
_RULE_DATASETS = frozenset(RULE_DATASETS.values())
MAX_GROUPS = 100_000  # threshold groups kept per rule; the oldest are forgotten first (counted)
GROUP_BYTES = 700  # a threshold group with its key, before the times and values it counts (tracemalloc)
TIME_BYTES = 40  # a match time in a group's window
BOTH_BYTES = 80  # a time with its count in a `both` group's window (WindowCount)
WINDOW_BYTES = 700  # the WindowCount itself, its second deque
VALUE_BYTES = 170  # a distinct value with its time


# ---------------------------------------------------------------------------------------------- compiled set

class CompiledRule:
    __slots__ = ("rule", "pred", "order", "techniques", "threshold", "suppressions", "group_by")

    def __init__(self, rule: Rule, pred, order: int):
        self.rule = rule
        self.pred = pred
        self.order = order
        self.techniques = techniques(*rule.attack)
        self.threshold = None
        self.suppressions: tuple = ()
        self.group_by = rule.threshold.group_by if rule.threshold else ()


class CompiledSuppression:
    __slots__ = ("s", "pred", "hits")

    def __init__(self, s, pred):
        self.s = s
        self.pred = pred
        self.hits = 0


@dataclass
class Compiled:
    """A ruleset ready to run: the index, and what loading and validation reported."""

    index: dict  # dataset -> ProtoIndex
    rules: list  # CompiledRule, in load order
    site: SiteLists
    issues: list
    files: list

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]


#: rule ids of the built-in detectors: suppressions may name them without a rule file (detect/suppress.py)
BUILTIN_PREFIXES = ("otids.anomaly.", "otids.auth.", "otids.baseline.", "otids.ml.", "otids.flow", "otids.live.",
                    "otids.net")


def compile_rules(rs: RuleSet, site: SiteLists, extra_issues: list | None = None,
                  lists_override: dict | None = None) -> Compiled:
    issues = list(rs.issues) + list(extra_issues or [])
    issues += validate(rs.rules)
    issues += SuppressionValidator().validate(site)
    lists = dict(site.lists)
    if lists_override:
        lists.update(lists_override)
    compiled, index = [], {}
    bad = {i.rule_id for i in issues if i.severity == "error" and i.rule_id}
    seen = {(i.source, i.rule_id) for i in issues}
    for i, r in enumerate(rs.rules):
        found: list = []
        cx = Compiler(r.protocol, lists, site.positions, site.item_positions, r.id, found)
        pred = cx.compile(r.match)
        # problems validation already reported at the same place are not repeated
        issues += [x for x in found if (x.source, x.rule_id) not in seen]
        if cx.failed or not r.enabled or r.id in bad:
            continue
        cr = CompiledRule(r, pred, i)
        compiled.append(cr)
        pi = index.get(r.dataset)
        if pi is None:
            pi = index[r.dataset] = ProtoIndex(r.protocol, _doc_of)
        pi.add(cr, lists)
        if fields_of(r.match) & SECRET_FIELDS:
            pi.needs_secrets = True
    by_rule: dict = {}
    for s in site.suppressions:
        pred = (lambda g: True)
        if s.match is not None:
            protos = {cr.rule.protocol for cr in compiled if cr.rule.id in s.rules or "*" in s.rules} or {"modbus"}
            cx = Compiler(sorted(protos)[0], lists, site.positions, site.item_positions, None, issues)
            pred = cx.compile(s.match)
            if cx.failed:
                continue
        cs = CompiledSuppression(s, pred)
        for rid in s.rules:
            by_rule.setdefault(rid, []).append(cs)
        known = {r.id for r in rs.rules}
        for rid in s.rules:
            if rid != "*" and rid not in known and not rid.startswith(BUILTIN_PREFIXES):
                issues.append(warning("unknown-rule", f"suppression names rule '{rid}', which is not loaded", s.source))
    for cr in compiled:
        cr.suppressions = tuple(by_rule.get(cr.rule.id, []) + by_rule.get("*", []))
    for pi in index.values():
        pi.finish()
    return Compiled(index, compiled, site, issues, list(rs.files) + ([site.path] if site.path else []))


def load_ruleset(paths: list[str], lists_path: str | None) -> Compiled:
    """The one path from rule files to a runnable set (lint, analyze and reload use it alike).

    The cyclic collector is paused while it runs: parsing and compiling build hundreds of thousands of
    small objects (YAML nodes, positions, conditions), none of them garbage cycles, and at the default
    gen-0 threshold the collector walked them again and again: 5,000 site rules loaded in 2.6 CPU s,
    more than half of it collection."""
    paused = gc.isenabled()
    gc.disable()
    try:
        rs = load_paths(paths)
        site, li = load_lists(lists_path)
        c = compile_rules(rs, site, li)
    finally:
        if paused:
            gc.enable()
    if lists_path is None:
        from .prepare import disable_without_lists
        c.issues = disable_without_lists(c.issues)
    return c


def default_lists(paths: list[str]) -> str | None:
    """Without --lists: a `lists.yml` in (the first) rules directory given, if there is one."""
    for p in paths:
        if os.path.isdir(p) and os.path.isfile(os.path.join(p, "lists.yml")):
            return os.path.join(p, "lists.yml")
    return None


# ---------------------------------------------------------------------------------------------- thresholds

class ThresholdState:
    """Counts matches per group in a sliding window. Types as Suricata's `threshold`: `threshold` alerts
    every time `count` matches fall within `window` (then starts over), `limit` alerts on the first `count`
    matches per window, `both` alerts once per window when `count` is reached."""

    __slots__ = ("thr", "window", "groups", "cap")

    def __init__(self, thr, max_bytes: int = 1 << 40, rule_id: str = ""):
        self.thr = thr
        self.window = int(thr.window_s * NS)
        self.groups: dict = {}
        # its share of limits.rules_state_bytes at what one group can hold: `count` times, or up to 4 x
        # `count` distinct values (type `both` keeps at most 4 x `count` + 1 times with their counts in its
        # window, WindowCount: charged BOTH_BYTES each)
        both = thr.type == "both" and thr.distinct is None
        entry = GROUP_BYTES + (WINDOW_BYTES if both else 0) + 4 * thr.count * (
            VALUE_BYTES if thr.distinct is not None else BOTH_BYTES if both else TIME_BYTES)
        self.cap = KeyCap(f"rules.threshold {rule_id}".strip(), max_bytes, entry, MAX_GROUPS)

    @property
    def evicted(self) -> int:
        return self.cap.hits

    def values(self, key) -> list:
        """The distinct values counted for `key` (a distinct threshold), sorted."""
        g = self.groups.get(key)
        return sorted(g[1], key=lambda v: (str(type(v)), v)) if g is not None else []

    def hit(self, key, ts: int, value=None) -> int:
        """Record a match; returns how many matches the alert stands for, 0 for no alert."""
        g = self.groups.get(key)
        if g is None:
            if self.cap.full(self.groups):
                self.cap.make_room(self.groups, checked=True)
            # times (type `both`: a WindowCount, a faster flood of one group no longer holds more), distinct
            # values, alerts, window start
            t = self.thr
            q0 = WindowCount(self.window, 2 * t.count) if t.type == "both" and t.distinct is None else deque()
            g = self.groups[key] = [q0, {}, 0, -1 << 62]
        t = self.thr
        lo = ts - self.window
        q, seen = g[0], g[1]
        if t.type == "limit":
            if ts - g[3] > self.window:
                g[3], g[2] = ts, 0
            if g[2] < t.count:
                g[2] += 1
                return 1
            return 0
        if t.distinct is not None:
            seen[value] = ts
            if len(seen) > 4 * t.count:  # bound: forget the oldest beyond what can ever be needed
                for k in sorted(seen, key=seen.get)[: len(seen) - 2 * t.count]:
                    del seen[k]
            for k in [k for k, v in seen.items() if v < lo]:
                del seen[k]
            n = len(seen)
            if n < t.count:
                return 0
            # a scan is one finding per window per group, whatever its length (#20): not one per `count` values
            if t.type != "limit" and ts - g[3] <= self.window:
                return 0
            g[3] = ts
            return n
        elif t.type == "both":
            n = q.add(ts, lo)
        else:
            q.append(ts)
            while q and q[0] < lo:
                q.popleft()
            n = len(q)
        if n < t.count:
            return 0
        if t.type == "both":
            if ts - g[3] <= self.window:
                return 0
            g[3] = ts
            return n
        q.clear()
        seen.clear()
        return n


# ---------------------------------------------------------------------------------------------- detector

_SECRETS_OK: dict = {}


def _doc_of(ev, secrets: bool) -> dict:
    if type(ev) is dict:
        return ev
    if secrets:
        t = type(ev)
        ok = _SECRETS_OK.get(t)
        if ok is None:
            try:
                ok = "include_secrets" in inspect.signature(t.to_doc).parameters
            except (TypeError, ValueError):
                ok = False
            _SECRETS_OK[t] = ok
        if ok:
            return ev.to_doc(include_secrets=True)
    return ev.to_doc()


def _doc_ts(doc: dict) -> int:
    from datetime import datetime
    ts = doc.get("@timestamp")
    if isinstance(ts, str):
        try:
            t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            return int(t.timestamp()) * NS + t.microsecond * 1000
        except ValueError:
            pass
    return 0


class RulesDetector:
    """Detector interface (`on_event`, `flush`) over a compiled ruleset, with optional hot reload."""

    def __init__(self, compiled: Compiled, paths: list[str] | None = None, lists_path: str | None = None,
                 reload_s: float = 0.0, report=None, limits=None):
        from ...config import LimitsConfig
        self.c = compiled
        self.max_bytes = (limits or LimitsConfig()).rules_state_bytes  # shared by the threshold rules
        self.gate = [None]
        self.paths = paths or []
        self.lists_path = lists_path
        self.reload_s = reload_s
        self.report = report or (lambda msg: print(f"otids: rules: {msg}", file=sys.stderr))
        self.states: dict = {}
        self._routes: dict = {}  # event type -> (its protocol's index or None, its group lookup)
        self._init_states()
        self.matches: dict = {}  # rule id -> matches (before thresholds and suppressions)
        self.suppressed = 0
        self.reloads = 0
        self.reload_failures = 0
        self._tick = 0
        self._next_check = time.monotonic() + reload_s
        self._sig = self._signature() if reload_s > 0 else None

    def _init_states(self, old: dict | None = None):
        states = {}
        share = self.max_bytes // max(1, sum(1 for cr in self.c.rules if cr.rule.threshold is not None))
        for cr in self.c.rules:
            t = cr.rule.threshold
            if t is None:
                continue
            prev = (old or {}).get(cr.rule.id)
            if prev is not None and prev.thr == t:
                prev.cap = KeyCap(prev.cap.name, share, prev.cap.entry, MAX_GROUPS)
                states[cr.rule.id] = prev
            else:
                states[cr.rule.id] = ThresholdState(t, share, cr.rule.id)
        self.states = states

    # ------------------------------------------------------------------ reload
    def _signature(self):
        files, _ = rule_files(self.paths)
        if self.lists_path:
            files.append(self.lists_path)
        sig = []
        for f in files:
            try:
                st = os.stat(f)
                sig.append((f, st.st_mtime_ns, st.st_size))
            except OSError:
                sig.append((f, None, None))
        return tuple(sig)

    def check_reload(self, force: bool = False) -> bool:
        """Reload if a rule or lists file changed; a broken set keeps the running rules. True if reloaded."""
        if not self.paths:
            return False
        sig = self._signature()
        if sig == self._sig and not force:
            return False
        self._sig = sig
        new = load_ruleset(self.paths, self.lists_path)
        if new.errors:
            self.reload_failures += 1
            self.report(f"reload failed, keeping the {len(self.c.rules)} running rules; "
                        f"{len(new.errors)} error(s):")
            for e in new.errors:
                self.report(f"  {e}")
            return False
        old = self.states
        self.c = new
        self._routes.clear()
        self._init_states(old)
        self.reloads += 1
        self.report(f"reloaded {len(new.rules)} rules from {len(new.files)} file(s)")
        return True

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): re-read the rule and lists files now. A broken set keeps the running
        rules and raises UserError so the sensor reports it."""
        if self.paths and not self.check_reload(force=True):
            raise UserError(f"rules: reload failed, keeping the {len(self.c.rules)} running rules "
                            f"(`otids rules lint` lists every error)")

    # ------------------------------------------------------------------ matching
    def on_event(self, ev):
        if self.reload_s > 0:
            self._tick += 1
            if not self._tick & 0x3FF and time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + self.reload_s
                self.check_reload()
        try:
            pi, look, rest = self._routes[type(ev)]
        except KeyError:
            pi, look, rest = self._route(ev)
        cands = look(ev)  # exact-key groups: no view, no document, one dict lookup per group
        if cands is None and rest is None:
            return None  # the common case: met no rule
        if cands is FALLBACK:  # a list in a grouped field: the full tree decides
            view = _view(ev, pi)
            cands = pi.lookup_record(view, ev, view.fast)
        else:
            view = None
            if rest is not None:
                view = _view(ev, pi)
                more = pi.lookup_record(view, ev, view.fast, rest)
                if more:
                    cands = pi._merge([cands, more]) if cands else more
            if not cands:
                return None
            if view is None:
                view = _view(ev, pi)
        return self._run(cands, view, ev, ev.ts)

    def candidates(self, ev) -> tuple:
        """The rules on_event tests the event against, in load order (for `otids rules bench` and tests)."""
        try:
            pi, look, rest = self._routes[type(ev)]
        except KeyError:
            pi, look, rest = self._route(ev)
        cands = look(ev)
        if cands is FALLBACK:
            view = _view(ev, pi)
            return pi.lookup_record(view, ev, view.fast)
        if rest is not None:
            view = _view(ev, pi)
            more = pi.lookup_record(view, ev, view.fast, rest)
            if more:
                cands = pi._merge([cands, more]) if cands else more
        return tuple(cands or ())

    def _route(self, ev):
        """(index, group lookup, tree of the rules no group holds or None) for events of this type: asked once
        per type and rule set. Without groups (or readers for them) the lookup sends every event to the tree."""
        t = type(ev)
        pi = self.c.index.get(ev.dataset)
        if pi is None:
            route = (None, _nothing, None)
        else:
            look = pi.group_lookup(t, _fast(t))
            rest = getattr(pi, "rest", None)  # (a PlainIndex has none: its lookup is every rule)
            rest = rest if rest is not None and (rest.probes or rest.wild) else None
            route = (pi, look or _everything, rest)
        if type(getattr(t, "dataset", None)) is str:  # a dataset per type; else per event: asked each time
            self._routes[t] = route
        return route

    def accepts(self, t: type) -> bool:
        """The engine routes only the records of protocols rules can be written for to this detector (a
        reload may add rules for any of them, so the answer does not depend on the rules loaded)."""
        ds = getattr(t, "dataset", None)
        return type(ds) is not str or ds in _RULE_DATASETS

    def on_doc(self, doc: dict, ts: int | None = None):
        """Match a document (NDJSON events, inline test cases); returns the alerts it raises."""
        ev = doc.get("event") if isinstance(doc.get("event"), dict) else {}
        pi = self.c.index.get(ev.get("dataset"))
        if pi is None:
            return None
        view = DocView(doc)
        cands = pi.lookup(view.get)
        if not cands:
            return None
        return self._run(cands, view, None, _doc_ts(doc) if ts is None else ts)

    def _run(self, cands, view: DocView, ev, ts: int):
        g = view.get
        out = None
        for cr in cands:
            if not cr.pred(g):
                continue
            rid = cr.rule.id
            self.matches[rid] = self.matches.get(rid, 0) + 1
            if cr.suppressions and self._suppressed(cr, g, ts):
                continue
            count = 1
            extra = {}
            st = self.states.get(rid)
            if st is not None:
                key = tuple(_key(g(f)) for f in cr.group_by)
                val = _key(g(st.thr.distinct)) if st.thr.distinct else None
                count = st.hit(key, ts, val)
                if st.cap.hits != st.cap.reported:
                    more = self._cap_alerts(ts)
                    if more:
                        out = (out or []) + more
                if not count:
                    continue
                extra = {"threshold": {"count": count, "window": st.thr.window_s,
                                       "group": {f: k for f, k in zip(cr.group_by, key)}}}
                if st.thr.distinct:
                    extra["threshold"]["values"] = st.values(key)  # named in the reason
            a = self._alert(cr, view, ev, ts, count, extra)
            if out is None:
                out = [a]
            else:
                out.append(a)
        return out

    def _suppressed(self, cr, g, ts) -> bool:
        for cs in cr.suppressions:
            exp = cs.s.expires_ns
            if exp is not None and ts > exp:
                continue
            if cs.pred(g):
                cs.hits += 1
                self.suppressed += 1
                return True
        return False

    def _alert(self, cr: CompiledRule, view: DocView, ev, ts: int, count: int, extra: dict) -> Alert:
        r = cr.rule
        src, dst = view.get("source.ip"), view.get("destination.ip")
        where = f" ({src} -> {dst})" if src is not MISSING and dst is not MISSING else ""
        if r.threshold is not None:
            t = r.threshold
            what = f"distinct {t.distinct} values" if t.distinct else "matching events"
            reason = f"{r.title}: {count} {what} within {t.window_s:g} s{where}"
            seen = extra.get("threshold", {}).pop("values", None)
            if seen:
                reason += f": {', '.join(str(v) for v in seen)}"
            else:
                said = describe(view, r.protocol)
                if said:
                    reason += f"; last: {said}"
        else:
            said = describe(view, r.protocol)
            reason = f"{r.title}{where}" + (f": {said}" if said else "")
        extra["rule_source"] = str(r.source)
        if r.origin == "suricata":
            extra["suricata"] = {k: r.meta[k] for k in ("sid", "rev", "classtype") if r.meta.get(k) is not None}
        return Alert(ts=ts, rule_id=r.id, rule_name=r.title, description=r.description, severity=r.severity,
                     reason=reason, source="rules", techniques=cr.techniques, event=ev if ev is not None else view.doc,
                     protocol=r.protocol, count=count, references=r.references, extra=extra,
                     ruleset=os.path.basename(r.source.path) if r.origin == "suricata" else "otids")

    def _cap_alerts(self, ts: int, gate: list | None = ...) -> list:
        """One memory_cap alert naming the threshold rules that forgot groups, at most one a minute."""
        from ..bounds import memory_cap_alert
        gate = self.gate if gate is ... else gate
        if gate is not None:
            if gate[0] is not None and ts - gate[0] < 60 * NS:
                return []
            gate[0] = ts
        due = []
        for st in self.states.values():
            c = st.cap
            if c.hits != c.reported:
                c.last_notice = None
                due.append(c.report(ts))
        return [memory_cap_alert(ts, due, "rules", "shares of limits.rules_state_bytes")] if due else []

    def flush(self, ts: int):
        return self._cap_alerts(ts, None) or None


def _nothing(ev):
    return None


def _everything(ev):
    return FALLBACK


def _fast(t: type) -> dict:
    """The typed readers of a record type (those of a base class it derives from, or none)."""
    fast = FAST.get(t)
    if fast is None:
        fast = FAST[t] = next((FAST[b] for b in t.__mro__ if b in FAST), {})
    return fast


def _view(ev, pi) -> DocView:
    """The event's view: DocView(None, ev, readers, build) without a Python __init__ per event."""
    view = _new_view(DocView)
    view._doc = None
    view.ev = ev
    view.fast = _fast(type(ev))
    view.build = pi.build
    return view


def _key(v):
    if v is MISSING:
        return None
    if type(v) is list:
        return tuple(v)
    return v


def needed_lists(rules: list) -> list[str]:
    """Every site list the rules name (what a lists file for this rule set must define)."""
    from .prepare import _LIST
    c = compile_rules(RuleSet(rules=list(rules)), SiteLists())
    return sorted({m.group(1) for i in c.issues if i.code == "undefined-list" for m in [_LIST.search(i.message)] if m})
