"""Parts of the live sensor on their own: capture on loopback with real traffic, privilege drop, the
evidence ring, the loss detector, the idle clock, the reload hook and the declared stats fields."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import PCAPS, ROOT, need_tool
from ids.capture import open_capture
from ids.capture.live import LiveCapture, compile_bpf
from ids.config import Config, LiveConfig
from ids.detect.loss import CaptureLossDetector
from ids.errors import RuleError, UserError
from ids.events import Alert, SensorStats
from ids.live.evidence import OVERHEAD, EvidenceRing
from ids.pipeline import Collector, Run

NS = 1_000_000_000


def need_root():
    if os.geteuid() != 0:
        pytest.fail("AF_PACKET capture needs root (CAP_NET_RAW)")


# ---------------------------------------------------------------------------------------------- capture

@pytest.mark.parametrize("method", ["ring", "socket"])
def test_loopback_capture_with_kernel_filter(method):
    """Real UDP datagrams on lo: the filter admits one port only, each frame is handed over once (lo shows
    it leaving and arriving; the outgoing copy is skipped), bytes are exact, timestamps are the kernel's."""
    need_root()
    port = 40000 + os.getpid() % 20000
    c = LiveCapture("lo", bpf=f"udp dst port {port}", method=method, buffer_mb=2, block_timeout_ms=5)
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        before = time.time_ns()
        for i in range(1, 6):
            u.sendto(b"x" * i, ("127.0.0.1", port))
            u.sendto(b"y" * i, ("127.0.0.1", port + 1))  # filtered out in the kernel
        u.close()
        got: list = []
        end = time.monotonic() + 5
        while len(got) < 5 and time.monotonic() < end:
            c.dispatch(lambda ts, lt, d: got.append((ts, lt, d)))
            time.sleep(0.01)
        kp, kd = c.kernel_stats()
    finally:
        c.close()
    assert [len(d) for _, _, d in got] == [14 + 20 + 8 + i for i in range(1, 6)]
    assert all(lt == 1 and d[-1:] == b"x" for _, lt, d in got)
    assert all(before <= ts <= time.time_ns() for ts, _, _ in got)
    assert (c.packets, c.skipped_outgoing, kp, kd, c.sensor_drops) == (5, 5, 10, 0, 0)
    assert c.bytes == sum(len(d) for _, _, d in got)


def test_bad_filter_and_interface_are_user_errors():
    with pytest.raises(UserError, match=r"^--bpf 'tcp prot 1': can't parse filter expression: syntax error"):
        compile_bpf("tcp prot 1")
    with pytest.raises(UserError, match="no such interface"):
        LiveCapture("nosuch0")
    with pytest.raises(UserError, match="ring or socket"):
        LiveCapture("lo", method="pcap")
    insns = compile_bpf("tcp port 502")
    assert len(insns) % 8 == 0 and len(insns) > 8


# ---------------------------------------------------------------------------------------------- privileges

DROP = r'''
import json, socket, sys
from ids.live.privs import drop_privileges, capabilities
pre = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
msg = drop_privileges(sys.argv[1], sys.argv[2] == "1")
caps = capabilities()
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close(); reopen = True
except PermissionError:
    reopen = False
print(json.dumps({"msg": msg, "caps": caps, "reopen": reopen, "pre_open": pre.fileno() > 0}))
'''


