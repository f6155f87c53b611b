"""`otids eval PCAP... --labels FILE`: how well a model separates labelled attacks from benign traffic.

The captures go through the same windowing, scoring and alerting as `otids analyze --model` (one pass per
feature set, every model scored on the same rows). Row level: precision, recall, F1 and ROC-AUC over
windows (a window is an attack window when a label's hosts and time overlap it, labels.py). Alert level:
false alerts per benign hour, counting what an analyst would see (re-alert window applied), over the capture
time not covered by any label. Per attack type: instances with at least one window above the threshold,
windows above it, and the delay from the attack's start to its first such window.

`--bench` prints throughput figures: feature extraction (exchanges/s, windows/s), scoring (windows/s in
batches of ml.batch and in one call), explanations (alerts/s) and the whole pipeline with and without the
ML detector. Figures only, nothing is asserted.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

from ...lazy import lazy

np = lazy("numpy")  # loaded when a model is trained, loaded or scored, not for every command

from ...config import Config
from .detector import Alerter, MlDetector, explain
from .features import NS, Windower
from .labels import Label
from .store import Model
from .train import run_views


class Scored:
    """Rows of one capture pass, and what each model made of them."""

    def __init__(self, metas, X, views, first_ts, last_ts, seconds):
        self.metas = metas
        self.X = X
        self.views = views  # kept only for --bench
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.seconds = seconds


def extract_rows(paths: list[str], config: Config, model: Model, keep_views: bool = False) -> Scored:
    metas, rows, views, first = [], [], [], []

    def collect(m, r):
        metas.extend(m)
        rows.extend(r)

    win = Windower(model.spec, model.profiles, collect, config.ml.max_pairs, model.stand_ins)

    def feed(v):
        if not first:
            first.append(v.ts)
        if keep_views:
            views.append(v)
        win.add(v)

    t0 = time.perf_counter()
    run, _ = run_views(paths, config, feed)
    win.advance(run.last_ts)
    dt = time.perf_counter() - t0
    for e in run.errors:
        print(f"otids: error: {e}", file=sys.stderr)
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(model.names))
    return Scored(metas, X, views, first[0] if first else 0, run.last_ts, dt)


def row_labels(metas, labels: list[Label]) -> tuple[list[str | None], list[int]]:
    """Attack type (or None) and label index (or -1) of every row."""
    kinds, which = [], []
    by_start = sorted(range(len(labels)), key=lambda i: labels[i].start)
    for m in metas:
        hit = -1
        for i in by_start:
            lb = labels[i]
            if lb.start > m.end:
                break
            if m.start <= lb.end and m.end > lb.start and lb.matches(m.client, m.server):
                hit = i
                break
        which.append(hit)
        kinds.append(labels[hit].attack if hit >= 0 else None)
    return kinds, which


def benign_hours(first: int, last: int, labels: list[Label]) -> float:
    spans = sorted((max(lb.start, first), min(lb.end, last)) for lb in labels)
    covered, cur_s, cur_e = 0, None, None
    for s, e in spans:
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        covered += cur_e - cur_s
    return max(last - first - covered, 0) / NS / 3600


def poisson_interval(k: int) -> tuple[float, float]:
    """Exact (Garwood) 95% interval of a Poisson mean from k events."""
    from scipy.stats import chi2

    lo = float(chi2.ppf(0.025, 2 * k) / 2) if k else 0.0
    return lo, float(chi2.ppf(0.975, 2 * k + 2) / 2)


def evaluate(model: Model, sc: Scored, labels: list[Label], config: Config) -> dict:
    from sklearn.metrics import roc_auc_score

    metas, X = sc.metas, sc.X
    pidx = model.pair_index(metas)
    scores = model.scorer.score(X, pidx)
    alerter = Alerter(model, config.ml)
    alerts = alerter.process(metas, X, scores, pidx) + alerter.flush()
    kinds, which = row_labels(metas, labels)
    y = np.array([k is not None for k in kinds])
    thr, _ = model.thresholds(pidx)
    flag = (scores > thr) & (pidx >= 0)
    notes = [a for a in alerts if a.extra.get("ml", {}).get("abstain")]
    alerts = [a for a in alerts if not a.extra.get("ml", {}).get("abstain")]
    tp = int((flag & y).sum())
    fp = int((flag & ~y).sum())
    fn = int((~flag & y).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    auc = float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None
    row_of = {(m.end, m.client, m.server, m.protocol): i for i, m in enumerate(metas)}
    false_list = []
    false_alerts = 0
    for a in alerts:
        f = a.flow
        i = row_of.get((a.ts, f.client_ip if f else None, f.server_ip if f else None, a.protocol))
        # an alert's row is the window it reports (follow-ups: the worst of the folded windows)
        if i is None or kinds[i] is None:
            false_alerts += 1
            false_list.append(a)
    hours = benign_hours(sc.first_ts, sc.last_ts, labels)
    first_alert: dict[int, int] = {}  # label -> ts of its first alert (the alert's reported window in it)
    for a in alerts:
        f = a.flow
        i = row_of.get((a.ts, f.client_ip if f else None, f.server_ip if f else None, a.protocol))
        if i is not None and which[i] >= 0:
            first_alert[which[i]] = min(first_alert.get(which[i], a.ts), a.ts)
    per_type: dict[str, dict] = {}
    for li, lb in enumerate(labels):
        t = per_type.setdefault(lb.attack, {"instances": 0, "detected": 0, "alerted": 0, "windows": 0, "flagged": 0,
                                            "delays": [], "alert_delays": []})
        if li in first_alert:
            t["alerted"] += 1
            t["alert_delays"].append(max(0.0, (first_alert[li] - lb.start) / NS))
        t["instances"] += 1
        rows = [i for i, w in enumerate(which) if w == li]
        hit = [i for i in rows if flag[i]]
        t["windows"] += len(rows)
        t["flagged"] += len(hit)
        if hit:
            t["detected"] += 1
            t["delays"].append(max(0.0, (metas[hit[0]].end - lb.start) / NS))
    for t in per_type.values():
        d = t.pop("delays")
        t["median_delay_s"] = statistics.median(d) if d else None
        d = t.pop("alert_delays")
        t["median_alert_delay_s"] = statistics.median(d) if d else None
    per_hour = [0] * (int((sc.last_ts - sc.first_ts) / NS // 3600) + 1)
    for a in false_list:
        per_hour[min(int((a.ts - sc.first_ts) / NS // 3600), len(per_hour) - 1)] += 1
    days = hours / 24
    lo, hi = poisson_interval(false_alerts)
    return {"model": model.id, "algorithm": model.algorithm, "threshold": model.threshold,
            "windows": len(metas), "attack_windows": int(y.sum()), "benign_windows": int((~y).sum()),
            "precision": prec, "recall": rec, "f1": f1, "roc_auc": auc, "true_positives": tp, "false_positives": fp,
            "false_negatives": fn, "benign_hours": hours, "alerts": len(alerts), "false_alerts": false_alerts,
            "false_alerts_per_benign_hour": false_alerts / hours if hours else None,
            "false_alerts_per_benign_day": false_alerts / days if days else None,
            "false_alerts_per_benign_day_95": [lo / days, hi / days] if days else None,
            "false_alerts_by_capture_hour": per_hour, "abstain_notes": len(notes),
            "false_alert_reasons": [a.reason for a in false_list],
            "benign_windows_flagged_per_benign_hour": fp / hours if hours else None,
            "attack_types": dict(sorted(per_type.items()))}


def print_report(r: dict, name: str) -> None:
    auc = f"{r['roc_auc']:.3f}" if r["roc_auc"] is not None else "n/a (one class)"
    fah = r["false_alerts_per_benign_hour"]
    print(f"\nmodel {r['model']} ({r['algorithm']}, threshold {r['threshold']:.4g}) on {name}")
    print(f"  windows {r['windows']} ({r['benign_windows']} benign, {r['attack_windows']} attack); "
          f"benign time {r['benign_hours']:.2f} h")
    print(f"  precision {r['precision']:.3f}  recall {r['recall']:.3f}  F1 {r['f1']:.3f}  ROC-AUC {auc}")
    print(f"  alerts {r['alerts']}, false {r['false_alerts']}"
          + (f" = {fah:.2f} per benign hour" if fah is not None else "")
          + f"; benign windows above threshold {r['false_positives']}")
    if r["false_alerts_per_benign_day"] is not None:
        lo, hi = r["false_alerts_per_benign_day_95"]
        print(f"  false alerts per benign day {r['false_alerts_per_benign_day']:.1f} (95% interval {lo:.1f}-{hi:.1f}; "
              f"{r['false_alerts']} in {r['benign_hours']:.2f} benign hours); by hour of the capture "
              f"{r['false_alerts_by_capture_hour']}" + (f"; {r['abstain_notes']} abstain notes" if r["abstain_notes"] else ""))
    print(f"  {'attack type':22s} {'detected':>9s} {'alerted':>8s} {'windows flagged':>16s} {'first alert after':>18s}")
    for k, t in r["attack_types"].items():
        d = f"{t['median_alert_delay_s']:.0f} s (median)" if t["median_alert_delay_s"] is not None else "-"
        print(f"  {k:22s} {t['detected']:>4d}/{t['instances']:<4d} {t['alerted']:>3d}/{t['instances']:<4d} "
              f"{t['flagged']:>8d}/{t['windows']:<7d} {d:>18s}")


# ---------------------------------------------------------------------------------------------- benchmark

def _best(fn, runs: int = 3) -> float:
    """Fastest of `runs` timings: the machine's other load only ever slows a run down."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(models: list[Model], sc: Scored, paths: list[str], config: Config) -> None:
    from ...pipeline import Run

    model = models[0]
    print(f"\nbenchmark ({os.cpu_count()} CPUs; best of 3 runs each; figures only)")
    if sc.views:
        n = len(sc.views)
        count = [0]

        def features():
            count[0] = 0
            win = Windower(model.spec, model.profiles, lambda m, r: count.__setitem__(0, count[0] + len(r)),
                           config.ml.max_pairs)
            for v in sc.views:
                win.add(v)
            win.advance(sc.last_ts)
        dt = _best(features)
        print(f"  features: {n:,} exchanges -> {count[0]:,} windows in {dt:.3f} s: {n / dt:,.0f} exchanges/s, "
              f"{count[0] / dt:,.0f} windows/s")
    if len(sc.X) == 0:
        print("  no windows to score")
        return
    reps = max(1, 50_000 // len(sc.X))
    X = np.tile(sc.X, (reps, 1))
    P = np.tile(model.pair_index(sc.metas), reps)
    batch = config.ml.batch
    for m in models:
        s = m.scorer
        Xs, Ps = (X[:5000], P[:5000]) if m.algorithm == "lof" else (X, P)

        def batches():
            for lo in range(0, len(Xs), batch):
                s.score(Xs[lo:lo + batch], Ps[lo:lo + batch])
        t_b = _best(batches)
        t_1 = _best(lambda: s.score(Xs, Ps))
        print(f"  scoring {m.algorithm:8s}: {len(Xs):,} windows; batches of {batch}: {len(Xs) / t_b:,.0f} windows/s; "
              f"one call: {len(Xs) / t_1:,.0f} windows/s")
    k = min(200, len(sc.X))
    dt = _best(lambda: explain(model, sc.X[:k], model.pair_index(sc.metas[:k]), config.ml.explain))
    print(f"  explanations ({model.algorithm}, {config.ml.explain} drivers): {k / dt:,.0f} alerts/s")
    for label, with_ml in (("pipeline without ML", False), (f"pipeline with ML ({model.algorithm})", True)):
        box = {}

        def pipeline():
            det = [MlDetector(model, config.ml)] if with_ml else []
            run = Run(config, det, [], [])
            for p in paths:
                run.analyze_file(p)
            run.finish()
            box["run"], box["det"] = run, det
        dt = _best(pipeline)
        ev = sum(box["run"].engine.events.values())
        det = box["det"]
        extra = f", {det[0].windows:,} windows in {det[0].calls} scoring calls" if det else ""
        print(f"  {label:28s}: {dt:.2f} s, {ev / dt:,.0f} events/s{extra}")
