"""Command line of the baseline: `otids learn`, `otids baseline diff|check`, and `otids analyze --baseline`
(an analyze plug-in: add_arguments / build)."""
from __future__ import annotations

import json
import os
import sys

from ..errors import UserError

# The baseline package (its YAML document, the enforcer) is imported by the functions that use it: a run
# without a baseline never loads it.


def register(sub) -> None:
    p = sub.add_parser("learn", help="learn a baseline from captures of normal traffic",
                       description="Learn what normal traffic looks like from pcap/pcapng files and write it as "
                                   "a reviewable YAML baseline (models/README.md). If the output exists it is "
                                   "re-learned: status, notes and comments carry over; approved and denied "
                                   "entries stay as reviewed.")
    p.add_argument("pcaps", nargs="+", metavar="PCAP", help="capture files of normal traffic")
    from ..parallel.options import add_workers_argument
    add_workers_argument(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="baseline YAML to write (e.g. "
                                                                         "models/baseline.yaml)")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (baseline and protocol settings)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.add_argument("--prune", action="store_true",
                   help="drop learned (unreviewed) entries the captures no longer show (kept without it)")
    p.set_defaults(func=cmd_learn)

    b = sub.add_parser("baseline", help="review baselines: diff, check",
                       description="Work with baseline files written by `otids learn`.")
    bs = b.add_subparsers(dest="baseline_command", metavar="ACTION")
    d = bs.add_parser("diff", help="what changed between two baselines, entry by entry",
                      description="Compare two baselines by entry identity (order does not matter). Exit code 0 "
                                  "when they are the same, 1 when they differ, 2 on error.")
    d.add_argument("old", metavar="OLD")
    d.add_argument("new", metavar="NEW")
    d.add_argument("--json", action="store_true", help="JSON list of changes")
    d.add_argument("--ignore-counts", action="store_true",
                   help="ignore times and traffic counts (first_seen, last_seen, events, ...)")
    d.set_defaults(func=cmd_diff)
    c = bs.add_parser("check", help="validate a baseline file",
                      description="Load a baseline as `otids analyze --baseline` would and report the first "
                                  "problem with file:line:col, or a summary of its entries.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("-c", "--config", metavar="FILE")
    c.set_defaults(func=cmd_check)
    x = bs.add_parser("export-rules", help="turn reviewed entries into allow-list rules (otids rules)",
                      description="Write the approved entries of a baseline as allow-list rules in the rule "
                                  "language (docs/RULES.md): each alerts on traffic outside what was approved. "
                                  "Denied entries become always-alert rules; learned (unreviewed) entries are "
                                  "skipped and counted. Same baseline, same file (models/README.md).")
    x.add_argument("file", metavar="BASELINE")
    x.add_argument("-o", "--output", metavar="FILE", help="rule file to write (default: standard output)")
    x.set_defaults(func=cmd_export_rules)
    b.set_defaults(func=lambda args: (b.print_help(), 2)[1])


# ---------------------------------------------------------------------------------------------- learn

def learn_paths(paths: list[str], config, workers: int = 1):
    from ..pipeline import Run
    from ..detect.baseline.learner import Learner, LearnerDetector, capture_info

    from ..errors import missing_captures
    err = missing_captures(paths)
    if err is not None:
        raise err
    learner = Learner(config.baseline, config.limits)
    run = Run(config, [LearnerDetector(learner)], [], [])
    from ..parallel import run_files
    run_files(run, paths, workers)
    return learner.baseline([capture_info(p) for p in paths]), learner, run


def cmd_learn(args) -> int:
    from ..detect.baseline import document
    from ..config import load_config

    config = load_config(args.config)
    if os.path.isdir(args.output):  # refused before the captures are read, not after minutes of learning
        raise UserError(f"{args.output}: is a directory; -o takes the baseline file's name (e.g. "
                        f"{os.path.join(args.output, 'baseline.yaml')})")
    old = None
    if os.path.isfile(args.output):  # a device (/dev/full, /dev/stdout) is written, never read as a baseline
        old = document.load(args.output)  # a broken file stops here, before anything is overwritten
    from ..parallel.options import workers_for
    b, learner, run = learn_paths(args.pcaps, config, workers_for(args, args.pcaps))
    for err in run.errors:
        print(f"otids: error: {err}", file=sys.stderr)
    # Learning from nothing, or from a damaged capture, never touches a baseline someone may have reviewed.
    if run.decoder.stats.packets == 0:
        print(f"otids learn: nothing analysed (no packets read); {args.output} "
              f"{'left as it was' if old is not None else 'not written'}", file=sys.stderr)
        return 2
    if run.errors and old is not None:
        print(f"otids learn: a capture is damaged; {args.output} left as it was (learn from undamaged "
              f"captures, or write to a new file with -o)", file=sys.stderr)
        return 2
    for d in learner.capped():  # limits.assets_bytes / learner_bytes: the baseline is partial, say what is missing
        print(f"otids learn: warning: {d['pool']} reached limits ({d['max_bytes']:,} bytes): "
              + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in d.items() if k not in ("pool", "max_bytes")),
              file=sys.stderr)
    rep = document.merge_review(b, old, prune=args.prune) if old is not None else None
    bak = document.write_baseline(b, args.output, old.text if old is not None else None)
    if rep is not None and rep.dropped_learned and not args.prune:
        print(f"otids learn: {len(rep.dropped_learned)} learned entries were not seen again and are kept; "
              f"re-run with --prune to drop them", file=sys.stderr)
    if bak is not None:
        print(f"otids learn: previous baseline kept as {bak}", file=sys.stderr)
    if not args.quiet:
        counts = ", ".join(f"{len(v)} {k}" for k, v in b.entries.items() if v) or "no entries"
        print(f"otids learn: {args.output}: {counts} from {learner.events} events "
              f"({len(args.pcaps)} capture(s))")
        if rep is not None:
            print(f"  re-learned: {rep.kept_reviewed} reviewed entries kept as they were, "
                  f"{rep.carried_status} entries kept their status/notes, "
                  f"{len(rep.dropped_learned)} learned entries not seen again were "
                  f"{'dropped' if args.prune else 'kept (--prune drops them)'}")
            for label in rep.dropped_learned[:20]:
                print(f"  {'dropped' if args.prune else 'not seen again'}: {label}")
            for label, added in rep.reviewed_with_new[:20]:
                print(f"  note: {label} is reviewed, but the traffic also shows {', '.join(added[:6])}"
                      f"{' ...' if len(added) > 6 else ''}; set its status to learned to take them in")
        mb = learner.protocols.get("modbus")
        if mb is not None and mb.untracked:
            from ..protocols.modbus.baseline import MAX_POLL_KEYS
            print(f"  note: {mb.untracked} Modbus requests were not followed for polling periods (more than "
                  f"{MAX_POLL_KEYS} distinct blocks per master, slave and unit)", file=sys.stderr)
    return 1 if run.errors else 0


