"""suricata-verify MQTT rule-keyword tests (../shared/corpus/suricata-verify/mqtt-connect-rules,
mqtt-pub-rules, mqtt-sub-rules; OISF, MIT licence): each test.rules is loaded through the otids Suricata
importer and the test's pcap run through the whole pipeline; the alerts must be exactly those test.yaml
expects per signature, must-not-fire checks (count 0) included.

Needs the MQTT dissector (otids.mqtt events shaped like Suricata's EVE mqtt record).
"""
from __future__ import annotations

from collections import Counter

import pytest
import yaml

from conftest import CORPUS, need
from ids.detect.rules.detector import RulesDetector, compile_rules
from ids.detect.rules.rule import SiteLists
from ids.detect.rules.suricata import load_suricata_file
from ids.pipeline import analyze

TESTS = ["mqtt-connect-rules", "mqtt-pub-rules", "mqtt-sub-rules"]


def _expected(test_dir):
    spec = yaml.safe_load((test_dir / "test.yaml").read_text())
    out = {}
    for chk in spec["checks"]:
        f = chk.get("filter") or {}
        m = f.get("match") or {}
        if m.get("event_type") == "alert":
            out[m["alert.signature"]] = f["count"]
    pcap = spec.get("pcap")
    pcap = (test_dir / pcap).resolve() if pcap else next(test_dir.glob("*.pcap"))
    return out, pcap


@pytest.mark.parametrize("name", TESTS)
def test_suricata_verify_mqtt_rules(name):
    d = need(CORPUS / "suricata-verify" / name)
    expected, pcap = _expected(d)
    assert expected, f"{name}: test.yaml names no alert checks"
    rs = load_suricata_file(str(d / "test.rules"))
    assert not rs.issues, [str(i) for i in rs.issues]
    c = compile_rules(rs, SiteLists())
    assert not c.errors, [str(i) for i in c.errors]
    assert len(c.rules) == len(rs.rules)
    _, col = analyze([str(need(pcap))], detectors=[RulesDetector(c)])
    got = Counter(a.rule_name for a in col.alerts if a.source == "rules")
    mqtt_events = [e for e in col.events if getattr(e, "dataset", "") == "otids.mqtt"]
    assert mqtt_events, f"{pcap.name}: no otids.mqtt events (the MQTT dissector is missing)"
    for sig, n in expected.items():
        assert got.get(sig, 0) == n, f"{name}: '{sig}': {got.get(sig, 0)} alert(s), test.yaml expects {n}"
    # nothing beyond what test.yaml names (every signature of these tests is covered by a check)
    unexpected = {s: n for s, n in got.items() if s not in expected}
    assert not unexpected, f"{name}: alerts test.yaml does not expect: {unexpected}"
