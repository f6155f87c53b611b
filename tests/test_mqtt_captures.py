"""Our real MQTT traffic (pcaps/make_mqtt_captures.py: mosquitto + paho-mqtt on loopback) through the
pipeline and the CLI, against what the script did: users, QoS 0/1/2 flows, retained messages, the will,
wildcard subscriptions, MQTT 5 properties and topic aliases, refused logins, the probe on port 11883,
mosquitto's packed PUBLISH segments, and passwords that stay out of the output unless configured."""
from __future__ import annotations

import json
from collections import Counter

from conftest import PCAPS, need, read_ndjson, run_cli
from ids.pipeline import analyze

PCAP = PCAPS / "mqtt-mosquitto.pcap"


def _exchanges():
    _, col = analyze([str(need(PCAP))])
    return [e for e in col.events if e.dataset == "otids.mqtt"], col


def test_sessions_and_logins():
    ex, col = _exchanges()
    connects = {(e.message("connect").client_id, e.protocol_version): e for e in ex if e.message("connect")}
    assert set(connects) == {("plant-sub", 4), ("sensor-01", 4), ("sensor-02", 5), ("intruder", 4),
                             ("intruder", 5), ("probe-client", 4)}
    assert connects[("intruder", 4)].to_doc()["mqtt"]["connack"]["reason"] == "not_authorized"
    assert connects[("intruder", 5)].to_doc()["mqtt"]["connack"]["reason"] == "not_authorized"
    assert connects[("intruder", 4)].outcome == "failure" and connects[("plant-sub", 4)].outcome == "success"
    will = connects[("sensor-01", 4)].to_doc()["mqtt"]["connect"]["will"]
    assert will == {"qos": 1, "retain": True, "topic": "plant/sensor-01/status", "message": "offline",
                    "payload_length": 7}
    v5 = connects[("sensor-02", 5)].to_doc()
    assert v5["mqtt"]["connect"]["properties"] == {"session_expiry_interval": 120, "site": "hamburg"}
    assert v5["user"]["name"] == "sensor" and v5["related"]["user"] == ["sensor"]
    probe = connects[("probe-client", 4)]
    assert probe.flow.server_port == 11883  # no port mapping: found by content
    assert all(not e.anomalies for e in ex), [e.anomalies for e in ex if e.anomalies]
    assert not col.alerts


def test_qos_flows_retained_will_and_wildcards():
    ex, _ = _exchanges()
    sub = [e.to_doc()["mqtt"] for e in ex if "subscribe" in e.types and e.protocol_version == 4]
    assert sub[0]["subscribe"]["topics"] == [{"topic": "plant/+/temp", "qos": 1}, {"topic": "plant/#", "qos": 2}]
    assert sub[0]["suback"]["qos_granted"] == [1, 2]
    flows = Counter((tuple(e.types), e.message("publish").qos, e.message("publish").to_server)
                    for e in ex if e.message("publish"))
    assert flows[(("publish", "puback"), 1, True)] >= 2
    assert flows[(("publish", "pubrec", "pubrel", "pubcomp"), 2, True)] == 2  # 3.1.1 and 5.0 publishers
    assert flows[(("publish", "pubrec", "pubrel", "pubcomp"), 2, False)] == 1  # broker -> plant-sub
    retained = [e for e in ex if e.message("publish") and e.message("publish").retain]
    assert [(e.message("publish").topic, e.message("publish").payload) for e in retained] == \
        [("plant/sensor-01/status", b"online")]
    wills = [e for e in ex if e.message("publish") and e.message("publish").payload in (b"offline", b"gone")]
    assert {(w.message("publish").topic, w.message("publish").to_server) for w in wills} == \
        {("plant/sensor-01/status", False), ("plant/sensor-02/status", False)}  # delivered by the broker
    assert all(e.status == "complete" for e in ex)


def test_packed_publishes_from_one_segment():
    """sensor-01 sent 40 QoS 0 PUBLISHes in one segment and mosquitto forwarded 28 in one segment:
    every one becomes its own exchange, in order."""
    ex, _ = _exchanges()
    burst = [e.message("publish") for e in ex
             if e.message("publish") and e.message("publish").topic == "plant/line2/temp"]
    sent = [p.payload for p in burst if p.to_server]
    got = [p.payload for p in burst if not p.to_server]
    want = [f"{20 + i / 10:.1f}".encode() for i in range(40)]
    assert sent == want and got == want
    same_segment = Counter(p.ts for p in burst if p.to_server)
    assert max(same_segment.values()) >= 30


def test_v5_topic_alias_properties_and_disconnect_reason():
    ex, _ = _exchanges()
    v5 = [e.to_doc()["mqtt"] for e in ex if e.protocol_version == 5]
    pubs = [m["publish"] for m in v5 if "publish" in m]
    assert pubs[0]["properties"] == {"message_expiry_interval": 30, "content_type": "text/plain", "topic_alias": 3,
                                     "unit": "celsius"}
    assert pubs[1]["topic"] == "plant/line3/temp" and pubs[1]["topic_from_alias"] is True
    sub = [m for m in v5 if "subscribe" in m][0]["subscribe"]["topics"][0]
    assert sub == {"topic": "plant/sensor-02/cmd", "qos": 1, "no_local": True, "retain_as_published": False,
                   "retain_handling": 0}
    unsub = [m for m in v5 if "unsubscribe" in m][0]
    assert unsub["unsuback"]["reason_codes"] == [0]
    disc = [m for m in v5 if "disconnect" in m][0]["disconnect"]
    assert disc["reason_code"] == 4 and disc["reason"] == "disconnect_with_will_message"


def test_cli_events_without_and_with_passwords(tmp_path):
    out, events = tmp_path / "alerts.ndjson", tmp_path / "events.ndjson"
    run_cli("analyze", "-q", "-o", str(out), "--events", str(events), str(need(PCAP)))
    text = events.read_text()
    assert "op-secret" not in text and "s3nsor" not in text and '"password":"' not in text.replace(" ", "")
    docs = read_ndjson(events)
    mq = [d for d in docs if d["event"]["dataset"] == "otids.mqtt"]
    assert len(mq) == len(_exchanges()[0]) > 100 and all(d["network"]["protocol"] == "mqtt" for d in mq)
    cfg = tmp_path / "otids.yaml"
    cfg.write_text("mqtt:\n  log_passwords: true\n")
    run_cli("analyze", "-q", "-c", str(cfg), "-o", str(out), "--events", str(events), str(need(PCAP)))
    pw = {(d["mqtt"]["connect"]["username"], d["mqtt"]["connect"]["password"]) for d in read_ndjson(events)
          if "connect" in d.get("mqtt", {}) and "password" in d["mqtt"]["connect"]}
    assert pw == {("operator", "op-secret"), ("sensor", "s3nsor"), ("sensor", "guess")}
    assert "op-secret" not in out.read_text()  # alerts never carry it
    json.loads(events.read_text().splitlines()[0])
