"""`otids train`, `otids eval`, and `analyze/live --model DIR`: the command-line wiring of the ML detector
(ids/detect/ml). Parses arguments, calls the library, prints."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..config import load_config
from ..detect.ml.detector import MlDetector
from ..detect.ml.evaluate import bench, evaluate, extract_rows, print_report
from ..detect.ml.features import WindowSpec
from ..detect.ml.labels import load_labels
from ..detect.ml.models import ALGORITHMS, DEFAULT_ALGORITHM, GUARD_WEIGHT
from ..detect.ml.store import Model, load, save
from ..detect.ml.train import in_memory_models, train_models
from ..errors import UserError


def register(sub) -> None:
    _register_train(sub)
    _register_eval(sub)


def parse_windows(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds separated by commas, e.g. 10,60 (got {text!r})") from None


def add_training_arguments(p) -> None:
    p.add_argument("--algorithm", default=DEFAULT_ALGORITHM,
                   help=f"{', '.join(ALGORITHMS)} (default {DEFAULT_ALGORITHM}); `otids eval --train` takes a comma list")
    p.add_argument("--hop", type=int, default=WindowSpec.hop, help="seconds between rows of a pair (default 10)")
    p.add_argument("--windows", type=parse_windows, default=WindowSpec.windows,
                   help="window lengths in seconds, multiples of the hop (default 10,60)")
    p.add_argument("--lateness", type=int, default=WindowSpec.lateness,
                   help="seconds a hop waits for late exchanges (default 2)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="share of the benign traffic held back to calibrate the threshold (default 0.25)")
    p.add_argument("--false-alerts-per-day", type=float, default=None, metavar="N",
                   help="per-pair thresholds so that the sensor expects about N false alerts a day "
                        "(default: ml.false_alerts_per_day, 1)")
    p.add_argument("--target-far", type=float, default=None,
                   help="instead: one global threshold above this share of benign windows (e.g. 0.001)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--guard-weight", type=float, default=GUARD_WEIGHT,
                   help=f"iforest: score added per robust scale a feature lies outside the pair's training range "
                        f"(default {GUARD_WEIGHT}; 0: the isolation forest alone)")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (decode, flow and protocol settings)")


def _register_train(sub) -> None:
    p = sub.add_parser("train", help="fit an ML anomaly model on benign captures",
                       description="Fit a model on benign traffic (pcap/pcapng, .gz) and calibrate its alert threshold "
                                   "on held-back windows; write it to DIR for `otids analyze --model DIR`. docs/ML.md.")
    p.add_argument("pcaps", nargs="+", metavar="PCAP", help="benign training captures, one continuous capture")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="model directory to write (e.g. models/ml/)")
    add_training_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    config = load_config(args.config)
    spec = WindowSpec(args.hop, tuple(args.windows), args.lateness)
    t0 = time.perf_counter()
    fitted, ts = train_models(args.pcaps, config, spec, [args.algorithm], args.seed, args.target_far, args.holdout,
                              args.guard_weight, args.false_alerts_per_day)
    meta, arrays = fitted[0]
    save(args.output, meta, arrays)
    dt = time.perf_counter() - t0
    for e in ts.errors:
        print(f"otids: error: {e}", file=sys.stderr)
    if not args.quiet:
        i, c = ts.info, meta["calibration"]
        print(f"model {meta['id']} ({meta['algorithm']}, {len(spec.feature_names())} features, feature set "
              f"{spec.feature_set_id()}) -> {args.output}")
        print(f"training: {i['events']} exchanges, {i['pairs']} pairs, {i['hours']:.2f} h; windows: {i['rows_fit']} "
              f"fitted, {i['rows_holdout']} held back, {i['rows_dropped']} dropped at block edges")
        per_hour = i["rows"] / max(i["hours"], 1e-9)  # windows per hour of this traffic
        if "target_far" in c:
            print(f"threshold {meta['threshold']:.6g} ({c['method']}; target {c['target_far']:.4%} of benign windows, "
                  f"about {c['target_far'] * per_hour:.2f} per hour at this traffic): {c['observed_far']:.4%} of "
                  f"{c['holdout_windows']} held-back benign windows above it, largest {c['benign_max']:.6g}")
        else:
            own = sum(1 for p in c["pairs"] if p["method"] == "own tail")
            lo, hi = c["expected_interval_95"]
            print(f"thresholds per pair ({c['method']}; {own} of {len(c['pairs'])} pairs on their own held-back "
                  f"windows, the rest and new pairs on the pooled fit {meta['threshold']:.6g}): expected "
                  f"{c['expected_false_alerts_per_day']:.2f} false alerts per day for this sensor (95% interval "
                  f"{lo:.2f}-{hi:.2f}; target {c['false_alerts_per_day']:g}); {c['observed_far']:.4%} of "
                  f"{c['holdout_windows']} held-back benign windows above them")
            if i["hours"] < 2 or i.get("blocks_adapted"):
                print(f"warning: trained on {i['hours'] * 60:.0f} minutes of traffic"
                      + (f" (blocks adapted to the capture: {i['block_seconds']} s, every other one held back)"
                         if i.get("blocks_adapted") else "")
                      + f": the expected count rests on {c['holdout_windows']} held-back windows and its error bars "
                        f"are wide (the interval above); train on hours of traffic, with its shifts and operator "
                        f"actions, for a figure to rely on", file=sys.stderr)
        print(f"done in {dt:.1f} s")
    return 1 if ts.errors else 0


def _register_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate ML models on labelled captures (precision, recall, per attack type)",
                       description="Score labelled captures with a model (--model DIR) or with models trained here "
                                   "(--train PCAP..., --algorithm iforest,lof,robust) and print precision, recall, "
                                   "F1, ROC-AUC, false alerts per benign hour and detection per attack type. "
                                   "docs/ML.md.")
    p.add_argument("pcaps", nargs="+", metavar="PCAP", help="labelled captures, one continuous capture")
    p.add_argument("--labels", metavar="FILE", help="labels CSV: start,end,src,dst,attack or [file,]frame,attack")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="DIR", action="append", help="model directory (repeat to compare)")
    src.add_argument("--train", metavar="PCAP", nargs="+", help="benign captures to train on, in memory")
    add_training_arguments(p)
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--bench", action="store_true", help="print throughput figures (windows/s) too")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    config = load_config(args.config)
    if not args.labels and not args.bench:
        raise UserError("--labels FILE is needed (or --bench for throughput alone)")
    # a bad labels file is said before models are loaded or trained (minutes), not after
    labels = load_labels(args.labels, args.pcaps) if args.labels else []
    if args.model:
        models = [load(d) for d in args.model]
    else:
        algos = [a.strip() for a in args.algorithm.split(",") if a.strip()]
        spec = WindowSpec(args.hop, tuple(args.windows), args.lateness)
        t0 = time.perf_counter()
        models, _ = in_memory_models(args.train, config, spec, algos, args.seed, args.target_far, args.holdout,
                                     args.guard_weight, args.false_alerts_per_day)
        print(f"trained {', '.join(algos)} on {', '.join(os.path.basename(p) for p in args.train)} "
              f"in {time.perf_counter() - t0:.1f} s")
    name = ", ".join(os.path.basename(p) for p in args.pcaps)
    groups: dict[tuple, list[Model]] = {}
    for m in models:  # models that compute the same rows share one pass over the captures
        key = (m.meta["feature_set"]["id"], json.dumps(m.meta["profiles"], sort_keys=True))
        groups.setdefault(key, []).append(m)
    results = []
    last_sc = None
    for ms in groups.values():
        sc = extract_rows(args.pcaps, config, ms[0], keep_views=args.bench)
        last_sc = (ms, sc)
        if args.labels:
            for m in ms:
                r = evaluate(m, sc, labels, config)
                r["captures"] = [os.path.basename(p) for p in args.pcaps]
                results.append(r)
                print_report(r, name)
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(results, fh, indent=1, sort_keys=True)
        except OSError as e:
            raise UserError(f"{args.json}: cannot write: {e.strerror}") from None
    if args.bench and last_sc is not None:
        bench(models, last_sc[1], args.pcaps, config)
    return 0


# ---------------------------------------------------------------------------------------------- analyze / live

def add_arguments(parser) -> None:
    parser.add_argument("--model", metavar="DIR",
                        help="ML model directory from `otids train`: score traffic windows and alert on anomalies "
                             "(overrides ml.model in the config)")


def build(args, config):
    path = getattr(args, "model", None) or config.ml.model
    if not path:
        return [], [], []
    # Scoring batches are tens to hundreds of rows: OpenBLAS's worker threads only spin idle beside the
    # pipeline (about 0.04 CPU s a run, docs/ML.md "Throughput"). One thread unless the user set it; this must
    # precede numpy's import, which loading the model does.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return [MlDetector(load(path), config.ml)], [], []
