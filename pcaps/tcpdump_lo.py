"""tcpdump on the loopback for the capture generators (make_*.py): armed before the traffic starts ("listening
on" seen), stopped after the last FIN/ACKs drained. One copy for every script; each passes its BPF filter."""
from __future__ import annotations

import select
import signal
import subprocess
import time
from pathlib import Path


def start_tcpdump(out: Path, bpf: str, iface: str = "lo") -> subprocess.Popen:
    """tcpdump writing `out`, returned once it listens; SystemExit naming what it said if it never does."""
    # --immediate-mode: without it libpcap hands packets over in blocks retired after up to a second, and the
    # last block of a run (the closing FIN/ACKs) was lost when SIGINT came within that second
    proc = subprocess.Popen(["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", str(out), bpf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    seen = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tcpdump exited early: {(seen + proc.stderr.read()).strip()}")
        if select.select([proc.stderr], [], [], 0.2)[0]:
            line = proc.stderr.readline()
            seen += line
            if "listening on" in line:
                time.sleep(0.3)  # let the capture settle
                return proc
    proc.terminate()
    raise SystemExit(f"tcpdump not ready after 10 s: {seen.strip()}")


def stop_tcpdump(proc: subprocess.Popen) -> str:
    """Stop after the last FIN/ACKs reach the capture; returns what tcpdump said (its packet counts)."""
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err
