"""The network section of the baseline (ids/detect/baseline/network.py): learned from connection records,
reviewed in the same file (status, notes and comments carried over on re-learn, `baseline check`
validation), enforced with one alert per new thing. Records are built as the producer writes them
(tests/netrec.py) for the scenes of issue #21: an IT workstation that scans, then uses SMB and a new port
into a PLC; 400 spoofed sources; an internet address reaching a PLC; a host gone silent."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from conftest import run_cli
from netrec import conn, modbus_poll, syn_closed, syn_open, udp

from ids.config import BaselineConfig
from ids.detect.baseline import document as model
from ids.detect.baseline.document import write_baseline
from ids.detect.baseline.enforcer import BaselineDetector
from ids.detect.baseline.learner import Learner
from ids.detect.baseline.rules import RULES
from ids.detect.attack import TECHNIQUES

CFG = BaselineConfig()
HMI, PLC, PLC2, WS, FILES, HIST = "10.10.2.2", "10.10.2.10", "10.10.2.11", "10.10.1.50", "10.10.1.5", "10.10.1.6"
MACS = {HMI: "00-1B-1B-00-00-02", PLC: "00-80-F4-00-00-10", PLC2: "00-80-F4-00-00-11", WS: "00-0C-29-00-00-50",
        FILES: "00-0C-29-00-00-05", HIST: "00-0C-29-00-00-06"}


def c(t, cl, sv, port, **kw):
    kw.setdefault("cmac", MACS.get(cl))
    kw.setdefault("smac", MACS.get(sv))
    return conn(t, cl, sv, port, **kw)


def smb(t, cl, sv, **kw):
    return c(t, cl, sv, 445, cpay=2000, spay=3000, cpk=20, spk=20, protocol="smb", **kw)


def clean(seconds=600, t0=0.0) -> list:
    """The plant on a normal day: the HMI polls two PLCs every 2 s (a connection per cycle), the
    workstation copies files from the file server over SMB and reads the historian over HTTPS."""
    ev = []
    for t in range(0, seconds, 2):
        ev.append(modbus_poll(t0 + t, HMI, PLC, cmac=MACS[HMI], smac=MACS[PLC]))
        ev.append(modbus_poll(t0 + t + 0.5, HMI, PLC2, cmac=MACS[HMI], smac=MACS[PLC2]))
        if t % 60 == 0:
            ev.append(smb(t0 + t + 1, WS, FILES))
            ev.append(c(t0 + t + 1.2, WS, HIST, 443, cpay=500, spay=9000, protocol="tls"))
            ev.append(udp(t0 + t + 1.3, WS, FILES, 53, cmac=MACS[WS], smac=MACS[FILES], protocol="dns"))
    return ev


def learn(events) -> model.Baseline:
    ln = Learner(CFG)
    for e in events:
        ln.learn(e)
    return ln.baseline()


def enforce(b: model.Baseline, events, cfg=CFG) -> list:
    b = model.parse(b.dump(), "net.yaml")
    det = BaselineDetector(b, cfg, "net.yaml")
    out = []
    for e in sorted(events, key=lambda r: r.ts):
        out += det.on_event(e) or []
    out += det.flush(max(e.ts for e in events))
    return out


def rules(alerts) -> Counter:
    return Counter(a.rule_id.rsplit(".", 1)[-1] for a in alerts)


def test_learned_section_lists_hosts_services_links_and_bindings():
    b = learn(clean())
    net = b.section("network")
    assert set(net) == {HMI, PLC, PLC2, WS, FILES, HIST}
    plc = net[PLC]
    assert plc["services"] == ["tcp/502 modbus"] and "links" not in plc
    assert plc["macs"] == {MACS[PLC]: "Schneider Electric"} or list(plc["macs"]) == [MACS[PLC]]
    ws = net[WS]
    assert ws["links"] == {FILES: ["tcp/445 smb", "udp/53 dns"], HIST: ["tcp/443 tls"]}
    assert net[FILES]["services"] == ["tcp/445 smb", "udp/53 dns"]
    assert net[HMI]["silent_after"] == 3600 and net[HMI]["connections"] == 600
    text = b.dump()
    assert "network:\n  - host: 10.10.1.5\n    status: learned\n" in text
    assert model.parse(text).section("network")[WS]["links"] == ws["links"]  # round trip


def test_the_it_intrusion_scene_alerts_the_smb_and_the_new_port_and_nothing_else():
    """Enforce on the intrusion: the workstation scans the OT segment (SYNs answered by RST, a few open
    ports reset by nmap), then copies a file to the PLC over SMB and talks to a listener on tcp/4444."""
    b = learn(clean())
    ev = clean(600, 600)
    for i, port in enumerate(range(1, 1001)):
        for j, h in enumerate((PLC, PLC2)):
            ev.append((syn_open if port in (502, 445) else syn_closed)(700 + i * 0.01 + j * 0.001, WS, h, port,
                                                                      cmac=MACS[WS], smac=MACS[h]))
    ev += [smb(800 + k, WS, PLC) for k in range(3)]
    ev += [c(900 + k, WS, PLC, 4444, cpay=300, spay=4000) for k in range(5)]
    out = enforce(b, ev)
    assert rules(out) == {"it_protocol": 1, "new_service": 1}
    it = next(a for a in out if a.rule_id.endswith("it_protocol"))
    assert it.severity == "high" and it.count == 3
    assert it.reason.startswith(f"IT remote-access or file-sharing protocol into a host (network host {PLC}): "
                                f"seen smb from {WS}")
    svc = next(a for a in out if a.rule_id.endswith("new_service"))
    assert svc.count == 5 and "tcp/4444 on 10.10.2.10 (from 10.10.1.50)" in svc.reason
    assert [t.id for t in svc.techniques] == ["T0869", "T0886"]
    assert enforce(b, clean(600, 600)) == []


def test_400_spoofed_sources_are_a_handful_of_alerts():
    """A DNP3 outstation answering requests from 400 forged addresses (UDP, each answered once)."""
    b = learn(clean() + [udp(t, HMI, "10.10.2.30", 20000, protocol="dnp3") for t in range(0, 600, 5)])
    rnd = random.Random(5)
    ev = [udp(700 + i * 0.01, f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", "10.10.2.30",
              20000, protocol="dnp3") for i in range(400)]
    out = enforce(b, ev)
    assert rules(out) == {"new_host": 6}
    assert sum(a.count for a in out) == 400
    many = [a for a in out if a.count > 1]
    assert len(many) == 1 and many[0].reason.startswith("New host on the network (network 10.10.2.30): seen new hosts "
                                                        "talking with 10.10.2.30: ")
    assert many[0].count == 395 and many[0].reason.split(": ")[2].split(" ...")[0].count(", ") == 15 and " ...; expected 7 known hosts (395 times" in many[0].reason


def test_internet_address_talking_to_a_plc_is_high_and_not_a_plain_new_host():
    b = learn(clean())
    out = enforce(b, [c(10, "93.184.216.34", PLC, 502, cpay=12, spay=12, protocol="modbus", cmac=MACS[HMI])])
    assert rules(out) == {"internet_ot": 1}
    assert out[0].severity == "high" and [t.id for t in out[0].techniques] == ["T0883", "T0822"]
    assert enforce(b, [c(10, WS, "151.101.1.69", 443, cpay=500, spay=900, protocol="tls")]) != []  # new host only
    assert rules(enforce(b, [c(10, WS, "151.101.1.69", 443, cpay=500, spay=900, protocol="tls")])) == {"new_host": 1}


def test_new_link_new_port_new_protocol_and_moved_host():
    b = learn(clean() + [c(5, WS, PLC2, 502, cpay=12, spay=12, protocol="modbus")])
    out = enforce(b, [c(10, HMI, FILES, 445, cpay=10, spay=10, protocol="smb")])  # FILES serves SMB: a link
    assert rules(out) == {"new_link": 1}
    out = enforce(b, [c(10, WS, PLC, 502, cpay=12, spay=12, protocol="modbus")])
    assert rules(out) == {"new_link": 1}
    out = enforce(b, [c(10, HMI, FILES, 53, transport="udp", cpay=10, spay=10, cpk=1, spk=1, protocol="dns")])
    assert rules(out) == {"new_link": 1}
    out = enforce(b, [c(10, WS, FILES, 443, cpay=10, spay=10, protocol="tls")])  # FILES never served 443
    assert rules(out) == {"new_service": 1}
    out = enforce(b, [c(10, WS, HIST, 445, cpay=10, spay=10, protocol="smb")])
    assert rules(out) == {"it_protocol": 1}
    out = enforce(b, [c(10, HMI, PLC2, 502, cpay=10, spay=10, protocol="modbus")])
    assert out == []
    out = enforce(b, [c(10, WS, HIST, 443, cpay=10, spay=10, protocol="http")])
    assert rules(out) == {"new_protocol": 1} and out[0].reason.endswith("seen http; expected 10.10.1.50 -> 10.10.1.6 "
                                                                       "tcp/443 tls")
    out = enforce(b, [modbus_poll(10, HMI, PLC, cmac="02-BA-DB-AD-00-01", smac=MACS[PLC])])
    assert rules(out) == {"host_moved": 1} and "MAC 02-BA-DB-AD-00-01" in out[0].reason
    b2 = learn(clean() + [modbus_poll(3, HMI, PLC, cmac=MACS[HMI], smac=MACS[PLC], vlan=(100,))])
    out = enforce(b2, [modbus_poll(10, HMI, PLC, cmac=MACS[HMI], smac=MACS[PLC], vlan=(200,))])
    assert rules(out) == {"host_moved": 2}  # both ends came in on another VLAN


def test_scans_and_unanswered_traffic_are_left_to_the_network_detectors():
    b = learn(clean())
    ev = [syn_closed(10 + i * 0.01, "10.10.9.9", PLC, p) for i, p in enumerate(range(1, 500))]
    ev += [udp(20, WS, "10.10.2.99", 161, answered=False)]
    assert enforce(b, ev) == []


def test_host_gone_silent_once_while_others_talk():
    b = learn(clean(7200))
    assert b.section("network")[PLC2]["silent_after"] == 3600
    ev = [e for e in clean(7200, 7200) if e.server_ip != PLC2 or e.start < 7200 + 600]
    out = enforce(b, ev)
    assert rules(out) == {"host_silent": 1}
    a = out[0]
    assert a.reason.startswith(f"Host gone silent (network host {PLC2}): seen nothing from {PLC2} for 3601 s")
    assert a.extra["baseline"]["hosts"] == [PLC2]
    assert enforce(b, clean(7200, 7200)) == []
    long = learn([c(0, HMI, PLC, 502, cpay=10, spay=10, dur_s=7000, protocol="modbus")] * 3)
    assert "silent_after" not in long.section("network")[PLC]  # one connection for hours: cannot tell


def test_review_carries_over_a_relearn_and_denied_hosts_alert(tmp_path):
    p = tmp_path / "b.yaml"
    write_baseline(learn(clean()), str(p))
    text = p.read_text()
    text = text.replace(f"  - host: {WS}\n    status: learned\n",
                        f"  # engineering workstation, room 2\n  - host: {WS}\n    status: approved\n"
                        f"    note: checked with IT\n")
    text = text.replace(f"  - host: {HIST}\n    status: learned\n", f"  - host: {HIST}\n    status: denied\n")
    p.write_text(text)
    rc = run_cli("learn", "--help")
    assert rc.returncode == 0
    old = model.load(str(p))
    new = learn(clean(300))
    rep = model.merge_review(new, old)
    write_baseline(new, str(p), old.text)
    again = p.read_text()
    assert f"  # engineering workstation, room 2\n  - host: {WS}\n    status: approved\n    note: checked with IT\n" in again
    assert rep.kept_reviewed == 2
    out = enforce(model.load(str(p)), [c(10, WS, HIST, 443, cpay=500, spay=9000, protocol="tls")])
    assert rules(out) == {"denied": 1}


@pytest.mark.parametrize("field,value,msg", [
    ("services", "[tcp/70000]", "services: 'tcp/70000' is not a service like 'tcp/502 modbus', 'udp/161' or 'icmp/8'"),
    ("links", "{not-an-ip: [tcp/502]}", "13: links: 'not-an-ip' is not an IP address"),
    ("silent_after", "0", "silent_after must be a number of seconds (at least 1)"),
    ("internet", "maybe", "internet must be true or false"),
])
def test_baseline_check_names_the_place_of_a_bad_network_entry(tmp_path, field, value, msg):
    p = tmp_path / "b.yaml"
    p.write_text(f"version: 1\nnetwork:\n  - host: 10.0.0.1\n    status: learned\n    {field}: {value}\n")
    r = run_cli("baseline", "check", str(p), check_rc=2)
    where, msg = (msg.split(": ", 1) if msg.startswith("13: ") else ("5", msg))
    assert r.stderr.strip() == f"otids: error: {p}:5:{where}: {msg}"
    p.write_text("version: 1\nnetwork:\n  - host: plc-1\n    status: learned\n")
    r = run_cli("baseline", "check", str(p), check_rc=2)
    assert r.stderr.strip() == f"otids: error: {p}:3:5: 'host' must be an IP address (got 'plc-1')"


def test_network_rules_carry_known_attack_techniques():
    net = [r for r in RULES.values() if ".network." in r.id]
    assert len(net) == 9
    assert all(r.attack and all(t in TECHNIQUES for t in r.attack) for r in net)
