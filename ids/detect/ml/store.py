"""Model files: a directory with model.json (metadata, profiles, threshold) and arrays.npz (numbers only).

Why arrays + JSON and not pickle or skops: loading runs no code at all (json.loads, and numpy's .npy reader
with allow_pickle=False), so a model file from elsewhere cannot execute anything; the file does not depend
on scikit-learn's internal classes, which change between releases (skops refuses or warns on a version
change, and its trusted-types list would have to name private Cython types); and the bytes are
reproducible: arrays are stored uncompressed (zlib builds differ) with fixed zip timestamps, JSON with
sorted keys. The creation time honours SOURCE_DATE_EPOCH (reproducible-builds.org), so two trainings on the
same data give identical files; the model id is a hash of everything but the creation time.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone

from ...lazy import lazy

np = lazy("numpy")  # loaded when a model is trained, loaded or scored, not for every command

from ...errors import UserError
from .features import FEATURE_VERSION, PairProfile, WindowSpec, profiles_from_json
from .models import ALGORITHMS, PAIR_MIN_ROWS, STATS, Scorer
from .roles import StandIns

FORMAT = "otids-ml-model/1"
META = "model.json"
ARRAYS = "arrays.npz"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def array_digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def created_time() -> str:
    """Now, or SOURCE_DATE_EPOCH when set, as RFC 3339 UTC."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    t = int(sde) if sde and sde.isdigit() else int(time.time())
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_id(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k not in ("id", "created")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def finalize(meta: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Fill meta["arrays"] (digests), meta["id"] and meta["created"]; returns meta."""
    meta["arrays"] = {k: {"dtype": arrays[k].dtype.str, "shape": list(arrays[k].shape), "sha256": array_digest(arrays[k])}
                      for k in sorted(arrays)}
    meta["id"] = model_id(meta)
    meta["created"] = created_time()
    return meta


def save(directory: str, meta: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Write the model (finalizing meta first). Returns meta."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise UserError(f"{directory}: cannot create the model directory: {e.strerror}") from None
    finalize(meta, arrays)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for k in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arrays[k]), allow_pickle=False)
            info = zipfile.ZipInfo(k + ".npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            z.writestr(info, data.getvalue())
    try:
        with open(os.path.join(directory, ARRAYS), "wb") as fh:
            fh.write(buf.getvalue())
        with open(os.path.join(directory, META), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, sort_keys=True, indent=1)
            fh.write("\n")
    except OSError as e:
        raise UserError(f"{directory}: cannot write the model: {e.strerror}") from None
    return meta


@dataclass
class Model:
    """A loaded model: what the detector, `otids eval` and explanations need."""

    path: str
    meta: dict
    spec: WindowSpec
    names: list[str]
    groups: list[str]
    profiles: dict[tuple, PairProfile]
    pairs: list[tuple]
    pair_pos: dict[tuple, int]
    stats: dict[str, np.ndarray]
    pstats: dict[str, np.ndarray]
    scorer: Scorer
    threshold: float
    threshold_high: float
    pair_threshold: np.ndarray = None  # per pair (calibrated on its held-back blocks), last entry the global one
    pair_threshold_high: np.ndarray = None
    stand_ins: StandIns = None  # unknown pair -> the known pair it is scored against, or None (roles.py)

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def algorithm(self) -> str:
        return self.scorer.algorithm

    def pair_index(self, metas) -> np.ndarray:
        """Row -> pair index: the pair's own, its stand-in's for a pair the model never saw, -1 to abstain."""
        pos, si = self.pair_pos, self.stand_ins

        def one(key):
            i = pos.get(key)
            if i is None:
                s = si(key) if si is not None else None
                i = pos.get(s, -1) if s is not None else -1
            return i
        return np.fromiter((one((m.client, m.server, m.protocol)) for m in metas), dtype=np.int64, count=len(metas))

    def known(self, m) -> bool:
        return (m.client, m.server, m.protocol) in self.pair_pos

    def thresholds(self, pair_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the alert threshold and the high-severity threshold of its pair (-1: the global ones)."""
        pi = np.where(pair_index < 0, len(self.pair_threshold) - 1, pair_index)
        return self.pair_threshold[pi], self.pair_threshold_high[pi]

    def typical(self, pair_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row: typical value, low and high of the typical range, scale (the pair's where it has enough
        training rows, else the whole training set's)."""
        ps, gs = self.pstats, self.stats
        out = []
        for k in ("median", "q05", "q95", "scale"):
            g = np.broadcast_to(gs[k], (len(pair_index), len(gs[k])))
            if len(ps["rows"]):
                pi = np.maximum(pair_index, 0)
                use = (pair_index >= 0) & (ps["rows"][pi] >= PAIR_MIN_ROWS)
                out.append(np.where(use[:, None], ps[k][pi], g))
            else:
                out.append(np.array(g))
        return tuple(out)


def build(path: str, meta: dict, arrays: dict) -> Model:
    """A Model from metadata and arrays already in memory (as training has them)."""
    fs = meta["feature_set"]
    spec = WindowSpec(int(fs["hop"]), tuple(int(w) for w in fs["windows"]), int(fs["lateness"]))
    stats = {k: arrays[f"stats_{k}"] for k in STATS}
    pstats = {k: arrays[f"pair_{k}"] for k in STATS}
    pstats["rows"] = arrays["pair_rows"]
    pairs = [tuple(p) for p in meta["pairs"]]
    algo = meta["algorithm"]
    scorer = Scorer(algo, arrays, meta["params"], stats, pstats)
    thr, high = float(meta["threshold"]), float(meta["threshold_high"])
    pthr = arrays.get("pair_threshold")  # models before per-pair calibration: the global threshold for all
    pthr = pthr if pthr is not None else np.full(len(pairs) + 1, thr)
    phigh = arrays.get("pair_threshold_high")
    phigh = phigh if phigh is not None else np.full(len(pairs) + 1, high)
    profiles = profiles_from_json(meta["profiles"])
    return Model(path, meta, spec, list(fs["names"]), spec.groups(), profiles, pairs,
                 {p: i for i, p in enumerate(pairs)}, stats, pstats, scorer, thr, high, pthr, phigh,
                 StandIns(profiles))


def load(directory: str) -> Model:
    """Load and check a model directory; every problem is one UserError line naming the file."""
    mpath = os.path.join(directory, META)
    apath = os.path.join(directory, ARRAYS)
    if not os.path.isdir(directory):
        raise UserError(f"{directory}: no such model directory (make one with `otids train PCAP... -o {directory}`)")
    try:
        with open(mpath, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{mpath}: missing (not a model directory; make one with `otids train`)") from None
    except OSError as e:
        raise UserError(f"{mpath}: cannot read: {e.strerror}") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, and an integer of over 4,300 digits
        raise UserError(f"{mpath}:{getattr(e, 'lineno', 1)}: not valid JSON"
                        f"{'' if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)) else ' (' + str(e).split(';')[0] + ')'}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"{mpath}: format {got!r} is not an otids ML model this version reads ({FORMAT})")
    try:
        fs = meta["feature_set"]
        spec = WindowSpec(int(fs["hop"]), tuple(int(w) for w in fs["windows"]), int(fs["lateness"]))
        bad = spec.check()
        if bad:
            raise UserError(f"{mpath}: invalid windowing: {bad}")
        if (int(fs["version"]) != FEATURE_VERSION or fs["names"] != spec.feature_names()
                or fs["id"] != spec.feature_set_id()):
            raise UserError(
                f"{mpath}: built for feature set {fs['id']} (definitions v{fs['version']}, {len(fs['names'])} features); "
                f"this otids computes {spec.feature_set_id()} (v{FEATURE_VERSION}, {len(spec.feature_names())} features) "
                f"for those windows: retrain with `otids train`")
        if meta["algorithm"] not in ALGORITHMS:
            raise UserError(f"{mpath}: unknown algorithm {meta['algorithm']!r} (known: {', '.join(ALGORITHMS)})")
        declared = meta["arrays"]
        if model_id(meta) != meta["id"]:
            raise UserError(f"{mpath}: contents do not match the model id {meta['id']} (edited or damaged file)")
    except KeyError as e:
        raise UserError(f"{mpath}: missing field {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{mpath}: malformed field ({e})") from None
    arrays = {}
    try:
        with np.load(apath, allow_pickle=False) as z:
            for name, d in declared.items():
                if name not in z.files:
                    raise UserError(f"{apath}: array {name!r} named in model.json is missing")
                a = z[name]
                if array_digest(a) != d["sha256"]:
                    raise UserError(f"{apath}: array {name!r} does not match its hash in model.json (damaged or edited file)")
                arrays[name] = a
    except FileNotFoundError:
        raise UserError(f"{apath}: missing (the model directory is incomplete)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{apath}: not a readable array file ({e})") from None
    try:
        return build(directory, meta, arrays)
    except KeyError as e:
        raise UserError(f"{mpath}: missing field or array {e.args[0]!r}") from None
