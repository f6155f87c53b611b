"""What the network detectors share: the alert they build, the once-per-finding limiter (first occurrence
alerts at once, repeats are counted into one follow-up after `realert_after`, never dropped), and the view
of a connection record or ARP frame an alert points at."""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import NamedTuple

from ...events import Alert, FlowContext, rfc3339
from ...flow.budget import KeyCap, trim_oldest
from ...flow.conn import ArpPacket, ConnRecord
from ..attack import techniques
from .rules import RULES

NS = 1_000_000_000
MAX_LISTED = 16  # hosts, ports or addresses listed per alert


def flow_of(r: ConnRecord) -> FlowContext | None:
    """The flow an alert on this record points at (source, destination, ports, community id); None for
    non-IP records."""
    if r.client_ip is None or r.server_ip is None:
        return None
    return FlowContext(r.flow_id, r.transport, r.community_id or "", r.client_ip, r.client_port or 0, r.client_mac,
                       r.server_ip, r.server_port or 0, r.server_mac, r.vlan, "midstream" in r.notes)


class ArpView(NamedTuple):
    """An ARP frame as an alert's triggering event: sender as source, target as destination."""

    p: ArpPacket

    def to_doc(self) -> dict:
        p = self.p
        net: dict = {"protocol": "arp", "type": "ipv4"}
        if p.vlan:
            net["vlan"] = {"id": str(p.vlan[0])}
        return {"source": {"ip": p.sender_ip, "mac": p.sender_mac},
                "destination": {"ip": p.target_ip, "mac": p.target_mac}, "network": net,
                "related": {"ip": sorted({p.sender_ip, p.target_ip})},
                "event": {"dataset": "otids.arp", "action": "arp_reply" if p.op == 2 else "arp_request"}}


def listed(xs) -> list:
    xs = sorted(xs, key=_sort_key)
    return xs[:MAX_LISTED]


def _sort_key(x):
    if isinstance(x, int):
        return (0, x, "")
    try:
        a = ipaddress.ip_address(x)
        return (a.version, int(a), "")
    except ValueError:
        return (9, 0, str(x))


@lru_cache(maxsize=65536)
def is_unicast(ip: str) -> bool:
    """A unicast address one could scan (not broadcast, multicast, unspecified)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if a.is_multicast or a.is_unspecified:
        return False
    if a.version == 4 and (a.packed[3] == 255 or ip == "255.255.255.255"):
        return False  # limited and (most) directed broadcasts
    return True


def make_alert(rule_id: str, ts: int, reason: str, count: int, details: dict, flow=None, event=None,
               protocol=None) -> Alert:
    r = RULES[rule_id]
    return Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description, severity=r.severity,
                 reason=reason, source="network", techniques=techniques(*r.attack), event=event, flow=flow,
                 protocol=protocol, count=count, extra={"network": details})


class _Finding:
    __slots__ = ("alert_ts", "count", "last_ts", "info")

    def __init__(self, ts):
        self.alert_ts = ts
        self.last_ts = ts
        self.count = 0
        self.info = None  # what the follow-up alert points at (set by the detector)


def cap_alerts(caps, ts: int, gate: list | None = None, quiet: int = 0) -> list:
    """One memory_cap alert (the sensor's own rule, ids/detect/anomaly.py) naming the detector tables that
    had to forget keys since the last one; `gate` ([last alert ts]) holds them to one per `quiet` ns."""
    from ..anomaly import RULES as SENSOR_RULES
    if gate is not None:
        if not any(c.hits != c.reported for c in caps) or gate[0] is not None and ts - gate[0] < quiet:
            return []
        gate[0] = ts
    due = [d for d in (cap.report(ts) for cap in caps) if d is not None]
    if not due:
        return []
    r = SENSOR_RULES["otids.anomaly.sensor.memory_cap"]
    what = "; ".join(f"{d['pool']} reached its {d['max_bytes']:,} bytes, {d['forgotten']:,} oldest key(s) forgotten"
                     + (f" with {d['occurrences_lost']:,} occurrence(s) not yet alerted" if d.get("occurrences_lost")
                        else "")
                     for d in due)
    return [Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description, severity=r.severity,
                  reason=f"{r.name}: {what} (shares of limits.network_state_bytes)", source="network",
                  extra={"sensor": due[0] if len(due) == 1 else
                                                                 {"pool": "network", "tables": due}})]


def _held(f: _Finding) -> int:
    return f.count


class Limiter:
    """One alert per finding (rule and its source): `fire` returns True the first time (alert now) and
    when `realert` has passed since the last alert; in between occurrences are counted (`pending`) and
    reported by the next alert or, at the end, by `leftovers` (one follow-up each).

    Not detect/api.Limiter, on purpose: here the alert due after `realert` stands for the occurrences held
    back and its own (one alert per period, its count the period's total), where api.Limiter writes the held
    count as a follow-up and then a fresh alert of count 1; the network alerts' counts and number (golden
    files) depend on this."""

    def __init__(self, realert_ns: int, cap: int, keycap: KeyCap | None = None):
        self.realert = realert_ns
        self.cap = cap
        self.keycap = keycap  # the bound in bytes (a finding keeps the record it points at)
        self.findings: dict[tuple, _Finding] = {}

    def fire(self, key: tuple, ts: int, n: int = 1) -> int:
        """Count `n` occurrences at `ts`; returns 0 (counted, no alert), or the occurrences the alert due
        now stands for."""
        f = self.findings.get(key)
        if f is None:
            if self.keycap is not None:
                self.keycap.make_room(self.findings, _held)
            elif len(self.findings) >= self.cap:  # the oldest eighth at once: one key at a time is quadratic (F9)
                trim_oldest(self.findings, self.cap)
            self.findings[key] = _Finding(ts)
            return n
        f.count += n
        if ts > f.last_ts:
            f.last_ts = ts
        if ts - f.alert_ts >= self.realert:
            n, f.count, f.alert_ts = f.count, 0, ts
            return n
        return 0

    def active(self, key: tuple, ts: int) -> bool:
        """An alert for `key` was written less than `realert` ago: new occurrences only count."""
        f = self.findings.get(key)
        return f is not None and ts - f.alert_ts < self.realert

    def note(self, key: tuple, info) -> None:
        f = self.findings.get(key)
        if f is not None:
            f.info = info

    def leftovers(self):
        """(key, count, last_ts, info) of findings with occurrences not yet reported."""
        for k, f in self.findings.items():
            if f.count:
                yield k, f.count, f.last_ts, f.info
                f.count = 0


def when(ts: int) -> str:
    return rfc3339(ts)