@pytest.mark.parametrize("keep", [True, False])
def test_drop_privileges_keeps_only_cap_net_raw(keep):
    need_root()
    p = subprocess.run([sys.executable, "-c", DROP, "nobody", "1" if keep else "0"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    caps = r["caps"]
    want = (1 << 13) if keep else 0
    assert (caps["Uid"], caps["Gid"]) == (65534, 65534)
    assert (caps["CapEff"], caps["CapPrm"], caps["CapBnd"], caps["CapInh"], caps["CapAmb"]) == (want, want, want, 0, 0)
    assert caps["NoNewPrivs"] == 1
    assert r["reopen"] is keep  # a new capture socket needs CAP_NET_RAW; the one opened before works regardless
    assert r["msg"] == f"running as nobody (uid 65534), capabilities: {'cap_net_raw' if keep else 'none'}"


# ---------------------------------------------------------------------------------------------- evidence

def _alert(ts: int, rid: str = "otids.test.rule") -> Alert:
    return Alert(ts, rid, "Test rule", "d", "medium", "why", "test")


def test_evidence_ring_is_bounded_and_writes_readable_pcapng(tmp_path):
    frames = list(open_capture(str(PCAPS / "live-sample.pcap")).packets())
    bound = 2000
    ring = EvidenceRing(bound, str(tmp_path), 0, 2, [("rx0", 1, 65535)])
    for ts, _lt, d in frames:
        ring.add(ts, 0, d)
    kept = list(ring.frames)
    assert ring.size <= bound and sum(len(d) + OVERHEAD for _, _, d in kept) == ring.size
    assert [d for _, _, d in kept] == [d for _, _, d in frames[-len(kept):]]  # the newest ones, in order
    ring.write_alert(_alert(frames[-1][0]))
    ring.write_alert(_alert(frames[-1][0], "otids.test.second"))
    path = ring.poll(time.time_ns())
    assert path is not None and path.endswith(".pcapng")
    back = list(open_capture(path).packets())
    assert [(ts, lt, d) for ts, lt, d in back] == [(ts, 1, d) for ts, _, d in kept]  # ns timestamps exact
    side = json.loads(Path(path[:-7] + ".json").read_text())
    assert [a["rule"]["id"] for a in side["alerts"]] == ["otids.test.rule", "otids.test.second"]
    tshark = need_tool("tshark")
    p = subprocess.run([tshark, "-r", path, "-T", "fields", "-e", "frame.interface_name"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.split() == ["rx0"] * len(kept), p.stderr
    # only the newest max_files files are kept
    for i in range(3):
        ring.write_alert(_alert(frames[-1][0] + (i + 1) * NS))
        ring.dump()
    assert len(list(tmp_path.glob("*.pcapng"))) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    # ... across restarts too
    again = EvidenceRing(bound, str(tmp_path), 0, 2, [("rx0", 1, 65535)])
    again.add(1, 0, b"\0" * 60)
    again.write_alert(_alert(frames[-1][0] + 9 * NS))
    newest = again.dump()
    assert sorted(str(p) for p in tmp_path.glob("*.pcapng"))[-1] == newest
    assert len(list(tmp_path.glob("*.pcapng"))) == 2


# ---------------------------------------------------------------------------------------------- loss alerts

def _cap(ts, packets, kdrops, sdrops=0, iface="eth1"):
    seen = packets + kdrops
    return SensorStats(ts, "capture", iface, {"interval_s": 60, "packets": packets, "kernel_drops": kdrops,
                                              "sensor_drops": sdrops,
                                              "loss_ratio": (kdrops + sdrops) / seen if seen else 0.0})


def test_loss_alerts_on_threshold_then_only_when_rising():
    d = CaptureLossDetector(LiveConfig(loss_alert_ratio=0.01, loss_alert_min=10))
    assert d.on_event(_cap(1, 10_000, 9)) is None  # 0.09 %, below the ratio
    assert d.on_event(_cap(2, 100, 5)) is None  # 4.8 % but only 5 frames
    a = d.on_event(_cap(3, 1000, 20))  # 1.96 %: first alert
    assert [x.rule_id for x in a] == ["otids.sensor.capture_loss"] and a[0].severity == "medium"
    assert a[0].extra == {"loss_ratio": 20 / 1020, "lost": 20}
    assert a[0].reason == "eth1: 20 of 1,020 frames lost in 60 s (1.96%; kernel 20, sensor 0)"
    assert d.on_event(_cap(4, 1000, 30)) is None  # still losing, not yet twice as much
    b = d.on_event(_cap(5, 500, 500))  # 50 %: rising, and high
    assert b[0].severity == "high" and b[0].reason.endswith("- rising")
    assert d.on_event(_cap(6, 1000, 0)) is None  # episode over
    assert d.on_event(_cap(7, 1000, 20)) is not None  # a new episode alerts again
    assert d.on_event(_cap(8, 1000, 20, iface="eth2")) is not None  # per interface
    down = d.on_event(SensorStats(9, "interface_down", "eth1", {"reason": "removed"}))
    assert down[0].rule_id == "otids.sensor.interface_down" and down[0].severity == "high"
    d.reload(Config(live=LiveConfig(loss_alert_ratio=0.5)))
    assert d.on_event(_cap(10, 100, 50)) is None  # 33 % < the reloaded 50 %


# ---------------------------------------------------------------------------------------------- clock

def test_tick_expires_pending_requests_while_traffic_is_idle():
    """Live traffic can stop; the request without answer must still come out after request_timeout,
    driven by the clock, not wait for the next packet or the end of input."""
    frames = list(open_capture(str(PCAPS / "live-sample.pcap")).packets())[:21]  # ends with a request
    col = Collector()
    run = Run(Config(), [], [col], [col])
    for ts, lt, d in frames:
        run.feed(ts, lt, d)
    last = frames[-1][0]
    n = len(col.events)
    run.tick(last + 10 * NS)
    assert [e for e in col.events[n:] if e.dataset != "otids.conn"] == []  # not yet (closed flows' records may come)
    run.tick(last + 36 * NS)  # request_timeout 30 s, sweeps every 5 s
    late = [e for e in col.events[n:] if e.dataset != "otids.conn"]  # connection records may expire too
    assert [e.anomalies for e in late] == [("unanswered_request",)] and late[0].transaction_id == 5


# ---------------------------------------------------------------------------------------------- reload

class _Reloadable:
    def __init__(self, fail=None):
        self.fail, self.version = fail, 1

    def on_event(self, ev):
        return None

    def flush(self, ts):
        return None

    def reload(self, config):
        if self.fail is not None:
            raise self.fail
        self.version += 1


def test_reload_hook_keeps_going_past_bad_files_and_reports(tmp_path):
    from ids.live.sensor import Sensor

    good, bad_rules, buggy = _Reloadable(), _Reloadable(RuleError("bad rule")), _Reloadable(KeyError("x"))
    col = Collector()
    run = Run(Config(), [good, bad_rules, buggy], [col], [col])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("live:\n  stats_interval: 5\n")
    s = Sensor(run, [], Config(), str(cfg), [col])
    errors = s.reload(1)
    assert good.version == 2 and errors == ["bad rule", "_Reloadable: KeyError: 'x'"]
    ev = col.events[-1]
    assert ev.action == "config_reload" and ev.details["reload"] == {
        "ok": False, "reloaded": ["_Reloadable"], "errors": errors}
    assert s.config.live.stats_interval == 5
    cfg.write_text("live: [\n")
    assert s.reload(2)[0].startswith(f"{cfg}:")
    assert good.version == 2 and s.config.live.stats_interval == 5  # nothing reloaded, old config kept


# ---------------------------------------------------------------------------------------------- fields

def _declared() -> dict[str, str]:
    out = {}
    for f in (ROOT / "ids" / "data" / "fields").glob("*.yml"):
        for fld in yaml.safe_load(f.read_text())["fields"]:
            out[fld["name"]] = fld["type"]
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_every_stats_field_is_declared():
    from ids.live.sensor import Sensor

    col = Collector()
    run = Run(Config(), [], [col], [col])
    for ts, lt, d in open_capture(str(PCAPS / "live-sample.pcap")).packets():
        run.feed(ts, lt, d)
    s = Sensor(run, [], Config(), None, [])
    docs = [SensorStats(1, "sensor", None, s.sensor_counters(time.time_ns())).to_doc(),
            _cap(2, 10, 5).to_doc(), SensorStats(3, "interface_down", "eth1", {"reason": "removed"}).to_doc(),
            SensorStats(4, "config_reload", None, {"reload": {"ok": True, "reloaded": ["X"], "errors": []}}).to_doc()]
    cap = _cap(5, 10, 5)
    cap.details["total"] = {k: 0 for k in ("packets", "bytes", "kernel_packets", "kernel_drops", "sensor_drops",
                                           "truncated", "errors", "skipped_outgoing", "vlan_restored")}
    docs.append(cap.to_doc())
    docs += [a.to_doc() for a in CaptureLossDetector(LiveConfig(loss_alert_min=1)).on_event(_cap(6, 10, 5))]
    declared = _declared()
    objects = [k for k, t in declared.items() if t in ("object", "flattened")]
    for doc in docs:
        for name in _flatten(doc):
            if name.startswith(("otids.stats.", "otids.alert.loss", "otids.alert.lost", "observer.")):
                assert name in declared or any(name.startswith(o + ".") for o in objects), name
    assert docs[0]["otids"]["stats"]["protocol"]["modbus"]["flows"] == 3
    assert docs[1]["event"]["kind"] == "metric" and docs[2]["event"]["kind"] == "event"


# ---------------------------------------------------------------------------------------------- bench-live CPU

def test_cpu_sample_charges_a_busy_process_and_its_threads():
    """ids.live.cpu reads /proc: a child that burns 0.6 CPU-s in a thread between two samples must
    show it under its own label and thread name, an idle sibling almost none, and the machine's total (all
    CPUs) must cover the step's wall time."""
    from ids.live import cpu
    code = ("import sys, threading, time\n"
            "def burn():\n"
            "    end = time.thread_time() + 0.6\n"
            "    while time.thread_time() < end: pass\n"
            "    print('done', flush=True); sys.stdin.readline()\n"
            "sys.stdin.readline()\n"
            "t = threading.Thread(target=burn); t.start(); t.join()\n")
    busy = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)  # both started, blocked on stdin
        kids = cpu.children(os.getpid())
        assert busy.pid in kids and idle.pid in kids, kids
        start = cpu.Sample(busy.pid, [idle.pid], cpu.softirq_threads())
        t0 = time.monotonic()
        busy.stdin.write("\n")
        busy.stdin.flush()
        assert busy.stdout.readline().strip() == "done"
        end = cpu.Sample(busy.pid, [idle.pid], [])
        wall = time.monotonic() - t0
    finally:
        for p in (busy, idle):
            p.kill()
            p.wait()
    d = end - start
    u, s, per = d["procs"]["sensor"]
    assert 0.55 <= u + s <= 0.75, d
    burner = [k for k, (pu, ps) in per.items() if pu + ps >= 0.55]
    assert len(burner) == 1 and burner[0] != f"python3/{busy.pid}", per  # the thread, not the main one
    iu, is_, _ = d["procs"]["worker 1"]
    assert iu + is_ < 0.05, d
    total = sum(d["machine"].values())
    assert 0.6 <= total and abs(total - wall * os.cpu_count()) <= 0.15 * wall * os.cpu_count() + 0.05, (total, wall)
