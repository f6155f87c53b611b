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
from operator import itemgetter
from typing import Any, NamedTuple

# ---------------------------------------------------------------------------------------------- helpers

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


_sec_cache: dict[int, str] = {}


def rfc3339(ts_ns: int) -> str:
    """Nanosecond epoch timestamp -> RFC 3339 UTC with microseconds, e.g. 2024-01-31T12:00:00.123456Z."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    head = _sec_cache.get(sec)
    if head is None:  # events arrive in time order: the formatted second is reused many times
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        t = datetime.fromtimestamp(sec, timezone.utc) if sec >= 0 else _EPOCH
        head = _sec_cache[sec] = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{ns // 1000:06d}Z"


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
    label = property(itemgetter(5))  # function

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


# ---------------------------------------------------------------------------------------------- OPC UA

class OpcuaEvent(NamedTuple):
    """One OPC UA Binary exchange (dataset `otids.opcua`): a service request with its response (paired by
    request handle), a secure-channel open (OPN pair) or close (CLO), the HEL/ACK handshake, an ERR, a
    ReverseHello, or one message that cannot be read because the channel encrypts it (`encrypted`).

    Emitted when the response arrives, or without one (anomaly unanswered_request) on timeout or flow
    end. `request` / `response` hold the service parameters otids decodes (documented in
    ids/data/fields/opcua.yml); `certificates` maps a role (client, server, user) to the decoded
    certificate (ECS x509 + hash). Secrets (passwords, token data, nonces, authentication tokens) are
    never stored here.
    """

    ts: int  # request time (message time for one-way messages)
    flow: FlowContext
    message_type: str  # HEL, OPN, MSG, CLO, ERR, RHE
    service: str  # Part 4 service name (Read, CreateSession, OpenSecureChannel ...), Hello, Error, ...
    secure_channel_id: int | None
    token_id: int | None
    request_id: int | None
    request_handle: int | None
    security_policy_uri: str | None
    security_mode: str | None  # None | Sign | SignAndEncrypt (inferred when the OPN is encrypted)
    encrypted: bool
    status_code: int | None
    status: str | None
    nodes: tuple[str, ...]
    endpoint_url: str | None
    application_uri: str | None
    user_token_type: str | None
    request: dict | None
    response: dict | None
    certificates: dict | None
    anomalies: tuple[str, ...]
    response_ts: int | None

    dataset = "otids.opcua"
    protocol = "opcua"

    @property
    def action(self) -> str:
        s = self.service
        out = [s[0].lower()] if s else []
        for ch in s[1:]:
            if ch.isupper() and out and out[-1] != "_":
                out.append("_")
            out.append(ch.lower())
        return "".join(out).replace("-", "_")

    label = property(itemgetter(3))  # service: what the run summary counts

    @property
    def outcome(self) -> str:
        if self.status_code is not None:
            return "failure" if self.status_code & 0x80000000 else "success"
        if self.response is None and self.request is not None and self.message_type in ("MSG", "OPN", "HEL"):
            return "unknown"
        return "failure" if self.anomalies else "success"

    def to_doc(self) -> dict:
        o: dict[str, Any] = {"message_type": self.message_type, "service": self.service,
                             "encrypted": self.encrypted}
        for k in ("secure_channel_id", "token_id", "request_id", "request_handle", "security_mode",
                  "status_code", "status", "endpoint_url", "application_uri", "user_token_type"):
            v = getattr(self, k)
            if v is not None:
                o[k] = v
        if self.security_policy_uri is not None:
            uri = self.security_policy_uri
            o["security_policy"] = {"uri": uri, "name": uri.rsplit("#", 1)[-1] if "#" in uri else uri}
        if self.nodes:
            o["nodes"] = list(self.nodes)
        if self.request is not None:
            o["request"] = self.request
        if self.response is not None:
            o["response"] = self.response
        if self.certificates:
            for role, c in self.certificates.items():
                o[f"{role}_certificate"] = c
        ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                              "dataset": self.dataset, "action": self.action, "outcome": self.outcome}
        if self.response_ts is not None:
            ev["duration"] = self.response_ts - self.ts
        doc = {"@timestamp": rfc3339(self.ts), "event": ev}
        doc.update(self.flow.network_doc("opcua"))
        doc["opcua"] = o
        user = (self.request or {}).get("identity", {}).get("user_name")
        if user:
            doc["user"] = {"name": user}
        doc["otids"] = {"anomalies": list(self.anomalies)}
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
