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
    if sec > 253_402_300_799:  # past 9999-12-31T23:59:59 no datetime exists: the last second it can say
        sec, ns = 253_402_300_799, 999_999_999
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


#: Anomalies that describe the record, not a fault of the exchange: they do not make it a failure.
INFORMATIONAL_ANOMALIES = frozenset(("values_truncated",))


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
        if self.exception_code is not None:
            return "failure"
        an = self.anomalies
        return "failure" if an and not INFORMATIONAL_ANOMALIES.issuperset(an) else "success"

    def to_doc(self) -> dict:
        m: dict[str, Any] = {"transaction_id": self.transaction_id, "unit_id": self.unit_id,
                             "function_code": self.function_code, "function": self.function}
        if self.exception_code is not None:
            m["exception_code"] = self.exception_code
            m["exception"] = self.exception
        if self.request is not None:
            m["request"] = r = _part_doc(self.request)
            # The last address touched, so that a range query (or an allow-list rule) can ask whether a
            # request stays inside a block without arithmetic on address + quantity.
            last = last_address(r.get("address"), r.get("quantity"))
            if last is not None:
                r["last_address"] = last
            last = last_address(r.get("read_address"), r.get("read_quantity"))
            if last is not None:
                r["read_last_address"] = last
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


def last_address(address: int | None, quantity: int | None) -> int | None:
    """Last address of a block (a missing or zero quantity counts as one item), capped at 65535."""
    if address is None:
        return None
    return min(0xFFFF, address + (quantity or 1) - 1)


def _part_doc(p: NamedTuple) -> dict:
    d: dict[str, Any] = {}
    for k, v in zip(p._fields, p):
        if v is None:
            continue
        if k == "details":
            d.update(v)
        elif k == "values":
            # Coil states are bools on the typed event but 0/1 in the document: one Elasticsearch field
            # holds either registers or coils, and a `long` field rejects JSON true/false.
            d[k] = [int(x) for x in v]
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


# ---------------------------------------------------------------------------------------------- MQTT
#
# One record per control packet (Mqtt<Type>), grouped into one MqttExchange per exchange: CONNECT with its
# CONNACK (and any v5 AUTH between them), a QoS 1/2 PUBLISH with its PUBACK or PUBREC/PUBREL/PUBCOMP,
# SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK paired by packet id; everything else stands alone. Every
# message record starts with the same seven fields: type (lowercase name, the document key), ts,
# to_server, the fixed-header flags (qos, retain, dup) and length (whole packet, fixed header included).
# A field the packet did not carry, or that could not be read (anomaly malformed_traffic), is None.
# `properties` (v5) maps Suricata's property names to values, user properties by their own key (a key
# seen twice holds a list); binary values stay bytes on the record.


