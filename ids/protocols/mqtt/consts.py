"""MQTT constants (IBM MQIsdp 3.1, OASIS MQTT 3.1.1 and 5.0), with the specification section each comes
from. Every table has an explicit `unknown-N` fallback so an unknown value is named, never dropped.

Anomaly names are Suricata's app-layer event names (rust/src/mqtt/mqtt.rs, rules/mqtt-events.rules) so
that a Suricata rule `app-layer-event:mqtt.<name>` maps onto `otids.anomalies` one to one; the few names
Suricata has no event for are marked as ours.
"""
from __future__ import annotations

from enum import IntEnum


class PacketType(IntEnum):
    """Control packet types (5.0 section 2.1.2; 3.1.1 section 2.2.1). 15 is AUTH in 5.0, reserved before."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


#: type code -> lowercase name, the key of the message's sub-object in the document (Suricata EVE keys)
TYPE_NAMES = ("unassigned-0",) + tuple(t.name.lower() for t in PacketType)

#: Fixed-header flag nibble each type must carry (5.0 section 2.1.3; 3.1.1 section 2.2.2). PUBLISH is free.
REQUIRED_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}

#: Protocol names and levels of CONNECT (3.1: "MQIsdp"/3; 3.1.1: "MQTT"/4; 5.0: "MQTT"/5).
PROTOCOL_NAMES = {b"MQIsdp": 3, b"MQTT": 4}
PROTOCOL_LEVELS = {3: "3.1", 4: "3.1.1", 5: "5.0"}


class ConnectFlags:
    """CONNECT flag bits (5.0 section 3.1.2.3)."""

    RESERVED = 0x01
    CLEAN_START = 0x02
    WILL = 0x04
    WILL_QOS = 0x18  # two bits, shifted by 3
    WILL_RETAIN = 0x20
    PASSWORD = 0x40
    USERNAME = 0x80


#: CONNACK return codes of 3.1/3.1.1 (3.1.1 section 3.2.2.3).
CONNACK_V3 = {0: "accepted", 1: "unacceptable_protocol_version", 2: "identifier_rejected",
              3: "server_unavailable", 4: "bad_username_or_password", 5: "not_authorized"}

#: Reason codes of 5.0 (section 2.4). 0x00 is named after the packet it is in (see reason_name).
REASON_V5 = {
    0x00: "success", 0x01: "granted_qos_1", 0x02: "granted_qos_2", 0x04: "disconnect_with_will_message",
    0x10: "no_matching_subscribers", 0x11: "no_subscription_existed", 0x18: "continue_authentication",
    0x19: "re_authenticate", 0x80: "unspecified_error", 0x81: "malformed_packet", 0x82: "protocol_error",
    0x83: "implementation_specific_error", 0x84: "unsupported_protocol_version",
    0x85: "client_identifier_not_valid", 0x86: "bad_username_or_password", 0x87: "not_authorized",
    0x88: "server_unavailable", 0x89: "server_busy", 0x8A: "banned", 0x8B: "server_shutting_down",
    0x8C: "bad_authentication_method", 0x8D: "keep_alive_timeout", 0x8E: "session_taken_over",
    0x8F: "topic_filter_invalid", 0x90: "topic_name_invalid", 0x91: "packet_identifier_in_use",
    0x92: "packet_identifier_not_found", 0x93: "receive_maximum_exceeded", 0x94: "topic_alias_invalid",
    0x95: "packet_too_large", 0x96: "message_rate_too_high", 0x97: "quota_exceeded",
    0x98: "administrative_action", 0x99: "payload_format_invalid", 0x9A: "retain_not_supported",
    0x9B: "qos_not_supported", 0x9C: "use_another_server", 0x9D: "server_moved",
    0x9E: "shared_subscriptions_not_supported", 0x9F: "connection_rate_exceeded",
    0xA0: "maximum_connect_time", 0xA1: "subscription_identifiers_not_supported",
    0xA2: "wildcard_subscriptions_not_supported",
}
_ZERO = {14: "normal_disconnection", 9: "granted_qos_0"}


def reason_name(code: int, ptype: int, version: int) -> str:
    if ptype == PacketType.CONNACK and version != 5:
        return CONNACK_V3.get(code, f"unknown-{code}")
    if code == 0:
        return _ZERO.get(ptype, "success")
    if ptype == PacketType.SUBACK and version != 5:
        return "failure" if code == 0x80 else REASON_V5.get(code, f"unknown-{code}")
    return REASON_V5.get(code, f"unknown-{code}")


class Prop(IntEnum):
    """Property identifiers (5.0 section 2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 1
    MESSAGE_EXPIRY_INTERVAL = 2
    CONTENT_TYPE = 3
    RESPONSE_TOPIC = 8
    CORRELATION_DATA = 9
    SUBSCRIPTION_IDENTIFIER = 11
    SESSION_EXPIRY_INTERVAL = 17
    ASSIGNED_CLIENT_IDENTIFIER = 18
    SERVER_KEEP_ALIVE = 19
    AUTHENTICATION_METHOD = 21
    AUTHENTICATION_DATA = 22
    REQUEST_PROBLEM_INFORMATION = 23
    WILL_DELAY_INTERVAL = 24
    REQUEST_RESPONSE_INFORMATION = 25
    RESPONSE_INFORMATION = 26
    SERVER_REFERENCE = 28
    REASON_STRING = 31
    RECEIVE_MAXIMUM = 33
    TOPIC_ALIAS_MAXIMUM = 34
    TOPIC_ALIAS = 35
    MAXIMUM_QOS = 36
    RETAIN_AVAILABLE = 37
    USER_PROPERTY = 38
    MAXIMUM_PACKET_SIZE = 39
    WILDCARD_SUBSCRIPTION_AVAILABLE = 40
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 41
    SHARED_SUBSCRIPTION_AVAILABLE = 42


# Value encodings (section 1.5): byte, two/four byte integer, variable byte integer, UTF-8 string,
# binary data, string pair.
BYTE, U16, U32, VARINT, STR, BIN, PAIR = range(7)

PROP_TYPES = {
    1: BYTE, 2: U32, 3: STR, 8: STR, 9: BIN, 11: VARINT, 17: U32, 18: STR, 19: U16, 21: STR, 22: BIN,
    23: BYTE, 24: U32, 25: BYTE, 26: STR, 28: STR, 31: STR, 33: U16, 34: U16, 35: U16, 36: BYTE, 37: BYTE,
    38: PAIR, 39: U32, 40: BYTE, 41: BYTE, 42: BYTE,
}
#: id -> the key Suricata's EVE uses (mqtt_property.rs), which is the spec name in snake case
PROP_NAMES = {int(p): p.name.lower() for p in Prop}

#: Properties that carry secrets (enhanced authentication: SCRAM exchanges, tokens): kept on the event,
#: written to documents only with include_secrets.
SECRET_PROPS = frozenset(("authentication_data",))

#: Largest value a variable byte integer can hold in four bytes (section 1.5.5).
MAX_VARINT = 268_435_455

# Anomaly names (Suricata MQTTEvent, in snake case as in app-layer-event:mqtt.*).
MISSING_CONNECT = "missing_connect"
MISSING_PUBLISH = "missing_publish"
MISSING_SUBSCRIBE = "missing_subscribe"
MISSING_UNSUBSCRIBE = "missing_unsubscribe"
DOUBLE_CONNECT = "double_connect"
UNINTRODUCED_MESSAGE = "unintroduced_message"
INVALID_QOS_LEVEL = "invalid_qos_level"
MISSING_MSG_ID = "missing_msg_id"
UNASSIGNED_MSG_TYPE = "unassigned_msg_type"
TOO_MANY_TRANSACTIONS = "too_many_transactions"
MALFORMED_TRAFFIC = "malformed_traffic"
# Ours (Suricata has no event for these):
INVALID_FLAGS = "invalid_flags"  # fixed-header flags other than the spec requires (5.0 2.1.3)
UNKNOWN_PROTOCOL = "unknown_protocol"  # CONNECT with a protocol name/level that is neither 3.1, 3.1.1 nor 5.0
MESSAGE_TOO_LARGE = "message_too_large"  # over mqtt.max_message_length: only its head was parsed
UNKNOWN_TOPIC_ALIAS = "unknown_topic_alias"  # v5 PUBLISH with an alias never defined in this direction
TOO_MANY_ENTRIES = "too_many_entries"  # over 1,024 topic filters or user properties in a packet: the rest not kept

SURICATA_ANOMALIES = (MISSING_CONNECT, MISSING_PUBLISH, MISSING_SUBSCRIBE, MISSING_UNSUBSCRIBE, DOUBLE_CONNECT,
                      UNINTRODUCED_MESSAGE, INVALID_QOS_LEVEL, MISSING_MSG_ID, UNASSIGNED_MSG_TYPE,
                      TOO_MANY_TRANSACTIONS, MALFORMED_TRAFFIC)
