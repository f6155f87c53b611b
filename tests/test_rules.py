"""Signature rules: language and loader (positions), validators, compiler, index, thresholds,
suppressions, reload, the shipped ruleset and the `otids rules` / `analyze --rules` commands."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import PCAPS, ROOT, read_ndjson, run_cli
from ids.detect.rules.compile import MISSING, DocView, resolve
from ids.detect.rules.detector import RulesDetector, compile_rules, load_ruleset
from ids.detect.rules.loader import load_lists, load_yaml_file
from ids.detect.rules.rule import Issue, SiteLists
from ids.errors import SourceLocation
from ids.pipeline import analyze

NS = 1_000_000_000
HEAD = "  - id: {id}\n    title: t\n    description: d\n    severity: low\n    protocol: {proto}\n"


def ruleset(text: str, lists: dict | None = None, path: str = "t.yml"):
    rs = load_yaml_file(path, text)
    return compile_rules(rs, SiteLists(lists=lists or {}))


def one_rule(match: str, proto: str = "modbus", lists=None, extra: str = ""):
    c = ruleset("rules:\n" + HEAD.format(id="r1", proto=proto) + "    match: " + match + "\n" + extra, lists)
    errs = [str(i) for i in c.errors]
    assert not errs, errs
    return RulesDetector(c)


def doc(proto="modbus", **fields):
    d = {"event": {"dataset": f"otids.{proto}"}}
    for k, v in fields.items():
        cur = d
        parts = k.split("__")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return d


def fires(det, d, ts=NS) -> int:
    return len(det.on_doc(d, ts) or [])


# ---------------------------------------------------------------------------------------------- loader

BROKEN = """\
rules:
  - id: bad.one
    title: Broken on purpose
    description: several problems at once
    severity: urgent
    protocol: modbus
    colour: red
    match:
      modbus.functon_code: 5
      source.ip: 10.0.0.0/33
      modbus.unit_id: {range: [10, 2]}
      modbus.exception: {regex: "(unclosed"}
    attack: [T9999]
  - id: bad.two
    title: t
    description: d
    severity: low
    protocol: modbus
    match:
      modbus.function_code: 300
      destination.ip: {not: $nowhere}
  - id: bad.two
    title: t
    description: d
    severity: low
    protocol: modbus
    match:
      modbus.unit_id: "one"
"""


def test_broken_file_reports_every_error_with_position(tmp_path):
    p = tmp_path / "broken.yml"
    p.write_text(BROKEN)
    path = str(p)
    c = load_ruleset([path], None)
    errs = {(i.code, i.source.line, i.source.col) for i in c.errors}
    assert ("value", 5, 15) in errs  # severity: urgent
    assert ("unknown-key", 7, 5) in errs  # colour
    assert ("bad-regex", 12, 33) in errs
    assert Issue("error", "value", "'severity' must be one of low, medium, high, critical (got 'urgent')",
                 SourceLocation(path, 5, 15), "bad.one") in c.errors
    # bad.one fails in loading; the others load and their meaning is checked
    assert Issue("error", "never-matches", "'modbus.function_code' is always within 0-127; 300 can never occur",
                 SourceLocation(path, 20, 7), "bad.two") in c.errors
    assert ("duplicate-id", 22, 5) in errs
    assert ("type", 28, 7) in errs  # unit_id compared with text
    # without a lists file the rule is disabled (a warning, as `analyze --rules` decides it)
    assert ("needs-lists", 21, 29) in {(i.code, i.source.line, i.source.col) for i in c.issues}
    r = run_cli("rules", "lint", path, check_rc=1)
    for line, col in ((5, 15), (7, 5), (12, 33), (20, 7), (22, 5), (28, 7)):
        assert f"{path}:{line}:{col}: error:" in r.stdout, (line, col, r.stdout)
    # without a lists file, lint cannot know the site's lists: a warning, an error once one is given
    assert f"{path}:21:29: warning: list $nowhere is not defined" in r.stdout


def test_meaning_errors_on_a_loadable_rule():
    c = ruleset("rules:\n" + HEAD.format(id="m", proto="modbus") + """\
    match:
      modbus.functon_code: 5
      source.ip: 10.0.0.0/33
      modbus.unit_id: {range: [10, 2]}
      modbus.function: {gt: 3}
    attack: [T9999]
