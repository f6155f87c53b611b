"""Suricata rule import: the `modbus:` keyword on real captures with Suricata's documented semantics
(addresses from 1, exclusive ranges, requests only), the mqtt.* keywords and sticky buffers on event
documents shaped like the MQTT contract (mirror of Suricata's EVE mqtt record), and clear failures for
what the importer does not support."""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import CORPUS, PCAPS, need, read_ndjson, run_cli
from ids.detect.rules.detector import RulesDetector, compile_rules
from ids.detect.rules.rule import SiteLists
from ids.detect.rules.suricata import load_suricata_file
from ids.pipeline import analyze


def load(text: str, lists=None):
    rs = load_suricata_file("t.rules", text)
    c = compile_rules(rs, SiteLists(lists=lists or {}))
    return rs, c


def counts_on(pcap, text: str, lists=None) -> Counter:
    rs, c = load(text, lists)
    assert not rs.issues and not c.errors, [str(i) for i in rs.issues + c.errors]
    _, col = analyze([str(pcap)], detectors=[RulesDetector(c)])
    return Counter(a.rule_id for a in col.alerts if a.source == "rules")


# ---------------------------------------------------------------------------------------------- modbus

DEMO_RULES = """\
alert modbus any any -> any any (msg:"diag return query data"; modbus: function 8, subfunction 0; sid:1;)
alert modbus any any -> any any (msg:"diag restart"; modbus: function 8, subfunction 1; sid:2;)
alert modbus any any -> any any (msg:"read coils"; modbus: access read coils; sid:3;)
alert modbus any any -> any any (msg:"write holding at 11 (PDU address 10)"; modbus: access write holding, address 11; sid:4;)
alert modbus any any -> any any (msg:"write holding at 10 (PDU 9)"; modbus: access write holding, address 10; sid:5;)
alert modbus any any -> any any (msg:"value 1234 at 11"; modbus: access write holding, address 11, value 1234; sid:6;)
alert modbus any any -> any any (msg:"value >1234 at 11"; modbus: access write holding, address 11, value >1234; sid:7;)
alert modbus any any -> any any (msg:"user function"; modbus: function user; sid:8;)
alert modbus any any -> any any (msg:"not public"; modbus: function !public; sid:9;)
alert modbus any any -> any any (msg:"reserved"; modbus: function reserved; sid:10;)
alert modbus any any -> any any (msg:"unit 1 fc 3"; modbus: unit 1, function 3; sid:11;)
alert modbus any any -> any any (msg:"unit >1"; modbus: unit >1; sid:12;)
alert modbus any any -> any 5020 (msg:"fc 3 to port 5020"; modbus: function 3; sid:13;)
alert modbus $ews any -> any any (msg:"write from ews"; modbus: access write; sid:14;)
alert modbus !$ews any -> any any (msg:"write not from ews"; modbus: access write; sid:15;)
alert modbus any any -> any any (msg:"read input address range"; modbus: access read input, address 2<>9; sid:16;)
alert modbus any any -> any any (msg:"write coils addr 17-24"; modbus: access write coils, address 17<>24; sid:17;)
alert modbus any any -> any any (msg:"fc23 read side"; modbus: access read holding, address >20; sid:18;)
alert modbus any any -> any any (msg:"threshold"; modbus: access read; threshold: type both, track by_src, count 5, seconds 60; sid:19;)
"""


def test_modbus_keyword_on_demo_capture():
    got = counts_on(PCAPS / "modbus-demo.pcap", DEMO_RULES, {"ews": ["127.0.0.20"]})
    # worked out from the capture (pcaps/make_modbus_demo.py): the HMI 127.0.0.10 polls FC 1-4 three times
    # (FC 3 at 0-9, FC 4 at 0-7), reads FC 3/4 at 0-3 from the server on port 5020; the EWS 127.0.0.20
    # writes FC 5, 6 (PDU 10 = 1234), 15 (PDU 16-23), 16, 22 (PDU 10), 23 (reads 20-23), sends FC 8/0,
    # 17, 43/14 twice, FC 3 at 1000-1001, FC 65 and FC 43/13. Unit 1 throughout.
    expect = {
        "1": 1,   # FC 8/0
        "3": 3,   # FC 1 in each HMI poll
        "4": 2,   # FC 6 and FC 22 at PDU 10 = rule address 11 (Suricata addresses start at 1)
        "6": 1,   # FC 6 wrote 1234 there; FC 22 carries masks, no value
        "8": 1,   # FC 65 is user-defined
        "9": 1,   # !public: FC 65 only
        "11": 5,  # FC 3, unit 1: three polls, the EWS read, the read on port 5020
        "13": 1,
        "14": 6,  # all six writes come from the engineering workstation
        "16": 4,  # FC 4 at 1-8 (three polls) and 1-4 (port 5020) overlap 2<>9 (exclusive ends)
        "17": 1,  # FC 15 at 17-24 overlaps 17<>24
        "18": 2,  # >20: FC 3 at 1001-1002 and the FC 23 read side at 21-24
        "19": 1,  # 'both': once for the HMI (14 reads); the EWS has 2 reads
    }
    for sid in ("2", "5", "7", "10", "12", "15"):
        expect[sid] = 0  # must not fire
    assert {k: got.get(k, 0) for k in expect} == expect, got


