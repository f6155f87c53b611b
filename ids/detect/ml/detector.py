"""The ML detector inside `otids analyze --model DIR`: events -> feature views -> window rows -> batched
scores -> alerts that say which features drove them, observed against typical.

Rows wait until `ml.batch` of them are ready or the oldest has waited `ml.max_delay` capture seconds, then
one scorer call handles them all (never one call per event). Anomalous windows form episodes: one alert
when a pair's anomaly starts, then at most one update per `ml.realert_after` (Alerter). A pair the model
never saw is scored against a stand-in of the same role and alerts once, or is not scored (roles.py).
Explanations occlude features greedily: the feature whose typical value lowers the score most is the first
driver, and so on, all candidates of one step scored in one batch.
"""
from __future__ import annotations

from ...lazy import lazy

np = lazy("numpy")  # loaded when a model is trained, loaded or scored, not for every command

from itertools import islice

from ...config import MlConfig
from ...events import Alert, rfc3339
from ...flow import budget
from ...flow.budget import KeyCap, trim_oldest
from ..attack import techniques
from . import adapters  # noqa: F401  (registers the protocol adapters)
from .features import NS, TABLE, RowMeta, Windower
from .store import Model
from .view import ADAPTERS, FeatureView

#: one pair's episode state with its worst unreported window (the row copied, RowMeta, key; tracemalloc)
PAIR_STATE_BYTES = 1_500
RULE_ID = "otids.ml.anomalous_window"
RULE_NAME = "Anomalous traffic pattern (ML)"
DESCRIPTION = ("The traffic between a client and a server over the last windows is unlike anything in the benign "
               "training traffic, by the model's score against its calibrated threshold. The drivers list the "
               "features that made the difference, observed against typical values for that pair.")

ABSTAIN_RULE_ID = "otids.ml.abstain"
ABSTAIN_DESCRIPTION = ("The ML model has no profile of the same role for this pair (neither its server nor its client "
                       "talked this protocol in training), so it does not score it. Retrain with traffic that "
                       "includes it to have it scored.")

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


class _PairState:
    """One pair's alerting state: its current (or last) episode and what has not been reported yet."""

    __slots__ = ("ep_start", "ep_last", "ep_windows", "ep_peak", "ep_n", "last_report", "high", "pending",
                 "pend_peak", "pend_high", "stand_in", "silenced")

    def __init__(self, stand_in: bool):
        self.ep_start = self.ep_last = 0
        self.ep_windows = 0
        self.ep_peak = 0.0
        self.ep_n = 0  # episodes of this pair so far
        self.last_report: int | None = None  # window end of the last alert
        self.high = False  # the last alert was high
        self.pending = 0  # anomalous windows not yet in any alert's count
        self.pend_peak = None  # the worst of them: (score, meta, row, pair index, high)
        self.pend_high = False
        self.stand_in = stand_in  # scored against another pair's profile (roles.py): one alert at most
        self.silenced = 0  # a stand-in pair's anomalous windows after its one alert

    def episode(self) -> tuple:
        return self.ep_n, self.ep_start, self.ep_last, self.ep_windows, self.ep_peak


