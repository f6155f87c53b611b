"""Rule validators, pySigma style: small classes, each checking one thing and returning Issue values
(severity error or warning, `path:line:col`). Loading checks shape; these check meaning: fields the
protocol's documents never carry, operands of the wrong type, bad addresses, ATT&CK ids that do not exist,
conditions that can never match, duplicate ids, rules shipped without tests.
"""
from __future__ import annotations

import ipaddress
import time

from ..attack import TECHNIQUES
from .compile import keys_of
from ...protocols import REGISTRY
from .fields import DOMAINS, field_type
from .rule import All, Any_, Chain, Issue, ListRef, Not, Predicate, Rule, Check, error, walk, warning

NUMERIC = {"long", "integer", "short", "byte", "float", "double", "scaled_float", "unsigned_long"}
#: Fields that hold one value per event (two different `equals` on one of them can never both hold).
#: The common ones here; each protocol's in its rule keyword table (ids/protocols/<name>/rules.py).
SINGLE_VALUED = {"source.ip", "destination.ip", "source.port", "destination.port", "event.action", "event.outcome",
                 "network.protocol"}
for _p in REGISTRY.values():
    if _p.rules is not None:
        SINGLE_VALUED |= _p.rules.single_valued


class Validator:
    def validate(self, rule: Rule) -> list[Issue]:
        return []

    def validate_all(self, rules: list[Rule]) -> list[Issue]:
        return [i for r in rules for i in self.validate(r)]


def _tests(cond):
    for n in walk(cond):
        if isinstance(n, Check):
            yield n


class UnknownFieldValidator(Validator):
    def validate(self, rule):
        out = []
        fields = [(t.field, t.source) for t in _tests(rule.match)]
        fields += [(n.field, n.source) for n in walk(rule.match) if isinstance(n, Chain)]
        fields += [(f, n.source) for n in walk(rule.match) if isinstance(n, Predicate) for f in n.fields]
        if rule.threshold:
            fields += [(f, rule.threshold.source) for f in rule.threshold.group_by]
            if rule.threshold.distinct:
                fields.append((rule.threshold.distinct, rule.threshold.source))
        for f, src in fields:
            if field_type(rule.protocol, f) is None:
                out.append(error("unknown-field", f"field '{f}' does not exist in {rule.protocol} event documents",
                                 src, rule.id))
        return out


def _literal_values(t: Check):
    if t.op == "equals":
        return [t.arg]
    if t.op in ("in", "cidr", "contains", "startswith", "endswith", "topic"):
        return list(t.arg)
    return []


class FieldTypeValidator(Validator):
    def validate(self, rule):
        out = []
        for t in _tests(rule.match):
            ft = field_type(rule.protocol, t.field)
            if ft is None:
                continue
            bad = None
            vals = [v for v in _literal_values(t) if not isinstance(v, ListRef)]
            if t.op in ("gt", "gte", "lt", "lte") and ft not in NUMERIC and ft != "value":
                bad = f"'{t.op}' compares numbers but '{t.field}' is {ft}"
            elif t.op == "range" and ft not in NUMERIC and ft not in ("ip", "value"):
                bad = f"'range' needs a numeric or ip field; '{t.field}' is {ft}"
            elif t.op == "cidr" and ft != "ip":
                bad = f"'cidr' needs an ip field; '{t.field}' is {ft}"
            elif t.op in ("regex", "startswith", "endswith", "topic") and ft not in ("keyword", "text", "wildcard",
                                                                                    "match_only_text", "flattened"):
                bad = f"'{t.op}' needs a text field; '{t.field}' is {ft}"
            elif t.op in ("equals", "in") and ft in NUMERIC:
                w = [v for v in vals if isinstance(v, bool) or not isinstance(v, (int, float))]
                if w:
                    bad = f"'{t.field}' is numeric ({ft}) but the rule compares it with {w[0]!r}"
            elif t.op in ("equals", "in") and ft == "boolean":
                w = [v for v in vals if not isinstance(v, bool)]
                if w:
                    bad = f"'{t.field}' is true/false but the rule compares it with {w[0]!r}"
            elif t.op in ("equals", "in") and ft == "keyword":
                w = [v for v in vals if not isinstance(v, str)]
                if w:
                    bad = f"'{t.field}' holds text but the rule compares it with {w[0]!r} (quote it)"
            elif t.op in ("equals", "in", "cidr") and ft == "ip":
                for v in vals:
                    try:
                        s = str(v)
                        if "-" in s:
                            a, b = s.split("-", 1)
                            ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
                        else:
                            ipaddress.ip_network(s, strict=False)
                    except ValueError:
                        bad = f"{v!r} is not an IP address, CIDR block or address range"
                        break
            elif t.op == "range" and ft in NUMERIC:
                lo, hi = t.arg
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi)):
                    bad = f"'range' on '{t.field}' needs numbers"
            elif ft in ("object",) and t.op != "exists":
                bad = f"'{t.field}' is an object: only 'exists' applies; name a field inside it"
            if bad:
                out.append(error("type", bad, t.source, rule.id))
        return out


