"""Issue #20 item 14 (the parts outside the Elasticsearch shipper): our own baseline alerts validate clean
against the field definitions (no null fields) and `es validate` fails on a null; `rules dry-run` over
captures from different years adds their spans instead of measuring decades between them."""
from __future__ import annotations

import json

from conftest import CORPUS, PCAPS, ROOT, need, run_cli


def test_baseline_alerts_have_no_null_fields_and_validate_fails_on_one(tmp_path):
    a = tmp_path / "a.ndjson"
    run_cli("analyze", str(PCAPS / "sim" / "changes.pcap"), "-q", "-o", str(a), "--baseline",
            str(ROOT / "models" / "sim-baseline.yaml"))
    docs = [json.loads(x) for x in a.read_text().splitlines()]
    assert any(d["rule"]["category"] == "baseline" for d in docs)
    run_cli("es", "validate", str(a))  # exit 0: every document clean
    d = docs[0]
    d["otids"]["alert"].setdefault("baseline", {})["entry"] = None
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps(d) + "\n")
    p = run_cli("es", "validate", str(bad), check_rc=1)
    assert "null value" in p.stdout


def test_dry_run_across_years_adds_spans():
    old = need(CORPUS / "zeek" / "Traces" / "modbus" / "modbusSmall.pcap")  # years before the demo
    p = run_cli("rules", "dry-run", "rules", str(PCAPS / "modbus-demo.pcap"), str(old), "--lists",
                str(PCAPS / "modbus-demo.lists.yml"), "--json")
    r = json.loads(p.stdout)
    assert 0 < r["span_seconds"] < 3600, r["span_seconds"]
    assert sum(x["per_day"] for x in r["rules"]) > 100
