"""`otids live`: watch one or more interfaces (span/mirror ports) with the same detection and outputs as
`otids analyze`, and `otids bench-live`: the measurements behind docs/LIVE.md.

Start-up order matters: open the capture sockets and every output as root, then drop to the configured
user keeping at most CAP_NET_RAW, then say "capturing" (scripts and tests wait for that line).
"""
from __future__ import annotations

import sys

from ..config import load_config
from ..errors import UserError


def register(sub) -> None:
    from ..cli import add_run_arguments

    p = sub.add_parser("live", help="monitor network interfaces (span/mirror ports) continuously",
                       description="Capture from one or more interfaces (AF_PACKET, promiscuous, kernel BPF "
                                   "filter) and run the same detection and outputs as `analyze` until SIGTERM. "
                                   "SIGHUP reloads rules, baseline and other config-driven detectors. Counters "
                                   "are printed and written as otids.stats events every stats interval.",
                       epilog="See docs/LIVE.md (privileges, offloads, deployment).")
    p.add_argument("-i", "--interface", action="append", metavar="IFACE",
                   help="interface to capture on (repeat for several; default: live.interfaces)")
    p.add_argument("--bpf", metavar="FILTER", help="kernel capture filter, tcpdump syntax (default: live.bpf)")
    p.add_argument("--method", choices=("ring", "socket"), help="capture method (default: live.method, ring)")
    p.add_argument("--user", metavar="USER", help="drop root to this user after opening the capture "
                                                   "(default: live.user)")
    p.add_argument("--stats", metavar="FILE", help="also write the otids.stats events to this NDJSON file")
    p.add_argument("--stats-interval", type=int, metavar="SECONDS",
                   help="seconds between counters (default: live.stats_interval)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes to analyse with (default 1): the kernel divides the traffic among them "
                        "by host pair (PACKET_FANOUT_CBPF); see docs/PERFORMANCE.md")
    add_run_arguments(p)
    p.set_defaults(func=cmd_live)

    b = sub.add_parser("bench-live", help="measure the live sensor over a veth pair (needs root)",
                       description="Create two network namespaces joined by a veth pair, replay a capture into "
                                   "one end with tcpreplay and run `otids live` on the other. --rates: find the "
                                   "highest rate without drops and compare drop counters with the kernel's; "
                                   "--minutes: replay in a loop and compare RSS after the first minute with "
                                   "RSS at the end; --methods: frames/s of each capture method alone.")
    b.add_argument("--pcap", help="capture to replay (default: generated with ../shared/bench/gen_modbus_pcap.py)")
    b.add_argument("--rates", metavar="PPS,...", help="replay rates (packets/s) to try, e.g. 2000,5000,10000")
    b.add_argument("--seconds", type=float, default=10, help="length of each rate step (default 10)")
    b.add_argument("--minutes", type=float, help="memory run: replay in a loop for this long")
    b.add_argument("--pps", type=int, default=2000, help="rate of the memory run (default 2000)")
    b.add_argument("--methods", action="store_true", help="capture-only frames/s per method")
    b.add_argument("--method", choices=("ring", "socket"), default="ring")
    b.add_argument("--workers", default="1", metavar="N,...",
                   help="--rates with each of these worker counts, e.g. 1,2 (default 1)")
    b.add_argument("--pps-multi", type=int, default=0, metavar="N",
                   help="tcpreplay sends N packets per timing slice (its --pps-multi; default: a slice per "
                        "half millisecond, rate/2000)")
    b.add_argument("--timer", choices=("select", "ioport", "gtod", "nano"), default="nano",
                   help="tcpreplay's timing mode (default nano: it sleeps between slices instead of spinning)")
    b.add_argument("--cpu", action="store_true", help="print each rate step's CPU seconds per process and thread")
    b.add_argument("--workdir", help="keep outputs here (default: a temp dir)")
    b.set_defaults(func=cmd_bench_live)


