"""The ML detector inside `otids analyze --model DIR`: events -> feature views -> window rows -> batched
scores -> alerts that say which features drove them, observed against typical.

Rows wait until `ml.batch` of them are ready or the oldest has waited `ml.max_delay` capture seconds, then
one scorer call handles them all (never one call per event). A pair alerts at once, then stays quiet for
`ml.realert_after` seconds (unless a window crosses the high-severity threshold after a medium alert): anomalous windows in between are reported in one follow-up alert (their count and
the worst of them) once that window has passed (or at the end of input); never dropped. Explanations occlude features greedily: the feature whose typical value lowers the
score most is the first driver, and so on, all candidates of one step scored in one batch.
"""
from __future__ import annotations

from ...lazy import lazy

np = lazy("numpy")  # loaded when a model is trained, loaded or scored, not for every command

from ...config import MlConfig
from ...events import Alert, rfc3339
from ..attack import techniques
from . import adapters  # noqa: F401  (registers the protocol adapters)
from .features import NS, RowMeta, Windower
from .store import Model
from .view import ADAPTERS

RULE_ID = "otids.ml.anomalous_window"
RULE_NAME = "Anomalous traffic pattern (ML)"
DESCRIPTION = ("The traffic between a client and a server over the last windows is unlike anything in the benign "
               "training traffic, by the model's score against its calibrated threshold. The drivers list the "
               "features that made the difference, observed against typical values for that pair.")

#: ATT&CK for ICS hints from the drivers: the first class (in this order) that any driver belongs to, plus
#: Rogue Master when the pair itself is new. Hints, not verdicts (docs/ML.md "Alerts").
HINT_CLASSES = (
    (frozenset(("new_write_key_count", "wval_dev", "write_share", "wval_rate", "wval_mean", "wval_max", "wval_min",
                "wval_std")), ("T0855", "T0836")),
    (frozenset(("op_distinct", "new_op_count", "op_diversity", "error_share", "anomaly_share", "new_key_count",
                "key_distinct")), ("T0846", "T0888")),
    (frozenset(("txn_rate", "byte_rate", "response_balance", "latency_mean")), ("T0814",)),
)


def hints(groups: list[str]) -> tuple[str, ...]:
    out: tuple[str, ...] = ()
    for members, ids in HINT_CLASSES:
        if members.intersection(groups):
            out = ids
            break
    return out + ("T0848",) if "new_pair" in groups else out


def explain(model: Model, X: np.ndarray, pidx: np.ndarray, k: int) -> list[list[dict]]:
    """Up to k drivers per row: greedy occlusion of feature groups (a feature in all its windows)."""
    A = len(X)
    if A == 0 or k <= 0:
        return [[] for _ in range(A)]
    typ, lo, hi, scale = model.typical(pidx)
    names = model.names
    gnames = list(dict.fromkeys(model.groups))
    cols = [np.array([j for j, g in enumerate(model.groups) if g == gn]) for gn in gnames]
    G = len(gnames)
    z = (X - typ) / scale
    score = model.scorer.score
    cur = X.copy()
    base = score(cur, pidx)
    avail = np.ones((A, G), dtype=bool)
    for g in range(G):  # a group already at its typical value cannot drive anything
        avail[:, g] = np.any(X[:, cols[g]] != typ[:, cols[g]], axis=1)
    out: list[list[dict]] = [[] for _ in range(A)]
    rep_p = np.repeat(pidx, G)
    for _ in range(min(k, G)):
        if not avail.any():
            break
        cand = np.repeat(cur, G, axis=0)
        arange = np.arange(A) * G
        for g in range(G):  # row a*G + g: row a with group g set to its typical value
            cand[np.ix_(arange + g, cols[g])] = typ[:, cols[g]]
        s = score(cand, rep_p).reshape(A, G)
        drop = base[:, None] - s
        drop = np.where(avail, drop, -np.inf)
        zmax = np.where(avail, np.stack([np.abs(z[:, c]).max(axis=1) for c in cols], axis=1), -np.inf)
        for a in range(A):
            if not avail[a].any():
                continue
            g = int(np.argmax(drop[a]))
            if not drop[a, g] > 0:  # nothing lowers the score on its own: the largest deviation instead
                g = int(np.argmax(zmax[a]))
            c = cols[g]
            j = int(c[np.argmax(np.abs(z[a, c]))])
            out[a].append({"feature": names[j], "observed": _r(X[a, j]), "typical": _r(typ[a, j]),
                           "typical_low": _r(lo[a, j]), "typical_high": _r(hi[a, j]),
                           "deviation": _r(z[a, j]), "contribution": _r(max(drop[a, g], 0.0))})
            avail[a, g] = False
            cur[a, c] = typ[a, c]
            base[a] = s[a, g]
    return out


def _r(x: float) -> float:
    return float(f"{float(x):.6g}")