""")
    got = {(i.code, i.source.line) for i in c.errors}
    assert got == {("unknown-field", 8), ("type", 9), ("never-matches", 10), ("type", 11), ("unknown-technique", 2)}
    assert not c.rules  # a rule with errors never runs


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    p = tmp_path / "x.yml"
    p.write_text("rules:\n  - id: a\n    match: {a: [1, 2}\n")
    c = load_ruleset([str(p)], None)
    assert len(c.errors) == 1 and c.errors[0].code == "yaml"
    assert (c.errors[0].source.line, c.errors[0].source.col) == (3, 21)


def test_contradictions_and_incompatible_keys():
    c = ruleset("rules:\n" + HEAD.format(id="x", proto="modbus") + """\
    match:
      modbus.function_code: 3
      modbus.function: read_coils
""")
    assert [i.code for i in c.errors] == ["never-matches"]
    c = ruleset("rules:\n" + HEAD.format(id="y", proto="modbus") + """\
    match:
      modbus.unit_id: 1
      all:
        - modbus.unit_id: 2
""")
    assert c.rules  # different All nodes: not flagged here, but never-matches on exists/value below
    c = ruleset("rules:\n" + HEAD.format(id="z", proto="modbus") + """\
    match:
      modbus.exception_code: {exists: false, equals: 2}
""")
    assert [i.code for i in c.errors] == ["never-matches"]


def test_shipped_rules_lint_clean_and_tests_pass():
    r = run_cli("rules", "lint", "rules/")
    assert "0 error(s), 18 warning(s)" in r.stderr  # rules that need site lists: disabled without --lists
    r = run_cli("rules", "lint", "rules/", "--lists", "rules/lists.example.yml", "--strict")
    assert "0 error(s), 0 warning(s); 21 would run" in r.stderr
    r = run_cli("rules", "test", "rules/")
    assert ", 0 failed, 0 rule(s) without tests" in r.stderr
    passed = int(r.stderr.split()[0])
    assert passed >= 75  # three shipped rules left for the built-in detectors they duplicated (#20 item 9)


def test_every_shipped_rule_has_firing_and_quiet_cases():
    for f in ("modbus.yml", "opcua.yml", "mqtt.yml"):
        rs = load_yaml_file(str(ROOT / "rules" / f))
        assert not rs.issues and rs.rules
        for r in rs.rules:
            fire = [c for c in r.tests if c.alerts]
            quiet = [c for c in r.tests if not c.alerts]
            assert fire and quiet, r.id
            assert r.attack, r.id


def test_a_failing_case_is_reported(tmp_path):
    p = tmp_path / "r.yml"
    p.write_text("rules:\n" + HEAD.format(id="c", proto="modbus") + """\
    match: {modbus.function_code: 6}
    tests:
      - match: {modbus.function_code: 5}
      - no_match: {modbus.function_code: 5}