def test_modbus_keyword_on_crafted_capture():
    rules = """\
alert modbus any any -> any any (msg:"broadcast"; modbus: unit 0; sid:1;)
alert modbus any any -> any any (msg:"listen only"; modbus: function 8, subfunction 4; sid:2;)
alert modbus any any -> any any (msg:"fc 90"; modbus: function 90; sid:3;)
alert modbus any any -> any any (msg:"reserved incl. 90"; modbus: function reserved; sid:4;)
alert modbus any any -> any any (msg:"units 3-7 exclusive"; modbus: unit 2<>8; sid:5;)
alert modbus any any -> any any (msg:"exceptions"; modbus: function all; threshold: type threshold, track by_both, count 10, seconds 5; sid:6;)
"""
    got = counts_on(PCAPS / "rules-modbus.pcap", rules)
    assert {k: got.get(k, 0) for k in "123456"} == {"1": 1, "2": 1, "3": 3, "4": 3, "5": 5, "6": 2}, got


@pytest.mark.parametrize("option,message", [
    ("modbus: access write discretes", "discretes can only be read"),
    ("modbus: access write holding, address 1<>9, value 3", "value needs a single address"),
    ("modbus: function 0", "invalid modbus function 0"),
    ("modbus: function bogus", "unknown modbus function class 'bogus'"),
    ("modbus: access execute", "unsupported modbus option"),
    ("content:\"abc\"", "'content' outside a sticky buffer"),
    ("dsize:>10", "keyword 'dsize' is not supported"),
    ("app-layer-event:modbus.flooded", "app-layer-event modbus.flooded: otids does not raise this event"),
])
def test_unsupported_or_invalid_fail_the_rule(option, message):
    rs, _ = load(f'alert modbus any any -> any any (msg:"x"; {option}; sid:7;)\n'
                 'alert modbus any any -> any any (msg:"ok"; modbus: function 3; sid:8;)\n')
    assert [r.id for r in rs.rules] == ["8"]  # the other rule still loads
    assert len(rs.issues) == 1 and message in rs.issues[0].message, rs.issues
    i = rs.issues[0]
    assert (i.source.path, i.source.line, i.rule_id) == ("t.rules", 1, "7") and i.source.col > 40


def test_suricata_event_rules_load_where_otids_names_the_event(tmp_path):
    """Suricata's own modbus/mqtt event rules (app-layer-event) load wherever otids raises the same anomaly;
    each rule naming an event otids does not raise is reported at its place, none silently dropped (#20 item 8)."""
    for f, loaded in (("modbus-events.rules", {"2250001", "2250002", "2250003", "2250006", "2250008"}),
                      ("mqtt-events.rules", {str(2229000 + i) for i in range(9)})):
        path = need(CORPUS / "rules" / "suricata" / f)
        rs = load_suricata_file(str(path))
        n = sum(1 for ln in path.read_text().splitlines() if ln.startswith("alert "))
        assert {r.id for r in rs.rules} == loaded and len(rs.rules) + len(rs.issues) == n
        assert all("otids does not raise this event" in i.message and i.source.line for i in rs.issues)
    r = run_cli("rules", "lint", str(CORPUS / "rules" / "suricata" / "modbus-events.rules"), check_rc=1)
    assert ":8:" in r.stdout and "[suricata]" in r.stdout
    # the anomaly fires the imported rule, which keeps its origin in rule.ruleset
    a = tmp_path / "a.ndjson"
    run_cli("analyze", str(need(CORPUS / "suricata-verify" / "mqtt-events-unintroduced" / "input.pcap")), "-q",
            "-o", str(a), "--rules", str(CORPUS / "rules" / "suricata" / "mqtt-events.rules"))
    docs = [d for d in read_ndjson(a) if d["rule"]["id"] == "2229005"]
    assert len(docs) == 1 and docs[0]["rule"]["ruleset"] == "mqtt-events.rules"
    assert docs[0]["otids"]["alert"]["rule_source"].startswith(str(CORPUS / "rules" / "suricata" / "mqtt-events.rules"))


