"""Every third-party capture of the corpus (fuzzed, truncated and mixed ones included) goes through learn,
the file round trip and enforcement without error; and a baseline learned from a capture enforces that
same capture without a single alert (the learner asserts nothing its own traffic contradicts)."""
from __future__ import annotations

import pytest

from conftest import CORPUS, need
from ids.config import Config
from ids.detect.baseline import model
from ids.detect.baseline.cli import learn_paths
from ids.detect.baseline.enforcer import BaselineDetector
from ids.pipeline import analyze


def _captures():
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))


def test_corpus_learn_and_self_enforce():
    caps = _captures()
    need(CORPUS)
    assert len(caps) > 50
    learned_any = 0
    for p in caps:
        b, learner, _ = learn_paths([str(p)], Config())
        text = b.dump()
        b2 = model.parse(text, f"{p.name}.yaml")
        assert b2.dump() == text, p  # the file reads back to the same file
        det = BaselineDetector(b2, Config().baseline)
        _, col = analyze([str(p)], Config(), [det])
        got = [a.reason for a in col.alerts if a.source == "baseline"]
        assert got == [], (p, got)
        learned_any += bool(b.section("modbus"))
    assert learned_any >= 20