# ---------------------------------------------------------------------------------------------- review

VOLATILE = ("first_seen", "last_seen", "events", "transactions", "messages", "samples", "count", "seen",
            "jitter", "captures", "by")


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def cmd_diff(args) -> int:
    from ..detect.baseline import document
    old, new = document.load(args.old), document.load(args.new)
    if args.ignore_counts:
        for b in (old, new):
            for sec in b.entries.values():
                for k in sec:
                    sec[k] = _strip(sec[k])
    changes = document.diff(old, new)
    if args.json:
        print(json.dumps([{"section": c.section, "entry": c.entry, "label": c.label, "op": c.op,
                           "details": list(c.details)} for c in changes], indent=2))
    else:
        sign = {"added": "+", "removed": "-", "changed": "~"}
        for c in changes:
            print(f"{sign[c.op]} {c.label}" + (f" ({'; '.join(c.details)})" if c.op != "changed" else ""))
            if c.op == "changed":
                for d in c.details:
                    print(f"    {d}")
        if not changes:
            print("no differences")
    return 1 if changes else 0


def cmd_check(args) -> int:
    from ..detect.baseline import document
    from ..config import load_config
    from ..detect.baseline.enforcer import BaselineDetector

    config = load_config(args.config)
    b = document.load(args.file)
    BaselineDetector(b, config.baseline, args.file)  # compiles every section: reports the first problem
    counts = ", ".join(f"{len(v)} {k}" for k, v in b.entries.items() if v) or "no entries"
    status = {s: sum(1 for sec in b.entries.values() for e in sec.values() if e.get("status") == s)
              for s in document.STATUSES}
    print(f"{args.file}: ok: {counts}; " + ", ".join(f"{n} {s}" for s, n in status.items()))
    return 0


def cmd_export_rules(args) -> int:
    from ..detect.baseline import document
    from ..config import Config
    from ..detect.baseline.enforcer import BaselineDetector
    from ..detect.baseline.export import export_rules, write_text

    b = document.load(args.file)
    BaselineDetector(b, Config().baseline, args.file)  # a malformed entry stops here with file:line:col
    text, rep = export_rules(b, os.path.basename(args.file))
    write_text(args.output, text)
    print(f"otids baseline export-rules: {args.output or 'stdout'}: {rep.summary()}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- analyze plug-in

def add_arguments(parser) -> None:
    g = parser.add_argument_group("baseline")
    g.add_argument("--baseline", metavar="FILE", help="alert on deviations from this baseline (otids learn)")
    g.add_argument("--baseline-learn", metavar="SECONDS", type=int,
                   help="with --baseline FILE not existing yet: learn for SECONDS of capture time, write FILE, "
                        "then enforce it")


def build(args, config):
    import dataclasses

    path = getattr(args, "baseline", None) or config.baseline.file
    learn = getattr(args, "baseline_learn", None)
    if learn is None:
        learn = config.baseline.learn_period
    if not path and not learn:
        return [], [], []
    from ..detect.baseline import document
    from ..detect.baseline.enforcer import BaselineDetector, LearnThenEnforce
    cfg = config.baseline
    if path and os.path.exists(path):
        return [BaselineDetector(document.load(path, shared=True), cfg, path, config.limits)], [], []
    if learn:
        return [LearnThenEnforce(dataclasses.replace(cfg), learn, path, limits=config.limits)], [], []
    raise UserError(f"{path}: no such baseline file (make one with `otids learn`, or add --baseline-learn SECONDS)")
