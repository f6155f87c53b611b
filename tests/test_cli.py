"""System tests of `otids analyze` on the demo capture: declared expectations, byte-identical reruns, the
event-field contract of issue #2, and one-line errors with the documented exit codes."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from conftest import PCAPS, ROOT, read_ndjson, run_cli

DEMO = str(PCAPS / "modbus-demo.pcap")

# What pcaps/make_modbus_demo.py recorded (its docstring): function code -> transactions.
EXPECTED_FUNCTIONS = {1: 3, 2: 3, 3: 5, 4: 4, 5: 1, 6: 1, 8: 1, 15: 1, 16: 1, 17: 1, 22: 1, 23: 1, 43: 3, 65: 1}


def test_demo_events_match_what_was_recorded(tmp_path):
    ev, al = tmp_path / "e.ndjson", tmp_path / "a.ndjson"
    p = run_cli("analyze", DEMO, "-o", str(al), "--events", str(ev))
    docs = [d for d in read_ndjson(ev) if d["event"]["dataset"] != "otids.conn"]
    assert Counter(d["modbus"]["function_code"] for d in docs) == EXPECTED_FUNCTIONS
    exc = {(d["modbus"]["function"], d["modbus"]["exception"]) for d in docs if "exception" in d["modbus"]}
    assert exc == {("read_holding_registers", "illegal_data_address"), ("user_defined_65", "illegal_function"),
                   ("canopen_general_reference", "illegal_function")}
    ident = [d["modbus"]["response"]["device_identification"] for d in docs
             if d["modbus"]["function"] == "read_device_identification" and "response" in d["modbus"]]
    assert ident[0]["vendor_name"] == "otids demo" and ident[0]["product_code"] == "OTD-PLC"
    assert ident[0]["major_minor_revision"] == "1.0"
    w = [d for d in docs if d["modbus"]["function_code"] == 16][0]
    assert w["source"]["ip"] == "127.0.0.20" and w["modbus"]["request"]["values"] == [100, 200, 300, 400]
    probed = [d for d in docs if d["destination"]["port"] == 5020]
    assert len(probed) == 2  # Modbus on a port not in the map, found by content
    assert all(d["event"]["outcome"] == ("failure" if "exception" in d["modbus"] else "success") for d in docs)
    assert "Events by protocol and function" in p.stderr and "Top talkers" in p.stderr


def test_summary_talker_packets_match_connection_records(tmp_path):
    """The top-talkers table counts every packet of a flow, the last ACK after both FINs included: its
    packets per flow are the connection record's (and tshark's: 37, 34 and 13 in the demo)."""
    ev = tmp_path / "e.ndjson"
    p = run_cli("analyze", DEMO, "-o", str(tmp_path / "a.ndjson"), "--events", str(ev))
    conn = sorted(d["source"]["packets"] + d["destination"]["packets"] for d in read_ndjson(ev)
                  if d["event"]["dataset"] == "otids.conn")
    rows = re.findall(r"\s(\d+) \u2502\s+(\d+) \u2502\s+[\d,]+ \u2502\n", p.stderr)
    assert conn == [13, 34, 37] and sorted(int(pk) for _, pk in rows) == conn


def test_summary_names_each_kind_of_bytes(tmp_path):
    """The first line counts frame bytes as captured; the talkers' bytes are payload bytes, the sum of the
    connection records' source/destination_payload_bytes (not their IP bytes, not frame bytes)."""
    ev = tmp_path / "e.ndjson"
    p = run_cli("analyze", DEMO, "-o", str(tmp_path / "a.ndjson"), "--events", str(ev))
    conn = sorted(d["otids"]["conn"]["source_payload_bytes"] + d["otids"]["conn"]["destination_payload_bytes"]
                  for d in read_ndjson(ev) if d["event"]["dataset"] == "otids.conn")
    rows = re.findall(r"\s\d+ \u2502\s+\d+ \u2502\s+([\d,]+) \u2502\n", p.stderr)
    assert sorted(int(b.replace(",", "")) for b in rows) == conn == [58, 372, 471]
    assert "payload" in p.stderr[p.stderr.index("Top talkers"):p.stderr.index("127.0.0.10")]
    assert ", 6,493 frame bytes in " in p.stderr.splitlines()[0]


def test_summary_talkers_never_cut_an_address(tmp_path):
    """On an 80-column terminal (or a pipe) long IPv6 addresses and services fold onto a second line rather
    than end in an ellipsis that loses them."""
    p = run_cli("analyze", str(PCAPS / "net-basics.pcap"), "-o", str(tmp_path / "a.ndjson"))
    talkers = p.stderr[p.stderr.index("Top talkers"):p.stderr.index("hosts seen")]
    assert "\u2026" not in talkers and "fe80::280e:" in talkers


