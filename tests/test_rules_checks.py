"""Issue #20 item 5: `rules lint` and `analyze --rules` decide by the same code, the shipped rules run out of
the box (rules needing site lists disabled with one line saying how to enable them), and a broken YAML rule
and a broken Suricata rule are handled alike: reported, the rest run, non-zero at the end under --strict."""
from __future__ import annotations

from collections import Counter

from conftest import PCAPS, ROOT, read_ndjson, run_cli

DEMO = str(PCAPS / "modbus-demo.pcap")
RULES = str(ROOT / "rules")

GOOD_YAML = """rules:
  - id: t.write
    title: Modbus write
    description: any write
    severity: low
    protocol: modbus
    match: {modbus.function_code: [5, 6, 15, 16]}
  - id: t.broken
    title: broken
    description: misspelt operator
    severity: low
    protocol: modbus
    match: {modbus.function_code: {gtt: 3}}
"""
SURICATA = ('alert modbus any any -> any any (msg:"read coils"; modbus: function 1; sid:1;)\n'
            'alert modbus any any -> any any (msg:"broken"; modbus: function 1; frobnicate; sid:2;)\n')


def _ids(path):
    return Counter(a["rule"]["id"] for a in read_ndjson(path))


def test_shipped_rules_run_without_lists_and_lint_agrees(tmp_path):
    a = tmp_path / "a.ndjson"
    r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", RULES)
    lines = [x for x in r.stderr.splitlines() if "disabled" in x]
    assert len(lines) == 1 and "enable them with --lists FILE" in lines[0]
    assert "otids.modbus.write_from_unauthorized_host" in lines[0] and "$engineering_workstations" in lines[0]
    lint = run_cli("rules", "lint", RULES)
    assert lines[0].split("rules: ", 1)[1] in lint.stderr  # the same decision, the same words
    assert "0 error(s), 18 warning(s); 11 would run" in lint.stderr
    assert "site lists this rule set uses: $engineering_workstations, $hmi_hosts" in lint.stderr


def test_with_lists_the_demo_raises_what_it_raised(tmp_path):
    a = tmp_path / "a.ndjson"
    r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", RULES, "--lists", str(PCAPS / "modbus-demo.lists.yml"))
    assert "disabled" not in r.stderr
    assert sum(_ids(a).values()) == 11


def test_strict_fails_at_the_end_when_rules_are_disabled(tmp_path):
    a = tmp_path / "a.ndjson"
    r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", RULES, "--strict", check_rc=1)
    assert "--strict" in r.stderr and a.exists()


def test_broken_yaml_and_broken_suricata_rule_handled_alike(tmp_path):
    y, s = tmp_path / "r.yml", tmp_path / "r.rules"
    y.write_text(GOOD_YAML)
    s.write_text(SURICATA)
    for f, good, bad_line in ((y, "t.write", f"{y}:13:"), (s, "1", f"{s}:2:")):
        a = tmp_path / "a.ndjson"
        r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", str(f))
        notl = [x for x in r.stderr.splitlines() if "not loaded" in x]
        assert len(notl) == 1 and bad_line in notl[0], r.stderr
        assert _ids(a)[good] > 0
        r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", str(f), "--strict", check_rc=1)
        assert _ids(a)[good] > 0 and "--strict" in r.stderr
        lint = run_cli("rules", "lint", str(f), check_rc=1)
        assert bad_line in lint.stdout


def test_missing_rule_path_or_broken_lists_stop_the_run(tmp_path):
    a = tmp_path / "a.ndjson"
    r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", str(tmp_path / "nope"), check_rc=2)
    assert "no such rule file" in r.stderr
    bad = tmp_path / "lists.yml"
    bad.write_text("lists: {hmi_hosts: [not-an-ip}\n")
    r = run_cli("analyze", DEMO, "-q", "-o", str(a), "--rules", RULES, "--lists", str(bad), check_rc=2)
    assert str(bad) in r.stderr
