"""Reads rule files (YAML, and Suricata `.rules` through suricata.py) and the site lists file into
model objects, collecting every problem with its `path:line:col` instead of stopping at the first.

Loading checks the shape (known keys, types, operators); meaning (fields, lists, contradictions) is left to
validators.py. Nothing here compiles or runs a rule.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field

from ...errors import SourceLocation
from .rule import (RULE_DATASETS, RuleSet, SEVERITIES, All, Any_, Issue, ListRef, Not, Rule, RuleCase, SiteLists, Suppression,
                    Check, Threshold, error, warning)
from .yamlsrc import LList, LMap, YamlProblem, load_documents

RULE_KEYS = {"id", "title", "description", "severity", "protocol", "match", "attack", "references",
             "threshold", "tests", "enabled", "author", "notes"}
REQUIRED = ("id", "title", "description", "severity", "protocol", "match")
OPERATORS = {"equals", "in", "not", "gt", "gte", "lt", "lte", "range", "cidr", "regex", "exists", "contains",
             "startswith", "endswith", "topic", "nocase"}
THRESHOLD_KEYS = {"count", "window", "group_by", "type", "distinct"}
CASE_KEYS = {"match", "no_match", "events", "pcap", "alerts", "repeat", "interval", "vary", "lists", "name"}
LIST_NAME = re.compile(r"^\$[a-z_][a-z0-9_]*$")
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v) if v > 0 else None
    if isinstance(v, str):
        m = _DURATION.match(v.strip())
        if m:
            s = float(m.group(1)) * _UNIT[m.group(2)]
            return s if s > 0 else None
    return None


def rule_files(paths: list[str]) -> tuple[list[str], list[Issue]]:
    """Expand files and directories (recursively, sorted) into rule files: *.yml, *.yaml, *.rules."""
    out, issues = [], []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.endswith((".yml", ".yaml", ".rules")) and not is_lists_file(f):
                        out.append(os.path.join(root, f))
        elif os.path.isfile(p):
            out.append(p)
        else:
            issues.append(error("no-such-file", "no such rule file or directory", SourceLocation(p)))
    return out, issues


def is_lists_file(name: str) -> bool:
    base = os.path.basename(name)
    return base.startswith("lists.") or base.startswith("lists-") or base == "lists.yml"


def load_paths(paths: list[str]) -> RuleSet:
    files, issues = rule_files(paths)
    rs = RuleSet(issues=issues)
    for f in files:
        if f.endswith(".rules"):
            from .suricata import load_suricata_file
            rs.extend(load_suricata_file(f))
        else:
            rs.extend(load_yaml_file(f))
    return rs


# ---------------------------------------------------------------------------------------------- YAML rules

def load_yaml_file(path: str, text: str | None = None) -> RuleSet:
    rs = RuleSet(files=[path])
    try:
        docs = load_documents(path, text)
    except YamlProblem as e:
        rs.issues.append(error("yaml", e.message, e.source))
        return rs
    except OSError as e:
        rs.issues.append(error("unreadable", f"cannot read rule file: {e.strerror}", SourceLocation(path)))
        return rs
    except UnicodeDecodeError:
        rs.issues.append(error("unreadable", "rule file is not UTF-8 text", SourceLocation(path)))
        return rs
    for doc in docs:
        test_lists = None
        items = None
        if isinstance(doc, LMap) and "rules" in doc:
            extra = set(doc) - {"rules", "test_lists"}
            for k in sorted(extra, key=str):
                rs.issues.append(error("unknown-key", f"unknown top-level key '{k}' (known: rules, test_lists)",
                                       doc.key_at(k)))
            if "test_lists" in doc:
                test_lists = _parse_lists(doc["test_lists"], doc.value_at("test_lists"), rs.issues)[0]
            items = doc["rules"]
            if not isinstance(items, LList):
                rs.issues.append(error("type", "'rules' must be a list of rules", doc.value_at("rules")))
                continue
        elif isinstance(doc, LMap):
            items = LList([doc])
            items.pos, items.ipos = doc.pos, [doc.pos]
        elif isinstance(doc, LList):
            items = doc
        else:
            rs.issues.append(error("type", "a rule file holds a rule, a list of rules, or 'rules:'",
                                   SourceLocation(path, 1, 1)))
            continue
        for i, item in enumerate(items):
            r = parse_rule(item, items.item_at(i), rs.issues, test_lists)
            if r is not None:
                rs.rules.append(r)
    return rs


class _Ctx:
    def __init__(self, issues: list, rule_id: str | None):
        self.issues = issues
        self.rule_id = rule_id
        self.failed = False

    def err(self, code, msg, src):
        self.failed = True
        self.issues.append(error(code, msg, src, self.rule_id))

    def warn(self, code, msg, src):
        self.issues.append(warning(code, msg, src, self.rule_id))


def parse_rule(m, pos: SourceLocation, issues: list, test_lists=None) -> Rule | None:
    if not isinstance(m, LMap):
        issues.append(error("type", "a rule must be a mapping", pos))
        return None
    rid = m.get("id")
    cx = _Ctx(issues, rid if isinstance(rid, str) else None)
    for k in m:
        if k not in RULE_KEYS:
            cx.err("unknown-key", f"unknown rule key '{k}' (known: {', '.join(sorted(RULE_KEYS))})", m.key_at(k))
    for k in REQUIRED:
        if k not in m:
            cx.err("missing-key", f"rule has no '{k}'", m.pos)
    if cx.failed and any(k not in m for k in ("id", "protocol", "match")):
        return None
    if not isinstance(rid, str) or not RULE_ID.match(rid):
        cx.err("type", "'id' must be a string of letters, digits and . _ : - (e.g. site.modbus.write)", m.value_at("id"))
    for k in ("title", "description"):
        if k in m and (not isinstance(m[k], str) or not m[k].strip()):
            cx.err("type", f"'{k}' must be non-empty text", m.value_at(k))
    sev = m.get("severity")
    if "severity" in m and sev not in SEVERITIES:
        cx.err("value", f"'severity' must be one of {', '.join(SEVERITIES)} (got {sev!r})", m.value_at("severity"))
    proto = m.get("protocol")
    if not isinstance(proto, str) or proto not in RULE_DATASETS:  # a list or mapping is unhashable
        cx.err("value", f"'protocol' must be one of {', '.join(RULE_DATASETS)} (got {proto!r})", m.value_at("protocol"))
        return None
    match = m.get("match")
    if not isinstance(match, LMap) or not match:
        cx.err("type", "'match' must be a non-empty mapping of field conditions", m.value_at("match"))
        return None
    cond = parse_match(match, cx)
    attack = _str_list(m, "attack", cx)
    refs = _str_list(m, "references", cx)
    thr = parse_threshold(m["threshold"], m.value_at("threshold"), cx) if "threshold" in m else None
    tests = parse_cases(m["tests"], m.value_at("tests"), cx) if "tests" in m else ()
    enabled = m.get("enabled", True)
    if not isinstance(enabled, bool):
        cx.err("type", "'enabled' must be true or false", m.value_at("enabled"))
    if cx.failed:
        return None
    return Rule(id=rid, title=m["title"].strip(), description=" ".join(m["description"].split()), severity=sev,
                protocol=proto, match=cond, source=m.pos, attack=tuple(attack), references=tuple(refs),
                threshold=thr, tests=tuple(tests), enabled=enabled, test_lists=test_lists)


def _str_list(m: LMap, key: str, cx: _Ctx) -> list[str]:
    v = m.get(key)
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, LList) or not all(isinstance(x, str) for x in v):
        cx.err("type", f"'{key}' must be a list of strings", m.value_at(key))
        return []
    return list(v)


def parse_match(m: LMap, cx: _Ctx) -> All:
    items = []
    for key, value in m.items():
        kpos, vpos = m.key_at(key), m.value_at(key)
        if key in ("any", "all"):
            if not isinstance(value, LList) or not value or not all(isinstance(x, LMap) and x for x in value):
                cx.err("type", f"'{key}' takes a non-empty list of condition mappings", vpos)
                continue
            subs = tuple(parse_match(x, cx) for x in value)
            items.append(Any_(subs, kpos) if key == "any" else All(subs, kpos))
        elif key == "not":
            if not isinstance(value, LMap) or not value:
                cx.err("type", "'not' takes a mapping of conditions", vpos)
                continue
            items.append(Not(parse_match(value, cx), kpos))
        elif not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
            cx.err("type", f"bad field name {key!r}", kpos)
        else:
            c = parse_cond(key, value, kpos, vpos, cx)
            if c is not None:
                items.append(c)
    return All(tuple(items), m.pos)


def _operand(v, pos: SourceLocation, cx: _Ctx):
    """Scalars stay as they are; `$name` becomes a ListRef; `$$x` is the literal `$x`."""
    if isinstance(v, str) and v.startswith("$"):
        if v.startswith("$$"):
            return v[1:]
        if LIST_NAME.match(v):
            return ListRef(v[1:], pos)
    if isinstance(v, (dict, list)):
        cx.err("type", "expected a single value here, not a mapping or list", pos)
        return None
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def _operands(v, pos, cx, lpos=None) -> tuple:
    if isinstance(v, LList):
        return tuple(_operand(x, v.item_at(i), cx) for i, x in enumerate(v))
    return (_operand(v, pos, cx),)


def parse_cond(fname: str, value, kpos, vpos, cx: _Ctx):
    if isinstance(value, LMap):
        if not value:
            cx.err("type", f"no operator for '{fname}'", vpos)
            return None
        nocase = value.get("nocase", False)
        if not isinstance(nocase, bool):
            cx.err("type", "'nocase' must be true or false", value.value_at("nocase"))
            nocase = False
        tests = []
        for op, arg in value.items():
            opos, apos = value.key_at(op), value.value_at(op)
            if op == "nocase":
                continue
            if op not in OPERATORS:
                cx.err("unknown-operator", f"unknown operator '{op}' for '{fname}' (known: {', '.join(sorted(OPERATORS))})", opos)
                continue
            if op == "not":
                inner = parse_cond(fname, arg, opos, apos, cx)
                if inner is not None:
                    tests.append(Not(inner, opos))
                continue
            t = _parse_op(fname, op, arg, opos, apos, nocase, cx)
            if t is not None:
                tests.append(t)
        if not tests:
            return None
        return tests[0] if len(tests) == 1 else All(tuple(tests), kpos)
    if isinstance(value, LList):
        return _parse_op(fname, "in", value, kpos, vpos, False, cx)
    return _parse_op(fname, "equals", value, kpos, vpos, False, cx)


def _parse_op(fname, op, arg, opos, apos, nocase, cx: _Ctx):
    if op in ("equals", "in"):
        vals = _operands(arg, apos, cx)
        if op == "equals" and isinstance(arg, LList):
            op = "in"
        if op == "equals" and not isinstance(vals[0], ListRef):
            return Check(fname, "equals", vals[0], opos, nocase)
        return Check(fname, "in", vals, opos, nocase)
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            cx.err("type", f"'{op}' takes a number (got {arg!r})", apos)
            return None
        return Check(fname, op, arg, opos)
    if op == "range":
        lo = hi = None
        if isinstance(arg, LList) and len(arg) == 2:
            lo, hi = arg
        elif isinstance(arg, str) and re.match(r"^\s*[^\s]+\s*(\.\.|-)\s*[^\s]+\s*$", arg):
            a, b = re.split(r"\s*\.\.\s*|\s*-\s*", arg.strip(), maxsplit=1)
            lo, hi = _num_or_str(a), _num_or_str(b)
        else:
            cx.err("type", "'range' takes [low, high] or 'low..high' (both inclusive)", apos)
            return None
        return Check(fname, "range", (lo, hi), opos)
    if op == "cidr":
        return Check(fname, "cidr", _operands(arg, apos, cx), opos)
    if op == "regex":
        pats = _operands(arg, apos, cx)
        if not all(isinstance(p, str) for p in pats):
            cx.err("type", "'regex' takes a pattern (or a list of patterns)", apos)
            return None
        for p in pats:
            try:
                re.compile(p, re.IGNORECASE if nocase else 0)
            except re.error as e:
                cx.err("bad-regex", f"invalid regular expression {p!r}: {e}", apos)
                return None
        return Check(fname, "regex", pats, opos, nocase)
    if op == "exists":
        if not isinstance(arg, bool):
            cx.err("type", "'exists' takes true or false", apos)
            return None
        return Check(fname, "exists", arg, opos)
    if op in ("contains", "startswith", "endswith", "topic"):
        return Check(fname, op, _operands(arg, apos, cx), opos, nocase)
    return None  # pragma: no cover - OPERATORS is exhaustive


def _num_or_str(s: str):
    try:
        return int(s, 0)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


def parse_threshold(m, pos, cx: _Ctx) -> Threshold | None:
    if not isinstance(m, LMap):
        cx.err("type", "'threshold' must be a mapping (count, window, group_by, type, distinct)", pos)
        return None
    for k in m:
        if k not in THRESHOLD_KEYS:
            cx.err("unknown-key", f"unknown threshold key '{k}' (known: {', '.join(sorted(THRESHOLD_KEYS))})", m.key_at(k))
    count = m.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        cx.err("type", "'threshold.count' must be a whole number of at least 1", m.value_at("count") if "count" in m else pos)
        return None
    window = parse_duration(m.get("window"))
    if window is None:
        cx.err("type", "'threshold.window' must be a duration such as 10s, 5m, 1h", m.value_at("window") if "window" in m else pos)
        return None
    group = m.get("group_by", [])
    if isinstance(group, str):
        group = [group]
    if not isinstance(group, list) or not all(isinstance(g, str) for g in group):
        cx.err("type", "'threshold.group_by' must be a list of field names", m.value_at("group_by"))
        return None
    ttype = m.get("type", "threshold")
    if ttype not in ("threshold", "limit", "both"):
        cx.err("value", "'threshold.type' must be threshold, limit or both", m.value_at("type"))
        return None
    distinct = m.get("distinct")
    if distinct is not None and not isinstance(distinct, str):
        cx.err("type", "'threshold.distinct' must be a field name", m.value_at("distinct"))
        return None
    return Threshold(count, window, tuple(group), ttype, distinct, pos)


def parse_cases(v, pos, cx: _Ctx) -> list[RuleCase]:
    if not isinstance(v, LList):
        cx.err("type", "'tests' must be a list of test cases", pos)
        return []
    out = []
    for i, c in enumerate(v):
        cpos = v.item_at(i)
        if not isinstance(c, LMap):
            cx.err("type", "a test case must be a mapping (match:, no_match:, events: or pcap:)", cpos)
            continue
        for k in c:
            if k not in CASE_KEYS:
                cx.err("unknown-key", f"unknown test key '{k}' (known: {', '.join(sorted(CASE_KEYS))})", c.key_at(k))
        kinds = [k for k in ("match", "no_match", "events", "pcap") if k in c]
        if len(kinds) != 1:
            cx.err("type", "a test case has exactly one of match:, no_match:, events:, pcap:", cpos)
            continue
        kind = kinds[0]
        alerts = c.get("alerts")
        if alerts is not None and (isinstance(alerts, bool) or not isinstance(alerts, int) or alerts < 0):
            cx.err("type", "'alerts' must be a whole number", c.value_at("alerts"))
            continue
        lists = None
        if "lists" in c:
            lists = _parse_lists(c["lists"], c.value_at("lists"), cx.issues)[0]
        if kind == "pcap":
            if not isinstance(c["pcap"], str) or alerts is None:
                cx.err("type", "a pcap test needs 'pcap: PATH' and 'alerts: N'", cpos)
                continue
            out.append(RuleCase("pcap", pcap=c["pcap"], alerts=alerts, lists=lists, source=cpos))
            continue
        docs = c[kind]
        if kind == "events":
            if not isinstance(docs, LList) or not all(isinstance(d, LMap) for d in docs):
                cx.err("type", "'events' must be a list of event documents", c.value_at(kind))
                continue
            docs = [expand_doc(d) for d in docs]
        else:
            if not isinstance(docs, LMap):
                cx.err("type", f"'{kind}' must be an event document (a mapping)", c.value_at(kind))
                continue
            docs = [expand_doc(docs)]
        repeat = c.get("repeat", 1)
        interval = parse_duration(c.get("interval", "100ms"))
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1 or repeat > 100_000:
            cx.err("type", "'repeat' must be a whole number 1-100000", c.value_at("repeat"))
            continue
        if interval is None:
            cx.err("type", "'interval' must be a duration such as 100ms or 1s", c.value_at("interval"))
            continue
        vary = c.get("vary")
        seq = []
        for d in docs:
            seq += [d] * repeat
        if vary is not None:
            if not isinstance(vary, LMap) or len(vary) != 1:
                cx.err("type", "'vary' takes one field and its values: {field: [v1, v2, ...]} or {field: 'a..b'}", c.value_at("vary"))
                continue
            (vf, vv), = vary.items()
            vals = _vary_values(vv)
            if vals is None:
                cx.err("type", "'vary' values must be a list or an integer range 'a..b'", vary.value_at(vf))
                continue
            seq = [set_path(expand_doc(d), vf, x) for d in seq for x in vals]
        if alerts is None:
            alerts = 0 if kind == "no_match" else 1
        elif kind == "no_match" and alerts:
            cx.err("value", "a no_match case expects 0 alerts", c.value_at("alerts"))
            continue
        out.append(RuleCase(kind, doc=(tuple(seq), interval), alerts=alerts, lists=lists, source=cpos))
    return out


def _vary_values(v):
    if isinstance(v, list):
        return list(v)
    if isinstance(v, str):
        m = re.match(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$", v)
        if m and int(m.group(1)) <= int(m.group(2)) and int(m.group(2)) - int(m.group(1)) < 100_000:
            return list(range(int(m.group(1)), int(m.group(2)) + 1))
    return None


def expand_doc(d) -> dict:
    """An inline test document as the event document it stands for: dotted keys become nested objects."""
    if isinstance(d, dict):
        out: dict = {}
        for k, v in d.items():
            v = expand_doc(v)
            if isinstance(k, str) and "." in k and k != "@timestamp":
                set_path(out, k, v, copy=False)
            elif isinstance(out.get(k), dict) and isinstance(v, dict):
                out[k].update(v)
            else:
                out[k] = v
        return out
    if isinstance(d, list):
        return [expand_doc(x) for x in d]
    if isinstance(d, (dt.date, dt.datetime)):
        return d.isoformat()
    return d


def set_path(doc: dict, path: str, value, copy: bool = True) -> dict:
    if copy:
        import copy as _c
        doc = _c.deepcopy(doc)
    cur = doc
    parts = path.split(".")
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = cur[p] = {}
        cur = nxt
    cur[parts[-1]] = value
    return doc


# ---------------------------------------------------------------------------------------------- site lists

def _parse_lists(m, pos, issues) -> tuple[dict, dict, dict]:
    lists, positions, items = {}, {}, {}
    if not isinstance(m, LMap):
        issues.append(error("type", "lists must be a mapping of name: [values]", pos))
        return lists, positions, items
    for name, vals in m.items():
        npos = m.key_at(name)
        if not isinstance(name, str) or not LIST_NAME.match("$" + name):
            issues.append(error("bad-list-name", f"list name {name!r} must be lowercase letters, digits and _", npos))
            continue
        if not isinstance(vals, LList):
            issues.append(error("type", f"list '{name}' must be a YAML list", m.value_at(name)))
            continue
        bad = [i for i, v in enumerate(vals) if isinstance(v, (dict, list)) or v is None]
        if bad:
            issues.append(error("type", f"list '{name}' holds a non-scalar item", vals.item_at(bad[0])))
            continue
        lists[name] = [v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for v in vals]
        positions[name] = npos
        items[name] = list(vals.ipos)
    return lists, positions, items


def load_lists(path: str | None) -> tuple[SiteLists, list[Issue]]:
    """The site file: `lists:` (name -> values) and `suppressions:`. A missing path gives empty lists."""
    site = SiteLists(path=path)
    issues: list[Issue] = []
    if path is None:
        return site, issues
    try:
        docs = load_documents(path)
    except YamlProblem as e:
        return site, [error("yaml", e.message, e.source)]
    except OSError as e:
        return site, [error("unreadable", f"cannot read lists file: {e.strerror}", SourceLocation(path))]
    if not docs:
        return site, issues
    if len(docs) > 1 or not isinstance(docs[0], LMap):
        return site, [error("type", "a lists file is one mapping with 'lists:' and 'suppressions:'", SourceLocation(path, 1, 1))]
    d = docs[0]
    for k in d:
        if k not in ("lists", "suppressions"):
            issues.append(error("unknown-key", f"unknown key '{k}' in lists file (known: lists, suppressions)", d.key_at(k)))
    if "lists" in d:
        site.lists, site.positions, site.item_positions = _parse_lists(d["lists"], d.value_at("lists"), issues)
    if "suppressions" in d:
        v = d["suppressions"]
        if not isinstance(v, LList):
            issues.append(error("type", "'suppressions' must be a list", d.value_at("suppressions")))
        else:
            for i, s in enumerate(v):
                sp = parse_suppression(s, v.item_at(i), issues)
                if sp is not None:
                    site.suppressions.append(sp)
    return site, issues


SUPPRESSION_KEYS = {"rule", "rules", "match", "expires", "reason"}


def parse_suppression(m, pos, issues) -> Suppression | None:
    cx = _Ctx(issues, None)
    if not isinstance(m, LMap):
        cx.err("type", "a suppression must be a mapping (rule, match, expires, reason)", pos)
        return None
    for k in m:
        if k not in SUPPRESSION_KEYS:
            cx.err("unknown-key", f"unknown suppression key '{k}' (known: {', '.join(sorted(SUPPRESSION_KEYS))})", m.key_at(k))
    rules = m.get("rules", m.get("rule"))
    if isinstance(rules, (str, int)) and not isinstance(rules, bool):
        rules = [str(rules)]
    if not isinstance(rules, list) or not rules or not all(isinstance(r, (str, int)) for r in rules):
        cx.err("type", "a suppression needs 'rule: ID' (or 'rules: [IDs]', '*' for all)", m.pos)
        return None
    match = m.get("match")
    cond = None
    if match is not None:
        if not isinstance(match, LMap) or not match:
            cx.err("type", "'match' must be a mapping of field conditions", m.value_at("match"))
            return None
        cond = parse_match(match, cx)
    exp = m.get("expires")
    expires_ns = None
    if exp is not None:
        expires_ns = _parse_time(exp)
        if expires_ns is None:
            cx.err("type", "'expires' must be a date or time, e.g. 2025-06-30 or 2025-06-30T18:00:00Z", m.value_at("expires"))
            return None
    reason = m.get("reason", "")
    if not isinstance(reason, str):
        cx.err("type", "'reason' must be text", m.value_at("reason"))
        return None
    if cx.failed:
        return None
    return Suppression(tuple(str(r) for r in rules), cond, expires_ns, reason, m.pos)


def _parse_time(v) -> int | None:
    if isinstance(v, dt.datetime):
        t = v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)
    elif isinstance(v, dt.date):
        t = dt.datetime(v.year, v.month, v.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)  # end of that day
    elif isinstance(v, str):
        try:
            t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
    else:
        return None
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
