"""The rules engine's prefilter (Suricata's idea of a prefilter / fast pattern): each rule is filed under one
condition it cannot match without -- the most selective equality, set, CIDR, address range, numeric range or
MQTT topic condition of its conjunction -- so an event meets only the rules filed under its own values (a
dict for equalities, a stabbing table for ranges and CIDR blocks), plus the few rules with no such condition.

Rules with conditions pinning fields to a few exact values are taken first by the exact-key groups (groups.py);
this tree holds the rest, and every rule for documents and for events the groups cannot key (built on demand).

The index only narrows: every candidate's full predicate still decides, in load order, so the alerts are
exactly those of testing every rule in turn (tests/test_rules_index.py checks it against that plain loop on
random rule sets and real events). Where the index is unsure it files a rule as a wildcard, never nowhere.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import attrgetter

from ...protocols import REGISTRY
from ...protocols.spec import FLOW_READERS
from .compile import _IP_CACHE, INDEX_FIELD, MISSING, IpSet, ip_int, keys_of
from .fields import DOMAINS, field_type
from .groups import Groups
from .rule import All, Any_, Check, ListRef

INF = float("inf")
#: Estimated cost of building an event's document, in rule tests: filing a rule under a field no typed
#: reader serves makes every event of the protocol build its document.
SLOW_FIELD = 8
#: Entries a stabbing table may hold beyond 4 per interval; past it the widest intervals' rules turn wildcard.
TABLE_BUDGET = 200_000


def _num(x) -> bool:
    return type(x) is int or type(x) is float


# ---------------------------------------------------------------------------------------------- necessities

class Need:
    """A condition an event must meet for a rule to match: some element of `field` is in `keys` (eq),
    within one of `ivs` (num: [lo, hi], a superset of the rule's own bounds), in `ips` (ip: exact addresses
    and (version, lo, hi) blocks), or has a first topic level in `keys` (topic)."""

    __slots__ = ("field", "kind", "keys", "ivs", "cost")

    def __init__(self, field: str, kind: str, keys=frozenset(), ivs=()):
        self.field = field
        self.kind = kind
        self.keys = keys
        self.ivs = ivs
        self.cost = 0.0


def _values(t: Check, lists: dict):
    vals = t.arg if t.op != "equals" else (t.arg,)
    out = []
    for v in vals:
        if isinstance(v, ListRef):
            if v.name not in lists:
                return None
            out += list(lists[v.name])
        else:
            out.append(v)
    return out


def _ip_need(field: str, ips: IpSet) -> Need:
    """Single addresses (written as such, as a /32 or as a-a) by value, wider blocks as intervals."""
    exact = set(ips.exact) | {(v, lo) for v, lo, hi in ips.blocks if lo == hi}
    return Need(field, "ip", frozenset(exact), tuple(b for b in ips.blocks if b[2] > b[1]))


def _check_need(t: Check, protocol: str, lists: dict) -> Need | None:
    """The Need a compiled Check implies; mirrors Compiler.element_test, which decides what a value means."""
    ftype = field_type(protocol, t.field) or "keyword"
    op = t.op
    if op in ("equals", "in", "cidr"):
        vals = _values(t, lists)
        if vals is None:
            return None
        if ftype == "ip" or op == "cidr":
            ips = IpSet()
            for v in vals:
                if ips.add(v):
                    return None
            return _ip_need(t.field, ips)
        if t.nocase:
            return None
        try:
            return Need(t.field, "eq", frozenset(vals))
        except TypeError:
            return None
    if op in ("gt", "gte", "lt", "lte"):
        n = t.arg
        if not _num(n):
            return None
        return Need(t.field, "num", ivs=(((n, INF) if op in ("gt", "gte") else (-INF, n)),))
    if op == "range":
        lo, hi = t.arg
        if ftype == "ip":
            ips = IpSet()
            if ips.add(f"{lo}-{hi}"):
                return None
            return _ip_need(t.field, ips)
        if _num(lo) and _num(hi):
            return Need(t.field, "num", ivs=((lo, hi),))
        return None
    if op == "topic":
        vals = _values(t, lists)
        if vals is None:
            return None
        firsts = set()
        for v in vals:
            f0 = str(v).split("/", 1)[0]
            if f0 in ("+", "#"):
                return None
            firsts.add(f0)
        return Need(t.field, "topic", frozenset(firsts))
    return None


def needs(cond, protocol: str, lists: dict) -> list[Need]:
    """Every Need the condition implies that the index can use (an empty list: none)."""
    if isinstance(cond, All):
        return [n for c in cond.items for n in needs(c, protocol, lists)]
    if isinstance(cond, Any_):
        per = [needs(c, protocol, lists) for c in cond.items]
        if not per or not all(per):
            return []
        out = []
        for f, kind in sorted({(n.field, n.kind) for n in per[0]}):
            picks = []
            for p in per:
                m = [n for n in p if n.field == f and n.kind == kind]
                if not m:
                    break
                picks.append(m[0])
            else:  # each branch needs something on this field: the union is needed
                out.append(Need(f, kind, frozenset().union(*(n.keys for n in picks)),
                                tuple(iv for n in picks for iv in n.ivs)))
        return out
    if isinstance(cond, Check):
        n = _check_need(cond, protocol, lists)
        return [n] if n is not None else []
    return []  # Not, Chain, Predicate: the index field's keys (keys_of) cover what they imply


# ---------------------------------------------------------------------------------------------- structures

class Stabbing:
    """Closed intervals over numbers: which contain x? Endpoints cut the line into segments, each holding the
    rules of every interval over it, so a query is one bisect. Intervals are widened to whole segments (the
    predicate decides), and when overlap would make the table too large the widest intervals' rules are
    handed back to be run as wildcards."""

    __slots__ = ("bounds", "segs")

    def __init__(self):
        self.bounds: list = []
        self.segs: list = []

    def build(self, items: list, budget: int) -> list:
        """Fill from (lo, hi, compiled rule) items; returns the rules that did not fit."""
        items = [(lo, hi, cr) for lo, hi, cr in items if lo <= hi]
        bounds = sorted({x for lo, hi, _ in items for x in (lo, hi)})
        spans = [(bisect_left(bounds, lo), bisect_left(bounds, hi), cr) for lo, hi, cr in items]
        total = sum(e - s + 1 for s, e, _ in spans)
        evicted = []
        if total > budget + 4 * len(spans):
            spans.sort(key=lambda x: x[0] - x[1])  # widest first
            gone = set()
            i = 0
            while total > budget + 4 * (len(spans) - i) and i < len(spans):
                s, e, cr = spans[i]
                total -= e - s + 1
                gone.add(cr.order)
                i += 1
            evicted = [cr for _, _, cr in spans if cr.order in gone]
            spans = [x for x in spans if x[2].order not in gone]
        start: dict = {}
        for s, e, cr in spans:
            start.setdefault(s, []).append((e, cr))
        active: dict = {}  # order -> (end segment, rule)
        segs = []
        for i in range(len(bounds)):
            for e, cr in start.get(i, ()):
                active[cr.order] = (max(e, active[cr.order][0]) if cr.order in active else e, cr)
            segs.append(tuple(active[o][1] for o in sorted(active)))
            for o in [o for o, (e, _) in active.items() if e <= i]:
                del active[o]
        self.bounds, self.segs = bounds, segs
        return evicted

    def find(self, x):
        i = bisect_right(self.bounds, x) - 1
        return self.segs[i] if i >= 0 else ()


class FieldIndex:
    """The rules filed under one field: by equal value, by first topic level, by range, by address/block.
    Each entry is a tuple of rules in load order, or a Node that divides a large entry by another field."""

    __slots__ = ("field", "eq", "topic", "num", "ip_exact", "ip_blocks")

    def __init__(self, field: str):
        self.field = field
        self.eq: dict = {}
        self.topic: dict = {}
        self.num: Stabbing | None = None
        self.ip_exact: dict = {}
        self.ip_blocks: dict = {}  # version -> Stabbing

    def probe(self, v, out: list, get) -> None:
        """Append the rules filed under v's values (v: one value or a list) to out, as tuples."""
        for x in (v if type(v) is list else (v,)):
            if self.eq and x.__hash__ is not None:
                r = self.eq.get(x)
                if r:
                    out.append(r) if type(r) is tuple else r.collect(get, out)
            if self.num is not None and _num(x):
                r = self.num.find(x)
                if r:
                    out.append(r) if type(r) is tuple else r.collect(get, out)
            if (self.ip_exact or self.ip_blocks) and type(x) is str:
                ip = ip_int(x)
                if ip is not None:
                    r = self.ip_exact.get(ip)
                    if r:
                        out.append(r) if type(r) is tuple else r.collect(get, out)
                    st = self.ip_blocks.get(ip[0])
                    if st is not None:
                        r = st.find(ip[1])
                        if r:
                            out.append(r) if type(r) is tuple else r.collect(get, out)
            if self.topic and type(x) is str:
                r = self.topic.get(x.split("/", 1)[0])
                if r:
                    out.append(r) if type(r) is tuple else r.collect(get, out)

    def prober(self):
        """probe() specialised to the structures this field has, for one value (lists go to probe())."""
        eq, topic, num, exact, blocks = self.eq, self.topic, self.num, self.ip_exact, self.ip_blocks
        generic = self.probe
        if eq and not (topic or num or exact or blocks):
            def p(v, out, get):
                if type(v) is list:
                    return generic(v, out, get)
                try:
                    r = eq.get(v)
                except TypeError:  # unhashable: equals nothing
                    return None
                if r:
                    out.append(r) if type(r) is tuple else r.collect(get, out)
            return p
        if (exact or blocks) and not (eq or topic or num):
            v4 = blocks.get(4)
            if not blocks or (v4 is not None and len(blocks) == 1):
                cache = _IP_CACHE

                def p(v, out, get):
                    if type(v) is list:
                        return generic(v, out, get)
                    ip = cache.get(v) if type(v) is str else None
                    if ip is None:
                        ip = ip_int(v)
                        if ip is None:
                            return None
                    r = exact.get(ip)
                    if r:
                        out.append(r) if type(r) is tuple else r.collect(get, out)
                    if v4 is not None and ip[0] == 4:
                        i = bisect_right(v4.bounds, ip[1]) - 1
                        if i >= 0:
                            r = v4.segs[i]
                            if r:
                                out.append(r) if type(r) is tuple else r.collect(get, out)
                return p
        if num is not None and not (eq or topic or exact or blocks):
            bounds, segs = num.bounds, num.segs

            def p(v, out, get):
                if type(v) is list:
                    return generic(v, out, get)
                if type(v) is int or type(v) is float:
                    i = bisect_right(bounds, v) - 1
                    if i >= 0:
                        r = segs[i]
                        if r:
                            out.append(r) if type(r) is tuple else r.collect(get, out)
            return p
        return generic

    def tables(self):
        """The dicts and stabbing tables' segment lists (for dividing entries and for statistics)."""
        out = [self.eq, self.topic, self.ip_exact]
        if self.num is not None:
            out.append(self.num.segs)
        out += [st.segs for st in self.ip_blocks.values()]
        return out


