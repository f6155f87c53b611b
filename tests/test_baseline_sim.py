"""System tests on the plant simulator's captures (pcaps/sim/, made by `python -m sim record`, see
sim/README.md): learn on a clean period, enforce on a period with injected changes, where every injected
Modbus change must be alerted exactly once and nothing else alerted, and on a second clean period, where
nothing may be alerted. The OPC UA and MQTT changes are in tests/test_baseline_opcua_mqtt.py."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import PCAPS, ROOT, need, read_ndjson, run_cli
from ids.config import Config
from ids.detect.baseline import model
from ids.detect.baseline.cli import learn_paths
from ids.detect.baseline.enforcer import BaselineDetector
from ids.pipeline import analyze

SIM = PCAPS / "sim"
NS = 1_000_000_000
SLACK = 1 * NS  # an alert's time may trail its label by the response time of the request


def labels(name: str) -> list[dict]:
    with open(need(SIM / f"{name}.labels.csv"), encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> tuple[model.Baseline, Path]:
    b, learner, run = learn_paths([str(need(SIM / "clean1.pcap"))], Config())
    assert not run.errors and learner.events > 300
    path = tmp_path_factory.mktemp("bl") / "baseline.yaml"
    path.write_text(b.dump(), encoding="utf-8")
    return model.load(str(path)), path


def enforce(baseline, pcap: str):
    det = BaselineDetector(baseline, Config().baseline)
    run, col = analyze([str(need(SIM / pcap))], Config(), [det])
    assert not run.errors
    return col.alerts


def matches(alert, row) -> bool:
    f = alert.flow
    return (alert.rule_id == row["expected_rule"] and f is not None
            and {f.client_ip, f.server_ip} == {row["src"], row["dst"]}
            and int(row["start_ns"]) - SLACK <= alert.ts <= int(row["end_ns"]) + SLACK)


def test_learned_baseline_describes_the_plant(learned):
    b, _ = learned
    run = yaml.safe_load((SIM / "clean1.run.yaml").read_text())
    modbus_hosts = {h["ip"] for h in run["hosts"] if h["role"].startswith("modbus")}
    assert set(b.section("assets")) == modbus_hosts  # OPC UA and MQTT join when their dissectors do
    for h in run["hosts"]:
        if h["role"].startswith("modbus"):
            assert b.section("assets")[h["ip"]]["roles"] == [h["role"]]
    plant = yaml.safe_load((ROOT / "sim" / "plant.yaml").read_text())
    plcs = {p["name"]: p for p in plant["modbus"]["plcs"]}
    for hmi in plant["modbus"]["hmis"]:
        for p in hmi["polls"]:
            plc = plcs[p["plc"]]
            e = b.section("modbus")[f"{hmi['ip']}|{plc['ip']}|{plc['unit']}"]
            polls = {(x["function"], x["address"]): x for x in e["polls"]}
            assert polls[(p["function"], p["address"])]["period"] == pytest.approx(p["period"], rel=0.01)
        for w in hmi["writes"]:
            plc = plcs[w["plc"]]
            e = b.section("modbus")[f"{hmi['ip']}|{plc['ip']}|{plc['unit']}"]
            for i in range(w["count"]):
                band = e["values"]["holding_registers"][w["address"] + i]["band"]
                assert band[0] <= w["min"] and band[1] >= w["max"], (band, w)
    ident = b.section("assets")[plcs["plc1"]["ip"]]["identity"]["modbus"][1]
    assert ident["vendor_name"] == "Acme Automation" and ident["major_minor_revision"] == "2.4.1"


def test_every_injected_modbus_change_alerted_exactly_once(learned):
    alerts = enforce(learned[0], "changes.pcap")
    rows = [r for r in labels("changes") if r["protocol"] == "modbus"]
    assert {r["change"] for r in rows} == {"new_master", "new_register_write", "out_of_band_value",
                                           "poll_period_change"}
    for r in rows:
        got = [a for a in alerts if matches(a, r)]
        assert len(got) == 1, (r["change"], [a.reason for a in alerts])
    unexplained = [a.reason for a in alerts if not any(matches(a, r) for r in rows)]
    assert unexplained == []
    by = {a.rule_id: a for a in alerts}
    assert by["otids.baseline.modbus.value_out_of_band"].extra["baseline"]["seen"] == "holding register 20 = 95"
    assert by["otids.baseline.modbus.address_out_of_range"].count == 3  # the three writes, one alert
    assert by["otids.baseline.new_asset"].count == 8  # eight polls by the new master


def test_second_clean_period_raises_nothing(learned):
    assert [a.reason for a in enforce(learned[0], "clean2.pcap")] == []


def test_learning_period_enforces_itself_quietly(learned):
    assert [a.reason for a in enforce(learned[0], "clean1.pcap")] == []


# ---------------------------------------------------------------------------------------------- CLI

def test_learn_twice_gives_identical_files_and_matches_the_committed_example(tmp_path):
    pcap = str(need(SIM / "clean1.pcap"))
    run_cli("learn", pcap, "-o", str(tmp_path / "a.yaml"), "-q")
    run_cli("learn", pcap, "-o", str(tmp_path / "b.yaml"), "-q")
    a = (tmp_path / "a.yaml").read_bytes()
    assert a == (tmp_path / "b.yaml").read_bytes()
    example = need(ROOT / "models" / "sim-baseline.yaml").read_bytes()
    assert a == example, "models/sim-baseline.yaml is stale: otids learn pcaps/sim/clean1.pcap -o models/sim-baseline.yaml"


def test_relearn_keeps_comments_status_and_notes(tmp_path):
    pcap = str(need(SIM / "clean1.pcap"))
    out = tmp_path / "b.yaml"
    run_cli("learn", pcap, "-o", str(out), "-q")
    text = out.read_text()
    text = text.replace("  - ip: 127.0.0.11\n    status: learned\n",
                        "  # boiler feed PLC, replaced 2026-10\n  - ip: 127.0.0.11\n    status: approved\n"
                        "    note: checked against the cabinet drawing\n")
    text = text.replace("  - master: 127.0.0.3\n    slave: 127.0.0.12\n    unit: 1\n    status: learned\n",
                        "  - master: 127.0.0.3\n    slave: 127.0.0.12\n    unit: 1\n    status: denied  # not ours\n")
    out.write_text(text)
    p = run_cli("learn", pcap, "-o", str(out))
    assert "re-learned: 2 reviewed entries kept" in p.stdout
    assert out.read_text() == text  # same traffic: nothing but the review may differ, and it is kept
    p = run_cli("learn", str(need(SIM / "clean2.pcap")), "-o", str(out))  # other traffic, same plant
    new = out.read_text()
    assert "  # boiler feed PLC, replaced 2026-10\n  - ip: 127.0.0.11\n    status: approved\n" in new
    assert "    note: checked against the cabinet drawing\n" in new
    assert "    status: denied  # not ours\n" in new
    assert "clean2.pcap" in new and "clean1.pcap" not in new


def test_diff_and_check(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    run_cli("learn", str(need(SIM / "clean1.pcap")), "-o", str(a), "-q")
    run_cli("learn", str(need(SIM / "changes.pcap")), "-o", str(b), "-q")
    p = run_cli("baseline", "diff", str(a), str(a), check_rc=0)
    assert p.stdout.strip() == "no differences"
    p = run_cli("baseline", "diff", str(a), str(b), "--ignore-counts", check_rc=1)
    out = p.stdout.splitlines()
    assert "+ asset 127.0.0.66" in [ln.split(" (")[0] for ln in out]
    assert "+ modbus 127.0.0.66 -> 127.0.0.12 unit 1" in [ln.split(" (")[0] for ln in out]
    assert "    writes.holding_registers: +50" in out
    p = run_cli("baseline", "diff", str(a), str(b), "--json", check_rc=1)
    assert {c["op"] for c in json.loads(p.stdout)} == {"added", "changed"}
    p = run_cli("baseline", "check", str(a))
    assert p.stdout.startswith(f"{a}: ok: 5 assets, 4 talkers, 4 modbus")
    a.write_text(a.read_text().replace("      holding_registers: [0-9]", "      holding_registers: [9-0]", 1))
    p = run_cli("baseline", "check", str(a), check_rc=2)
    line = next(i for i, ln in enumerate(a.read_text().splitlines(), 1) if "[9-0]" in ln)
    assert p.stderr.startswith(f"otids: error: {a}:{line}:") and "bad address range '9-0'" in p.stderr


def test_analyze_with_baseline_cli(tmp_path):
    bl = tmp_path / "b.yaml"
    run_cli("learn", str(need(SIM / "clean1.pcap")), "-o", str(bl), "-q")
    out = tmp_path / "alerts.ndjson"
    run_cli("analyze", str(need(SIM / "changes.pcap")), "--baseline", str(bl), "-o", str(out), "-q")
    docs = [d for d in read_ndjson(out) if d["rule"]["category"] == "baseline"]
    assert sorted(d["rule"]["id"] for d in docs) == [
        "otids.baseline.modbus.address_out_of_range", "otids.baseline.modbus.poll_period_changed",
        "otids.baseline.modbus.value_out_of_band", "otids.baseline.new_asset"]
    fields = {f["name"] for f in yaml.safe_load((ROOT / "ids/data/fields/baseline.yml").read_text())["fields"]}
    for d in docs:
        assert d["event"]["kind"] == "alert" and "expected" in d["event"]["reason"]
        for k in d["otids"]["alert"]["baseline"]:
            assert f"otids.alert.baseline.{k}" in fields
    p = run_cli("analyze", str(need(SIM / "clean2.pcap")), "--baseline", str(tmp_path / "missing.yaml"),
                "-o", str(out), "-q", check_rc=2)
    assert "missing.yaml: no such baseline file" in p.stderr


def test_analyze_learn_then_enforce_cli(tmp_path):
    """One continuous run: the clean period learned (its first 90 s), then the changes enforced."""
    bl, out = tmp_path / "b.yaml", tmp_path / "alerts.ndjson"
    run_cli("analyze", str(need(SIM / "clean1.pcap")), str(need(SIM / "changes.pcap")), "--baseline", str(bl),
            "--baseline-learn", "100", "-o", str(out), "-q")
    assert model.load(str(bl)).section("modbus")
    ids = sorted(d["rule"]["id"] for d in read_ndjson(out) if d["rule"]["category"] == "baseline")
    assert ids == ["otids.baseline.modbus.address_out_of_range", "otids.baseline.modbus.poll_period_changed",
                   "otids.baseline.modbus.value_out_of_band", "otids.baseline.new_asset"]


def test_learn_refuses_to_overwrite_a_broken_baseline(tmp_path):
    out = tmp_path / "b.yaml"
    out.write_text("version: 1\nassets:\n  - ip: 10.0.0.1\n    status: aproved\n")
    before = out.read_text()
    p = run_cli("learn", str(need(SIM / "clean1.pcap")), "-o", str(out), check_rc=2)
    assert p.stderr.strip() == (f"otids: error: {out}:4:5: status must be one of approved, denied, learned "
                                f"(got 'aproved')")
    assert out.read_text() == before