def test_mqtt_type_indexed_form():
    rs, c = load('alert mqtt any any -> any any (msg:"a"; mqtt.type:CONNECT,0; sid:1;)\n'
                 'alert mqtt any any -> any any (msg:"b"; mqtt.type:CONNACK,0; sid:2;)\n'
                 'alert mqtt any any -> any any (msg:"c"; mqtt.type:CONNACK,1; sid:3;)\n')
    assert not rs.issues
    det = RulesDetector(c)
    doc = {"event": {"dataset": "otids.mqtt"}, "mqtt": {"types": ["connect", "connack"]},
           "source": {"ip": "10.0.0.1", "port": 1}, "destination": {"ip": "10.0.0.2", "port": 1883}}
    assert sorted(a.rule_id for a in det.on_doc(doc, 1)) == ["1", "3"]


def test_header_addresses_ports_and_direction():
    rs, c = load('alert modbus [10.0.0.0/8,!10.9.0.0/16] any -> $plcs 502 (msg:"a"; modbus: function 6; sid:1;)\n'
                 'alert modbus any 502 -> $hmis any (msg:"b"; flow:to_client; modbus: function 3; sid:2;)\n'
                 'alert modbus 10.1.1.1 any <> 10.2.2.2 any (msg:"c"; modbus: function 4; sid:3;)\n',
                 {"plcs": ["10.5.0.0/24"], "hmis": ["10.7.0.1"]})
    det = RulesDetector(c)

    def d(fc, s, dst, dport=502):
        return {"event": {"dataset": "otids.modbus"}, "source": {"ip": s, "port": 40000},
                "destination": {"ip": dst, "port": dport}, "modbus": {"function_code": fc, "request": {}}}
    ids = lambda doc: [a.rule_id for a in det.on_doc(doc, 1) or []]  # noqa: E731
    assert ids(d(6, "10.1.0.1", "10.5.0.9")) == ["1"]
    assert ids(d(6, "10.9.0.1", "10.5.0.9")) == []  # negated block
    assert ids(d(6, "10.1.0.1", "10.5.1.9")) == []
    assert ids(d(6, "10.1.0.1", "10.5.0.9", 503)) == []
    assert ids(d(3, "10.7.0.1", "10.5.0.9")) == ["2"]  # to_client: the rule's source is the server
    assert ids(d(4, "10.2.2.2", "10.1.1.1")) == ["3"] and ids(d(4, "10.1.1.1", "10.2.2.2")) == ["3"]
    r = c.rules[0].rule
    assert (r.id, r.title, r.severity, r.origin) == ("1", "a", "low", "suricata")


def test_meta_keywords():
    rs, c = load('alert modbus any any -> any any (msg:"m"; modbus: function 90; classtype:attempted-admin; '
                 'reference:url,example.org/umas; reference:cve,2021-22779; rev:3; metadata:created_at 2024; sid:42;)\n')
    r = c.rules[0].rule
    assert r.severity == "high" and r.references == ("https://example.org/umas",
                                                     "https://www.cve.org/CVERecord?id=CVE-2021-22779")
    a = RulesDetector(c).on_doc({"event": {"dataset": "otids.modbus"}, "modbus": {"function_code": 90, "request": {}}}, 1)
    doc = a[0].to_doc()
    assert doc["rule"]["id"] == "42" and doc["rule"]["name"] == "m"
    assert doc["otids"]["alert"]["suricata"] == {"sid": 42, "rev": 3, "classtype": "attempted-admin"}


# ---------------------------------------------------------------------------------------------- mqtt

