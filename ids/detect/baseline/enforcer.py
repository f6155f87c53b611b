"""Enforcing: events compared with a Baseline; every deviation becomes one alert saying what was expected
and what was seen, with how often it happened.

One alert per new thing, not one per packet: a deviation is identified by a key (e.g. master, slave, unit,
function code). Its first occurrence opens a hold window (`baseline.hold` seconds of capture time); the
alert is written when the window closes (or at the end of input) and carries the repeat count, the
first and last time and the distinct values seen. Later occurrences are counted; if the deviation is still
going on `realert_after` seconds after its alert, one follow-up alert reports the count since.

Checks go from the general to the specific and stop at the first finding for an event, so one change
gives one alert: a new asset is not also a new talker pair, new function code and out-of-range access.
Order: denied entries, assets (new, MAC changed), talker pair and port, device identity, then the
protocol's own checks (protocols.py).
"""
from __future__ import annotations

from collections import OrderedDict

from ...assets import NO_MAC, modbus_identity, opcua_identity, roles_for
from ...events import Alert, rfc3339
from ...protocols.modbus.messages import ModbusTransaction
from ...protocols.opcua.messages import OpcuaEvent
from ...flow.conn import ConnRecord
from ..attack import techniques as attack
from ...flow import budget
from ..bounds import Gate, evict_oldest, text
from .document import Baseline
from .protocols import BY_PROTOCOL, PROTOCOL_MODULES
from .rules import RULES

NS = 1_000_000_000
MAX_ITEMS = 16  # distinct values listed per deviation
VERDICT_BYTES = 450  # a flow's cached verdict with one new-asset deviation (tracemalloc: ~400)
SWEEP_NS = NS  # time-based checks (stopped polling) run at most once per second of capture time
NETWORK_RULES = "otids.baseline.network."  # the network section folds its own (network_new_hosts)
FOLD_BYTES = 200  # one (rule, pair) window of the fold count, key and list included
ITEM_CHARS = 160  # a folded deviation's listed things are cut to this; each counted at ITEM_BYTES
ITEM_BYTES = ITEM_CHARS + 90
DEV_BYTES = 800  # a deviation with its key and the event it points at, besides its texts (tracemalloc,
#                    tests/test_bounds_state.py); limits.baseline_state_bytes counts it while it is held


class _Dev:
    __slots__ = ("rule", "key", "first_ts", "last_ts", "count", "event", "flow", "protocol", "expected", "seen",
                 "entry", "items", "item_fmt", "techniques", "alert_ts", "cost")

    def __init__(self, rule, key, ts, ev, expected, seen, entry, techniques, flow, protocol):
        self.rule, self.key = rule, key
        self.first_ts = self.last_ts = ts
        self.count = 1
        self.event = ev
        self.flow = flow if flow is not None else getattr(ev, "flow", None)
        p = getattr(ev, "protocol", None) if protocol is None else protocol
        self.protocol = p if isinstance(p, str) else None
        self.expected, self.seen, self.entry = expected, seen, entry
        self.items: list = []
        self.item_fmt = None
        self.techniques = techniques
        self.alert_ts = None
        self.cost = DEV_BYTES + text(expected) + text(seen) + 8 * len(key)


class _Asset:
    __slots__ = ("status", "macs", "identity")


