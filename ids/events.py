"""What every protocol shares: the flow side of events (FlowContext), data-path notices (FlowNotice), the
sensor's own statistics (SensorStats), and findings (Alert, Technique). The contract between stages.

Each protocol's typed records and their ECS rendering live in its own package (ids/protocols/<name>/
messages.py and ecs.py); this module imports nothing from there. Field names in the documents are a
published contract (README "Event fields"): rules, baselines, Elasticsearch mappings and tests depend on them.

Records on the hot path are NamedTuples (cheap to build); everything here is immutable once emitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

from .units import community_id, ip_text, mac_text, rfc3339  # noqa: F401  (re-exported: the old import path)

__all__ = ["TRANSPORT_NAMES", "FlowContext", "FlowNotice", "SensorStats", "SEVERITY_SCORE", "Technique", "Alert",
           "community_id", "ip_text", "mac_text", "rfc3339"]

# ---------------------------------------------------------------------------------------------- flows

TRANSPORT_NAMES = {6: "tcp", 17: "udp"}


class FlowContext(NamedTuple):
    """The network side of every event of one flow: built once per flow, shared by its events.

    `client` is the side that opened the connection (or, on mid-stream pickup, the side talking to the
    protocol's well-known port); for Modbus that is the master and `server` the slave.
    """

    flow_id: int  # per-run sequence number, in order of first packet
    transport: str
    community_id: str
    client_ip: str
    client_port: int
    client_mac: str | None
    server_ip: str
    server_port: int
    server_mac: str | None
    vlan: tuple[int, ...] | None
    midstream: bool

    def network_doc(self, protocol: str | None) -> dict:
        src = {"ip": self.client_ip, "port": self.client_port}
        if self.client_mac:
            src["mac"] = self.client_mac
        dst = {"ip": self.server_ip, "port": self.server_port}
        if self.server_mac:
            dst["mac"] = self.server_mac
        net: dict[str, Any] = {"transport": self.transport, "community_id": self.community_id,
                               "type": "ipv6" if ":" in self.client_ip else "ipv4"}
        if protocol:
            net["protocol"] = protocol
        if self.vlan:
            net["vlan"] = {"id": str(self.vlan[0])}
            if len(self.vlan) > 1:
                net["inner"] = {"vlan": {"id": str(self.vlan[1])}}
        return {"source": src, "destination": dst, "network": net,
                "related": {"ip": sorted({self.client_ip, self.server_ip})}}


# ---------------------------------------------------------------------------------------------- flow notices

class FlowNotice(NamedTuple):
    """Something the data path itself observed: a TCP gap, a cap that was hit, a protocol violation,
    fragments that overlapped. Dataset `otids.flow`. `action` is a stable snake_case name (docs/EVENTS.md)."""

    ts: int
    action: str
    flow: FlowContext | None
    protocol: str | None
    details: dict

    dataset = "otids.flow"
    label = property(itemgetter(1))  # what the run summary counts events by

    def to_doc(self) -> dict:
        doc: dict[str, Any] = {"@timestamp": rfc3339(self.ts),
                               "event": {"kind": "event", "category": ["network"], "type": ["info"],
                                         "dataset": self.dataset, "action": self.action}}
        if self.flow is not None:
            doc.update(self.flow.network_doc(self.protocol))
        if self.details:
            doc["otids"] = {"flow": dict(self.details)}
        return doc


# ---------------------------------------------------------------------------------------------- sensor

class SensorStats(NamedTuple):
    """What the live sensor says about itself (dataset `otids.stats`): capture counters per interface
    (action `capture`), pipeline counters (`sensor`), interface state (`interface_down`, `interface_up`)
    and SIGHUP reloads (`config_reload`). `interface` is the capture interface, None for the whole sensor.
    `details` keys are the documented `otids.stats.*` fields (ids/data/fields/stats.yml)."""

    ts: int
    action: str
    interface: str | None
    details: dict

    dataset = "otids.stats"
    protocol = None
    label = property(itemgetter(1))  # action: what the run summary counts

    def to_doc(self) -> dict:
        metric = self.action in ("capture", "sensor")
        doc: dict[str, Any] = {"@timestamp": rfc3339(self.ts),
                               "event": {"kind": "metric" if metric else "event",
                                         "category": ["network"] if self.interface else ["host"],
                                         "type": ["info"] if metric else ["change"],
                                         "dataset": self.dataset, "action": self.action}}
        if self.interface is not None:
            doc["observer"] = {"ingress": {"interface": {"name": self.interface}}}
        doc["otids"] = {"stats": dict(self.details)}
        return doc


# ---------------------------------------------------------------------------------------------- alerts

# Elastic detection-rule convention; "info" marks findings that are facts to know, not threats (e.g. "this TLS 1.3
# client's identity cannot be observed"): below every threat score so severity filters leave them out.
SEVERITY_SCORE = {"info": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}


@dataclass(frozen=True, slots=True)
class Technique:
    """A MITRE ATT&CK for ICS technique (attack.mitre.org/techniques/ics/)."""

    id: str
    name: str
    tactic_id: str
    tactic: str
    other_tactics: tuple[tuple[str, str], ...] = ()  # (id, name) of further tactics the technique serves

    @property
    def tactics(self) -> tuple[tuple[str, str], ...]:
        return ((self.tactic_id, self.tactic),) + self.other_tactics

    @property
    def reference(self) -> str:
        return f"https://attack.mitre.org/techniques/{self.id}/"


@dataclass(frozen=True, slots=True)
class Alert:
    """A finding: which rule, how severe, why, and the event that triggered it (if any).

    Detectors build alerts; outputs write them as ECS `event.kind: alert` documents carrying the
    triggering event's network and protocol fields so an analyst needs no join to read them.
    """

    ts: int
    rule_id: str
    rule_name: str
    description: str
    severity: str  # info | low | medium | high | critical
    reason: str
    source: str  # which detector: anomaly, rules, baseline, ml, auth
    techniques: tuple[Technique, ...] = ()
    event: Any = None  # the triggering event (ModbusTransaction, FlowNotice, ...)
    flow: FlowContext | None = None
    protocol: str | None = None
    count: int = 1  # how many occurrences this alert stands for (thresholds, repeats)
    references: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # detector-specific fields, written under otids.alert
    ruleset: str = "otids"  # rule.ruleset: an imported rule keeps its origin (e.g. the Suricata .rules file)

    def to_doc(self) -> dict:
        doc: dict[str, Any] = {}
        if self.event is not None and hasattr(self.event, "to_doc"):
            doc = self.event.to_doc()
        flow = self.flow or getattr(self.event, "flow", None)
        if flow is not None and "source" not in doc:
            doc.update(flow.network_doc(self.protocol))
        trig = doc.get("event", {})
        doc["@timestamp"] = rfc3339(self.ts)
        ev = {"kind": "alert", "category": ["intrusion_detection"], "type": ["info"],
              "dataset": "otids.alert", "module": "otids", "severity": SEVERITY_SCORE[self.severity],
              "reason": self.reason}
        if trig.get("dataset"):
            ev["original_dataset"] = trig["dataset"]  # custom; kept so analysts can pivot
        if trig.get("action"):
            ev["action"] = trig["action"]
        doc["event"] = ev
        doc["rule"] = {"id": self.rule_id, "name": self.rule_name, "description": self.description,
                       "category": self.source, "ruleset": self.ruleset}
        if self.references:
            doc["rule"]["reference"] = self.references[0]
        if self.techniques:
            doc["threat"] = {
                "framework": "MITRE ATT&CK for ICS",
                "technique": {"id": [t.id for t in self.techniques], "name": [t.name for t in self.techniques],
                              "reference": [t.reference for t in self.techniques]},
                "tactic": {"id": sorted({i for t in self.techniques for i, _ in t.tactics}),
                           "name": sorted({n for t in self.techniques for _, n in t.tactics})},
            }
        ot = doc.setdefault("otids", {})
        ot["alert"] = {"severity": self.severity, "detector": self.source, "count": self.count, **self.extra}
        if self.protocol and "protocol" not in doc.get("network", {}) and "network" in doc:
            doc["network"]["protocol"] = self.protocol
        return doc
