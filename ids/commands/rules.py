"""`otids rules lint|test|dry-run|bench` and the `otids analyze --rules PATH` extension.

lint reports every problem of every file in one run (exit 1 if any error, 2 if a path is missing or the lists
file broken, as analyze refuses them); test runs the cases rules carry
(inline documents that must / must not match, pcaps with an exact alert count); dry-run shows how often each
rule would have fired per day on recorded traffic; bench prints engine throughput with 10 and 1,000 rules.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..errors import RuleError, UserError
from .report import SHAPE_ERRORS, shape_problem
from typing import TYPE_CHECKING

from ..lazy import lazy

if TYPE_CHECKING:
    from ..detect.rules.rule import SiteLists

# The rules engine loads when a run or command uses rules or lists, not for every run
_detector = lazy("ids.detect.rules.detector")
_loader = lazy("ids.detect.rules.loader")
_rule = lazy("ids.detect.rules.rule")

NS = 1_000_000_000


# ---------------------------------------------------------------------------------------------- analyze

def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("signature rules")
    g.add_argument("--rules", action="append", metavar="PATH", default=[],
                   help="YAML rule files or directories, or Suricata .rules files (repeatable)")
    g.add_argument("--lists", metavar="FILE", help="site lists and suppressions (default: lists.yml in the rules dir)")
    g.add_argument("--rules-reload", type=float, default=5.0, metavar="SECONDS",
                   help="check rule files for changes this often and reload them (0: never; default 5)")
    g.add_argument("--strict", action="store_true",
                   help="a broken rule, or one disabled for want of site lists, makes the exit code 1 (the "
                        "other rules still run)")


def build(args, config):
    paths = getattr(args, "rules", None) or []
    if not paths:
        if not getattr(args, "lists", None):
            return [], [], []
    from ..detect.suppress import AlertSuppressor
    from ..detect.rules.prepare import disabled_line, fatal
    if not paths:
        site, li = _loader.load_lists(args.lists)  # suppressions only: they cover every detector's alerts
        li = [i for i in li if i.severity == "error"]
        if li:
            for i in li:
                print(f"otids: {i}", file=sys.stderr)
            raise RuleError(f"{len(li)} error(s) in the lists file; nothing analysed")
        return ([AlertSuppressor(site)] if site.suppressions else []), [], []
    lists = args.lists or _detector.default_lists(paths)
    c = _detector.load_ruleset(paths, lists)
    stop = fatal(c.issues, lists)
    if stop:
        for i in stop:
            print(f"otids: {i}", file=sys.stderr)
        raise RuleError(f"{len(stop)} error(s) in the rules or lists; nothing analysed")
    # A broken YAML rule and a broken Suricata rule alike: reported, left out, the rest run.
    broken = c.errors
    for i in broken:
        print(f"otids: rules: not loaded: {i}", file=sys.stderr)
    line = disabled_line(c.issues)
    if line:
        print(f"otids: rules: {line}", file=sys.stderr)
    if not c.rules:
        raise RuleError("no rules loaded from " + ", ".join(paths))
    det = _detector.RulesDetector(c, paths, lists, args.rules_reload, limits=config.limits)
    extra = [AlertSuppressor(c.site)] if c.site.suppressions else []
    if getattr(args, "strict", False):
        n_off = len({i.rule_id or str(i.source) for i in c.issues if i.code == "needs-lists"})
        if broken or n_off:
            det.errors_at_end = [f"rules: --strict: {len(broken)} error(s) in the rules, {n_off} rule(s) "
                                 f"disabled for want of site lists (`otids rules lint` shows them)"]
    return [det, *extra], [], []


# ---------------------------------------------------------------------------------------------- commands

def register(sub) -> None:
    p = sub.add_parser("rules", help="lint, test, dry-run and benchmark signature rules",
                       description="Work with signature rules (YAML in rules/, or Suricata .rules).")
    rs = p.add_subparsers(dest="rules_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    lint = rs.add_parser("lint", help="check rules and report every problem with file:line:col")
    lint.add_argument("paths", nargs="*", default=["rules"], metavar="PATH")
    lint.add_argument("--lists", metavar="FILE", help="site lists file to check list references against")
    lint.add_argument("--strict", action="store_true", help="warnings fail the check too")
    lint.set_defaults(func=cmd_lint)

    t = rs.add_parser("test", help="run the test cases the rules carry")
    t.add_argument("paths", nargs="*", default=["rules"], metavar="PATH")
    t.add_argument("--lists", metavar="FILE", help="site lists used where a rule file has no test_lists")
    t.add_argument("-v", "--verbose", action="store_true", help="one line per test case")
    t.add_argument("--strict", action="store_true", help="a skipped case (its capture not found) fails the run")
    t.set_defaults(func=cmd_test)

    d = rs.add_parser("dry-run", help="how many alerts each rule would raise per day on recorded traffic")
    d.add_argument("rules", metavar="RULES", help="rule file or directory (repeat with commas)")
    d.add_argument("inputs", nargs="+", metavar="EVENTS|PCAP", help="events NDJSON (otids analyze --events) or captures")
    d.add_argument("--lists", metavar="FILE")
    d.add_argument("--json", action="store_true", help="print the table as JSON")
    d.set_defaults(func=cmd_dry_run)

    b = rs.add_parser("bench", help="engine events/s with 10 and with 1,000 rules (--site: 10 to 50,000 site-shaped rules)")
    b.add_argument("--events", type=int, default=200_000, help="events per measurement")
    b.add_argument("--counts", default=None, help="rule counts to measure (comma-separated; default 0,10,1000, "
                   "with --site 0,10,100,1000,5000,10000)")
    b.add_argument("--site", action="store_true", help="rules of the shape a large site or an exported baseline "
                   "writes (one function, one register address, one host each), indexed and as a plain loop")
    b.add_argument("--plain-max", type=int, default=1000, help="with --site: also time the plain loop over every "
                   "rule (and compare its alerts) up to this many rules")
    b.add_argument("--seed", type=int, default=1, help="with --site: seed of the generated rules")
    b.add_argument("--pipeline", action="store_true", help="the whole pipeline on --pcap without rules and with "
                   "each count of site-shaped rules, and tshark on the same capture (packets/s, ratios)")
    b.add_argument("--runs", type=int, default=2, help="with --pipeline: runs of each (the fastest is shown)")
    b.add_argument("--pcap", default=None, help="capture whose Modbus events are replayed (default pcaps/modbus-demo.pcap)")
    b.set_defaults(func=cmd_bench)


def _print_issues(issues, out=None) -> None:
    out = out or sys.stdout  # looked up when called: a default bound at import misses a redirected stdout
    for i in sorted(issues, key=lambda i: (i.source.path, i.source.line or 0, i.source.col or 0)):
        print(str(i), file=out)


def cmd_lint(args) -> int:
    from ..detect.rules.detector import needed_lists
    from ..detect.rules.prepare import disabled_line, fatal
    lists = args.lists or _detector.default_lists(args.paths)
    rs = _loader.load_paths(args.paths)
    c = _detector.load_ruleset(args.paths, lists)  # what `analyze --rules` would run, decided by the same code
    issues = c.issues
    _print_issues(issues)
    errs = sum(1 for i in issues if i.severity == "error")
    warns = len(issues) - errs
    files = len(rs.files)
    need = needed_lists(rs.rules)
    if need:
        print(f"site lists this rule set uses: {', '.join('$' + n for n in need)}"
              + (f" (from {lists})" if lists else ""), file=sys.stderr)
    line = disabled_line(issues)
    if line:
        print(line, file=sys.stderr)
    print(f"{len(rs.rules)} rules in {files} file(s): {errs} error(s), {warns} warning(s); {len(c.rules)} would run",
          file=sys.stderr)
    if fatal(issues, lists):  # a missing path or a broken lists file: bad input, as analyze --rules says (2)
        return 2
    return 1 if errs or (args.strict and warns) else 0


# ---------------------------------------------------------------------------------------------- test

def _case_lists(rule, case, site: SiteLists) -> dict:
    lists = dict(site.lists)
    lists.update(rule.test_lists or {})
    lists.update(case.lists or {})
    return lists


def _resolve_pcap(pcap: str, rule) -> str:
    """A test capture is found relative to the rule file (or absolute), never relative to where otids runs."""
    return os.path.join(os.path.dirname(rule.source.path), os.path.expanduser(pcap))


#: MQTT packet types by the document part that carries them (mqtt.types is the index field of MQTT rules)
_MQTT_PARTS = ("connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp", "subscribe", "suback",
               "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth")


def _with_index_field(d: dict, protocol: str) -> dict:
    """An inline MQTT case that names `mqtt.publish.topic` is a PUBLISH: derive `mqtt.types` (which every MQTT
    rule is indexed by) from the parts the document has, unless it says them itself."""
    if protocol != "mqtt":
        return d
    m = d.get("mqtt")
    if isinstance(m, dict) and "types" not in m:
        types = [k for k in _MQTT_PARTS if k in m]
        if types:
            d = dict(d)
            d["mqtt"] = {**m, "types": types}
    return d


SKIPPED = None  # run_case's verdict for a case that cannot run here (its capture is not beside the rules)


def run_case(rule, case, site: SiteLists) -> tuple[bool | None, str]:
    """Run one test case; returns (passed, description); passed is None when the case was skipped."""
    lists = _case_lists(rule, case, site)
    c = _detector.compile_rules(_loader.RuleSet(rules=[rule]), _rule.SiteLists(lists=lists))
    errs = [i for i in c.errors if i.code not in ("no-firing-test", "no-quiet-test")]
    if errs or not c.rules:
        return False, f"rule does not compile: {errs[0] if errs else 'disabled'}"
    det = _detector.RulesDetector(c)
    if case.kind == "pcap":
        from ..pipeline import analyze
        path = _resolve_pcap(case.pcap, rule)
        if not os.path.isfile(path):
            return SKIPPED, f"{case.pcap}: no such capture beside the rule file ({path}); skipped"
        _, col = analyze([path], detectors=[det])
        n = sum(1 for a in col.alerts if a.rule_id == rule.id)
        return n == case.alerts, f"{case.pcap}: {n} alert(s), expected {case.alerts}"
    docs, interval = case.doc
    n = 0
    base = 1_700_000_000 * NS
    for i, d in enumerate(docs):
        d = _with_index_field(_loader.expand_doc(d), rule.protocol)
        ev = dict(d.get("event") or {})
        ev.setdefault("dataset", _rule.RULE_DATASETS[rule.protocol])
        d["event"] = ev
        for a in det.on_doc(d, base + int(i * interval * NS)) or ():
            n += 1
    what = {"match": "must match", "no_match": "must not match", "events": "events"}[case.kind]
    return n == case.alerts, f"{what} ({len(docs)} event(s)): {n} alert(s), expected {case.alerts}"


def cmd_test(args) -> int:
    rs = _loader.load_paths(args.paths)
    lists_path = args.lists or _detector.default_lists(args.paths)
    site, li = _loader.load_lists(lists_path)
    bad = [i for i in rs.issues + li if i.severity == "error"]
    if bad:
        _print_issues(bad, sys.stderr)
        raise RuleError(f"{len(bad)} error(s) while loading rules (otids rules lint)")
    passed = failed = untested = skipped = 0
    for r in rs.rules:
        if not r.tests:
            if r.origin == "yaml":
                untested += 1
                print(f"{r.source}: {r.id}: no tests")
            continue
        for case in r.tests:
            ok, desc = run_case(r, case, site)
            if ok is SKIPPED:
                skipped += 1
                print(f"SKIP {case.source or r.source}: {r.id}: {desc}")
            elif ok:
                passed += 1
                if args.verbose:
                    print(f"PASS {r.id}: {desc}")
            else:
                failed += 1
                print(f"FAIL {case.source or r.source}: {r.id}: {desc}")
    print(f"{passed} passed, {failed} failed, {untested} rule(s) without tests"
          + (f", {skipped} skipped (captures not found beside the rule files)" if skipped else ""), file=sys.stderr)
    return 1 if failed or (skipped and args.strict) else 0


# ---------------------------------------------------------------------------------------------- dry run

def _dry_run_error(compiled, doc: dict):
    """What a fresh detector raises on `doc` alone, or None (for naming the field of a wrong-shaped event)."""
    from ..detect.rules.detector import _doc_ts
    try:
        _detector.RulesDetector(compiled).on_doc(doc, _doc_ts(doc))
    except SHAPE_ERRORS as e:
        return e
    return None


def cmd_dry_run(args) -> int:
    paths = [p for p in args.rules.split(",") if p]
    lists = args.lists or _detector.default_lists(paths)
    c = _detector.load_ruleset(paths, lists)
    errs = [i for i in c.errors]
    if errs:
        _print_issues(errs, sys.stderr)
        raise RuleError(f"{len(errs)} error(s) in the rules (otids rules lint)")
    det = _detector.RulesDetector(c)
    counts: dict = {}
    first = last = None
    n_events = 0
    span_s = 0.0  # each input is its own recording: their spans add up (captures of different years do not
    #               make a span of decades)
    for inp in args.inputs:
        if first is not None and last is not None:
            span_s += (last - first) / NS
        first = last = None
        if not os.path.isfile(inp):
            raise UserError(f"{inp}: no such file")
        if inp.endswith((".ndjson", ".json", ".jsonl")):
            with open(inp, "rb") as fh:
                for ln, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise UserError(f"{inp}:{ln}: not JSON (not UTF-8 text)") from None
                    except ValueError as e:  # JSONDecodeError, or an integer of over 4,300 digits
                        raise UserError(f"{inp}:{ln}: not JSON ({getattr(e, 'msg', None) or str(e).split(';')[0]})") from None
                    except RecursionError:
                        raise UserError(f"{inp}:{ln}: not JSON (nested too deep to read)") from None
                    try:
                        if not isinstance(doc, dict) or (doc.get("event") or {}).get("kind") == "alert":
                            continue
                        n_events += 1
                        from ..detect.rules.detector import _doc_ts
                        ts = _doc_ts(doc)
                        first = ts if first is None else min(first, ts)
                        last = ts if last is None else max(last, ts)
                        for a in det.on_doc(doc, ts) or ():
                            counts[a.rule_id] = counts.get(a.rule_id, 0) + 1
                    except SHAPE_ERRORS as e:  # a field of another type than otids writes (a list as an address)
                        raise UserError(f"{inp}:{ln}: not an otids event "
                                        f"({shape_problem(doc, e, lambda d: _dry_run_error(c, d))})") from None
        else:
            from ..pipeline import Collector, Run
            from ..config import Config

            class _Span:
                def write_event(self, ev):
                    nonlocal first, last, n_events
                    n_events += 1
                    ts = getattr(ev, "ts", None)
                    if ts:
                        first = ts if first is None else min(first, ts)
                        last = ts if last is None else max(last, ts)

                def write_alert(self, a):
                    counts[a.rule_id] = counts.get(a.rule_id, 0) + 1

                def close(self):
                    pass
            sp = _Span()
            run = Run(Config(), [det], [sp], [sp])
            run.analyze_file(inp)
            run.finish()
            for e in run.errors:
                print(f"otids: {e}", file=sys.stderr)
    if first is not None and last is not None:
        span_s += (last - first) / NS
    days = max(span_s, 1.0) / 86400
    rows = []
    for cr in c.rules:
        n = counts.get(cr.rule.id, 0)
        rows.append({"rule": cr.rule.id, "title": cr.rule.title, "severity": cr.rule.severity, "alerts": n,
                     "per_day": round(n / days, 1)})
    rows.sort(key=lambda r: (-r["alerts"], r["rule"]))
    if args.json:
        print(json.dumps({"events": n_events, "span_seconds": span_s, "rules": rows}, indent=2))
        return 0
    print(f"{n_events} events over {span_s:,.1f} s of traffic; {sum(counts.values())} alerts from "
          f"{sum(1 for r in rows if r['alerts'])} of {len(rows)} rules")
    if span_s < 3600:
        print("note: less than an hour of traffic; per-day figures are extrapolated and rough")
    w = max([len(r["rule"]) for r in rows] + [4])
    print(f"{'rule':<{w}}  {'severity':<8}  {'alerts':>7}  {'per day':>12}  title")
    for r in rows:
        print(f"{r['rule']:<{w}}  {r['severity']:<8}  {r['alerts']:>7}  {r['per_day']:>12,.1f}  {r['title']}")
    return 0


# ---------------------------------------------------------------------------------------------- bench

def cmd_bench(args) -> int:
    from ..detect.rules.bench import run_bench
    return run_bench(args)