class Alerter:
    """Scored rows -> episode alerts, with the per-pair re-alert window and batched explanations.

    An **episode** is a run of anomalous windows of one pair less than the longest window apart (windows that
    overlap share traffic). The first window of a pair alerts at once ("started"); later anomalous windows
    (of the same episode or of the next) are counted, and one update per `ml.realert_after` at most reports
    them ("ongoing" with the episode's duration, windows and peak score, or "ended"), with the drivers of the
    worst window since the last alert. A window crossing the high-severity threshold after a medium alert is
    reported at once. Every anomalous window of a known pair is in exactly one alert's count. A pair the
    model never saw (scored against a stand-in, roles.py) raises one alert at most; later anomalous windows
    are counted in `silenced` and left to the baseline's new-pair alert.
    """

    def __init__(self, model: Model, cfg: MlConfig):
        self.model = model
        self.realert = cfg.realert_after * NS
        self.gap = model.spec.longest * NS
        self.hop = model.spec.hop * NS
        self.k = cfg.explain
        self.max_pairs = cfg.max_pairs
        self.state: dict[tuple, _PairState] = {}
        self.waiting: dict[tuple, _PairState] = {}  # pairs with unreported windows (checked at every hop)
        self.silenced = 0  # anomalous windows of stand-in pairs after their one alert
        self.abstained: dict[tuple, int] = {}  # pairs the ML abstains for (roles.py) -> rows not judged
        # the episode states within an eighth of ml.max_state_bytes too (#16; bounds.py), at most ml.max_pairs
        self.cap = KeyCap("ml.alerter", cfg.max_state_bytes // 8, PAIR_STATE_BYTES, cfg.max_pairs)

    def process(self, metas: list[RowMeta], X: np.ndarray, scores: np.ndarray, pidx: np.ndarray) -> list[Alert]:
        """Rows in time order (as the Windower emits them); handled hop by hop, so that how rows were
        batched never changes what is alerted (otids eval scores all rows at once, analyze in batches)."""
        thr, high_thr = self.model.thresholds(pidx)
        out: list[Alert] = []
        picks: list[tuple] = []  # (state, kind, count, (score, meta, row, pidx, high))
        flagged = set(np.nonzero((scores > thr) & (pidx >= 0))[0].tolist())
        for i, m in enumerate(metas):
            if i == 0 or m.end != metas[i - 1].end:
                self._report_due(m.end, picks)
            if pidx[i] < 0:
                out += self._abstain_once(m)
            elif i in flagged:
                self._window(m, X[i], float(scores[i]), int(pidx[i]), bool(scores[i] >= high_thr[i]), picks)
        if metas and self.cap.hits != self.cap.reported:
            out += self._capped(metas[-1].end)
        return out + self._explained(picks)

    def _capped(self, ts: int, force: bool = False) -> list[Alert]:
        """memory_cap naming ml.alerter (episode states forgotten), at most once a minute of capture time."""
        from ..bounds import memory_cap_alert
        if force:
            self.cap.last_notice = None
        d = self.cap.report(ts)
        return [memory_cap_alert(ts, [d], "ml", "ml.max_pairs, an eighth of ml.max_state_bytes")] if d else []

    def _window(self, m: RowMeta, row, sc: float, pi: int, high: bool, picks: list) -> None:
        key = (m.client, m.server, m.protocol)
        st = self.state.get(key)
        if st is None:
            # at ml.max_pairs, or over its share of limits.memory_total (full() tells it what the states hold):
            if self.cap.full(self.state):  # the oldest eighth at once (one a key is quadratic)
                n = max(1, min(self.cap.max_keys, len(self.state)) // 8)
                for ok in list(islice(self.state, n)):
                    old = self.state.pop(ok)
                    if old.pending:
                        self._report(ok, old, picks, m.end)
                self.cap.hits += n
            st = self.state[key] = _PairState(not self.model.known(m))
        cont = st.ep_windows and m.end - st.ep_last <= self.gap
        if not cont:
            st.ep_start, st.ep_windows, st.ep_peak = m.end - self.hop, 0, 0.0
            st.ep_n += 1
        st.ep_last = m.end
        st.ep_windows += 1
        st.ep_peak = max(st.ep_peak, sc)
        worst = (sc, m, row, pi, high)
        if st.stand_in and st.last_report is not None:
            st.silenced += 1
            self.silenced += 1
            return
        if st.last_report is None or m.end - st.last_report >= self.realert or (high and not st.high):
            if st.pend_peak is not None and st.pend_peak[0] > sc:
                worst = st.pend_peak
            picks.append((st, ("ongoing" if cont else "started", st.episode()), st.pending + 1, worst))
            st.pending, st.pend_peak = 0, None
            self.waiting.pop(key, None)
            st.last_report, st.high = m.end, worst[4] or high
            return
        st.pending += 1
        self.waiting[key] = st
        if st.pend_peak is None or sc > st.pend_peak[0]:
            st.pend_peak = (sc, m, row.copy(), pi, high)  # a copy: a view would keep its whole batch alive

    def _report_due(self, now: int, picks: list) -> None:
        """Pairs whose re-alert window has passed with anomalous windows unreported: one update each."""
        for key, st in [(k, s) for k, s in self.waiting.items() if now - s.last_report >= self.realert]:
            self._report(key, st, picks, now)

    def _report(self, key: tuple, st: _PairState, picks: list, now: int) -> None:
        self.waiting.pop(key, None)
        picks.append((st, ("ongoing" if now - st.ep_last < self.gap else "ended", st.episode()), st.pending,
                      st.pend_peak))
        st.last_report, st.high = now, st.pend_peak[4]
        st.pending, st.pend_peak = 0, None

    def _abstain_once(self, m: RowMeta) -> list[Alert]:
        key = (m.client, m.server, m.protocol)
        n = self.abstained.get(key)
        self.abstained[key] = (n or 0) + 1
        if n is not None:
            return []
        if len(self.abstained) > self.max_pairs:  # the oldest eighth at once: one key per new key is quadratic
            trim_oldest(self.abstained, self.max_pairs)
        return [self._abstain(m)]

    def _abstain(self, m: RowMeta) -> Alert:
        reason = (f"ML abstains for {m.client} -> {m.server} ({m.protocol}): the model saw neither this server "
                  f"nor this client in {m.protocol} during training, so it has no profile to judge this pair by; "
                  f"said once per pair (the baseline reports new talkers)")
        return Alert(ts=m.end, rule_id=ABSTAIN_RULE_ID, rule_name="ML abstains for a pair it never saw",
                     description=ABSTAIN_DESCRIPTION, severity="info", reason=reason, source="ml", techniques=(),
                     event=None, flow=m.flow, protocol=m.protocol, count=1,
                     extra={"ml": {"abstain": True, "algorithm": self.model.algorithm, "model_id": self.model.id}})

    def _due(self, now: int) -> list:
        """Pairs whose re-alert window has passed with anomalous windows still unreported."""
        return [(k, st) for k, st in self.state.items()
                if st.pending and now - st.last_report >= self.realert]

    def flush(self) -> list[Alert]:
        """End of input: report every pair's unreported windows."""
        picks: list[tuple] = []
        for key, st in list(self.waiting.items()):
            self._report(key, st, picks, st.ep_last)
        return self._explained(picks) + self._capped(max((s.ep_last for s in self.state.values()), default=0), True)

    def _explained(self, picks: list) -> list[Alert]:
        if not picks:
            return []
        X2 = np.array([p[3][2] for p in picks])
        why = explain(self.model, X2, np.array([p[3][3] for p in picks], dtype=np.int64), self.k)
        return [self._alert(st, kind, count, w, d) for (st, kind, count, w), d in zip(picks, why)]

    def _alert(self, st: _PairState, kind: str, count: int, worst: tuple, drivers: list[dict]) -> Alert:
        model = self.model
        score, m, _, pi, high = worst
        kind, (ep_n, ep_start, ep_last, ep_windows, ep_peak) = kind
        thr = float(model.thresholds(np.array([pi]))[0][0])
        sev = "high" if high else "medium"
        top = "; ".join(f"{d['feature']} {d['observed']:g} (typical {d['typical']:g})" for d in drivers)
        w = (m.end - m.start) // NS
        dur = (ep_last - ep_start) // NS
        if kind == "started":
            lead = "ML anomaly started:"
        else:
            lead = (f"ML anomaly {'still going after' if kind == 'ongoing' else 'ended after'} {dur} s "
                    f"({ep_windows} anomalous windows, peak score {ep_peak:.4g}); {count} more anomalous "
                    f"windows since the last alert, the worst:")
        note = ""
        if st.stand_in:
            sk = model.stand_ins((m.client, m.server, m.protocol))
            note = (f" [pair absent from training, scored against {sk[0]} -> {sk[1]}; the ML alerts once for "
                    f"this pair and leaves its newness to the baseline]")
        reason = (f"{lead} {model.algorithm} score {score:.4g} > threshold {thr:.4g} for {m.client} -> {m.server} "
                  f"({m.protocol}), {w} s ending {rfc3339(m.end)}" + (f": {top}" if top else "") + note)
        hint = hints([_group(d["feature"], model) for d in drivers])
        if st.stand_in and "T0848" not in hint:  # a client the model never saw with this server
            hint += ("T0848",)
        ml = {"score": _r(score), "threshold": _r(thr), "algorithm": model.algorithm, "model_id": model.id,
              "window": {"start": rfc3339(m.start), "end": rfc3339(m.end), "seconds": int(w)},
              "drivers": drivers,
              "episode": {"state": kind, "number": ep_n, "start": rfc3339(ep_start),
                          "end": rfc3339(ep_last), "seconds": int(dur), "windows": ep_windows,
                          "peak_score": _r(ep_peak)}}
        if st.stand_in:
            sk = model.stand_ins((m.client, m.server, m.protocol))
            ml["stand_in"] = {"client": sk[0], "server": sk[1]}
        return Alert(ts=m.end, rule_id=RULE_ID, rule_name=RULE_NAME, description=DESCRIPTION, severity=sev,
                     reason=reason, source="ml", techniques=techniques(*hint) if hint else (), event=None,
                     flow=m.flow, protocol=m.protocol, count=count, extra={"ml": ml})


def _group(feature: str, model: Model) -> str:
    return model.groups[model.names.index(feature)]


_NOW = float("-inf")  # the windower's `due` for a full batch: scored at the next event


class MlDetector:
    """Detector interface (ids.detect.engine): on_event(ev) and flush(ts) return alerts or None."""

    def __init__(self, model: Model, cfg: MlConfig, record: bool = False):
        self.model = model
        self.cfg = cfg
        self.windower = Windower(model.spec, model.profiles, self._rows, cfg.max_pairs, model.stand_ins,
                                 cfg.max_state_bytes)
        self.cap_alerted: int | None = None  # time of the last state-capped alert
        self.cap_seen = (0, 0, 0)  # windower's refused pairs, key and stream cap hits at that alert
        self.alerter = Alerter(model, cfg)
        self.metas: list[RowMeta] = []
        self.rows: list[list[float]] = []
        self.max_delay = cfg.max_delay * NS
        self.batch = cfg.batch
        # Events go straight to the windower's entry (compiled: no Python frame per exchange); it calls _act
        # when this detector must do something. The windower's `due`: while rows wait, the capture time from
        # which they are scored (-inf: a full batch), else None.
        self.windower.attach(self, ADAPTERS, self._act)
        self.on_event = self.windower.on_event
        self.on_view = self.windower.on_view  # a feature view (on_event's, or one a worker built, as a tuple)
        self.calls = 0
        self.windows = 0
        self.record = record  # keep every scored row (otids eval, tests)
        self.scored_metas: list[RowMeta] = []
        self.scored: list[np.ndarray] = []
        self.scored_X: list[np.ndarray] = []
        self.adapter = None
        if cfg.adapt_every > 0:
            from .adapt import Adapter
            self.adapter = Adapter(model, cfg)

    def on_alert(self, a: Alert) -> None:
        """Another detector's alert (the engine calls this for every alert written): adaptation never learns
        the windows of its hosts around it."""
        if self.adapter is not None and a.source != "ml":
            self.adapter.flagged(a)

    @staticmethod
    def accepts(t: type) -> bool:
        """Only event types with a feature view (the engine routes nothing else here, and with --workers the
        others need not cross to the parent for this detector)."""
        return t in ADAPTERS

    def _rows(self, metas, rows) -> None:
        self.metas += metas
        self.rows += rows
        # decided here, once per hop, rather than on every event
        self.windower.due = _NOW if len(self.rows) >= self.batch else self.metas[0].end + self.max_delay

    def worker_view(self, t: type):
        """The adapter of event type `t`, for a worker of `--workers N` to build views with when this detector
        is the parent's only reader of `t` (ids.parallel.offload): the view crosses to on_view instead of
        the event. Adapters are pure functions of the event, so the view is the one on_event would build; it
        crosses as a plain tuple (ids.parallel.offload.parent_views)."""
        fn = ADAPTERS.get(t)
        if fn is None:
            return None

        def view(ev):
            v = fn(ev)
            return tuple(v) if v is not None else None
        return view

    def _act(self, v, flag: bool):
        """After the windower counted view `v` (Windower.on_view): `flag`, the state is over
        ml.max_state_bytes or pairs were refused since _capped; or waiting rows are due."""
        if flag:
            capped = self._capped(FeatureView._make(v))
            if capped is not None:
                return [capped] + (self._score() if self.rows else [])
        due = self.windower.due
        if due is not None and v[0] >= due:  # (v.ts)
            return self._score()
        return None

    def _capped(self, v) -> Alert | None:
        """One alert per ml.realert_after while the windowing state is full (ml.max_state_bytes)."""
        w = self.windower
        if self.cap_alerted is not None and v.ts - self.cap_alerted < self.cfg.realert_after * NS:
            return None
        seen = (w.pairs_refused, w.key_cap_hits, w.stream_cap_hits)
        self.cap_alerted = v.ts
        d = [a - b for a, b in zip(seen, self.cap_seen)]
        self.cap_seen = seen
        w.refused_ack = seen[0]
        total = "; limits.memory_total reached" if self._total() else ""
        return Alert(
            ts=v.ts, rule_id="otids.ml.state_capped", rule_name="ML window state full",
            description="The ML detector's windowing state reached ml.max_state_bytes: new pairs, keys and streams "
                        "are not tracked until idle pairs are forgotten.",
            severity="medium", source="ml", flow=v.flow, protocol=v.protocol,
            reason=f"ML window state full: about {w.state_bytes:,} bytes for {len(w.pairs):,} pairs "
                   f"(ml.max_state_bytes {w.max_bytes:,}{total}); since the last such alert {d[0]:,} new pairs not "
                   f"tracked, {d[1]:,} keys and {d[2]:,} streams not counted (pairs evicted so far "
                   f"{w.pairs_evicted:,})",
            extra={"ml": {"state_bytes": w.state_bytes, "max_state_bytes": w.max_bytes, "pairs": len(w.pairs),
                          "pairs_refused": d[0], **self._total()}})

    @staticmethod
    def _total() -> dict:
        """limits.memory_total, when the windower gave up pairs for it (ids/flow/budget.py: Shared)."""
        g = budget.SHARED
        return {"memory_total": g.limit} if g is not None and TABLE in g.refused else {}

    def _score(self) -> list[Alert]:
        metas, rows = self.metas, self.rows
        self.metas, self.rows, self.windower.due = [], [], None
        X = np.array(rows, dtype=np.float64)
        pidx = self.model.pair_index(metas)
        s = self.model.scorer.score(X, pidx)
        self.calls += 1
        self.windows += len(rows)
        if self.record:
            self.scored_metas += metas
            self.scored.append(s)
            self.scored_X.append(X)
        out = self.alerter.process(metas, X, s, pidx)
        if self.adapter is not None:
            new = self.adapter.observe(self.model, metas, X, s, pidx)
            if new is not None:  # later windows are scored by the refitted model
                self.model = self.alerter.model = new
        return out

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
