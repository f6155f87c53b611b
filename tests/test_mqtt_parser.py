"""MQTT packet parsers on hex bytes, at the edges: the largest valid value and the first invalid one
(MQTT 5.0 / 3.1.1 section numbers in the test names' docstrings)."""
from __future__ import annotations

import pytest

from ids.protocols.mqtt.messages import MqttConnect, MqttExchange, MqttPublish
from ids.protocols.mqtt import parser as P
from ids.protocols.mqtt.consts import MALFORMED_TRAFFIC, PROP_NAMES, PROP_TYPES, reason_name
from ids.protocols.mqtt.session import probe

H = bytes.fromhex


# ---------------------------------------------------------------------------------------------- varint
@pytest.mark.parametrize("raw,value,used", [
    ("00", 0, 1), ("7f", 127, 1), ("8001", 128, 2), ("ff7f", 16383, 2), ("808001", 16384, 3),
    ("ffff7f", 2_097_151, 3), ("80808001", 2_097_152, 4), ("ffffff7f", 268_435_455, 4),  # largest (1.5.5)
])
def test_varint_valid(raw, value, used):
    assert P.read_varint(H(raw), 0, len(H(raw))) == (value, used)


@pytest.mark.parametrize("raw", ["ffffff80", "ffffffff01", "80", "ff"])
def test_varint_invalid_or_short(raw):
    """A fifth byte (continuation bit on the fourth) is malformed; running out of bytes too."""
    with pytest.raises(P.FramingError):
        P.read_varint(H(raw), 0, len(H(raw)))


def test_fixed_header_needs_more_then_breaks_on_fifth_byte():
    assert P.fixed_header(H("30"), 0, 1) is None
    assert P.fixed_header(H("30ffff"), 0, 3) is None  # still plausible: wait
    assert P.fixed_header(H("30ffffff7f"), 0, 5) == (268_435_455, 5)
    with pytest.raises(P.FramingError):
        P.fixed_header(H("30ffffffff"), 0, 5)


# ---------------------------------------------------------------------------------------------- properties
def _prop_bytes(pid: int, kind: int) -> bytes:
    val = {0: b"\x07", 1: b"\x01\x02", 2: b"\x00\x00\x01\x00", 3: b"\x81\x01", 4: b"\x00\x02ab",
           5: b"\x00\x03\x00\xffz", 6: b"\x00\x01k\x00\x01v"}[kind]
    return bytes([pid]) + val


def test_every_property_id_parses_by_its_name():
    body = b"".join(_prop_bytes(pid, kind) for pid, kind in PROP_TYPES.items())
    n = len(body)
    block = (bytes([n]) if n < 128 else bytes([n & 0x7F | 0x80, n >> 7])) + body
    props, end, ok = P.parse_properties(block, 0, len(block))
    assert ok and end == len(block)
    for pid, kind in PROP_TYPES.items():
        if kind == 6:
            assert props["k"] == "v"  # user property under its own key (Suricata's EVE)
        else:
            assert PROP_NAMES[pid] in props
    assert props["subscription_identifier"] == 129  # variable byte integer 0x81 0x01
    assert props["correlation_data"] == b"\x00\xffz"  # binary stays bytes on the record


def test_property_block_exactly_fits_and_one_byte_over():
    block = H("03") + H("2100") + b"\x14"  # receive_maximum 20: three bytes
    props, end, ok = P.parse_properties(block, 0, len(block))
    assert ok and props == {"receive_maximum": 20} and end == 4
    with pytest.raises(P.FramingError):  # the block claims one byte more than there is
        P.parse_properties(H("04") + H("210014"), 0, 4)


def test_unknown_property_spoils_only_the_rest_of_the_block():
    block = H("06") + H("210014") + H("7f0000")  # receive_maximum, then id 127 (unassigned)
    props, end, ok = P.parse_properties(block + b"tail", 0, len(block) + 4)
    assert not ok and props == {"receive_maximum": 20} and end == len(block)


def test_repeated_user_property_keeps_every_value():
    pair = H("2600016b00017626") + H("00016b000177")
    block = bytes([len(pair)]) + pair
    props, _, ok = P.parse_properties(block, 0, len(block))
    assert ok and props == {"k": ["v", "w"]}


# ---------------------------------------------------------------------------------------------- CONNECT
CONNECT_311 = H("102b00044d51545404c2003c00136d79766f69636569736d7970617373706f7274000475736572000470617373")


def _connect(raw: bytes, limit=1024):
    hdr, p = P.fixed_header(raw, 0, len(raw))
    return P.parse_connect(raw, p, p + hdr, 1, True, raw[0] & 15, len(raw), limit)


def test_connect_311():
    c, an, level = _connect(CONNECT_311)
    assert an == () and level == 4
    assert (c.protocol_string, c.client_id, c.username, c.password, c.keepalive) == \
        ("MQTT", "myvoiceismypassport", "user", b"pass", 60)


def test_connect_mqisdp_31():
    raw = H("102d00064d514973647003c2003c00136d79766f69636569736d7970617373706f7274000475736572000470617373")
    c, an, level = _connect(raw)
    assert an == () and level == 3 and c.protocol_string == "MQIsdp"


