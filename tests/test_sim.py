"""The plant simulator: its configuration checks, the committed captures and their labels (checked with
tshark, independently of otids's dissectors), and one short real recording."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import PCAPS, ROOT, need, need_tool
from sim import config as simconfig

SIM = PCAPS / "sim"


def tshark(pcap, display_filter: str, *fields: str) -> list[list[str]]:
    need_tool("tshark")
    args = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [ln.split("\t") for ln in out.splitlines()]


# ---------------------------------------------------------------------------------------------- config

def _cfg():
    return simconfig.load()


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["modbus"]["hmis"][0].update(ip="127.0.0.1"), "must be a loopback address other than 127.0.0.1"),
    (lambda c: c["modbus"]["hmis"][0].update(ip="127.0.0.11"), "127.0.0.11 is already used by plc1"),
    (lambda c: c["modbus"]["hmis"][0]["polls"][0].update(plc="plc9"), "hmi1: unknown PLC 'plc9'"),
    (lambda c: c["changes"]["new_master"].update(kind="teleport"), "unknown kind 'teleport'"),
    (lambda c: c["changes"]["new_master"].update(ip="127.0.0.2"), "a new master needs an address never used"),
    (lambda c: c["changes"]["new_topic"].pop("at"), "'at' (seconds after start) is required"),
])
def test_config_errors(mutate, message):
    c = _cfg()
    mutate(c)
    with pytest.raises(simconfig.SimConfigError) as ei:
        simconfig.check(c, "plant.yaml")
    assert message in str(ei.value)


def test_cli_rejects_unknown_and_late_changes():
    for args, msg in ((["-i", "nope"], "unknown change 'nope'"),
                      (["-i", "poll_period_change", "-d", "30"], "starts at 52 s, after the end (30.0 s)")):
        p = subprocess.run([sys.executable, "-m", "sim", "record", "-o", "/tmp/x.pcap", *args], cwd=ROOT,
                           capture_output=True, text=True)
        assert p.returncode == 2 and msg in p.stderr, p.stderr


# ---------------------------------------------------------------------------------------------- committed captures

@pytest.mark.parametrize("name", ["clean1", "clean2", "changes"])
def test_captures_hold_the_plant_and_nothing_else(name):
    run = yaml.safe_load(need(SIM / f"{name}.run.yaml").read_text())
    with open(SIM / f"{name}.labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert run["pcap"] == f"{name}.pcap" and run["modbus_errors"] == 0
    assert run["tcpdump"] == "0 packets dropped by kernel"
    plant = {h["ip"] for h in run["hosts"]}
    injected = {r["src"] for r in rows} | {r["dst"] for r in rows}
    seen = {r[0] for r in tshark(SIM / f"{name}.pcap", "ip", "ip.src")}
    assert seen == plant | (injected - plant), (seen, plant)
    assert (SIM / f"{name}.pcap").stat().st_size < 400_000
    if name.startswith("clean"):
        assert rows == [] and run["injected"] == []


def test_change_labels_match_the_traffic():
    run = yaml.safe_load(need(SIM / "changes.run.yaml").read_text())
    with open(SIM / "changes.labels.csv", encoding="utf-8") as fh:
        rows = {r["change"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(run["injected"]) == set(_cfg()["changes"])
    for r in rows.values():
        assert int(r["start_ns"]) <= int(r["end_ns"])
        assert r["expected_rule"] == simconfig.CHANGE_KINDS[r["kind"]][1]
    pcap = SIM / "changes.pcap"

    def within(r, ts: str) -> bool:
        t = int(ts.replace(".", ""))  # frame.time_epoch has nanoseconds
        return int(r["start_ns"]) - 10**9 <= t <= int(r["end_ns"]) + 10**9

    pub = tshark(pcap, 'mqtt.topic == "plant/line1/debug"', "ip.src", "frame.time_epoch")
    assert sorted(p[0] for p in pub) == ["127.0.0.31"] * 3 + ["127.0.0.51"] * 3  # published, then delivered
    assert all(within(rows["new_topic"], p[1]) for p in pub)
    w = tshark(pcap, 'opcua.servicenodeid.numeric == 673 && opcua.nodeid.string == "Line1.MotorEnable"',
               "ip.src", "frame.time_epoch")
    assert [x[0] for x in w] == ["127.0.0.4"] and within(rows["new_node_write"], w[0][1])
    reg = tshark(pcap, "modbus.func_code == 6 && modbus.reference_num == 50 && tcp.dstport == 502",
                 "ip.src", "frame.time_epoch")
    assert [x[0] for x in reg] == ["127.0.0.2"] * 3 and all(within(rows["new_register_write"], x[1]) for x in reg)
    oob = tshark(pcap, "modbus.func_code == 6 && modbus.reference_num == 20 && tcp.dstport == 502",
                 "modbus.data", "frame.time_epoch")  # tshark 4.0 shows FC 6 request values as raw data
    bad = [x for x in oob if int(x[0], 16) == 95]
    assert len(bad) == 2 and all(within(rows["out_of_band_value"], x[1]) for x in bad)
    assert all(45 <= int(x[0], 16) <= 55 for x in oob if int(x[0], 16) != 95)
    for name in ("clean1", "clean2"):
        assert tshark(SIM / f"{name}.pcap", 'mqtt.topic == "plant/line1/debug" || opcua.nodeid.string == '
                                           '"Line1.MotorEnable" || modbus.reference_num == 50', "frame.number") == []


# ---------------------------------------------------------------------------------------------- recording

def test_short_recording(tmp_path):
    """A 6 s plant (one PLC and HMI, the OPC UA pair, an MQTT publisher and subscriber) with one change:
    the capture holds every protocol, and the label's time range covers the injected write."""
    if os.geteuid() != 0:
        pytest.fail("the simulator needs root (tcpdump, network namespace)")
    for tool in ("tcpdump", "mosquitto", "unshare"):
        if shutil.which(tool) is None:
            pytest.fail(f"the simulator needs {tool} (.ci/run installs it)")
    c = _cfg()
    c["modbus"]["plcs"] = c["modbus"]["plcs"][:1]
    hmi = c["modbus"]["hmis"][0]
    hmi.update(identify=["plc1"], polls=[p for p in hmi["polls"] if p["plc"] == "plc1"])
    c["modbus"]["hmis"] = [hmi]
    c["mqtt"]["publishers"] = c["mqtt"]["publishers"][:1]
    c["changes"] = {"w": dict(c["changes"]["new_register_write"], at=2, repeat=2)}
    cfg_path = tmp_path / "plant.yaml"
    cfg_path.write_text(yaml.safe_dump(c))
    out = tmp_path / "s.pcap"
    p = subprocess.run([sys.executable, "-m", "sim", "record", "-c", str(cfg_path), "-o", str(out), "-d", "6",
                        "-s", "5", "-i", "w"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    with open(tmp_path / "s.labels.csv", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["change"], row["src"], row["dst"]) == ("w", "127.0.0.2", "127.0.0.11")
    protos = {x[0] for x in tshark(out, "modbus || opcua || mqtt", "_ws.col.Protocol")}
    assert {"Modbus/TCP", "OpcUa", "MQTT"} <= protos, protos
    writes = tshark(out, "modbus.func_code == 6 && modbus.reference_num == 50 && tcp.dstport == 502",
                    "frame.time_epoch")
    assert len(writes) == 2
    for (ts,) in writes:
        assert int(row["start_ns"]) <= int(ts.replace(".", "")) <= int(row["end_ns"])
