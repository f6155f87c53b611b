"""MQTT anomaly catalogue: one alert per anomaly name on an exchange, named as Suricata's app-layer events are
(rules/mqtt-events.rules), so `app-layer-event:mqtt.<name>` and otids.anomaly.mqtt.<name> agree. Read by
ids.detect.anomaly.
"""
from __future__ import annotations

from ...detect.api import RuleInfo
from ..spec import AnomalyCatalogue

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
    ("too_many_entries", "MQTT packet with too many topic filters or user properties", "low",
     "A SUBSCRIBE or UNSUBSCRIBE carried more than 1,024 topic filters, or a packet more than 1,024 user "
     "properties: the first 1,024 were kept, the rest not inspected. Clients send a few at a time; thousands "
     "in one packet scan the broker's topic tree or try to exhaust the broker (or the sensor).", ("T0814",)),
)

RULES = tuple(RuleInfo(f"otids.anomaly.mqtt.{n}", title, sev, desc, att) for n, title, sev, desc, att in _MQTT)
NAMED = {n: f"otids.anomaly.mqtt.{n}" for n, *_ in _MQTT}

ANOMALIES = AnomalyCatalogue(title="MQTT", rules=RULES, known=frozenset(NAMED), named=NAMED,
                             what=lambda ev: "/".join(ev.types))
