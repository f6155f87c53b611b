"""Learner and enforcer on event streams built from the real event types (ids.events), at the edges:
band limits, range borders, hold window, re-alert, period tolerance, capture gaps, review states."""
from __future__ import annotations

import dataclasses
import json
import pytest

from ids.config import BaselineConfig
from ids.detect.baseline import document
from ids.detect.baseline.enforcer import BaselineDetector, LearnThenEnforce
from ids.detect.baseline.learner import Learner
from ids.protocols.modbus.baseline import Ranges
from ids.detect.baseline.periodic import SAMPLE_CAP, IntervalSample
from ids.events import FlowContext
from ids.protocols.modbus.messages import ModbusRequest, ModbusResponse, ModbusTransaction
from ids.protocols.mqtt.messages import MqttConnect, MqttExchange, MqttPublish, MqttSubscribe
from ids.protocols.opcua.messages import OpcuaEvent
from ids.protocols.modbus.consts import function_name

NS = 1_000_000_000
HMI, PLC, PLC2, ROGUE = "10.0.0.2", "10.0.0.10", "10.0.0.11", "10.0.0.66"
T0 = 1_700_000_000


def flow(fid, c, s, port=502, cmac="00-11-22-33-44-55", smac="00-80-F4-00-00-01"):
    return FlowContext(fid, "tcp", f"1:{fid}", c, 40000 + fid, cmac, s, port, smac, None, False)


def txn(t, fl, fc, addr=None, qty=None, values=None, unit=1, resp=None, exc=None, anomalies=()):
    ts = int((T0 + t) * NS)
    return ModbusTransaction(ts, fl, 1, unit, fc, function_name(fc, 14 if fc == 43 else None),
                             ModbusRequest(addr, qty, values), resp or ModbusResponse(), exc, None,
                             tuple(anomalies), ts + 1000)


IDENT = {"vendor_name": "Acme", "product_code": "AX-1", "major_minor_revision": "2.4.1"}


def ident(t, fl, rev="2.4.1"):
    d = {"mei_type": 14, "device_identification": dict(IDENT, major_minor_revision=rev)}
    return txn(t, fl, 43, resp=ModbusResponse(details=d))


