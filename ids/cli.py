"""Command line: `otids analyze`, `otids bench`, `otids version`. Reads top to bottom as the pipeline:
config -> sinks -> detectors -> run over the captures -> summary.

User mistakes (missing files, bad config, damaged captures) end in one line on stderr naming the file
and the place, never a traceback. Exit codes: 0 done; 1 done, but some input was damaged (what came
before the damage was analysed); 2 nothing analysed (usage, config or output error).
"""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .config import load_config
from .errors import UserError, missing_captures

EXIT_OK, EXIT_DAMAGED, EXIT_USAGE = 0, 1, 2
EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE: a bug of otids, not of the input

#: Further subcommands: modules with `register(subparsers)`, which adds a parser and sets its handler with
#: `parser.set_defaults(func=handler)`; handler(args) returns an exit code.
COMMANDS: list[str] = ["ids.commands.es", "ids.commands.assets", "ids.commands.baseline",
                       "ids.commands.rules", "ids.commands.auth", "ids.commands.ml",
                       "ids.commands.live", "ids.commands.report",
                       "ids.commands.bench_hostile"]

#: Extensions of `analyze` and `live` (rules, baseline, ML, certificate checks, Elasticsearch): modules with
#: `add_arguments(parser)` and `build(args, config) -> (detectors, alert_sinks, event_sinks)`.
#: Reload hook (`otids live` on SIGHUP): a detector or sink with `reload(config)` re-reads its files
#: (rules, baseline, registry) with the freshly loaded config; when they are bad it raises UserError and
#: keeps what it had, and the sensor reports the error and goes on with the old ones.
ANALYZE_PLUGINS: list[str] = ["ids.commands.es", "ids.commands.baseline", "ids.commands.rules",
                              "ids.commands.auth", "ids.commands.ml",
                              "ids.protocols.mqtt.sparkplug.detector", "ids.commands.network"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="otids",
        description="Passive security monitor and IDS for industrial networks (Modbus/TCP, OPC UA, MQTT).",
        epilog="Exit codes: 0 done, 1 done but some capture was damaged, 2 nothing analysed (bad usage, config "
               "or output). See README.md.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("analyze", help="analyse capture files and write alerts (and events)",
                       description="Analyse pcap/pcapng files (optionally gzip-compressed) as one continuous "
                                   "capture, in the order given, and write alerts as ECS NDJSON.")
    a.add_argument("pcaps", nargs="+", metavar="PCAP", help="capture files (pcap, pcapng, .gz)")
    add_run_arguments(a)
    a.add_argument("--deep", action="store_true",
                   help="also ask tshark (in its own process) to name flows nDPI and otids' probes cannot")
    from .parallel.options import add_workers_argument
    add_workers_argument(a)

    b = sub.add_parser("bench", help="benchmark the pipeline against tshark on the reference capture",
                       description="Generate the 1M-packet reference capture with ../shared/bench/gen_modbus_pcap.py "
                                   "(or use --pcap), run the full pipeline and tshark on it, print packets/s, "
                                   "the ratio and peak RSS of both.")
    b.add_argument("--pcap", help="use this capture instead of generating the reference one")
    b.add_argument("--generator", default=None, help="path of gen_modbus_pcap.py (default: ../shared/bench/)")
    b.add_argument("--connections", type=int, default=498)
    b.add_argument("--txns", type=int, default=1000, help="transactions per connection")
    b.add_argument("--runs", type=int, default=1, help="repeat each measurement and report the median")
    b.add_argument("--workdir", default=None, help="where to write the generated capture (default: a temp dir)")
    from .commands.bench import add_arguments as add_bench_arguments
    add_bench_arguments(b)

    sub.add_parser("version", help="print the version")

    import importlib
    for mod in COMMANDS:
        importlib.import_module(mod).register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args, extra = ap.parse_known_args(argv)
    if extra:  # said by the subcommand that was given them, with its usage, not by `otids [-h] COMMAND ...`
        parser = ap
        for tok in (sys.argv[1:] if argv is None else argv):
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if subs and tok in subs[0].choices:
                parser = subs[0].choices[tok]
        parser.error("unrecognized arguments: " + " ".join(extra))
    try:
        if args.command == "analyze":
            return cmd_analyze(args)
        if args.command == "bench":
            from .commands.bench import cmd_bench
            return cmd_bench(args)
        if args.command == "version":
            from ._build import report
            print(f"otids {__version__}")
            print(report())
            return EXIT_OK
        if getattr(args, "func", None) is not None:
            return args.func(args)
        ap.print_help()
        return EXIT_USAGE
    except UserError as e:
        print(f"otids: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("otids: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug of otids: one line, the traceback kept in a file for the report
        return _internal_error(e)


def _internal_error(e: BaseException) -> int:
    import os
    import tempfile
    import traceback
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {os.path.relpath(tb[-1].filename, os.path.dirname(os.path.dirname(__file__)))}:{tb[-1].lineno}" \
        if tb else ""
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        fd, path = tempfile.mkstemp(prefix="otids-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(f"otids {__version__}\n{' '.join(sys.argv)}\n\n{text}")
        kept = f"; traceback in {path}"
    except OSError:
        kept = ""
    msg = " ".join(f"{type(e).__name__}: {e}".split())[:300]
    print(f"otids: internal error (a bug of otids, please report it): {msg}{where}{kept}", file=sys.stderr)
    return EXIT_INTERNAL


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Outputs, config and every ANALYZE_PLUGINS option: shared by `analyze` and `live`."""
    import importlib
    p.add_argument("-o", "--output", metavar="FILE", help="alerts NDJSON (default: otids-alerts.ndjson)")
    p.add_argument("--events", metavar="FILE", help="also write every protocol event as ECS NDJSON")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (see otids.example.yaml)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary and no progress bar")
    for mod in ANALYZE_PLUGINS:
        importlib.import_module(mod).add_arguments(p)


def build_run(args, config):
    """Sinks and detectors from the command line, the config and every ANALYZE_PLUGINS extension -> Run.
    Shared by `analyze` and `live`, so both detect and write the same things."""
    import importlib

    from .detect.anomaly import AnomalyDetector
    from .output.ndjson import NdjsonSink
    from .pipeline import Run

    atomic = getattr(args, "command", None) != "live"  # a live sensor's files are read while it runs
    alerts = NdjsonSink(args.output or config.output.alerts, "alerts", atomic=atomic)
    sinks_e = []
    events_path = args.events or config.output.events
    if events_path:
        sinks_e.append(NdjsonSink(events_path, "events", include_secrets=config.mqtt.log_passwords, atomic=atomic))
    detectors = [AnomalyDetector(config.anomaly)] if config.anomaly.enabled else []
    sinks_a: list = [alerts]
    try:
        for mod in ANALYZE_PLUGINS:
            d, sa, se = importlib.import_module(mod).build(args, config)
            detectors += d
            sinks_a += sa
            sinks_e += se
    except BaseException:  # bad rules, baseline, registry...: no temporary output file left behind
        discard_outputs(sinks_a + sinks_e)
        raise
    return Run(config, detectors, sinks_a, sinks_e)


def discard_outputs(sinks: list) -> None:
    for s in sinks:
        if hasattr(s, "abort"):
            try:
                s.abort()
            except Exception:  # noqa: BLE001 - already failing: the first error is the one to report
                pass


def close_outputs(run, complete: bool = True) -> list[str]:
    """Close every sink once (flushing files and clusters) and record what each wrote for the summary.
    A run that did not complete leaves the previous output files as they were (sinks with abort()).
    Returns the sinks' write errors, one line each."""
    seen: set[int] = set()
    errors = []
    for s in [*run.engine.alert_sinks, *run.engine.event_sinks]:
        if id(s) in seen:
            continue
        seen.add(id(s))
        if complete or not hasattr(s, "abort"):
            s.close()
            run.outputs.append((getattr(s, "path", type(s).__name__), getattr(s, "count", 0)))
        else:
            s.abort(keep_partial=True)
        if getattr(s, "error", None):
            errors.append(s.error)
        failure = getattr(s, "failure", None)  # e.g. documents that did not reach a cluster: exit non-zero
        if failure:
            run.errors.append(failure)
    return errors


def cmd_analyze(args) -> int:
    config = load_config(args.config)
    err = missing_captures(args.pcaps)
    if err is not None:
        raise err
    from .parallel.options import workers_for
    workers = workers_for(args, args.pcaps)
    run = build_run(args, config)
    if args.deep:
        from .flow.deep import DeepNamer
        run.table.ident.deep = DeepNamer.start(args.pcaps)
        if run.table.ident.deep is None:
            discard_outputs([*run.engine.alert_sinks, *run.engine.event_sinks])
            raise UserError("--deep needs tshark (apt-get install tshark)")

    quiet = args.quiet or not config.output.summary
    progress = None
    if not quiet and config.output.progress and sys.stderr.isatty() and workers == 1:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
        progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TimeRemainingColumn(), transient=True)
        progress.start()
    complete = False
    try:
        from .parallel import run_files
        run_files(run, args.pcaps, workers, progress)
        # nothing analysed (no capture readable): the previous outputs stay as they were
        complete = not (run.errors and run.decoder.stats.packets == 0)
    finally:
        if progress is not None:
            progress.stop()
        out_errors = close_outputs(run, complete)
    run.errors += out_errors
    run.errors += [e for d in run.engine.detectors for e in getattr(d, "errors_at_end", ())]
    if not quiet:
        from .output.console import print_summary  # rich: only when a summary is printed
        print_summary(run)
    else:
        for err in run.errors:
            print(f"otids: error: {err}", file=sys.stderr)
    if not complete:
        print("otids: nothing analysed (no packet read); output files left as they were", file=sys.stderr)
    if out_errors or not complete:
        return EXIT_USAGE
    return EXIT_DAMAGED if run.errors else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
