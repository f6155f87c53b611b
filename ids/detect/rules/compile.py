"""Turns condition trees into predicates: closures over one event's document view, with site lists
resolved, IP sets and CIDRs pre-parsed, regexes compiled. Also works out which index keys (function code,
service, message type) a rule can only match, so the engine never tests it against other events.

Document view: fields are read by their dotted path in the ECS document, built once per event and only
when some rule needs it; lists match element-wise (a condition holds if any element satisfies it, `not`
negates the whole), lists of objects flatten (mqtt.subscribe.topics.topic is every subscribed topic).
"""
from __future__ import annotations

import ipaddress
import re

from ...protocols import REGISTRY
from .fields import field_type
from .rule import All, Any_, Chain, Issue, ListRef, Not, Predicate, Check, error

from ...protocols.spec import MISSING  # noqa: F401  (re-exported: readers and predicates share it)
_IP_CACHE: dict = {}


def ip_int(s):
    """IP text -> (version, int), or None; cached, since the same few addresses recur."""
    r = _IP_CACHE.get(s)
    if r is None:
        if not isinstance(s, str):
            return None
        try:
            a = ipaddress.ip_address(s)
        except ValueError:
            return None
        r = (a.version, int(a))
        if len(_IP_CACHE) > 65536:
            _IP_CACHE.clear()
        _IP_CACHE[s] = r
    return r


def resolve(node, parts, i: int = 0):
    n = len(parts)
    while i < n:
        if type(node) is dict:
            node = node.get(parts[i], MISSING)
            if node is MISSING:
                return MISSING
            i += 1
            continue
        if type(node) is list:
            out = []
            for el in node:
                v = resolve(el, parts, i)
                if v is MISSING:
                    continue
                if type(v) is list:
                    out.extend(v)
                else:
                    out.append(v)
            return out if out else MISSING
        return MISSING
    if type(node) is list and not node:
        return MISSING
    return node


class DocView(dict):
    """One event's document, read on demand: paths with a typed fast path (fastpath.py) come straight from
    the event record, anything else from the ECS document, built once, the first time a rule needs it.
    Lookups are cached for the rules that share a field: the view is that cache, a dict whose misses read
    the field, so `get` (dict subscription) costs no Python call once a field has been read."""

    __slots__ = ("ev", "fast", "build", "_doc")

    def __init__(self, doc: dict | None = None, ev=None, fast: dict | None = None, build=None):
        self._doc = doc
        self.ev = ev
        self.fast = fast or _NOFAST
        self.build = build

    @property
    def doc(self) -> dict:
        if self._doc is None:
            self._doc = self.build(self.ev)
        return self._doc

    @property
    def cache(self) -> dict:
        return self

    def __missing__(self, path: str):
        f = self.fast.get(path)
        if f is not None:
            v = f(self.ev)
        else:
            v = resolve(self.doc, path.split("."))
        self[path] = v
        return v

    get = dict.__getitem__  # get(path): the field's value, MISSING where the document has none


_NOFAST: dict = {}


# ---------------------------------------------------------------------------------------------- IP sets

class IpSet:
    """Addresses, CIDR blocks and a-b ranges; membership in O(1) for addresses, linear in blocks."""

    __slots__ = ("exact", "blocks")

    def __init__(self):
        self.exact: set = set()
        self.blocks: list = []  # (version, lo, hi)

    def add(self, item) -> str | None:
        """Add one list item; returns an error text if it is no address, network or range."""
        s = str(item).strip()
        try:
            if "/" in s:
                net = ipaddress.ip_network(s, strict=False)
                lo = int(net.network_address)
                self.blocks.append((net.version, lo, lo + net.num_addresses - 1))
                if net.num_addresses == 1:
                    self.exact.add((net.version, lo))
                return None
            if "-" in s:
                a, b = (x.strip() for x in s.split("-", 1))
                ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
                if ia.version != ib.version or int(ia) > int(ib):
                    return f"bad address range {s!r}"
                self.blocks.append((ia.version, int(ia), int(ib)))
                return None
            a = ipaddress.ip_address(s)
            self.exact.add((a.version, int(a)))
            return None
        except ValueError:
            return f"{s!r} is not an IP address, CIDR block or address range"

    def __contains__(self, ip) -> bool:
        if ip in self.exact:
            return True
        v, x = ip
        for bv, lo, hi in self.blocks:
            if bv == v and lo <= x <= hi:
                return True
        return False


# ---------------------------------------------------------------------------------------------- helpers

def _elems(v):
    return v if type(v) is list else (v,)


