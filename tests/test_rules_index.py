"""The rules prefilter (ids/detect/rules/index.py) against a plain loop over every rule: random rule sets of
the shapes sites write (equalities, sets, ranges, CIDR blocks, hosts, topics, node ids, function codes and
names, nocase, not, any, thresholds) on real events of the captures in pcaps/ and on altered documents must
raise exactly the same alerts, in the same order, with the same counts."""
from __future__ import annotations

import copy
import random

import pytest
import yaml

from conftest import PCAPS
from ids.detect.rules import index as index_mod
from ids.detect.rules.bench import _cond, site_matches, site_ruleset, site_yaml
from ids.detect.rules.compile import resolve
from ids.detect.rules.detector import RulesDetector, compile_rules
from ids.detect.rules.index import plain
from ids.detect.rules.loader import load_yaml_file
from ids.detect.rules.rule import All, Check, SiteLists
from ids.pipeline import analyze

CAPTURES = ["modbus-demo.pcap", "rules-modbus.pcap", "modbus-alert-storm.pcap", "opcua-sign.pcap",
            "opcua-none-username.pcap", "opcua-chunked.pcap", "mqtt-mosquitto.pcap"]

FIELDS = {
    "modbus": {"modbus.function_code": "num", "modbus.request.address": "num", "modbus.request.last_address": "num",
               "modbus.unit_id": "num", "modbus.request.values": "num", "modbus.function": "kw",
               "modbus.exception": "kw", "source.ip": "ip", "destination.ip": "ip", "destination.port": "num"},
    "opcua": {"opcua.service": "kw", "opcua.nodes": "kw", "opcua.status_code": "num", "opcua.security_mode": "kw",
              "source.ip": "ip", "destination.ip": "ip", "source.port": "num"},
    "mqtt": {"mqtt.types": "kw", "mqtt.publish.topic": "topic", "mqtt.subscribe.topics.topic": "topic",
             "mqtt.connect.client_id": "kw", "source.ip": "ip", "destination.port": "num"},
}


@pytest.fixture(scope="module")
def events():
    missing = [c for c in CAPTURES if not (PCAPS / c).is_file()]
    assert not missing, f"captures missing from pcaps/: {missing}"
    _, col = analyze([str(PCAPS / c) for c in CAPTURES], detectors=[])
    evs = [e for e in col.events if getattr(e, "dataset", "") in ("otids.modbus", "otids.opcua", "otids.mqtt")]
    assert {e.dataset for e in evs} == {"otids.modbus", "otids.opcua", "otids.mqtt"}
    return evs


def _pools(evs) -> dict:
    """Values each field takes in the real events (rules drawn from them match often)."""
    pools: dict = {}
    for ev in evs:
        proto = ev.dataset.split(".", 1)[1]
        d = ev.to_doc()
        for f in FIELDS[proto]:
            v = resolve(d, f.split("."))
            for x in (v if type(v) is list else [v]):
                if isinstance(x, (int, float, str)) and not isinstance(x, bool):
                    pools.setdefault((proto, f), set()).add(x)
    return {k: sorted(v, key=str) for k, v in pools.items()}


def _cond_for(rnd, proto, f, kind, pools):
    pool = pools.get((proto, f)) or ([0, 1, 3] if kind == "num" else ["x", "y/z"])
    v = rnd.choice(pool)
    other = rnd.choice(pool)
    r = rnd.random()
    if kind == "num":
        v = v if isinstance(v, (int, float)) else 0
        other = other if isinstance(other, (int, float)) else 1
        k = rnd.choice((0, 1, 5, 100))
        return rnd.choice([v, [v, other], {"range": [v - k, v + k]}, {"gte": v}, {"gt": v - k}, {"lte": v + k},
                           {"lt": v}, {"gte": v - k, "lte": v + k}, {"not": v}, {"range": [v + k, v]}])
    if kind == "ip":
        if r < 0.15:
            return f"10.10.{rnd.randrange(3)}.{rnd.randrange(1, 30)}"
        a, b = v.rsplit(".", 1) if "." in v else ("10.0.0", "1")
        return rnd.choice([v, [v, other], {"cidr": [f"{a}.0/24"]}, {"cidr": [f"{v}/32", "192.0.2.0/28"]},
                           {"range": [f"{a}.0", v]}, f"{a}.0/30", {"not": v}, f"{v}-{v}"])
    if kind == "topic":
        parts = str(v).split("/")
        flt = rnd.choice(["/".join(parts[:1] + ["#"]), "/".join(["+"] + parts[1:]), str(v), "#",
                          "/".join(parts[:-1] + ["+"]), "$SYS/#"])
        return rnd.choice([{"topic": [flt]}, v, [v, other], {"startswith": str(v)[:2]}])
    return rnd.choice([v, [v, other], {"equals": str(v).upper(), "nocase": True}, {"not": v},
                       {"in": [v, "zz"], "nocase": True}, {"exists": True}, {"regex": str(v)[:3] or "."}])


