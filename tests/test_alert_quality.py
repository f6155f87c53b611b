"""Issue #20 items 9-12: one fact, one alert, the right severity, and words that say what happened.

Each test runs real captures from pcaps/ (made by the scripts beside them) through the CLI or the pipeline."""
from __future__ import annotations

import json
from collections import Counter

from conftest import PCAPS, ROOT, read_ndjson, run_cli

RULES = ["--rules", str(ROOT / "rules"), "--lists", str(PCAPS / "modbus-demo.lists.yml")]
REG = ["--registry", str(PCAPS / "auth-registry.yaml")]


def _alerts(tmp_path, cap, *extra):
    a = tmp_path / "a.ndjson"
    run_cli("analyze", str(PCAPS / cap), "-q", "-o", str(a), *extra)
    return read_ndjson(a)


# ------------------------------------------------------------------------------------------------ item 9

def test_anonymous_opcua_over_none_is_one_alert_naming_the_policy(tmp_path):
    docs = _alerts(tmp_path, "opcua-none-anonymous.pcap", *RULES, *REG)
    ids = Counter(d["rule"]["id"] for d in docs)
    assert ids == Counter({"otids.auth.opcua.unknown_device": 1, "otids.auth.opcua.anonymous_over_none": 1,
                           "otids.opcua.write_from_unknown_client": 3, "otids.opcua.call_from_unknown_client": 1})
    anon = next(d for d in docs if d["rule"]["id"] == "otids.auth.opcua.anonymous_over_none")
    assert anon["event"]["reason"].endswith("(policy.opcua_min_security_mode: Sign)")


def test_modbus_exception_flood_under_one_id(tmp_path):
    docs = _alerts(tmp_path, "modbus-alert-storm.pcap", *RULES)
    titles = {}
    for d in docs:
        titles.setdefault(d["rule"]["name"], set()).add(d["rule"]["id"])
    assert all(len(v) == 1 for v in titles.values()), titles
    assert sum(d["rule"]["id"] == "otids.anomaly.modbus.exception_flood" for d in docs) == 5


def test_shipped_rules_name_no_builtin_finding():
    """No shipped rule has the title of a built-in detector's rule (the duplicates of item 9)."""
    from ids.detect.anomaly import RULES as ANOMALY
    from ids.detect.auth.detector import RULES as AUTH
    from ids.detect.rules.loader import load_paths
    builtin = {r.name.lower() for r in AUTH.values()} | {r.name.lower() for r in ANOMALY.values()}
    shipped = {r.title.lower() for r in load_paths([str(ROOT / "rules")]).rules}
    assert "modbus exception flood" in builtin and not shipped & builtin
    assert not shipped & {"opc ua session on securitypolicy none"}


# ------------------------------------------------------------------------------------------------ item 10

def test_posture_without_a_site_policy_is_low_and_says_so(tmp_path):
    no_reg = _alerts(tmp_path, "auth-opcua-selfsigned.pcap")
    ss = [d for d in no_reg if d["rule"]["id"] == "otids.auth.cert.self_signed"]
    assert ss and all(d["event"]["severity"] == 21 for d in ss)
    assert all("no site policy given" in d["event"]["reason"] and "requires" not in d["event"]["reason"] for d in ss)
    with_reg = _alerts(tmp_path, "auth-opcua-selfsigned.pcap", *REG)
    assert [d["event"]["severity"] for d in with_reg if d["rule"]["id"] == "otids.auth.cert.self_signed"] == [73]
    anon = [d for d in _alerts(tmp_path, "mqtt-mosquitto.pcap") if d["rule"]["id"] == "otids.auth.mqtt.anonymous"]
    assert anon and all(d["event"]["severity"] == 21 and "no site policy given" in d["event"]["reason"] for d in anon)


def test_one_severity_scale_new_master_not_below_new_topic():
    from ids.detect.baseline.rules import RULES as B
    from ids.events import SEVERITY_SCORE as S
    assert S[B["otids.baseline.new_talker_pair"].severity] >= S[B["otids.baseline.mqtt.new_topic"].severity]
    assert S[B["otids.baseline.modbus.new_unit"].severity] >= S[B["otids.baseline.mqtt.new_subscription"].severity]
    text = (ROOT / "docs" / "SEVERITY.md").read_text()
    for sev in ("critical", "high", "medium", "low", "info"):
        assert f"**{sev}**" in text