def mqtt(types, **parts):
    m = {"types": types, "protocol_version": parts.pop("protocol_version", 5)}
    m.update(parts)
    return {"event": {"dataset": "otids.mqtt"}, "source": {"ip": "10.0.0.1"}, "destination": {"ip": "10.0.0.2"},
            "mqtt": m}


CONNECT = mqtt(["connect", "connack"],
               connect={"protocol_string": "MQTT", "protocol_version": 5, "client_id": "", "username": "user",
                        "password": "pass", "qos": 0, "retain": False, "dup": False,
                        "flags": {"username": True, "password": True, "will": False, "will_retain": False,
                                  "clean_session": True}},
               connack={"session_present": False, "return_code": 0, "qos": 0, "retain": False, "dup": False})
PUBLISH = mqtt(["publish"], publish={"topic": "topicX", "qos": 0, "retain": False, "dup": False,
                                     "message": b"\xff\xd8\xff\xe0\x00\x10JFIF".decode("utf-8", "surrogateescape")})
SUBSCRIBE = mqtt(["subscribe", "suback"],
                 subscribe={"qos": 1, "retain": False, "dup": False, "message_id": 1,
                            "topics": [{"topic": "topicX", "qos": 0}, {"topic": "topicY", "qos": 0}]},
                 suback={"qos": 0, "retain": False, "dup": False, "message_id": 1, "qos_granted": [0, 0]})
DISCONNECT = mqtt(["disconnect"], disconnect={"qos": 0, "retain": False, "dup": False, "reason_code": 0})


def names(c, doc):
    return sorted(a.rule_name for a in RulesDetector(c).on_doc(doc, 1) or [])


@pytest.mark.parametrize("test", ["mqtt-connect-rules", "mqtt-pub-rules", "mqtt-sub-rules"])
def test_suricata_verify_mqtt_rules_on_documents(test):
    """The suricata-verify test.rules, on documents shaped as the EVE records its test.yaml describes:
    per exchange, the alerts Suricata raises for it (the per-signature totals are the pcap test's)."""
    rs = load_suricata_file(str(need(CORPUS / "suricata-verify" / test / "test.rules")))
    assert not rs.issues
    c = compile_rules(rs, SiteLists())
    total = Counter()
    exchanges = [CONNECT, SUBSCRIBE if test == "mqtt-sub-rules" else PUBLISH, DISCONNECT]
    for d in exchanges:
        total.update(names(c, d))
    if test == "mqtt-connect-rules":
        assert total == {"MQTT CONNECT protocol string SUCCESS": 1, "MQTT CONNECT protocol string SUCCESS2": 1,
                         "MQTT CONNACK reason code 0": 1, "MQTT DISCONNECT reason code 0": 1}
    elif test == "mqtt-pub-rules":
        assert total == {"MQTT Test CONNACK": 1, "MQTT Test DISCONNECT": 1, "MQTT Test flags": 3,
                         "MQTT QOS 0 (val0)": 3, "MQTT proto version 5 CONNECT": 1, "MQTT CONNECT flags": 1,
                         "MQTT CONNECT username": 1, "MQTT CONNECT password": 1, "MQTT PUBLISH topicX": 1,
                         "MQTT PUBLISH JPEG message": 1}
    else:
        assert total == {"MQTT Test CONNACK": 1, "MQTT Test DISCONNECT": 1, "MQTT Test flags": 3,
                         "MQTT QOS 1 (val0)": 3, "MQTT proto version 5 CONNECT": 1, "MQTT CONNECT flags": 1,
                         "MQTT CONNECT username": 1, "MQTT CONNECT password": 1, "MQTT SUBSCRIBE topicY": 1,
                         "MQTT SUBACK topicY reason code 0": 1}


def sig(body: str):
    rs, c = load(f'alert mqtt any any -> any any (msg:"x"; {body}; sid:9;)\n')
    assert not rs.issues, rs.issues
    return c