#: Readers that are plain attribute paths, as operator.attrgetter (no Python frame per read), for the fields
#: the index reads on every event. The differential test compares them with the readers on real events.
_ATTR_PATHS = {"source.ip": "flow.client_ip", "destination.ip": "flow.server_ip", "source.port": "flow.client_port",
               "destination.port": "flow.server_port", "event.dataset": "dataset"}
_ATTR_READERS = {(p, id(FLOW_READERS[p])): attrgetter(a) for p, a in _ATTR_PATHS.items() if p in FLOW_READERS}
for _proto, _fields in (("modbus", {"modbus.function_code": "function_code", "modbus.unit_id": "unit_id"}),
                        ("opcua", {"opcua.service": "service", "opcua.message_type": "message_type"})):
    _spec = REGISTRY.get(_proto)
    _readers = _spec.rules.readers if _spec is not None and _spec.rules is not None else {}
    for _p, _a in _fields.items():
        if _p in _readers:
            _ATTR_READERS[(_p, id(_readers[_p]))] = attrgetter(_a)


#: The same readers as expressions over `ev`, for the generated group lookup (groups.py): attribute reads
#: inline, without a call per field. Each is a plain attribute of a typed record, never a list.
INLINE = {(p, id(FLOW_READERS[p])): f"ev.{a}" for p, a in _ATTR_PATHS.items() if p in FLOW_READERS}
_spec = REGISTRY.get("modbus")
if _spec is not None and _spec.rules is not None:
    _readers = _spec.rules.readers
    for _p, _a in (("modbus.function_code", "function_code"), ("modbus.unit_id", "unit_id")):
        if _p in _readers:
            INLINE[(_p, id(_readers[_p]))] = f"ev.{_a}"
    for _a in ("address", "quantity"):  # _req(attr): MISSING without a request or the value
        _p = f"modbus.request.{_a}"
        if _p in _readers:
            INLINE[(_p, id(_readers[_p]))] = f"(MISSING if (_r := ev.request) is None or _r.{_a} is None else _r.{_a})"


