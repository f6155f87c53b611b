"""OPC UA PubSub over MQTT (#14): UADP from asyncua and JSON NetworkMessages through mosquitto
(pcaps/make_pubsub_captures.py), decoded values against what was published, the require-security check and
the pubsub baseline section."""
from __future__ import annotations

import importlib.util

import pytest
import yaml

from conftest import PCAPS, need, read_ndjson, run_cli
from ids.pipeline import analyze
from ids.protocols.mqtt.pubsub.decode import decode_json, decode_uadp, looks_like
from ids.protocols.mqtt.pubsub.detector import PubSubDetector

CAP = PCAPS / "pubsub-mqtt.pcap"


def _gen():
    spec = importlib.util.spec_from_file_location("make_pubsub_captures", PCAPS / "make_pubsub_captures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _docs(detectors=()):
    _, col = analyze([str(need(CAP))], detectors=list(detectors))
    docs = [e.to_doc() for e in col.events if e.dataset == "otids.mqtt"]
    return [(d["mqtt"]["publish"]["topic"], d["mqtt"]["publish"]["pubsub"]) for d in docs
            if d["mqtt"].get("publish", {}).get("pubsub") and d["mqtt"]["publish"]["from_client"]], col.alerts


def test_uadp_and_json_values_equal_what_was_published():
    gen = _gen()
    msgs, _ = _docs()
    uadp = [p for t, p in msgs if t == "opcua/uadp/data/4711/7/11"]
    assert [p["sequence_number"] for p in uadp] == [1, 2, 3]
    for p, row in zip(uadp, gen.UADP_ROWS, strict=True):
        assert p["publisher_id"] == "4711" and p["writer_group_id"] == 7 and p["security_mode"] == "None"
        ds = p["dataset_messages"][0]
        assert ds["writer_id"] == 11 and ds["message_type"] == "key_frame" and ds["fields_named_from_metadata"]
        assert [ds["fields"][n] for n in gen.UADP_NAMES] == list(row)  # named from the ua-metadata
        assert ds["field_types"] == {"Speed": "Double", "Count": "Int32", "Mode": "String", "Histogram": "UInt16"}
    signed = [p for t, p in msgs if t == "opcua/uadp/data/4712/7/11"]
    assert len(signed) == 1 and signed[0]["security_mode"] == "Sign" and signed[0]["security_token_id"] == 3
    assert [signed[0]["dataset_messages"][0]["fields"][str(i)] for i in range(4)] == list(gen.UADP_ROWS[0])
    assert "fields_named_from_metadata" not in signed[0]["dataset_messages"][0]  # no metadata for 4712
    data = [p for t, p in msgs if p["message_type"] == "ua-data" and p["encoding"] == "json"]
    assert [t for t, p in msgs if p["encoding"] == "json" and p["message_type"] == "ua-data"] == \
        ["opcua/json/data/press-1/grp/press-values"] * 2 + ["factory/press-1/pubsub"]  # the last by content
    for p, row in zip(data, gen.JSON_ROWS + gen.JSON_ROWS[:1], strict=True):
        ds = p["dataset_messages"][0]
        assert p["publisher_id"] == "press-1" and ds["writer_id"] == 21 and ds["fields"] == row
    md = [p for t, p in msgs if p["message_type"] == "ua-metadata" and p["publisher_id"] == "press-1"]
    assert md[0]["metadata_fields"] == [{"name": "Temperature", "type": "Double"},
                                        {"name": "Pressure", "type": "Int32"}, {"name": "Running", "type": "Boolean"}]


def test_require_security():
    _, alerts = _docs([PubSubDetector()])
    got = sorted((a.extra["pubsub"]["publisher_id"], a.flow.client_ip) for a in alerts
                 if a.rule_id == "otids.pubsub.unsecured")
    # 4711's UADP and its JSON ua-metadata, press-1's JSON; not 4712 (signed), not the broker's deliveries
    assert got == [("4711", "127.0.0.20"), ("4711", "127.0.0.20"), ("press-1", "127.0.0.21")]
    _, alerts = _docs()
    assert not [a for a in alerts if a.rule_id.startswith("otids.pubsub.")]


def _baseline_alerts(tmp_path, edit=None):
    b = tmp_path / "b.yaml"
    run_cli("learn", str(need(CAP)), "-q", "-o", str(b))
    data = yaml.safe_load(b.read_text())
    if edit:
        edit(data)
        b.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "a.ndjson"
    run_cli("analyze", str(need(CAP)), "-q", "-o", str(out), "--baseline", str(b))
    return [d for d in read_ndjson(out) if d["rule"]["id"].startswith("otids.baseline.pubsub.")], data


def test_pubsub_baseline(tmp_path):
    alerts, data = _baseline_alerts(tmp_path)
    assert alerts == []
    entries = {e["publisher_id"]: e for e in data["pubsub"]}
    assert entries["4711"]["writers"]["11"]["fields"]["Count"]["seen"] == [-9, -7]
    assert entries["4712"]["security_modes"] == ["Sign"] and entries["press-1"]["security_modes"] == ["json"]

    def edit(d):
        e = {x["publisher_id"]: x for x in d["pubsub"]}
        d["pubsub"].remove(e["4712"])  # never seen: new publisher
        e["4711"]["security_modes"] = ["Sign"]  # it used to sign: None is a downgrade
        e["4711"]["writers"]["11"]["fields"]["Speed"]["band"] = [3.0, 3.8]  # 4.0 is outside
        e["press-1"]["writers"] = {}  # writer 21 unknown
    alerts, _ = _baseline_alerts(tmp_path, edit)
    assert sorted(a["rule"]["id"].rsplit(".", 1)[1] for a in alerts) == \
        ["field_out_of_band", "new_publisher", "new_writer", "security_downgraded"]


@pytest.mark.parametrize("cut", range(0, 49, 3))
def test_truncated_uadp_is_a_problem_not_an_exception(cut):
    whole = bytes.fromhex("f10167120907002a00010b0009050004000b0000000000000c4006f9ffffff0c020000006f6e"
                          "8503000000010002000300")
    out = decode_uadp(whole[:cut])
    assert out.encoding == "uadp" and (cut == 0 or out.problems or out.datasets)


def test_json_recognition():
    assert looks_like("x/y", b'{"MessageType":"ua-data"}') and not looks_like("x/y", b'{"temp": 3}')
    assert decode_json(b'{"MessageType": "ua-data", "Messages": 3}') is not None
    assert decode_json(b"[1, 2]") is None and decode_json(b"{bad") is None


@pytest.mark.parametrize("doc", [
    b'{"MessageType": "ua-metadata", "MetaData": {"Fields": 5}}',
    b'{"MessageType": "ua-data", "Messages": [{"Payload": [1, 2], "Status": {"Code": 7}}, 3]}',
    b'{"MessageType": "ua-data", "Messages": [{"DataSetWriterId": true, "Payload": {"a": {"Type": 99, "Body": 1}}}]}',
])
def test_json_of_the_wrong_shape(doc):
    out = decode_json(doc)
    assert out is not None and out.to_doc()["encoding"] == "json"


def test_uadp_float_reads_as_its_shortest_decimal():
    from asyncua import ua
    from asyncua.pubsub.uadp import UadpDataSetVariant, UadpHeader, UadpNetworkMessage, UInt16
    msg = UadpNetworkMessage(Header=UadpHeader(PublisherId=UInt16(1)), DataSetPayloadHeader=[UInt16(11)],
                             Payload=[UadpDataSetVariant(Data=[ua.Variant(1.1, ua.VariantType.Float),
                                                               ua.Variant([0.1, 2.2], ua.VariantType.Float)])])
    assert decode_uadp(msg.to_binary()).datasets[0].fields == (("0", 1.1, "Float"), ("1", [0.1, 2.2], "Float"))