def test_connect_one_byte_short_is_malformed_but_keeps_what_it_read():
    raw = CONNECT_311[:-1]
    raw = bytes([raw[0], raw[1] - 1]) + raw[2:]
    c, an, level = _connect(raw)
    assert MALFORMED_TRAFFIC in an and c.client_id == "myvoiceismypassport" and c.username == "user"
    assert c.password is None and level == 4


def test_connect_excessive_property_length():
    """suricata-verify mqtt5-excessiveproplen: property length 4351 in a 47-byte packet."""
    raw = H("102f00044d51545405c2003cff21001400136d79766f69636569736d7970617373706f7274000475736572000470617373")
    c, an, level = _connect(raw)
    assert an == (MALFORMED_TRAFFIC,) and level == 5 and c.keepalive == 60 and c.client_id is None


def test_connect_reserved_flag_and_unknown_protocol():
    raw = bytearray(CONNECT_311)
    raw[9] |= 1  # reserved connect flag (3.1.2.3)
    c, an, _ = _connect(bytes(raw))
    assert MALFORMED_TRAFFIC in an
    raw = bytearray(CONNECT_311)
    raw[8] = 9  # protocol level 9
    _, an, level = _connect(bytes(raw))
    assert "unknown_protocol" in an and level == 0


def test_will_message_kept_up_to_the_log_limit():
    # v3.1.1 CONNECT, will flag, will topic "w", will payload 5 bytes "hello"
    body = H("00044d5154540406003c") + H("000163") + H("000177") + H("000568656c6c6f")
    raw = bytes([0x10, len(body)]) + body
    c5, an, _ = _connect(raw, limit=5)
    assert an == () and c5.will_message == b"hello" and c5.will_payload_length == 5
    c4, _, _ = _connect(raw, limit=4)
    assert c4.will_message == b"hell"
    from ids.protocols.mqtt.ecs import _connect_doc
    assert _connect_doc(c4, 4, 4, False)["will"]["message"] == "hell[truncated 1 additional bytes]"
    assert _connect_doc(c5, 4, 5, False)["will"]["message"] == "hello"


# ---------------------------------------------------------------------------------------------- PUBLISH
def _publish(raw: bytes, version=4, limit=1024):
    hdr, p = P.fixed_header(raw, 0, len(raw))
    return P.parse_publish(raw, p, p + hdr, p + hdr, 1, True, raw[0] & 15, len(raw), version, limit)


def test_publish_qos0_qos1_and_invalid_qos():
    m, an = _publish(H("30180006746f70696358626161626161626c61636b7368656570"))
    assert an == () and (m.topic, m.message_id, m.payload, m.payload_length) == \
        ("topicX", None, b"baabaablacksheep", 16)
    m, an = _publish(H("321a0006746f706963580001626161626161626c61636b7368656570"))
    assert an == () and m.message_id == 1 and m.qos == 1
    m, an = _publish(H("361a0006746f706963580001626161626161626c61636b7368656570"))
    assert m.qos == 3 and m.message_id == 1  # the parser reads; the session names invalid_qos_level
    assert P.flag_anomalies(3, 6) == ("invalid_qos_level",)


def test_publish_topic_length_one_past_the_packet():
    m, an = _publish(H("3008" + "0007" + "746f706963"[:10] + "58"))  # topic claims 7, 6 there
    assert an == (MALFORMED_TRAFFIC,) and m.topic is None


def test_publish_payload_limit_edges():
    raw = H("3009") + H("000174") + b"abcdef"  # topic "t", 6-byte payload
    m, _ = _publish(raw, limit=6)
    assert m.payload == b"abcdef"
    m, _ = _publish(raw, limit=5)
    assert m.payload == b"abcde" and m.payload_length == 6


def test_publish_head_only_is_not_malformed():
    """Over mqtt.max_message_length only the head is parsed; running out of bytes there is expected."""
    raw = H("32ff01") + H("0003666f6f0002") + b"X" * 40
    m, an = P.parse_publish(raw, 3, 6, 3 + 255, 1, True, 2, 258, 4, 1024)
    assert an == () and m.truncated and m.topic is None
    m, an = P.parse_publish(raw, 3, 20, 3 + 255, 1, True, 2, 258, 4, 1024)
    assert an == () and m.truncated and m.topic == "foo" and m.message_id == 2 and m.payload is None
    assert m.payload_length == 255 - 7


# ---------------------------------------------------------------------------------------------- acks, subscribe
@pytest.mark.parametrize("body,rc,props,bad", [
    ("0001", 0, None, False),  # v5, remaining length 2: reason 0 omitted (3.4.2.1)
    ("000110", 16, None, False),  # reason only
    ("00011000", 16, None, False),  # reason + empty properties
    ("0001100300011f", 16, None, True),  # property block longer than the packet
])
def test_ack_v5_lengths(body, rc, props, bad):
    raw = H(body)
    if bad:
        m, an = P.parse_ack(4, raw, 0, len(raw), 1, False, 0, len(raw) + 2, 5)
        assert an == (MALFORMED_TRAFFIC,)
        return
    m, an = P.parse_ack(4, raw, 0, len(raw), 1, False, 0, len(raw) + 2, 5)
    assert an == () and m.message_id == 1 and m.reason_code == rc and m.properties == props