class NeverMatchesValidator(Validator):
    """Conditions that no event can satisfy: an empty list, a reversed range, a value outside the field's
    domain, two different values required of a single-valued field, a function code and a function name
    that disagree."""

    def validate(self, rule):
        out = []
        for t in _tests(rule.match):
            dom = DOMAINS.get(t.field)
            if t.op == "in" and not t.arg:
                out.append(warning("never-matches", f"'{t.field}' is compared with an empty list", t.source, rule.id))
            if t.op == "range":
                lo, hi = t.arg
                if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
                    out.append(error("never-matches", f"range {lo}..{hi} is empty (low above high)", t.source, rule.id))
            if dom and t.op in ("equals", "in"):
                vals = [v for v in _literal_values(t) if isinstance(v, (int, float)) and not isinstance(v, bool)]
                if vals and all(not dom[0] <= v <= dom[1] for v in vals):
                    out.append(error("never-matches", f"'{t.field}' is always within {dom[0]}-{dom[1]}; "
                                     f"{vals[0]} can never occur", t.source, rule.id))
            if dom and t.op in ("gt", "gte", "lt", "lte"):
                n = t.arg
                if (t.op == "gt" and n >= dom[1]) or (t.op == "gte" and n > dom[1]) or \
                   (t.op == "lt" and n <= dom[0]) or (t.op == "lte" and n < dom[0]):
                    out.append(error("never-matches", f"'{t.field}' is always within {dom[0]}-{dom[1]}; "
                                     f"{t.op} {n} can never hold", t.source, rule.id))
        for node in walk(rule.match):
            if isinstance(node, All):
                out += self._contradictions(node, rule)
        ks = keys_of(rule.match, rule.protocol)
        if ks is not None and not ks:
            out.append(error("never-matches", "the conditions require incompatible function codes / services / "
                             "message types", rule.match.source, rule.id))
        return out

    def _contradictions(self, node: All, rule):
        eq: dict = {}
        out = []
        for c in node.items:
            if isinstance(c, Check) and c.field in SINGLE_VALUED and c.op in ("equals", "in") and not c.nocase:
                if any(isinstance(v, ListRef) for v in _literal_values(c)):
                    continue
                vals = set(_literal_values(c))
                if c.field in eq and not (eq[c.field] & vals):
                    out.append(error("never-matches", f"'{c.field}' cannot equal {sorted(eq[c.field], key=str)} "
                                     f"and {sorted(vals, key=str)} at once", c.source, rule.id))
                eq[c.field] = eq.get(c.field, vals) & vals if c.field in eq else vals
            if isinstance(c, Check) and c.op == "exists" and c.arg is False:
                others = [o for o in node.items if isinstance(o, Check) and o.field == c.field and o.op != "exists"]
                if others:
                    out.append(error("never-matches", f"'{c.field}' must be absent and also match a value",
                                     c.source, rule.id))
        return out


class AttackValidator(Validator):
    def validate(self, rule):
        return [error("unknown-technique", f"'{t}' is not an ATT&CK for ICS technique otids knows "
                      f"(ids/detect/attack.py lists them)", rule.source, rule.id)
                for t in rule.attack if t not in TECHNIQUES]


class CaseValidator(Validator):
    """A rule nobody has seen fire (and not fire) is a guess: every rule should carry both kinds."""

    def validate(self, rule):
        if rule.origin != "yaml":
            return []
        kinds = {c.kind if c.kind != "events" else ("match" if c.alerts else "no_match") for c in rule.tests}
        kinds |= {"match" for c in rule.tests if c.kind == "pcap" and c.alerts}
        kinds |= {"no_match" for c in rule.tests if c.kind == "pcap" and not c.alerts}
        out = []
        if "match" not in kinds:
            out.append(warning("no-firing-test", "rule has no test case that must fire", rule.source, rule.id))
        if "no_match" not in kinds:
            out.append(warning("no-quiet-test", "rule has no test case that must not fire", rule.source, rule.id))
        return out


class DuplicateIdValidator(Validator):
    def validate_all(self, rules):
        seen: dict = {}
        out = []
        for r in rules:
            if r.id in seen:
                out.append(error("duplicate-id", f"rule id '{r.id}' is already used at {seen[r.id]}", r.source, r.id))
            else:
                seen[r.id] = r.source
        return out


class SuppressionValidator:
    def validate(self, site) -> list[Issue]:
        out = []
        now = time.time_ns()
        for s in site.suppressions:
            if s.expires_ns is not None and s.expires_ns < now:
                out.append(warning("expired-suppression", "suppression has expired (it no longer silences "
                                   "traffic newer than its expiry)", s.source))
            if s.match is None:
                out.append(warning("broad-suppression", "suppression without 'match' silences the rule entirely",
                                   s.source))
        return out


VALIDATORS = (UnknownFieldValidator(), FieldTypeValidator(), NeverMatchesValidator(), AttackValidator(),
              CaseValidator(), DuplicateIdValidator())


def validate(rules: list[Rule]) -> list[Issue]:
    out = []
    for v in VALIDATORS:
        out += v.validate_all(rules)
    return out
