"""`otids bench`: the full pipeline against tshark on the same captures, in the same run.

Two workloads: the 1M-packet reference capture from ../shared/bench/gen_modbus_pcap.py (498 connections x
1000 transactions, 999,486 packets) unless --pcap is given, and a mixed Modbus/TCP + OPC UA + MQTT capture
from bench/gen_mixed_pcap.py (--no-mixed skips it). On each it times tshark, `otids analyze` in one process
in pure Python (OTIDS_PURE=1, which makes ids import its pure-Python modules even where compiled ones are
installed), in one process as installed, in one process writing every event, and with --workers 2 up to the
machine's cores, each in its own process, and prints packets/s, the ratio to tshark, the CPU seconds of
the whole process tree and the peak RSS summed over it (workers included; sampled from /proc, and never
below wait4's own figure for the top process). Figures only: no pass/fail; the issue's targets are read off the ratios.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..errors import UserError

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _measure(cmd: list[str], env: dict | None = None) -> tuple[float, int, float]:
    """Run cmd with stdout discarded; return (wall seconds, peak RSS bytes of its process tree, CPU seconds
    of the tree: wait4's rusage counts every descendant the command waited for, as it does its workers)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=None if env is None else {**os.environ, **env})
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], sum(_rss(x) for x in _tree(p.pid)))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(p.stderr.read() if p.stderr else b""), daemon=True)
    reader.start()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    done.set()
    th.join()
    reader.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    err = b"".join(err_chunks).decode(errors="replace")
    if p.returncode != 0:
        raise UserError(f"benchmark command failed (exit {p.returncode}): {' '.join(cmd)}: {err.strip()[-300:]}")
    return dt, max(peak[0], ru.ru_maxrss * 1024), ru.ru_utime + ru.ru_stime


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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _site_rules(pcap: str, n: int, out: str) -> tuple[int, str] | None:
    """n rules of the shape a large site or an exported baseline writes (one function, one register address,
    one host each; `otids rules bench --site` describes them), drawn from the capture's own hosts and
    addresses and written as a rule file, for the row that measures the rules engine at site scale."""
    if n <= 0:
        return None
    path = os.path.join(out, "site-rules.yml")
    # in a process of its own: sampling the capture grows this one, and a child's peak RSS (wait4) starts
    # from what its parent held when it forked (every row after would show this process's ~85 MB)
    p = subprocess.run([sys.executable, "-c", "import sys; from ids.detect.rules.bench import _sample, site_matches, "
                        "site_yaml; open(sys.argv[3], 'w', encoding='utf-8').write(site_yaml(site_matches("
                        "int(sys.argv[2]), _sample(sys.argv[1]))))", pcap, str(n), path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{pcap}: writing {n:,} site rules from it failed (exit {p.returncode}): {last}")
    return n, path


def _workload(name: str, pcap: str, tshark: list[str], args, out: str,
              site: tuple[int, str] | None = None) -> None:
    npk = _count_packets(pcap)
    size = os.path.getsize(pcap)
    me = [sys.executable, "-m", "ids.cli", "analyze", pcap, "-q", "-o", os.path.join(out, "alerts.ndjson")]
    one = me + ["--workers", "1"]
    cmds: dict[str, tuple[list[str], dict | None]] = {
        "tshark": (tshark, None),
        "otids 1 process, pure Python": (one, {"OTIDS_PURE": "1"}),
        "otids 1 process, as installed": (one, None),
        "otids 1 process, + every event": (one + ["--events", os.path.join(out, "events.ndjson")], None),
    }
    if site is not None:
        cmds[f"otids 1 process, + {site[0]:,} site rules"] = (one + ["--rules", site[1]], None)
    top = max(2, args.max_workers or _cores())
    for n in range(2, top + 1):
        cmds[f"otids --workers {n}"] = (me + ["--workers", str(n)], None)
    results = {}
    for label, (cmd, env) in cmds.items():
        runs = [_measure(cmd, env) for _ in range(max(1, args.runs))]
        results[label] = (statistics.median(r[0] for r in runs), max(r[1] for r in runs),
                          statistics.median(r[2] for r in runs))
    ts_time = results["tshark"][0]
    print(f"{name}: {pcap} ({npk:,} packets, {size / 1e6:.1f} MB); median of {max(1, args.runs)} run(s); "
          f"{_cores()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    print(f"  {'command':38s} {'seconds':>8s} {'packets/s':>11s} {'vs tshark':>9s} {'CPU s':>7s} {'peak RSS':>9s}")
    for label, (t, rss, cpu) in results.items():
        print(f"  {label:38s} {t:8.2f} {npk / t:11,.0f} {ts_time / t:8.2f}x {cpu:7.2f} {rss / 1e6:7.0f}MB")
    if site is not None:
        rl, base = results[f"otids 1 process, + {site[0]:,} site rules"][0], results["otids 1 process, as installed"][0]
        print(f"  {site[0]:,} site rules keep {base / rl:.0%} of the no-rules throughput (one process, same run)")
    print("  (ran: tshark -r PCAP " + " ".join(repr(a) if " " in a else a for a in tshark[3:]) + ")")
    sys.stdout.flush()


def _generate(cmd: list[str]) -> None:
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{cmd[1]}: the capture generator failed (exit {p.returncode}): {last}")


def cmd_bench(args) -> int:
    tshark = shutil.which("tshark")
    if tshark is None:
        raise UserError("tshark is not installed (apt-get install tshark): the benchmark compares against it")
    tmp = None
    gen = None
    if args.pcap:
        pcap = args.pcap
        if not os.path.isfile(pcap):
            raise UserError(f"{pcap}: no such capture file")
    else:
        gen = _find_generator(args.generator)
    work = args.workdir or (tmp := tempfile.mkdtemp(prefix="otids-bench-"))
    try:
        os.makedirs(work, exist_ok=True)
    except OSError as e:
        raise UserError(f"{work}: cannot create the work directory: {e.strerror}") from None
    if gen is not None:
        pcap = os.path.join(work, f"bench-{args.connections}x{args.txns}.pcap")
        if not os.path.isfile(pcap):
            print(f"generating {pcap} with {gen} {args.connections} {args.txns} ...", file=sys.stderr)
            _generate([sys.executable, str(gen), pcap, str(args.connections), str(args.txns)])
    out = tempfile.mkdtemp(prefix="otids-bench-out-")
    try:
        _workload("reference (Modbus/TCP)", pcap,
                  [tshark, "-r", pcap, "-Y", "modbus", "-T", "fields", "-e", "modbus.func_code"], args, out,
                  _site_rules(pcap, args.site_rules, out))
        if args.mixed:
            mixed = os.path.join(work, f"mixed-{args.mixed}.pcap")
            if not os.path.isfile(mixed):
                mgen = Path(__file__).resolve().parents[2] / "bench" / "gen_mixed_pcap.py"
                if not mgen.is_file():
                    raise UserError(f"{mgen}: missing (the mixed workload's generator); use --no-mixed")
                c, t, o, m = args.mixed.split(",")
                print(f"generating {mixed} with {mgen} ...", file=sys.stderr)
                cmd = [sys.executable, str(mgen), mixed, "--modbus", f"{c}x{t}", "--opcua", o, "--mqtt", m]
                if gen is not None:
                    cmd += ["--generator", str(gen)]
                _generate(cmd)
            _workload("mixed (Modbus/TCP + OPC UA + MQTT)", mixed,
                      [tshark, "-r", mixed, "-Y", "modbus || opcua || mqtt", "-T", "fields", "-e", "frame.number"],
                      args, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if tmp and not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def add_arguments(b) -> None:
    """The options beyond the reference capture's (cli.py declares those)."""
    b.add_argument("--site-rules", type=int, default=5000, metavar="N",
                   help="also run the reference capture with N site-shaped rules (one function, register and host "
                   "each, as `otids rules bench --site` writes them; 0: skip)")
    b.add_argument("--max-workers", type=int, default=None, metavar="N",
                   help="measure --workers 2 .. N (default: the machine's cores, at least 2)")
    b.add_argument("--mixed", default="50,1000,1000,500", metavar="C,T,OPCUA,MQTT",
                   help="second workload: Modbus connections, transactions each, OPC UA and MQTT sessions "
                        "(bench/gen_mixed_pcap.py; default 50,1000,1000,500)")
    b.add_argument("--no-mixed", dest="mixed", action="store_const", const="", help="reference capture only")