def topic_matches(flt: str, topic: str) -> bool:
    """MQTT topic filter semantics (MQTT 3.1.1 section 4.7): + one level, # this level and all below;
    filters starting with a wildcard never match topics starting with $ (4.7.2)."""
    if not isinstance(topic, str):
        return False
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    fl, tl = flt.split("/"), topic.split("/")
    for i, f in enumerate(fl):
        if f == "#":
            return True
        if i >= len(tl):
            return False
        if f != "+" and f != tl[i]:
            return False
    return len(fl) == len(tl)


class Compiler:
    """Compiles conditions of one protocol against one set of site lists, collecting issues."""

    def __init__(self, protocol: str, lists: dict, list_positions: dict | None = None,
                 item_positions: dict | None = None, rule_id: str | None = None, issues: list | None = None):
        self.protocol = protocol
        self.lists = lists
        self.list_positions = list_positions or {}
        self.item_positions = item_positions or {}
        self.rule_id = rule_id
        self.issues: list[Issue] = issues if issues is not None else []
        self.failed = False

    def err(self, code, msg, src):
        self.failed = True
        self.issues.append(error(code, msg, src, self.rule_id))

    # values with $lists expanded; each value paired with where it was written
    def expand(self, vals, src) -> list:
        out = []
        for v in vals:
            if isinstance(v, ListRef):
                if v.name not in self.lists:
                    where = (f"the lists file has: {', '.join(sorted(self.lists))}" if self.lists else
                             "no site lists loaded: give --lists FILE, template rules/lists.example.yml")
                    self.err("undefined-list", f"list ${v.name} is not defined ({where})", v.source)
                    continue
                ipos = self.item_positions.get(v.name) or []
                out += [(x, ipos[i] if i < len(ipos) else v.source) for i, x in enumerate(self.lists[v.name])]
            else:
                out.append((v, src))
        return out

    def compile(self, cond):
        if isinstance(cond, All):
            fs = [self.compile(c) for c in cond.items]
            if len(fs) == 1:
                return fs[0]
            if len(fs) == 2:
                a, b = fs
                return lambda g: a(g) and b(g)
            fs = tuple(fs)

            def every(g):  # a loop, not all(genexpr): no generator per test, on the engine's hottest path
                for f in fs:
                    if not f(g):
                        return False
                return True
            return every
        if isinstance(cond, Any_):
            fs = tuple(self.compile(c) for c in cond.items)
            return lambda g: any(f(g) for f in fs)
        if isinstance(cond, Not):
            f = self.compile(cond.item)
            return lambda g: not f(g)
        if isinstance(cond, Predicate):
            return cond.fn
        if isinstance(cond, Chain):
            return self._chain(cond)
        if isinstance(cond, Check):
            elem = self.element_test(cond)
            if elem is None:
                return lambda g: False
            path = cond.field
            if cond.op == "exists":
                want = cond.arg
                return lambda g: (g(path) is not MISSING) is want
            if isinstance(elem, frozenset):
                s = elem
                def member(g):
                    v = g(path)
                    if v is MISSING:
                        return False
                    if type(v) is list:
                        return any(x in s for x in v if x.__hash__ is not None)
                    return v.__hash__ is not None and v in s
                return member

            def test(g):
                v = g(path)
                if v is MISSING:
                    return False
                if type(v) is list:
                    for x in v:
                        if elem(x):
                            return True
                    return False
                return elem(v)
            return test
        raise TypeError(f"unknown condition {cond!r}")  # pragma: no cover

    def _chain(self, ch: Chain):
        elems = [self.element_test(t) for t in ch.tests]
        elems = [(lambda x, s=e: x in s) if isinstance(e, frozenset) else e for e in elems if e is not None]
        path = ch.field

        def test(g):
            v = g(path)
            if v is MISSING:
                return False
            for x in _elems(v):
                if all(e(x) for e in elems):
                    return True
            return False
        return test

    def element_test(self, t: Check):
        """A test on one scalar value (or a frozenset for plain membership), or None if it cannot compile."""
        ftype = field_type(self.protocol, t.field) or "keyword"
        op = t.op
        if op == "exists":
            return True
        if op in ("equals", "in") or op == "cidr":
            vals = self.expand(t.arg if op != "equals" else (t.arg,), t.source)
            if ftype == "ip" or op == "cidr":
                ips = IpSet()
                for v, src in vals:
                    msg = ips.add(v)
                    if msg:
                        self.err("bad-address", msg + f" (field {t.field} holds IP addresses)", src)
                return lambda x: (ip := ip_int(x)) is not None and ip in ips
            if t.nocase:
                low = frozenset(v.lower() if isinstance(v, str) else v for v, _ in vals)
                return lambda x: (x.lower() if isinstance(x, str) else x) in low
            try:
                return frozenset(v for v, _ in vals)
            except TypeError:
                self.err("type", "values must be plain scalars", t.source)
                return None
        if op in ("gt", "gte", "lt", "lte"):
            n = t.arg
            return {"gt": lambda x: _num(x) and x > n, "gte": lambda x: _num(x) and x >= n,
                    "lt": lambda x: _num(x) and x < n, "lte": lambda x: _num(x) and x <= n}[op]
        if op == "range":
            lo, hi = t.arg
            if ftype == "ip":
                ips = IpSet()
                msg = ips.add(f"{lo}-{hi}")
                if msg:
                    self.err("bad-address", msg, t.source)
                    return None
                return lambda x: (ip := ip_int(x)) is not None and ip in ips
            if not (_num(lo) and _num(hi)):
                self.err("type", f"'range' on {t.field} needs numbers (got {lo!r}, {hi!r})", t.source)
                return None
            return lambda x: _num(x) and lo <= x <= hi
        if op == "regex":
            flags = re.IGNORECASE if t.nocase else 0
            rx = re.compile("|".join(f"(?:{p})" for p in t.arg), flags)
            return lambda x: isinstance(x, str) and rx.search(x) is not None
        if op in ("contains", "startswith", "endswith", "topic"):
            vals = [v for v, _ in self.expand(t.arg, t.source)]
            if op == "topic":
                flts = [str(v) for v in vals]
                return lambda x: any(topic_matches(f, x) for f in flts)
            if t.nocase:
                vals = [v.lower() if isinstance(v, str) else v for v in vals]
            if op == "contains":
                def contains(x, vals=vals, nc=t.nocase):
                    if isinstance(x, str):
                        x = x.lower() if nc else x
                        return any(isinstance(v, str) and v in x for v in vals)
                    return x in vals
                return contains
            svals = tuple(str(v) for v in vals)
            if op == "startswith":
                return (lambda x: isinstance(x, str) and x.lower().startswith(svals)) if t.nocase else \
                       (lambda x: isinstance(x, str) and x.startswith(svals))
            return (lambda x: isinstance(x, str) and x.lower().endswith(svals)) if t.nocase else \
                   (lambda x: isinstance(x, str) and x.endswith(svals))
        self.err("unknown-operator", f"operator {op!r} cannot be compiled", t.source)  # pragma: no cover
        return None


