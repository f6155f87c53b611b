"""THE contract between parsing and detection: the typed events every protocol emits.

Parsers build these records and nothing after a parser touches bytes. Detectors read the typed fields;
outputs turn them into ECS documents with `to_doc()`. Field names in the documents are a published contract
(README "Event fields", issue #2): rules, baselines, Elasticsearch mappings and tests depend on them, so a
rename here is a breaking change.

Records on the hot path are NamedTuples (cheap to build); everything here is immutable once emitted.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

# ---------------------------------------------------------------------------------------------- helpers

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def rfc3339(ts_ns: int) -> str:
    """Nanosecond epoch timestamp -> RFC 3339 UTC with microseconds, e.g. 2024-01-31T12:00:00.123456Z."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    t = datetime.fromtimestamp(sec, timezone.utc) if sec >= 0 else _EPOCH
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}Z"


def ip_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def mac_text(raw: bytes | None) -> str | None:
    # ECS: MAC addresses in upper case, separated by hyphens.
    return "-".join(f"{b:02X}" for b in raw) if raw else None


def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 (github.com/corelight/community-id-spec) of a flow, endpoint order normalised."""
    if (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    h = hashlib.sha1(struct.pack("!H", seed) + saddr + daddr + struct.pack("!BxHH", proto, sport, dport))
    return "1:" + base64.b64encode(h.digest()).decode()


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

    def to_doc(self) -> dict:
        doc: dict[str, Any] = {"@timestamp": rfc3339(self.ts),
                               "event": {"kind": "event", "category": ["network"], "type": ["info"],
                                         "dataset": self.dataset, "action": self.action}}
        if self.flow is not None:
            doc.update(self.flow.network_doc(self.protocol))
        if self.details:
            doc["otids"] = {"flow": dict(self.details)}
        return doc


# ---------------------------------------------------------------------------------------------- Modbus

class ModbusRequest(NamedTuple):
    """What the master asked for. Fields not meaningful for a function code stay None.

    `values`: written coils (bools) or registers (ints), capped at `modbus.max_values` (config).
    `details`: function-specific extras (sub-function data, read/write split of FC 23, file records,
    MEI objects), a plain dict with documented keys (docs/EVENTS.md).
    """

    address: int | None = None
    quantity: int | None = None
    values: tuple | None = None
    sub_function: int | None = None
    details: dict | None = None


class ModbusResponse(NamedTuple):
    address: int | None = None
    quantity: int | None = None
    values: tuple | None = None
    sub_function: int | None = None
    details: dict | None = None


class ModbusTransaction(NamedTuple):
    """One Modbus/TCP request and its response (dataset `otids.modbus`).

    Emitted when the response arrives, or without one (outcome "unknown", anomaly unanswered_request)
    when the request times out or its flow ends; a response nobody asked for is emitted alone
    (anomaly unsolicited_response).
    """

    ts: int  # request time (response time when unsolicited)
    flow: FlowContext
    transaction_id: int
    unit_id: int
    function_code: int  # without the 0x80 exception bit
    function: str
    request: ModbusRequest | None
    response: ModbusResponse | None
    exception_code: int | None
    exception: str | None
    anomalies: tuple[str, ...]
    response_ts: int | None

    dataset = "otids.modbus"
    protocol = "modbus"

    @property
    def outcome(self) -> str:
        if self.response is None and self.exception_code is None:
            return "unknown"
        return "failure" if self.exception_code is not None or self.anomalies else "success"

    def to_doc(self) -> dict:
        m: dict[str, Any] = {"transaction_id": self.transaction_id, "unit_id": self.unit_id,
                             "function_code": self.function_code, "function": self.function}
        if self.exception_code is not None:
            m["exception_code"] = self.exception_code
            m["exception"] = self.exception
        if self.request is not None:
            m["request"] = _part_doc(self.request)
        if self.response is not None:
            m["response"] = _part_doc(self.response)
        ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                              "dataset": self.dataset, "action": self.function, "outcome": self.outcome}
        if self.response_ts is not None and self.request is not None:
            ev["duration"] = self.response_ts - self.ts
        doc = {"@timestamp": rfc3339(self.ts), "event": ev}
        doc.update(self.flow.network_doc("modbus"))
        doc["modbus"] = m
        doc["otids"] = {"anomalies": list(self.anomalies)}
        return doc


def _part_doc(p: NamedTuple) -> dict:
    d: dict[str, Any] = {}
    for k, v in zip(p._fields, p):
        if v is None:
            continue
        if k == "details":
            d.update(v)
        elif k == "values":
            d[k] = list(v)
        else:
            d[k] = v
    return d


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

SEVERITY_SCORE = {"low": 21, "medium": 47, "high": 73, "critical": 99}  # Elastic detection-rule convention


@dataclass(frozen=True, slots=True)
class Technique:
    """A MITRE ATT&CK for ICS technique (attack.mitre.org/techniques/ics/)."""

    id: str
    name: str
    tactic_id: str
    tactic: str

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
    severity: str  # low | medium | high | critical
    reason: str
    source: str  # which detector: anomaly, rules, baseline, ml, auth
    techniques: tuple[Technique, ...] = ()
    event: Any = None  # the triggering event (ModbusTransaction, FlowNotice, ...)
    flow: FlowContext | None = None
    protocol: str | None = None
    count: int = 1  # how many occurrences this alert stands for (thresholds, repeats)
    references: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # detector-specific fields, written under otids.alert

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
                       "category": self.source, "ruleset": "otids"}
        if self.references:
            doc["rule"]["reference"] = self.references[0]
        if self.techniques:
            doc["threat"] = {
                "framework": "MITRE ATT&CK for ICS",
                "technique": {"id": [t.id for t in self.techniques], "name": [t.name for t in self.techniques],
                              "reference": [t.reference for t in self.techniques]},
                "tactic": {"id": sorted({t.tactic_id for t in self.techniques}),
                           "name": sorted({t.tactic for t in self.techniques})},
            }
        ot = doc.setdefault("otids", {})
        ot["alert"] = {"severity": self.severity, "detector": self.source, "count": self.count, **self.extra}
        if self.protocol and "protocol" not in doc.get("network", {}) and "network" in doc:
            doc["network"]["protocol"] = self.protocol
        return doc
