"""Protocol-anomaly detector: turns anomalies that parsers put on events, and data-path notices, into
alerts: malformed PDUs, unsolicited responses, exception floods, unanswered-request floods, caps hit.

It knows no protocol: each protocol's catalogue (ids/protocols/<name>/anomalies.py, `spec.anomalies`) says
which names alert and how; a name no catalogue knows still alerts, at low severity, so a new anomaly is never
silent. Repeats are rate-limited per (rule, client, server) by the one re-alert Limiter (detect/api.py): the
first occurrence alerts at once, the ones inside the re-alert window are counted and reported in one
follow-up alert with their count (never dropped).
"""
from __future__ import annotations

from collections import deque

from ..config import AnomalyConfig
from ..events import Alert, FlowNotice
from ..flow.budget import trim_oldest
from ..protocols import REGISTRY
from .api import Limiter, RuleInfo
from .attack import techniques

NS = 1_000_000_000
MAX_KEYS = 50_000  # bound on tracked (rule, pair) keys; the oldest are forgotten first

AnomalyRule = RuleInfo  # the old name

#: Data-path notices (FlowNotice actions) that alert.
NOTICE_RULES = {"stream_buffer_cap": "otids.anomaly.flow.stream_buffer_cap",
                "flow_table_full": "otids.anomaly.flow.table_full",
                "ip_fragment_overlap": "otids.anomaly.ip.fragment_overlap",
                # the sensor under attack says what it had to give up (issue #16, docs/ROBUSTNESS.md)
                "memory_cap": "otids.anomaly.sensor.memory_cap",
                "talker_table_full": "otids.anomaly.sensor.talker_table_full",
                "session_error": "otids.anomaly.sensor.parser_error",
                "sustained_garbage": "otids.anomaly.flow.sustained_garbage",
                "ip_fragment_too_many": "otids.anomaly.ip.fragment_flood",
                "ip_fragment_table_full": "otids.anomaly.ip.fragment_flood",
                "oversized_pdu": "otids.anomaly.flow.oversized_pdu",
                "tcp_control_ignored": "otids.anomaly.flow.tcp_control_ignored",
                "tcp_overlap_conflict": "otids.anomaly.flow.tcp_overlap_conflict"}
_NOTICE = (
    RuleInfo("otids.anomaly.flow.stream_buffer_cap", "TCP reassembly buffer cap reached", "low",
             "Out-of-order data for one stream exceeded the reassembly buffer; a gap was declared. Heavy loss "
             "or deliberate segment games to evade inspection."),
    RuleInfo("otids.anomaly.flow.table_full", "Flow table full", "medium",
             "The flow table reached its cap and evicted flows: the sensor is partly blind (flow flood or "
             "undersized configuration)."),
    RuleInfo("otids.anomaly.ip.fragment_overlap", "Overlapping IP fragments", "medium",
             "IP fragments overlapped; the first copy was kept. Overlaps are a classic IDS-evasion technique."),
    RuleInfo("otids.anomaly.sensor.memory_cap", "Sensor memory bound reached", "medium",
             "A global bound on state that grows with traffic (out-of-order TCP bytes, protocol reassembly, "
             "IP fragments; the pool and its size are in the reason) was reached and state was dropped to stay "
             "within it: the sensor is partly blind. A flood aimed at the sensor, or an undersized limits section."),
    RuleInfo("otids.anomaly.sensor.talker_table_full", "Talker table bound reached", "low",
             "The table of closed flows per client, server and protocol reached limits.talkers_bytes; the "
             "quieter half was dropped. Many distinct hosts: a scan or a spoofed-source flood."),
    RuleInfo("otids.anomaly.sensor.parser_error", "Protocol parser failed on crafted input", "high",
             "A protocol session raised on the bytes of a flow (a parser bug that the input found); the flow "
             "is no longer dissected. Input built to crash an IDS or a device parser."),
    RuleInfo("otids.anomaly.flow.sustained_garbage", "Sustained garbage on a protocol port", "medium",
             "After a flow on a protocol's port was found not to carry that protocol, it (and others to the "
             "same server port) kept sending: past limits.garbage_alert_bytes. Fuzzing of the device, a "
             "tunnel, or a flood meant to tie up the sensor."),
    RuleInfo("otids.anomaly.flow.oversized_pdu", "PDU announced over the size limit", "medium",
             "A protocol data unit's length field announced more bytes than the sensor parses (MQTT remaining "
             "length over mqtt.max_message_length, up to 268 MB): raised when the header is seen, once per "
             "flow, whether or not the bytes ever come. A slow-drip resource exhaustion attempt against the "
             "broker or the sensor, or a broken client."),
    RuleInfo("otids.anomaly.flow.tcp_control_ignored", "TCP reset, FIN or SYN outside the connection's sequence",
             "medium",
             "A RST or FIN far from the next byte of its direction, or a SYN renumbering a direction that had "
             "carried data: no receiver takes it, so it was not honoured (the flow is still dissected). Forged "
             "control segments tear down an IDS's view of a connection while the device's stays up (TCB "
             "teardown evasion); a capture that lost over a megabyte just before a reset looks the same."),
    RuleInfo("otids.anomaly.flow.tcp_overlap_conflict", "TCP segments overlap with different data", "medium",
             "Two copies of the same stream bytes carried different data; the first was kept. Which copy a "
             "device keeps depends on its TCP stack: a classic way to show the sensor one command and the "
             "device another."),
    RuleInfo("otids.anomaly.ip.fragment_flood", "IP fragment flood", "medium",
             "A datagram in more fragments than limits.max_fragments, or more datagrams in reassembly than "
             "decode.max_fragmented_datagrams: tiny-fragment evasion or a flood against reassembly."),
)