def _num(x) -> bool:
    return (type(x) is int or type(x) is float)


# ---------------------------------------------------------------------------------------------- index keys

#: Per protocol: the field the engine indexes rules by (each protocol's rules.py, through the registry).
INDEX_FIELD = {n: p.rules.index_field for n, p in REGISTRY.items() if p.rules is not None}
#: Protocols whose index field holds several keys per event (all of an exchange's message types).
MULTI_KEY = {n for n, p in REGISTRY.items() if p.rules is not None and p.rules.multi_key}


def keys_of(cond, protocol: str, lists: dict | None = None):
    """The index keys a condition can only match (a set), or None when it could match any event."""
    lists = lists or {}
    if isinstance(cond, All):
        ks = [k for k in (keys_of(c, protocol, lists) for c in cond.items) if k is not None]
        if not ks:
            return None
        if protocol in MULTI_KEY:  # an MQTT exchange has several types: each required one is a valid key
            return set(min(ks, key=len))
        out = set(ks[0])
        for k in ks[1:]:
            out &= k
        return out
    if isinstance(cond, Any_):
        ks = [keys_of(c, protocol, lists) for c in cond.items]
        if any(k is None for k in ks):
            return None
        return set().union(*ks)
    if isinstance(cond, Predicate):
        return set(cond.keys) if cond.keys else None
    spec = REGISTRY.get(protocol)
    table = spec.rules if spec is not None else None
    if table is None:
        return None
    if isinstance(cond, Chain):
        return table.prefix_keys(cond.field) if table.prefix_keys is not None else None
    if not isinstance(cond, Check) or table.index_keys is None:
        return None
    return table.index_keys(cond.field, cond.op, cond.arg, _plain(cond, lists), cond.nocase)


def _plain(t: Check, lists: dict):
    vals = t.arg if t.op in ("in", "contains") else (t.arg,)
    out = []
    for v in vals:
        if isinstance(v, ListRef):
            if v.name not in lists:
                return None
            out += list(lists[v.name])
        else:
            out.append(v)
    return out
