"""Scoring models: fitted with scikit-learn, kept as plain arrays, scored by numpy on whole batches.

Three algorithms share one interface, `score(X, pair_index) -> scores` (higher = more anomalous):
  iforest  scikit-learn IsolationForest on the raw features (default); score 2^(-E(h)/c(psi)) as in the paper
           and in sklearn's score_samples (negated there), plus guard_weight x the range guard (Scorer.guard)
  lof      scikit-learn LocalOutlierFactor(novelty=True) on robust-scaled features; score = local outlier factor
  robust   per-feature robust z-score baseline: max_j |x_j - median_j| / scale_j, with the pair's own
           median and scale where training had enough rows of that pair, the global ones otherwise

Fitting uses scikit-learn; scoring re-implements each estimator's score_samples over exported arrays
(tests/test_ml_models.py checks them against scikit-learn). That is what lets a model file hold nothing
but arrays and JSON (no pickle, nothing executed on load), load under any scikit-learn version, and score
bit-identically on any machine: only element-wise IEEE arithmetic (+ - * / sqrt, comparisons) is used,
never SIMD-dispatched transcendental kernels, BLAS, or reductions whose order depends on the CPU.
"""
from __future__ import annotations

import math

from ...lazy import lazy

np = lazy("numpy")  # loaded when a model is trained, loaded or scored, not for every command

ALGORITHMS = ("iforest", "lof", "robust")
DEFAULT_ALGORITHM = "iforest"
IF_TREES = 200
LOF_NEIGHBORS = 20
GUARD_WEIGHT = 0.05  # iforest score per robust scale beyond the training range (docs/ML.md "Range guard")
PAIR_MIN_ROWS = 20  # training rows a pair needs before its own medians and scales are used
_CHUNK = 64  # rows per LOF distance block (64 x training rows x 8 bytes)
_IF_CHUNK = 256  # rows per isolation-forest walk (trees x 256 node indices stay in cache)

_LN2 = 0.6931471805599453
_SQRT1_2 = 0.7071067811865476
_INV_FACT = [1.0 / math.factorial(k) for k in range(17)]


def exp2_neg(y: np.ndarray) -> np.ndarray:
    """2 ** -y for y >= 0 with element-wise arithmetic only (numpy's power/exp2 kernels differ by an ulp
    between CPUs): 2^-y = 2^-n * 2^-1/2 * e^((1/2 - f) ln 2) with n = floor(y), f = y - n, and a degree-16
    Taylor polynomial on |t| <= 0.35 (error below 1e-20)."""
    n = np.floor(y)
    t = (0.5 - (y - n)) * _LN2
    p = np.full_like(t, _INV_FACT[16])
    for k in range(15, -1, -1):
        p = p * t + _INV_FACT[k]
    return np.ldexp(p * _SQRT1_2, (-n).astype(np.int64))


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): average path length of an unsuccessful BST search (Liu et al. 2008), as scikit-learn has it."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


# ---------------------------------------------------------------------------------------------- statistics

STATS = ("median", "scale", "q05", "q95", "min", "max")


def robust_stats(X: np.ndarray, floors: np.ndarray) -> dict[str, np.ndarray]:
    """Median, robust scale (max(1.4826 MAD, IQR/1.349, floor)), 5th and 95th percentiles, min and max per column."""
    med = np.median(X, axis=0)
    mad = np.median(np.abs(X - med), axis=0)
    q25, q75 = np.percentile(X, [25, 75], axis=0)
    scale = np.maximum(np.maximum(1.4826 * mad, (q75 - q25) / 1.349), floors)
    q05, q95 = np.percentile(X, [5, 95], axis=0)
    return {"median": med, "scale": scale, "q05": q05, "q95": q95, "min": X.min(axis=0), "max": X.max(axis=0)}


def pair_stats(X: np.ndarray, pair_index: np.ndarray, npairs: int, floors: np.ndarray) -> dict[str, np.ndarray]:
    """robust_stats per pair (rows: pairs in profile order); `rows` holds each pair's row count."""
    F = X.shape[1]
    out = {k: np.zeros((npairs, F)) for k in STATS}
    rows = np.zeros(npairs, dtype=np.int64)
    for p in range(npairs):
        sel = X[pair_index == p]
        rows[p] = len(sel)
        if len(sel):
            for k, v in robust_stats(sel, floors).items():
                out[k][p] = v
    out["rows"] = rows
    return out