def _random_rules(rnd, n, pools) -> list[dict]:
    rules = []
    for i in range(n):
        proto = rnd.choice(("modbus", "modbus", "opcua", "mqtt"))
        fs = list(FIELDS[proto].items())
        m = {}
        for f, kind in rnd.sample(fs, rnd.randint(1, 4)):
            m[f] = _cond_for(rnd, proto, f, kind, pools)
        if rnd.random() < 0.15:
            (f1, k1), (f2, k2) = rnd.sample(fs, 2)
            m["any"] = [{f1: _cond_for(rnd, proto, f1, k1, pools)}, {f2: _cond_for(rnd, proto, f2, k2, pools)}]
        if rnd.random() < 0.1:
            f1, k1 = rnd.choice(fs)
            m["not"] = {f1: _cond_for(rnd, proto, f1, k1, pools)}
        r = {"id": f"r{i}", "title": f"rule {i}", "description": "random", "severity": "low", "protocol": proto,
             "match": m}
        if rnd.random() < 0.1:
            r["threshold"] = {"count": 2, "window": "10s", "group_by": ["source.ip"]}
        rules.append(r)
    return rules


def _compile(rules):
    rs = load_yaml_file("random.yml", yaml.safe_dump({"rules": rules}, sort_keys=False))
    c = compile_rules(rs, SiteLists())
    bad = {i.rule_id for i in c.errors}
    if bad:  # a generated combination the validators refuse (never-matches, ...): drop it, keep the rest
        rs = load_yaml_file("random.yml", yaml.safe_dump({"rules": [r for r in rules if r["id"] not in bad]},
                                                        sort_keys=False))
        c = compile_rules(rs, SiteLists())
    assert not c.errors, [str(e) for e in c.errors]
    return c


def _alerts(out):
    return [(a.rule_id, a.count, a.reason) for a in out or ()]


#: Fields the documents derive from others (the MQTT types from the message keys, a function's name from
#: its code): the index relies on them agreeing, as the engine always has, so they are never altered alone.
DERIVED = {"mqtt.types", "modbus.function"}


def _altered_docs(rnd, evs, pools, n):
    """Real documents with two fields set to values other events carry (or to a list of two)."""
    out = []
    for _ in range(n):
        ev = rnd.choice(evs)
        proto = ev.dataset.split(".", 1)[1]
        d = copy.deepcopy(ev.to_doc())
        for f, _kind in rnd.sample([x for x in FIELDS[proto].items() if x[0] not in DERIVED], 2):
            if f == "modbus.function_code":  # its name goes with it (the name says which code it is)
                d.get("modbus", {}).pop("function", None)
                d.get("event", {}).pop("action", None)
            pool = pools.get((proto, f))
            if not pool:
                continue
            cur = d
            parts = f.split(".")
            for p in parts[:-1]:
                nxt = cur.get(p)
                if not isinstance(nxt, dict):
                    break
                cur = nxt
            else:
                cur[parts[-1]] = rnd.choice(pool) if rnd.random() < 0.8 else [rnd.choice(pool), rnd.choice(pool)]
        out.append(d)
    return out


def _differential(c, evs, docs):
    idx, ref = RulesDetector(c), RulesDetector(plain(c))
    n = hits = 0
    for ev in evs:
        a, b = _alerts(idx.on_event(ev)), _alerts(ref.on_event(ev))
        assert a == b, (ev.to_doc(), a, b)
        n += 1
        hits += bool(a)
    for d in docs:
        a, b = _alerts(idx.on_doc(d, ts=1)), _alerts(ref.on_doc(d, ts=1))
        assert a == b, (d, a, b)
        hits += bool(a)
    assert idx.matches == ref.matches
    return hits