def unknown_rule(protocol: str, title: str) -> RuleInfo:
    """The low-severity rule an anomaly name outside the protocol's catalogue alerts under."""
    return RuleInfo(f"otids.anomaly.{protocol}.unknown", f"Unknown {title} anomaly", "low",
                    f"The {title} dissector reported an anomaly its catalogue does not describe "
                    f"(ids/protocols/{protocol}/anomalies.py): alerted so that it is not silent; the reason names it.")


def _catalogues():
    return {n: p.anomalies for n, p in REGISTRY.items() if p.anomalies is not None}


RULES: dict[str, RuleInfo] = {r.id: r for r in _NOTICE}
for _name, _cat in _catalogues().items():
    for _r in _cat.rules:
        RULES[_r.id] = _r
    RULES[f"otids.anomaly.{_name}.unknown"] = unknown_rule(_name, _cat.title)


class AnomalyDetector:
    def __init__(self, cfg: AnomalyConfig):
        self.cfg = cfg
        self.realert = cfg.realert_after * NS
        self.limiter = Limiter(self.realert, MAX_KEYS)
        self.unans: dict[tuple, deque] = {}  # flood windows, by (rule, client, server)
        # record type -> (protocol name, catalogue, check): one dict access per event
        self.checks: dict[type, tuple] = {}
        for name, spec in REGISTRY.items():
            cat = spec.anomalies
            if cat is None:
                continue
            check = cat.checker(self) if cat.checker is not None else self._default(cat)
            for t in spec.records:
                self.checks[t] = (name, cat, check)

    # ------------------------------------------------------------------ events
    def on_event(self, ev):
        c = self.checks.get(type(ev))
        if c is not None:
            name, cat, check = c
            out = check(ev)
            an = ev.anomalies
            if an:
                unknown = [a for a in an if a not in cat.known]
                if unknown:
                    f = ev.flow
                    r = self.fire(f"otids.anomaly.{name}.unknown", ev, ev.ts,
                                  f"{cat.title} anomaly {', '.join(unknown)} (not in the catalogue) between client "
                                  f"{f.client_ip}:{f.client_port} and server {f.server_ip}:{f.server_port}")
                    if r:
                        out = (out or []) + r
            return out
        if type(ev) is FlowNotice:
            rid = NOTICE_RULES.get(ev.action)
            if rid:
                return self.fire(rid, ev, ev.ts, f"{RULES[rid].name}: {ev.details}")
        return None

    def _default(self, cat):
        """The check of a catalogue without its own: one alert per anomaly name that has a rule."""
        what = cat.what or (lambda ev: ev.label)

        def check(ev):
            return self.named(ev, cat.named, cat.title, what(ev)) if ev.anomalies else None
        return check

    # ------------------------------------------------------------------ what catalogues' checks call
    def named(self, ev, rules: dict, title: str, what: str):
        """One alert per anomaly name that has a rule in `rules` (name -> rule id)."""
        out = None
        f = ev.flow
        for name in ev.anomalies:
            rid = rules.get(name)
            if rid is None:
                continue
            r = self.fire(rid, ev, ev.ts, f"{title} {name} in {what} between client {f.client_ip}:{f.client_port} "
                                          f"and server {f.server_ip}:{f.server_port}")
            if r:
                out = (out or []) + r
        return out

    def flood(self, ev, count: int, window: int, rid: str, what: str):
        """Alert when `count` events of rule `rid` between one client and server fall within `window` s."""
        table = self.unans
        f = ev.flow
        key = (rid, f.client_ip, f.server_ip)
        q = table.get(key)
        if q is None:
            if len(table) >= MAX_KEYS:
                trim_oldest(table, MAX_KEYS)  # in one pass: popping the first key one by one is quadratic
            q = table[key] = deque()
        ts = ev.ts
        q.append(ts)
        lo = ts - window * NS
        while q and q[0] < lo:
            q.popleft()
        if len(q) >= count:
            n = len(q)
            q.clear()
            return self.fire(rid, ev, ts, f"{n} {what} from {f.client_ip} to {f.server_ip} within {window} s",
                             count=n)
        return None

    # ------------------------------------------------------------------ alerting with repeat counts
    def fire(self, rid: str, ev, ts: int, reason: str, count: int = 1):
        flow = getattr(ev, "flow", None)
        key = (rid, flow.client_ip, flow.server_ip) if flow is not None else (rid,)
        due = self.limiter.hit(key, ts, ev, count)
        if due is None:
            return None
        out = [self._repeat(k[0], e, ts) for k, e in due]
        out.append(self._alert(rid, ev, ts, reason, count))
        return out

    _fire = fire  # the old name

    def _alert(self, rid, ev, ts, reason, count):
        r = RULES[rid]
        proto = getattr(ev, "protocol", None)
        return Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description, severity=r.severity,
                     reason=reason, source="anomaly", techniques=techniques(*r.attack), event=ev,
                     protocol=proto if isinstance(proto, str) else None, count=count)

    def _repeat(self, rid, lim, ts):
        r = RULES[rid]
        n = lim.suppressed
        lim.suppressed = 0
        return self._alert(rid, lim.last, ts,
                           f"{r.name}: {n} more occurrence(s) within {self.cfg.realert_after} s of the last alert",
                           n)

    def flush(self, ts: int):
        return [self._repeat(key[0], lim, ts) for key, lim in self.limiter.pending()]
