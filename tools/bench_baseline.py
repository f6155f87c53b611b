#!/usr/bin/env python3
"""Benchmark of the baseline and the asset inventory: prints figures, asserts nothing.

Generates a capture with ../shared/bench/gen_modbus_pcap.py (default 100 connections x 1000 transactions,
~200k packets), then times on it: the pipeline alone, `otids assets`, `otids learn`, and `otids analyze
--baseline` with the baseline learned from the same capture (the every-check-passes path, which is the
common one). Figures: packets/s and Modbus transactions/s (median of --runs), peak RSS of this process.

usage: python tools/bench_baseline.py [--connections N] [--txns N] [--runs N] [--pcap FILE]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ids.config import Config  # noqa: E402
from ids.pipeline import Run  # noqa: E402


class Count:
    def __init__(self):
        self.n = 0

    def on_event(self, ev):
        self.n += 1

    def flush(self, ts):
        return None


def timed(make_detectors, pcap: str, runs: int) -> tuple[float, object, list]:
    times, last = [], None
    for _ in range(runs):
        dets = make_detectors()
        run = Run(Config(), dets, [], [])
        t0 = time.perf_counter()
        run.analyze_file(pcap)
        run.finish()
        times.append(time.perf_counter() - t0)
        last = (run, dets)
    return statistics.median(times), last[0], last[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--txns", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pcap")
    args = ap.parse_args()
    from ids.assets import Inventory
    from ids.commands.assets import InventoryDetector
    from ids.detect.baseline import document
    from ids.detect.baseline.enforcer import BaselineDetector
    from ids.detect.baseline.learner import Learner, LearnerDetector

    with tempfile.TemporaryDirectory() as tmp:
        pcap = args.pcap
        if not pcap:
            pcap = os.path.join(tmp, "bench.pcap")
            gen = ROOT.parent / "shared" / "bench" / "gen_modbus_pcap.py"
            subprocess.run([sys.executable, str(gen), pcap, str(args.connections), str(args.txns)], check=True,
                           stdout=subprocess.DEVNULL)
        base, run, (cnt,) = timed(lambda: [Count()], pcap, args.runs)
        txns = cnt.n
        learner_box = []

        def mk_learn():
            lr = Learner(Config().baseline)
            learner_box[:] = [lr]
            return [LearnerDetector(lr)]

        t_learn, _, _ = timed(mk_learn, pcap, args.runs)
        b = document.parse(learner_box[-1].baseline().dump(), "bench.yaml")
        t_assets, _, _ = timed(lambda: [InventoryDetector(Inventory())], pcap, args.runs)
        t_enf, run_e, (det,) = timed(lambda: [BaselineDetector(b, Config().baseline)], pcap, args.runs)
        npk = int(subprocess.run(["capinfos", "-c", "-M", pcap], capture_output=True, text=True).stdout
                  .split("Number of packets:")[-1].split()[0]) if _have("capinfos") else None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"capture: {pcap} ({os.path.getsize(pcap) / 1e6:.1f} MB, {npk or '?'} packets, {txns} events)")
        for name, t in (("pipeline only", base), ("+ asset inventory", t_assets), ("+ learn", t_learn),
                        ("+ baseline enforce", t_enf)):
            extra = f", +{(t - base) / txns * 1e6:.2f} us/event over the pipeline" if name != "pipeline only" else ""
            print(f"{name:20} {t:7.2f} s  {txns / t:10,.0f} events/s" + (f"  {npk / t:10,.0f} packets/s" if npk else "")
                  + extra)
        print(f"baseline: {b.count()} entries; alerts on its own capture: {det.stats['alerts']}; "
              f"peak RSS {rss:.0f} MB; median of {args.runs} run(s)")
    return 0


def _have(tool: str) -> bool:
    from shutil import which
    return which(tool) is not None


if __name__ == "__main__":
    sys.exit(main())
