"""MQTT session on crafted streams: framing (many packets per segment, one packet over many segments,
byte by byte), pairing by packet id per direction, Suricata's anomaly semantics, v5 topic aliases and
enhanced authentication, the size cap, gaps, and every bound (max_pending, timeout)."""
from __future__ import annotations

import struct

from ids.flow.context import SessionContext
from ids.config import Config
from ids.protocols.mqtt.config import MqttConfig
from ids.events import FlowContext
from ids.protocols.mqtt.session import MqttSession

NS = 1_000_000_000


class _Flow:
    def __init__(self):
        self.context = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 1883, None, None, False)
        self.server_port = 1883


class _Table:
    def __init__(self, **mqtt):
        self.config = Config().replace(mqtt=MqttConfig(**mqtt))
        self.events = []
        self.detached = []
        self.truncations = []
        self.emit = self.events.append

    def detach(self, flow, ts, reason):
        self.detached.append(reason)

    def truncated(self, flow, ts, protocol, nbytes, to_server):
        self.truncations.append((protocol, nbytes, to_server))


def session(**mqtt):
    t = _Table(**mqtt)
    return MqttSession(SessionContext(t, _Flow())), t


def pkt(b0: int, body: bytes) -> bytes:
    n, enc = len(body), bytearray()
    while True:
        d, n = n & 0x7F, n >> 7
        enc.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes([b0]) + bytes(enc) + body


def s(x: str) -> bytes:
    return struct.pack(">H", len(x)) + x.encode()


def connect(v=4, cid="c1", props=b"\x00") -> bytes:
    return pkt(0x10, s("MQTT") + bytes([v, 0x02]) + b"\x00\x3c" + (props if v == 5 else b"") + s(cid))


def connack(v=4, rc=0) -> bytes:
    return pkt(0x20, bytes([0, rc]) + (b"\x00" if v == 5 else b""))


def publish(topic="t", payload=b"x", qos=0, mid=1, v=4, props=b"\x00", flags=0) -> bytes:
    body = s(topic) + (struct.pack(">H", mid) if qos else b"") + (props if v == 5 else b"") + payload
    return pkt(0x30 | qos << 1 | flags, body)


def ack(t: int, mid: int) -> bytes:
    return pkt(t << 4 | (2 if t == 6 else 0), struct.pack(">H", mid))


def up(sess, data, ts=1):
    sess.data(True, data, ts)


def down(sess, data, ts=1):
    sess.data(False, data, ts)


def docs(t):
    return [e.to_doc() for e in t.events]


def test_many_packets_in_one_segment_and_one_packet_byte_by_byte():
    sess, t = session()
    up(sess, connect())
    down(sess, connack())
    burst = b"".join(publish(payload=b"%02d" % i) for i in range(40))  # mosquitto packs like this
    down(sess, burst)
    assert [e.message("publish").payload for e in t.events[1:]] == [b"%02d" % i for i in range(40)]
    big = publish(topic="a/b", payload=b"Z" * 300, qos=1, mid=7)  # two-byte remaining length
    for i in range(len(big)):
        up(sess, big[i:i + 1], ts=10 + i)
    assert len(t.events) == 41  # waiting for its PUBACK
    down(sess, ack(4, 7), ts=1000)
    ex = t.events[-1]
    assert ex.types == ["publish", "puback"] and ex.status == "complete" and ex.anomalies == ()
    # a packet's time is that of the segment that completed it (as Suricata and Zeek do)
    assert ex.message("publish").payload_length == 300 and ex.ts == 10 + len(big) - 1


def test_qos2_flow_and_packet_ids_are_per_direction():
    sess, t = session()
    up(sess, connect())
    down(sess, connack())
    up(sess, publish(qos=2, mid=5, payload=b"client"))
    down(sess, publish(qos=2, mid=5, payload=b"broker"))  # same id, other direction: another exchange
    down(sess, ack(5, 5))  # PUBREC for the client's publish
    up(sess, ack(5, 5))  # PUBREC for the broker's
    up(sess, ack(6, 5))  # PUBREL of the client's publish
    down(sess, ack(6, 5))
    down(sess, ack(7, 5))  # PUBCOMP of the client's publish
    up(sess, ack(7, 5))
    a, b = t.events[1], t.events[2]
    assert a.message("publish").payload == b"client" and b.message("publish").payload == b"broker"
    for ex in (a, b):
        assert ex.types == ["publish", "pubrec", "pubrel", "pubcomp"] and ex.status == "complete"
        assert ex.anomalies == ()


