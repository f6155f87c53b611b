"""`otids train PCAP... -o DIR`: fit a model on benign traffic and calibrate its alert threshold.

Two passes over the captures: the first builds the per-pair profiles (operations, keys, written values),
the second cuts the traffic into window rows. Time is divided into blocks (5 longest windows, at least
5 minutes); every k-th block is held back (k = 1/holdout). Rows whose longest window straddles two blocks
are dropped, so no held-back row shares traffic with a fitted one (a capture too short for that gets two
blocks, one fitted, one held back). The model is fitted on the other blocks' rows, with never-seen counts
taken against the profiles of those blocks alone, and each pair's threshold comes from a tail fitted to the
held-back rows' scores so that the sensor expects about ml.false_alerts_per_day false alerts a day
(calibrate_pairs): what the model will say about benign traffic it has not seen. The model then ships the
profiles of all the training traffic.
"""
from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass, field

from ...lazy import lazy

np = lazy("numpy")  # loaded when a model is trained, loaded or scored, not for every command

from ... import __version__
from ...config import Config
from ...errors import UserError
from ...events import rfc3339
from ...pipeline import Run
from . import adapters  # noqa: F401  (registers the protocol adapters)
from .features import NS, FEATURE_VERSION, ProfileBuilder, Windower, WindowSpec, profiles_from_json
from .models import ALGORITHMS, GUARD_WEIGHT, Scorer, fit, pair_stats, robust_stats
from .store import FORMAT, build, finalize
from .view import ADAPTERS

MIN_FIT_ROWS = 50
MIN_HOLDOUT_ROWS = 20
MIN_PAIR_HOLDOUT = 20  # held-back windows a pair needs for a tail fit of its own
EPISODE_P = 0.05  # held-back episodes above a threshold must be this likely under the false-alert budget


class ViewTap:
    """A detector that hands each event's feature view to `fn` (training, evaluation, benchmarks)."""

    def __init__(self, fn):
        self.fn = fn
        self.views = 0
        self.last_ts = 0
        self.newest = None  # the latest exchange time so far
        self.back = (0, 0)  # the largest step back in time (ns) and the exchange (1-based) that took it

    def on_event(self, ev):
        a = ADAPTERS.get(type(ev))
        if a is not None:
            v = a(ev)
            if v is not None:
                self.views += 1
                if self.newest is None or v.ts > self.newest:
                    self.newest = v.ts
                elif self.newest - v.ts > self.back[0]:
                    self.back = (self.newest - v.ts, self.views)
                self.fn(v)
        return None

    def flush(self, ts):
        self.last_ts = ts
        return None