def _c_reader(path: str, reader):
    return _ATTR_READERS.get((path, id(reader)), reader) if reader is not None else None


def _sorted(rules) -> tuple:
    return tuple(sorted({c.order: c for c in rules}.values(), key=lambda c: c.order))


#: An entry with more rules than this is divided again by another of its rules' conditions (Suricata's
#: signature group heads do the same with addresses and ports before the prefilter).
LEAF = 1
MAX_DEPTH = 4
#: A field holding fewer rules than this in a node hands them to a busier field where it can (see Node.build).
MIN_FIELD = 8


class Node:
    """Rules filed under their cheapest Need, each large entry divided again by the rules' other Needs; rules
    with no usable Need are wildcards of the node (met by every event that reaches it)."""

    __slots__ = ("fields", "wild", "probes")

    def __init__(self):
        self.fields: tuple = ()  # (field, FieldIndex), probed in this order
        self.wild: tuple = ()
        self.probes: tuple = ()  # (field, its FieldIndex's specialised probe)

    def collect(self, get, out: list) -> None:
        for path, probe in self.probes:
            v = get(path)
            if v is not MISSING:
                probe(v, out, get)
        if self.wild:
            out.append(self.wild)

    def build(self, entries: list, fast: set, prefer: str, depth: int = 0) -> dict:
        """File entries [(rule, [Need])]; returns {rule order: Need it is filed under here, None: wildcard}."""
        _costs(entries, fast)
        n_rules = len(entries)
        filed: dict = {}
        wild, by_field = [], {}
        for cr, ns in entries:
            best = None
            for nd in ns:  # cheapest; on a tie the protocol's index field, then the first written
                if best is None or nd.cost < best.cost or (nd.cost == best.cost and nd.field == prefer
                                                           and best.field != prefer):
                    best = nd
            if best is None or best.cost > n_rules + SLOW_FIELD:  # met by (nearly) every event anyway
                wild.append(cr)
                filed[cr.order] = None
                continue
            filed[cr.order] = best
            by_field.setdefault(best.field, []).append((cr, best))
        rest = {cr.order: ns for cr, ns in entries}
        # A field read for a few rules costs every event a read and a probe: file those rules under one of the
        # busier fields instead, where they have a usable condition on one.
        for f in sorted(by_field, key=lambda f: len(by_field[f])):
            if len(by_field[f]) >= MIN_FIELD or len(by_field) == 1:
                continue
            keep = []
            for cr, nd in by_field[f]:
                alts = [n for n in rest[cr.order] if n.field != f and n.field in by_field
                        and len(by_field[n.field]) >= MIN_FIELD and n.cost <= n_rules + SLOW_FIELD]
                if alts:
                    alt = min(alts, key=lambda n: n.cost)
                    by_field[alt.field].append((cr, alt))
                    filed[cr.order] = alt
                else:
                    keep.append((cr, nd))
            if keep:
                by_field[f] = keep
            else:
                del by_field[f]
        fields = []
        for f, items in by_field.items():
            fi = FieldIndex(f)
            nums, ips = [], {}
            for cr, nd in items:
                if nd.kind == "eq":
                    for k in nd.keys:
                        fi.eq.setdefault(k, []).append(cr)
                elif nd.kind == "topic":
                    for k in nd.keys:
                        fi.topic.setdefault(k, []).append(cr)
                elif nd.kind == "num":
                    nums += [(lo, hi, cr) for lo, hi in nd.ivs]
                else:
                    for k in nd.keys:
                        fi.ip_exact.setdefault(k, []).append(cr)
                    for v, lo, hi in nd.ivs:
                        ips.setdefault(v, []).append((lo, hi, cr))
            if nums:
                fi.num = Stabbing()
                wild += fi.num.build(nums, TABLE_BUDGET)
            for v, lst in ips.items():
                st = fi.ip_blocks[v] = Stabbing()
                wild += st.build(lst, TABLE_BUDGET)
            divided: dict = {}

            def divide(rules):
                t = _sorted(rules)
                if len(t) <= LEAF or depth >= MAX_DEPTH:
                    return t
                key = tuple(c.order for c in t)
                got = divided.get(key)
                if got is None:
                    sub = [(c, [n for n in rest[c.order] if n.field != f]) for c in t]
                    if not any(ns for _, ns in sub):
                        got = t
                    else:
                        got = Node()
                        got.build(sub, fast, prefer, depth + 1)
                        if not got.fields:  # nothing divided it: keep the plain tuple
                            got = t
                    divided[key] = got
                return got

            for tab in fi.tables():
                if type(tab) is dict:
                    for k in tab:
                        tab[k] = divide(tab[k])
                else:
                    tab[:] = [divide(t) if t else () for t in tab]
            fields.append((f, fi))
        fields.sort(key=lambda x: (x[0] != prefer, x[0]))  # the index field first: it is read anyway
        self.fields = tuple(fields)
        self.probes = tuple((f, fi.prober()) for f, fi in fields)
        self.wild = _sorted(wild)
        for cr in self.wild:
            filed[cr.order] = None
        return filed

    def walk(self):
        """Every node below and including this one."""
        yield self
        for _, fi in self.fields:
            for tab in fi.tables():
                for t in (tab.values() if type(tab) is dict else tab):
                    if type(t) is Node:
                        yield from t.walk()

    def rules(self) -> dict:
        """Every rule filed in this node or below, by load order."""
        out = {}
        for n in self.walk():
            out.update((c.order, c) for c in n.wild)
            for _, fi in n.fields:
                for tab in fi.tables():
                    for t in (tab.values() if type(tab) is dict else tab):
                        if type(t) is tuple:
                            out.update((c.order, c) for c in t)
        return out


