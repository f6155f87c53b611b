"""Learning: events -> a Baseline. The generic part (assets from the inventory, talker pairs with their
ports) takes any event with a flow and a protocol; each protocol's learner (protocols.py) adds its section.

Deterministic by construction: entries are keyed by identity and sorted when written, statistics are
medians over all (or evenly thinned) samples, and nothing depends on wall-clock time or dict order.
"""
from __future__ import annotations

import hashlib
import os

from ... import __version__
from ...assets import Inventory
from ...assets.oui import mac_vendor
from ...events import rfc3339
from ...flow.conn import ConnRecord
from ..bounds import Budget
from .document import Baseline, sections
from .protocols import BY_PROTOCOL, PROTOCOL_MODULES

NS = 1_000_000_000
TALKER_BYTES = 900  # a talker pair with its first port (tracemalloc, tests/test_hostile_state.py)
PORT_BYTES = 70  # each further server port of a pair


class Learner:
    def __init__(self, cfg, limits=None):
        from ...config import LimitsConfig
        limits = limits or LimitsConfig()
        self.cfg = cfg
        self.inventory = Inventory(limits.assets_bytes)
        self.observe = self.inventory.observe
        self.talkers: dict[tuple, list] = {}  # (client, server, protocol) -> [first, last, events, ports]
        self.max_bytes = limits.learner_bytes  # talker pairs and every section; beyond: not learned (counted)
        # one bound for all the learner's tables (they add up): what is learned first is kept
        self.budget = Budget("baseline", limits.learner_bytes)
        self.talkers_dropped = 0
        self._spill = [0, 0, 0, set()]
        self._flows: dict[int, list] = {}
        self.protocols = {name: m.Learner(cfg) for name, m in PROTOCOL_MODULES.items()}
        for pl in self.protocols.values():
            pl.budget = self.budget
        self.epoch = 0
        self.epochs: dict[int, list[int]] = {}  # stretch of capture without a gap -> [first, last] event time
        self.gap = cfg.capture_gap * NS
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.events = 0

    def learn(self, ev) -> None:
        if type(ev) is ConnRecord:  # every connection on the wire: the network section
            self.protocols["network"].learn(ev, self.epoch)
            return
        ctx = getattr(ev, "flow", None)
        proto = getattr(ev, "protocol", None)
        if ctx is None or not isinstance(proto, str):
            return
        ts = ev.ts
        last = self.last_ts
        if last is None:
            self.first_ts = self.last_ts = ts
            self.epochs[0] = [ts, ts]
        else:
            if ts - last > self.gap:
                self.epoch += 1  # a gap in the capture: no interval spans it
                self.epochs[self.epoch] = [ts, ts]
            span = self.epochs[self.epoch]
            if ts > last:
                self.last_ts = span[1] = ts
            elif ts < span[0]:
                span[0] = ts
                if ts < self.first_ts:
                    self.first_ts = ts
        self.events += 1
        self.observe(ev)
        t = self._flows.get(ctx.flow_id)
        if t is None:
            if len(self._flows) >= 65536:
                self._flows.clear()
            key = (ctx.client_ip, ctx.server_ip, proto)
            t = self.talkers.get(key)
            if t is None:
                if not self.budget.take("talkers", TALKER_BYTES):  # limits.learner_bytes
                    self.talkers_dropped += 1
                    t = self._spill  # not kept: its events go to one shared, unwritten entry
                else:
                    t = self.talkers[key] = [ts, ts, 0, set()]
            if t is not self._spill and ctx.server_port not in t[3] and \
                    (not t[3] or self.budget.take("talkers", PORT_BYTES)):
                t[3].add(ctx.server_port)
            self._flows[ctx.flow_id] = t
        t[2] += 1
        if ts > t[1]:
            t[1] = ts
        elif ts < t[0]:
            t[0] = ts
        for name in BY_PROTOCOL.get(proto, ()):  # #14: every section that reads this protocol
            self.protocols[name].learn(ev, self.epoch)

    def capped(self) -> list[dict]:
        """What the bounds refused (limits.assets_bytes, limits.learner_bytes), for a warning or an alert."""
        out = []
        d = self.inventory.capped()
        if d:
            out.append(d)
        if self.talkers_dropped:
            out.append({"pool": "baseline_talkers", "max_bytes": self.max_bytes,
                        "pairs_not_kept": self.talkers_dropped})
        out.extend(d for d in self.budget.capped() if d["pool"] != "baseline.talkers")
        return out

    @property
    def used(self) -> int:
        return self.budget.used

    def refused(self) -> bool:
        return bool(self.budget.refused or self.inventory.dropped or self.inventory.peers_refused)

    # ------------------------------------------------------------------ result
    def baseline(self, captures: list[dict] | None = None) -> Baseline:
        b = Baseline()
        b.learned = {"first_seen": rfc3339(self.first_ts) if self.first_ts is not None else None,
                     "last_seen": rfc3339(self.last_ts) if self.last_ts is not None else None,
                     "events": self.events, "captures": captures or [], "by": f"otids {__version__}"}
        specs = sections()
        assets = b.section("assets")
        for a in self.inventory.sorted():
            e: dict = {"ip": a.ip, "status": "learned"}
            if a.macs:
                e["macs"] = {m: mac_vendor(m) or "unknown vendor" for m in sorted(a.macs)}
            if a.vlans:
                e["vlans"] = sorted(a.vlans)
            e["roles"] = sorted(a.roles)
            idn = self.inventory.identity_doc(a)
            if idn:
                e["identity"] = idn
            e.update(first_seen=rfc3339(a.first_seen), last_seen=rfc3339(a.last_seen), events=a.events)
            assets[a.ip] = e
        talkers = b.section("talkers")
        for (c, s, p), (first, last, n, ports) in self.talkers.items():
            e = {"client": c, "server": s, "protocol": p, "status": "learned", "ports": sorted(ports),
                 "first_seen": rfc3339(first), "last_seen": rfc3339(last), "events": n}
            talkers[f"{c}|{s}|{p}"] = e
        for name, pl in self.protocols.items():
            spec = specs[PROTOCOL_MODULES[name].SECTION.name]
            sec = b.section(spec.name)
            for e in pl.entries(self.epochs):
                sec["|".join(str(e[k]) for k in spec.key)] = e
        return b


class LearnerDetector:
    """The learner in the detector slot of a pipeline run: learns every event, raises nothing."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.said = False

    def on_event(self, ev):
        lr = self.learner
        lr.learn(ev)
        if not self.said and lr.refused():
            self.said = True
            return capped_alerts(lr.capped(), ev.ts)
        return None

    def flush(self, ts):
        return None


def capped_alerts(capped: list[dict], ts: int) -> list:
    """A memory_cap alert (ids/detect/anomaly.py's rule) for what the learner's bounds refused."""
    from ...events import Alert
    from ..anomaly import RULES
    if not capped:
        return []
    r = RULES["otids.anomaly.sensor.memory_cap"]
    what = "; ".join(f"{d['pool']} reached {d['max_bytes']:,} bytes, "
                     + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in d.items() if k not in ("pool", "max_bytes"))
                     for d in capped)
    return [Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description, severity=r.severity,
                  reason=f"{r.name}: {what} (limits.assets_bytes, limits.learner_bytes)", source="baseline",
                  extra={"sensor": capped[0] if len(capped) == 1 else {"pool": "baseline", "tables": capped}})]


def capture_info(path: str) -> dict:
    """Name (not the directory: the file must not depend on where the capture lies), size and SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"name": os.path.basename(path), "bytes": os.path.getsize(path), "sha256": h.hexdigest()}