# ---------------------------------------------------------------------------------------------- fitting

def fit(algorithm: str, X: np.ndarray, seed: int, stats: dict, pstats: dict,
        guard_weight: float = 0.05) -> tuple[dict, dict]:
    """Fit `algorithm` on benign rows X; returns (arrays, params) for the model file."""
    if algorithm == "iforest":
        arrays, params = _fit_iforest(X, seed)
        params["guard_weight"] = guard_weight
        return arrays, params
    if algorithm == "lof":
        return _fit_lof((X - stats["median"]) / stats["scale"])
    if algorithm == "robust":
        return {}, {}
    raise ValueError(f"unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")


def _fit_iforest(X: np.ndarray, seed: int) -> tuple[dict, dict]:
    from sklearn.ensemble import IsolationForest

    est = IsolationForest(n_estimators=IF_TREES, max_samples="auto", random_state=seed, n_jobs=1)
    est.fit(X)
    feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
    base = 0
    max_depth = 0
    for tree, fmap in zip(est.estimators_, est.estimators_features_):
        t = tree.tree_
        n = t.node_count
        left = t.children_left.astype(np.int64)
        right = t.children_right.astype(np.int64)
        leaf = left < 0
        depth = np.zeros(n, dtype=np.float64)
        for i in range(n):  # children always follow their parent in sklearn's node order
            if not leaf[i]:
                depth[left[i]] = depth[right[i]] = depth[i] + 1
        max_depth = max(max_depth, int(depth.max()))
        idx = np.arange(n)
        feats.append(np.where(leaf, 0, np.asarray(fmap)[np.maximum(t.feature, 0)]))
        thrs.append(np.where(leaf, 0.0, t.threshold))
        # leaves point to themselves, so every row can take max_depth steps without checking for leaves
        lefts.append(np.where(leaf, idx, left) + base)
        rights.append(np.where(leaf, idx, right) + base)
        vals.append(depth + average_path_length(t.n_node_samples))
        roots.append(base)
        base += n
    arrays = {"if_feature": np.concatenate(feats).astype(np.int32), "if_threshold": np.concatenate(thrs),
              "if_left": np.concatenate(lefts).astype(np.int32), "if_right": np.concatenate(rights).astype(np.int32),
              "if_leafval": np.concatenate(vals), "if_roots": np.asarray(roots, dtype=np.int32),
              "if_denominator": np.asarray([len(roots) * average_path_length([est.max_samples_])[0]])}
    return arrays, {"trees": len(roots), "max_samples": int(est.max_samples_), "max_depth": max_depth, "seed": seed}


def _fit_lof(Z: np.ndarray) -> tuple[dict, dict]:
    from sklearn.neighbors import LocalOutlierFactor

    k = min(LOF_NEIGHBORS, len(Z) - 1)
    est = LocalOutlierFactor(n_neighbors=k, novelty=True)
    est.fit(Z)
    # Training points' k-distances and local reachability densities, as sklearn computed them in fit().
    k = est.n_neighbors_
    arrays = {"lof_X": np.ascontiguousarray(est._fit_X, dtype=np.float64),
              "lof_kdist": np.ascontiguousarray(est._distances_fit_X_[:, k - 1], dtype=np.float64),
              "lof_lrd": np.ascontiguousarray(est._lrd, dtype=np.float64)}
    return arrays, {"neighbors": int(k)}


# ---------------------------------------------------------------------------------------------- scoring

