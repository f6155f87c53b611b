"""Issue #20 items 6 and 13: site suppressions cover every detector (anomaly, auth, rules) with `rule: '*'`
meaning every alert and the summary counting what was suppressed; the terminal summary never cuts a rule
id, says when checksums look offloaded, bounds long tables, shows alerts per host, and names damaged and
unreadable files for what they are."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from conftest import PCAPS, ROOT, read_ndjson

STORM = str(PCAPS / "modbus-alert-storm.pcap")
RULES = ["--rules", str(ROOT / "rules"), "--lists", str(PCAPS / "modbus-demo.lists.yml")]


def otids(*args, rc=0, columns=None):
    env = dict(os.environ)
    if columns:
        env["COLUMNS"] = str(columns)
    p = subprocess.run([sys.executable, "-m", "ids.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == rc, f"rc={p.returncode}\n{p.stderr}"
    return p


def _ids(path):
    return Counter(d["rule"]["id"] for d in read_ndjson(path))


def test_star_suppresses_every_detector_and_summary_counts_it(tmp_path):
    lists = tmp_path / "lists.yml"
    lists.write_text("suppressions:\n  - rule: '*'\n    reason: maintenance window\n")
    a = tmp_path / "a.ndjson"
    before = otids("analyze", STORM, "-o", a)
    n = sum(_ids(a).values())
    assert n > 100 and all(r.startswith("otids.anomaly.") for r in _ids(a))
    p = otids("analyze", STORM, "-o", a, "--lists", lists)
    assert sum(_ids(a).values()) == 0
    assert f"Alerts: none; {n} suppressed" in p.stderr, p.stderr
    assert "suppressed" not in before.stderr


def test_suppression_by_id_and_match_on_builtin_detectors(tmp_path):
    lists = tmp_path / "lists.yml"
    lists.write_text("suppressions:\n"
                     "  - rule: otids.anomaly.modbus.unsolicited_response\n    reason: known device quirk\n"
                     "  - rule: '*'\n    match: {source.ip: 10.10.0.10}\n    reason: test bench\n")
    a0, a1 = tmp_path / "a0.ndjson", tmp_path / "a1.ndjson"
    otids("analyze", STORM, "-q", "-o", a0, *RULES)
    otids("analyze", STORM, "-q", "-o", a1, "--rules", ROOT / "rules", "--lists", lists)
    d0 = [d for d in read_ndjson(a0) if d["rule"]["category"] == "anomaly"]
    d1 = [d for d in read_ndjson(a1) if d["rule"]["category"] == "anomaly"]
    want = [d for d in d0 if d["rule"]["id"] != "otids.anomaly.modbus.unsolicited_response"
            and d["source"]["ip"] != "10.10.0.10"]
    assert len(d1) == len(want) < len(d0)


def test_auth_alerts_suppressed_too(tmp_path):
    cap = PCAPS / "opcua-none-anonymous.pcap"
    reg = ["--registry", PCAPS / "auth-registry.yaml"]
    a = tmp_path / "a.ndjson"
    otids("analyze", cap, "-q", "-o", a, *reg)
    auth = [r for r in _ids(a) if r.startswith("otids.auth.")]
    assert auth
    lists = tmp_path / "lists.yml"
    lists.write_text("suppressions:\n" + "".join(f"  - rule: {r}\n    reason: accepted risk\n" for r in auth))
    otids("analyze", cap, "-q", "-o", a, *reg, "--lists", lists)
    assert not [r for r in _ids(a) if r.startswith("otids.auth.")]


def test_summary_never_cuts_rule_ids_and_bounds_tables(tmp_path):
    p = otids("analyze", STORM, "-o", tmp_path / "a.ndjson", *RULES, columns=80)
    for rid in _ids(tmp_path / "a.ndjson"):
        assert rid in p.stderr, rid
    assert "Alerts by source host" in p.stderr and "and 30 more" in p.stderr


def test_summary_checksums_files_and_directories(tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((PCAPS / "modbus-demo.pcap").read_bytes()[:3000])
    p = otids("analyze", cut, "-o", tmp_path / "a.ndjson", rc=1, columns=200)
    assert "read 1 file(s) (1 damaged)" in p.stderr
    assert "bad checksums: 31 of 31 packets checked" in p.stderr and "checksum offload" in p.stderr
    txt = tmp_path / "t.pcap"
    txt.write_text("text\n")
    p = otids("analyze", txt, "-o", tmp_path / "a.ndjson", rc=2, columns=200)
    assert "read 0 file(s) (1 not readable as a capture)" in p.stderr
    p = otids("analyze", tmp_path, rc=2)
    assert "is a directory, not a capture file" in p.stderr


def test_bad_checksums_never_exceed_packets_checked(corpus):
    from ids.pipeline import analyze
    for cap in sorted(corpus.rglob("*.pcap"))[:400]:
        run, _ = analyze([str(cap)])
        d = run.decoder.stats
        assert d.bad_checksum <= d.checksum_checked, cap


def test_a_directory_is_named_as_such_by_learn_and_assets(tmp_path):
    for args in (("learn", tmp_path, "-o", tmp_path / "b.yaml"), ("assets", tmp_path)):
        p = otids(*args, rc=2)
        assert f"{tmp_path}: is a directory, not a capture file" in p.stderr
