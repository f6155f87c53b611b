"""Continuous adaptation (`ml.adapt_every` > 0, off by default; meant for `otids live`): every so many
seconds of traffic the model is refitted on recent windows that raised nothing, never on a window that
alerted nor on any window of its pair less than the longest window before or after an anomalous one (the
attack's ramp and tail stay out too), never on pairs the model never saw (stand-ins, abstained).

The refit is a training run on those windows: time blocks of 5 minutes, every 4th held back and windows
straddling two blocks dropped, the same algorithm, seed and guard weight, per-pair thresholds calibrated to
`ml.false_alerts_per_day` on the held-back blocks. Pairs with fewer than PAIR_MIN_ROWS recent windows keep
their previous statistics; profiles (keys, operations, written ranges, periods) are not adapted, so a new
key still counts as new. The new model's `training.adapted` records what it was fitted on (the model it
replaces, windows fitted and held back, their span, what was excluded); with `ml.adapt_dir` set, every
refit is written there as a model directory. Windows another detector flagged (the baseline, rules, the
attack and auth detectors: every alert the engine writes reaches `MlDetector.on_alert`) are excluded too:
every window of a pair, in either direction, whose hosts an alert names, less than the longest window
before or after the alert; an alert naming one host only (a new host, a scan) excludes every pair of that
host around it.
"""
from __future__ import annotations

import copy
from collections import deque

from ...lazy import lazy

np = lazy("numpy")

from ...events import rfc3339
from .features import NS
from .models import PAIR_MIN_ROWS, STATS, Scorer, fit, pair_stats, robust_stats
from .store import build, finalize, save

BLOCK = 300 * NS
PERIOD = 4


