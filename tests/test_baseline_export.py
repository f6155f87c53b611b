"""`otids baseline export-rules`: the simulated plant's baseline, approved in a temporary copy, exported as
allow-list rules that lint clean, pass their own generated cases, stay quiet on a second clean period and
fire once for each injected change a stateless rule can express (not the polling-period change)."""
from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT, read_ndjson, run_cli

SIM = ROOT / "pcaps" / "sim"
BASELINE = ROOT / "models" / "sim-baseline.yaml"

#: injected change (pcaps/sim/changes.labels.csv) -> the exported rule that must report it
EXPECTED = {
    "new_master": "baseline.talkers.modbus.unapproved_pair",
    "new_topic": "baseline.mqtt.127.0.0.51.127.0.0.31.topics",
    "new_register_write": "baseline.modbus.127.0.0.2.127.0.0.11.u1.ranges",
    "new_node_write": "baseline.opcua.127.0.0.4.127.0.0.21.nodes_written",
    "out_of_band_value": "baseline.modbus.127.0.0.2.127.0.0.11.u1.values",
    # poll_period_change: a period is a relation between events; no rule over one event can say it
}


def _review(tmp_path: Path, status: str = "approved", deny: str | None = None) -> Path:
    text = BASELINE.read_text(encoding="utf-8").replace("status: learned", f"status: {status}")
    if deny:  # deny one entry: the line after its identity lines
        text = text.replace(deny + "\n    status: approved", deny + "\n    status: denied", 1)
    p = tmp_path / "sim-baseline.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _export(tmp_path: Path, baseline: Path, name: str = "exported.yml") -> tuple[Path, str]:
    out = tmp_path / name
    p = run_cli("baseline", "export-rules", str(baseline), "-o", str(out))
    return out, p.stderr


def _rule_alerts(tmp_path: Path, rules: Path, pcap: str) -> list[dict]:
    out = tmp_path / f"{pcap}.alerts.ndjson"
    run_cli("analyze", str(SIM / f"{pcap}.pcap"), "--rules", str(rules), "--no-auth", "-q", "-o", str(out))
    return [a for a in read_ndjson(out) if a["rule"]["id"].startswith("baseline.")]


def test_export_lints_tests_and_enforces_the_approved_sim_baseline(tmp_path):
    rules, err = _export(tmp_path, _review(tmp_path))
    assert "28 rules" in err and "skipped (learned, not reviewed) none" in err, err
    lint = run_cli("rules", "lint", "--strict", str(rules))
    assert "28 rules in 1 file(s): 0 error(s), 0 warning(s)" in lint.stderr, lint.stdout + lint.stderr
    t = run_cli("rules", "test", str(rules))
    assert "56 passed, 0 failed, 0 rule(s) without tests" in t.stderr, t.stdout + t.stderr

    assert _rule_alerts(tmp_path, rules, "clean2") == []
    alerts = _rule_alerts(tmp_path, rules, "changes")
    assert sorted(a["rule"]["id"] for a in alerts) == sorted(EXPECTED.values())
    by_rule = {a["rule"]["id"]: a for a in alerts}
    assert by_rule[EXPECTED["new_master"]]["source"]["ip"] == "127.0.0.66"
    assert by_rule[EXPECTED["new_register_write"]]["modbus"]["request"]["address"] == 50
    assert by_rule[EXPECTED["out_of_band_value"]]["modbus"]["request"]["values"] == [95]
    assert by_rule[EXPECTED["new_topic"]]["mqtt"]["publish"]["topic"] == "plant/line1/debug"


def test_export_is_deterministic_and_says_where_each_rule_came_from(tmp_path):
    b = _review(tmp_path)
    a, _ = _export(tmp_path, b, "a.yml")
    c, _ = _export(tmp_path, b, "c.yml")
    text = a.read_text(encoding="utf-8")
    assert text == c.read_text(encoding="utf-8")
    assert "# Baseline sha256 " in text and "learned from clean1.pcap" in text
    assert "# modbus 127.0.0.2 -> 127.0.0.11 unit 1: approved in baseline sim-baseline.yaml; learned from 183 " \
           "transactions" in text
    assert "# approved ranges: writes of holding_registers (FC 6, 16): 20" not in text  # FC 16 is not approved there
    assert "# approved ranges: writes of holding_registers (FC 6): 20" in text
    assert "&id" not in text and "*id" not in text


def test_learned_entries_are_skipped_and_counted(tmp_path):
    p = tmp_path / "learned.yaml"
    p.write_text(BASELINE.read_text(encoding="utf-8"), encoding="utf-8")
    rules, err = _export(tmp_path, p)
    assert re.search(r"0 rules: approved none; denied none; skipped \(learned, not reviewed\) 11 assets, 8 talkers, "
                     r"4 modbus, 1 opcua, 3 mqtt", err), err
    assert rules.read_text(encoding="utf-8").rstrip().endswith("rules: []")
    lint = run_cli("rules", "lint", str(rules))
    assert "0 rules in 1 file(s): 0 error(s)" in lint.stderr


def test_denied_entry_always_alerts(tmp_path):
    b = _review(tmp_path, deny="  - master: 127.0.0.3\n    slave: 127.0.0.13\n    unit: 2")
    rules, err = _export(tmp_path, b)
    assert "denied 1 modbus" in err, err
    assert run_cli("rules", "test", str(rules)).returncode == 0
    alerts = _rule_alerts(tmp_path, rules, "clean2")
    assert [a["rule"]["id"] for a in alerts] == ["baseline.modbus.127.0.0.3.127.0.0.13.u2.denied"]


def test_a_broken_baseline_is_one_line_with_its_place(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BASELINE.read_text(encoding="utf-8").replace("status: learned", "status: maybe", 1),
                 encoding="utf-8")
    r = run_cli("baseline", "export-rules", str(p), check_rc=2)
    assert re.search(r"bad\.yaml:\d+:\d+: .*status must be one of", r.stderr), r.stderr