class Alerter:
    """Scored rows -> alerts, with the per-pair re-alert window and batched explanations."""

    def __init__(self, model: Model, cfg: MlConfig):
        self.model = model
        self.realert = cfg.realert_after * NS
        self.k = cfg.explain
        self.max_pairs = cfg.max_pairs
        # pair -> [last alert end, windows counted since, worst of them (score, meta, row), last alert was high]
        self.state: dict[tuple, list] = {}

    def process(self, metas: list[RowMeta], X: np.ndarray, scores: np.ndarray, pidx: np.ndarray) -> list[Alert]:
        thr = self.model.threshold
        picks: list[int] = []
        # states whose re-alert window has closed with windows still to report: report them now
        now = metas[-1].end if metas else 0
        ended = [st for st in self.state.values() if st[1] and now - st[0] >= self.realert]
        for i in np.nonzero(scores > thr)[0]:
            m = metas[i]
            key = (m.client, m.server, m.protocol)
            st = self.state.get(key)
            high = scores[i] >= self.model.threshold_high
            # within the re-alert window: counted, unless it is the first high one after a medium alert
            if st is not None and m.end - st[0] < self.realert and (st[3] or not high):
                st[1] += 1
                if st[2] is None or scores[i] > st[2][0]:
                    st[2] = (float(scores[i]), m, X[i].copy())
                continue
            if st is not None and st[1] and not any(e is st for e in ended):
                ended.append(st)  # its follow-up reports the old episode's windows
            elif st is None and len(self.state) >= self.max_pairs:
                old = self.state.pop(next(iter(self.state)))
                if old[1]:
                    ended.append(old)
            self.state[key] = [m.end, 0, None, bool(high)]
            picks.append(int(i))
        out = self._follow_ups(ended)
        if picks:
            idx = np.array(picks)
            why = explain(self.model, X[idx], pidx[idx], self.k)
            out += [self._alert(metas[i], float(scores[i]), 1, d) for i, d in zip(picks, why)]
        return out

    def flush(self) -> list[Alert]:
        return self._follow_ups([st for st in self.state.values() if st[1]])

    def _follow_ups(self, states: list[list]) -> list[Alert]:
        """One alert per closed re-alert window: how many more anomalous windows, and the worst of them."""
        if not states:
            return []
        X = np.array([st[2][2] for st in states])
        metas = [st[2][1] for st in states]
        why = explain(self.model, X, self.model.pair_index(metas), self.k)
        out = []
        for st, d in zip(states, why):
            out.append(self._alert(st[2][1], st[2][0], st[1], d, follow_up=True))
            st[1], st[2] = 0, None
        return out

    def _alert(self, m: RowMeta, score: float, count: int, drivers: list[dict], follow_up: bool = False) -> Alert:
        model = self.model
        thr = model.threshold
        sev = "high" if score >= model.threshold_high else "medium"
        top = "; ".join(f"{d['feature']} {d['observed']:g} (typical {d['typical']:g})" for d in drivers)
        w = (m.end - m.start) // NS
        lead = f"{count} more anomalous windows after the last alert, the worst:" if follow_up else "ML"
        reason = (f"{lead} {model.algorithm} score {score:.4g} > threshold {thr:.4g} for {m.client} -> {m.server} "
                  f"({m.protocol}), {w} s ending {rfc3339(m.end)}" + (f": {top}" if top else ""))
        hint = hints([_group(d["feature"], model) for d in drivers])
        extra = {"ml": {"score": _r(score), "threshold": _r(thr), "algorithm": model.algorithm, "model_id": model.id,
                        "window": {"start": rfc3339(m.start), "end": rfc3339(m.end), "seconds": int(w)},
                        "drivers": drivers}}
        return Alert(ts=m.end, rule_id=RULE_ID, rule_name=RULE_NAME, description=DESCRIPTION, severity=sev,
                     reason=reason, source="ml", techniques=techniques(*hint) if hint else (), event=None,
                     flow=m.flow, protocol=m.protocol, count=count, extra=extra)


def _group(feature: str, model: Model) -> str:
    return model.groups[model.names.index(feature)]


class MlDetector:
    """Detector interface (ids.detect.engine): on_event(ev) and flush(ts) return alerts or None."""

    def __init__(self, model: Model, cfg: MlConfig, record: bool = False):
        self.model = model
        self.cfg = cfg
        self.windower = Windower(model.spec, model.profiles, self._rows, cfg.max_pairs)
        self.alerter = Alerter(model, cfg)
        self.metas: list[RowMeta] = []
        self.rows: list[list[float]] = []
        self.max_delay = cfg.max_delay * NS
        self.batch = cfg.batch
        self.calls = 0
        self.windows = 0
        self.record = record  # keep every scored row (otids eval, tests)
        self.scored_metas: list[RowMeta] = []
        self.scored: list[np.ndarray] = []
        self.scored_X: list[np.ndarray] = []

    def _rows(self, metas, rows) -> None:
        self.metas += metas
        self.rows += rows

    def on_event(self, ev):
        fn = ADAPTERS.get(type(ev))
        if fn is None:
            return None
        v = fn(ev)
        if v is None:
            return None
        self.windower.add(v)
        if self.rows and (len(self.rows) >= self.batch or v.ts - self.metas[0].end >= self.max_delay):
            return self._score()
        return None

    def _score(self) -> list[Alert]:
        metas, rows = self.metas, self.rows
        self.metas, self.rows = [], []
        X = np.array(rows, dtype=np.float64)
        pidx = self.model.pair_index(metas)
        s = self.model.scorer.score(X, pidx)
        self.calls += 1
        self.windows += len(rows)
        if self.record:
            self.scored_metas += metas
            self.scored.append(s)
            self.scored_X.append(X)
        return self.alerter.process(metas, X, s, pidx)

    def flush(self, ts: int):
        self.windower.advance(ts)
        out = self._score() if self.rows else []
        return out + self.alerter.flush()

    def results(self) -> tuple[list[RowMeta], np.ndarray, np.ndarray]:
        """Every scored row so far (record=True): metas, scores, feature matrix."""
        F = len(self.model.names)
        return (self.scored_metas, np.concatenate(self.scored) if self.scored else np.zeros(0),
                np.vstack(self.scored_X) if self.scored_X else np.zeros((0, F)))


# ---------------------------------------------------------------------------------------------- analyze plug-in
