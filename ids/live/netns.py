"""A real network for tests and benchmarks of the live sensor: two network namespaces joined by a veth
pair (iproute2), tcpreplay sending into one end, `otids live` capturing on the other, and the kernel's
own interface counters to check the sensor's against. Needs root.

Everything created here is named after the owner's tag and removed by close(), which is safe to call
twice and after a partial setup.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class VethPair:
    """Namespaces `<tag>-tx` (interface tx0) and `<tag>-rx` (interface rx0), IPv6 off so the kernel
    sends nothing of its own (router solicitations, DAD) onto the link."""

    def __init__(self, tag: str, mtu: int = 9000):
        self.tx_ns, self.rx_ns = f"{tag}-tx", f"{tag}-rx"
        self.tx, self.rx = "tx0", "rx0"
        self.mtu = mtu

    def __enter__(self) -> "VethPair":
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def setup(self) -> None:
        self.close()  # leftovers of a run that was killed
        for ns in (self.tx_ns, self.rx_ns):
            _ip("netns", "add", ns)
            for k in ("all", "default"):
                _ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1")
        self.setup_link()

    def setup_link(self) -> None:
        """(Re)create the veth pair between the two namespaces."""
        _ip("link", "add", self.tx, "netns", self.tx_ns, "mtu", str(self.mtu), "type", "veth",
            "peer", "name", self.rx, "netns", self.rx_ns, "mtu", str(self.mtu))
        _ip("-n", self.tx_ns, "link", "set", self.tx, "up")
        _ip("-n", self.rx_ns, "link", "set", self.rx, "up")

    def close(self) -> None:
        for ns in (self.tx_ns, self.rx_ns):
            _ip("netns", "del", ns, check=False)

    def in_rx(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.rx_ns, *cmd]

    def in_tx(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.tx_ns, *cmd]

    def rx_counter(self, name: str = "rx_packets") -> int:
        """The kernel's count for the capture interface (frames that reached the packet taps)."""
        p = subprocess.run(self.in_rx("cat", f"/sys/class/net/{self.rx}/statistics/{name}"),
                           capture_output=True, text=True, check=True)
        return int(p.stdout)

    def link(self, state: str) -> None:
        _ip("-n", self.rx_ns, "link", "set", self.rx, state)

    def replay(self, pcap: str, pps: int | None = None, loop: int = 1, topspeed: bool = False,
               duration: float | None = None, pps_multi: int = 1, timer: str | None = None) -> dict:
        """tcpreplay into tx0; returns its counts {'sent', 'failed', 'seconds', 'rate_pps'}, the wall time
        of the call ('wall') and tcpreplay's own CPU seconds ('user', 'sys': its rusage; with no IRQ time
        accounting the sys part includes the veth receive path and the packet taps that run in its context).

        pps_multi: packets sent per timing slice (tcpreplay --pps-multi); timer: tcpreplay --timer mode."""
        cmd = ["tcpreplay", "-i", self.tx]
        if loop != 1:
            cmd.append("--preload-pcap")
        if topspeed:
            cmd.append("--topspeed")
        elif pps:
            cmd.append(f"--pps={pps}")
            if pps_multi > 1:
                cmd.append(f"--pps-multi={pps_multi}")
        if timer:
            cmd.append(f"--timer={timer}")
        if loop != 1:
            cmd.append(f"--loop={loop}")
        if duration:
            cmd.append(f"--duration={max(1, int(duration))}")
        cmd.append(pcap)
        t0 = time.monotonic()
        # `ip netns exec` execs tcpreplay in place: the child's rusage is tcpreplay's
        p = subprocess.Popen(self.in_tx(*cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = p.stdout.read()
        p.stdout.close()
        _pid, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError(f"tcpreplay failed (rc {p.returncode}): {out.strip()[-500:]}")
        def num(pat: str) -> float:
            m = re.search(pat, out)
            return float(m.group(1).replace(",", "")) if m else 0.0
        return {"sent": int(num(r"Successful packets:\s+([\d,]+)")), "failed": int(num(r"Failed packets:\s+([\d,]+)")),
                "seconds": num(r"Actual: [\d,]+ packets \([\d,]+ bytes\) sent in ([\d.]+) seconds"),
                "rate_pps": num(r"Rated: [\d.,]+ Bps, [\d.,]+ Mbps, ([\d.,]+) pps"), "output": out,
                "wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime}


class SensorProcess:
    """`python -m ids.cli live -i rx0 ...` inside the rx namespace, started and stopped like a service."""

    def __init__(self, veth: VethPair, workdir: Path, *extra: str, stats_interval: int = 1, events: bool = True):
        self.veth = veth
        self.dir = Path(workdir)
        self.alerts = self.dir / "alerts.ndjson"
        self.events = self.dir / "events.ndjson"
        self.stats = self.dir / "stats.ndjson"
        cmd = veth.in_rx(sys.executable, "-m", "ids.cli", "live", "-i", veth.rx, "-o", str(self.alerts),
                         *(("--events", str(self.events)) if events else ()), "--stats", str(self.stats),
                         "--stats-interval", str(stats_interval), *extra)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "capturing on" in line:
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 30) -> None:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError(f"sensor did not start:\n{self.output}")

    def last_stats(self) -> dict | None:
        """The newest per-interface counters the sensor wrote (its stats file is flushed every second)."""
        try:
            lines = self.stats.read_text().splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            d = json.loads(line)
            if d["event"]["action"] == "capture":
                return d["otids"]["stats"]
        return None

    def wait_frames(self, n: int, timeout: float = 60) -> dict | None:
        """Wait until the sensor has accounted for n frames (handed on or dropped)."""
        end = time.monotonic() + timeout
        st = None
        while time.monotonic() < end:
            st = self.last_stats()
            if st and st["total"]["packets"] + st["total"]["kernel_drops"] >= n:
                return st
            time.sleep(0.25)
        return st

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(5)
        return rc

    def rss_kb(self) -> int:
        return self.memory_kb()["VmRSS"]

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and its parts: RssAnon (the Python heap: where a leak shows), RssFile, RssShmem."""
        out = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                k = line.split(":", 1)[0]
                if k in out:
                    out[k] = int(line.split()[1])
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def tool_path(name: str) -> str | None:
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None