class BaselineDetector:
    """Detector interface (ids.detect.engine): on_event(ev) -> alerts or None, flush(ts) -> alerts."""

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): re-read the baseline file with the new config. A broken file raises
        (BaselineError is a UserError) before anything changes, so the running baseline stays. Deviations
        still present after a reload are reported again (the trackers start afresh with the new file)."""
        from . import document
        fresh = BaselineDetector(document.load(self.path), config.baseline, self.path, config.limits)
        self.__dict__.update(fresh.__dict__)

    def __init__(self, baseline: Baseline, cfg, path: str | None = None, limits=None):
        from ...config import LimitsConfig
        self.cfg = cfg
        self.limits = limits or LimitsConfig()
        self.max_bytes = self.limits.baseline_state_bytes  # held and alerted deviations, in bytes
        self.used = 0
        self.gate = Gate()
        self.path = path or baseline.path
        usable = ("approved",) if cfg.require_approved else ("approved", "learned")
        self.usable = usable
        self.assets: dict[str, _Asset] = {}
        for eid, e in baseline.section("assets").items():
            a = _Asset()
            a.status = e["status"]
            macs = e.get("macs") or {}
            a.macs = frozenset(str(m).upper() for m in (macs if isinstance(macs, (dict, list)) else [macs]))
            idn = e.get("identity") or {}
            if not isinstance(idn, dict):
                raise baseline.error("identity must be a mapping", "assets", eid, "identity")
            a.identity = idn
            if a.status in usable or a.status == "denied":
                self.assets[str(e["ip"])] = a
        self.talkers: dict[tuple, tuple[str, frozenset]] = {}
        for eid, e in baseline.section("talkers").items():
            ports = e.get("ports") or []
            if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
                raise baseline.error("ports must be a list of port numbers", "talkers", eid, "ports")
            if e["status"] in usable or e["status"] == "denied":
                self.talkers[(str(e["client"]), str(e["server"]), str(e["protocol"]))] = (e["status"],
                                                                                         frozenset(ports))
        self.protocols = {name: m.Enforcer(baseline, cfg, usable + ("denied",))
                          for name, m in PROTOCOL_MODULES.items()}
        self.network = self.protocols["network"]
        self.hold = cfg.hold * NS
        self.realert = cfg.realert_after * NS
        self.gap = cfg.capture_gap * NS
        # held deviations in order of arrival; released from the front as their windows close. An OrderedDict:
        # the front of a dict that keeps losing its first keys is found by walking every slot they emptied
        # (1M new MQTT topics under a baseline: 542 s, against 22 s for 100k)
        self.pending: OrderedDict[tuple, _Dev] = OrderedDict()
        self.alerted: dict[tuple, _Dev] = {}
        # flow id -> its verdict, cached; within an eighth of baseline_state_bytes on top of the deviations
        # (a spoofed flood makes every flow a new one: 65,536 of ~400 bytes, 26 MB, before)
        self._verdicts: dict[int, tuple] = {}
        self.max_verdicts = max(64, min(65536, self.max_bytes // 8 // VERDICT_BYTES))
        self.epoch = 0
        self.epoch_start: int | None = None
        self.last_ts: int | None = None
        self.next_sweep: int | None = None
        self.out: list = []
        self.stats = {"deviations": 0, "alerts": 0, "forgotten": 0, "early": 0, "folded": 0}
        # (rule, client, server) -> [hold window start, new deviations in it]: past max_new_per_pair, the rest of
        # the window folds into one deviation listing them (a client publishing to 1M new topics was 2M alerts)
        self.max_new = getattr(cfg, "max_new_per_pair", 0)
        self.windows: dict[tuple, list] = {}
        self.max_windows = max(64, min(cfg.max_tracked, self.max_bytes // 16 // FOLD_BYTES))

    # ------------------------------------------------------------------ events
    def on_event(self, ev):
        ctx = getattr(ev, "flow", None)
        proto = getattr(ev, "protocol", None)
        if ctx is None or not isinstance(proto, str):
            if type(ev) is ConnRecord:  # every connection on the wire: the network section (network.py)
                self._clock(ev.ts)
                self.network.record(ev, self)
                if self.out:
                    out, self.out = self.out, []
                    return out
            return None
        ts = ev.ts
        self._clock(ts)
        if self.network.seen:
            self.network.check(ev, self)
        v = self._verdicts.get(ctx.flow_id)
        if v is None:
            v = self._flow_verdict(ctx, proto)
        blocking, devs = v
        for rule, key, expected, seen, entry, tech in devs:
            self.report(rule, key, ev, expected, seen, entry, tech)
        if not blocking:
            if type(ev) is ModbusTransaction:
                if ev.function_code in (43, 17) and ev.response is not None:
                    self._modbus_identity(ev)
            elif type(ev) is OpcuaEvent and ev.service in ("CreateSession", "GetEndpoints", "FindServers"):
                self._opcua_identity(ev)
            for name in BY_PROTOCOL.get(proto, ()):  # #14: every section that reads this protocol
                self.protocols[name].check(ev, self)
        if self.out:
            out, self.out = self.out, []
            return out
        return None

    def _clock(self, ts: int) -> None:
        last = self.last_ts
        if last is None:
            self.epoch_start = self.last_ts = ts
            self.next_sweep = ts + SWEEP_NS
        else:
            if ts - last > self.gap:  # capture or sensor gap: periods restart, silence is not "stopped"
                self.epoch += 1
                self.epoch_start = ts
            if ts > last:
                self.last_ts = ts
        if self.pending:
            self._release(ts)
        if ts >= self.next_sweep:
            self.next_sweep = ts + SWEEP_NS
            for enf in self.protocols.values():
                enf.sweep(ts, self)

    def _flow_verdict(self, ctx, proto: str) -> tuple:
        """Checks that depend only on the flow (its hosts, MACs, protocol and port): once per flow."""
        devs: list[tuple] = []
        blocking = False
        crole, srole = roles_for(proto)
        c, s, port = ctx.client_ip, ctx.server_ip, ctx.server_port
        what = f"{proto} {c} -> {s}:{port}"
        for ip, role, mac in ((c, crole, ctx.client_mac), (s, srole, ctx.server_mac)):
            a = self.assets.get(ip)
            if a is None:
                known = sum(1 for x in self.assets.values() if x.status != "denied")
                devs.append(("otids.baseline.new_asset", ("asset", ip), f"{known} known assets",
                             f"{ip} as {role} ({what})", None,
                             ("T0848",) if role == crole else ()))
                blocking = True
            elif a.status == "denied":
                devs.append(("otids.baseline.denied", ("asset.denied", ip), "no traffic (asset denied)",
                             f"{ip} as {role} ({what})", f"asset {ip}", None))
                blocking = True
            elif mac and mac != NO_MAC and a.macs and mac.upper() not in a.macs:
                devs.append(("otids.baseline.asset_mac_changed", ("asset.mac", ip, mac), "MAC " + ", ".join(
                    sorted(a.macs)), f"MAC {mac}", f"asset {ip}", None))
        if not blocking:
            t = self.talkers.get((c, s, proto))
            if t is None:
                devs.append(("otids.baseline.new_talker_pair", ("talker", c, s, proto),
                             f"no {proto} from {c} to {s}", what, None, None))
                blocking = True
            elif t[0] == "denied":
                devs.append(("otids.baseline.denied", ("talker.denied", c, s, proto), "no traffic (entry denied)",
                             what, f"{proto} talkers {c} -> {s}", None))
                blocking = True
            elif port not in t[1]:
                devs.append(("otids.baseline.new_port", ("talker.port", c, s, proto, port),
                             "ports " + ", ".join(map(str, sorted(t[1]))), f"port {port}",
                             f"{proto} talkers {c} -> {s}", None))
        v = (blocking, tuple(devs))
        if len(self._verdicts) >= self.max_verdicts:
            self._verdicts.clear()  # a cache: what it forgets is worked out again, so no alert
        self._verdicts[ctx.flow_id] = v
        return v

    def _modbus_identity(self, ev) -> None:
        got = modbus_identity(ev)
        a = self.assets.get(ev.flow.server_ip)
        if not got or a is None:
            return
        kind, facts = got
        learned = (a.identity.get(kind) or {}).get(ev.unit_id)
        if learned is None:
            return
        ip = ev.flow.server_ip
        if kind == "modbus_server_id":
            if facts["text"] != learned:
                self.report("otids.baseline.asset_identity_changed", ("identity", ip, ev.unit_id, "server_id"), ev,
                            f"FC 17 server id {learned!r}", f"{facts['text']!r}", f"asset {ip}")
            return
        if not isinstance(learned, dict):
            return
        for k, v in facts.items():
            old = learned.get(k)
            if old is not None and str(old) != v:
                self.report("otids.baseline.asset_identity_changed", ("identity", ip, ev.unit_id, k), ev,
                            f"unit {ev.unit_id} {k} {old!r}", f"{k} {v!r}", f"asset {ip}")

    def _opcua_identity(self, ev) -> None:
        for side, fact, value in opcua_identity(ev):
            if fact == "certificate":
                continue
            ip = ev.flow.client_ip if side == "client" else ev.flow.server_ip
            a = self.assets.get(ip)
            learned = a.identity.get(fact) if a is not None else None
            if learned and value not in learned:
                self.report("otids.baseline.asset_identity_changed", ("identity", ip, fact, value), ev,
                            f"{fact} {', '.join(map(str, learned))}", f"{fact} {value}", f"asset {ip}")

    # ------------------------------------------------------------------ deviations -> alerts
    def report(self, rule: str, key: tuple, ev, expected: str, seen: str, entry: str | None = None,
               techniques=None, item=None, item_fmt=None, ts: int | None = None, flow=None, protocol=None) -> None:
        """One occurrence of deviation `key`. Protocol enforcers call this.

        Not detect/api.Limiter, on purpose: a deviation's first alert waits for its hold window to close, so
        that it carries the window's count and distinct values (api.Limiter alerts on the first occurrence),
        and the follow-up due after `realert_after` counts the occurrence that triggers it (api.Limiter writes
        the held count, then a fresh alert); the baseline alerts' counts and number depend on both."""
        ts = ts if ts is not None else ev.ts
        d = self.pending.get(key)
        if d is None:
            d = self.alerted.get(key)
            if d is None and item is None and self.max_new and not rule.startswith(NETWORK_RULES):
                many = self._many(rule, ev, flow, entry, ts)
                if many is not None:  # past max_new_per_pair in this window: counted in the pair's fold
                    self.stats["folded"] += 1
                    # listed cut to ITEM_CHARS: a fold lists up to MAX_ITEMS of what could be 64 KB topics
                    item = seen if len(seen) <= ITEM_CHARS else seen[:ITEM_CHARS - 3] + "..."
                    key, item_fmt = many, self._listed
                    d = self.pending.get(key)
                    if d is not None:  # the fold is held: counted as any held deviation
                        self._count(d, ts, item)
                        return
                    d = self.alerted.get(key)
            if d is None:
                self.stats["deviations"] += 1
                d = _Dev(rule, key, ts, ev, expected, seen, entry, techniques, flow, protocol)
                if item_fmt == self._listed:  # what its list may hold, counted from the start
                    d.cost += MAX_ITEMS * ITEM_BYTES
                d.item_fmt = item_fmt
                if item is not None:
                    d.items.append(item)
                if len(self.pending) >= self.cfg.max_tracked:
                    self._emit_early()
                self.pending[key] = d
                self.used += d.cost
                g = budget.SHARED  # limits.memory_total, shared with the other bounded tables
                if self.used > self.max_bytes:
                    self._make_room(ts, self.max_bytes)
                elif g is not None and len(self.pending) + len(self.alerted) > 16 and \
                        not g.hold("baseline.deviations", self.used, self.max_bytes):
                    self._make_room(ts, self.used * 7 // 8)  # over its share: an eighth of what it holds
                if not self.hold and key in self.pending:
                    self._emit(self.pending.pop(key))
                return
            # already alerted: count, and report again once realert_after has passed
            d.count += 1
            d.last_ts = ts
            if item is not None and item not in d.items and len(d.items) < MAX_ITEMS:
                d.items.append(item)
            if self.realert and ts - d.alert_ts >= self.realert:
                self._emit(d, follow_up=True)
            return
        self._count(d, ts, item)

    @staticmethod
    def _count(d: _Dev, ts: int, item) -> None:
        d.count += 1
        if ts > d.last_ts:
            d.last_ts = ts
        if item is not None and item not in d.items and len(d.items) < MAX_ITEMS:
            d.items.append(item)

    def _many(self, rule: str, ev, flow, entry, ts: int) -> tuple | None:
        """Count a new deviation of `rule` for its client and server in the current hold window; past
        max_new_per_pair, the key of the window's fold deviation (its occurrences and the things they named
        are counted and listed there, and it alerts like any deviation: after its hold, with follow-ups)."""
        fl = flow if flow is not None else getattr(ev, "flow", None)
        pivot = (fl.client_ip, fl.server_ip) if fl is not None else entry
        span = max(self.hold, NS)
        k = (rule, pivot)
        w = self.windows.get(k)
        if w is None or ts - w[0] >= span:
            if w is None and len(self.windows) >= self.max_windows:
                budget.trim_oldest(self.windows, self.max_windows)
            w = self.windows[k] = [ts, 0]
        w[1] += 1
        if w[1] <= self.max_new:
            return None
        return (rule, "many", pivot, w[0])

    def _listed(self, items: list) -> str:
        more = " ..." if len(items) >= MAX_ITEMS else ""
        return (f"more than {self.max_new} new within {max(self.hold, NS) // NS} s, folded: "
                f"{'; '.join(map(str, items))}{more}")

    def _release(self, now: int) -> None:
        hold = self.hold
        pending = self.pending
        while pending:
            key = next(iter(pending))
            d = pending[key]
            if d.first_ts + hold > now:
                break
            del pending[key]
            self._emit(d)

    def _emit(self, d: _Dev, follow_up: bool = False) -> None:
        r = RULES[d.rule]
        seen = d.item_fmt(d.items) if (d.item_fmt and d.items) else d.seen
        subject = d.entry or (f"{d.protocol} {d.flow.client_ip} -> {d.flow.server_ip}" if d.flow else r.name)
        if follow_up:
            reason = (f"{r.name} ({subject}) still seen: {d.count} more time(s) since the alert of "
                      f"{rfc3339(d.alert_ts)}; expected {d.expected}")
            ts = d.last_ts
        else:
            reason = f"{r.name} ({subject}): seen {seen}; expected {d.expected}"
            if d.count > 1:
                reason += f" ({d.count} times, {rfc3339(d.first_ts)} to {rfc3339(d.last_ts)})"
            ts = d.first_ts
        tech = attack(*(d.techniques if d.techniques is not None else r.attack))
        extra = {"baseline": {"deviation": d.rule.rsplit(".", 1)[-1], "expected": d.expected, "seen": seen,
                              "first_seen": rfc3339(d.first_ts), "last_seen": rfc3339(d.last_ts),
                              "entry": d.entry, "file": self.path, "follow_up": follow_up}}
        for k in ("entry", "file"):  # absent, never null: a null field is an error to the index (es validate)
            if extra["baseline"][k] is None:
                del extra["baseline"][k]
        if d.flow is None and d.event is None and len(d.key) > 2:
            # no traffic to point at (polling stopped before anything was seen): name the hosts instead
            extra["baseline"]["hosts"] = [x for x in d.key[1:3] if isinstance(x, str)]
        self.out.append(Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description,
                              severity=r.severity, reason=reason, source="baseline", techniques=tech,
                              event=d.event, flow=d.flow, protocol=d.protocol, count=d.count, extra=extra))
        self.stats["alerts"] += 1
        d.alert_ts = ts if not follow_up else d.last_ts
        d.count = 0
        d.items = []
        if not follow_up:
            if len(self.alerted) >= self.cfg.max_tracked:
                self._forget()
            self.alerted[d.key] = d

    def _emit_early(self) -> int:
        """The oldest eighth of the held deviations alerted before their hold window closes (in one pass:
        popping one key per new key is quadratic at the bound, F9)."""
        pending = self.pending
        n = max(1, len(pending) // 8)
        for k in [k for k, _ in zip(pending, range(n))]:
            self._emit(pending.pop(k))
        self.stats["early"] += n
        return n

    def _forget(self) -> int:
        """The oldest eighth of the alerted deviations forgotten (a later occurrence alerts as new)."""
        n, freed = evict_oldest(self.alerted, _cost)
        self.used -= freed
        self.stats["forgotten"] += n
        return n

    def _make_room(self, ts: int, goal: int) -> None:
        """Over limits.baseline_state_bytes (or its share of limits.memory_total): down to `goal`, forget
        alerted deviations, oldest first; when none is left, alert held ones early (they then count as
        alerted). Said in a memory_cap alert."""
        forgotten = early = 0
        while self.used > goal and (self.alerted or self.pending):
            if self.alerted:
                forgotten += self._forget()
            else:
                early += self._emit_early()
        counts = {"forgotten": forgotten} if forgotten else {}
        if early:
            counts["alerted_early"] = early
        self.gate.note("baseline.deviations", self.max_bytes, **counts)
        self.out.extend(self.gate.alerts(ts, "baseline", "limits.baseline_state_bytes"))

    def flush(self, ts: int):
        """End of input: time-based checks one last time, then every held deviation is written."""
        if self.last_ts is not None:
            for enf in self.protocols.values():
                enf.sweep(max(ts, self.last_ts), self)
        for key in list(self.pending):
            self._emit(self.pending.pop(key))
        self.out.extend(self.gate.alerts(max(ts, self.last_ts or ts), "baseline", "limits.baseline_state_bytes",
                                         force=True))
        out, self.out = self.out, []
        return out


class LearnThenEnforce:
    """Long runs without a baseline yet: learn for `seconds` of capture time, write the baseline to `path`
    (when given), then enforce it on the rest of the input."""

    def __init__(self, cfg, seconds: int, path: str | None, on_learned=None, limits=None):
        from .learner import Learner
        self.cfg = cfg
        self.limits = limits
        self.learner = Learner(cfg, limits)
        self.span = seconds * NS
        self.path = path
        self.start: int | None = None
        self.enforcer: BaselineDetector | None = None
        self.on_learned = on_learned

    def on_event(self, ev):
        if self.enforcer is not None:
            return self.enforcer.on_event(ev)
        ts = getattr(ev, "ts", None)
        if ts is None:
            return None
        if self.start is None:
            self.start = ts
        if ts - self.start < self.span:
            self.learner.learn(ev)
            return None
        b = self.learner.baseline()
        b.path = self.path
        if self.path:
            from .document import write_baseline
            write_baseline(b, self.path)
        if self.on_learned is not None:
            self.on_learned(b)
        self.enforcer = BaselineDetector(b, self.cfg, self.path, self.limits)
        return self.enforcer.on_event(ev)

    def flush(self, ts: int):
        if self.enforcer is None:
            if self.path and self.learner.events:
                from .document import write_baseline
                b = self.learner.baseline()
                write_baseline(b, self.path)
            return None
        return self.enforcer.flush(ts)


def _cost(d: _Dev) -> int:
    return d.cost
