#!/usr/bin/env python3
"""Figures for docs/REPORT.md: size and time of `otids report` next to the analysis itself and tshark, on
one capture (default: the 1M-packet reference capture, made with ../shared/bench/gen_modbus_pcap.py).
Each command runs once, one after the other, in this process's machine state; wall time and peak RSS come
from wait4 (the same as `otids bench`).

usage: python3 tools/bench_report.py PCAP [extra otids options, e.g. --rules rules/]
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    if p.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)}: exit {p.returncode}: {err}")
    return time.perf_counter() - t0, ru.ru_maxrss // 1024


def main() -> None:
    pcap, extra = sys.argv[1], sys.argv[2:]
    otids = [sys.executable, "-m", "ids.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        a, ev, r1, r2 = (os.path.join(tmp, n) for n in ("a.ndjson", "e.ndjson", "r1.html", "r2.html"))
        rows = [
            ("tshark -Y modbus -T fields -e modbus.func_code",
             timed(["tshark", "-r", pcap, "-Y", "modbus", "-T", "fields", "-e", "modbus.func_code"])),
            ("otids analyze (alerts)", timed([*otids, "analyze", pcap, "-o", a, "-q", *extra])),
            ("otids analyze (alerts + events)", timed([*otids, "analyze", pcap, "-o", a, "--events", ev, "-q", *extra])),
            ("otids report PCAP", timed([*otids, "report", pcap, "-o", r1, *extra])),
            ("otids report --from alerts --events", timed([*otids, "report", "--from", a, "--events", ev, "-o", r2])),
        ]
        base = rows[0][1][0]
        print(f"capture {pcap}: {os.path.getsize(pcap):,} bytes; events {os.path.getsize(ev):,} bytes")
        for name, (sec, rss) in rows:
            print(f"{name:40s} {sec:7.2f} s  ({sec / base:4.2f}x tshark)  peak RSS {rss:,} MB")
        print(f"report size {os.path.getsize(r1):,} bytes (PCAP) / {os.path.getsize(r2):,} bytes (--from)")


if __name__ == "__main__":
    main()
