"""`otids live` across a real network: two namespaces joined by a veth pair, tcpreplay sending captures
into one end at fixed rates, the sensor capturing on the other. The sensor's events and alerts must
equal `otids analyze` on the same pcap, compared by content (timestamps, document ids and durations are
arrival-time facts and differ by nature; stats records exist only live), and its counters must equal the
kernel's own (the interface's rx_packets). Needs root, iproute2 and tcpreplay; namespaces are removed
even when a test fails.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import PCAPS, need, need_tool, read_ndjson, run_cli
from ids.capture import open_capture
from ids.live.bench import generator
from ids.live.netns import SensorProcess, VethPair


@pytest.fixture
def veth():
    if os.geteuid() != 0:
        pytest.fail("live network tests need root (network namespaces, AF_PACKET)")
    need_tool("ip")
    need_tool("tcpreplay")
    with VethPair(f"otids-t{os.getpid()}") as v:
        yield v


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    gen = generator()
    if gen is None:
        pytest.fail("../shared/bench/gen_modbus_pcap.py is missing")
    out = tmp_path_factory.mktemp("gen") / "gen-12x20.pcap"
    subprocess.run([sys.executable, str(gen), str(out), "12", "20"], check=True, capture_output=True)
    return out


def canon(path: Path) -> Counter:
    """Documents by content: arrival-time fields removed, live-only stats records left out."""
    out: Counter = Counter()
    for d in read_ndjson(path):
        ev = d["event"]
        if ev["dataset"] == "otids.stats" or ev.get("original_dataset") == "otids.stats":
            continue
        d.pop("@timestamp", None)
        ev.pop("id", None)
        ev.pop("duration", None)
        ev.pop("start", None)  # connection records: first and last packet, arrival times live
        ev.pop("end", None)
        d.get("otids", {}).get("conn", {}).pop("flow_id", None)  # per-run numbering: interleaving differs live
        out[json.dumps(d, sort_keys=True)] += 1
    return out


def offline(pcap: Path, tmp: Path) -> tuple[Counter, Counter]:
    a, e = tmp / "offline-alerts.ndjson", tmp / "offline-events.ndjson"
    run_cli("analyze", str(pcap), "-o", str(a), "--events", str(e), "-q")
    return canon(a), canon(e)


def cut(src: Path, dst: Path, n: int) -> Path:
    """The first n frames of a classic pcap."""
    data = src.read_bytes()
    pos, out = 24, [data[:24]]
    for _ in range(n):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos:pos + 16 + incl])
        pos += 16 + incl
    dst.write_bytes(b"".join(out))
    return dst


def replay_live(veth: VethPair, pcap: Path, tmp: Path, *extra: str, pps: int = 1000, expect: int | None = None):
    s = SensorProcess(veth, tmp, *extra)
    try:
        s.wait_ready()
        base = veth.rx_counter()
        r = veth.replay(str(pcap), pps=pps)
        assert r["failed"] == 0, r["output"]
        st = s.wait_frames(r["sent"] if expect is None else expect)
        rx = veth.rx_counter() - base
        info = {"sent": r["sent"], "rx": rx, "stats": st, "status": proc_status(s.proc.pid)}
        assert s.stop() == 0, s.output
    finally:
        s.kill()
    return s, info


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


CASES = {
    "demo": (lambda g, t: PCAPS / "modbus-demo.pcap", ()),
    "sample-vlan-alerts": (lambda g, t: PCAPS / "live-sample.pcap", ()),
    "sample-socket-method": (lambda g, t: PCAPS / "live-sample.pcap", ("--method", "socket")),
    "sample-as-nobody": (lambda g, t: PCAPS / "live-sample.pcap", ("--user", "nobody")),
    "generated": (lambda g, t: g, ()),
    # cut in the middle of flow 2: requests pending at SIGTERM must be emitted as at the end of a file
    "sample-cut-pending": (lambda g, t: cut(PCAPS / "live-sample.pcap", t / "cut.pcap", 21), ()),
    # --workers: the kernel divides flows among the sockets of a PACKET_FANOUT group; nothing lost, nothing twice
    "generated-workers-3": (lambda g, t: g, ("--workers", "3")),
    "sample-workers-2": (lambda g, t: PCAPS / "live-sample.pcap", ("--workers", "2")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_replay_gives_the_same_events_and_alerts_as_analyze(veth, generated, tmp_path, case):
    make, extra = CASES[case]
    pcap = need(make(generated, tmp_path))
    frames = sum(1 for _ in open_capture(str(pcap)).packets())
    want_alerts, want_events = offline(pcap, tmp_path)
    s, info = replay_live(veth, pcap, tmp_path, *extra)

    assert info["sent"] == frames
    t = s.last_stats()["total"]
    # every frame the interface received was queued for the sensor and analysed, none dropped
    assert (info["rx"], t["kernel_packets"], t["packets"], t["kernel_drops"], t["sensor_drops"]) == \
        (frames, frames, frames, 0, 0), s.output
    got_events, got_alerts = canon(s.events), canon(s.alerts)
    assert sum(want_events.values()) > 0
    assert got_events == want_events, (set(want_events) ^ set(got_events))
    assert got_alerts == want_alerts
    if case.startswith("sample"):
        assert sum(want_alerts.values()) >= (3 if case != "sample-cut-pending" else 1)
    if case == "sample-vlan-alerts":
        assert t["vlan_restored"] > 0  # veth strips tags like a NIC with VLAN offload; they came back
    if case == "sample-cut-pending":
        unknown = [d for d in read_ndjson(s.events) if d["event"].get("outcome") == "unknown"]
        assert unknown and all("unanswered_request" in d["otids"]["anomalies"] for d in unknown)
    if case == "generated-workers-3":  # the kernel gave every process a share
        line = next(x for x in s.output.splitlines() if "frames per process" in x)
        shares = [int(x.rsplit(" ", 1)[1].replace(",", "")) for x in line.split(": ", 2)[2].split(", ")]
        assert len(shares) == 3 and all(shares) and sum(shares) == frames, line
        assert "fanout by host pair" in line, line  # the CBPF program, not the kernel's flow hash
    if case == "sample-as-nobody":
        st = info["status"]
        assert st["Uid"].split()[:2] == ["65534", "65534"], st["Uid"]
        assert int(st["CapEff"], 16) == 1 << 13 and int(st["CapBnd"], 16) == 1 << 13
        assert st["NoNewPrivs"] == "1"
    # stats records: one per interval per interface, totals consistent with the intervals
    caps = [d["otids"]["stats"] for d in read_ndjson(s.stats) if d["event"]["action"] == "capture"]
    assert sum(c["packets"] for c in caps) == frames
    assert all(d["observer"]["ingress"]["interface"]["name"] == "rx0"
               for d in read_ndjson(s.stats) if d["event"]["action"] == "capture")


def test_workers_writing_alerts_only_count_the_events_they_keep(veth, generated, tmp_path):
    """--workers 2 with no event sink: a worker checks its Modbus records itself and sends the sensor only a
    count of them (the capture-loss detector takes stats events only, so nothing else calls for them). The
    sensor must stop cleanly with analyze's alerts, its stats must count analyze's events, and the kernel's
    counters must match. (Adding a worker's counts once overwrote the worker's index: the sensor crashed.)"""
    want_alerts, want_events = offline(generated, tmp_path)
    frames = sum(1 for _ in open_capture(str(generated)).packets())
    s = SensorProcess(veth, tmp_path, "--workers", "2", events=False)
    try:
        s.wait_ready()
        base = veth.rx_counter()
        r = veth.replay(str(generated), pps=2000)
        s.wait_frames(r["sent"])
        rx = veth.rx_counter() - base
        assert s.stop() == 0, s.output
    finally:
        s.kill()
    t = s.last_stats()["total"]
    assert (rx, t["kernel_packets"], t["packets"], t["kernel_drops"]) == (frames, frames, frames, 0), s.output
    assert canon(s.alerts) == want_alerts
    sensor = [d["otids"]["stats"] for d in read_ndjson(s.stats) if d["event"]["action"] == "sensor"]
    # the last record comes before the sensor's own open flows are closed (one connection record each)
    assert sensor[-1]["events"] + sensor[-1]["flows_active"] == sum(want_events.values()) > 0, s.output


@pytest.mark.parametrize("method", ["ring", "socket"])
def test_drops_past_the_buffer_match_the_kernel_and_alert(veth, generated, tmp_path, method):
    """Stop the sensor (SIGSTOP) while more frames arrive than its 2 MB kernel buffer holds: the kernel
    must drop, the sensor's counters must account for every frame the interface received, the loss must
    raise its alert, and the alert must leave an evidence pcapng behind."""
    cfg = tmp_path / "otids.yaml"
    ev_dir = tmp_path / "evidence"
    cfg.write_text(f"live:\n  buffer_mb: 2\n  evidence_mb: 1\n  evidence_dir: {ev_dir}\n  evidence_after: 1\n")
    s = SensorProcess(veth, tmp_path, "-c", str(cfg), "--method", method)
    try:
        s.wait_ready()
        base = veth.rx_counter()
        s.signal(signal.SIGSTOP)
        r = veth.replay(str(generated), topspeed=True, loop=40)
        s.signal(signal.SIGCONT)
        rx = veth.rx_counter() - base
        s.wait_frames(rx)
        time.sleep(2.5)  # one more stats interval and the evidence delay
        assert s.stop() == 0, s.output
    finally:
        s.kill()
    t = s.last_stats()["total"]
    assert r["sent"] == rx
    assert t["kernel_drops"] > 0, t
    assert t["kernel_packets"] == rx and t["packets"] + t["kernel_drops"] == rx, (rx, t)
    caps = [d["otids"]["stats"] for d in read_ndjson(s.stats) if d["event"]["action"] == "capture"]
    assert sum(c["kernel_drops"] for c in caps) == t["kernel_drops"]
    loss = [a for a in read_ndjson(s.alerts) if a["rule"]["id"] == "otids.sensor.capture_loss"]
    assert loss, s.output
    assert loss[0]["otids"]["alert"]["lost"] > 0 and loss[0]["observer"]["ingress"]["interface"]["name"] == "rx0"
    pcaps = sorted(ev_dir.glob("*.pcapng"))
    assert pcaps, s.output
    frames = list(open_capture(str(pcaps[0])).packets())
    assert 0 < len(frames) and sum(len(f[2]) for f in frames) <= 1 << 20
    side = json.loads(pcaps[0].with_suffix(".json").read_text())
    assert side["frames"] == len(frames) and side["pcap"] == pcaps[0].name
    # replaying at top speed squeezes time, so timing rules (exception floods) may alert too: each alert
    # is in some evidence file, the loss alert among them
    documented = [a["rule"]["id"] for p in pcaps for a in json.loads(p.with_suffix(".json").read_text())["alerts"]]
    assert "otids.sensor.capture_loss" in documented
    assert sorted(documented) == sorted(a["rule"]["id"] for a in read_ndjson(s.alerts))


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(veth, tmp_path):
    cfg = tmp_path / "otids.yaml"
    cfg.write_text("live:\n  loss_alert_ratio: 0.5\n")
    s = SensorProcess(veth, tmp_path, "-c", str(cfg))
    try:
        s.wait_ready()
        cfg.write_text("live:\n  loss_alert_ratio: 7\n")
        s.signal(signal.SIGHUP)
        bad = wait_stats(s, "config_reload", 1)
        cfg.write_text("live:\n  loss_alert_ratio: 0.2\n")
        s.signal(signal.SIGHUP)
        good = wait_stats(s, "config_reload", 2)
        assert s.proc.poll() is None  # still running
        base = veth.rx_counter()
        veth.replay(str(PCAPS / "modbus-demo.pcap"), pps=2000)
        s.wait_frames(veth.rx_counter() - base)
        assert s.stop() == 0
    finally:
        s.kill()
    r1, r2 = bad[0]["otids"]["stats"]["reload"], good[1]["otids"]["stats"]["reload"]
    assert r1["ok"] is False and r1["errors"] == [f"{cfg}:2:3: 'live.loss_alert_ratio' must be a number above 0 and at most 1"], r1
    assert r2 == {"ok": True, "reloaded": ["AuthDetector", "ArpWatch", "ScanDetector", "FlagDetector",
                                              "CaptureLossDetector"], "errors": []}
    assert "keeping the previous version" in s.output
    assert sum(n for k, n in canon(s.events).items() if '"otids.conn"' not in k) == 27  # the demo's
    # transactions, after both reloads (and the connection records of its flows)


def wait_stats(s: SensorProcess, action: str, n: int, timeout: float = 15) -> list[dict]:
    end = time.monotonic() + timeout
    got: list = []
    while time.monotonic() < end:
        if s.stats.exists():
            got = [d for d in read_ndjson(s.stats) if d["event"]["action"] == action]
            if len(got) >= n:
                return got
        time.sleep(0.2)
    raise AssertionError(f"no {n} {action} record(s) after {timeout} s: {got}\n{s.output}")


def test_interface_down_alerts_and_a_recreated_interface_is_reopened(veth, tmp_path):
    """Runs as nobody with CAP_NET_RAW only: link down/up is followed; a removed and re-created
    interface is opened again (this is what CAP_NET_RAW is kept for) and capture resumes."""
    s = SensorProcess(veth, tmp_path, "--user", "nobody")
    try:
        s.wait_ready()
        veth.link("down")
        wait_stats(s, "interface_down", 1)
        veth.link("up")
        wait_stats(s, "interface_up", 1)
        subprocess.run(["ip", "-n", veth.rx_ns, "link", "del", veth.rx], check=True)
        wait_stats(s, "interface_down", 2)
        veth.setup_link()
        ups = wait_stats(s, "interface_up", 2)
        base = veth.rx_counter()
        r = veth.replay(str(PCAPS / "modbus-demo.pcap"), pps=2000)
        st = s.wait_frames(r["sent"])
        assert s.stop() == 0
    finally:
        s.kill()
    downs = [d["otids"]["stats"]["reason"] for d in read_ndjson(s.stats) if d["event"]["action"] == "interface_down"]
    assert downs[0] in ("link down", "enetdown") and downs[1] == "removed", downs
    assert ups[1]["otids"]["stats"]["reason"] == "reopened"
    assert veth.rx_counter() - base == r["sent"] == 84 and st["total"]["packets"] >= 84
    alerts = [a["rule"]["id"] for a in read_ndjson(s.alerts)]
    assert alerts.count("otids.sensor.interface_down") == 2
    assert sum(n for k, n in canon(s.events).items() if '"otids.conn"' not in k) == 27


def test_two_interfaces_at_once(veth, tmp_path):
    """A second veth pair between the same namespaces: two captures replayed at the same time into two
    interfaces give the union of what analyze finds in each, with counters per interface."""
    subprocess.run(["ip", "link", "add", "tx1", "netns", veth.tx_ns, "type", "veth", "peer", "name", "rx1",
                    "netns", veth.rx_ns], check=True)
    subprocess.run(["ip", "-n", veth.tx_ns, "link", "set", "tx1", "up"], check=True)
    subprocess.run(["ip", "-n", veth.rx_ns, "link", "set", "rx1", "up"], check=True)
    demo, sample = PCAPS / "modbus-demo.pcap", PCAPS / "live-sample.pcap"
    wa1, we1 = offline(demo, tmp_path)
    wa2, we2 = offline(sample, tmp_path)
    s = SensorProcess(veth, tmp_path, "-i", "rx1")
    try:
        s.wait_ready()
        p = subprocess.Popen(veth.in_tx("tcpreplay", "-i", "tx1", "--pps=500", str(sample)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        veth.replay(str(demo), pps=500)
        assert p.wait(60) == 0
        end = time.monotonic() + 30
        while time.monotonic() < end:
            last = {d["observer"]["ingress"]["interface"]["name"]: d["otids"]["stats"]["total"]["packets"]
                    for d in read_ndjson(s.stats) if d["event"]["action"] == "capture"}
            if last == {"rx0": 84, "rx1": 71}:
                break
            time.sleep(0.25)
        assert s.stop() == 0
    finally:
        s.kill()
    assert last == {"rx0": 84, "rx1": 71}, last
    assert "capturing on rx0, rx1" in s.output
    assert canon(s.events) == we1 + we2 and canon(s.alerts) == wa1 + wa2


def test_bpf_filter_runs_in_the_kernel(veth, tmp_path):
    pcap = PCAPS / "live-sample.pcap"
    want = sum(1 for _ts, _lt, d in open_capture(str(pcap)).packets()
               if d[12:14] == b"\x08\x00" and b"\x0a\x01\x00\x0b" in (d[26:30], d[30:34]))
    s, info = replay_live(veth, pcap, tmp_path, "--bpf", "host 10.1.0.11", expect=want)
    t = s.last_stats()["total"]
    assert info["rx"] == 71 and t["kernel_packets"] == t["packets"] == want == 54
    events = [d for d in read_ndjson(s.events) if d["event"]["dataset"] == "otids.modbus"]
    assert len(events) == 24 and {d["source"]["ip"] for d in events} == {"10.1.0.11"}


def test_user_errors_are_one_line(tmp_path):
    p = run_cli("live", "-i", "nosuch0", "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert p.stderr.strip() == "otids: error: interface 'nosuch0': no such interface"
    p = run_cli("live", "-i", "lo", "--bpf", "tcp portt 1", "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert p.stderr.strip().startswith("otids: error: --bpf 'tcp portt 1': ") and len(p.stderr.splitlines()) == 1
    p = run_cli("live", "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert "no interface to capture on" in p.stderr
    p = run_cli("live", "-i", "lo", "--user", "no-such-user-x", "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert p.stderr.strip() == "otids: error: live.user: no such user 'no-such-user-x'"


def test_a_dead_live_worker_stops_the_sensor_loudly(veth, tmp_path):
    """A worker's share of the traffic must never go unanalysed in silence: its death ends the sensor with
    one line naming it and a non-zero exit, after the outputs were closed."""
    s = SensorProcess(veth, tmp_path, "--workers", "2", "-q")
    try:
        s.wait_ready()
        with open(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children") as fh:
            kids = [int(x) for x in fh.read().split()]
        assert len(kids) == 1, kids
        os.kill(kids[0], signal.SIGKILL)
        rc = s.proc.wait(60)
    finally:
        s.kill()
    s._reader.join(5)
    assert rc == 2, s.output
    assert f"otids: error: live worker 1 (pid {kids[0]}) died (killed by signal 9): its share of the traffic " \
           "is no longer analysed; stopping" in s.output.splitlines(), s.output


def test_bench_live_prints_rates_counters_and_cpu(tmp_path):
    """`otids bench-live --rates --workers 1,2 --cpu` end to end (its own namespaces): per worker count a
    row whose counters match the kernel's, the rate the kernel counted, the CPU line naming tcpreplay and
    every sensor process, and the summary of the highest rate without drops."""
    if os.geteuid() != 0:
        pytest.fail("bench-live needs root (network namespaces, AF_PACKET)")
    need_tool("ip")
    need_tool("tcpreplay")
    p = run_cli("bench-live", "--pcap", str(PCAPS / "modbus-demo.pcap"), "--rates", "2000", "--workers", "1,2",
                "--seconds", "1", "--cpu", "--workdir", str(tmp_path), timeout=120)
    out = p.stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("    2,000 ")]
    assert len(rows) == 2, out
    for r in rows:  # pps asked, pps kern, sent, iface rx, kernel q, analysed, k.drops, s.drops, match, loss
        assert r[3] == r[4] == r[5] and r[6:10] == ["0", "0", "yes", "0"], out
        assert 1_800 <= int(r[1].replace(",", "")) <= 2_200 and int(r[3].replace(",", "")) >= 1_800, out
    cpu = [line for line in out.splitlines() if "CPU s over the step" in line]
    assert len(cpu) == 2 and all("tcpreplay" in c and "sensor" in c and "machine" in c for c in cpu), out
    assert "worker 1" in cpu[1] and "worker 1" not in cpu[0], out
    assert "--pps-multi=rate/2000 --timer=nano" in out, out
    assert "highest rate without drops: --workers 1: 2,000 pps; --workers 2: 2,000 pps" in out, out
