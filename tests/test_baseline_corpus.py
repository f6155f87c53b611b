"""Every third-party capture of the corpus (fuzzed, truncated and mixed ones included) goes through learn,
the file round trip and enforcement without error; and a baseline learned from a capture enforces that
same capture without a single alert (the learner asserts nothing its own traffic contradicts)."""
from __future__ import annotations

import pytest

from conftest import CORPUS, need
from ids.config import Config
from ids.detect.baseline import document
from ids.commands.baseline import learn_paths
from ids.detect.baseline.enforcer import BaselineDetector
from ids.pipeline import analyze


def _captures():
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))


def test_corpus_learn_and_self_enforce():
    caps = _captures()
    need(CORPUS)
    assert len(caps) > 50
    learned = {"modbus": 0, "opcua": 0, "mqtt": 0}
    for p in caps:
        b, learner, _ = learn_paths([str(p)], Config())
        text = b.dump()
        b2 = document.parse(text, f"{p.name}.yaml")
        assert b2.dump() == text, p  # the file reads back to the same file
        det = BaselineDetector(b2, Config().baseline)
        _, col = analyze([str(p)], Config(), [det])
        got = [a.reason for a in col.alerts if a.source == "baseline"]
        assert got == [], (p, got)
        for k in learned:
            learned[k] += bool(b.section(k))
    assert learned["modbus"] >= 20 and learned["opcua"] >= 25 and learned["mqtt"] >= 30, learned


def test_corpus_mqtt_username_with_question_mark_round_trips():
    """nDPI's mqtt.pcap: an Azure IoT Hub username `<hub>/<device>/?api-version=...`. Written plain inside
    a flow list, the `?` ended the scalar and the file would not load (issue found by the test above)."""
    p = need(CORPUS / "ndpi/pcap/mqtt.pcap")
    b, _, _ = learn_paths([str(p)], Config())
    text = b.dump()
    user = "iotazewpmlithub.azure-devices.net/P47775ID170W2120/?api-version=2018-06-30"
    assert f'      mqtt_username: ["{user}"]\n' in text
    b2 = document.parse(text, "mqtt.pcap.yaml")
    assert b2.section("assets")["100.67.35.238"]["identity"]["mqtt_username"] == [user]
    (e,) = [e for e in b2.section("mqtt").values() if e["client"] == "100.67.35.238"]
    assert e["usernames"] == [user]