def test_bad_rules_or_baseline_leave_no_temporary_output(tmp_path):
    """A run refused for its rules, baseline or registry (exit 2) leaves no `.a.ndjson.XXXX.tmp` behind."""
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    out = tmp_path / "out"
    out.mkdir()
    for opt in ("--rules", "--baseline", "--registry"):
        run_cli("analyze", DEMO, "-q", opt, str(bad), "-o", str(out / "a.ndjson"), "--events", str(out / "e.ndjson"),
                check_rc=2)
    assert list(out.iterdir()) == []


def test_summary_header_and_checksum_note_are_one_line_each(tmp_path):
    """Piped or on an 80-column terminal, the first line and the checksum-offload note are not broken
    mid-phrase by the renderer ("in 0.00 " / "s; 3 flows"): the terminal wraps them, scripts grep them."""
    p = run_cli("analyze", DEMO, "-o", str(tmp_path / "a.ndjson"))
    lines = p.stderr.splitlines()
    assert re.fullmatch(r"otids read 1 file\(s\), 84 packets, 6,493 frame bytes in \d+\.\d\d s; 3 flows", lines[0])
    assert any(ln.startswith("  note: most checksums are bad") and ln.endswith("stops checking)") for ln in lines)


def test_unknown_option_is_reported_by_its_subcommand(tmp_path):
    """`otids es generate -o x` names `otids es generate` and its usage, not `otids [-h] COMMAND ...`."""
    p = run_cli("es", "generate", "-o", str(tmp_path / "x"), check_rc=2)
    assert p.stderr.startswith("usage: otids es generate ")
    assert "otids es generate: error: unrecognized arguments: -o" in p.stderr
    p = run_cli("analyze", "--bogus", DEMO, check_rc=2)
    assert p.stderr.startswith("usage: otids analyze ")
    assert "otids analyze: error: unrecognized arguments: --bogus" in p.stderr


def test_event_field_contract(tmp_path):
    """The fields issue #2 item 8 declares a contract, with their types, on every event."""
    ev = tmp_path / "e.ndjson"
    run_cli("analyze", DEMO, "-q", "-o", str(tmp_path / "a.ndjson"), "--events", str(ev))
    for d in read_ndjson(ev):
        if d["event"]["dataset"] == "otids.conn":  # connection records: tests/test_conn.py
            continue
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", d["@timestamp"])
        assert d["event"]["kind"] == "event" and d["event"]["dataset"] == "otids.modbus"
        assert d["event"]["outcome"] in ("success", "failure", "unknown")
        assert d["network"]["protocol"] == "modbus" and d["network"]["transport"] == "tcp"
        assert d["network"]["community_id"].startswith("1:")
        for side in ("source", "destination"):
            assert set(d[side]) >= {"ip", "port", "mac"}
        m = d["modbus"]
        assert all(isinstance(m[k], int) for k in ("transaction_id", "unit_id", "function_code"))
        assert m["function_code"] < 128 and isinstance(m["function"], str)
        assert ("exception_code" in m) == ("exception" in m)
        assert isinstance(d["otids"]["anomalies"], list)
        assert re.fullmatch(r"[0-9a-f]{32}", d["event"]["id"])


def test_deterministic_output(tmp_path):
    outs = []
    for i in range(2):
        ev, al = tmp_path / f"e{i}.ndjson", tmp_path / f"a{i}.ndjson"
        run_cli("analyze", DEMO, str(ROOT / "pcaps" / "modbus-demo.pcap"), "-q", "-o", str(al), "--events", str(ev))
        outs.append((ev.read_bytes(), al.read_bytes()))
    assert outs[0] == outs[1] and outs[0][0]


def test_missing_file_is_one_line_exit_2(tmp_path):
    p = run_cli("analyze", str(tmp_path / "nope.pcap"), check_rc=2)
    assert p.stderr == f"otids: error: {tmp_path / 'nope.pcap'}: no such capture file\n"