def test_ack_v3_has_no_reason_and_rejects_extra_bytes():
    m, an = P.parse_ack(4, H("0001"), 0, 2, 1, False, 0, 4, 4)
    assert an == () and m.reason_code is None
    _, an = P.parse_ack(4, H("000100"), 0, 3, 1, False, 0, 5, 4)
    assert an == (MALFORMED_TRAFFIC,)


def test_subscribe_v5_options_and_empty_subscribe():
    raw = H("000100") + H("0001") + b"a" + bytes([0b0010_1101])  # qos 1, no_local, rap, handling 2
    m, an = P.parse_subscribe(raw, 0, len(raw), 1, True, 2, len(raw) + 2, 5)
    assert an == () and m.topics == (("a", 0b0010_1101),)
    from ids.protocols.mqtt.ecs import _subscribe_doc
    t = _subscribe_doc(m, 5, 1024, False)["topics"][0]
    assert t == {"topic": "a", "qos": 1, "no_local": True, "retain_as_published": True, "retain_handling": 2}
    m, an = P.parse_subscribe(H("0001"), 0, 2, 1, True, 2, 4, 4)
    assert an == (MALFORMED_TRAFFIC,)  # at least one filter (3.8.3)


def test_disconnect_reason_code_is_the_byte_sent():
    """Suricata 7's parse_disconnect reports 0 for a one-byte DISCONNECT body (remaining length 1); the
    byte is the reason code (5.0 section 3.14.2.1): e000104 means 'disconnect with will message'."""
    m, an = P.parse_disconnect(14, H("04"), 0, 1, 1, True, 0, 3, 5)
    assert an == () and m.reason_code == 4
    assert reason_name(4, 14, 5) == "disconnect_with_will_message"
    m, an = P.parse_disconnect(14, b"", 0, 0, 1, True, 0, 2, 5)
    assert m.reason_code == 0 and reason_name(0, 14, 5) == "normal_disconnection"
    m, an = P.parse_disconnect(14, H("00"), 0, 1, 1, True, 0, 3, 4)
    assert an == (MALFORMED_TRAFFIC,)  # 3.1.1 DISCONNECT has no body


def test_reason_names_have_unknown_fallback():
    assert reason_name(0, 2, 4) == "accepted" and reason_name(5, 2, 4) == "not_authorized"
    assert reason_name(0x86, 2, 5) == "bad_username_or_password"
    assert reason_name(6, 2, 4) == "unknown-6" and reason_name(0x7F, 4, 5) == "unknown-127"


# ---------------------------------------------------------------------------------------------- probe
@pytest.mark.parametrize("raw,to_server,want", [
    (CONNECT_311, True, 1),
    (CONNECT_311[:8], True, -1),
    (CONNECT_311[:9], True, 1),
    (H("102d00064d514973647003c2"), True, 1),
    (H("101000044d51545409"), True, 0),  # level 9
    (H("1010000448545450"), True, 0),  # not MQTT
    (H("20020000"), False, 1),
    (H("2002"), False, -1),
    (H("20020009"), False, 0),
    (H("200600000322000a"), False, 1),  # v5 CONNACK with properties
    (H("474554202f20"), True, 0),  # HTTP
    # mid-stream: a chain of whole packets with a printable topic, nothing thinner
    (H("d000") + H("320a0004742f7878") + H("0001") + b"{}", False, 1),
    (H("c000"), True, -1),  # a PINGREQ alone: wait
    (H("c000c000"), True, -1),
    (H("c001"), True, 0),  # PINGREQ has no body
    (H("3005000274ff00"), True, 0),  # topic not printable UTF-8
    (H("3005000274"), True, -1),  # PUBLISH not whole yet
    (H("8206000100017800"), True, 1),  # SUBSCRIBE "x"
    (H("8006000100017800"), True, 0),  # SUBSCRIBE with flags 0000
    (H("3209000474"), True, -1),
    (H("16030100"), True, 0),  # TLS
])
def test_probe(raw, to_server, want):
    assert probe(raw, to_server) == want


# ---------------------------------------------------------------------------------------------- secrets
def test_password_only_with_include_secrets():
    c, _, _ = _connect(CONNECT_311)
    from ids.events import FlowContext
    ctx = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 1883, None, None, False)
    ex = MqttExchange(1, ctx, 4, (c,), "incomplete", (), 1024)
    assert "password" not in ex.to_doc()["mqtt"]["connect"]
    assert ex.to_doc()["mqtt"]["connect"]["flags"]["password"] is True
    assert ex.to_doc(include_secrets=True)["mqtt"]["connect"]["password"] == "pass"
    assert "'pass'" not in str(ex.to_doc()) and "b'pass'" not in str(ex.to_doc())
    assert isinstance(c, MqttConnect) and not isinstance(c, MqttPublish)