class MqttConnect(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    protocol_string: str | None = None
    protocol_version: int | None = None
    flags: int | None = None  # raw CONNECT flags byte (ids.protocols.mqtt.consts.ConnectFlags)
    keepalive: int | None = None
    client_id: str | None = None
    username: str | None = None
    password: bytes | None = None  # a secret: written only by to_doc(include_secrets=True)
    will_topic: str | None = None
    will_message: bytes | None = None  # first mqtt.string_log_limit bytes
    will_payload_length: int | None = None
    will_properties: dict | None = None
    properties: dict | None = None


class MqttConnack(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    session_present: bool | None = None
    return_code: int | None = None  # 3.1.1 return code or 5.0 reason code
    properties: dict | None = None


class MqttPublish(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    topic: str | None = None  # v5: resolved from the topic alias when the packet carried none
    message_id: int | None = None
    payload: bytes | None = None  # first mqtt.string_log_limit bytes of the application message
    payload_length: int | None = None
    properties: dict | None = None
    topic_from_alias: bool = False
    truncated: bool = False  # over mqtt.max_message_length: only the head was parsed, the payload skipped


class MqttAck(NamedTuple):
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""

    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    message_id: int | None = None
    reason_code: int | None = None  # v5 only
    properties: dict | None = None


class MqttSubscribe(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    message_id: int | None = None
    topics: tuple = ()  # (topic filter, options byte): QoS in bits 0-1; v5 no_local 2, rap 3, handling 4-5
    properties: dict | None = None


class MqttSuback(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    message_id: int | None = None
    codes: tuple = ()  # granted QoS (3.1.1, 0x80 failure) or reason codes (5.0), one per filter
    properties: dict | None = None


class MqttUnsubscribe(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    message_id: int | None = None
    topics: tuple = ()
    properties: dict | None = None


class MqttUnsuback(NamedTuple):
    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    message_id: int | None = None
    codes: tuple = ()  # v5 reason codes, one per filter
    properties: dict | None = None


class MqttDisconnect(NamedTuple):
    """DISCONNECT (reason code v5 only) or AUTH (v5)."""

    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    reason_code: int | None = None
    properties: dict | None = None


class MqttBare(NamedTuple):
    """PINGREQ/PINGRESP; a packet of an unassigned type (type "unassigned"); or any packet other than PUBLISH
    over mqtt.max_message_length (truncated, not parsed: Suricata's `truncated`/`skipped_length`)."""

    type: str
    ts: int
    to_server: bool
    qos: int
    retain: bool
    dup: bool
    length: int
    type_code: int = 0
    truncated: bool = False


class MqttExchange(NamedTuple):
    """One MQTT exchange (dataset `otids.mqtt`): its messages in arrival order.

    `status`: complete | incomplete (the answer never came: flow end, timeout, packet id reused, or the
    mqtt.max_pending bound) | unsolicited (an answer to nothing seen) | malformed (a message could not be
    parsed). `anomalies`: Suricata's MQTT event names (ids.protocols.mqtt.consts) plus a few of ours.
    """

    ts: int  # first message
    flow: FlowContext
    protocol_version: int  # 3 (3.1), 4 (3.1.1), 5; 0 while unknown (mid-stream pickup)
    messages: tuple
    status: str
    anomalies: tuple[str, ...]
    log_limit: int  # mqtt.string_log_limit: longest message/topic text written to the document

    dataset = "otids.mqtt"
    protocol = "mqtt"
    has_secrets = True  # to_doc(include_secrets=True) writes CONNECT passwords and v5 authentication data

    @property
    def label(self) -> str:  # what the run summary counts events by
        return self.messages[0].type

    action = label

    @property
    def types(self) -> list[str]:
        out: list[str] = []
        for m in self.messages:
            if m.type not in out:
                out.append(m.type)
        return out

    def message(self, type_: str):
        """The first message of that type ("connect", "publish", ...) in the exchange, or None."""
        for m in self.messages:
            if m.type == type_:
                return m
        return None

    @property
    def outcome(self) -> str:
        if self.status == "incomplete":
            return "unknown"
        if self.status != "complete":
            return "failure"
        for m in self.messages:
            if type(m) is MqttConnack and m.return_code:
                return "failure"
            rc = getattr(m, "reason_code", None)
            if rc is not None and rc >= 0x80:
                return "failure"
        return "success"

    def to_doc(self, include_secrets: bool = False) -> dict:
        msgs = self.messages
        v = self.protocol_version
        first = msgs[0]
        if len(msgs) == 1:  # most exchanges (QoS 0 telemetry)
            t = first.type
            m: dict[str, Any] = {t: _MQTT_DOC[type(first)](first, v, self.log_limit, include_secrets), "types": [t]}
        else:
            m = {}
            for msg in msgs:
                if msg.type not in m:  # a type seen twice (v5 AUTH rounds): the first is written
                    m[msg.type] = _MQTT_DOC[type(msg)](msg, v, self.log_limit, include_secrets)
            m["types"] = list(m)
        if v:
            m["protocol_version"] = v
        m["status"] = self.status
        ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                              "dataset": self.dataset, "action": first.type,
                              "outcome": "success" if self.status == "complete" and len(msgs) == 1
                              and type(first) is MqttPublish else self.outcome}
        if len(msgs) > 1:
            ev["duration"] = msgs[-1].ts - first.ts
        doc: dict[str, Any] = {"@timestamp": rfc3339(self.ts), "event": ev}
        doc.update(self.flow.network_doc("mqtt"))
        if type(first) is MqttConnect and first.username is not None:
            doc["user"] = {"name": first.username}
            doc["related"]["user"] = [first.username]
        doc["mqtt"] = m
        doc["otids"] = {"anomalies": list(self.anomalies)}
        return doc


def _btext(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _capped(raw: bytes, total: int, limit: int) -> str:
    """Suricata's string-log-limit form: the first `limit` bytes, then how many more there were."""
    if total > limit:
        return _btext(raw[:limit]) + f"[truncated {total - limit} additional bytes]"
    return _btext(raw)


def _props_doc(p: dict, secrets: bool) -> dict:
    out = {}
    for k, val in p.items():
        if type(val) is bytes:
            if k == "authentication_data" and not secrets:
                continue
            val = _btext(val)
        elif type(val) is list:
            val = [_btext(x) if type(x) is bytes else x for x in val]
        out[k] = val
    return out


def _hdr(msg) -> dict:
    return {"qos": msg.qos, "retain": msg.retain, "dup": msg.dup}


def _connect_doc(c: MqttConnect, v, limit, secrets) -> dict:
    d = _hdr(c)
    if c.protocol_string is not None:
        d["protocol_string"] = c.protocol_string
    if c.protocol_version is not None:
        d["protocol_version"] = c.protocol_version
    if c.client_id is not None:
        d["client_id"] = c.client_id
    f = c.flags
    if f is not None:
        d["flags"] = {"username": bool(f & 0x80), "password": bool(f & 0x40), "will": bool(f & 0x04),
                      "will_retain": bool(f & 0x20), "clean_session": bool(f & 0x02)}
        if f & 0x04:
            w: dict[str, Any] = {"qos": (f >> 3) & 3, "retain": bool(f & 0x20)}
            if c.will_topic is not None:
                w["topic"] = c.will_topic
            if c.will_message is not None:
                w["message"] = _capped(c.will_message, c.will_payload_length, limit)
                w["payload_length"] = c.will_payload_length
            if c.will_properties:
                w["properties"] = _props_doc(c.will_properties, secrets)
            d["will"] = w
    if c.keepalive is not None:
        d["keepalive"] = c.keepalive
    if c.username is not None:
        d["username"] = c.username
    if secrets and c.password is not None:
        d["password"] = _btext(c.password)
    if c.properties:
        d["properties"] = _props_doc(c.properties, secrets)
    return d


def _connack_doc(c: MqttConnack, v, limit, secrets) -> dict:
    d = _hdr(c)
    if c.session_present is not None:
        d["session_present"] = c.session_present
    if c.return_code is not None:
        d["return_code"] = c.return_code
        d["reason"] = _mqtt_reason(c.return_code, 2, v)
    if c.properties:
        d["properties"] = _props_doc(c.properties, secrets)
    return d


def _publish_doc(p: MqttPublish, v, limit, secrets) -> dict:
    d = _hdr(p)
    if p.topic is not None:
        d["topic"] = p.topic
        if p.topic_from_alias:
            d["topic_from_alias"] = True
    if p.message_id is not None:
        d["message_id"] = p.message_id
    if p.payload is not None and not p.truncated:
        d["message"] = _capped(p.payload, p.payload_length, limit)
    if p.payload_length is not None:
        d["payload_length"] = p.payload_length
    if p.properties:
        d["properties"] = _props_doc(p.properties, secrets)
    d["from_client"] = p.to_server
    if p.truncated:
        d["truncated"] = True
        d["skipped_length"] = p.length
    return d


def _ack_doc(a: MqttAck, v, limit, secrets) -> dict:
    d = _hdr(a)
    if a.message_id is not None:
        d["message_id"] = a.message_id
    if a.reason_code is not None:
        d["reason_code"] = a.reason_code
        d["reason"] = _mqtt_reason(a.reason_code, 4, v)
    if a.properties:
        d["properties"] = _props_doc(a.properties, secrets)
    return d


def _subscribe_doc(s: MqttSubscribe, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    topics = []
    budget = limit
    for name, opts in s.topics:  # the limit bounds all filters together (Suricata string-log-limit)
        t: dict[str, Any] = {"topic": name, "qos": opts & 3}
        raw = name.encode()
        n = len(raw)
        if n > budget:
            t["topic"] = _capped(raw, n, budget)
        if v == 5:
            t["no_local"] = bool(opts & 4)
            t["retain_as_published"] = bool(opts & 8)
            t["retain_handling"] = (opts >> 4) & 3
        topics.append(t)
        if n > budget:
            break
        budget -= n
    d["topics"] = topics
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _suback_doc(s: MqttSuback, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    d["qos_granted"] = list(s.codes)
    if v == 5:
        d["reason_codes"] = list(s.codes)
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _unsubscribe_doc(s: MqttUnsubscribe, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    topics = []
    budget = limit
    for name in s.topics:
        raw = name.encode()
        n = len(raw)
        if n > budget:
            topics.append(_capped(raw, n, budget))
            break
        topics.append(name)
        budget -= n
    d["topics"] = topics
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _unsuback_doc(s: MqttUnsuback, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    if s.codes:
        d["reason_codes"] = list(s.codes)
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _disconnect_doc(s: MqttDisconnect, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.reason_code is not None:
        d["reason_code"] = s.reason_code
        d["reason"] = _mqtt_reason(s.reason_code, 14 if s.type == "disconnect" else 15, v)
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    d["from_client"] = s.to_server
    return d


def _bare_doc(b: MqttBare, v, limit, secrets) -> dict:
    d = _hdr(b)
    if b.truncated:
        d["truncated"] = True
        d["skipped_length"] = b.length
    if b.type == "unassigned":
        d["type_code"] = b.type_code
        d["length"] = b.length
    return d


def _mqtt_reason(code: int, ptype: int, version: int) -> str:
    from .protocols.mqtt.consts import reason_name  # the tables live with the protocol
    return reason_name(code, ptype, version)


_MQTT_DOC = {MqttConnect: _connect_doc, MqttConnack: _connack_doc, MqttPublish: _publish_doc, MqttAck: _ack_doc,
             MqttSubscribe: _subscribe_doc, MqttSuback: _suback_doc, MqttUnsubscribe: _unsubscribe_doc,
             MqttUnsuback: _unsuback_doc, MqttDisconnect: _disconnect_doc, MqttBare: _bare_doc}


# ---------------------------------------------------------------------------------------------- TLS
#
# The cleartext part of a TLS handshake (any port; MQTT over TLS on 8883): hellos, and for TLS <= 1.2 the
# certificates and whether the server asked the client for one. TLS 1.3 encrypts everything after
# ServerHello, certificates included: the event says so (identity not observable) rather than guessing.


class X509Cert(NamedTuple):
    """One decoded certificate (ECS x509.* fields). `error` is set, and the rest mostly None, when the DER
    could not be decoded."""

    sha256: str
    sha1: str
    version_number: str | None = None
    serial_number: str | None = None  # upper-case hex, no separators (ECS)
    subject: dict | None = None  # common_name, organization, ... (lists of str) and distinguished_name
    issuer: dict | None = None
    not_before: int | None = None  # ns since the epoch
    not_after: int | None = None
    signature_algorithm: str | None = None
    public_key_algorithm: str | None = None
    public_key_size: int | None = None
    public_key_curve: str | None = None
    public_key_exponent: int | None = None
    alternative_names: tuple[str, ...] = ()
    is_ca: bool | None = None
    error: str | None = None

    def to_doc(self) -> dict:
        d: dict[str, Any] = {}
        for k in ("version_number", "serial_number", "signature_algorithm", "public_key_algorithm",
                  "public_key_size", "public_key_curve", "public_key_exponent"):
            val = getattr(self, k)
            if val is not None:
                d[k] = val
        if self.subject:
            d["subject"] = dict(self.subject)
        if self.issuer:
            d["issuer"] = dict(self.issuer)
        if self.not_before is not None:
            d["not_before"] = rfc3339(self.not_before)
        if self.not_after is not None:
            d["not_after"] = rfc3339(self.not_after)
        if self.alternative_names:
            d["alternative_names"] = list(self.alternative_names)
        return d


class TlsClientHello(NamedTuple):
    version: int  # legacy_version (0x0303 for 1.2 and 1.3)
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]
    groups: tuple[int, ...]
    point_formats: tuple[int, ...]
    server_name: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    session_id: bytes
    ja3: str  # the JA3 string (GREASE removed); tls.client.ja3 is its MD5


class TlsServerHello(NamedTuple):
    version: int  # legacy_version
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int | None  # supported_versions extension (TLS 1.3)
    alpn: str | None
    session_id: bytes
    ja3s: str


class TlsHandshake(NamedTuple):
    """One TLS handshake (dataset `otids.tls`), emitted when it completes, fails or its flow ends."""

    ts: int  # ClientHello (or the first handshake record seen)
    flow: FlowContext
    client_hello: TlsClientHello | None
    server_hello: TlsServerHello | None
    server_certs: tuple  # X509Cert, leaf first (TLS <= 1.2 only)
    client_certs: tuple
    certificate_requested: bool | None  # CertificateRequest seen (TLS <= 1.2); None when encrypted (1.3)
    established: bool  # both sides switched to encrypted records
    resumed: bool  # abbreviated handshake (TLS <= 1.2 session resumption)
    alert: tuple | None  # (level, description) of a cleartext alert
    anomalies: tuple[str, ...]
    end_ts: int
    application: str | None = None  # what runs inside, when the port or ALPN says so (e.g. "mqtt")

    dataset = "otids.tls"
    protocol = "tls"
    label = "handshake"
    action = "handshake"

    @property
    def version_code(self) -> int | None:
        sh = self.server_hello
        if sh is None:
            return None
        return sh.selected_version or sh.version

    @property
    def identity_observable(self) -> bool | None:
        """Whether certificates travel in clear (TLS <= 1.2); None before a ServerHello decides."""
        v = self.version_code
        return None if v is None else v < 0x0304

    def to_doc(self) -> dict:
        from .protocols.tls.consts import alert_name, cipher_name, version_text
        t: dict[str, Any] = {"established": self.established}
        o: dict[str, Any] = {}
        ch, sh = self.client_hello, self.server_hello
        v = self.version_code
        if v is not None:
            proto, ver = version_text(v)
            t["version_protocol"] = proto
            t["version"] = ver
        if sh is not None:
            t["cipher"] = cipher_name(sh.cipher)
            if sh.alpn:
                t["next_protocol"] = sh.alpn
            t["server"] = {"ja3s": hashlib.md5(sh.ja3s.encode()).hexdigest()}
            if v is not None and v < 0x0304:
                t["resumed"] = self.resumed
        client: dict[str, Any] = {}
        if ch is not None:
            client["ja3"] = hashlib.md5(ch.ja3.encode()).hexdigest()
            if ch.server_name:
                client["server_name"] = ch.server_name
            client["supported_ciphers"] = [cipher_name(c) for c in ch.ciphers]
            if ch.alpn:
                o["client_alpn"] = list(ch.alpn)
            if ch.supported_versions:
                o["client_versions"] = [version_text(x)[1] for x in ch.supported_versions]
        for side, certs, dst in (("client", self.client_certs, client),
                                 ("server", self.server_certs, t.setdefault("server", {}))):
            if not certs:
                continue
            leaf = certs[0]
            dst["x509"] = leaf.to_doc()
            dst["hash"] = {"sha256": leaf.sha256, "sha1": leaf.sha1}
            if leaf.subject:
                dst["subject"] = leaf.subject.get("distinguished_name")
            if leaf.issuer:
                dst["issuer"] = leaf.issuer.get("distinguished_name")
            if leaf.not_before is not None:
                dst["not_before"] = rfc3339(leaf.not_before)
            if leaf.not_after is not None:
                dst["not_after"] = rfc3339(leaf.not_after)
            o[f"{side}_chain"] = [{"subject": (c.subject or {}).get("distinguished_name"),
                                   "issuer": (c.issuer or {}).get("distinguished_name"), "sha256": c.sha256}
                                  for c in certs]
            bad = [c.error for c in certs if c.error]
            if bad:
                o[f"{side}_certificate_errors"] = bad
        if not t.get("server"):
            t.pop("server", None)
        if client:
            t["client"] = client
        obs = self.identity_observable
        if obs is not None:
            o["client_identity_observable"] = obs
            o["server_identity_observable"] = obs
        if self.certificate_requested is not None:
            o["certificate_requested"] = self.certificate_requested
        if self.alert is not None:
            lvl, desc = self.alert
            o["alert"] = {"level": "fatal" if lvl == 2 else "warning" if lvl == 1 else f"unknown-{lvl}",
                          "description": alert_name(desc), "code": desc}
        if self.application:
            o["application"] = self.application
        ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                              "dataset": self.dataset, "action": "handshake",
                              "outcome": "success" if self.established else
                              "failure" if self.alert is not None else "unknown",
                              "duration": self.end_ts - self.ts}
        doc: dict[str, Any] = {"@timestamp": rfc3339(self.ts), "event": ev}
        doc.update(self.flow.network_doc("tls"))
        doc["tls"] = t
        doc["otids"] = {"anomalies": list(self.anomalies), "tls": o}
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
                "tactic": {"id": sorted({i for t in self.techniques for i, _ in t.tactics}),
                           "name": sorted({n for t in self.techniques for _, n in t.tactics})},
            }
        ot = doc.setdefault("otids", {})
        ot["alert"] = {"severity": self.severity, "detector": self.source, "count": self.count, **self.extra}
        if self.protocol and "protocol" not in doc.get("network", {}) and "network" in doc:
            doc["network"]["protocol"] = self.protocol
        return doc
