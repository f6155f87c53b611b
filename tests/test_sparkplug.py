"""Sparkplug B (#14): decoding checked against what real generators published, and each detector check against
a capture that raises it and one that does not.

Captures (pcaps/make_sparkplug_captures.py, mosquitto on loopback):
  sparkplug-pysparkplug.pcap  pysparkplug edge node + device and a paho host application, a clean lifecycle;
  sparkplug-crafted.pcap      payloads built with otids's sparkplug_b_pb2 and sent with paho: every attack case.
"""
from __future__ import annotations

import importlib.util
import struct

import pytest

from conftest import PCAPS, need, read_ndjson, run_cli
from ids.pipeline import analyze
from ids.protocols.mqtt.sparkplug import sparkplug_b_pb2 as pb
from ids.protocols.mqtt.sparkplug.births import Births
from ids.protocols.mqtt.sparkplug.decode import convert, decode_payload, parse_topic
from ids.protocols.mqtt.sparkplug.detector import RULES, SparkplugDetector
from ids.protocols.mqtt.sparkplug.records import DataType

CLEAN = PCAPS / "sparkplug-pysparkplug.pcap"
CRAFTED = PCAPS / "sparkplug-crafted.pcap"


def _generator():
    spec = importlib.util.spec_from_file_location("make_sparkplug_captures", PCAPS / "make_sparkplug_captures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(path):
    _, col = analyze([str(need(path))], detectors=[SparkplugDetector()])
    docs = [e.to_doc() for e in col.events if e.dataset == "otids.mqtt"]
    return docs, col.alerts


def _publishes(docs, mtype=None, from_client=True):
    out = []
    for d in docs:
        p = d["mqtt"].get("publish")
        if p and "sparkplug" in p and p["from_client"] == from_client:
            if mtype is None or p["sparkplug"]["message_type"] == mtype:
                out.append(p["sparkplug"])
    return out


def doc_value(m: dict):
    """A metric's value as a reader of our document gets it back, by its declared datatype."""
    dt = m["datatype"]
    if dt in ("String", "Text", "UUID"):
        return m["value"]
    if dt == "StringArray":
        return tuple(m["value"])
    if dt in ("Bytes", "File"):
        return bytes.fromhex(m["value"])
    if dt in ("Float", "Double"):
        return m["double"]
    if dt in ("FloatArray", "DoubleArray"):
        return tuple(m["double"])
    if dt == "Boolean":
        return m["boolean"]
    if dt == "BooleanArray":
        return tuple(m["boolean"])
    v = m["long"] if "long" in m else m["unsigned"]
    return tuple(v) if isinstance(v, list) else v


_BY_LOWER = {n.lower(): n for n in DataType.__members__}


def _dtname(psp_name: str) -> str:
    """pysparkplug's DATETIME_ARRAY -> Sparkplug's DateTimeArray."""
    return _BY_LOWER[psp_name.replace("_", "").lower()]


def _expect(published):
    return {name: (_dtname(kind), value) for name, kind, value in published}


def _check(metrics: list[dict], published) -> int:
    exp = _expect(published)
    got = {m["name"]: m for m in metrics if m["name"] in exp}
    assert set(got) == set(exp), set(exp) ^ set(got)
    for name, (dt, value) in exp.items():
        assert got[name]["datatype"] == dt, name
        assert doc_value(got[name]) == value, (name, got[name])
    return len(exp)


# ------------------------------------------------------------------ decoded values = published values
def test_every_published_value_decodes_to_itself():
    gen = _generator()
    docs, _ = _run(CLEAN)
    checked = 0
    for copy in (True, False):  # the publisher's copy and the broker's delivery decode alike
        nb = _publishes(docs, "NBIRTH", copy)
        assert len(nb) == 1
        checked += _check(nb[0]["metrics"], gen.NODE_METRICS)
        db = _publishes(docs, "DBIRTH", copy)
        assert len(db) == 1 and db[0]["device_id"] == "dev1"
        checked += _check(db[0]["metrics"], gen.DEVICE_METRICS)
        nd = _publishes(docs, "NDATA", copy)
        assert [x["seq"] for x in nd] == [2, 3]
        for sp, rows in zip(nd, gen.NDATA_UPDATES):
            checked += _check(sp["metrics"], rows)
        dd = _publishes(docs, "DDATA", copy)
        for sp, rows in zip(dd, gen.DDATA_UPDATES):
            checked += _check(sp["metrics"], rows)
    cmd = _publishes(docs, "NCMD", True)
    assert len(cmd) == 1
    checked += _check(cmd[0]["metrics"], gen.NCMD_METRICS)
    # every datatype pysparkplug can publish is covered, signed extremes and arrays included
    kinds = {_dtname(k) for _, k, _ in gen.NODE_METRICS}
    assert {"Int8", "Int64", "UInt64", "Int8Array", "UInt64Array", "BooleanArray", "StringArray",
            "DateTimeArray", "DateTime", "Bytes", "File", "UUID", "Text"} <= kinds
    assert checked > 2 * (len(gen.NODE_METRICS) + len(gen.DEVICE_METRICS))


def test_nbirth_bdseq_and_will():
    docs, _ = _run(CLEAN)
    nb = _publishes(docs, "NBIRTH")[0]
    assert nb["bdseq"] == 0 and nb["seq"] == 0 and nb["group_id"] == "plant1" and nb["edge_node_id"] == "edge1"
    wills = [d["mqtt"]["connect"]["will"]["sparkplug"] for d in docs
             if d["mqtt"].get("connect", {}).get("will", {}).get("sparkplug")]
    by_type = {w["message_type"]: w for w in wills}
    assert by_type["NDEATH"]["bdseq"] == 0 and by_type["NDEATH"]["edge_node_id"] == "edge1"
    assert by_type["STATE"] == {"message_type": "STATE", "version": "3.0", "host_id": "scada-host", "online": False,
                                "timestamp": "2025-12-29T09:20:00.000Z"}


def test_crafted_aliases_datatypes_dataset_template():
    gen = _generator()
    docs, _ = _run(CRAFTED)
    byname = {}
    for mtype in ("NBIRTH", "NDATA", "DDATA", "DBIRTH"):
        for sp in _publishes(docs, mtype):
            if sp.get("edge_node_id") == "edge2":
                for met in sp["metrics"]:
                    byname.setdefault((mtype, met.get("name")), met)
    for mtype, name, value in gen.CRAFTED_VALUES:
        met = byname[(mtype, name)]
        assert doc_value(met) == value, (mtype, name, met)
    nd = byname[("NDATA", "Motor/Speed")]
    assert nd["alias"] == 1 and nd["name_from_alias"] and nd["datatype_from_birth"] and nd["datatype"] == "Int8"
    dd = byname[("DDATA", "Flow")]
    assert dd["alias"] == 100 and dd["name_from_alias"]
    ds = byname[("NBIRTH", "Recipe")]["dataset"]
    assert ds == {"columns": ["step", "setpoint", "label"], "types": ["Int32", "Double", "String"],
                  "rows": [[-1, 80.5, "heat"], [2, -4.25, "cool"]]}
    tpl = byname[("NBIRTH", "Valve1")]["template"]
    assert tpl["template_ref"] == "ValveType" and tpl["parameters"] == [{"name": "vendor", "type": "String",
                                                                         "value": "acme"}]
    assert [(m["name"], m["value"]) for m in tpl["metrics"]] == [("Open", "true"), ("Position", "-300")]
    assert byname[("NBIRTH", "Tank/Level")]["properties"] == {"engUnit": "m"}
    legacy = [sp for sp in _publishes(docs, "STATE") if sp["version"] == "2.2"]
    assert legacy == [{"message_type": "STATE", "version": "2.2", "host_id": "legacy-host", "online": True}]


# ------------------------------------------------------------------ checks: raised on the crafted capture only
def _rules(alerts):
    return [a for a in alerts if a.rule_id.startswith("otids.sparkplug.")]


def test_clean_lifecycle_raises_no_sparkplug_alert():
    _, alerts = _run(CLEAN)
    assert _rules(alerts) == []


def test_cli_runs_the_detector(tmp_path):
    out = tmp_path / "a.ndjson"
    run_cli("analyze", str(need(CRAFTED)), "-q", "-o", str(out))
    rules = {d["rule"]["id"] for d in read_ndjson(out)}
    assert "otids.sparkplug.rogue_command" in rules
    run_cli("analyze", str(need(CRAFTED)), "-q", "-o", str(out), "--no-sparkplug")
    assert not any(d["rule"]["id"].startswith("otids.sparkplug.") for d in read_ndjson(out))


def test_each_check_raises_on_crafted_capture():
    _, alerts = _run(CRAFTED)
    got = {a.rule_id.rsplit(".", 1)[1] for a in _rules(alerts)}
    assert got == set(RULES), set(RULES) ^ got


def test_commands_attributed_to_the_sender():
    _, alerts = _run(CRAFTED)
    rogue = [a for a in _rules(alerts) if a.rule_id == "otids.sparkplug.rogue_command"]
    # one NCMD and one DCMD from the rogue; the host's NCMD and the broker's deliveries raise nothing
    assert sorted(a.event.messages[0].decoded.message_type for a in rogue) == ["DCMD", "NCMD"]
    assert {a.flow.client_ip for a in rogue} == {"127.0.0.66"}
    assert all(a.event.messages[0].to_server for a in rogue)
    spoof = [a for a in _rules(alerts) if a.rule_id == "otids.sparkplug.state_spoofing"]
    assert [a.flow.client_ip for a in spoof] == ["127.0.0.66"]
    recon = [a for a in _rules(alerts) if a.rule_id == "otids.sparkplug.wildcard_subscription"]
    assert [a.flow.client_ip for a in recon] == ["127.0.0.66"]  # the host's spBv1.0/# is not reconnaissance


# ------------------------------------------------------------------ decoder units
def _payload(*metrics, seq=None):
    p = pb.Payload()
    p.timestamp = 1
    if seq is not None:
        p.seq = seq
    for name, alias, dtype, field, value in metrics:
        m = p.metrics.add()
        if name is not None:
            m.name = name
        if alias is not None:
            m.alias = alias
        if dtype is not None:
            m.datatype = dtype
        setattr(m, field, value)
    return p.SerializeToString()


def test_signed_both_encodings_and_widths():
    for dt, bits in ((DataType.Int8, 8), (DataType.Int16, 16), (DataType.Int32, 32)):
        lo = -(1 << (bits - 1))
        for v in (lo, -1, 0, (1 << (bits - 1)) - 1):
            assert convert(dt, "int_value", v & 0xFFFFFFFF)[0] == v  # Tahu: 32-bit two's complement
            assert convert(dt, "int_value", v & ((1 << bits) - 1))[0] == v  # pysparkplug: N-bit
    assert convert(DataType.Int64, "long_value", (1 << 64) - 1)[0] == -1
    assert convert(DataType.UInt64, "long_value", (1 << 64) - 1)[0] == (1 << 64) - 1


def test_arrays_little_endian_and_bits():
    assert convert(DataType.Int16Array, "bytes_value", struct.pack("<3h", -2, 0, 7))[0] == (-2, 0, 7)
    # BooleanArray: 4-byte LE count, most significant bit first
    assert convert(DataType.BooleanArray, "bytes_value", b"\x03\x00\x00\x00\xa0")[0] == (True, False, True)
    assert convert(DataType.StringArray, "bytes_value", b"a\x00\x00bc\x00")[0] == ("a", "", "bc")
    v, err = convert(DataType.Int32Array, "bytes_value", b"\x01\x00\x00\x00\x02")
    assert v == (1,) and err == "bad_array"  # a truncated element is said, not guessed


def test_topics():
    assert parse_topic("spBv1.0/g/DDATA/e/d")[:4] == ("DDATA", "g", "e", "d")
    assert parse_topic("spBv1.0/STATE/h").host_id == "h"
    assert parse_topic("STATE/h").version == "2.2"
    assert parse_topic("spBv1.0/g/DDATA/e").problems == ("malformed_topic",)  # device type without device
    assert parse_topic("spBv1.0/g/NOPE/e").problems == ("unknown_message_type",)
    assert parse_topic("plant/line1/temp") is None


def test_bad_payloads_are_problems_not_exceptions():
    head = parse_topic("spBv1.0/g/NDATA/e")
    assert decode_payload(head, b"\xff\xff\xff").problems == ("malformed_payload",)
    assert decode_payload(parse_topic("spBv1.0/STATE/h"), b"{not json").problems == ("bad_state_payload",)
    assert decode_payload(parse_topic("STATE/h"), b"MAYBE").problems == ("bad_state_payload",)


def test_alias_resolution_and_rebirth_forgets():
    births = Births()
    births.broker = "10.0.0.1"
    nb = decode_payload(parse_topic("spBv1.0/g/NBIRTH/e"),
                        _payload(("T", 7, DataType.Int16, "int_value", 0xFFFE), seq=0), births)
    assert nb.metrics[0].value == -2
    nd = decode_payload(parse_topic("spBv1.0/g/NDATA/e"), _payload((None, 7, None, "int_value", 0xFFFD), seq=1),
                        births)
    assert (nd.metrics[0].name, nd.metrics[0].value, nd.problems) == ("T", -3, ())
    decode_payload(parse_topic("spBv1.0/g/NBIRTH/e"), _payload(("U", 8, DataType.Int32, "int_value", 1), seq=0),
                   births)
    nd = decode_payload(parse_topic("spBv1.0/g/NDATA/e"), _payload((None, 7, None, "int_value", 5), seq=1), births)
    assert nd.metrics[0].name is None and "unknown_alias" in nd.problems
    other = Births()
    other.broker = "10.0.0.2"  # another broker's edge node of the same name is another edge node
    nd = decode_payload(parse_topic("spBv1.0/g/NDATA/e"), _payload((None, 8, None, "int_value", 5)), other)
    assert "unknown_alias" not in nd.problems or nd.metrics[0].name is None


@pytest.mark.parametrize("payload", [b"", b"\x0a", b"\x12\xff\x01", bytes(range(256))])
def test_truncated_and_random_payloads(payload):
    head = parse_topic("spBv1.0/g/NBIRTH/e")
    out = decode_payload(head, payload, Births())
    assert out.message_type == "NBIRTH"


# ------------------------------------------------------------------ baseline: command senders, metrics, bands, tree
def _baseline_alerts(tmp_path, edit=None):
    import yaml
    b = tmp_path / "b.yaml"
    run_cli("learn", str(need(CRAFTED)), "-q", "-o", str(b))
    data = yaml.safe_load(b.read_text())
    if edit is not None:
        edit(data)
        b.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "a.ndjson"
    run_cli("analyze", str(need(CRAFTED)), "-q", "-o", str(out), "--baseline", str(b), "--no-sparkplug")
    return [d for d in read_ndjson(out) if d["rule"]["id"].startswith(("otids.baseline.sparkplug.",
                                                                         "otids.baseline.mqtt.new_subtree"))]


def _edge(data, node):
    return next(e for e in data["sparkplug"] if e["edge_node"] == node)


def test_baseline_shows_senders_bands_and_tree(tmp_path):
    import yaml
    b = tmp_path / "b.yaml"
    run_cli("learn", str(need(CRAFTED)), "-q", "-o", str(b))
    data = yaml.safe_load(b.read_text())
    e2 = _edge(data, "plantB/edge2")
    assert e2["commands"] == {"127.0.0.10 scada-host": {"metrics": ["Node Control/Rebirth"]},
                              "127.0.0.66 maint-laptop": {"metrics": ["Node Control/Rebirth", "pump/Flow"]}}
    assert e2["metrics"]["Tank/Level"]["seen"] == [42.0, 44.5] and "bdSeq" not in e2["metrics"]
    assert e2["devices"] == ["pump"] and e2["publishers"] == ["127.0.0.12 edge2"]
    tree = data["namespace"][0]["tree"]
    assert tree["spBv1.0"]["plantB"]["edge3"] == {"publishers": ["127.0.0.13"]}
    assert tree["STATE"] == {"publishers": ["127.0.0.17"]}


def test_baseline_learned_from_the_same_traffic_raises_nothing(tmp_path):
    assert _baseline_alerts(tmp_path) == []


def test_baseline_deviations(tmp_path):
    def edit(data):
        e2 = _edge(data, "plantB/edge2")
        del e2["commands"]["127.0.0.66 maint-laptop"]  # the laptop was never approved to command
        e2["commands"]["127.0.0.10 scada-host"]["metrics"] = ["Motor/Speed"]  # the host never rebirthed it
        e2["metrics"]["Tank/Level"]["band"] = [40, 43.5]  # 44.0 and 44.5 fall outside
        tree = data["namespace"][0]["tree"]["spBv1.0"]["plantB"]
        tree["edge2"]["publishers"].remove("127.0.0.66")
    got = {(d["rule"]["id"].rsplit(".", 1)[1], d["source"]["ip"]) for d in _baseline_alerts(tmp_path, edit)}
    assert got == {("new_command_sender", "127.0.0.66"), ("new_command_metric", "127.0.0.10"),
                   ("value_out_of_band", "127.0.0.12"), ("new_subtree", "127.0.0.66")}


# ------------------------------------------------------------------ record sequences: each check, raised and not
from ids.events import FlowContext  # noqa: E402
from ids.protocols.mqtt.messages import MqttConnect, MqttExchange, MqttPublish, MqttSubscribe  # noqa: E402
from ids.protocols.mqtt.sparkplug.records import SparkplugMessage, SparkplugMetric  # noqa: E402

NS = 1_000_000_000


def _flow(fid, ip):
    return FlowContext(fid, "tcp", "1:x", ip, 40000 + fid, None, "10.0.0.1", 1883, None, None, False)


def _pub(t, fl, to_server, sp, retain=False, plen=10):
    m = MqttPublish("publish", int(t * NS), to_server, 0, retain, False, 20, "t", None, b"", plen, None, False,
                    False, sp)
    return MqttExchange(m.ts, fl, 4, (m,), "complete", (), 1024)


def _connect(t, fl, cid, will=None):
    m = MqttConnect("connect", int(t * NS), True, 0, False, False, 20, "MQTT", 4, 0, 60, cid, decoded=will)
    return MqttExchange(m.ts, fl, 4, (m,), "complete", (), 1024)


def _sp(mt, seq=None, device=None, bdseq=None, metrics=(), **kw):
    return SparkplugMessage(mt, "g", "e", device, seq=seq, bdseq=bdseq, metrics=metrics, **kw)


def _state(online, ts):
    return SparkplugMessage("STATE", host_id="h", online=online, timestamp=ts, payload_length=30)


def _alerts(events):
    det = SparkplugDetector()
    out = []
    for ev in events:
        out += det.on_event(ev) or []
    out += det.flush(events[-1].ts) or []
    return sorted(a.rule_id.rsplit(".", 1)[1] for a in out)


EDGE, HOST, OTHER, SUB = _flow(1, "10.0.0.11"), _flow(2, "10.0.0.10"), _flow(3, "10.0.0.66"), _flow(4, "10.0.0.12")
CMD = _sp("NCMD", metrics=(SparkplugMetric("Node Control/Rebirth", None, 11, True),))


def _lifecycle(n=3):
    evs = [_connect(0, EDGE, "e", _sp("NDEATH", bdseq=1)), _pub(1, EDGE, True, _sp("NBIRTH", 0, bdseq=1))]
    evs += [_pub(2 + i, EDGE, True, _sp("NDATA", (i + 1) & 255)) for i in range(n)]
    return evs


def test_seq_wraps_without_alert_and_gaps_with_one():
    evs = _lifecycle(300)  # 0..255 then 0.. again
    assert _alerts(evs) == []
    evs = _lifecycle(5)
    evs.append(_pub(20, EDGE, True, _sp("NDATA", 9)))
    evs.append(_pub(21, EDGE, True, _sp("NDATA", 8)))
    assert _alerts(evs) == ["seq_gap", "seq_reorder"]


def test_host_without_state_that_knows_the_births_may_command():
    base = [_connect(0, SUB, "scada")] + _lifecycle()
    base.insert(3, _pub(1.001, SUB, False, _sp("NBIRTH", 0, bdseq=1)))  # the broker delivers the birth
    assert _alerts(base + [_pub(10, SUB, True, CMD)]) == []
    assert _alerts(base + [_connect(9, OTHER, "x"), _pub(10, OTHER, True, CMD)]) == ["rogue_command"]
    # a command seen only as the broker's delivery to the edge node is not attributed to the edge node
    assert _alerts(base + [_pub(10, EDGE, False, CMD)]) == []


def test_state_owner_may_go_offline_others_may_not():
    evs = [_connect(0, HOST, "h"), _pub(1, HOST, True, _state(True, 100)), _pub(5, HOST, True, _state(False, 200))]
    assert _alerts(evs) == []
    evs = [_connect(0, HOST, "h"), _pub(1, HOST, True, _state(True, 100)), _connect(2, OTHER, "x"),
           _pub(3, OTHER, True, _state(False, 200))]
    assert _alerts(evs) == ["state_spoofing"]
    evs = [_connect(0, HOST, "h"), _pub(1, HOST, True, _state(True, 100)), _pub(3, HOST, True, _state(True, 50))]
    assert _alerts(evs) == ["state_stale_timestamp"]
    cleared = SparkplugMessage("STATE", host_id="h", payload_length=0)
    assert _alerts([_connect(0, OTHER, "x"), _pub(1, OTHER, True, cleared, retain=True)]) == ["state_cleared"]
    assert _alerts([_connect(0, OTHER, "x"), _pub(1, OTHER, True, cleared, retain=False)]) == []


def test_births_deaths_and_bdseq():
    ok = _lifecycle() + [_pub(9, EDGE, True, _sp("NDEATH", bdseq=1))]
    assert _alerts(ok) == []
    assert _alerts(ok + [_pub(10, EDGE, True, _sp("NDEATH", bdseq=1))]) == ["death_without_birth"]
    bad = [_connect(0, EDGE, "e", _sp("NDEATH", bdseq=1)), _pub(1, EDGE, True, _sp("NBIRTH", 0, bdseq=2))]
    assert _alerts(bad) == ["bdseq_mismatch"]
    early = [_connect(0, EDGE, "e"), _pub(1, EDGE, True, _sp("NDATA", 0))]
    assert _alerts(early) == ["data_before_birth"]
    ddata = _lifecycle(1) + [_pub(5, EDGE, True, _sp("DDATA", 2, device="d"))]
    assert _alerts(ddata) == ["data_before_birth"]
    ddata = _lifecycle(1) + [_pub(5, EDGE, True, _sp("DBIRTH", 2, device="d")),
                             _pub(6, EDGE, True, _sp("DDATA", 3, device="d"))]
    assert _alerts(ddata) == []


def test_rebirth_storm_needs_many_births_in_the_window():
    births = [_connect(0, EDGE, "e")] + [_pub(1 + i * 5, EDGE, True, _sp("NBIRTH", 0)) for i in range(6)]
    assert _alerts(births) == ["rebirth_storm"]
    slow = [_connect(0, EDGE, "e")] + [_pub(1 + i * 60, EDGE, True, _sp("NBIRTH", 0)) for i in range(6)]
    assert _alerts(slow) == []
    # rebirth requests: the host's (named by alias in the birth, here by name) six times in 30 s
    asks = [_connect(0, HOST, "h"), _pub(0.5, HOST, True, _state(True, 1))]
    asks += [_pub(1 + i * 5, HOST, True, CMD) for i in range(6)]
    assert _alerts(asks) == ["rebirth_storm"]
    assert _alerts(asks[:-1]) == []


def test_wildcard_subscription_by_non_host_only():
    def sub(t, fl, flt):
        m = MqttSubscribe("subscribe", int(t * NS), True, 1, False, False, 20, 1, ((flt, 0),))
        return MqttExchange(m.ts, fl, 4, (m,), "complete", (), 1024)
    host = [_connect(0, HOST, "h"), sub(1, HOST, "spBv1.0/#"), _pub(2, HOST, True, _state(True, 1))]
    assert _alerts(host) == []
    assert _alerts([_connect(0, OTHER, "x"), sub(1, OTHER, "$sparkplug/certificates/#")]) == ["wildcard_subscription"]
    assert _alerts([_connect(0, OTHER, "x"), sub(1, OTHER, "spBv1.0/g/NDATA/e")]) == []
    # a subscriber that stays silent is reported on anyone's traffic once the grace time has passed
    det = SparkplugDetector()
    for ev in [_connect(0, OTHER, "x"), sub(1, OTHER, "spBv1.0/#")] + _lifecycle(3):
        assert not det.on_event(ev)
    assert [a.rule_id for a in det.on_event(_pub(12, EDGE, True, _sp("NDATA", 4)))] == \
        ["otids.sparkplug.wildcard_subscription"]


# Sparkplug 3.0.0 section 6.4.17, the specification's own array examples (value -> bytes_value). Its FloatArray
# and DoubleArray examples are written big-endian against its own little-endian rule, its Int8Array example
# gives 0xEF for -23 (0xEF is -17) and its DateTimeArray example is 12 bytes for two values: we follow the
# rule, as Tahu and pysparkplug do, and leave those four out.
SPEC_ARRAYS = [
    (DataType.Int16Array, (-30000, 30000), "d08a3075"),
    (DataType.Int32Array, (-1, 315338746), "fffffffffaafcb12"),
    (DataType.Int64Array, (-4270929666821191986, -3601064768563266876), "ce0672ac189cbac4c4ba9c18ac7206ce"),
    (DataType.UInt8Array, (23, 250), "17fa"),
    (DataType.UInt16Array, (30, 52360), "1e0088cc"),
    (DataType.UInt32Array, (52, 3293969225), "3400000049fb55c4"),
    (DataType.UInt64Array, (52, 16444743074749521625), "3400000000000000d99e02d1b27637e4"),
    (DataType.BooleanArray, (False, False, True, True, False, True, False, False, True, True, False, True),
     "0c00000034d0"),
    (DataType.StringArray, ("ABC", "hello"), "4142430068656c6c6f00"),
]


@pytest.mark.parametrize("dtype,value,hexbytes", SPEC_ARRAYS, ids=[d.name for d, _, _ in SPEC_ARRAYS])
def test_specification_array_examples(dtype, value, hexbytes):
    assert convert(dtype, "bytes_value", bytes.fromhex(hexbytes)) == (value, None)


def test_senders_learned_in_the_baseline_are_not_rogues(tmp_path):
    import yaml
    b = tmp_path / "b.yaml"
    run_cli("learn", str(need(CRAFTED)), "-q", "-o", str(b))
    out = tmp_path / "a.ndjson"

    def rogue_alerts():
        run_cli("analyze", str(need(CRAFTED)), "-q", "-o", str(out), "--baseline", str(b))
        return [d for d in read_ndjson(out) if d["rule"]["id"] == "otids.sparkplug.rogue_command"]
    assert rogue_alerts() == []  # the laptop's commands were learned: a reviewed baseline makes it a sender
    data = yaml.safe_load(b.read_text())
    del _edge(data, "plantB/edge2")["commands"]["127.0.0.66 maint-laptop"]
    b.write_text(yaml.safe_dump(data, sort_keys=False))
    assert {d["source"]["ip"] for d in rogue_alerts()} == {"127.0.0.66"}


def test_float32_reads_as_its_shortest_decimal():
    births = Births()
    nb = decode_payload(parse_topic("spBv1.0/g/NBIRTH/e"),
                        _payload(("F", 1, DataType.Float, "float_value", 1.1),
                                 ("A", 2, DataType.FloatArray, "bytes_value", struct.pack("<3f", 0.1, -3.3, 1e-7))),
                        births)
    assert [m.value for m in nb.metrics] == [1.1, (0.1, -3.3, 1e-7)]
    assert struct.pack("<f", nb.metrics[0].value) == struct.pack("<f", 1.1)  # the same float32 bits