@pytest.mark.parametrize("body,doc,n", [
    ("mqtt.type:PUBLISH", PUBLISH, 1), ("mqtt.type:3", PUBLISH, 1), ("mqtt.type:CONNECT", PUBLISH, 0),
    ("mqtt.qos:1", SUBSCRIBE, 1), ("mqtt.qos:2", SUBSCRIBE, 0),
    ("mqtt.flags:retain", PUBLISH, 0), ("mqtt.flags:!retain,!dup", PUBLISH, 1),
    ("mqtt.protocol_version:>4", PUBLISH, 1), ("mqtt.protocol_version:3-4", PUBLISH, 0),
    ("mqtt.reason_code:0", SUBSCRIBE, 1), ("mqtt.connack.return_code:0", CONNECT, 1),
    ("mqtt.connack.return_code:134", CONNECT, 0), ("mqtt.connack.session_present:no", CONNECT, 1),
    ("mqtt.connack.session_present:true", CONNECT, 0),
    ("mqtt.connect.flags:username,!will", CONNECT, 1), ("mqtt.connect.flags:will", CONNECT, 0),
    ("mqtt.connect.clientid; content:\"a\"", CONNECT, 0),  # empty client id: no buffer
    ("mqtt.connect.clientid; bsize:0", CONNECT, 0),
    ("mqtt.connect.username; content:\"USER\"; nocase", CONNECT, 1),
    ("mqtt.connect.username; content:\"USER\"", CONNECT, 0),
    ("mqtt.connect.username; content:!\"root\"", CONNECT, 1),
    ("mqtt.connect.password; pcre:\"/^pa+s{2}$/\"", CONNECT, 1),
    ("mqtt.connect.protocol_string; content:\"MQTT\"; startswith; endswith", CONNECT, 1),
    ("mqtt.connect.protocol_string; bsize:4", CONNECT, 1), ("mqtt.connect.protocol_string; bsize:>4", CONNECT, 0),
    ("mqtt.publish.topic; content:\"pic\"; depth:3", PUBLISH, 0),
    ("mqtt.publish.topic; content:\"top\"; depth:3", PUBLISH, 1),
    ("mqtt.publish.topic; content:\"X\"; endswith", PUBLISH, 1),
    ("mqtt.publish.message; content:\"|FF D8|\"; startswith", PUBLISH, 1),
    ("mqtt.publish.message; content:\"JFIF\"; offset:6", PUBLISH, 1),
    ("mqtt.publish.message; content:\"JFIF\"; offset:7", PUBLISH, 0),
    # multi-buffer: both contents must hold on one subscribed topic
    ("mqtt.subscribe.topic; content:\"topic\"; content:\"Y\"", SUBSCRIBE, 1),
    ("mqtt.subscribe.topic; content:\"X\"; content:\"Y\"", SUBSCRIBE, 0),
    ("mqtt.unsubscribe.topic; content:\"a\"", SUBSCRIBE, 0),
])
def test_mqtt_keywords(body, doc, n):
    assert len(names(sig(body), doc)) == n


@pytest.mark.parametrize("body,message", [
    ("mqtt.type:BOGUS", "unknown MQTT type"), ("mqtt.qos:3", "0, 1 or 2"),
    ("mqtt.flags:dup,dup", "repeated flag"), ("mqtt.connect.flags:8", "numeric mqtt.connect.flags"),
    ("mqtt.publish.topic; content:\"a\"; within:3", "relative modifier 'within'"),
    ("mqtt.publish.topic; pcre:\"/a/R\"", "pcre modifier 'R'"),
    ("mqtt.publish.topic", "has no content, pcre or bsize"),
    ("mqtt.publish.topic; nocase", "must follow a content"),
    ("mqtt.connack.session_present:maybe", "yes, true, no or false"),
])
def test_mqtt_errors(body, message):
    rs, _ = load(f'alert mqtt any any -> any any (msg:"x"; {body}; sid:9;)\n')
    assert not rs.rules and message in rs.issues[0].message, rs.issues


def test_password_rules_see_secrets_but_alerts_do_not_carry_them():
    from ids.detect.rules.detector import _doc_of

    class Ev:
        dataset = "otids.mqtt"
        ts = 1

        def to_doc(self, include_secrets=False):
            d = {k: v for k, v in CONNECT.items()}
            d["mqtt"] = dict(CONNECT["mqtt"])
            d["mqtt"]["connect"] = dict(CONNECT["mqtt"]["connect"])
            if not include_secrets:
                del d["mqtt"]["connect"]["password"]
            return d
    c = sig('mqtt.connect.password; content:"pass"')
    assert c.index["otids.mqtt"].needs_secrets
    alerts = RulesDetector(c).on_event(Ev())
    assert len(alerts) == 1 and "password" not in alerts[0].to_doc()["mqtt"]["connect"]
    assert "password" not in _doc_of(Ev(), False)["mqtt"]["connect"]