@pytest.mark.parametrize("seed", range(6))
def test_index_raises_exactly_the_alerts_of_a_plain_loop(events, seed):
    rnd = random.Random(seed)
    pools = _pools(events)
    c = _compile(_random_rules(rnd, 300, pools))
    assert len(c.rules) > 250
    hits = _differential(c, events, _altered_docs(rnd, events, pools, 400))
    assert hits > 50  # the rules do fire: the comparison is not between two silences


def test_divided_and_evicted_entries_agree_too(events, monkeypatch):
    """Tiny leaves and no room in the range tables: every large entry is divided again and every range
    rule is evicted to the wildcards; the alerts must not change."""
    monkeypatch.setattr(index_mod, "LEAF", 1)
    monkeypatch.setattr(index_mod, "TABLE_BUDGET", -10**9)
    rnd = random.Random(99)
    pools = _pools(events)
    c = _compile(_random_rules(rnd, 300, pools))
    assert any(n is not c.index["otids.modbus"].root for n in c.index["otids.modbus"].root.walk())
    _differential(c, events, _altered_docs(rnd, events, pools, 300))


def test_bench_builds_the_rules_the_loader_makes(events):
    """`otids rules bench --site` builds its conditions in memory; they must equal the loader's reading of
    the same YAML (sources aside)."""
    modbus = [e for e in events if e.dataset == "otids.modbus"]
    ms = site_matches(40, modbus, seed=5)
    loaded = load_yaml_file("site.yml", site_yaml(ms))
    assert not loaded.errors

    def bare(c):
        if isinstance(c, All):
            return ("all", tuple(bare(x) for x in c.items))
        assert isinstance(c, Check)
        return (c.field, c.op, c.arg, c.nocase)
    built = site_ruleset(ms).rules
    assert [bare(r.match) for r in built] == [bare(r.match) for r in loaded.rules]
    assert bare(_cond(ms[0], built[0].source)) == bare(loaded.rules[0].match)


# ---------------------------------------------------------------------------------------------- exact-key groups

def _odd_records(modbus, rnd, n):
    """Real Modbus records with grouped fields set to what a typed record never quite holds but a reader may
    hand over: floats (whole and not), bools, None, lists, IPv6 and IPv4-mapped addresses, text that is no
    address, an absent request."""
    from ids.protocols.modbus.messages import ModbusRequest
    ips = ["2001:db8::1", "2001:db8::3", "::ffff:10.10.1.11", "not-an-ip", "0.0.0.0", "10.10.1.011", "10.10.2.1"]
    out = []
    for _ in range(n):
        ev = rnd.choice(modbus)
        req = ev.request or ModbusRequest()
        k = rnd.randrange(8)
        if k == 0:
            ev = ev._replace(function_code=rnd.choice([3.0, 3.5, True, "3", (3, 4), [3, 16]]))
        elif k == 1:
            ev = ev._replace(unit_id=rnd.choice([True, 1.0, None, 255.5, [1, 2]]))
        elif k == 2:
            ev = ev._replace(request=req._replace(address=rnd.choice([5.0, 5.5, True, False, -1, None, 1e300,
                                                                       float("nan"), float("inf"), [5, 7]])))
        elif k == 3:
            ev = ev._replace(request=None)
        elif k == 4:
            ev = ev._replace(flow=ev.flow._replace(client_ip=rnd.choice(ips)))
        elif k == 5:
            ev = ev._replace(flow=ev.flow._replace(server_ip=rnd.choice(ips)))
        elif k == 6:
            ev = ev._replace(request=req._replace(values=rnd.choice([(5,), [5, 6], None, []])))
        out.append(ev)
    return out


