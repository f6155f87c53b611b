"""Exact-key groups, the rules engine's first prefilter stage: each rule with up to three conditions that pin a
field to a few exact values (function codes, units, hosts, a small CIDR block or a short register range,
expanded) is filed under the tuple of those values, and an event costs one dict lookup per group of rules
filed under the same fields -- the event's values read once by the record's typed readers, by a function
generated for the rule set, with no document, view or per-field call chain (Suricata hashes its signature
groups by address and port the same way).

Groups only narrow, like the rest of the index (index.py): a rule's keys are a superset of the values it can
match, so the candidates still run their whole conditions. Keys are exact for scalar values only (two
conditions on one field are intersected), so an event carrying a list in a grouped field is looked up in the
full tree instead; rules with no such conditions, or sharing one key with many others, stay in the tree.
"""
from __future__ import annotations

import math
from itertools import combinations, product

from .compile import MISSING, ip_int

#: Most values one condition is expanded to (a register range, a CIDR block); more: not exact.
MAX_KEYS = 64
#: Most fields a group keys on (a tuple of their values).
MAX_FIELDS = 3
#: Most keys one rule is filed under (the product of its conditions' values).
MAX_COMBOS = 256
#: Most groups (one dict lookup each per event); rules of the smallest groups past it go to the tree.
MAX_GROUPS = 12
#: A key shared by more rules than this is left to the tree, which divides it by the rules' other conditions.
MAX_SHARED = 8
#: Returned by a group lookup when the event holds a list in a grouped field: look it up in the full tree.
FALLBACK = object()

#: IPv6 addresses as keys: their integer with this bit set, apart from every IPv4 address's integer (a plain
#: int hashes without the tuple (version, int) ip_int gives).
V6 = 1 << 130
_IPK: dict = {}  # address text -> key


def ip_key(s: str):
    """An address's key (a plain int), MISSING if it is not one; cached like ip_int."""
    ip = ip_int(s)
    if ip is None:
        return MISSING
    k = ip[1] if ip[0] == 4 else ip[1] | V6
    if len(_IPK) > 65536:
        _IPK.clear()
    _IPK[s] = k
    return k


def _flat(ip: tuple) -> int:
    return ip[1] if ip[0] == 4 else ip[1] | V6


def _exact_keys(nd) -> frozenset | None:
    """The values a Need pins its field to, expanded, or None when it pins it to too many or a range."""
    if nd.kind == "eq":
        return nd.keys if len(nd.keys) <= MAX_KEYS * 4 else None
    if nd.kind == "ip":
        keys = {_flat(k) for k in nd.keys}
        for v, lo, hi in nd.ivs:
            if hi - lo + 1 > MAX_KEYS:
                return None
            keys.update(_flat((v, x)) for x in range(lo, hi + 1))
        return frozenset(keys) if len(keys) <= MAX_KEYS * 4 else None
    return None


def _num_interval(ivs):
    """A single interval a num Need stands for, or None (several intervals: a union, not intersected)."""
    return ivs[0] if len(ivs) == 1 else None


def exact_needs(ns: list, fast: set) -> dict:
    """{(field, kind): keys} a rule's Needs pin, for fields with a typed reader. Two Needs on one field are
    intersected (both must hold on a scalar value); numeric intervals become the integers they hold (floored:
    an event's float value is looked up by its floor, which lies in any integer-bounded interval it lies in)."""
    out: dict = {}
    nums: dict = {}
    for nd in ns:
        if nd.field not in fast:
            continue
        if nd.kind == "num":
            iv = _num_interval(nd.ivs)
            if iv is None:
                continue
            lo, hi = nums.get(nd.field, (-math.inf, math.inf))
            nums[nd.field] = (max(lo, iv[0]), min(hi, iv[1]))
            continue
        ks = _exact_keys(nd)
        if ks is None:
            continue
        fk = (nd.field, nd.kind)
        out[fk] = out[fk] & ks if fk in out else ks
    for f, (lo, hi) in nums.items():
        if lo in (-math.inf, math.inf) or hi in (-math.inf, math.inf):
            continue
        flo, fhi = math.floor(lo), math.floor(hi)
        if fhi - flo + 1 <= MAX_KEYS:
            out[(f, "num")] = frozenset(range(flo, fhi + 1)) if fhi >= flo else frozenset()
    return out