def run_views(paths: list[str], config: Config, fn) -> tuple[Run, ViewTap]:
    """Run the pipeline over `paths` (one continuous capture) feeding every feature view to fn."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UserError(f"{missing[0]}: no such capture file")
    tap = ViewTap(fn)
    run = Run(config, [tap], [], [])
    for p in paths:
        run.analyze_file(p)
    run.finish()
    return run, tap


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class TrainingSet:
    spec: WindowSpec
    profiles: list  # profile JSON of all the training traffic (shipped with the model)
    pairs: list[tuple]
    X: np.ndarray
    pidx: np.ndarray
    fit: np.ndarray  # bool mask of fitted rows
    hold: np.ndarray  # bool mask of held-back rows
    info: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    end: np.ndarray | None = None  # ns, end of each row's windows (episodes in calibration)


def extract(paths: list[str], config: Config, spec: WindowSpec, holdout: float) -> TrainingSet:
    bad = spec.check()
    if bad:
        raise UserError(f"invalid windowing: {bad}")
    if not 0 < holdout <= 0.5:
        raise UserError(f"--holdout must be above 0 and at most 0.5 (got {holdout})")
    period = max(2, round(1 / holdout))
    block = max(300, 5 * spec.longest) * NS
    hop = spec.hop * NS
    origin: list[int] = []

    def profiles(block: int, period: int):
        everything, fitted = ProfileBuilder(), ProfileBuilder()

        def profile(v):
            if not origin:
                origin.append(v.ts // hop * hop)
            everything.add(v)
            if ((v.ts - origin[0]) // block) % period != period - 1:
                fitted.add(v)

        run, tap = run_views(paths, config, profile)
        return everything, fitted, run, tap

    everything, fitted, run, tap = profiles(block, period)
    if not origin:
        raise UserError(f"{paths[0]}: no traffic the ML detector reads (Modbus/TCP, OPC UA, MQTT) in the training captures")
    back, at = tap.back
    if back > spec.longest * NS:
        # merged or re-stamped captures: windows would mix traffic hours apart and the span means nothing
        raise UserError(f"{paths[0] if len(paths) == 1 else ', '.join(paths)}: exchange {at} is {back / NS:,.0f} s "
                        f"older than one before it; training needs one capture in time order (sort it first, "
                        f"e.g. reordercap IN OUT)")
    span = run.last_ts - origin[0]
    adapted = False
    if span < period * block:
        # Too short for one held-back block of the usual size (a capture of minutes): two blocks, the first
        # fitted and the second held back, each at least the longest window plus three hops.
        adapted = True
        period = 2
        block = max(spec.longest * NS + 3 * hop, span // 2 // hop * hop)
        origin.clear()
        everything, fitted, run, tap = profiles(block, period)
    errors = list(run.errors)

    metas, rows = [], []

    def collect(m, r):
        metas.extend(m)
        rows.extend(r)

    win = Windower(spec, profiles_from_json(fitted.to_json()), collect, max_pairs=1 << 30)
    run2, _ = run_views(paths, config, win.add)
    win.advance(run2.last_ts)
    all_json = everything.to_json()
    pairs = [(p["client"], p["server"], p["protocol"]) for p in all_json]
    pos = {p: i for i, p in enumerate(pairs)}
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(spec.feature_names()))
    pidx = np.array([pos.get((m.client, m.server, m.protocol), -1) for m in metas], dtype=np.int64)
    bstart = np.array([(m.start - origin[0]) // block for m in metas], dtype=np.int64)
    bend = np.array([(m.end - 1 - origin[0]) // block for m in metas], dtype=np.int64)
    whole = bstart == bend
    hold = whole & (bstart % period == period - 1)
    fitm = whole & ~hold
    first = origin[0]
    info = {"events": tap.views, "rows": len(rows), "rows_fit": int(fitm.sum()), "rows_holdout": int(hold.sum()),
            "rows_dropped": int((~whole).sum()), "pairs": len(pairs),
            "holdout_seconds": int(len(np.unique(bstart[hold]))) * (block // NS), "holdout": 1 / period, "block_seconds": block // NS,
            "blocks_adapted": adapted, "span": {"start": rfc3339(first), "end": rfc3339(run2.last_ts)},
            "hours": (run2.last_ts - first) / NS / 3600, "late_events": win.late}
    end = np.array([m.end for m in metas], dtype=np.int64)
    return TrainingSet(spec, all_json, pairs, X, pidx, fitm, hold, info, errors, end)


def tail_fit(scores: np.ndarray) -> tuple[float, float, float, int] | None:
    """Exponential tail over the 75th percentile u: (u, share above u, mean excess m, points above u), or
    None with fewer than 5 points above u or no spread."""
    if len(scores) < MIN_PAIR_HOLDOUT:
        return None
    u = float(np.quantile(scores, 0.75))
    exc = scores[scores > u] - u
    if len(exc) < 5 or not exc.mean() > 0:
        return None
    return u, len(exc) / len(scores), float(exc.mean()), len(exc)


def _tail_rate(fit, thr: float, m: float | None = None) -> float:
    """Share of benign windows above thr under the fitted tail (with mean excess m if given)."""
    u, pu, m0, _ = fit
    m = m0 if m is None else m
    return pu * float(np.exp(-(thr - u) / m)) if thr > u else pu


def allowed_episodes(lam: float) -> int:
    """Most benign episodes a held-back sample may show above a threshold while still agreeing (at 5%) with
    the budget: the largest n with P(N >= n) >= 0.05 for N ~ Poisson(lam), lam the budgeted false alerts
    over the held-back time. 0 below lam = 0.051 (under 1.2 held-back hours at 1 a day): then no held-back
    window may lie above a threshold."""
    from scipy.stats import poisson

    n = 0
    while poisson.sf(n, lam) >= EPISODE_P:
        n += 1
    return n


def episode_peaks(scores: np.ndarray, pidx: np.ndarray, end: np.ndarray | None, above: float, gap_ns: int) -> np.ndarray:
    """Peak score of each run of one pair's rows above `above` (rows less than `gap_ns` apart: one episode,
    as the Alerter folds them), largest first. Without row times every row above is its own episode."""
    sel = np.flatnonzero(scores > above)
    if end is None:
        return np.sort(scores[sel])[::-1]
    peaks, last = [], {}
    for i in sel[np.lexsort((end[sel], pidx[sel]))]:
        p = int(pidx[i])
        j = last.get(p)
        if j is not None and end[i] - end[j[0]] <= gap_ns:
            peaks[j[1]] = max(peaks[j[1]], float(scores[i]))
            last[p] = (i, j[1])
        else:
            last[p] = (i, len(peaks))
            peaks.append(float(scores[i]))
    return np.sort(np.array(peaks, dtype=np.float64))[::-1]


def calibrate_pairs(scores: np.ndarray, pidx: np.ndarray, npairs: int, per_day: float, hop: int,
                    end: np.ndarray | None = None, hold_days: float = 0.0, gap_ns: int = 60 * NS) -> dict:
    """Per-pair thresholds holding about `per_day` false alerts a day for the whole sensor.

    Each of the `npairs` pairs gets an equal share of the daily budget: a target share of its windows
    q = per_day / (npairs x windows a day per pair). Its threshold is where an exponential tail fitted over
    the 75th percentile of its held-back benign scores falls to q, and never below its largest held-back
    held-back episode score that the budget cannot explain (`allowed_episodes`: with under 1.2 held-back hours
    that is the largest held-back score; with hours held back, an episode or two of a rare benign action
    over the budget's own expectation may lie above, as they will in use); a pair with fewer than MIN_PAIR_HOLDOUT held-back windows (or no tail to fit) gets the pooled fit of
    all pairs' held-back windows (also the last entry, for rows of no known pair). The expected count
    sums each pair's fitted tail rate at its threshold x its windows a day (every anomalous window counted as
    an alert: an upper bound, since episodes fold consecutive ones); the interval takes each mean excess at the
    ends of its 95% chi-square interval (2k m / m_true ~ chi2(2k) for k points above u).
    """
    from scipy.stats import chi2

    wpd = 86400.0 / hop
    q = per_day / (max(npairs, 1) * wpd)
    pooled = tail_fit(scores)
    if pooled is None:
        raise UserError(f"cannot calibrate: {len(scores)} held-back windows give no tail to fit (need at least "
                        f"{MIN_PAIR_HOLDOUT}, with 5 above their 75th percentile and some spread)")

    n_ok = allowed_episodes(per_day * hold_days)

    def thr_of(fit, sel):
        u, pu, m, _ = fit
        t = u + m * float(np.log(pu / q))
        peaks = episode_peaks(scores[sel], pidx[sel], None if end is None else end[sel], t, gap_ns)
        return max(t, float(peaks[n_ok])) if len(peaks) > n_ok else t

    every = np.ones(len(scores), dtype=bool)
    g_thr = thr_of(pooled, every)
    thr = np.full(npairs + 1, g_thr)
    high = np.full(npairs + 1, g_thr + max(g_thr - float(np.median(scores)), 1e-9))
    per_pair, exp, lo, hi = [], 0.0, 0.0, 0.0
    for p in range(npairs):
        s = scores[pidx == p]
        fit = tail_fit(s)
        method = "own tail" if fit is not None else "pooled tail"
        if fit is None:
            fit, s_ref = pooled, scores
            t = g_thr
        else:
            s_ref = s
            t = thr_of(fit, pidx == p)
            if t < g_thr:  # a pair's few held-back windows rarely show its rare modes: never below the pooled fit
                t, fit, s_ref, method = g_thr, pooled, scores, "pooled tail (above its own)"
        thr[p] = t
        high[p] = t + max(t - float(np.median(s_ref)), 1e-9)
        k = fit[3]
        m_lo, m_hi = fit[2] * 2 * k / chi2.ppf(0.975, 2 * k), fit[2] * 2 * k / chi2.ppf(0.025, 2 * k)
        e, e_lo, e_hi = (wpd * _tail_rate(fit, t, m) for m in (None, m_lo, m_hi))
        exp, lo, hi = exp + e, lo + e_lo, hi + e_hi
        per_pair.append({"holdout_windows": int(len(s)), "method": method, "threshold": float(t),
                         "expected_per_day": e, "max_benign": float(s.max()) if len(s) else None})
    return {"pair_threshold": thr, "pair_threshold_high": high, "threshold": g_thr, "threshold_high": float(high[-1]),
            "calibration": {"method": "per-pair exponential tail over the 75th percentile",
                            "false_alerts_per_day": per_day, "target_share_per_pair": q,
                            "holdout_windows": int(len(scores)), "holdout_days": hold_days,
                            "episodes_allowed_above": n_ok,
                            "expected_false_alerts_per_day": exp, "expected_interval_95": [lo, hi],
                            "observed_far": float(np.mean(scores > thr[np.where(pidx < 0, npairs, pidx)])),
                            "benign_median": float(np.median(scores)), "benign_max": float(scores.max()),
                            "pairs": per_pair}}


def calibrate(scores: np.ndarray, target: float) -> dict:
    """Threshold from held-back benign scores: alerts fire above it for about `target` of benign windows.

    With at least 10 held-back windows expected above it, the empirical (1 - target) quantile. With fewer,
    the quantile is beyond what the sample shows (its largest score only says "about 1/n"), so the tail is
    extrapolated: peaks over the 90th percentile u, modelled as exponential (mean excess m), give
    u + m ln(0.1 / target); never below the empirical quantile.
    """
    n = len(scores)
    emp = float(np.quantile(scores, 1.0 - target, method="higher"))
    method = "empirical quantile"
    thr = emp
    if target * n < 10:
        u = float(np.quantile(scores, 0.9))
        exc = scores[scores > u] - u
        if len(exc) >= 5 and exc.mean() > 0:
            pu = len(exc) / n
            thr = max(emp, u + float(exc.mean()) * float(np.log(pu / target)))
            method = "exponential tail over the 90th percentile"
    med = float(np.median(scores))
    high = thr + max(thr - med, 1e-9)
    return {"threshold": thr, "threshold_high": high,
            "calibration": {"target_far": target, "holdout_windows": n, "method": method,
                            "observed_far": float(np.mean(scores > thr)), "benign_median": med,
                            "benign_max": float(scores.max())}}


def fit_model(ts: TrainingSet, algorithm: str, seed: int, target: float | None, pcaps: list[dict],
              guard_weight: float = GUARD_WEIGHT, per_day: float = 1.0) -> tuple[dict, dict]:
    """Fit one algorithm on a TrainingSet; returns finalized (meta, arrays)."""
    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    nfit, nhold = int(ts.fit.sum()), int(ts.hold.sum())
    if nfit < MIN_FIT_ROWS or nhold < MIN_HOLDOUT_ROWS:
        i = ts.info
        minutes = i["hours"] * 60
        usable = (nfit + nhold) / max(minutes, 1e-9)  # whole-block windows per minute of this traffic
        short = max(MIN_FIT_ROWS - nfit, 0) + max(MIN_HOLDOUT_ROWS - nhold, 0)
        more = f"about {short / usable:.0f} more minutes of this traffic" if usable > 0 else "traffic that lasts longer than the longest window"
        raise UserError(
            f"too little benign traffic to train: {nfit} windows to fit (need {MIN_FIT_ROWS}) and {nhold} held back "
            f"(need {MIN_HOLDOUT_ROWS}), from {i['pairs']} pairs over {minutes:.1f} minutes ({i['rows']} windows, "
            f"{i['rows_dropped']} of them dropped at the edges of {i['block_seconds']} s blocks, 1 block in "
            f"{round(1 / i['holdout'])} held back); needs {more}, or more pairs talking, or a shorter --hop with "
            f"shorter --windows (e.g. --hop 5 --windows 5,30)")
    if target is not None and not 0 < target < 1:
        raise UserError(f"--target-far must be between 0 and 1 (got {target})")
    spec = ts.spec
    floors = np.array([f.floor for f in spec.features()])
    Xf, pf = ts.X[ts.fit], ts.pidx[ts.fit]
    Xh, ph = ts.X[ts.hold], ts.pidx[ts.hold]
    stats = robust_stats(Xf, floors)
    pstats = pair_stats(Xf, pf, len(ts.pairs), floors)
    arrays, params = fit(algorithm, Xf, seed, stats, pstats, guard_weight)
    scorer = Scorer(algorithm, arrays, params, stats, pstats)
    if target is not None:
        cal = calibrate(scorer.score(Xh, ph), target)
    else:
        cal = calibrate_pairs(scorer.score(Xh, ph), ph, len(ts.pairs), per_day, spec.hop,
                              None if ts.end is None else ts.end[ts.hold], ts.info.get("holdout_seconds", 0) / 86400,
                              spec.longest * NS)
        arrays["pair_threshold"] = cal.pop("pair_threshold")
        arrays["pair_threshold_high"] = cal.pop("pair_threshold_high")
    for k, v in stats.items():
        arrays[f"stats_{k}"] = v
    for k, v in pstats.items():
        arrays[f"pair_{k}"] = v
    import sklearn
    data = hashlib.sha256()
    data.update(np.ascontiguousarray(ts.X).tobytes())
    data.update(ts.fit.tobytes())
    data.update(ts.hold.tobytes())
    meta = {
        "format": FORMAT, "algorithm": algorithm, "params": params,
        "feature_set": {"id": spec.feature_set_id(), "version": FEATURE_VERSION, "names": spec.feature_names(),
                        "hop": spec.hop, "windows": list(spec.windows), "lateness": spec.lateness},
        **cal,
        "training": {**ts.info, "pcaps": pcaps, "data_sha256": data.hexdigest(), "seed": seed},
        "libraries": {"python": platform.python_version(), "numpy": np.__version__,
                      "scikit-learn": sklearn.__version__, "otids": __version__},
        "pairs": [list(p) for p in ts.pairs],
        "profiles": ts.profiles,
    }
    return finalize(meta, arrays), arrays


def pcap_info(paths: list[str]) -> list[dict]:
    return [{"file": os.path.basename(p), "bytes": os.path.getsize(p), "sha256": file_digest(p)} for p in paths]


def train_models(paths: list[str], config: Config, spec: WindowSpec, algorithms: list[str], seed: int,
                 target: float | None, holdout: float, guard_weight: float = GUARD_WEIGHT,
                 per_day: float | None = None):
    """Extract once, fit each algorithm: [(meta, arrays)], TrainingSet. `target` (a share of benign windows)
    selects the one global threshold; None the per-pair calibration to `per_day` (ml.false_alerts_per_day)."""
    ts = extract(paths, config, spec, holdout)
    pcaps = pcap_info(paths)
    per_day = config.ml.false_alerts_per_day if per_day is None else per_day
    return [fit_model(ts, a, seed, target, pcaps, guard_weight, per_day) for a in algorithms], ts


def in_memory_models(paths, config, spec, algorithms, seed, target, holdout, guard_weight=GUARD_WEIGHT,
                     per_day=None):
    fitted, ts = train_models(paths, config, spec, algorithms, seed, target, holdout, guard_weight, per_day)
    return [build(f"<trained in memory: {a}>", meta, arrays) for a, (meta, arrays) in zip(algorithms, fitted)], ts
