"""MQTT typed records: one record per control packet (Mqtt<Type>), grouped into one `MqttExchange` per
exchange (dataset `otids.mqtt`). `to_doc()` hands the ECS rendering to ecs.py (fields.yml beside this file).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ...events import FlowContext
from . import ecs as _ecs

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
    decoded: Any = None  # a Sparkplug NDEATH will, decoded (ids.protocols.mqtt.sparkplug)

    doc_kind = "connect"  # which renderer of ecs.py writes it


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

    doc_kind = "connack"  # which renderer of ecs.py writes it


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
    decoded: Any = None  # SparkplugMessage / PubSubMessage (ids.protocols.mqtt.sparkplug, .pubsub)

    doc_kind = "publish"  # which renderer of ecs.py writes it


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

    doc_kind = "ack"  # which renderer of ecs.py writes it


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

    doc_kind = "subscribe"  # which renderer of ecs.py writes it


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

    doc_kind = "suback"  # which renderer of ecs.py writes it


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

    doc_kind = "unsubscribe"  # which renderer of ecs.py writes it


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

    doc_kind = "unsuback"  # which renderer of ecs.py writes it


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

    doc_kind = "disconnect"  # which renderer of ecs.py writes it


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

    doc_kind = "bare"  # which renderer of ecs.py writes it


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
        return _ecs.exchange_doc(self, include_secrets)