class Groups:
    """Rules filed by the exact values of up to three fields: [(fields, {key: rules in load order})]."""

    def __init__(self):
        self.groups: list = []  # ((field, kind), ...), {key: tuple of rules}
        self.rest: list = []  # entries (rule, [Need]) left to the tree

    def build(self, entries: list, fast: set) -> None:
        # Each rule's exact keys are worked out again in each pass rather than kept for 50,000 rules at once
        # (expanded ranges and blocks: the peak memory of loading, which the process keeps).
        # A field some rules pin to a range and others to equal numbers: one kind of key for both (fewer groups)
        ranged: set = set()
        for _, ns in entries:
            ranged.update(f for f, kind in exact_needs(ns, fast) if kind == "num")

        def each():
            for cr, ns in entries:
                ex = exact_needs(ns, fast)
                yield cr, (_as_num(ex, ranged) if ranged else ex)

        distinct: dict = {}
        for _, ex in each():
            for fk, ks in ex.items():
                distinct.setdefault(fk, set()).update(ks)
        share = {fk: max(1, len(s)) for fk, s in distinct.items()}
        del distinct

        def options(ex):
            """(estimated share of events meeting it, fields) for each set of up to MAX_FIELDS fields, best
            first; the share is the product of each field's share of the values rules pin it to."""
            fks = sorted(ex)
            p = {fk: len(ex[fk]) / share[fk] for fk in fks}
            opts = []
            for n in range(1, min(MAX_FIELDS, len(fks)) + 1):
                for g in combinations(fks, n):
                    combos = math.prod(len(ex[fk]) for fk in g)
                    if combos <= MAX_COMBOS:
                        opts.append((math.prod(p[fk] for fk in g), g))
            opts.sort(key=lambda o: (o[0], len(o[1]), o[1]))
            return opts

        pop: dict = {}
        for _, ex in each():
            opts = options(ex)
            if opts:
                g = opts[0][1]
                pop[g] = pop.get(g, 0) + 1
        # Few groups: rules of a small group move to a busier one they can be filed under, as good or nearly.
        floor_pop = max(4, len(entries) // 200)
        busy = {g for g, n in pop.items() if n >= floor_pop}
        final: dict = {}
        for cr, ex in each():
            opts = options(ex)
            if not opts:
                continue
            best = opts[0]
            pick = best[1]
            if pick not in busy:
                alt = next((o for o in opts if o[1] in busy and o[0] <= max(best[0] * 16, 1e-3)), None)
                if alt is not None:
                    pick = alt[1]
            final[cr.order] = pick
        counts: dict = {}
        for g in final.values():
            counts[g] = counts.get(g, 0) + 1
        keep = set(sorted(counts, key=lambda g: (-counts[g], g))[:MAX_GROUPS])
        tables: dict = {g: {} for g in keep}
        for cr, ex in each():
            g = final.get(cr.order)
            if g not in keep:
                continue
            t = tables[g]
            keys = ex[g[0]] if len(g) == 1 else product(*(ex[fk] for fk in g))
            for k in keys:
                t.setdefault(k, []).append(cr)
        # a key many rules share is met by every event carrying it: the tree divides those rules further
        crowded = {cr.order for t in tables.values() for rs in t.values() if len(rs) > MAX_SHARED for cr in rs}
        filed = set()
        self.groups = []
        shared: dict = {}  # one tuple per set of rules (a rule filed under many keys holds one)
        for g in sorted(tables, key=lambda g: (-counts[g], g)):
            t = {}
            for k, rs in tables[g].items():
                rs = tuple(sorted((cr for cr in rs if cr.order not in crowded), key=lambda c: c.order))
                if rs:
                    t[k] = shared.setdefault(tuple(cr.order for cr in rs), rs)
                    filed.update(cr.order for cr in rs)
            if t:
                self.groups.append((g, t))
        self.rest = [(cr, ns) for cr, ns in entries if cr.order not in filed]

    def stats(self) -> dict:
        return {"groups": len(self.groups), "grouped": len({c.order for _, t in self.groups for rs in t.values()
                                                            for c in rs}),
                "largest": max((len(rs) for _, t in self.groups for rs in t.values()), default=0)}

    def compile(self, readers: dict, merge, inline: dict, wrap=lambda path, reader: reader):
        """A function event -> None (no candidate), a tuple of candidate rules in load order, or FALLBACK;
        generated once per record type from the readers of the grouped fields (`inline`: those that are plain
        attribute reads, as expressions; `wrap` may swap a reader for a faster equal one), or None if a grouped
        field has no reader."""
        if not self.groups:
            return None
        fields = sorted({f for g, _ in self.groups for f, _ in g})
        if any(readers.get(f) is None for f in fields):
            return None
        env = {"MISSING": MISSING, "FALLBACK": FALLBACK, "IPK": _IPK, "ip_key": ip_key, "merge": merge,
               "floor": _floor}
        lines = ["def lookup(ev):"]
        var = {}
        for i, f in enumerate(fields):
            var[f] = f"x{i}"
            expr = inline.get((f, id(readers[f])))
            if expr is None:
                env[f"R{i}"] = wrap(f, readers[f])
                expr = f"R{i}(ev)"
            lines.append(f"    x{i} = {expr}")
        lines.append("    if " + " or ".join(f"type({v}) is list" for v in var.values()) + ":")
        lines.append("        return FALLBACK")
        lines.append("    try:")  # an unhashable value: the full tree decides
        keyvar = {}
        for g, _ in self.groups:
            for f, kind in g:
                if (f, kind) in keyvar:
                    continue
                x = var[f]
                if kind == "eq":
                    keyvar[(f, kind)] = x
                    continue
                k = keyvar[(f, kind)] = f"k{len(keyvar)}"
                if kind == "ip":
                    lines.append(f"        {k} = (IPK.get({x}) or ip_key({x})) if type({x}) is str else MISSING")
                else:  # num: integers as they are, floats by their floor, bools as 0/1, the rest meets none
                    lines.append(f"        {k} = {x} if type({x}) is int else floor({x}) if type({x}) is float "
                                 f"else int({x}) if type({x}) is bool else MISSING")
        lines.append("        found = None")
        for j, (g, t) in enumerate(self.groups):
            env[f"T{j}"] = t
            key = keyvar[g[0]] if len(g) == 1 else "(" + ", ".join(keyvar[fk] for fk in g) + ")"
            lines += [f"        r = T{j}.get({key})",
                      "        if r is not None:",
                      "            if found is None:",
                      "                found = [r]",
                      "            else:",
                      "                found.append(r)"]
        lines += ["    except TypeError:",
                  "        return FALLBACK",
                  "    if found is None:",
                  "        return None",
                  "    return found[0] if len(found) == 1 else merge(found)"]
        src = "\n".join(lines) + "\n"
        exec(compile(src, "<otids rule groups>", "exec"), env)  # noqa: S102 (our own text, from the rule set)
        fn = env["lookup"]
        fn.source = src
        return fn


def _integral(k) -> bool:
    t = type(k)
    return t is int or t is bool or (t is float and k.is_integer())


def _as_num(ex: dict, ranged: set) -> dict:
    """Equalities to whole numbers on a ranged field as num keys (an event's number is looked up by its
    floor, a bool as 0/1, so every value an equality matches finds its key), intersected with its ranges."""
    out = {}
    for (f, kind), ks in ex.items():
        if kind == "eq" and f in ranged and all(_integral(k) for k in ks):
            fk = (f, "num")
            ks = frozenset(int(k) for k in ks)
            if fk in ex:
                ks &= ex[fk]
            out[fk] = out[fk] & ks if fk in out else ks
        elif (f, kind) not in out:
            out[(f, kind)] = ks
        else:
            out[(f, kind)] &= ks
    return out


def _floor(x):
    if x != x or x in (math.inf, -math.inf):
        return MISSING
    return math.floor(x)