# ------------------------------------------------------------------------------------------------ item 11

def test_follow_ups_are_per_identity(tmp_path):
    docs = _alerts(tmp_path, "mqtt-mosquitto.pcap")
    for d in docs:
        cid = d["otids"]["alert"].get("auth", {}).get("client_id")
        if cid:  # a follow-up never speaks for another client id
            assert f"client id '{cid}'" in d["event"]["reason"], d["event"]["reason"]
    cc = Counter(d["otids"]["alert"]["auth"]["client_id"] for d in docs
                 if d["rule"]["id"] == "otids.auth.mqtt.cleartext_credentials")
    assert cc["sensor-01"] == 1 and cc["sensor-02"] == 1  # same user, two identities, two findings


def test_follow_up_and_next_alert_are_one_alert_per_window():
    from ids.detect.auth.detector import AuthDetector
    from ids.pipeline import analyze
    det = AuthDetector(None, None)
    det.realert = det.limiter.window = 1  # every sighting after the first falls outside the window
    _run, col = analyze([str(PCAPS / "mqtt-mosquitto.pcap")], detectors=[det])
    seen = Counter((a.rule_id, a.reason.split(" (also ")[0]) for a in col.alerts)
    assert all(n == len([a for a in col.alerts if (a.rule_id, a.reason.split(" (also ")[0]) == k]) for k, n in seen.items())
    assert not [a for a in col.alerts if "more time(s)" in a.reason]  # no separate follow-up beside an alert


def test_function_code_scan_once_per_window_listing_codes():
    from ids.detect.rules.detector import RulesDetector, load_ruleset
    c = load_ruleset([str(ROOT / "rules" / "modbus.yml")], str(ROOT / "rules" / "lists.example.yml"))
    det = RulesDetector(c)
    out = []
    t0 = 1_700_000_000
    for i, fc in enumerate(list(range(1, 128)) * 1):  # 127 codes over 70 s, one scanner, one device
        ts = t0 * 10**9 + int(i * 70 / 127 * 1e9)
        doc = {"@timestamp": None, "event": {"dataset": "otids.modbus", "kind": "event"},
               "source": {"ip": "10.99.0.7", "port": 40000}, "destination": {"ip": "10.10.3.4", "port": 502},
               "modbus": {"function_code": fc, "unit_id": 1, "function": f"f{fc}"}}
        out += [a for a in det.on_doc(doc, ts) or () if a.rule_id == "otids.modbus.function_code_scan"]
    assert len(out) == 2  # one per 60 s window, not one per 8 codes (16)
    assert out[0].reason.endswith(": 1, 2, 3, 4, 5, 6, 7, 8")


def test_every_rule_reason_says_what_happened(tmp_path):
    docs = _alerts(tmp_path, "modbus-demo.pcap", *RULES)
    w = [d["event"]["reason"] for d in docs if d["rule"]["id"] == "otids.modbus.write_from_unauthorized_host"]
    assert any("write_multiple_registers (FC 16), unit 1, address 20 x4, value [100, 200, 300, 400]" in r for r in w)
    for d in docs:
        assert d["event"]["reason"] != d["rule"]["name"] and len(d["event"]["reason"]) > len(d["rule"]["name"]) + 10


# ------------------------------------------------------------------------------------------------ item 12

def test_wording_signature_oid_of_a_corpus_certificate(corpus, tmp_path):
    """The corpus's OPC UA certificate is signed with sha1WithRSA under the OIW OID 1.3.14.3.2.29."""
    cap = corpus / "collections" / "ITI-ICS-Security-Tools" / "pcaps" / "OPC" / "opc-ua-ap-method-wireshark-freeze.pcap"
    a = tmp_path / "a.ndjson"
    run_cli("analyze", str(cap), "-q", "-o", str(a))
    text = a.read_text()
    assert "Unknown OID" not in text and "signed with SHA1-RSA" in text


def test_wording(tmp_path):
    text = json.dumps(_alerts(tmp_path, "mqtt-mosquitto.pcap") + _alerts(tmp_path, "auth-opcua-downgrade.pcap", *REG))
    assert "user 'None'" not in text and "Unknown OID" not in text
    down = [d for d in _alerts(tmp_path, "auth-opcua-downgrade.pcap", *REG) if d["rule"]["id"] == "otids.auth.opcua.downgrade"]
    assert down and all("None (None)" not in d["event"]["reason"] for d in down)
