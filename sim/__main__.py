"""`python -m sim`: record simulated plant traffic with labelled injected changes (see sim/README.md)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import config as simconfig


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m sim", description="Plant simulator for otids.")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    r = sub.add_parser("record", help="record one period of plant traffic to a pcap, with labels",
                       description="Run the plant for DURATION seconds inside a private network namespace, "
                                   "capture it with tcpdump into OUT, inject the named changes, and write "
                                   "OUT.labels.csv and OUT.run.yaml next to it. Needs root, tcpdump, "
                                   "mosquitto and unshare.")
    r.add_argument("-o", "--out", required=True, help="pcap to write")
    r.add_argument("-c", "--config", default=str(simconfig.DEFAULT_CONFIG), help="plant configuration (YAML)")
    r.add_argument("-d", "--duration", type=float, default=90.0, help="seconds of traffic (default 90)")
    r.add_argument("-s", "--seed", type=int, default=1, help="seed for values and schedule phases (default 1)")
    r.add_argument("-i", "--inject", default="", help="comma-separated change names from the config's "
                                                      "`changes` (default none: a clean period); 'all' for every one")
    r.add_argument("--no-netns", action="store_true", help="run in the current network namespace")
    sub.add_parser("list", help="list the changes the configuration can inject")
    args = ap.parse_args(argv)
    if args.cmd is None:
        ap.print_help()
        return 2
    try:
        cfg = simconfig.load(getattr(args, "config", None))
    except simconfig.SimConfigError as e:
        print(f"sim: error: {e}", file=sys.stderr)
        return 2
    if args.cmd == "list":
        for name, ch in (cfg.get("changes") or {}).items():
            proto, rule = simconfig.CHANGE_KINDS[ch["kind"]]
            print(f"{name:22} {ch['kind']:20} {proto:7} at {ch['at']:>5} s  -> {rule}")
        return 0
    names = [n for n in args.inject.split(",") if n]
    if names == ["all"]:
        names = list(cfg.get("changes") or {})
    unknown = [n for n in names if n not in (cfg.get("changes") or {})]
    if unknown:
        print(f"sim: error: unknown change '{unknown[0]}' (sim list shows them)", file=sys.stderr)
        return 2
    late = [n for n in names if cfg["changes"][n]["at"] >= args.duration]
    if late:
        print(f"sim: error: change '{late[0]}' starts at {cfg['changes'][late[0]]['at']} s, after the end "
              f"({args.duration} s)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("sim: error: must run as root (tcpdump, network namespace, port 502)", file=sys.stderr)
        return 2
    from .record import in_private_netns, record, reexec_in_netns
    if not args.no_netns and not in_private_netns():
        return reexec_in_netns(argv)
    out = Path(args.out)
    run = record(cfg, args.config, out, args.duration, args.seed, names)
    print(f"wrote {out} ({out.stat().st_size} bytes), {out.with_suffix('.labels.csv').name} "
          f"({len(names)} change(s)), {out.with_suffix('.run.yaml').name}"
          + (f"; tcpdump: {run['tcpdump']}" if run["tcpdump"] else "")
          + (f"; {run['modbus_errors']} Modbus error responses" if run["modbus_errors"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