def cmd_live(args) -> int:
    from ..capture.live import LiveCapture, link_offloads
    from ..cli import build_run, close_outputs
    from ..detect.loss import CaptureLossDetector
    from ..flow import budget
    from ..output.ndjson import NdjsonSink
    from ..live.evidence import EvidenceRing
    from ..live.privs import drop_privileges
    from ..live.sensor import Sensor, log

    config = load_config(args.config)
    lc = config.live
    ifaces = args.interface or lc.interfaces
    if not ifaces:
        raise UserError("no interface to capture on: give -i IFACE or set live.interfaces")
    if len(set(ifaces)) != len(ifaces):
        raise UserError(f"interface given twice: {', '.join(sorted({i for i in ifaces if ifaces.count(i) > 1}))}")
    bpf = args.bpf if args.bpf is not None else lc.bpf
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    if args.workers > 1 and lc.evidence_mb:
        raise UserError("live.evidence_mb (the evidence ring) works with one process only: use --workers 1")
    caps: list[LiveCapture] = []
    # live.buffer_mb is the sensor's buffer per interface: with N processes in one fanout group each receives
    # about 1/N of the frames and maps 1/N of it (each mapped whole into its RSS; N full rings came to more
    # than limits.memory_total before)
    ring_mb = max(2, -(-lc.buffer_mb // args.workers))
    try:
        for name in ifaces:
            caps.append(LiveCapture(name, bpf=bpf or None, promisc=lc.promiscuous, method=args.method or lc.method,
                                    buffer_mb=ring_mb, snaplen=lc.snaplen, block_timeout_ms=lc.block_timeout_ms))
        run = build_run(args, config)
    except BaseException:
        for c in caps:
            c.close()
        raise
    run.engine.detectors.append(CaptureLossDetector(lc))
    run.engine.reroute()
    stats_sinks: list = []
    sensors: list[Sensor] = []
    workers = None
    evidence = None
    try:
        if args.stats:
            stats_sinks.append(NdjsonSink(args.stats, "stats"))
        if lc.evidence_mb:
            evidence = EvidenceRing(lc.evidence_mb << 20, lc.evidence_dir, lc.evidence_after, lc.evidence_max_files,
                                    [(c.name, c.linktype, c.snaplen) for c in caps])
            run.engine.alert_sinks.append(evidence)
        for c in caps:
            off = [o for o in link_offloads(c.name) if c.hatype != 772]
            if off:
                log(f"{c.name}: {', '.join(o.upper() for o in off)} is on: the kernel merges segments before "
                    f"capture, which breaks reassembly; run `ethtool -K {c.name} gro off lro off`")
        if args.workers > 1:  # capture sockets are opened here, before privileges go
            from ..parallel.live import LiveWorkers
            workers = LiveWorkers(run, caps, args.workers)
            workers.start()
        elif budget.SHARED is not None:  # the tables' total, less the rings this process holds (budget.live_share)
            from ..parallel.live import ring_bytes
            budget.SHARED.limit = budget.live_share(config.limits.memory_total, 1,
                                                    ring_bytes(caps) + (lc.evidence_mb << 20))
        log(drop_privileges(args.user or lc.user, lc.keep_net_raw))
        if evidence is not None:
            evidence.check_writable()
        sensor = Sensor(run, caps, config, args.config, stats_sinks, evidence, quiet=args.quiet,
                        stats_interval=args.stats_interval)
        sensors.append(sensor)
        if workers is not None:
            sensor.extra.update(workers.fds())
            sensor.before_finish.append(workers.drain)
        per = f"{lc.buffer_mb} MB per interface" + (f" ({ring_mb} MB in each of {args.workers} processes)"
                                                     if args.workers > 1 else "")
        rc = sensor.serve(f"capturing on {', '.join(c.name for c in caps)} ({caps[0].method}, {per}"
                          f"{', filter ' + repr(bpf) if bpf else ''}"
                          f"{', promiscuous' if lc.promiscuous else ''})")
    finally:
        if workers is not None:
            workers.close()
        for c in caps:
            c.close()
        close_outputs(run)
        for s in stats_sinks:
            s.close()
        for sensor in sensors:
            sensor.restore_signals()
    tot = sum(c.packets for c in caps)
    log(f"stopped: {tot:,} frames, {sum(c.kernel_drops for c in caps):,} kernel drops, "
        f"{sum(c.sensor_drops for c in caps):,} sensor drops; " +
        "; ".join(f"wrote {n:,} document(s) to {p}" for p, n in run.outputs))
    return rc


def cmd_bench_live(args) -> int:
    from ..live.bench import bench_live
    return bench_live(args)


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main
    sys.exit(main())
