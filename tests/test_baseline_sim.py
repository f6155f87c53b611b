"""System tests on the plant simulator's captures (pcaps/sim/, made by `python -m sim record`, see
sim/README.md): learn on a clean period, check that the baseline describes the plant (against the plant's
configuration and, independently of otids's dissectors, against tshark), enforce on a period with injected
changes (Modbus, OPC UA and MQTT), where every injected change must be alerted exactly once and nothing
else alerted, and on a second clean period, where nothing may be alerted."""
from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import PCAPS, ROOT, need, need_tool, read_ndjson, run_cli
from ids.config import Config
from ids.detect.baseline import document
from ids.commands.baseline import learn_paths
from ids.detect.baseline.enforcer import BaselineDetector
from ids.pipeline import analyze

SIM = PCAPS / "sim"
NS = 1_000_000_000
SLACK = 1 * NS  # an alert's time may trail its label by the response time of the request
CHANGES = {"new_master", "new_register_write", "out_of_band_value", "poll_period_change", "new_topic",
           "new_node_write"}
ALL_RULES = sorted(["otids.baseline.new_asset", "otids.baseline.modbus.address_out_of_range",
                    "otids.baseline.modbus.value_out_of_band", "otids.baseline.modbus.poll_period_changed",
                    "otids.baseline.mqtt.new_topic", "otids.baseline.opcua.new_node_written"])


