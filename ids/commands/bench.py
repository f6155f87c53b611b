"""`otids bench`: the full pipeline against tshark on the same capture, in the same run.

Makes the reference capture with ../shared/bench/gen_modbus_pcap.py (498 connections x 1000 transactions,
999,486 packets) unless --pcap is given, then times `otids analyze` (alerts only, and alerts + every event)
and `tshark -r PCAP -Y modbus -T fields -e modbus.func_code`, each in its own process, and prints packets/s,
the ratio to tshark and the peak RSS of each (from wait4's rusage of that very process). Figures only: no
pass/fail here; the issue's targets are read off the printed ratios.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import UserError


def _measure(cmd: list[str]) -> tuple[float, int, int]:
    """Run cmd with stdout discarded; return (wall seconds, peak RSS bytes, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode != 0:
        raise UserError(f"benchmark command failed (exit {p.returncode}): {' '.join(cmd)}: {err.strip()[-300:]}")
    return dt, ru.ru_maxrss * 1024, p.returncode


def _find_generator(given: str | None) -> Path:
    cands = [Path(given)] if given else [Path.cwd() / "../shared/bench/gen_modbus_pcap.py",
                                         Path(__file__).resolve().parents[3] / "shared/bench/gen_modbus_pcap.py"]
    for c in cands:
        if c.is_file():
            return c.resolve()
    raise UserError("cannot find gen_modbus_pcap.py (looked in ../shared/bench/); pass --generator PATH or --pcap FILE")


def _count_packets(path: str) -> int:
    from ..capture import open_capture
    with open_capture(path) as r:
        return sum(1 for _ in r.packets())


def cmd_bench(args) -> int:
    tshark = shutil.which("tshark")
    if tshark is None:
        raise UserError("tshark is not installed (apt-get install tshark): the benchmark compares against it")
    tmp = None
    if args.pcap:
        pcap = args.pcap
        if not os.path.isfile(pcap):
            raise UserError(f"{pcap}: no such capture file")
    else:
        gen = _find_generator(args.generator)
        work = args.workdir or (tmp := tempfile.mkdtemp(prefix="otids-bench-"))
        pcap = os.path.join(work, f"bench-{args.connections}x{args.txns}.pcap")
        if not os.path.isfile(pcap):
            print(f"generating {pcap} with {gen} {args.connections} {args.txns} ...", file=sys.stderr)
            subprocess.run([sys.executable, str(gen), pcap, str(args.connections), str(args.txns)], check=True)
    try:
        npk = _count_packets(pcap)
        size = os.path.getsize(pcap)
        out = tempfile.mkdtemp(prefix="otids-bench-out-")
        me = [sys.executable, "-m", "ids.cli", "analyze", pcap, "-q", "-o", os.path.join(out, "alerts.ndjson")]
        cmds = {
            "otids analyze (alerts)": me,
            "otids analyze (alerts + all events)": me + ["--events", os.path.join(out, "events.ndjson")],
            "tshark -Y modbus -T fields": [tshark, "-r", pcap, "-Y", "modbus", "-T", "fields", "-e", "modbus.func_code"],
        }
        results = {}
        for name, cmd in cmds.items():
            runs = [_measure(cmd) for _ in range(max(1, args.runs))]
            results[name] = (statistics.median(r[0] for r in runs), max(r[1] for r in runs))
        shutil.rmtree(out, ignore_errors=True)
    finally:
        if tmp and not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    ts_time = results["tshark -Y modbus -T fields"][0]
    print(f"capture: {pcap} ({npk:,} packets, {size / 1e6:.1f} MB); median of {max(1, args.runs)} run(s); "
          f"{os.cpu_count()} CPU(s)")
    print(f"{'command':40s} {'seconds':>8s} {'packets/s':>11s} {'vs tshark':>9s} {'peak RSS':>9s}")
    for name, (t, rss) in results.items():
        print(f"{name:40s} {t:8.2f} {npk / t:11,.0f} {ts_time / t:8.2f}x {rss / 1e6:7.0f}MB")
    return 0