def test_suricata_anomalies_on_their_own_packets():
    sess, t = session()
    down(sess, connack())  # no CONNECT seen
    up(sess, publish())  # before a completed CONNECT/CONNACK
    assert t.events[0].anomalies == ("missing_connect",) and t.events[0].status == "unsolicited"
    assert t.events[1].anomalies == ("unintroduced_message",)
    up(sess, connect())
    down(sess, connack())
    up(sess, connect())  # connected already
    down(sess, connack())
    assert t.events[-1].anomalies == ("double_connect",) and t.events[-1].types == ["connect", "connack"]
    down(sess, ack(4, 9))
    down(sess, pkt(0x90, b"\x00\x09\x00"))
    down(sess, pkt(0xB0, b"\x00\x09"))
    assert [e.anomalies for e in t.events[-3:]] == [("missing_publish",), ("missing_subscribe",),
                                                    ("missing_unsubscribe",)]
    up(sess, publish(flags=0, qos=3))  # QoS bits 11
    assert "invalid_qos_level" in t.events[-1].anomalies
    up(sess, pkt(0x00, b"\x00"))
    assert t.events[-1].anomalies == ("unassigned_msg_type",) and t.events[-1].types == ["unassigned"]
    up(sess, pkt(0xF0, b""))  # AUTH is reserved in 3.1.1
    assert t.events[-1].anomalies == ("unassigned_msg_type",)
    up(sess, pkt(0x82, b"\x00\x01" + s("a")))  # SUBSCRIBE without options byte
    sess.close(2)
    assert "malformed_traffic" in t.events[-1].anomalies and t.events[-1].status == "malformed"
    up(sess, pkt(0x80, b"\x00\x02" + s("a") + b"\x00"))  # SUBSCRIBE flags must be 0010
    sess.close(3)
    assert "invalid_flags" in t.events[-1].anomalies


def test_unintroduced_publish_still_pairs_with_its_ack():
    """Suricata starts a separate transaction (and a second anomaly) for the PUBACK of a PUBLISH sent
    before CONNACK; the packet id still pairs them, so here it is one exchange with the anomaly once."""
    sess, t = session()
    up(sess, publish(qos=1, mid=3))
    down(sess, ack(4, 3))
    assert len(t.events) == 1
    assert t.events[0].types == ["publish", "puback"] and t.events[0].anomalies == ("unintroduced_message",)


def test_v5_topic_alias_and_enhanced_auth():
    sess, t = session()
    auth_props = b"\x08" + b"\x15" + s("SCRAM")  # authentication_method
    up(sess, connect(v=5, props=auth_props))
    down(sess, pkt(0xF0, b"\x18" + b"\x06" + b"\x16" + s("xyz")))  # AUTH continue, authentication_data
    up(sess, pkt(0xF0, b"\x18\x00"))
    down(sess, connack(v=5))
    ex = t.events[0]
    assert ex.types == ["connect", "auth", "connack"] and ex.anomalies == ()
    d = ex.to_doc()
    assert d["mqtt"]["auth"]["reason"] == "continue_authentication"
    assert "authentication_data" not in d["mqtt"]["auth"].get("properties", {})  # a secret
    assert ex.to_doc(include_secrets=True)["mqtt"]["auth"]["properties"]["authentication_data"] == "xyz"
    up(sess, publish(topic="plant/a", v=5, props=b"\x03\x23\x00\x07"))  # define alias 7
    up(sess, publish(topic="", v=5, props=b"\x03\x23\x00\x07"))  # alias only
    up(sess, publish(topic="", v=5, props=b"\x03\x23\x00\x08"))  # never defined
    a, b, c = t.events[1:]
    assert a.message("publish").topic == "plant/a" and not a.message("publish").topic_from_alias
    assert b.message("publish").topic == "plant/a" and b.to_doc()["mqtt"]["publish"]["topic_from_alias"]
    assert c.message("publish").topic == "" and c.anomalies == ("unknown_topic_alias",)
    down(sess, publish(topic="", v=5, props=b"\x03\x23\x00\x07"))  # aliases are per direction
    assert t.events[-1].anomalies == ("unknown_topic_alias",)


def test_size_cap_parses_the_head_and_skips_the_rest():
    sess, t = session(max_message_length=50)
    up(sess, connect())
    down(sess, connack())
    big = publish(topic="foo", payload=b"X" * 100_000, qos=1, mid=2)
    for i in range(0, len(big), 1460):  # never buffers more than the cap
        up(sess, big[i:i + 1460])
        assert sum(len(b) for b in sess.buf[0] or ()) <= 50 + 5
    down(sess, ack(4, 2))
    ex = t.events[-1]
    p = ex.to_doc()["mqtt"]["publish"]
    assert ex.types == ["publish", "puback"] and ex.status == "complete"
    assert p["truncated"] is True and p["skipped_length"] == len(big) and p["topic"] == "foo"
    assert p["message_id"] == 2 and p["payload_length"] == 100_000 and "message" not in p
    assert "message_too_large" in ex.anomalies
    up(sess, publish(topic="foo", payload=b"Y" * 10))  # framing continues after the skip
    assert t.events[-1].message("publish").payload == b"Y" * 10
    up(sess, pkt(0x82, b"\x00\x03" + (s("f" * 60) + b"\x00")))  # a SUBSCRIBE over the cap
    assert t.events[-1].to_doc()["mqtt"]["subscribe"] == {"qos": 1, "retain": False, "dup": False,
                                                          "truncated": True, "skipped_length": 67}