def labels(name: str) -> list[dict]:
    with open(need(SIM / f"{name}.labels.csv"), encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def plant() -> dict:
    return yaml.safe_load((ROOT / "sim" / "plant.yaml").read_text())


def tshark(pcap: Path, display_filter: str, *fields: str) -> list[tuple[str, ...]]:
    need_tool("tshark")
    args = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [tuple(ln.split("\t")) for ln in out.splitlines()]


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> tuple[document.Baseline, Path]:
    b, learner, run = learn_paths([str(need(SIM / "clean1.pcap"))], Config())
    assert not run.errors and learner.events > 900
    path = tmp_path_factory.mktemp("bl") / "baseline.yaml"
    path.write_text(b.dump(), encoding="utf-8")
    return document.load(str(path)), path


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


# ---------------------------------------------------------------------------------------------- learning

def test_learned_assets_and_talkers_are_the_plant(learned):
    b, _ = learned
    run = yaml.safe_load((SIM / "clean1.run.yaml").read_text())
    assert {ip: e["roles"] for ip, e in b.section("assets").items()} == {h["ip"]: [h["role"]] for h in run["hosts"]}
    p = plant()
    plcs = {x["name"]: x for x in p["modbus"]["plcs"]}
    want = {}
    for hmi in p["modbus"]["hmis"]:
        for x in hmi["polls"] + hmi["writes"] + [{"plc": n} for n in hmi["identify"]]:
            want[(hmi["ip"], plcs[x["plc"]]["ip"], "modbus")] = [plcs[x["plc"]]["port"]]
    srv = p["opcua"]["server"]
    for c in p["opcua"]["clients"]:
        want[(c["ip"], srv["ip"], "opcua")] = [srv["port"]]
    broker = p["mqtt"]["broker"]
    for c in p["mqtt"]["publishers"] + p["mqtt"]["subscribers"]:
        want[(c["ip"], broker["ip"], "mqtt")] = [broker["port"]]
    assert {(e["client"], e["server"], e["protocol"]): e["ports"] for e in b.section("talkers").values()} == want
    # what the devices say about themselves
    assets = b.section("assets")
    ident = assets[plcs["plc1"]["ip"]]["identity"]["modbus"][1]
    assert ident["vendor_name"] == "Acme Automation" and ident["major_minor_revision"] == "2.4.1"
    assert assets[srv["ip"]]["identity"] == {"opcua_application_name": ["otids plant simulator"],
                                             "opcua_application_uri": [srv["application_uri"]],
                                             "opcua_product_uri": ["urn:freeopcua.github.io:python:server"]}
    for c in p["opcua"]["clients"]:
        assert assets[c["ip"]]["identity"] == {"opcua_application_name": [c["name"]],
                                               "opcua_application_uri": [c["application_uri"]],
                                               "opcua_product_uri": ["urn:freeopcua.github.io:client"]}
    for c in p["mqtt"]["publishers"] + p["mqtt"]["subscribers"]:
        assert assets[c["ip"]]["identity"] == {"mqtt_client_id": [c["client_id"]], "mqtt_username": [c["username"]]}
    assert "identity" not in assets[broker["ip"]]  # a broker does not describe itself in MQTT


def test_learned_modbus_entries(learned):
    b, _ = learned
    p = plant()
    plcs = {x["name"]: x for x in p["modbus"]["plcs"]}
    assert len(b.section("modbus")) == 4
    for hmi in p["modbus"]["hmis"]:
        for x in hmi["polls"]:
            plc = plcs[x["plc"]]
            e = b.section("modbus")[f"{hmi['ip']}|{plc['ip']}|{plc['unit']}"]
            polls = {(y["function"], y["address"]): y for y in e["polls"]}
            assert polls[(x["function"], x["address"])]["period"] == pytest.approx(x["period"], rel=0.01)
        for w in hmi["writes"]:
            plc = plcs[w["plc"]]
            e = b.section("modbus")[f"{hmi['ip']}|{plc['ip']}|{plc['unit']}"]
            for i in range(w["count"]):
                band = e["values"]["holding_registers"][w["address"] + i]["band"]
                assert band[0] <= w["min"] and band[1] >= w["max"], (band, w)


def test_learned_opcua_entry(learned):
    b, _ = learned
    p = plant()
    srv, (cl,) = p["opcua"]["server"], p["opcua"]["clients"]
    (e,) = b.section("opcua").values()
    assert (e["client"], e["server"]) == (cl["ip"], srv["ip"])
    assert e["security_policies"] == ["None"] and e["security_modes"] == ["None"]
    assert e["application_uris"] == [cl["application_uri"]]
    assert e["nodes_written"] == sorted(f"ns=2;s={w['node']}" for w in cl["writes"])
    assert "methods_called" not in e
    assert e["services"] == ["activatesession", "closesecurechannel", "closesession", "createsession", "hello",
                             "opensecurechannel", "read", "write"]


def test_learned_mqtt_entries(learned):
    b, _ = learned
    p = plant()
    broker = p["mqtt"]["broker"]["ip"]
    mq = b.section("mqtt")
    assert set(mq) == {f"{c['ip']}|{broker}" for c in p["mqtt"]["publishers"] + p["mqtt"]["subscribers"]}
    for c in p["mqtt"]["publishers"]:
        e = mq[f"{c['ip']}|{broker}"]
        assert e["client_ids"] == [c["client_id"]] and e["usernames"] == [c["username"]]
        assert set(e["publishes"]) == {t["topic"] for t in c["topics"]} and "subscribes" not in e
        for t in c["topics"]:
            got = e["publishes"][t["topic"]]
            assert got["qos"] == [t["qos"]] and got["period"] == pytest.approx(t["period"], rel=0.01)
    for c in p["mqtt"]["subscribers"]:
        e = mq[f"{c['ip']}|{broker}"]
        assert e["subscribes"] == {t["filter"]: {"qos": [t["qos"]]} for t in c["topics"]}
        assert "publishes" not in e  # it received 180 deliveries from the broker: not publishing


def test_learned_opcua_and_mqtt_facts_are_in_the_capture(learned):
    """The same facts read by tshark, independently of otids's dissectors: who published what with which
    QoS how often, who subscribed to what, CONNECT identities, OPC UA writes and application URIs."""
    b, _ = learned
    pcap = SIM / "clean1.pcap"
    broker = plant()["mqtt"]["broker"]["ip"]
    pubs = Counter(tshark(pcap, "mqtt.msgtype == 3", "ip.src", "mqtt.topic", "mqtt.qos"))
    ours = Counter()
    for e in b.section("mqtt").values():
        for topic, d in (e.get("publishes") or {}).items():
            (q,) = d["qos"]
            ours[(e["client"], topic, str(q))] = d["messages"]
    assert ours == {k: n for k, n in pubs.items() if k[0] != broker}  # deliveries come from the broker
    assert {(src, topic) for src, topic, _ in pubs if src == broker} == {
        ("127.0.0.31", t) for t in ("plant/line1/temperature", "plant/line1/vibration", "plant/tank/level")}
    subs = set(tshark(pcap, "mqtt.msgtype == 8", "ip.src", "mqtt.topic", "mqtt.sub.qos"))
    assert subs == {(e["client"], f, str(d["qos"][0])) for e in b.section("mqtt").values()
                    for f, d in (e.get("subscribes") or {}).items()}
    connects = set(tshark(pcap, "mqtt.msgtype == 1", "ip.src", "mqtt.clientid", "mqtt.username"))
    assert connects == {(e["client"], e["client_ids"][0], e["usernames"][0]) for e in b.section("mqtt").values()}
    writes = set(tshark(pcap, "opcua.servicenodeid.numeric == 673", "ip.src", "opcua.nodeid.string"))  # Write
    (e,) = b.section("opcua").values()
    assert writes == {(e["client"], n.split(";s=", 1)[1]) for n in e["nodes_written"]}
    uris = set(tshark(pcap, "opcua.servicenodeid.numeric == 461 || opcua.servicenodeid.numeric == 464",
                      "ip.src", "opcua.ApplicationUri"))  # CreateSession request and response
    assert uris == {(ip, a["identity"]["opcua_application_uri"][0]) for ip, a in b.section("assets").items()
                    if "opcua_application_uri" in a.get("identity", {})}


# ---------------------------------------------------------------------------------------------- enforcing

def test_every_injected_change_alerted_exactly_once(learned):
    alerts = enforce(learned[0], "changes.pcap")
    rows = labels("changes")
    assert {r["change"] for r in rows} == CHANGES and len(rows) == len(CHANGES)
    assert {r["protocol"] for r in rows} == {"modbus", "opcua", "mqtt"}
    for r in rows:
        got = [a for a in alerts if matches(a, r)]
        assert len(got) == 1, (r["change"], [a.reason for a in alerts])
    unexplained = [a.reason for a in alerts if not any(matches(a, r) for r in rows)]
    assert unexplained == []
    assert sorted(a.rule_id for a in alerts) == ALL_RULES
    by = {a.rule_id: a for a in alerts}
    assert by["otids.baseline.modbus.value_out_of_band"].extra["baseline"]["seen"] == "holding register 20 = 95"
    assert by["otids.baseline.modbus.address_out_of_range"].count == 3  # the three writes, one alert
    assert by["otids.baseline.new_asset"].count == 8  # eight polls by the new master
    topic = by["otids.baseline.mqtt.new_topic"]
    assert topic.extra["baseline"]["seen"] == "publish to plant/line1/debug" and topic.count == 3
    # the broker delivered the three messages to the historian too (tests/test_sim.py checks the capture):
    # that is not the historian publishing, so the one alert names the publisher
    assert (topic.flow.client_ip, topic.flow.server_ip) == ("127.0.0.51", "127.0.0.31")
    node = by["otids.baseline.opcua.new_node_written"]
    assert node.extra["baseline"]["seen"] == "write to ns=2;s=Line1.MotorEnable" and node.count == 1


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
    i = out.index("~ opcua 127.0.0.4 -> 127.0.0.21")
    assert out[i + 1:i + 2] == ["    nodes_written: +ns=2;s=Line1.MotorEnable"]
    i = out.index("~ mqtt 127.0.0.51 -> 127.0.0.31")
    assert out[i + 1:i + 2] == ["    publishes.plant/line1/debug: added {qos: [0]}"]
    p = run_cli("baseline", "diff", str(a), str(b), "--json", check_rc=1)
    assert {c["op"] for c in json.loads(p.stdout)} == {"added", "changed"}
    p = run_cli("baseline", "check", str(a))
    assert p.stdout == (f"{a}: ok: 11 assets, 8 talkers, 4 modbus, 1 opcua, 3 mqtt, 1 namespace, 11 network; "
                        f"0 approved, 0 denied, 39 learned\n")  # the namespace (#14) and network (#21) sections
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
    assert sorted(d["rule"]["id"] for d in docs) == ALL_RULES
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
    b = document.load(str(bl))
    assert b.section("modbus") and b.section("opcua") and b.section("mqtt")
    ids = sorted(d["rule"]["id"] for d in read_ndjson(out) if d["rule"]["category"] == "baseline")
    assert ids == ALL_RULES


def test_learn_refuses_to_overwrite_a_broken_baseline(tmp_path):
    out = tmp_path / "b.yaml"
    out.write_text("version: 1\nassets:\n  - ip: 10.0.0.1\n    status: aproved\n")
    before = out.read_text()
    p = run_cli("learn", str(need(SIM / "clean1.pcap")), "-o", str(out), check_rc=2)
    assert p.stderr.strip() == (f"otids: error: {out}:4:5: status must be one of approved, denied, learned "
                                f"(got 'aproved')")
    assert out.read_text() == before