class Scorer:
    """Scores rows with one model's arrays. Pure numpy; every call handles a whole batch."""

    def __init__(self, algorithm: str, arrays: dict, params: dict, stats: dict, pstats: dict):
        self.algorithm = algorithm
        self.a = arrays
        self.params = params
        self.stats = stats
        self.pstats = pstats
        use = pstats["rows"] >= PAIR_MIN_ROWS

        def per_pair(k):  # row p: pair p's statistic; last row: the global one (pairs without enough rows)
            return np.vstack([np.where(use[:, None], pstats[k], stats[k]), stats[k][None, :]])

        self.scale = per_pair("scale")
        if algorithm == "iforest":
            self.max_depth = int(params["max_depth"])
            self.if_feature = arrays["if_feature"].astype(np.int64)
            self.if_left = arrays["if_left"].astype(np.int64)
            self.if_right = arrays["if_right"].astype(np.int64)
            self.if_roots = arrays["if_roots"].astype(np.int64)
            self.guard_weight = float(params.get("guard_weight", 0.0))
            self.lo, self.hi = per_pair("min"), per_pair("max")
        if algorithm == "robust":
            self.center = per_pair("median")

    def score(self, X: np.ndarray, pair_index: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        if self.algorithm == "iforest":
            s = self._iforest(X)
            if self.guard_weight:
                s = s + self.guard_weight * self.guard(X, pair_index)
            return s
        if self.algorithm == "lof":
            return self._lof((X - self.stats["median"]) / self.stats["scale"])
        return self._robust(X, pair_index)

    def _iforest(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X))
        for lo in range(0, len(X), _IF_CHUNK):  # chunks keep the (trees x rows) node arrays in cache
            out[lo:lo + _IF_CHUNK] = self._iforest_chunk(X[lo:lo + _IF_CHUNK])
        return out

    def _iforest_chunk(self, X: np.ndarray) -> np.ndarray:
        a = self.a
        # scikit-learn's trees compare float32 features with float64 thresholds: do the same.
        n, F = X.shape
        Xf = X.astype(np.float32).astype(np.float64).ravel()
        feat, thr, left, right = self.if_feature, a["if_threshold"], self.if_left, self.if_right
        base = np.arange(n, dtype=np.int64)[None, :] * F
        nodes = np.repeat(self.if_roots[:, None], n, axis=1)  # (trees, rows): one walk per tree and row
        for _ in range(self.max_depth):  # leaves point to themselves, so extra steps stay put
            go = Xf.take(base + feat.take(nodes)) <= thr.take(nodes)
            nodes = np.where(go, left.take(nodes), right.take(nodes))
        vals = a["if_leafval"].take(nodes)
        total = np.zeros(n)
        for t in range(len(vals)):  # trees in order, as sklearn sums them
            total = total + vals[t]
        return exp2_neg(total / a["if_denominator"][0])

    def guard(self, X: np.ndarray, pair_index: np.ndarray) -> np.ndarray:
        """Range guard: how far (in robust scales) the most extreme feature lies outside the range the pair
        showed in training. An isolation forest cannot see past its training range (every point beyond it
        lands in the leaf of the most extreme training point), so the iforest score adds this times
        guard_weight; inside the range it is 0."""
        pi = np.where(pair_index < 0, len(self.scale) - 1, pair_index)
        lo, hi, sc = self.lo[pi], self.hi[pi], self.scale[pi]
        ex = np.maximum(np.maximum(X - hi, lo - X), 0.0) / sc
        out = ex[:, 0].copy()
        for j in range(1, ex.shape[1]):
            out = np.maximum(out, ex[:, j])
        return out

    def _lof(self, Z: np.ndarray) -> np.ndarray:
        fitX, kdist, lrd = self.a["lof_X"], self.a["lof_kdist"], self.a["lof_lrd"]
        k = int(self.params["neighbors"])
        out = np.empty(len(Z))
        for lo in range(0, len(Z), _CHUNK):
            z = Z[lo:lo + _CHUNK]
            d2 = np.zeros((len(z), len(fitX)))
            for j in range(Z.shape[1]):  # one column at a time: no BLAS, no reordered sums
                diff = z[:, j:j + 1] - fitX[None, :, j]
                d2 = d2 + diff * diff
            d = np.sqrt(d2)
            nn = np.argsort(d, axis=1, kind="stable")[:, :k]
            dk = np.take_along_axis(d, nn, axis=1)
            reach = np.maximum(dk, kdist[nn])
            s = np.zeros(len(z))
            for j in range(k):
                s = s + reach[:, j]
            lrd_x = 1.0 / (s / k + 1e-10)
            r = np.zeros(len(z))
            for j in range(k):
                r = r + lrd[nn[:, j]] / lrd_x
            out[lo:lo + len(z)] = r / k
        return out

    def _robust(self, X: np.ndarray, pair_index: np.ndarray) -> np.ndarray:
        pi = np.where(pair_index < 0, len(self.center) - 1, pair_index)
        z = np.abs(X - self.center[pi]) / self.scale[pi]
        out = z[:, 0].copy()
        for j in range(1, z.shape[1]):
            out = np.maximum(out, z[:, j])
        return out