def test_string_log_limit_on_payload_and_topics():
    sess, t = session(string_log_limit=10)
    up(sess, connect())
    down(sess, connack())
    up(sess, publish(payload=b"Z" * 100))
    assert t.events[-1].to_doc()["mqtt"]["publish"]["message"] == "Z" * 10 + "[truncated 90 additional bytes]"
    up(sess, pkt(0x82, b"\x00\x01" + s("topicX") + b"\x00" + s("topicY") + b"\x00" + s("topicZ") + b"\x00"))
    down(sess, pkt(0x90, b"\x00\x01\x00\x00\x00"))
    topics = [x["topic"] for x in t.events[-1].to_doc()["mqtt"]["subscribe"]["topics"]]
    assert topics == ["topicX", "topi[truncated 2 additional bytes]"]  # suricata-verify mqtt-limit-log-3
    assert len(t.events[-1].message("subscribe").topics) == 3  # the event keeps them all for detection


def test_max_pending_and_timeout_and_close_never_drop():
    sess, t = session(max_pending=3, exchange_timeout=10)
    up(sess, connect())
    down(sess, connack())
    for mid in range(1, 6):
        up(sess, publish(qos=1, mid=mid), ts=mid * NS)
    evicted = [e for e in t.events if "too_many_transactions" in e.anomalies]
    assert [e.message("publish").message_id for e in evicted] == [1, 2]
    assert all(e.status == "incomplete" for e in evicted)
    sess.expire(14 * NS)  # mid 3 is 11 s old
    assert t.events[-1].message("publish").message_id == 3 and t.events[-1].status == "incomplete"
    up(sess, publish(qos=1, mid=4), ts=15 * NS)  # id reused before its PUBACK: the old one ends
    assert t.events[-1].message("publish").message_id == 4 and t.events[-1].status == "incomplete"
    up(sess, publish(qos=1, mid=9)[:5], ts=16 * NS)
    sess.close(20 * NS)
    ids = sorted(e.message("publish").message_id for e in t.events[-2:])
    assert ids == [4, 5] and all(e.status == "incomplete" for e in t.events[-2:])
    assert len(t.events) == 1 + 6 and t.truncations == [("mqtt", 5, True)]


def test_gap_inside_skipped_payload_is_harmless_and_other_gaps_resync():
    sess, t = session(max_message_length=20)
    up(sess, connect())
    down(sess, connack())
    big = publish(topic="t", payload=b"X" * 1000)
    up(sess, big[:100])
    sess.gap(True, 1, 500)  # lost bytes were to be skipped anyway
    up(sess, big[600:] + publish(topic="after"))
    assert t.events[-1].message("publish").topic == "after"
    up(sess, publish(topic="cut", payload=b"1234")[:4])
    sess.gap(True, 1, 7)
    up(sess, b"garbage that is not a packet boundary")  # dropped while hunting
    up(sess, publish(topic="again") + publish(topic="and"))  # a segment that frames exactly
    assert [e.message("publish").topic for e in t.events[-2:]] == ["again", "and"]
    assert not any(e.status == "malformed" for e in t.events)


def test_midstream_v5_connack_sets_the_version():
    sess, t = session()
    down(sess, pkt(0x20, b"\x00\x00\x03\x22\x00\x0a"))  # CONNACK with topic_alias_maximum: only v5
    up(sess, publish(topic="x", v=5, props=b"\x00", payload=b"p"))
    assert t.events[0].protocol_version == 5
    assert t.events[0].to_doc()["mqtt"]["connack"]["properties"] == {"topic_alias_maximum": 10}
    assert t.events[1].message("publish").payload == b"p"


def test_framing_error_before_any_packet_detaches_and_after_is_malformed():
    sess, t = session()
    up(sess, b"\x30\xff\xff\xff\xff\x01")
    assert t.detached and not t.events
    sess, t = session()
    up(sess, connect())
    up(sess, b"\x30\xff\xff\xff\xff\x01")
    assert not t.detached and t.events[-1].status == "malformed"
    assert t.events[-1].anomalies == ("malformed_traffic",)
