"""Protocol-anomaly detector: turns anomalies that parsers put on events, and data-path notices, into
alerts: malformed PDUs, unsolicited responses, exception floods, unanswered-request floods, caps hit.

Repeats are rate-limited per (rule, client, server): the first occurrence alerts at once, the ones inside
the re-alert window are counted and reported in one follow-up alert with their count (never dropped).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..config import AnomalyConfig
from ..events import Alert, FlowNotice, ModbusTransaction, MqttExchange, OpcuaEvent, TlsHandshake
from .attack import techniques

NS = 1_000_000_000
MAX_KEYS = 50_000  # bound on tracked (rule, pair) keys; the oldest are forgotten first


@dataclass(frozen=True)
class AnomalyRule:
    id: str
    name: str
    severity: str
    description: str
    attack: tuple[str, ...] = ()


RULES = {r.id: r for r in (
    AnomalyRule("otids.anomaly.modbus.malformed", "Malformed Modbus PDU", "medium",
                "A Modbus frame or PDU violates the specification (bad MBAP header, wrong length or byte count, "
                "out-of-range quantity, invalid coil value). Fuzzing, exploitation attempts and broken devices "
                "produce these.", ("T0866",)),
    AnomalyRule("otids.anomaly.modbus.unsolicited_response", "Unsolicited Modbus response", "medium",
                "A slave sent a response whose transaction id matches no outstanding request: spoofed or "
                "injected replies, or a capture that started mid-exchange.", ("T0856",)),
    AnomalyRule("otids.anomaly.modbus.exception_flood", "Modbus exception flood", "high",
                "Many exception responses from one slave to one master in a short window, and a large share "
                "of their transactions: function-code, address or unit-id scanning, or a master driving a "
                "device into errors.", ("T0846", "T0888")),
    AnomalyRule("otids.anomaly.modbus.unanswered_flood", "Modbus unanswered-request flood", "high",
                "Many requests without response from one master to one slave in a short window: a request "
                "flood, probing of absent units, or a device that stopped answering.", ("T0814",)),
    AnomalyRule("otids.anomaly.opcua.malformed", "Malformed OPC UA message", "medium",
                "An OPC UA Binary message violates OPC 10000-6: bad transport header, impossible length, "
                "undecodable service body, nesting beyond the depth limit, a request sent by the server. Fuzzing "
                "and exploitation attempts against OPC UA stacks produce these.", ("T0866",)),
    AnomalyRule("otids.anomaly.opcua.chunk_cap", "OPC UA chunk limit exceeded", "high",
                "A chunked OPC UA message exceeded the limits negotiated in HEL/ACK or otids's own reassembly cap "
                "(or one chunk exceeded the chunk-size cap): resource-exhaustion attempts against a server or "
                "client. The message was not kept beyond the cap.", ("T0814",)),
    AnomalyRule("otids.anomaly.opcua.sequence", "OPC UA sequence number gap or replay", "medium",
                "On a secure channel whose headers are readable, a SequenceNumber did not follow the previous one "
                "(OPC 10000-6 6.7.2.4): a replayed or injected message, or a message removed in transit.",
                ("T0830", "T0855")),
    AnomalyRule("otids.anomaly.opcua.unsolicited_response", "Unsolicited OPC UA response", "medium",
                "A response whose request handle matches no outstanding request: injected responses, or a capture "
                "that started mid-exchange.", ("T0856",)),
    AnomalyRule("otids.anomaly.opcua.unanswered_flood", "OPC UA unanswered-request flood", "high",
                "Many OPC UA requests without response from one client to one server in a short window (Publish "
                "requests, which servers legitimately hold, are not counted).", ("T0814",)),
    AnomalyRule("otids.anomaly.flow.stream_buffer_cap", "TCP reassembly buffer cap reached", "low",
                "Out-of-order data for one stream exceeded the reassembly buffer; a gap was declared. Heavy loss "
                "or deliberate segment games to evade inspection."),
    AnomalyRule("otids.anomaly.flow.table_full", "Flow table full", "medium",
                "The flow table reached its cap and evicted flows: the sensor is partly blind (flow flood or "
                "undersized configuration)."),
    AnomalyRule("otids.anomaly.ip.fragment_overlap", "Overlapping IP fragments", "medium",
                "IP fragments overlapped; the first copy was kept. Overlaps are a classic IDS-evasion technique."),
    # Robustness (issue #16, docs/ROBUSTNESS.md): the sensor under attack says what it had to give up.
    AnomalyRule("otids.anomaly.sensor.memory_cap", "Sensor memory bound reached", "medium",
                "A global bound on state that grows with traffic (out-of-order TCP bytes, protocol reassembly, "
                "IP fragments; the pool and its size are in the reason) was reached and state was dropped to stay "
                "within it: the sensor is partly blind. A flood aimed at the sensor, or an undersized limits section."),
    AnomalyRule("otids.anomaly.sensor.talker_table_full", "Talker table bound reached", "low",
                "The table of closed flows per client, server and protocol reached limits.talkers_bytes; the "
                "quieter half was dropped. Many distinct hosts: a scan or a spoofed-source flood."),
    AnomalyRule("otids.anomaly.sensor.parser_error", "Protocol parser failed on crafted input", "high",
                "A protocol session raised on the bytes of a flow (a parser bug that the input found); the flow "
                "is no longer dissected. Input built to crash an IDS or a device parser."),
    AnomalyRule("otids.anomaly.flow.sustained_garbage", "Sustained garbage on a protocol port", "medium",
                "After a flow on a protocol's port was found not to carry that protocol, it (and others to the "
                "same server port) kept sending: past limits.garbage_alert_bytes. Fuzzing of the device, a "
                "tunnel, or a flood meant to tie up the sensor."),
    AnomalyRule("otids.anomaly.ip.fragment_flood", "IP fragment flood", "medium",
                "A datagram in more fragments than limits.max_fragments, or more datagrams in reassembly than "
                "decode.max_fragmented_datagrams: tiny-fragment evasion or a flood against reassembly."),
)}

MALFORMED = frozenset(("malformed_mbap", "malformed_pdu", "byte_count_mismatch", "quantity_out_of_range",
                       "invalid_coil_value", "exception_in_request", "function_code_mismatch",
                       "response_mismatch", "invalid_device_id_code"))

# MQTT: one rule per anomaly name on MqttExchange, named as Suricata's app-layer events are
# (rules/mqtt-events.rules), so `app-layer-event:mqtt.<name>` and otids.anomaly.mqtt.<name> agree.
_MQTT = (
    ("missing_connect", "MQTT CONNACK without CONNECT", "low",
     "A broker acknowledged a CONNECT that was never seen: the capture started mid-session, or replies are "
     "injected or spoofed.", ("T0856",)),
    ("missing_publish", "MQTT acknowledgement without PUBLISH", "low",
     "A PUBACK, PUBREC, PUBREL or PUBCOMP names a packet id with no PUBLISH in flight: mid-session pickup, "
     "lost packets, or injected acknowledgements.", ("T0856",)),
    ("missing_subscribe", "MQTT SUBACK without SUBSCRIBE", "low",
     "A SUBACK names a packet id with no SUBSCRIBE in flight.", ("T0856",)),
    ("missing_unsubscribe", "MQTT UNSUBACK without UNSUBSCRIBE", "low",
     "An UNSUBACK names a packet id with no UNSUBSCRIBE in flight.", ("T0856",)),
    ("double_connect", "MQTT duplicate CONNECT", "medium",
     "A second CONNECT on a connected session, a protocol violation (MQTT-3.1.0-2): session takeover "
     "attempts, fuzzing or broken clients.", ("T0866",)),
    ("unintroduced_message", "MQTT message before CONNECT/CONNACK completion", "low",
     "A packet other than CONNECT/CONNACK before the connection handshake completed. Clients may send "
     "before CONNACK (3.1.1 section 3.1.4), so this is often benign; on a flow whose start was seen it also "
     "catches traffic injected into a session.", ()),
    ("invalid_qos_level", "MQTT invalid QoS level", "medium",
     "A fixed header with QoS 3, which does not exist: fuzzing or exploitation attempts against brokers.",
     ("T0866",)),
    ("missing_msg_id", "MQTT missing message id", "medium",
     "A QoS 1/2 PUBLISH without a packet identifier.", ("T0866",)),
    ("unassigned_msg_type", "MQTT unassigned message type", "medium",
     "A control packet of a reserved type (0, or 15 before MQTT 5.0): fuzzing or a non-MQTT peer.",
     ("T0866",)),
    ("too_many_transactions", "MQTT too many open exchanges", "medium",
     "More exchanges waiting for an answer than mqtt.max_pending on one connection: a flood of unanswered "
     "QoS 1/2 publishes or subscriptions (resource exhaustion against the broker or the sensor).",
     ("T0814",)),
    ("malformed_traffic", "Malformed MQTT packet", "medium",
     "A control packet that does not parse (bad lengths, property blocks, strings or reserved bits): "
     "fuzzing, exploitation attempts against broker parsers, or broken devices.", ("T0866",)),
    ("invalid_flags", "MQTT invalid fixed-header flags", "low",
     "Fixed-header flag bits other than the specification requires for the packet type (5.0 section "
     "2.1.3).", ("T0866",)),
    ("unknown_protocol", "MQTT CONNECT with unknown protocol name or level", "low",
     "A CONNECT that claims neither MQIsdp 3 nor MQTT 4/5.", ()),
    ("message_too_large", "MQTT packet over the size limit", "low",
     "A control packet longer than mqtt.max_message_length: only its head was inspected. Large payloads can "
     "be legitimate (firmware, images) or an attempt to hide content from inspection.", ()),
    ("unknown_topic_alias", "MQTT unknown topic alias", "low",
     "An MQTT 5 PUBLISH uses a topic alias never defined on this connection.", ()),
)
for _name, _title, _sev, _desc, _att in _MQTT:
    RULES[f"otids.anomaly.mqtt.{_name}"] = AnomalyRule(f"otids.anomaly.mqtt.{_name}", _title, _sev, _desc, _att)
MQTT_RULES = {n: f"otids.anomaly.mqtt.{n}" for n, *_ in _MQTT}

RULES["otids.anomaly.tls.malformed"] = AnomalyRule(
    "otids.anomaly.tls.malformed", "Malformed TLS handshake", "medium",
    "A record or handshake message that is not valid TLS on a flow that started as TLS: fuzzing, "
    "exploitation attempts against TLS stacks, or a non-TLS protocol tunnelled on a TLS port.", ("T0866",))
RULES["otids.anomaly.tls.handshake_too_large"] = AnomalyRule(
    "otids.anomaly.tls.handshake_too_large", "TLS handshake message over the size limit", "low",
    "A handshake message longer than tls.max_handshake_bytes (huge certificate chains or extensions): "
    "its content was not inspected.")
TLS_RULES = {"malformed_record": "otids.anomaly.tls.malformed", "malformed_handshake": "otids.anomaly.tls.malformed",
             "handshake_too_large": "otids.anomaly.tls.handshake_too_large"}
OPCUA_MALFORMED = frozenset(("malformed_message", "malformed_body", "depth_limit", "unknown_service",
                             "request_from_server", "response_from_client", "malformed_identity_token",
                             "service_mismatch", "request_id_mismatch", "buffer_size_below_minimum"))
OPCUA_CHUNK = frozenset(("chunk_cap_hit", "chunk_limit_exceeded"))
OPCUA_SEQUENCE = frozenset(("sequence_gap", "sequence_replay"))

NOTICE_RULES = {"stream_buffer_cap": "otids.anomaly.flow.stream_buffer_cap",
                "flow_table_full": "otids.anomaly.flow.table_full",
                "ip_fragment_overlap": "otids.anomaly.ip.fragment_overlap",
                "memory_cap": "otids.anomaly.sensor.memory_cap",
                "talker_table_full": "otids.anomaly.sensor.talker_table_full",
                "session_error": "otids.anomaly.sensor.parser_error",
                "sustained_garbage": "otids.anomaly.flow.sustained_garbage",
                "ip_fragment_too_many": "otids.anomaly.ip.fragment_flood",
                "ip_fragment_table_full": "otids.anomaly.ip.fragment_flood"}


class _Limiter:
    """First alert per key at once; later ones within `window` counted and reported once it closes."""

    __slots__ = ("start", "suppressed", "last_event")

    def __init__(self, ts):
        self.start = ts
        self.suppressed = 0
        self.last_event = None


class AnomalyDetector:
    def __init__(self, cfg: AnomalyConfig):
        self.cfg = cfg
        self.realert = cfg.realert_after * NS
        self.limiters: dict[tuple, _Limiter] = {}
        self.exc: dict[tuple, list] = {}  # (client, server) -> [window start, transactions, exceptions]
        self.exc_window = cfg.exception_flood_window * NS
        self.unans: dict[tuple, deque] = {}

    # ------------------------------------------------------------------ events
    def on_event(self, ev):
        t = type(ev)
        if t is ModbusTransaction:
            return self._modbus(ev)
        if t is MqttExchange:
            return self._named(ev, MQTT_RULES, "MQTT") if ev.anomalies else None
        if t is TlsHandshake:
            return self._named(ev, TLS_RULES, "TLS") if ev.anomalies else None
        if type(ev) is OpcuaEvent:
            return self._opcua(ev) if ev.anomalies else None
        if type(ev) is FlowNotice:
            rid = NOTICE_RULES.get(ev.action)
            if rid:
                return self._fire(rid, ev, ev.ts, f"{RULES[rid].name}: {ev.details}")
        return None

    def _modbus(self, ev: ModbusTransaction):
        out = None
        an = ev.anomalies
        if an:
            bad = [a for a in an if a in MALFORMED]
            if bad:
                out = self._fire("otids.anomaly.modbus.malformed", ev, ev.ts,
                                 f"malformed Modbus {ev.function} from {ev.flow.client_ip} to {ev.flow.server_ip}: "
                                 f"{', '.join(bad)}", extra=("malformed", tuple(bad)))
            if "unsolicited_response" in an:
                r = self._fire("otids.anomaly.modbus.unsolicited_response", ev, ev.response_ts or ev.ts,
                               f"response to transaction {ev.transaction_id} ({ev.function}) from "
                               f"{ev.flow.server_ip} with no matching request")
                out = (out or []) + (r or [])
            if "unanswered_request" in an:
                r = self._flood(self.unans, ev, self.cfg.unanswered_flood_count, self.cfg.unanswered_flood_window,
                                "otids.anomaly.modbus.unanswered_flood", "requests without response")
                out = (out or []) + (r or [])
        # Exception share per (master, slave) in tumbling windows: one dict update per transaction.
        f = ev.flow
        key = (f.client_ip, f.server_ip)
        w = self.exc.get(key)
        ts = ev.ts
        if w is None or ts - w[0] > self.exc_window:
            if w is None and len(self.exc) >= MAX_KEYS:
                self.exc.pop(next(iter(self.exc)))
            w = self.exc[key] = [ts, 0, 0]
        w[1] += 1
        if ev.exception_code is not None:
            w[2] += 1
            cfg = self.cfg
            if w[2] >= cfg.exception_flood_count and w[2] >= cfg.exception_flood_ratio * w[1]:
                n, total = w[2], w[1]
                self.exc[key] = [ts, 0, 0]
                r = self._fire("otids.anomaly.modbus.exception_flood", ev, ts,
                               f"{n} exception responses in {total} transactions from {f.server_ip} to "
                               f"{f.client_ip} within {cfg.exception_flood_window} s", count=n)
                if r:
                    out = (out or []) + r
        return out

    def _named(self, ev, rules: dict, proto: str):
        """One alert per anomaly name that has a rule (MQTT and TLS: the names are the rules)."""
        out = None
        f = ev.flow
        what = "/".join(ev.types) if type(ev) is MqttExchange else "handshake"
        for name in ev.anomalies:
            rid = rules.get(name)
            if rid is None:
                continue
            r = self._fire(rid, ev, ev.ts, f"{proto} {name} in {what} between client {f.client_ip}:{f.client_port} "
                                            f"and server {f.server_ip}:{f.server_port}")
            if r:
                out = (out or []) + r
        return out
    def _opcua(self, ev: OpcuaEvent):
        out: list = []
        an = ev.anomalies
        f = ev.flow
        pair = f"{f.client_ip} to {f.server_ip}"
        checks = (
            (OPCUA_MALFORMED, "otids.anomaly.opcua.malformed", "malformed OPC UA {svc} from " + pair),
            (OPCUA_CHUNK, "otids.anomaly.opcua.chunk_cap", "OPC UA {svc} message over the chunk limits, " + pair),
            (OPCUA_SEQUENCE, "otids.anomaly.opcua.sequence", "OPC UA sequence number anomaly on channel "
                                                             f"{ev.secure_channel_id}, " + pair),
            # thumbprint_mismatch is alerted by the auth detector (otids.auth.opcua.thumbprint_mismatch),
            # which adds the certificate and both thumbprints: one finding, one alert.
            (frozenset(("unsolicited_response",)), "otids.anomaly.opcua.unsolicited_response",
             "OPC UA {svc} response with no matching request, " + pair),
        )
        for names, rid, text in checks:
            hit = [a for a in an if a in names]
            if hit:
                r = self._fire(rid, ev, ev.ts, text.format(svc=ev.service) + f": {', '.join(hit)}")
                if r:
                    out += r
        if "unanswered_request" in an and ev.service != "Publish":
            r = self._flood(self.unans, ev, self.cfg.unanswered_flood_count, self.cfg.unanswered_flood_window,
                            "otids.anomaly.opcua.unanswered_flood", "OPC UA requests without response")
            if r:
                out += r
        return out or None

    def _flood(self, table: dict, ev, count: int, window: int, rid: str, what: str):
        f = ev.flow
        key = (rid, f.client_ip, f.server_ip)
        q = table.get(key)
        if q is None:
            if len(table) >= MAX_KEYS:
                table.pop(next(iter(table)))
            q = table[key] = deque()
        ts = ev.ts
        q.append(ts)
        lo = ts - window * NS
        while q and q[0] < lo:
            q.popleft()
        if len(q) >= count:
            n = len(q)
            q.clear()
            return self._fire(rid, ev, ts, f"{n} {what} from {f.client_ip} to {f.server_ip} within {window} s",
                              count=n)
        return None

    # ------------------------------------------------------------------ alerting with repeat counts
    def _fire(self, rid: str, ev, ts: int, reason: str, count: int = 1, extra=None):
        flow = getattr(ev, "flow", None)
        key = (rid, flow.client_ip, flow.server_ip) if flow is not None else (rid,)
        lim = self.limiters.get(key)
        out = []
        if lim is not None and ts - lim.start < self.realert:
            lim.suppressed += count
            lim.last_event = ev
            return None
        if lim is not None and lim.suppressed:
            out.append(self._repeat(rid, lim, ts))
        if lim is None and len(self.limiters) >= MAX_KEYS:
            old = next(iter(self.limiters))
            ol = self.limiters.pop(old)
            if ol.suppressed:
                out.append(self._repeat(old[0], ol, ts))
        self.limiters[key] = _Limiter(ts)
        out.append(self._alert(rid, ev, ts, reason, count))
        return out

    def _alert(self, rid, ev, ts, reason, count):
        r = RULES[rid]
        proto = getattr(ev, "protocol", None)
        return Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description, severity=r.severity,
                     reason=reason, source="anomaly", techniques=techniques(*r.attack), event=ev,
                     protocol=proto if isinstance(proto, str) else None, count=count)

    def _repeat(self, rid, lim: _Limiter, ts):
        r = RULES[rid]
        n = lim.suppressed
        lim.suppressed = 0
        return self._alert(rid, lim.last_event, ts,
                           f"{r.name}: {n} more occurrence(s) within {self.cfg.realert_after} s of the last alert",
                           n)

    def flush(self, ts: int):
        out = []
        for key, lim in self.limiters.items():
            if lim.suppressed:
                out.append(self._repeat(key[0], lim, ts))
        return out
