"""The OPC UA and MQTT feature-view adapters, unit level: typed events as the dissectors build them, with the
edges of each rule (Bad vs Uncertain status, reason code 0x7F vs 0x80, numbers vs text and NaN payloads)."""
from __future__ import annotations

import math

from ids.protocols.mqtt.ml import mqtt_view
from ids.protocols.opcua.ml import opcua_view
import ids.detect.ml.adapters  # noqa: F401  (registers each protocol's view)
from ids.detect.ml.view import ADAPTERS
from ids.events import FlowContext
from ids.protocols.mqtt.messages import (MqttAck, MqttBare, MqttConnack, MqttConnect, MqttExchange, MqttPublish,
                                       MqttSuback, MqttSubscribe)
from ids.protocols.opcua.messages import OpcuaEvent

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
UA = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 4840, None, None, False)
MQ = FlowContext(2, "tcp", "1:y", "10.0.0.3", 40001, None, "10.0.0.4", 1883, None, None, False)


def ua(service, req=None, resp=None, status=0, nodes=(), mt="MSG", anomalies=(), rts=T0 + 2_000_000, enc=False):
    return OpcuaEvent(T0, UA, mt, service, 1, 1, 4, 4, None, "None", enc, status,
                      None if status is None else "x", nodes, None, None, None, req, resp, None, anomalies,
                      rts if resp is not None else None)


def write_req(*items):
    return {"size": 120, "nodes_to_write": [{"node": n, "attribute": a, "type": "x", "value": v} for n, a, v in items]}


def test_adapters_registered_for_every_protocol_event():
    assert ADAPTERS[OpcuaEvent] is opcua_view and ADAPTERS[MqttExchange] is mqtt_view


# ---------------------------------------------------------------------------------------------- OPC UA

def test_opcua_write_numbers_booleans_and_what_is_left_out():
    req = write_req(("ns=2;s=SP", "Value", 60.5), ("ns=2;s=Motor", "Value", False), ("ns=2;s=Name", "Value", "x"),
                    ("ns=2;s=Bad", "Value", math.nan), ("ns=2;s=Arr", "Value", [1.0, 2.0]),
                    ("ns=2;s=SP", "DisplayName", 3))
    v = opcua_view(ua("Write", req, {"size": 64, "results": [{"status_code": 0}] * 6},
                      nodes=("ns=2;s=SP", "ns=2;s=Motor")))
    assert (v.protocol, v.client, v.server, v.operation) == ("opcua", "10.0.0.1", "10.0.0.2", "Write")
    assert v.is_write and not v.is_error and v.answered is True and v.request
    assert v.keys == ("ns=2;s=SP", "ns=2;s=Motor")
    assert v.writes == (("ns=2;s=SP", 60.5), ("ns=2;s=Motor", 0.0), ("ns=2;s=SP#DisplayName", 3.0))
    assert v.nbytes == 184 and v.latency_ns == 2_000_000 and not v.anomalous


def test_opcua_call_is_a_write_with_numeric_arguments_per_position():
    req = {"size": 96, "methods_to_call": [{"object": "ns=2;s=L", "method": "ns=2;s=L.Set",
                                            "arguments": [{"type": "Double", "value": 7.0},
                                                          {"type": "String", "value": "a"},
                                                          {"type": "Int32", "value": -3}]}]}
    v = opcua_view(ua("Call", req, {"size": 78, "results": [{"status_code": 0}]}, nodes=("ns=2;s=L.Set",)))
    assert v.is_write and v.keys == ("ns=2;s=L.Set",)
    assert v.writes == (("ns=2;s=L.Set#0", 7.0), ("ns=2;s=L.Set#2", -3.0))
    read = opcua_view(ua("Read", {"size": 90}, {"size": 80, "results": []}, nodes=("i=2259",)))
    assert not read.is_write and read.writes == ()


def test_opcua_errors_bad_not_uncertain():
    ok = {"size": 1, "results": [{"status_code": 0x408F0000}], "operation_status": ["Uncertain"]}
    assert not opcua_view(ua("Read", {"size": 1}, ok)).is_error  # Uncertain: severity bits 01
    bad_op = {"size": 1, "results": [{"status_code": 0}, {"status_code": 0x80340000}], "operation_status": ["BadNodeIdUnknown"]}
    assert opcua_view(ua("Read", {"size": 1}, bad_op)).is_error
    assert opcua_view(ua("Read", {"size": 1}, {"size": 1}, status=0x80000000)).is_error  # largest Bad prefix
    assert not opcua_view(ua("Read", {"size": 1}, {"size": 1}, status=0x7FFFFFFF)).is_error  # first not Bad
    assert opcua_view(ua("ServiceFault", {"size": 1}, {"size": 1, "service_fault": True})).is_error


def test_opcua_balance_one_way_and_server_messages():
    unanswered = opcua_view(ua("Read", {"size": 90}, None, status=None, anomalies=("unanswered_request",)))
    assert unanswered.answered is False and unanswered.request and not unanswered.anomalous
    clo = opcua_view(ua("CloseSecureChannel", {"size": 59}, None, status=None, mt="CLO"))
    assert clo.answered is None and clo.request and clo.nbytes == 59
    unsol = opcua_view(ua("Read", None, {"size": 80}, anomalies=("unsolicited_response",)))
    assert unsol.answered is True and not unsol.request and unsol.latency_ns is None
    err = opcua_view(ua("Error", None, {"status_code": 0x80010000, "reason": "boom"}, status=0x80010000, mt="ERR"))
    assert err.answered is None and not err.request and err.is_error and err.nbytes == 16 + 4
    enc = opcua_view(ua("Encrypted", {"chunks": 1, "size": 300}, None, status=None, enc=True))
    assert enc.answered is None and enc.request and enc.nbytes == 300
    hel = opcua_view(ua("Hello", {"endpoint_url": "opc.tcp://h:4840/"}, {"receive_buffer_size": 1}, status=None, mt="HEL"))
    assert hel.nbytes == 32 + 17 + 28 and hel.answered is True
    odd = opcua_view(ua("Read", {"size": 90}, {"size": 80}, anomalies=("service_mismatch",)))
    assert odd.anomalous


