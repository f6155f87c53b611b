"""Window features per (client, server, protocol): FeatureViews in, one row of numbers per pair per hop out.

Time is cut into hops (10 s by default); each pair keeps one bucket of running sums per hop, and a row at
hop boundary t combines the last w/hop buckets for each window length w (10 s and 60 s by default), so a
row costs O(buckets), never a pass over events. Every feature is defined in FEATURES (docs/ML.md lists
them with their meaning); training profiles (keys, operations and written values seen per pair) turn into
the never-seen counts. Scoring and thresholds are models.py's business.

All arithmetic is plain IEEE double (+ - * / sqrt), so the same capture gives bit-identical rows on any
machine.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass
from typing import NamedTuple

try:
    import cython  # C types for the compiled path (setup.py, features.pxd); no-ops when this runs as Python
except ImportError:
    from ... import _cy as cython

from ...flow import budget

NS = 1_000_000_000

#: Bumped whenever a feature's definition changes: models built for another version refuse to load.
FEATURE_VERSION = 3  # 2: value statistics in units of each key's training spread (keys of different scales)
# 3: period_error ignores streams sporadic in training (hand-made actions are not polls) and intervals
#    over 3 periods (a screen opened again, not a poll gone wrong; was 8)


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str
    floor: float  # smallest meaningful spread: robust scales never go below it (a change smaller is noise)
    description: str


#: Per-window features, computed once for each window length (name suffix _10s, _60s, ...).
WINDOW_FEATURES: tuple[Feature, ...] = (
    Feature("txn_rate", "1/s", 0.1, "Requests per second (exchanges the client started; unsolicited responses excluded)."),
    Feature("byte_rate", "B/s", 10.0, "Application bytes per second, both directions (as each protocol's adapter counts them: docs/ML.md)."),
    Feature("response_balance", "ratio", 0.05,
            "(unsolicited responses - unanswered requests) / exchanges expecting an answer: 0 balanced, "
            "-1 nothing answered (flood, dead device), +1 only responses nobody asked for (injection)."),
    Feature("error_share", "ratio", 0.05, "Share of exchanges answered with an exception or error status."),
    Feature("anomaly_share", "ratio", 0.05, "Share of exchanges the parser flagged with protocol anomalies (malformed, mismatched)."),
    Feature("latency_mean", "s", 0.05, "Mean response time of answered requests (0 when none)."),
    Feature("write_share", "ratio", 0.05, "Share of exchanges that change server state (writes, calls, publishes)."),
    Feature("op_distinct", "count", 1.0, "Distinct operations (function codes, services, packet types)."),
    Feature("op_diversity", "ratio", 0.05, "Gini-Simpson index of the operation mix, 1 - sum(p_i^2): 0 one operation, towards 1 many equally."),
    Feature("new_op_count", "count", 1.0, "Distinct operations this pair never used in the training traffic."),
    Feature("key_distinct", "count", 1.0, "Distinct keys addressed (Modbus unit:table:address, OPC UA node ids, MQTT topics)."),
    Feature("new_key_count", "count", 1.0, "Distinct keys this pair never addressed in the training traffic."),
    Feature("new_write_key_count", "count", 1.0, "Distinct keys written that this pair never wrote in the training traffic."),
    Feature("iat_mean", "s", 0.1, "Mean time between consecutive requests of the pair (the window length when fewer than two)."),
    Feature("iat_cv", "ratio", 0.1, "Spread of those inter-arrival times: standard deviation / mean (0 when fewer than two)."),
    Feature("period_error", "ratio", 0.05,
            "Mean relative deviation |interval - period| / period of each request from its stream's period, a stream "
            "being one (operation, first key) of the pair and its period the median interval of that stream in "
            "training (a running estimate for streams training never saw): ~0 for steady polling, at most 10 per "
            "request; an interval over 3 periods is a stream resuming and counts nothing; a stream whose training "
            "intervals were irregular (interquartile range over half the median: an operator's set-point, not a "
            "poll) counts nothing either."),
    Feature("wval_rate", "1/s", 0.1, "Numeric values written per second."),
    Feature("wval_mean", "spreads", 1.0, "Mean of the written values, each taken relative to its key (see wval_min; 0 when none)."),
    Feature("wval_std", "spreads", 1.0, "Standard deviation of those relative written values (0 when fewer than two)."),
    Feature("wval_min", "spreads", 1.0,
            "Smallest written value relative to its key: (value - middle of the range this pair wrote to that key "
            "in training) / that key's spread, so that keys of different scales (a temperature and a vibration "
            "topic, a set-point and a motor flag) pool without one masking the other; a value for a key the pair "
            "never wrote in training enters as it is (0 when none)."),
    Feature("wval_max", "spreads", 1.0, "Largest written value relative to its key (see wval_min; 0 when none)."),
    Feature("wval_dev", "spreads", 1.0,
            "Largest distance of a written value outside the range this pair wrote to that key in training, in "
            "units of that key's spread (max of its standard deviation, 10% of its magnitude, 1); 0 inside."),
)

#: Features of the pair itself, once per row.
PAIR_FEATURES: tuple[Feature, ...] = (
    Feature("new_pair", "flag", 0.1,
            "1 when this (client, server, protocol) never talked in the training traffic (its floor of 0.1 makes a "
            "new pair count as 10 robust scales: in a plant, a new talker is news)."),
)

_INF = math.inf  # (a module constant: `math.inf` is an attribute lookup per request)
PERIOD_ALPHA = 0.2  # weight of the newest interval in the running period of a stream training never saw
PERIOD_ERROR_CAP = 10.0
PERIOD_RESUME = 3.0  # an interval this many periods long is a stream resuming after silence, not an error
SPORADIC_IQR = 0.5  # training intervals with (q75 - q25) / median above this: a sporadic stream, no period
MAX_PROFILE_INTERVALS = 4096  # intervals per stream kept in training to take the median of
# Bytes of the windowing state (CPython 3.11, tracemalloc fitted over pair, bucket, key and stream counts,
# compiled and pure alike: tests/test_memory_total_tables.py): a pair's object, key and dicts; a bucket with
# its empty sets; one key in one of a bucket's sets (its string counted once over two); one stream. Before,
# constants from sys.getsizeof (500, 1,200, 100, 250) put a key-heavy window 1.6x over what it held.
PAIR_BYTES, BUCKET_BYTES, KEY_BYTES, STREAM_BYTES = 660, 1340, 70, 135
#: the windower's name in limits.memory_total (ids/flow/budget.py: Shared)
TABLE = "ml.windower"
MAX_BUCKET_KEYS = 1024  # distinct keys remembered per pair per hop (more are counted as a cap hit)
MAX_STREAMS = 256  # polling streams tracked per pair for the period error
MAX_PROFILE_KEYS = 4096  # keys remembered per pair in a training profile


@dataclass(frozen=True)
class WindowSpec:
    hop: int = 10  # seconds between rows of a pair
    windows: tuple[int, ...] = (10, 60)  # window lengths, seconds, each a multiple of hop
    lateness: int = 2  # seconds a hop stays open after its end for events that arrive late

    def check(self) -> str | None:
        if self.hop < 1:
            return "hop must be at least 1 second"
        if not self.windows:
            return "at least one window length is needed"
        for w in self.windows:
            if w < self.hop or w % self.hop:
                return f"window {w} s is not a multiple of the hop ({self.hop} s)"
        if len(set(self.windows)) != len(self.windows):
            return "window lengths repeat"
        if not 0 <= self.lateness < self.hop:
            return "lateness must be at least 0 and less than the hop"
        return None

    @property
    def longest(self) -> int:
        return max(self.windows)

    def feature_names(self) -> list[str]:
        names = [f"{f.name}_{w}s" for w in self.windows for f in WINDOW_FEATURES]
        return names + [f.name for f in PAIR_FEATURES]

    def features(self) -> list[Feature]:
        out = [f for _ in self.windows for f in WINDOW_FEATURES]
        return out + list(PAIR_FEATURES)

    def groups(self) -> list[str]:
        """Base feature name per column (txn_rate for txn_rate_10s and txn_rate_60s): explanations occlude
        a feature in every window at once."""
        return [f.name for f in self.features()]

    def feature_set_id(self) -> str:
        """Identity of the computed feature set: definitions version, names and windowing."""
        blob = json.dumps({"version": FEATURE_VERSION, "names": self.feature_names(), "hop": self.hop,
                           "windows": list(self.windows), "lateness": self.lateness,
                           "definitions": [(f.name, f.unit, f.floor) for f in WINDOW_FEATURES + PAIR_FEATURES]},
                          sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- profiles

class PairProfile(NamedTuple):
    """What one pair did in training: operations, keys, and the range of values written to each key."""

    ops: frozenset
    keys: frozenset
    writes: dict  # key -> (lo, hi, spread) of numeric values written; (nan, nan, 1.0) when none were numeric
    periods: dict  # (operation, first key) -> median interval in seconds, for streams with 3+ intervals (inf: sporadic)
    truncated: bool


class ProfileBuilder:
    """Collects training profiles from FeatureViews (bounded per pair)."""

    def __init__(self, max_pairs: int = 100_000):
        self.pairs: dict[tuple, dict] = {}
        self.max_pairs = max_pairs
        self.pairs_dropped = 0

    def add(self, v) -> bool:
        """Count one exchange. True when the state needs reporting: over max_bytes, or pairs refused since
        `refused_ack` (the ML detector's state_capped alert)."""
        key = (v.client, v.server, v.protocol)
        p = self.pairs.get(key)
        if p is None:
            if len(self.pairs) >= self.max_pairs:
                self.pairs_dropped += 1
                return
            p = self.pairs[key] = {"ops": {}, "keys": set(), "writes": {}, "streams": {}, "truncated": False}
        ops = p["ops"]
        ops[v.operation] = ops.get(v.operation, 0) + 1
        if v.request:
            sk = (v.operation, v.keys[0] if v.keys else "")
            st = p["streams"].get(sk)
            if st is None:
                if len(p["streams"]) < MAX_STREAMS:
                    p["streams"][sk] = [v.ts, []]
            elif v.ts > st[0]:
                if len(st[1]) < MAX_PROFILE_INTERVALS:
                    st[1].append((v.ts - st[0]) / NS)
                st[0] = v.ts
        keys = p["keys"]
        for k in v.keys:
            if k not in keys:
                if len(keys) >= MAX_PROFILE_KEYS:
                    p["truncated"] = True
                else:
                    keys.add(k)
        if v.is_write:
            w = p["writes"]
            if not v.writes:
                for k in v.keys:
                    if k not in w and len(w) < MAX_PROFILE_KEYS:
                        w[k] = [0, 0.0, 0.0, math.inf, -math.inf]
            for k, val in v.writes:
                s = w.get(k)
                if s is None:
                    if len(w) >= MAX_PROFILE_KEYS:
                        p["truncated"] = True
                        continue
                    s = w[k] = [0, 0.0, 0.0, math.inf, -math.inf]  # n, mean, M2 (Welford), min, max
                s[0] += 1
                d = val - s[1]
                s[1] += d / s[0]
                s[2] += d * (val - s[1])
                if val < s[3]:
                    s[3] = val
                if val > s[4]:
                    s[4] = val

    def to_json(self) -> list[dict]:
        out = []
        for (c, s, proto) in sorted(self.pairs):
            p = self.pairs[(c, s, proto)]
            writes = {}
            for k in sorted(p["writes"]):
                n, mean, m2, lo, hi = p["writes"][k]
                std = math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
                writes[k] = [n, lo if n else None, hi if n else None, std]
            periods = [[op, k, statistics.median(iv), _regular(iv)] for (op, k), (_, iv) in sorted(p["streams"].items())
                       if len(iv) >= 3]
            out.append({"client": c, "server": s, "protocol": proto, "ops": {o: p["ops"][o] for o in sorted(p["ops"])},
                        "keys": sorted(p["keys"]), "writes": writes, "periods": periods, "truncated": p["truncated"]})
        return out


def _regular(iv: list[float]) -> bool:
    """A polling stream (True) or a sporadic one (False: intervals spread over more than SPORADIC_IQR x median)."""
    q1, med, q3 = statistics.quantiles(iv, n=4, method="inclusive")
    return med > 0 and (q3 - q1) <= SPORADIC_IQR * med


def profiles_from_json(items: list[dict]) -> dict[tuple, PairProfile]:
    out = {}
    for it in items:
        writes = {}
        for k, (n, lo, hi, std) in it["writes"].items():
            if not n:
                writes[k] = (math.nan, math.nan, 1.0)
                continue
            spread = max(std, 0.1 * max(abs(lo), abs(hi)), 1.0)
            writes[k] = (lo, hi, spread)
        periods = {(op, k): (float(per) if regular else math.inf) for op, k, per, regular in it["periods"] if per > 0}
        out[(it["client"], it["server"], it["protocol"])] = PairProfile(
            frozenset(it["ops"]), frozenset(it["keys"]), writes, periods, bool(it["truncated"]))
    return out


# ---------------------------------------------------------------------------------------------- windowing

class _Bucket:
    """Running sums of one pair over one hop."""

    __slots__ = ("n", "req", "unans", "unsol", "ans", "err", "anom", "wr", "nbytes", "lat_sum", "lat_n", "ops",
                 "keys", "nkeys", "nwkeys", "nops", "iat_sum", "iat_sq", "iat_n", "pe_sum", "pe_n", "wv_n",
                 "wv_sum", "wv_sq", "wv_min", "wv_max", "wv_dev")

    def __init__(self):
        self.n = self.req = self.unans = self.unsol = self.ans = self.err = self.anom = self.wr = 0
        self.nbytes = self.lat_n = self.iat_n = self.pe_n = self.wv_n = 0
        self.lat_sum = self.iat_sum = self.iat_sq = self.pe_sum = self.wv_sum = self.wv_sq = self.wv_dev = 0.0
        self.wv_min = math.inf
        self.wv_max = -math.inf
        self.ops: dict[str, int] = {}
        self.keys: set = set()
        self.nkeys: set = set()
        self.nwkeys: set = set()
        self.nops: set = set()


class _Stream:
    """One polling stream of a pair, (operation, first key): its last request time, the running period
    estimate of a stream training never saw, and its training period (`known`; inf for a sporadic one).
    An extension type when compiled (features.pxd): the per-request period arithmetic in C doubles."""

    __slots__ = ("last", "est", "ref", "known")

    def __init__(self, last: int, ref: float | None):
        self.last = last
        self.est = 0.0
        self.known = ref is not None
        self.ref = ref if ref is not None else 0.0


class _Pair:
    __slots__ = ("key", "buckets", "last_req", "streams", "flow", "profile", "known", "newest")

    def __init__(self, key, profile):
        self.key = key
        self.buckets: dict[int, _Bucket] = {}
        self.last_req: int | None = None
        self.streams: dict[tuple, _Stream] = {}
        self.flow = None
        self.profile: PairProfile | None = profile
        self.known = profile is not None
        self.newest = -1  # index of the newest bucket with events


class RowMeta(NamedTuple):
    """Which pair and time span a row describes."""

    end: int  # ns, end of every window of the row (a hop boundary)
    start: int  # ns, start of the longest window
    client: str
    server: str
    protocol: str
    flow: object  # FlowContext of the pair's most recent exchange


class Windower:
    """Turns FeatureViews into rows. `emit(metas, rows)` receives each hop boundary's rows, sorted by pair.

    Rows are produced only for pairs with exchanges inside the longest window, and only once the longest
    window lies wholly after the first hop the windower saw (warm-up). At the end of input the open hop is
    partial and is never closed (it would read as a sudden silence). A hop closes when an exchange at least
    `lateness` seconds past its end arrives; exchanges for closed hops count in the oldest open hop (`late`).
    """

    def __init__(self, spec: WindowSpec, profiles: dict[tuple, PairProfile] | None, emit, max_pairs: int = 10_000,
                 stand_in=None, max_bytes: int = 1 << 62):
        self.spec = spec
        self.stand_in = stand_in  # key -> known key whose profile an unknown pair is measured against (roles.py)
        self.hop = spec.hop * NS
        self.lateness = spec.lateness * NS
        self.nb = [w // spec.hop for w in spec.windows]
        self.nb_max = max(self.nb)
        self.profiles = profiles or {}
        self.emit = emit
        self.max_pairs = max_pairs
        self.pairs: dict[tuple, _Pair] = {}
        self.active: dict[tuple, _Pair] = {}
        self.open_idx: int | None = None  # first hop not yet closed
        self.first_idx = 0
        self.close_at = 0  # ns at which the open hop closes
        self.late = 0
        self.pairs_evicted = 0
        self.key_cap_hits = 0
        self.stream_cap_hits = 0
        # State in bytes (estimated): recounted at every hop boundary, grown between them as pairs, buckets,
        # keys and streams are added. Over max_bytes, idle pairs are forgotten first, then new pairs, keys and
        # streams are not tracked (counted in pairs_refused / key_cap_hits / stream_cap_hits).
        self.max_bytes = max_bytes
        self.reserve = PAIR_BYTES + (self.nb_max + 1) * BUCKET_BYTES  # a pair with its longest window of buckets
        self.state_bytes = 0
        self.pairs_refused = 0
        self.refused_ack = 0  # pairs_refused when the ML detector last reported it (MlDetector._capped)
        self.rows = 0
        self.nfeat = len(spec.feature_names())
        # The ML detector's entry (attach): adapters by event type, its part for the exchanges it must act
        # on, and the capture time from which waiting rows are scored (None: no rows wait; -inf: a full batch)
        self.adapters: dict = {}
        self.slow = None
        self.detector = None
        self.due = None

    # ------------------------------------------------------------------ the detector's entry
    def attach(self, detector, adapters: dict, slow) -> None:
        """Route events here for `detector` (MlDetector puts on_event/on_view on itself): `adapters` (event
        type -> view) and `slow(v, flag)`, called only for the exchanges after which the detector must act
        (`flag`: add's answer, the state to report; or rows due, `due`). Compiled, the common exchange then
        runs no Python-level frame between the engine and add."""
        self.detector = detector
        self.adapters = adapters
        self.slow = slow

    def worker_view(self, t: type):
        """The detector's (ids.parallel.offload finds it through the routed method's owner, this)."""
        return self.detector.worker_view(t)

    def on_event(self, ev):
        fn = self.adapters.get(type(ev))
        if fn is None:
            return None
        v = fn(ev)
        if v is None:
            return None
        return self.on_view(v)

    def on_view(self, v):
        """A feature view (on_event's, or one a worker built, as a plain tuple)."""
        flag = self.add(v)
        due = self.due
        if flag or (due is not None and v[0] >= due):  # (v.ts)
            return self.slow(v, flag)
        return None

    # ------------------------------------------------------------------ input
    def add(self, v) -> bool:
        """Count one exchange. True when the state needs reporting: over max_bytes, or pairs refused since
        `refused_ack` (the ML detector's state_capped alert)."""
        # One unpack instead of fifteen attribute reads (the view is a NamedTuple: view.py's field order);
        # compiled, read as the tuple it is (item by item from the struct, hence the check).
        if not isinstance(v, tuple):
            raise TypeError(f"Windower.add needs a FeatureView, not {type(v).__name__}")
        (ts, protocol, client, server, op, is_write, is_error, keys, writes, ans, request, lat, nbytes, anomalous,
         flow) = cython.cast(tuple, v)
        if self.open_idx is None:
            self.open_idx = self.first_idx = ts // self.hop
            self.close_at = (self.open_idx + 1) * self.hop + self.lateness
        elif ts >= self.close_at:
            self.advance(ts)
        idx = ts // self.hop
        if idx < self.open_idx:
            idx = self.open_idx
            self.late += 1
        key = (client, server, protocol)
        p = self.pairs.get(key)
        if p is None:
            p = self._new_pair(key)
            if p is None:
                return True  # (a pair refused)
        p.flow = flow
        b = p.buckets.get(idx)
        if b is None:
            b = p.buckets[idx] = _Bucket()
            if idx > p.newest:
                p.newest = idx
            self.active[key] = p
        b.n += 1
        prof = p.profile
        ops = b.ops
        c = ops.get(op)
        if c is None:  # first time in this hop: whether training saw it is decided once per hop
            ops[op] = 1
            if prof is None or op not in prof.ops:
                b.nops.add(op)
        else:
            ops[op] = c + 1
        bkeys = b.keys
        for k in keys:
            if k not in bkeys:
                if len(bkeys) >= MAX_BUCKET_KEYS or self.state_bytes > self.max_bytes:
                    self.key_cap_hits += 1
                    continue
                bkeys.add(k)
                self.state_bytes += KEY_BYTES
                if prof is None or k not in prof.keys:
                    b.nkeys.add(k)
                    self.state_bytes += KEY_BYTES
        if request:
            b.req += 1
            last = p.last_req
            if last is not None and ts >= last:
                dt = (ts - last) / NS
                b.iat_sum += dt
                b.iat_sq += dt * dt
                b.iat_n += 1
            if last is None or ts > last:
                p.last_req = ts
            self._period(p, b, op, keys[0] if keys else "", ts)
        if ans is False:
            b.unans += 1
        elif ans:
            if request:
                b.ans += 1
            else:
                b.unsol += 1
        if is_error:
            b.err += 1
        if anomalous:
            b.anom += 1
        if lat is not None:
            b.lat_sum += lat / NS
            b.lat_n += 1
        b.nbytes += nbytes
        if is_write:
            b.wr += 1
            self._writes(b, prof, keys, writes)
        return self.state_bytes > self.max_bytes or self.pairs_refused != self.refused_ack

    def _new_pair(self, key) -> _Pair | None:
        if len(self.pairs) >= self.max_pairs or self._full():
            # Forget the least recently active idle pair (its stream periods restart if it returns).
            for k, q in self.pairs.items():
                if k not in self.active:
                    del self.pairs[k]
                    self.pairs_evicted += 1
                    self.state_bytes -= self._pair_bytes(q)
                    break
            if self._full():
                self.pairs_refused += 1  # every pair is busy and the state is full: this one is not tracked
                return None
        prof = self.profiles.get(key)
        if prof is None and self.stand_in is not None:
            sk = self.stand_in(key)
            prof = self.profiles.get(sk) if sk is not None else None
        p = self.pairs[key] = _Pair(key, prof)
        self.state_bytes += self.reserve
        return p

    def _full(self) -> bool:
        """No room for a new pair's reserve: over ml.max_state_bytes, or limits.memory_total reached with the
        windower over its share (told what it holds here and at every hop boundary)."""
        n = self.state_bytes + self.reserve
        if n > self.max_bytes:
            return True
        g = budget.SHARED
        return g is not None and not g.hold(TABLE, n, self.max_bytes)

    def _pair_bytes(self, p: _Pair) -> int:
        """A pair's estimated bytes, at least the reserve taken when it was admitted (its buckets to come)."""
        n = PAIR_BYTES + STREAM_BYTES * len(p.streams)
        for b in p.buckets.values():
            n += BUCKET_BYTES + KEY_BYTES * (len(b.keys) + len(b.nkeys) + len(b.nwkeys))
        return max(n, self.reserve + STREAM_BYTES * len(p.streams))

    def _period(self, p: _Pair, b: _Bucket, op: str, k: str, ts: int) -> None:
        sk = (op, k)
        st = p.streams.get(sk)
        if st is None:
            if len(p.streams) >= MAX_STREAMS or self.state_bytes > self.max_bytes:
                self.stream_cap_hits += 1
                return
            # a pair's profile never changes while it is tracked, so its period is looked up once per stream
            p.streams[sk] = _Stream(ts, p.profile.periods.get(sk) if p.profile is not None else None)
            self.state_bytes += STREAM_BYTES
            return
        dt = (ts - st.last) / NS
        if dt <= 0:
            return
        st.last = ts
        if st.known:
            ref = st.ref
            if ref == _INF:  # sporadic in training (an operator's action): no period to miss
                return
        else:  # a stream training never saw: a running estimate (which an attack can drag along)
            ref = st.est
            if ref == 0.0:
                st.est = dt
                return
            if dt <= PERIOD_RESUME * ref:
                st.est = ref + PERIOD_ALPHA * (dt - ref)
        if dt > PERIOD_RESUME * ref:
            return
        e = abs(dt - ref) / ref
        b.pe_sum += e if e < PERIOD_ERROR_CAP else PERIOD_ERROR_CAP
        b.pe_n += 1

    def _writes(self, b: _Bucket, prof: PairProfile | None, keys: tuple, writes: tuple) -> None:
        pw = prof.writes if prof is not None else None
        if not writes:
            for k in keys:
                if pw is None or k not in pw:
                    b.nwkeys.add(k)
            return
        dev = b.wv_dev
        for k, val in writes:
            r = pw.get(k) if pw is not None else None
            # relative to the key's training range; as written for keys without one (nan: never numeric)
            x = val if r is None or r[0] != r[0] else (val - 0.5 * (r[0] + r[1])) / r[2]
            b.wv_n += 1
            b.wv_sum += x
            b.wv_sq += x * x
            if x < b.wv_min:
                b.wv_min = x
            if x > b.wv_max:
                b.wv_max = x
            if r is None:
                if len(b.nwkeys) < MAX_BUCKET_KEYS:
                    b.nwkeys.add(k)
                continue
            lo, hi, spread = r
            if val < lo:
                d = (lo - val) / spread
            elif val > hi:
                d = (val - hi) / spread
            else:
                continue
            if d > dev:
                dev = d
        b.wv_dev = dev

    # ------------------------------------------------------------------ time
    def advance(self, now: int) -> None:
        """Close every hop that ends at least `lateness` before `now`, emitting its rows."""
        hop = self.hop
        while self.open_idx is not None and (self.open_idx + 1) * hop + self.lateness <= now:
            if not self.active:  # nothing to report: jump over the silence
                self.open_idx = max(self.open_idx + 1, (now - self.lateness) // hop)
                continue
            self._close(self.open_idx)
            self.open_idx += 1
        if self.open_idx is not None:
            self.close_at = (self.open_idx + 1) * hop + self.lateness

    def _close(self, k: int) -> None:
        nb_max = self.nb_max
        emit_rows = k - nb_max + 1 > self.first_idx  # the longest window lies after the first (partial) hop
        oldest = k - nb_max + 1
        metas, rows = [], []
        end = (k + 1) * self.hop
        for key in sorted(self.active):
            p = self.active[key]
            if p.newest < oldest:  # silent for a whole longest window: dormant until it talks again
                p.buckets.clear()
                del self.active[key]
                continue
            if emit_rows and any(oldest <= i <= k for i in p.buckets):  # (not only in hops still open)
                metas.append(RowMeta(end, end - nb_max * self.hop, key[0], key[1], key[2], p.flow))
                rows.append(self._row(p, k))
            for i in [i for i in p.buckets if i <= k + 1 - nb_max]:  # not needed by the next row
                del p.buckets[i]
        self.state_bytes = sum(self._pair_bytes(p) for p in self.pairs.values())
        g = budget.SHARED
        if g is not None:
            g.hold(TABLE, self.state_bytes, self.max_bytes)
        if rows:
            self.rows += len(rows)
            self.emit(metas, rows)

    def _row(self, p: _Pair, k: int) -> list[float]:
        out: list[float] = []
        buckets = p.buckets
        for nb, w in zip(self.nb, self.spec.windows):
            bs = [buckets[i] for i in range(k - nb + 1, k + 1) if i in buckets]
            out += _window_features(bs, float(w))
        out.append(0.0 if p.known else 1.0)
        return out


def _window_features(bs: list[_Bucket], w: float) -> list[float]:
    n = req = unans = unsol = ans = err = anom = wr = nbytes = lat_n = iat_n = pe_n = wv_n = 0
    lat_sum = iat_sum = iat_sq = pe_sum = wv_sum = wv_sq = wv_dev = 0.0
    wv_min, wv_max = math.inf, -math.inf
    if len(bs) == 1:
        b = bs[0]
        ops, keys, nkeys, nwkeys, nops = b.ops, b.keys, b.nkeys, b.nwkeys, b.nops
    else:
        ops = {}
        keys, nkeys, nwkeys, nops = set(), set(), set(), set()
    for b in bs:
        n += b.n
        req += b.req
        unans += b.unans
        unsol += b.unsol
        ans += b.ans
        err += b.err
        anom += b.anom
        wr += b.wr
        nbytes += b.nbytes
        lat_sum += b.lat_sum
        lat_n += b.lat_n
        iat_sum += b.iat_sum
        iat_sq += b.iat_sq
        iat_n += b.iat_n
        pe_sum += b.pe_sum
        pe_n += b.pe_n
        wv_n += b.wv_n
        wv_sum += b.wv_sum
        wv_sq += b.wv_sq
        if b.wv_min < wv_min:
            wv_min = b.wv_min
        if b.wv_max > wv_max:
            wv_max = b.wv_max
        if b.wv_dev > wv_dev:
            wv_dev = b.wv_dev
        if len(bs) > 1:
            for o, c in b.ops.items():
                ops[o] = ops.get(o, 0) + c
            keys |= b.keys
            nkeys |= b.nkeys
            nwkeys |= b.nwkeys
            nops |= b.nops
    expecting = ans + unans + unsol
    div = 0.0
    if n:
        s = 0.0
        for c in sorted(ops.values()):  # fixed order: the sum is the same whatever the dict order
            p = c / n
            s += p * p
        div = 1.0 - s
    if iat_n:
        iat_mean = iat_sum / iat_n
        if iat_n > 1 and iat_mean > 0:
            var = (iat_sq - iat_n * iat_mean * iat_mean) / (iat_n - 1)
            iat_cv = math.sqrt(var) / iat_mean if var > 0 else 0.0
        else:
            iat_cv = 0.0
    else:
        iat_mean, iat_cv = w, 0.0
    if wv_n:
        wv_mean = wv_sum / wv_n
        var = (wv_sq - wv_n * wv_mean * wv_mean) / (wv_n - 1) if wv_n > 1 else 0.0
        wv_std = math.sqrt(var) if var > 0 else 0.0
    else:
        wv_mean = wv_std = wv_min = wv_max = 0.0
    return [
        req / w,
        nbytes / w,
        (unsol - unans) / expecting if expecting else 0.0,
        err / n if n else 0.0,
        anom / n if n else 0.0,
        lat_sum / lat_n if lat_n else 0.0,
        wr / n if n else 0.0,
        float(len(ops)),
        div,
        float(len(nops)),
        float(len(keys)),
        float(len(nkeys)),
        float(len(nwkeys)),
        iat_mean,
        iat_cv,
        pe_sum / pe_n if pe_n else 0.0,
        wv_n / w,
        wv_mean,
        wv_std,
        wv_min,
        wv_max,
        wv_dev,
    ]