def _odd_rules(modbus, rnd, n):
    """Rules whose conditions the groups expand or merge: equal numbers, bools and floats beside ranges on one
    field, IPv6 and IPv4-mapped hosts and small blocks, written values, function codes as sets."""
    real = sorted({ip for ev in modbus for ip in (ev.flow.client_ip, ev.flow.server_ip)})
    hosts = real + ["2001:db8::1", "::ffff:10.10.1.11"]
    out = []
    for i in range(n):
        m = {}
        for f in rnd.sample(["fc", "unit", "addr", "src", "dst", "values"], rnd.randint(2, 4)):
            if f == "fc":
                m["modbus.function_code"] = rnd.choice([3, [3, 16], 4, {"gte": 3, "lte": 4}, {"range": [1, 6]}])
            elif f == "unit":
                m["modbus.unit_id"] = rnd.choice([1, 2, [1, 2], {"lte": 1}, {"range": [1, 3]}])
            elif f == "addr":
                a = rnd.randrange(0, 100)
                m["modbus.request.address"] = rnd.choice([a, 5, 5.5, [a, 5], {"range": [a, a + 9]}, {"gte": a, "lte": a},
                                                          {"gt": 4.5, "lt": 6}, {"range": [0, 200]}, {"gte": a}])
            elif f in ("src", "dst"):
                h = rnd.choice(hosts)
                a, b = h.rsplit(".", 1) if "." in h and ":" not in h else (None, None)
                m["source.ip" if f == "src" else "destination.ip"] = rnd.choice(
                    [h, [h, rnd.choice(hosts)], {"cidr": ["2001:db8::/126"]}] +
                    ([{"cidr": [f"{a}.{int(b) & ~3}/30"]}, f"{a}.{int(b) & ~15}/28"] if a else []))
            else:
                m["modbus.request.values"] = rnd.choice([5, [5, 6], {"range": [0, 10]}])
        out.append({"id": f"odd{i}", "title": f"odd {i}", "description": "odd", "severity": "low",
                    "protocol": "modbus", "match": m})
    return out


@pytest.mark.parametrize("seed", range(2))
def test_groups_agree_with_a_plain_loop_on_odd_values(events, seed):
    """The generated group lookup reads typed records and turns their values into keys itself: on records
    holding floats, bools, lists, None, IPv6 and bad addresses in the grouped fields, and rules that expand
    ranges and blocks and merge equal numbers into ranges, it must raise the alerts of a plain loop."""
    from ids.detect.rules.detector import _fast
    from ids.detect.rules.groups import FALLBACK
    rnd = random.Random(seed)
    modbus = [e for e in events if e.dataset == "otids.modbus"]
    c = _compile(_odd_rules(modbus, rnd, 200) + [{"id": f"s{i}", "title": "s", "description": "s", "severity": "low",
                                                   "protocol": "modbus", "match": m}
                                                  for i, m in enumerate(site_matches(200, modbus, seed))])
    pi = c.index["otids.modbus"]
    assert pi.groups.stats()["grouped"] > 200, pi.groups.stats()
    odd = _odd_records(modbus, rnd, 2000)
    look = pi.group_lookup(type(modbus[0]), _fast(type(modbus[0])))
    got = [look(ev) for ev in odd]
    assert any(r is FALLBACK for r in got) and any(r not in (None, FALLBACK) for r in got)
    assert _differential(c, modbus + odd, []) > 0


def test_groups_crowded_keys_and_the_rest_of_the_tree_agree(events, monkeypatch):
    """One group only, and keys shared by two rules left to the tree: events meet candidates from both the
    groups and the tree, merged in load order, with the alerts of a plain loop."""
    from ids.detect.rules import groups as groups_mod
    monkeypatch.setattr(groups_mod, "MAX_GROUPS", 1)
    monkeypatch.setattr(groups_mod, "MAX_SHARED", 1)
    rnd = random.Random(7)
    modbus = [e for e in events if e.dataset == "otids.modbus"]
    c = _compile(_odd_rules(modbus, rnd, 200))
    pi = c.index["otids.modbus"]
    assert len(pi.groups.groups) == 1 and pi.groups.rest and pi.groups.stats()["grouped"]
    assert _differential(c, modbus + _odd_records(modbus, rnd, 1000), []) > 0


def test_site_shaped_rules_are_grouped_and_seldom_met(events):
    """5,000 site-shaped rules all land in a few exact-key groups; the capture's exchanges meet a candidate
    only where a rule copies them (the engine then needs no view or document for the others), and the
    alerts are those of a plain loop over all 5,000."""
    from ids.detect.rules.detector import _fast
    modbus = [e for e in events if e.dataset == "otids.modbus"]
    c = compile_rules(site_ruleset(site_matches(5000, modbus, seed=3)), SiteLists())
    pi = c.index["otids.modbus"]
    st = pi.stats()
    assert st["grouped"] == 5000 and st["groups"] <= 4 and st["wildcard"] == 0, st
    look = pi.group_lookup(type(modbus[0]), _fast(type(modbus[0])))
    met = sum(1 for ev in modbus if look(ev))
    assert met <= len(modbus) // 10, (met, len(modbus))
    assert _differential(c, modbus[:300], []) > 0