# ---------------------------------------------------------------------------------------------- MQTT

def pub(ts, to_server=True, qos=0, topic="plant/t", payload=b"61.5", length=20, plen=None):
    return MqttPublish("publish", ts, to_server, qos, False, False, length, topic, 1 if qos else None, payload,
                       len(payload) if plen is None and payload is not None else plen)


def ex(*msgs, status="complete", anomalies=(), version=4):
    return MqttExchange(msgs[0].ts, MQ, version, tuple(msgs), status, anomalies, 1024)


def connect(ts, user="sensors"):
    return MqttConnect("connect", ts, True, 0, False, False, 40, "MQTT", 4, 0xC2, 30, "c1", user, b"secret")


def connack(ts, rc):
    return MqttConnack("connack", ts, False, 0, False, False, 4, False, rc)


def test_mqtt_publish_from_client_is_a_write_with_its_number():
    v = mqtt_view(ex(pub(T0)))
    assert (v.protocol, v.client, v.server, v.operation) == ("mqtt", "10.0.0.3", "10.0.0.4", "publish")
    assert v.is_write and not v.is_error and v.request and v.answered is None  # QoS 0: no answer expected
    assert v.keys == ("plant/t",) and v.writes == (("plant/t", 61.5),) and v.nbytes == 20
    acked = mqtt_view(ex(pub(T0, qos=1), MqttAck("puback", T0 + 3_000_000, False, 0, False, False, 4, 1)))
    assert acked.answered is True and acked.latency_ns == 3_000_000 and acked.nbytes == 24
    lost = mqtt_view(ex(pub(T0, qos=1), status="incomplete"))
    assert lost.answered is False


def test_mqtt_payload_numbers():
    def w(payload, **kw):
        return mqtt_view(ex(pub(T0, payload=payload, **kw))).writes
    assert w(b" -2.5e3 ") == (("plant/t", -2500.0),) and w(b"true") == (("plant/t", 1.0),)
    assert w(b'{"b": 2, "a": true, "s": "x", "n": null, "o": {"x": 1}}') == (("plant/t#a", 1.0), ("plant/t#b", 2.0))
    assert w(b"nan") == () and w(b"inf") == () and w(b"hello") == () and w(b"\xff\xfe") == () and w(b"") == ()
    assert w(b"[1, 2]") == () and w(b"{not json") == ()
    assert w(b"61.5", plen=5000) == ()  # only the head of a longer message was kept: not a reading
    assert w(b"1" * 32) == (("plant/t", float("1" * 32)),) and w(b"1" * 33) == ()  # longest plain number


def test_mqtt_delivery_to_a_subscriber_is_not_a_client_request():
    v = mqtt_view(ex(pub(T0, to_server=False, qos=1), MqttAck("puback", T0 + 1, True, 0, False, False, 4, 1)))
    assert v.operation == "publish" and not v.is_write and v.writes == () and v.keys == ("plant/t",)
    assert not v.request and v.answered is None and v.latency_ns is None and v.nbytes == 24
    pong = mqtt_view(ex(MqttBare("pingresp", T0, False, 0, False, False, 2, 13)))
    assert not pong.request and pong.answered is None


def test_mqtt_refusals_and_reason_codes():
    ok = mqtt_view(ex(connect(T0), connack(T0 + 5, 0)))
    assert ok.operation == "connect" and not ok.is_error and ok.answered is True and ok.keys == ("user:sensors",)
    assert not ok.is_write and ok.nbytes == 44
    assert mqtt_view(ex(connect(T0), connack(T0 + 5, 5))).is_error  # 3.1.1 not authorized
    assert mqtt_view(ex(connect(T0), connack(T0 + 5, 0x86), version=5)).is_error  # 5.0 bad user name or password
    sub = MqttSubscribe("subscribe", T0, True, 1, False, False, 14, 1, (("plant/#", 1),))
    assert mqtt_view(ex(sub, MqttSuback("suback", T0 + 5, False, 0, False, False, 5, 1, (0x80,)))).is_error
    v = mqtt_view(ex(sub, MqttSuback("suback", T0 + 5, False, 0, False, False, 5, 1, (1,))))
    assert not v.is_error and v.keys == ("plant/#",)

    def ack(rc):
        return mqtt_view(ex(pub(T0, qos=1), MqttAck("puback", T0 + 5, False, 0, False, False, 4, 1, rc), version=5))
    assert not ack(0x10).is_error and not ack(0x7F).is_error and ack(0x80).is_error  # 0x80: first failure code
    unsol = mqtt_view(ex(connack(T0, 0), status="unsolicited", anomalies=("missing_connect",)))
    assert unsol.answered is True and not unsol.request and not unsol.anomalous
    bad = mqtt_view(ex(pub(T0), status="malformed", anomalies=("malformed_traffic",)))
    assert bad.anomalous