class Adapter:
    def __init__(self, model, cfg):
        self.cfg = cfg
        self.every = cfg.adapt_every * NS
        self.min_rows = cfg.adapt_min_windows
        self.gap = model.spec.longest * NS
        self.rows: deque = deque(maxlen=cfg.adapt_keep)  # (end, pair index, row) of windows below threshold
        self.anom: dict[int, deque] = {}  # pair index -> ends of its recent anomalous windows
        self.other: dict[str, deque] = {}  # host address -> times of other detectors' alerts naming it alone
        self.other_pairs: dict[frozenset, deque] = {}  # {client, server} -> times of other detectors' alerts
        self.pair_hosts = [frozenset((c, s)) for c, s, _ in model.pairs]
        self.excluded_flagged = 0  # windows left out of the last refit for another detector's alert
        self.next_at: int | None = None
        self.refits = 0
        self.skipped: list[str] = []
        self.last_fit: list[tuple[int, int]] = []  # (end, pair index) of the rows the last refit used

    def observe(self, model, metas, X, scores, pidx):
        """Record a scored batch; returns a refitted model when one is due and possible, else None."""
        if not metas:
            return None
        thr, _ = model.thresholds(pidx)
        for i, m in enumerate(metas):
            p = int(pidx[i])
            if p < 0 or not model.known(m):
                continue
            if scores[i] > thr[i]:
                self.anom.setdefault(p, deque(maxlen=4096)).append(m.end)
            else:
                self.rows.append((m.end, p, X[i]))
        now = metas[-1].end
        if self.next_at is None:
            self.next_at = metas[0].end + self.every
        if now < self.next_at:
            return None
        while self.next_at <= now:
            self.next_at += self.every
        return self.refit(model, now)

    def flagged(self, a) -> None:
        """Another detector's alert: remember its time against the hosts it names."""
        fl = a.flow or getattr(a.event, "flow", None)
        c, s = (getattr(fl, "client_ip", None), getattr(fl, "server_ip", None)) if fl is not None else (None, None)
        if c and s:
            self.other_pairs.setdefault(frozenset((c, s)), deque(maxlen=4096)).append(a.ts)
        elif c or s:
            self.other.setdefault(c or s, deque(maxlen=4096)).append(a.ts)

    def _near(self, times, end: int) -> bool:
        """An alert at t lies in the windows ending in [t, t + longest]; plus the longest window either side."""
        return bool(times) and any(end - 2 * self.gap <= t <= end + self.gap for t in times)

    def _quiet(self, now: int) -> list[tuple]:
        out = []
        self.excluded_flagged = 0
        for end, p, row in self.rows:
            if end > now - self.gap:
                continue  # its pair's next windows are not known yet
            near = self.anom.get(p)
            if near and any(abs(e - end) <= self.gap for e in near):
                continue
            hosts = self.pair_hosts[p]
            if self._near(self.other_pairs.get(hosts), end) or any(self._near(self.other.get(h), end) for h in hosts):
                self.excluded_flagged += 1
                continue
            out.append((end, p, row))
        return out

    def refit(self, model, now: int):
        from .train import calibrate_pairs

        quiet = self._quiet(now)
        ends = np.array([q[0] for q in quiet], dtype=np.int64)
        if len(quiet) < self.min_rows:
            self.skipped.append(f"{rfc3339(now)}: {len(quiet)} quiet windows (need {self.min_rows})")
            return None
        P = np.array([q[1] for q in quiet], dtype=np.int64)
        Xq = np.array([q[2] for q in quiet])
        origin = int(ends.min()) - self.gap
        bstart = (ends - self.gap - origin) // BLOCK
        bend = (ends - 1 - origin) // BLOCK
        whole = bstart == bend
        hold = whole & (bstart % PERIOD == PERIOD - 1)
        fitm = whole & ~hold
        if fitm.sum() < 50 or hold.sum() < 20:
            self.skipped.append(f"{rfc3339(now)}: {int(fitm.sum())} windows to fit, {int(hold.sum())} held back "
                                f"(need 50 and 20)")
            return None
        floors = np.array([f.floor for f in model.spec.features()])
        Xf, Pf = Xq[fitm], P[fitm]
        npairs = len(model.pairs)
        stats = robust_stats(Xf, floors)
        pstats = pair_stats(Xf, Pf, npairs, floors)
        keep = pstats["rows"] < PAIR_MIN_ROWS  # too few recent windows: the pair keeps what it had
        for k in STATS:
            pstats[k][keep] = model.pstats[k][keep]
        pstats["rows"] = np.where(keep, model.pstats["rows"], pstats["rows"])
        params = model.meta["params"]
        arrays, new_params = fit(model.algorithm, Xf, int(params.get("seed", 0)), stats, pstats,
                                 float(params.get("guard_weight", 0.0)))
        new_params = {**params, **new_params}
        scorer = Scorer(model.algorithm, arrays, new_params, stats, pstats)
        cal = calibrate_pairs(scorer.score(Xq[hold], P[hold]), P[hold], npairs, self.cfg.false_alerts_per_day,
                              model.spec.hop)
        arrays["pair_threshold"] = cal.pop("pair_threshold")
        arrays["pair_threshold_high"] = cal.pop("pair_threshold_high")
        for k, v in stats.items():
            arrays[f"stats_{k}"] = v
        for k in STATS:
            arrays[f"pair_{k}"] = pstats[k]
        arrays["pair_rows"] = pstats["rows"]
        meta = copy.deepcopy(model.meta)
        for k in ("id", "created", "arrays"):
            meta.pop(k, None)
        meta["params"] = new_params
        meta.update(cal)
        meta["training"]["adapted"] = {
            "from_model": model.id, "refit": self.refits + 1, "windows_fit": int(fitm.sum()),
            "windows_holdout": int(hold.sum()), "span": {"start": rfc3339(int(ends.min())), "end": rfc3339(int(ends.max()))},
            "excluded": "windows above their threshold, windows of their pair within the longest window of one, "
                        "windows of hosts another detector alerted on within the longest window of that alert, "
                        "pairs absent from training",
            "windows_excluded_for_other_detectors": self.excluded_flagged,
            "pairs_keeping_previous_statistics": int(keep.sum())}
        finalize(meta, arrays)
        self.refits += 1
        self.last_fit = [(int(e), int(p)) for e, p in zip(ends[fitm | hold], P[fitm | hold])]
        if self.cfg.adapt_dir:
            save(self.cfg.adapt_dir, meta, arrays)
        return build(model.path, meta, arrays)
