"""`otids bench-live`: figures for the live sensor over a real veth pair (needs root, iproute2, tcpreplay).

  --methods          frames per CPU-second of each way to read an AF_PACKET socket, capture alone
  --rates A,B,...    the sensor at fixed replay rates: drops, and its counters against the kernel's
                     (--workers 1,2: for each worker count; --cpu: where each step's CPU went, ids.live.cpu)
  --minutes N        replay in a loop for N minutes: RSS after the first minute against RSS at the end

Prints figures; asserts nothing (benchmarks are not tests).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..errors import UserError
from . import cpu as cpu_mod
from .netns import ROOT, SensorProcess, VethPair


def _pcap(args, work: Path) -> str:
    if args.pcap:
        if not os.path.isfile(args.pcap):
            raise UserError(f"{args.pcap}: no such capture file")
        return args.pcap
    gen = generator()
    if gen is None:
        raise UserError(f"{ROOT.parent / 'shared/bench/gen_modbus_pcap.py'}: generator not found (give --pcap)")
    out = work / "bench-live.pcap"
    subprocess.run([sys.executable, str(gen), str(out), "96", "100"], check=True, capture_output=True)
    return str(out)


def generator() -> Path | None:
    """../shared/bench/gen_modbus_pcap.py next to the checkout (or next to its parent, for worktrees)."""
    for base in (ROOT.parent, ROOT.parent.parent):
        gen = base / "shared" / "bench" / "gen_modbus_pcap.py"
        if gen.is_file():
            return gen
    return None


def bench_live(args) -> int:
    if os.geteuid() != 0:
        raise UserError("bench-live creates network namespaces: run it as root")
    for tool in ("ip", "tcpreplay"):
        if shutil.which(tool) is None:
            raise UserError(f"bench-live needs {tool} (iproute2, tcpreplay)")
    try:
        workers = sorted({int(x) for x in str(getattr(args, "workers", None) or "1").split(",")})
    except ValueError:
        raise UserError(f"--workers {args.workers!r}: expected worker counts such as 1,2") from None
    if workers[0] < 1:
        raise UserError("--workers: every worker count must be at least 1")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="otids-bench-live-"))
    work.mkdir(parents=True, exist_ok=True)
    pcap = _pcap(args, work)
    n = sum(1 for _ in _frames(pcap))
    print(f"replaying {pcap} ({n:,} frames) over a veth pair; outputs in {work}")
    with VethPair(f"otids-b{os.getpid()}") as veth:
        if args.methods:
            methods(veth, pcap, args.seconds)
        if args.rates:
            best = {}
            for w in workers:
                best[w] = rates(veth, pcap, [int(r) for r in args.rates.split(",")], args.seconds, args.method,
                                work, w, pps_multi=args.pps_multi, timer=args.timer, cpu=args.cpu)
            if len(workers) > 1:
                print("\nhighest rate without drops: " + "; ".join(
                    f"--workers {w}: {f'{b:,} pps' if b else 'none'}" for w, b in best.items()))
        if args.minutes:
            memory(veth, pcap, args.minutes, args.pps, args.method, work)
    return 0


def _frames(pcap: str):
    from ..capture import open_capture
    with open_capture(pcap) as r:
        yield from r.packets()


# ---------------------------------------------------------------------------------------------- methods

_CONSUMER = r'''
import ctypes, json, os, select, sys, time
method, seconds = sys.argv[1], float(sys.argv[2])
got = nbytes = drops = 0
if method in ("ring", "socket"):
    from ids.capture.live import LiveCapture
    c = LiveCapture("rx0", method=method, buffer_mb=64)
    sink = []
    def feed(ts, lt, d):
        global nbytes
        nbytes += len(d)
    step = lambda: c.dispatch(feed, 8192)
    poll = select.poll(); poll.register(c.fileno(), select.POLLIN)
    wait = lambda: poll.poll(100)
    finish = lambda: c.kernel_stats()[1]
elif method == "scapy":
    from scapy.arch.linux import L2ListenSocket
    s = L2ListenSocket(iface="rx0", promisc=True)
    s.ins.setblocking(False)
    def step():
        global nbytes
        n = 0
        while True:
            try:
                _cls, pkt, ts = s.recv_raw(65535)
            except BlockingIOError:
                return n
            nbytes += len(pkt); n += 1
    wait = lambda: select.select([s.ins], [], [], 0.1)
    def finish():
        import struct
        return struct.unpack("II", s.ins.getsockopt(263, 6, 8))[1]
else:
    lib = ctypes.CDLL("libpcap.so.0.8")
    class Hdr(ctypes.Structure):
        _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]
    err = ctypes.create_string_buffer(256)
    lib.pcap_create.restype = ctypes.c_void_p
    p = ctypes.c_void_p(lib.pcap_create(b"rx0", err))
    lib.pcap_set_snaplen(p, 65535); lib.pcap_set_promisc(p, 1); lib.pcap_set_immediate_mode(p, 1)
    lib.pcap_set_buffer_size(p, 64 << 20)
    assert lib.pcap_activate(p) == 0
    lib.pcap_setnonblock(p, 1, err)
    hdr = ctypes.POINTER(Hdr)(); data = ctypes.POINTER(ctypes.c_ubyte)()
    fd = lib.pcap_get_selectable_fd(p)
    def step():
        global nbytes
        n = 0
        while lib.pcap_next_ex(p, ctypes.byref(hdr), ctypes.byref(data)) == 1:
            h = hdr.contents
            b = ctypes.string_at(data, h.caplen)
            nbytes += len(b); n += 1
        return n
    wait = lambda: select.select([fd], [], [], 0.1)
    def finish():
        st = (ctypes.c_uint * 3)()
        lib.pcap_stats(p, st)
        return st[1]
print("ready", flush=True)
t0 = time.monotonic(); c0 = os.times()
quiet = 0
while True:
    wait()
    k = step()
    got += k
    if got and not k:
        quiet += 1
        if quiet > 20: break
    else:
        quiet = 0
    if time.monotonic() - t0 > seconds + 30: break
c1 = os.times()
print(json.dumps({"frames": got, "bytes": nbytes, "drops": finish(), "cpu": (c1.user + c1.system) - (c0.user + c0.system)}))
'''


def methods(veth: VethPair, pcap: str, seconds: float) -> None:
    print(f"\ncapture alone, frames copied out as bytes (replay at top speed, {seconds:g} s per method)")
    print(f"{'method':<8} {'sent':>10} {'received':>10} {'drops':>9} {'CPU s':>7} {'frames/CPU-s':>13}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for m in ("ring", "socket", "scapy", "libpcap"):
        p = subprocess.Popen(veth.in_rx(sys.executable, "-c", _CONSUMER, m, str(seconds)), cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "ready":
            p.kill()
            print(f"{m:<8} did not start")
            continue
        r = veth.replay(pcap, topspeed=True, loop=0, duration=seconds)
        out = json.loads(p.stdout.readline())
        p.wait()
        print(f"{m:<8} {r['sent']:>10,} {out['frames']:>10,} {out['drops']:>9,} {out['cpu']:>7.2f} "
              f"{out['frames'] / max(out['cpu'], 1e-9):>13,.0f}")


# ---------------------------------------------------------------------------------------------- rates

def rates(veth: VethPair, pcap: str, pps_list: list[int], seconds: float, method: str, work: Path,
          workers: int = 1, pps_multi: int = 1, timer: str | None = None, cpu: bool = False) -> int | None:
    """One sensor per rate; prints a row per rate (and with `cpu` where the CPU went); returns the highest
    rate without drops whose counters matched the kernel's, or None."""
    print(f"\nsensor at fixed replay rates ({method}, --workers {workers}; alerts and stats written, not events; "
          f"{seconds:g} s per rate; tcpreplay --pps-multi={pps_multi or 'rate/2000'}{f' --timer={timer}' if timer else ''})")
    print(f"{'pps asked':>9} {'pps kern':>9} {'sent':>9} {'iface rx':>9} {'kernel q':>9} {'analysed':>9} "
          f"{'k.drops':>8} {'s.drops':>8} {'match':>6} {'loss alert':>10}")
    best = None
    for pps in pps_list:
        d = work / f"rate-{pps}-w{workers}"
        d.mkdir(exist_ok=True)
        s = SensorProcess(veth, d, "-q", "--method", method, "--workers", str(workers), events=False)
        try:
            s.wait_ready()
            kids = _workers(s.proc.pid, workers - 1) if cpu else []
            soft = cpu_mod.softirq_threads() if cpu else []
            c0 = cpu_mod.Sample(s.proc.pid, kids, soft) if cpu else None
            base = veth.rx_counter()
            multi = pps_multi or max(1, pps // 2000)
            r = veth.replay(pcap, pps=pps, loop=0, duration=seconds, pps_multi=multi, timer=timer)
            rx = veth.rx_counter() - base
            st = s.wait_frames(rx, 120) or {"total": {}}
            c1 = cpu_mod.Sample(s.proc.pid, kids, soft) if cpu else None
            rx = veth.rx_counter() - base
            s.stop()
        finally:
            s.kill()
        t = s.last_stats()["total"]
        alerts = [json.loads(x) for x in s.alerts.read_text().splitlines()]
        loss = sum(1 for a in alerts if a["rule"]["id"] == "otids.sensor.capture_loss")
        match = t["kernel_packets"] == rx and t["packets"] + t["kernel_drops"] == rx
        # the rate the kernel counted on the capture interface over tcpreplay's own sending time
        kpps = rx / r["seconds"] if r["seconds"] else 0
        print(f"{pps:>9,} {kpps:>9,.0f} {r['sent']:>9,} {rx:>9,} {t['kernel_packets']:>9,} {t['packets']:>9,} "
              f"{t['kernel_drops']:>8,} {t['sensor_drops']:>8,} {'yes' if match else 'NO':>6} {loss:>10}")
        if cpu:
            print(cpu_line(r, c1 - c0))
        if t["kernel_drops"] == 0 and t["sensor_drops"] == 0 and match:
            best = max(best or 0, pps)
    print(f"highest rate without drops (--workers {workers}): {best:,} pps" if best else
          f"drops at every rate tried (--workers {workers})")
    print("pps kern: iface rx over tcpreplay's sending time; iface rx: the kernel's rx_packets of the capture "
          "interface; kernel q: frames the kernel queued for the sensor (PACKET_STATISTICS, drops included); "
          "match: kernel q == iface rx == analysed + k.drops")
    return best


def _workers(pid: int, n: int, timeout: float = 10) -> list[int]:
    """The sensor's forked live workers (its children), once all n are there."""
    end = time.monotonic() + timeout
    while True:
        kids = cpu_mod.children(pid)
        if len(kids) >= n or time.monotonic() > end:
            return kids[:n] if n else []
        time.sleep(0.05)


def cpu_line(r: dict, d: dict) -> str:
    """One step's CPU seconds: tcpreplay's (its rusage: sends, and the veth receive path run in its
    context), every sensor process's by thread, the kernel's softirq threads, and the machine's total."""
    parts = [f"tcpreplay {r['user']:.2f}u+{r['sys']:.2f}s"]
    for label, (u, s, per) in d["procs"].items():
        if label.startswith("ksoftirqd"):
            if u + s >= 0.01:
                parts.append(f"{label} {u + s:.2f}")
            continue
        busy = [f"{n} {pu:.2f}u+{ps:.2f}s" for n, (pu, ps) in per.items() if pu + ps >= 0.05]
        parts.append(f"{label} {u:.2f}u+{s:.2f}s" + (f" ({', '.join(busy)})" if len(busy) > 1 else ""))
    m = d["machine"]
    total = sum(m.values())
    parts.append(f"machine {total:.1f} CPU-s: user {m['user'] + m['nice']:.2f}, sys {m['system']:.2f}, "
                 f"softirq {m['softirq'] + m['irq']:.2f}, idle {m['idle'] + m['iowait']:.2f}")
    return "    CPU s over the step (replay {:.1f} s): ".format(r["wall"]) + "; ".join(parts)


# ---------------------------------------------------------------------------------------------- memory

def memory(veth: VethPair, pcap: str, minutes: float, pps: int, method: str, work: Path) -> None:
    print(f"\nmemory: replaying in a loop at {pps:,} pps for {minutes:g} min ({method}; alerts and stats written)")
    d = work / "memory"
    d.mkdir(exist_ok=True)
    s = SensorProcess(veth, d, "-q", "--method", method, stats_interval=10, events=False)
    samples: list[tuple[float, dict]] = []
    try:
        s.wait_ready()
        base = veth.rx_counter()
        t0 = time.monotonic()
        res: dict = {}
        th = threading.Thread(target=lambda: res.update(veth.replay(pcap, pps=pps, loop=0, duration=minutes * 60)))
        th.start()
        every = 10 if minutes <= 10 else 60
        while th.is_alive():
            th.join(every)
            samples.append((time.monotonic() - t0, s.memory_kb()))
            el, m = samples[-1]
            print(f"  {el / 60:6.1f} min  RSS {m['VmRSS'] / 1024:7.1f} MiB (anon {m['RssAnon'] / 1024:.1f}, "
                  f"file {m['RssFile'] / 1024:.1f}, shmem/ring {m['RssShmem'] / 1024:.1f})", flush=True)
        s.wait_frames(veth.rx_counter() - base, 120)
        end = s.memory_kb()
        s.stop()
    finally:
        s.kill()
    first = next((m for el, m in samples if el >= 60), samples[0][1] if samples else end)
    t = s.last_stats()["total"]
    for k, label in (("VmRSS", "RSS"), ("RssAnon", "anonymous RSS (heap)")):
        print(f"{label} after the first minute {first[k] / 1024:.1f} MiB, at the end {end[k] / 1024:.1f} MiB "
              f"({(end[k] - first[k]) / max(first[k], 1):+.1%}); peak {max(m[k] for _, m in samples) / 1024:.1f} MiB")
    print(f"sent {res.get('sent', 0):,} frames; analysed {t['packets']:,}, kernel drops {t['kernel_drops']:,}, "
          f"sensor drops {t['sensor_drops']:,}")