def normal(start=0.0, seconds=60, fl=None, scale=1.0, override=None):
    """An HMI polling a PLC every second and writing a setpoint cycling 40..60 every 2 s (`scale` stretches
    the schedule; `override` replaces the value of the setpoint write at second i)."""
    fl = fl or flow(1, HMI, PLC)
    override = override or {}
    evs = [ident(start, fl)]
    for i in range(seconds):
        t = start + (0.5 + i + (0.002 if i % 3 == 0 else 0)) * scale
        evs.append(txn(t, fl, 3, 0, 10))
        if i % 2 == 0:
            evs.append(txn(t + 0.1, fl, 6, 20, 1, (override.get(i, 40 + (i // 2 * 5) % 21),)))
    return evs


def learned(cfg=None, events=None) -> document.Baseline:
    lr = Learner(cfg or BaselineConfig())
    for ev in events or normal():
        lr.learn(ev)
    b = lr.baseline([{"name": "synthetic", "bytes": 0, "sha256": "-"}])
    return document.parse(b.dump(), "mem.yaml")  # through the file, as users get it


def enforce(b, events, **cfg):
    det = BaselineDetector(b, dataclasses.replace(BaselineConfig(), **cfg))
    out = []
    for ev in events:
        out += det.on_event(ev) or []
    out += det.flush(events[-1].ts if events else 0) or []
    return out, det


def rules(alerts):
    return sorted(a.rule_id for a in alerts)


# ---------------------------------------------------------------------------------------------- learning

def test_learned_entry():
    b = learned()
    e = b.section("modbus")[f"{HMI}|{PLC}|1"]
    assert e["functions"] == {3: "read_holding_registers", 6: "write_single_register",
                              43: "read_device_identification"}
    assert e["reads"] == {"holding_registers": ["0-9"]} and e["writes"] == {"holding_registers": [20]}
    assert e["values"]["holding_registers"][20] == {"band": [38, 62], "seen": [40, 60], "count": 30}
    polls = {(p["function"], p["address"]): p for p in e["polls"]}
    assert polls[(3, 0)]["period"] == 1.0 and polls[(3, 0)]["samples"] == 59
    assert polls[(6, 20)]["period"] == 2.0
    a = b.section("assets")[PLC]
    assert a["identity"]["modbus"][1]["major_minor_revision"] == "2.4.1"
    assert a["macs"] == {"00-80-F4-00-00-01": "Telemechanique Electrique"}  # IEEE MA-L 00-80-F4


def test_learning_is_deterministic():
    one = Learner(BaselineConfig())
    two = Learner(BaselineConfig())
    evs = normal() + normal(100, 30, flow(2, "10.0.0.3", PLC2))
    for ev in evs:
        one.learn(ev)
    for ev in evs:
        two.learn(ev)
    assert one.baseline().dump() == two.baseline().dump()


def test_malformed_requests_are_not_learned():
    evs = normal() + [txn(70, flow(1, HMI, PLC), 16, 100, 2, (1, 2), anomalies=("byte_count_mismatch",))]
    e = learned(events=evs).section("modbus")[f"{HMI}|{PLC}|1"]
    assert 16 not in e["functions"]


def test_interval_sample_is_bounded_and_keeps_the_period():
    s = IntervalSample()
    for i in range(3 * SAMPLE_CAP):
        s.add(i * 2 * NS + (NS // 100 if i % 2 else 0), 0)
    assert len(s.sample) == SAMPLE_CAP and s.n == 3 * SAMPLE_CAP - 1
    period, jitter = s.period(BaselineConfig())
    # a two-valued distribution: the median is either value (or between), the MAD at most their spread
    assert period == pytest.approx(2.0, abs=0.011) and jitter <= 0.0201
    mix = sorted(s.sample)  # both phases of the alternation are in the sample, in about equal numbers
    assert abs(sum(1 for x in mix if x > 2 * NS) - len(mix) / 2) < len(mix) / 10


def test_irregular_requests_are_not_polls():
    fl = flow(1, HMI, PLC)
    evs = [txn(t, fl, 3, 0, 10) for t in (0, 1, 5, 6, 14, 15, 29, 30, 50)]
    e = learned(events=evs).section("modbus")[f"{HMI}|{PLC}|1"]
    assert "polls" not in e


@pytest.mark.parametrize("case", ["burst", "stops", "starts_late"])
def test_polls_contradicted_by_their_own_learning_traffic_are_not_learned(case):
    """Learning keeps a period only if enforcing it on the learning traffic would have been quiet."""
    fl, other = flow(1, HMI, PLC), flow(2, "10.0.0.3", PLC2)
    times = [0.5 + i for i in range(60)]
    if case == "burst":
        times += [30.6 + 0.01 * i for i in range(12)]  # a burst of fast requests (retries, a script)
    elif case == "stops":
        times = [t for t in times if not 20 < t < 35]
    else:
        times = [t for t in times if t > 15]
    evs = [txn(t, fl, 3, 0, 10) for t in sorted(times)] + normal(0, 60, other)
    e = learned(events=evs).section("modbus")[f"{HMI}|{PLC}|1"]
    assert "polls" not in e
    alerts, _ = enforce(learned(events=evs), sorted(evs, key=lambda x: x.ts))
    assert alerts == []  # and so the learning traffic enforces itself quietly


def test_ranges_edges():
    r = Ranges()
    r.add(0, 9)
    r.add(10, 19)  # adjacent: merged
    r.add(30, 30)
    assert r.text() == ["0-19", 30]
    assert r.covers(0, 19) and r.covers(30, 30)
    assert not r.covers(19, 20) and not r.covers(29, 30)
    assert r.first_outside(15, 35) == 20 and r.first_outside(0, 19) == -1


# ---------------------------------------------------------------------------------------------- enforcing

def test_normal_traffic_raises_nothing():
    alerts, det = enforce(learned(), normal(1000))
    assert alerts == [], [a.reason for a in alerts]


@pytest.mark.parametrize("value,alert", [(38, False), (62, False), (37, True), (63, True), (0, True), (65535, True)])
def test_value_band_edges(value, alert):
    evs = normal(1000, 30, override={10: value})
    alerts, _ = enforce(learned(), evs)
    assert rules(alerts) == (["otids.baseline.modbus.value_out_of_band"] if alert else [])
    if alert:
        a = alerts[0]
        assert a.extra["baseline"]["expected"] == "holding register 20 in 38..62"
        assert a.extra["baseline"]["seen"] == f"holding register 20 = {value}"
        assert a.source == "baseline" and a.count == 1


def test_one_alert_per_new_thing_with_repeat_count():
    evs = normal(1000, 40, override={10: 90, 12: 91, 14: 92, 16: 93, 18: 94})  # five bad values within the hold
    alerts, _ = enforce(learned(), evs)
    assert rules(alerts) == ["otids.baseline.modbus.value_out_of_band"]
    a = alerts[0]
    assert a.count == 5 and a.ts == int((T0 + 1010.6) * NS)
    assert a.extra["baseline"]["seen"] == "holding register 20 = 90, 91, 92, 93, 94"
    assert "(5 times," in a.reason and "expected holding register 20 in 38..62" in a.reason
    doc = a.to_doc()
    assert doc["rule"]["id"] == "otids.baseline.modbus.value_out_of_band"
    assert doc["otids"]["alert"]["count"] == 5 and doc["source"]["ip"] == HMI
    assert doc["threat"]["technique"]["id"] == ["T0836", "T0831"]


def test_repeats_after_the_alert_are_counted_and_reported_once_after_realert():
    fl = flow(1, HMI, PLC)
    evs = normal(1000, 200) + [txn(1010.3 + 20 * i, fl, 16, 100, 2, (1, 2)) for i in range(9)]
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(learned(), evs, hold=5, realert_after=100)
    assert rules(alerts) == ["otids.baseline.modbus.new_function"] * 2
    first, again = alerts
    assert first.count == 1 and not first.extra["baseline"]["follow_up"]
    assert again.extra["baseline"]["follow_up"] and again.count == 5  # t = 30, 50, 70, 90, 110 s after
    alerts, _ = enforce(learned(), evs, hold=5, realert_after=0)
    assert rules(alerts) == ["otids.baseline.modbus.new_function"]


def test_hold_zero_alerts_at_once():
    fl = flow(1, HMI, PLC)
    det = BaselineDetector(learned(), dataclasses.replace(BaselineConfig(), hold=0))
    got = det.on_event(txn(1000, fl, 16, 20, 1, (50,)))
    assert rules(got) == ["otids.baseline.modbus.new_function"]


def test_read_outside_range_reports_first_address_outside():
    evs = normal(1000, 30) + [txn(1010.7, flow(1, HMI, PLC), 3, 5, 10), txn(1011.7, flow(1, HMI, PLC), 3, 5, 10)]
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(learned(), evs)
    assert rules(alerts) == ["otids.baseline.modbus.address_out_of_range"]
    a = alerts[0]
    assert a.count == 2 and a.extra["baseline"]["expected"] == "reads of holding_registers 0-9"
    assert a.extra["baseline"]["seen"] == "address 10"
    assert [t.id for t in a.techniques] == ["T0861", "T0801"]


def test_new_master_is_one_new_asset_alert_only():
    fl = flow(9, ROGUE, PLC)
    evs = normal(1000, 20) + [txn(1005 + i, fl, 16, 100 + i, 1, (9,)) for i in range(10)]
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(learned(), evs)
    assert rules(alerts) == ["otids.baseline.new_asset"]
    assert alerts[0].count == 10 and [t.id for t in alerts[0].techniques] == ["T0848"]
    assert f"{ROGUE} as modbus_master" in alerts[0].reason


def test_new_pair_new_unit_new_port():
    evs = normal(1000, 20) + normal(1000, 20, flow(2, "10.0.0.3", PLC2))
    b = learned(events=evs)
    cases = [
        (txn(2000, flow(5, HMI, PLC2), 3, 0, 10), "otids.baseline.new_talker_pair"),
        (txn(2000, flow(6, HMI, PLC), 3, 0, 10, unit=7), "otids.baseline.modbus.new_unit"),
    ]
    for ev, rule in cases:
        alerts, _ = enforce(b, [ev])
        assert rules(alerts) == [rule], (rule, [a.reason for a in alerts])
    alerts, _ = enforce(b, [txn(2000, flow(7, HMI, PLC, port=5020), 3, 0, 10)])
    assert rules(alerts) == ["otids.baseline.new_port"]  # and the Modbus checks still pass


def test_mac_change_and_identity_change():
    fl = flow(3, HMI, PLC, smac="00-0C-29-AA-BB-CC")
    alerts, _ = enforce(learned(), [ident(2000, fl, rev="3.0.0"), txn(2001, fl, 3, 0, 10)])
    assert rules(alerts) == ["otids.baseline.asset_identity_changed", "otids.baseline.asset_mac_changed"]
    by = {a.rule_id: a for a in alerts}
    assert by["otids.baseline.asset_mac_changed"].count == 2
    assert by["otids.baseline.asset_identity_changed"].extra["baseline"]["seen"] == "major_minor_revision '3.0.0'"


def test_poll_period_change_is_one_alert():
    fl = flow(1, HMI, PLC)
    evs = [e for e in normal(1000, 60) if not (e.function_code == 3 and 1030 < e.ts / NS - T0 < 1041)]
    evs += [txn(1030.5 + 0.25 * i, fl, 3, 0, 10) for i in range(40)]  # four times as fast for 10 s
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(learned(), evs)
    assert rules(alerts) == ["otids.baseline.modbus.poll_period_changed"]
    a = alerts[0]
    assert a.extra["baseline"]["expected"].startswith("read_holding_registers at 0 every 1 s")
    assert a.extra["baseline"]["seen"].startswith("every 0.25 s (window medians 0.25..") and a.count > 1


@pytest.mark.parametrize("factor", [0.8, 1.2])
def test_poll_within_tolerance_is_quiet(factor):
    alerts, _ = enforce(learned(), normal(1000, 60, scale=factor))
    assert alerts == []


def test_poll_stopped_while_other_traffic_goes_on():
    fl, other = flow(1, HMI, PLC), flow(2, "10.0.0.3", PLC2)
    b = learned(events=normal() + normal(0, 60, other))
    evs = normal(1000, 20) + [e for e in normal(1000, 60, other)]
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(b, evs)
    assert rules(alerts) == ["otids.baseline.modbus.poll_stopped"] * 2  # the read and the setpoint write
    assert all(a.extra["baseline"]["seen"] in ("none for 11 s", "none for 12 s") for a in alerts)
    assert all(a.to_doc()["source"]["ip"] == HMI for a in alerts)


def test_capture_gap_is_not_a_stop():
    evs = normal(1000, 20) + normal(1200, 20)  # 160 s without any event between the two
    alerts, _ = enforce(learned(), evs)
    assert alerts == []


def test_denied_and_require_approved():
    b = learned()
    b.section("modbus")[f"{HMI}|{PLC}|1"]["status"] = "denied"
    alerts, _ = enforce(b, normal(1000, 5))
    assert rules(alerts) == ["otids.baseline.denied"] and alerts[0].count == 9  # every transaction
    b = learned()
    alerts, _ = enforce(b, normal(1000, 5), require_approved=True)
    assert rules(alerts) == ["otids.baseline.new_asset"] * 2
    for sec in b.entries.values():
        for e in sec.values():
            e["status"] = "approved"
    alerts, _ = enforce(b, normal(1000, 5), require_approved=True)
    assert alerts == []


def test_learn_then_enforce(tmp_path):
    out = tmp_path / "b.yaml"
    det = LearnThenEnforce(BaselineConfig(), 60, str(out))
    got = []
    evs = normal(0, 80) + [txn(75.7, flow(1, HMI, PLC), 16, 20, 2, (1, 2))]
    evs.sort(key=lambda e: e.ts)
    for ev in evs:
        got += det.on_event(ev) or []
    got += det.flush(evs[-1].ts) or []
    assert rules(got) == ["otids.baseline.modbus.new_function"]
    assert document.load(str(out)).section("modbus")[f"{HMI}|{PLC}|1"]["transactions"] > 80


# ---------------------------------------------------------------------------------------------- OPC UA / MQTT
# Records as the OPC UA and MQTT dissectors emit them (ids.events.OpcuaEvent, MqttExchange); the real
# captures are in test_baseline_sim.py.

def mqtt(t, fl, *msgs):
    ts = int((T0 + t) * NS)
    return MqttExchange(ts, fl, 4, tuple(m._replace(ts=ts) for m in msgs), "complete", (), 256)


def connect(client_id, username=None):
    return MqttConnect("connect", 0, True, 0, False, False, 30, "MQTT", 4, 0x82, 60, client_id, username)


def publish(topic, qos=0, from_client=True):
    """from_client=False: the broker delivering the message to a subscriber."""
    return MqttPublish("publish", 0, from_client, qos, False, False, 20, topic, 1 if qos else None, b"1", 1)


def subscribe(*filters):
    return MqttSubscribe("subscribe", 0, True, 1, False, False, 20, 1, tuple(filters))


def mqtt_normal(start, n):
    pub, sub = flow(11, "10.0.0.51", "10.0.0.31", 1883), flow(12, "10.0.0.61", "10.0.0.31", 1883)
    evs = [mqtt(start, pub, connect("sensor-1", "sensors")), mqtt(start, sub, connect("historian")),
           mqtt(start + 0.1, sub, subscribe(("plant/#", 1)))]
    for i in range(n):
        evs.append(mqtt(start + 1 + i, pub, publish("plant/t")))
        evs.append(mqtt(start + 1.001 + i, sub, publish("plant/t", from_client=False)))
    return evs


def test_mqtt_learn_and_new_topic_once():
    b = learned(events=mqtt_normal(0, 30))
    e = b.section("mqtt")["10.0.0.51|10.0.0.31"]
    assert e["client_ids"] == ["sensor-1"] and e["usernames"] == ["sensors"]
    assert e["publishes"] == {"plant/t": {"qos": [0], "messages": 30, "period": 1.0, "jitter": 0.0}}
    assert "publishes" not in b.section("mqtt")["10.0.0.61|10.0.0.31"]  # deliveries are not publishing
    assert b.section("mqtt")["10.0.0.61|10.0.0.31"]["subscribes"] == {"plant/#": {"qos": [1]}}
    pub, sub = flow(11, "10.0.0.51", "10.0.0.31", 1883), flow(12, "10.0.0.61", "10.0.0.31", 1883)
    evs = mqtt_normal(1000, 20)
    for i in range(3):  # the new topic, and the broker delivering it to the historian
        evs.append(mqtt(1005.5 + i, pub, publish("plant/debug")))
        evs.append(mqtt(1005.6 + i, sub, publish("plant/debug", from_client=False)))
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(b, evs)
    assert rules(alerts) == ["otids.baseline.mqtt.new_topic"]
    assert alerts[0].count == 3 and alerts[0].extra["baseline"]["seen"] == "publish to plant/debug"
    assert alerts[0].flow.client_ip == "10.0.0.51"


def test_mqtt_delivery_is_not_the_subscriber_publishing():
    """The broker forwarding a topic to a subscriber that never published it raises nothing; the same
    subscriber publishing it does (a subscriber turned publisher)."""
    b = learned(events=mqtt_normal(0, 30))
    sub = flow(12, "10.0.0.61", "10.0.0.31", 1883)
    alerts, _ = enforce(b, [mqtt(1000 + i, sub, publish("plant/other", from_client=False)) for i in range(5)])
    assert alerts == []
    alerts, _ = enforce(b, [mqtt(1000, sub, publish("plant/other"))])
    assert rules(alerts) == ["otids.baseline.mqtt.new_topic"] and alerts[0].flow.client_ip == "10.0.0.61"


def test_mqtt_client_id_subscription_qos():
    b = learned(events=mqtt_normal(0, 30))
    pub, sub = flow(11, "10.0.0.51", "10.0.0.31", 1883), flow(12, "10.0.0.61", "10.0.0.31", 1883)
    evs = [mqtt(1000, pub, connect("sensor-9", "sensors")),
           mqtt(1001, sub, subscribe(("#", 0))),
           mqtt(1002, pub, publish("plant/t", qos=2))]
    alerts, _ = enforce(b, evs)
    assert rules(alerts) == ["otids.baseline.mqtt.new_client_id", "otids.baseline.mqtt.new_subscription",
                             "otids.baseline.mqtt.qos_changed"]


NONE_POLICY = "http://opcfoundation.org/UA/SecurityPolicy#None"


def opcua(t, fl, service, nodes=(), policy=NONE_POLICY, mode="None", app=None, request=None, response=None):
    ts = int((T0 + t) * NS)
    mt = "OPN" if service == "OpenSecureChannel" else "MSG"
    return OpcuaEvent(ts, fl, mt, service, 1, 1, 1, 1, policy, mode, False, 0, "Good", tuple(nodes), None, app,
                      None, request, response, None, (), ts + 1000)


def create_session(t, fl, app_uri):
    client = {"application_uri": app_uri, "product_uri": "urn:vendor:client", "application_name": "scada",
              "application_type": "Client"}
    server = {"application_uri": "urn:plant:server", "product_uri": "urn:vendor:server",
              "application_name": "plant server", "application_type": "Server"}
    return opcua(t, fl, "CreateSession", app=app_uri, request={"client": client},
                 response={"server_endpoints": [{"endpoint_url": "opc.tcp://10.0.0.21:4840", "server": server}]})


def opcua_normal(start, n):
    fl = flow(21, "10.0.0.4", "10.0.0.21", 4840)
    evs = [opcua(start, fl, "OpenSecureChannel"), create_session(start + 0.1, fl, "urn:scada1")]
    for i in range(n):
        evs.append(opcua(start + 1 + i, fl, "Read", ["ns=2;s=Line1.Speed"]))
        if i % 5 == 0:
            evs.append(opcua(start + 1.5 + i, fl, "Write", ["ns=2;s=Line1.Setpoint"]))
    return evs


def test_opcua_learn_and_enforce():
    b = learned(events=opcua_normal(0, 20))
    e = b.section("opcua")["10.0.0.4|10.0.0.21"]
    assert e["security_policies"] == ["None"] and e["security_modes"] == ["None"]
    assert e["services"] == ["createsession", "opensecurechannel", "read", "write"]
    assert e["nodes_written"] == ["ns=2;s=Line1.Setpoint"] and e["application_uris"] == ["urn:scada1"]
    assert b.section("assets")["10.0.0.4"]["identity"] == {
        "opcua_application_name": ["scada"], "opcua_application_uri": ["urn:scada1"],
        "opcua_product_uri": ["urn:vendor:client"]}
    assert b.section("assets")["10.0.0.21"]["identity"] == {
        "opcua_application_name": ["plant server"], "opcua_application_uri": ["urn:plant:server"],
        "opcua_product_uri": ["urn:vendor:server"]}
    fl = flow(21, "10.0.0.4", "10.0.0.21", 4840)
    evs = opcua_normal(1000, 10) + [
        opcua(1003.7, fl, "Write", ["ns=2;s=Line1.MotorEnable"]),
        opcua(1003.8, fl, "Call", ["ns=2;s=Line1.Reset"]),
        opcua(1003.9, fl, "DeleteNodes"),
        opcua(1004.0, fl, "OpenSecureChannel", policy="http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15",
              mode="SignAndEncrypt"),
        create_session(1004.1, fl, "urn:evil")]
    evs.sort(key=lambda e: e.ts)
    alerts, _ = enforce(b, evs)
    assert rules(alerts) == ["otids.baseline.asset_identity_changed", "otids.baseline.opcua.new_method_called",
                             "otids.baseline.opcua.new_node_written", "otids.baseline.opcua.new_service",
                             "otids.baseline.opcua.security_changed", "otids.baseline.opcua.security_changed"]
    by = {a.rule_id: a for a in alerts}
    assert by["otids.baseline.asset_identity_changed"].extra["baseline"]["seen"] == "opcua_application_uri urn:evil"
    assert by["otids.baseline.opcua.new_node_written"].extra["baseline"]["seen"] == "write to ns=2;s=Line1.MotorEnable"


def test_new_deviations_of_one_pair_fold_past_max_new_per_pair(tmp_path):
    """One MQTT client publishing to 3,000 new topics under a baseline of its first 100 (bench-hostile
    mqtt_topics_baseline): each new topic and subtree was an alert of its own (1M topics: 2M alerts, 132 s).
    Now the first baseline.max_new_per_pair of a hold window alert one by one and the rest fold into one
    alert per rule that counts them and lists some; with 0 every one alerts as before."""
    from conftest import run_cli
    from ids.commands.bench_hostile import PcapOut, mqtt_topics

    def capture(path, n):
        out = PcapOut(str(path))
        mqtt_topics(out, n)
        out.close()
        return str(path)

    base, flood = capture(tmp_path / "base.pcap", 100), capture(tmp_path / "flood.pcap", 3000)
    run_cli("learn", base, "-q", "-o", str(tmp_path / "b.yaml"))

    def alerts(*extra):
        out = tmp_path / "a.ndjson"
        run_cli("analyze", flood, "-q", "--workers", "1", "--baseline", str(tmp_path / "b.yaml"), "-o", str(out),
                *extra)
        docs = [json.loads(line) for line in out.read_text().splitlines()]
        return [d for d in docs if d["rule"]["id"] == "otids.baseline.mqtt.new_topic"]

    folded = alerts()
    listed = [d for d in folded if "folded:" in d["event"]["reason"]]
    assert len(folded) == 11 and len(listed) == 1, [d["event"]["reason"][:120] for d in folded]
    assert listed[0]["otids"]["alert"]["count"] == 2900 - 10, listed[0]["otids"]["alert"]
    assert "more than 10 new within 30 s" in listed[0]["event"]["reason"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("baseline:\n  max_new_per_pair: 0\n")
    assert len(alerts("-c", str(cfg))) == 2900