""")
    r = run_cli("rules", "test", str(p), check_rc=1)
    assert f"FAIL {p}:9:9: c: must match (1 event(s)): 0 alert(s), expected 1" in r.stdout


# ---------------------------------------------------------------------------------------------- operators

def test_operators():
    d = doc(modbus__function_code=16, modbus__unit_id=7, source__ip="10.1.2.3", source__port=40000,
            modbus__function="write_multiple_registers", modbus__request={"address": 100, "values": [1, 0, 65535]})
    cases = {
        "{modbus.unit_id: 7}": 1, "{modbus.unit_id: 8}": 0, "{modbus.unit_id: [1, 7]}": 1,
        "{modbus.unit_id: {not: 7}}": 0, "{modbus.unit_id: {not: {in: [1, 2]}}}": 1,
        "{modbus.unit_id: {gt: 6, lte: 7}}": 1, "{modbus.unit_id: {lt: 7}}": 0,
        "{modbus.unit_id: {range: '7..9'}}": 1, "{modbus.unit_id: {range: [8, 9]}}": 0,
        "{source.ip: 10.1.0.0/16}": 1, "{source.ip: {cidr: 10.2.0.0/16}}": 0,
        "{source.ip: {range: [10.1.2.1, 10.1.2.3]}}": 1, "{source.ip: 10.1.2.1-10.1.2.2}": 0,
        "{source.ip: $ews}": 1, "{source.ip: {not: $ews}}": 0,
        "{modbus.function: {regex: '^write_'}}": 1, "{modbus.function: {regex: '^WRITE', nocase: true}}": 1,
        "{modbus.function: {startswith: write}}": 1, "{modbus.function: {endswith: coils}}": 0,
        "{modbus.function: {contains: multiple}}": 1, "{modbus.function: {equals: WRITE_MULTIPLE_REGISTERS, nocase: true}}": 1,
        "{modbus.request.values: {contains: 65535}}": 1, "{modbus.request.values: {contains: 2}}": 0,
        "{modbus.request.values: {gt: 60000}}": 1, "{modbus.request.values: {not: {gt: 0}}}": 0,
        "{modbus.exception_code: {exists: false}}": 1, "{modbus.request.address: {exists: true}}": 1,
        "{any: [{modbus.unit_id: 1}, {source.port: 40000}]}": 1, "{not: {modbus.unit_id: 7}}": 0,
    }
    for m, n in cases.items():
        det = one_rule(m, lists={"ews": ["10.1.2.0/24", "192.168.0.1"]})
        assert fires(det, d) == n, m


def test_lists_of_objects_flatten_and_topic_filters():
    d = doc("mqtt", mqtt__types=["subscribe", "suback"],
            mqtt__subscribe={"topics": [{"topic": "a/b", "qos": 0}, {"topic": "$SYS/broker/load", "qos": 1}]})
    assert fires(one_rule("{mqtt.subscribe.topics.topic: $SYS/broker/load}", "mqtt"), d) == 1
    assert fires(one_rule("{mqtt.subscribe.topics.qos: 2}", "mqtt"), d) == 0
    assert fires(one_rule("{mqtt.subscribe.topics.topic: {topic: 'a/+'}}", "mqtt"), d) == 1
    assert fires(one_rule("{mqtt.subscribe.topics.topic: {topic: '#'}}", "mqtt"), d) == 1  # a/b; not $SYS
    d2 = doc("mqtt", mqtt__types=["subscribe"], mqtt__subscribe={"topics": [{"topic": "$SYS/x"}]})
    assert fires(one_rule("{mqtt.subscribe.topics.topic: {topic: '#'}}", "mqtt"), d2) == 0  # MQTT 4.7.2
    assert fires(one_rule("{mqtt.subscribe.topics.topic: {topic: '$SYS/#'}}", "mqtt"), d2) == 1


def test_resolve_paths():
    d = {"a": {"b": [{"c": 1}, {"c": [2, 3]}, {"d": 4}], "e": []}}
    assert resolve(d, ["a", "b", "c"]) == [1, 2, 3]
    assert resolve(d, ["a", "e"]) is MISSING
    assert resolve(d, ["a", "x"]) is MISSING


# ---------------------------------------------------------------------------------------------- index

def _nodoc_event(fc: int):
    """A real Modbus event whose document must never be built."""
    from ids.events import FlowContext
    from ids.protocols.modbus.messages import ModbusRequest, ModbusTransaction

    class NoDoc(ModbusTransaction):
        def to_doc(self):
            raise AssertionError("document built for an event no rule can match")
    flow = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 502, None, None, False)
    return NoDoc(NS, flow, 1, 1, fc, "x", ModbusRequest(address=0, quantity=1), None, None, None, (), None)


def test_index_skips_rules_that_cannot_apply():
    text = "rules:\n"
    for i in range(200):
        text += HEAD.format(id=f"r{i}", proto="modbus") + f"    match: {{modbus.function_code: {30 + i % 90}}}\n"
    for i in range(50):
        text += HEAD.format(id=f"o{i}", proto="opcua") + f"    match: {{opcua.service: S{i}}}\n"
    c = ruleset(text)
    assert len(c.rules) == 250
    pi = c.index["otids.modbus"]
    assert len(pi.candidates(3)) == 0 and len(pi.candidates(30)) == 3
    det = RulesDetector(c)
    assert det.on_event(_nodoc_event(3)) is None  # no candidate: no document, no test
    assert len(det.on_event(_nodoc_event(30))) == 3  # r0, r90, r180 fire, its fields read from the record, no document
    # a wildcard rule (no function code) is a candidate for every code
    c2 = ruleset(text + HEAD.format(id="w", proto="modbus") + "    match: {modbus.unit_id: 0}\n")
    assert [r.rule.id for r in c2.index["otids.modbus"].candidates(3)] == ["w"]


def test_mqtt_index_uses_every_type_of_the_exchange():
    c = ruleset("rules:\n" + HEAD.format(id="m", proto="mqtt") +
                "    match: {mqtt.types: suback, mqtt.subscribe.topics.topic: x}\n")
    pi = c.index["otids.mqtt"]
    assert pi.candidates(["subscribe", "suback"]) and not pi.candidates(["publish"])


def test_fast_paths_agree_with_documents():
    from ids.detect.rules.fastpath import FAST
    pcaps = [PCAPS / "modbus-demo.pcap", PCAPS / "rules-modbus.pcap", PCAPS / "opcua-none-anonymous.pcap",
             PCAPS / "opcua-sign.pcap"]
    _, col = analyze([str(p) for p in pcaps], detectors=[])
    n = 0
    for ev in col.events:
        fast = FAST.get(type(ev))
        if not fast:
            continue
        d = ev.to_doc()
        for path, f in fast.items():
            assert f(ev) == resolve(d, path.split(".")), (path, ev)
            n += 1
    assert n > 500


# ---------------------------------------------------------------------------------------------- thresholds

@pytest.mark.parametrize("ttype,expect", [("threshold", [5, 10]), ("limit", [1, 2, 3]), ("both", [5])])
def test_threshold_types(ttype, expect):
    det = one_rule("{modbus.exception_code: {exists: true}}",
                   extra=f"    threshold: {{count: {3 if ttype == 'limit' else 5}, window: 10s, type: {ttype}, "
                         "group_by: [source.ip]}\n")
    hits = []
    for i in range(12):  # 12 matches, 0.5 s apart: all within one 10 s window
        if fires(det, doc(modbus__exception_code=2, modbus__function_code=3, source__ip="10.0.0.9"),
                 NS + i * NS // 2):
            hits.append(i + 1)
    assert hits == expect


def test_threshold_groups_and_window():
    det = one_rule("{modbus.exception_code: {exists: true}}",
                   extra="    threshold: {count: 3, window: 2s, group_by: [source.ip]}\n")
    e = lambda ip: doc(modbus__exception_code=2, modbus__function_code=3, source__ip=ip)  # noqa: E731
    assert [fires(det, e("a" if i % 2 else "b"), NS + i * NS // 10) for i in range(6)] == [0, 0, 0, 0, 1, 1]
    det = one_rule("{modbus.exception_code: {exists: true}}",
                   extra="    threshold: {count: 3, window: 2s, group_by: [source.ip]}\n")
    # 1.5 s apart: never 3 within 2 s (the window includes both ends: 1, 2, 3 s would be 3 within 2 s)
    assert [fires(det, e("a"), NS + i * 3 * NS // 2) for i in range(5)] == [0, 0, 0, 0, 0]
    a = det.on_doc(e("a"), 7 * NS + NS // 2) or det.on_doc(e("a"), 7 * NS + NS // 2 + 1)
    assert a and a[0].count == 3 and a[0].to_doc()["otids"]["alert"]["threshold"]["group"] == {"source.ip": "a"}


# ---------------------------------------------------------------------------------------------- suppressions

def test_suppression_with_expiry(tmp_path):
    lp = tmp_path / "lists.yml"
    lp.write_text("lists: {ews: [10.0.0.5]}\nsuppressions:\n"
                  "  - rule: r1\n    match: {source.ip: 10.0.0.7}\n    expires: 2024-06-30\n    reason: commissioning\n")
    site, issues = load_lists(str(lp))
    assert not issues and site.suppressions[0].reason == "commissioning"
    rs = load_yaml_file("t.yml", "rules:\n" + HEAD.format(id="r1", proto="modbus") +
                        "    match: {modbus.function_code: 8}\n")
    det = RulesDetector(compile_rules(rs, site))
    june = 1719000000 * NS  # 2024-06-21
    july = 1720000000 * NS  # 2024-07-03
    e = lambda ip: doc(modbus__function_code=8, source__ip=ip)  # noqa: E731
    assert fires(det, e("10.0.0.7"), june) == 0
    assert fires(det, e("10.0.0.8"), june) == 1
    assert fires(det, e("10.0.0.7"), july) == 1  # expired: it fires again
    assert det.suppressed == 1
    r = run_cli("rules", "lint", str(tmp_path), "--lists", str(lp))
    assert "warning: suppression has expired" in r.stdout


def test_bad_lists_file(tmp_path):
    lp = tmp_path / "lists.yml"
    lp.write_text("lists:\n  ews: [10.0.0.5, not-an-ip]\n  Bad-Name: [1]\nsuppressions:\n  - match: {a: 1}\n")
    site, issues = load_lists(str(lp))
    assert {(i.code, i.source.line) for i in issues} == {("bad-list-name", 3), ("type", 5)}
    rs = load_yaml_file("t.yml", "rules:\n" + HEAD.format(id="r1", proto="modbus") +
                        "    match: {source.ip: $ews}\n")
    c = compile_rules(rs, site)
    assert [(i.code, i.source.path, i.source.line, i.source.col) for i in c.errors] == \
        [("bad-address", str(lp), 2, 19)]


# ---------------------------------------------------------------------------------------------- reload

def test_hot_reload_keeps_old_rules_when_broken(tmp_path):
    p = tmp_path / "r.yml"
    p.write_text("rules:\n" + HEAD.format(id="r1", proto="modbus") + "    match: {modbus.function_code: 8}\n")
    msgs = []
    det = RulesDetector(load_ruleset([str(tmp_path)], None), [str(tmp_path)], None, reload_s=0.01,
                        report=msgs.append)
    assert fires(det, doc(modbus__function_code=8)) == 1
    p.write_text("rules:\n" + HEAD.format(id="r1", proto="modbus") + "    match: {modbus.function_code: 6}\n")
    os.utime(p, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert det.check_reload() and det.reloads == 1
    assert fires(det, doc(modbus__function_code=8)) == 0 and fires(det, doc(modbus__function_code=6)) == 1
    p.write_text("rules:\n" + HEAD.format(id="r1", proto="modbus") + "    match: {modbus.function_cod: 5}\n")
    os.utime(p, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    assert not det.check_reload() and det.reload_failures == 1
    assert fires(det, doc(modbus__function_code=6)) == 1  # the previous rules still run
    assert any(f"{p}:7:13: error: field 'modbus.function_cod' does not exist" in m for m in msgs), msgs


# ---------------------------------------------------------------------------------------------- CLI

def test_analyze_with_rules(tmp_path):
    out = tmp_path / "a.ndjson"
    lists = tmp_path / "lists.yml"
    lists.write_text("lists: {engineering_workstations: [], hmi_hosts: [127.0.0.10], plc_hosts: [],\n"
                     "  opcua_clients: [], mqtt_wildcard_subscribers: [], mqtt_command_topics: [],\n"
                     "  mqtt_command_publishers: []}\n")
    run_cli("analyze", str(PCAPS / "modbus-demo.pcap"), "--rules", "rules/", "--lists", str(lists),
            "-o", str(out), "-q")
    alerts = [a for a in read_ndjson(out) if a["rule"]["category"] == "rules"]
    by = {}
    for a in alerts:
        by[a["rule"]["id"]] = by.get(a["rule"]["id"], 0) + 1
    assert by == {"otids.modbus.write_from_unauthorized_host": 6, "otids.modbus.diagnostics": 1,
                  "otids.modbus.device_identification": 3, "otids.modbus.function_code_scan": 1}
    w = next(a for a in alerts if a["rule"]["id"] == "otids.modbus.write_from_unauthorized_host")
    assert w["threat"]["technique"]["id"] == ["T0855", "T0836"]
    assert w["threat"]["tactic"]["name"] == ["Impair Process Control"]
    assert w["event"]["severity"] == 73 and w["otids"]["alert"]["rule_source"].startswith("rules/modbus.yml:")
    assert w["source"]["ip"] == "127.0.0.20" and w["modbus"]["function_code"] in (5, 6, 15, 16, 22, 23)


def test_analyze_with_broken_rules_is_one_line_per_error(tmp_path):
    """Broken rules are reported one line each and left out; nothing else here can load, so nothing runs."""
    p = tmp_path / "bad.yml"
    p.write_text(BROKEN)
    r = run_cli("analyze", str(PCAPS / "modbus-demo.pcap"), "--rules", str(p), "-o", str(tmp_path / "a"),
                check_rc=2)
    assert f"not loaded: {p}:5:15: error:" in r.stderr and "no rules loaded" in r.stderr


def test_dry_run_on_events_and_pcap(tmp_path):
    ev = tmp_path / "e.ndjson"
    run_cli("analyze", str(PCAPS / "modbus-demo.pcap"), "--events", str(ev), "-o", str(tmp_path / "a"), "-q")
    lists = tmp_path / "lists.yml"
    lists.write_text("lists: {engineering_workstations: [], hmi_hosts: [], plc_hosts: []}\n")
    for inp in (ev, PCAPS / "modbus-demo.pcap"):
        r = run_cli("rules", "dry-run", "rules/modbus.yml", str(inp), "--lists", str(lists), "--json")
        rows = {x["rule"]: x for x in json.loads(r.stdout)["rules"]}
        assert rows["otids.modbus.write_from_unauthorized_host"]["alerts"] == 6
        assert rows["otids.modbus.device_identification"]["alerts"] == 3
        assert rows["otids.modbus.broadcast_write"]["alerts"] == 0
        assert rows["otids.modbus.write_from_unauthorized_host"]["per_day"] > 6  # a few seconds of traffic
    r = run_cli("rules", "dry-run", "rules/modbus.yml", str(ev), "--lists", str(lists))
    assert "per day" in r.stdout and "otids.modbus.write_from_unauthorized_host" in r.stdout


def test_rules_bench_prints_figures():
    r = run_cli("rules", "bench", "--events", "2000", "--counts", "10,1000")
    assert "events/s" in r.stdout and "1000 (all apply)" in r.stdout


def test_located_yaml_values_are_safe_loads_and_nothing_is_retained():
    """The located loader's fast paths (plain strings, plain decimals) give what yaml.safe_load gives, YAML
    1.1 oddities included (010 is octal, 1_000 an int, yes a bool), and the shared scalar constructor keeps
    no node after a value: it used to remember every scalar of every rule file for the life of the process."""
    import yaml

    from ids.detect.rules import yamlsrc

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x
    for v in ("010", "0", "12", "-3", "0x1f", "1_000", "yes", "on", "2020-01-01", "1.5", ".inf", "~", "'010'",
              "\"7\"", "[1, 010, a]", "{a: 09}", "0o17", "190:20:30"):
        got = plain(yamlsrc.load_documents("t.yml", f"k: {v}\n")[0])["k"]
        want = yaml.safe_load(f"k: {v}\n")["k"]
        assert got == want and type(got) is type(want), (v, got, want)
    assert not yamlsrc._ctor.constructed_objects