def test_damaged_capture_analysed_up_to_the_damage_exit_1(tmp_path):
    raw = (PCAPS / "modbus-demo.pcap").read_bytes()
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(raw[: len(raw) // 2])
    ev = tmp_path / "e.ndjson"
    p = run_cli("analyze", str(bad), "-q", "-o", str(tmp_path / "a.ndjson"), "--events", str(ev), check_rc=1)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(rf"otids: error: {re.escape(str(bad))}: byte \d+: truncated record .*",
                                            lines[0])
    assert 0 < len(read_ndjson(ev)) < 27  # what came before the damage was analysed


def test_bad_config_names_file_and_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("flow:\n  max_flows: 10\n  tcp_idel_timeout: 5\n")
    p = run_cli("analyze", DEMO, "-c", str(cfg), check_rc=2)
    assert p.stderr.startswith(f"otids: error: {cfg}:3:3: unknown key 'flow.tcp_idel_timeout'")
    cfg.write_text("decode:\n  checksums: maybe\n")
    p = run_cli("analyze", DEMO, "-c", str(cfg), check_rc=2)
    assert "c.yaml:2:3: 'decode.checksums' must be auto, on or off" in p.stderr
    cfg.write_text("flow: [1, 2\n")
    p = run_cli("analyze", DEMO, "-c", str(cfg), check_rc=2)
    assert re.search(r"c\.yaml:\d+:\d+: invalid YAML", p.stderr) and len(p.stderr.splitlines()) == 1


def test_example_config_is_the_defaults(tmp_path):
    """otids.example.yaml documents every key with its default: loading it must give the defaults."""
    import dataclasses

    import yaml

    from ids.config import Config, load_config
    assert load_config(str(ROOT / "otids.example.yaml")) == Config()
    raw = yaml.safe_load((ROOT / "otids.example.yaml").read_text())
    for sec in dataclasses.fields(Config):  # every key is written out, not just defaulted
        keys = {f.name for f in dataclasses.fields(sec.type if not isinstance(sec.type, str) else getattr(Config(), sec.name))}
        assert set(raw[sec.name]) == keys, sec.name
    assert raw["protocols"]["ports"] == Config().protocols.ports


def test_version_and_help():
    assert run_cli("version").stdout.startswith("otids ")
    h = run_cli("analyze", "--help").stdout
    assert "--events" in h and "--config" in h


def test_readme_demo_command_raises_the_expected_alerts(tmp_path):
    """README command 1: the shipped rules with the demo plant's lists. The workstation 127.0.0.20 is not
    listed, so its writes, diagnostics and device identification alert; the listed HMI's polling does not."""
    readme = (ROOT / "README.md").read_text()
    assert ("otids analyze pcaps/modbus-demo.pcap --rules rules/ --lists pcaps/modbus-demo.lists.yml "
            "--events demo-events.ndjson") in readme
    al = tmp_path / "a.ndjson"
    run_cli("analyze", DEMO, "--rules", str(ROOT / "rules"), "--lists", str(PCAPS / "modbus-demo.lists.yml"),
            "-q", "-o", str(al))
    alerts = read_ndjson(al)
    assert Counter(a["rule"]["id"] for a in alerts) == {
        "otids.modbus.write_from_unauthorized_host": 6, "otids.modbus.device_identification": 3,
        "otids.modbus.diagnostics": 1, "otids.modbus.function_code_scan": 1}
    assert {a["source"]["ip"] for a in alerts} == {"127.0.0.20"}
    assert all(a["event"]["kind"] == "alert" and a["threat"]["technique"]["id"] for a in alerts)


@pytest.mark.parametrize("value,why", [
    ("2026-02-30", "day is out of range"),            # a timestamp PyYAML resolves, then cannot build
    ("2026-01-01 10:00:00 +99:00", "offset"),          # a UTC offset over 24 h
    ("9" * 5000, "4300 digits"),                        # Python's limit on int from text
], ids=["impossible-date", "offset-over-24h", "int-5000-digits"])
def test_values_yaml_cannot_build_are_errors_at_their_place(tmp_path, value, why):
    """F21 (fuzzing, rules_file): PyYAML raises ValueError, not a YAML error, for these; each of the four
    user-edited YAML files (config, registry, baseline, rules) ended otids with a traceback."""
    files = {
        "config": ("c.yaml", f"flow:\n  max_flows: {value}\n", ["analyze", DEMO, "-q", "-c"]),
        "registry": ("r.yaml", f"devices:\n  - name: a\n    expires: {value}\n", ["analyze", DEMO, "-q", "--registry"]),
        "baseline": ("b.yaml", f"version: 1\nlearned:\n  first: {value}\n", ["analyze", DEMO, "-q", "--baseline"]),
    }
    for name, (fname, text, argv) in files.items():
        f = tmp_path / fname
        f.write_text(text)
        p = run_cli(*argv, str(f), check_rc=2)
        line = 3 if name != "config" else 2
        assert re.fullmatch(rf"otids: error: {re.escape(str(f))}:{line}:\d+: invalid YAML: cannot read the value .*\n",
                            p.stderr), (name, p.stderr)
        assert why in p.stderr, (name, p.stderr)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "s.yaml").write_text(f"suppressions:\n  - rule: otids.modbus.diagnostics\n    match: {{source.ip: 10.0.0.1}}\n"
                                  f"    expires: {value}\n    reason: x\n")
    p = run_cli("rules", "lint", str(rules), check_rc=None)
    assert p.returncode != 0 and "Traceback" not in p.stderr + p.stdout
    assert re.search(r"s\.yaml:4:\d+: error: invalid value: cannot read the value", p.stdout + p.stderr)