def _costs(entries: list, fast: set) -> None:
    """Cost of each Need: how many rules an event meeting it is expected to meet through the same entry.
    Equalities count the rules sharing each value; ranges count overlapping ranges plus their share of the
    field's domain times the rule count (a wide range is met by most events); CIDR blocks are treated as met
    by every event once they are as wide as a /24. Fields with no typed reader cost a document build."""
    n_rules = max(1, len(entries))
    counts: dict = {}
    ivs: dict = {}
    for _, ns in entries:
        mine = {(nd.field, nd.kind, k) for nd in ns for k in nd.keys}  # a rule counts once per value
        for f, kind, k in mine:
            c = counts.setdefault((f, kind), {})
            c[k] = c.get(k, 0) + 1
        for nd in ns:
            counts.setdefault((nd.field, nd.kind), {})
            if nd.kind == "num":
                ivs.setdefault((nd.field, "num", None), []).extend(nd.ivs)
            elif nd.kind == "ip":
                for v, lo, hi in nd.ivs:
                    ivs.setdefault((nd.field, "ip", v), []).append((lo, hi))
    table = {}
    for key, lst in ivs.items():
        fin = [x for iv in lst for x in iv if x not in (INF, -INF)]
        dom = DOMAINS.get(key[0]) if key[1] == "num" else None
        if dom is None:
            dom = (min(fin), max(fin)) if fin else (0, 0)
        table[key] = (sorted(lo for lo, _ in lst), sorted(hi for _, hi in lst), dom)

    def overlaps(key, lo, hi):
        los, his, _ = table[key]
        return len(los) - bisect_left(his, lo) - (len(los) - bisect_right(los, hi))

    for _, ns in entries:
        for nd in ns:
            c = counts[(nd.field, nd.kind)]
            cost = float(sum(c[k] for k in nd.keys))
            if nd.kind == "num":
                key = (nd.field, "num", None)
                dlo, dhi = table[key][2]
                for lo, hi in nd.ivs:
                    width = min(hi, dhi) - max(lo, dlo) + 1
                    cost += overlaps(key, lo, hi) + n_rules * max(0.0, min(1.0, width / (dhi - dlo + 1)))
            elif nd.kind == "ip":
                for v, lo, hi in nd.ivs:
                    cost += overlaps((nd.field, "ip", v), lo, hi) + n_rules * min(1.0, (hi - lo + 1) / 256)
            if nd.field not in fast:
                cost += SLOW_FIELD
            nd.cost = cost


def _no_groups(ev):
    return None


class ProtoIndex:
    """Rules of one protocol: a tree of Nodes; an event meets the rules of the entries its values reach."""

    def __init__(self, protocol: str, doc_of):
        self.protocol = protocol
        self.doc_of = doc_of  # (event, with secrets) -> its document
        self.field = INDEX_FIELD[protocol]
        self.entries: list = []  # (rule, [Need])
        self.groups = Groups()  # rules filed by exact values (groups.py), looked up first
        self.rest = Node()  # the rules no group holds
        self._root: Node | None = None  # every rule (documents, and events with a list in a grouped field)
        self._filed: dict = {}
        self.needs_secrets = False
        self._merged: dict = {}
        self._rows: dict = {}  # (id of a node, id of a record type's readers) -> (field, reader or None, probe)
        self._keep: list = []
        self._fns: dict = {}  # record type -> generated group lookup (None: that type has no readers for them)
        self._fast: set = set()

    def build(self, ev) -> dict:
        return self.doc_of(ev, self.needs_secrets)

    def add(self, cr, lists: dict) -> None:
        r = cr.rule
        ns = needs(r.match, r.protocol, lists)
        ks = keys_of(r.match, r.protocol, lists)
        if ks is not None:  # the protocol's own key logic (function names, MQTT type prefixes, Suricata keywords)
            ns.append(Need(self.field, "eq", frozenset(ks)))
        self.entries.append((cr, ns))

    def finish(self) -> None:
        spec = REGISTRY.get(self.protocol)
        self._fast = set(spec.rules.readers) if spec is not None and spec.rules is not None else set()
        self.groups.build(self.entries, self._fast)
        self.rest = Node()
        self.rest.build(self.groups.rest, self._fast, self.field)

    @property
    def root(self) -> Node:
        """Every rule in one tree, built the first time a document or an event the groups cannot take needs it."""
        if self._root is None:
            root = Node()
            self._filed = root.build(self.entries, self._fast, self.field)
            self._root = root
        return self._root

    @property
    def filed(self) -> dict:
        """Rule order -> the Need it is filed under at the root of the full tree (None: wildcard)."""
        self.root  # noqa: B018 (built on demand)
        return self._filed

    def group_lookup(self, t: type, fast: dict):
        """The generated group lookup for records of type t (None: look them up in the full tree)."""
        if t in self._fns:
            return self._fns[t]
        fn = self.groups.compile(fast, self._merge, INLINE, _c_reader) if self.groups.groups else _no_groups
        self._fns[t] = fn
        return fn

    @property
    def wild(self) -> tuple:
        return self.root.wild

    # ------------------------------------------------------------------ matching
    def lookup_record(self, view, ev, fast: dict, node: Node | None = None):
        """lookup() for the view of a typed record, in `node` (default: the full tree): the node's fields are read
        by the record's readers straight into the view (no miss handler per field), the rest through the view."""
        node = node if node is not None else self.root
        rows = self._rows.get((id(node), id(fast)))
        if rows is None:
            rows = tuple((path, _c_reader(path, fast.get(path)), probe) for path, probe in node.probes)
            self._rows[(id(node), id(fast))] = rows
            self._keep.append(fast)  # the id stays this dict's while the index lives
        get = view.get
        found: list = []
        for path, reader, probe in rows:
            if reader is not None:
                v = view[path] = reader(ev)
            else:
                v = get(path)
            if v is not MISSING:
                probe(v, found, get)
        if node.wild:
            found.append(node.wild)
        return self._merge(found)

    def lookup(self, get):
        """The rules an event may match, in load order; get(path) reads the event's fields."""
        found: list = []
        self.root.collect(get, found)
        return self._merge(found)

    def _merge(self, found: list):
        if not found:
            return ()
        if len(found) == 1:
            return found[0]
        key = tuple(map(id, found))  # entries live as long as the index: their ids are stable
        got = self._merged.get(key)
        if got is None:
            seen = {c.order: c for t in found for c in t}
            got = tuple(seen[o] for o in sorted(seen))
            if len(self._merged) < 65536:
                self._merged[key] = got
        return got

    def candidates(self, key) -> tuple:
        """The rules an event whose index field holds `key` (one key or a list) may meet, its other fields
        unknown: those it reaches through the key, every rule filed under another field, and the wildcards."""
        def get(path):
            return key if path == self.field else MISSING
        out = {c.order: c for c in self.lookup(get)}
        for f, fi in self.root.fields:
            if f != self.field:
                sub = Node()
                sub.fields = ((f, fi),)
                sub.probes = ((f, fi.prober()),)
                out.update(sub.rules())
        return tuple(out[o] for o in sorted(out))

    def stats(self) -> dict:
        """How the rules are filed as events meet them: exact-key groups, then the tree of the rest (its root
        wildcards, rules per root field, its nodes); the largest entry of either."""
        per: dict = {}
        rest = Node()
        filed = rest.build(self.groups.rest, self._fast, self.field) if self.groups.rest else {}
        for nd in filed.values():
            if nd is not None:
                per[nd.field] = per.get(nd.field, 0) + 1
        g = self.groups.stats()
        largest, nodes = g["largest"], 0
        for n in self.rest.walk():
            nodes += 1
            largest = max(largest, len(n.wild))
            for _, fi in n.fields:
                for tab in fi.tables():
                    for t in (tab.values() if type(tab) is dict else tab):
                        if type(t) is tuple:
                            largest = max(largest, len(t))
        return {"wildcard": len(self.rest.wild), "fields": per, "largest": largest, "nodes": nodes,
                "groups": g["groups"], "grouped": g["grouped"]}


class PlainIndex:
    """Every rule of the protocol for every event, in load order: the reference the index must agree with
    (the differential test and `otids rules bench` compare the two)."""

    def __init__(self, pi: ProtoIndex):
        self.protocol, self.field, self.doc_of = pi.protocol, pi.field, pi.doc_of
        self.needs_secrets = pi.needs_secrets
        self.rules = _sorted(cr for cr, _ in pi.entries)
        self.wild = self.rules
        self._fns: dict = {}

    def group_lookup(self, t: type, fast: dict):
        self._fns[t] = None
        return None

    def build(self, ev) -> dict:
        return self.doc_of(ev, self.needs_secrets)

    def lookup(self, get) -> tuple:
        return self.rules

    def lookup_record(self, view, ev, fast) -> tuple:
        return self.rules


def plain(compiled):
    """The same compiled ruleset with the index switched off (a copy; thresholds start afresh per detector)."""
    import dataclasses
    return dataclasses.replace(compiled, index={ds: PlainIndex(pi) for ds, pi in compiled.index.items()})
