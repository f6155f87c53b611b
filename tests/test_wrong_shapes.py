"""Files from users that parse but hold the wrong type at some level (issue #16, the one-line-error rule):
valid JSON or YAML whose values are of another type than the command reads. Each must end with one line
naming the file and the place and exit 2, never "internal error" (a traceback kept in a file) and never a
silent success that ships or writes something broken. The answers of a cluster or Kibana are in
test_es_setup_answers.py and test_es_hostile.py."""
from __future__ import annotations

import json
import re

import pytest
from conftest import PCAPS as ROOT_PCAPS
from es_helpers import Recorder

from ids.cli import main

T = "2026-12-05T00:00:00.000000Z"


def run(capsys, *argv) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def one_line_exit_2(rc: int, err: str) -> None:
    assert rc == 2, err
    assert "internal error" not in err and err.startswith("otids: error: ") and err.count("\n") == 1, err


# ---------------------------------------------------------------------------------------------- es load

LOAD_CASES = {
    # an AttributeError before (event.get on a string, rule.get on a string)
    "event_string": ({"event": "x", "@timestamp": T}, "event is the string 'x', not an object"),
    "event_list": ({"event": [1], "@timestamp": T}, "event is a JSON list: [1], not an object"),
    "event_null": ({"event": None, "@timestamp": T}, "event is null, not an object"),
    "rule_string": ({"event": {"kind": "alert"}, "@timestamp": T, "rule": "x"}, "rule is the string 'x', not an object"),
    # shipped before, where they fail the whole bulk request (an _id that is not a string: retried, then
    # spooled, and the spool replays it for ever) or stop the sender (index mode takes the month from it)
    "id_list": ({"event": {"id": [1]}, "@timestamp": T}, "event.id is a JSON list: [1], not a string"),
    "id_object": ({"event": {"id": {"a": 1}}, "@timestamp": T}, "event.id is a JSON dict: {\"a\":1}, not a string"),
    "dataset_number": ({"event": {"dataset": 5}, "@timestamp": T}, "event.dataset is a JSON int: 5, not a string"),
    "kind_list": ({"event": {"kind": ["alert"]}, "@timestamp": T}, "event.kind is a JSON list: [\"alert\"], not a string"),
    "timestamp_number": ({"event": {}, "@timestamp": 5}, "@timestamp is a JSON int: 5, not an RFC 3339 time"),
    "timestamp_null": ({"event": {}, "@timestamp": None}, "@timestamp is null, not an RFC 3339 time"),
    "timestamp_text": ({"event": {}, "@timestamp": "yesterday"}, "@timestamp is the string 'yesterday', not an RFC 3339 time"),
    # a RecursionError before
    "deep": ("[" * 100_000 + "]" * 100_000, None),
}


@pytest.mark.parametrize("mode", ["data_stream", "index"])
@pytest.mark.parametrize("case", sorted(LOAD_CASES))
def test_es_load_refuses_wrong_shapes_in_one_line(case, mode, tmp_path, capsys):
    doc, says = LOAD_CASES[case]
    good = {"event": {"kind": "alert", "id": "a1"}, "@timestamp": T, "rule": {"name": "r"}}
    f = tmp_path / "alerts.ndjson"
    f.write_text(json.dumps(good) + "\n" + (doc if isinstance(doc, str) else json.dumps(doc)) + "\n")
    cfg = tmp_path / "otids.yaml"
    cfg.write_text(f"elasticsearch:\n  spool_dir: {tmp_path / 'spool'}\n  mode: {mode}\n  shutdown_timeout: 5\n"
                   f"  flush_interval_ms: 50\n")
    rec = Recorder()
    try:
        rc, err = run(capsys, "es", "load", "--es", rec.url, "-c", str(cfg), str(f))
    finally:
        rec.close()
    one_line_exit_2(rc, err)
    assert err == f"otids: error: {f}:2: not an otids document" + (f" ({says})" if says else "") + "\n", err


# ---------------------------------------------------------------------------------------------- YAML files

def _yaml_with(tmp_path, src: str, name: str, change) -> str:
    import yaml
    from conftest import ROOT

    doc = yaml.safe_load((ROOT / src).read_text())
    change(doc)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(p)


@pytest.mark.parametrize("value", [["modbus"], {"name": "modbus"}])
def test_rule_protocol_of_another_type_is_a_lint_error(value, tmp_path, capsys):
    """A list or mapping as a rule's protocol: a TypeError (unhashable) out of the loader before."""
    path = _yaml_with(tmp_path, "rules/modbus.yml", "r.yml", lambda d: d["rules"][0].__setitem__("protocol", value))
    rc = main(["rules", "lint", path])
    out, err = capsys.readouterr()
    assert rc == 1 and "internal error" not in err, err
    assert re.search(rf"^{re.escape(path)}:23:\d+: error: 'protocol' must be one of modbus, opcua, mqtt \(got ", out, re.M), out


@pytest.mark.parametrize("key,value", [("application_uri", ["urn:plc"]), ("issuer", {"cn": "ca"}),
                                       ("application_uri", 5)])
def test_registry_identity_of_another_type_is_one_line(key, value, tmp_path, capsys):
    """A list as a device's OPC UA application URI: a TypeError (unhashable) when the registry indexed it;
    a mapping as its issuer was taken and never matched."""
    path = _yaml_with(tmp_path, "deploy/registry.example.yaml", "reg.yaml",
                      lambda d: d["devices"][0]["opcua"].__setitem__(key, value))
    rc, err = run(capsys, "analyze", "-q", "--registry", path, "-o", str(tmp_path / "o.ndjson"),
                  str(ROOT_PCAPS / "auth-mqtt-anonymous.pcap"))
    one_line_exit_2(rc, err)
    assert err.startswith(f"otids: error: {path}:") and err.endswith(f": {key}: must be a string\n"), err


# ---------------------------------------------------------------------------------------------- labels CSV

BIG = "a" * 200_000  # past the csv module's field limit (131,072)


@pytest.mark.parametrize("text,says", [
    ("start,end,src,dst,attack\ninf,inf,*,*,scan\n", ":2: bad time (cannot convert float infinity to integer)"),
    ("start,end,src,dst,attack\n1e400,1e401,*,*,scan\n", ":2: bad time (cannot convert float infinity to integer)"),
    (f"start,end,src,dst,attack\n1,2,*,*,{BIG}\n", ":2: not a labels CSV file (field larger than field limit"),
    (f"frame,attack\n1,{BIG}\n", ":2: not a labels CSV file (field larger than field limit"),
], ids=["inf", "1e400", "huge-field-ranges", "huge-field-frames"])
def test_eval_labels_that_parse_but_do_not_fit_are_one_line(text, says, tmp_path, capsys):
    """An OverflowError (float infinity to ns) or a csv.Error out of `otids eval` before. The labels are
    read before any model is loaded or trained, so an empty model directory is enough here."""
    f = tmp_path / "labels.csv"
    f.write_text(text)
    rc, err = run(capsys, "eval", "--labels", str(f), "--model", str(tmp_path), str(ROOT_PCAPS / "modbus-udp.pcap"))
    one_line_exit_2(rc, err)
    assert err.startswith(f"otids: error: {f}{says}"), err


# ---------------------------------------------------------------------------------------------- baseline

BASELINE_CASES = {
    # a TypeError (unhashable dict) before
    "modbus_functions_objects": (lambda b: _first(b, "modbus").__setitem__("functions", [{}]),
                                 "functions must map function codes (0-127) to names"),
    # a TypeError ('int' object is not iterable) before
    "mqtt_qos_number": (lambda b: next(iter(_first(b, "mqtt")["publishes"].values())).__setitem__("qos", 5),
                        "'lab/probe' must be {qos: [...]}, a list of QoS levels"),
    # an AttributeError ('str' object has no attribute 'get') before
    "mqtt_subscribe_string": (lambda b: _first(b, "mqtt").__setitem__("subscribes", {"plant/#": "x"}),
                              "'plant/#' must be {qos: [...]}, a list of QoS levels"),
    # a ValueError (could not convert string to float) before
    "mqtt_jitter_string": (lambda b: next(iter(_first(b, "mqtt")["publishes"].values())).update(period=5, jitter="x"),
                           "jitter must be a number of seconds"),
}


def _first(b: dict, section: str) -> dict:
    return b[section][0]


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> str:
    """A baseline learned from two committed captures (a Modbus pair, an MQTT client with one topic)."""
    out = tmp_path_factory.mktemp("baseline") / "baseline.yaml"
    assert main(["learn", "-q", "-o", str(out), str(ROOT_PCAPS / "modbus-demo.pcap"),
                 str(ROOT_PCAPS / "auth-mqtt-anonymous.pcap")]) == 0
    return out.read_text()


@pytest.mark.parametrize("case", sorted(BASELINE_CASES))
def test_baseline_values_of_another_type_are_one_line(case, learned, tmp_path, capsys):
    import yaml
    change, says = BASELINE_CASES[case]
    b = yaml.safe_load(learned)
    change(b)
    f = tmp_path / "baseline.yaml"
    f.write_text(yaml.safe_dump(b, sort_keys=False))
    for argv in (["baseline", "check", str(f)],
                 ["analyze", "-q", "--baseline", str(f), "-o", str(tmp_path / "o.ndjson"),
                  str(ROOT_PCAPS / "modbus-udp.pcap")]):
        rc, err = run(capsys, *argv)
        one_line_exit_2(rc, err)
        assert re.match(rf"otids: error: {re.escape(str(f))}:\d+:\d+: {re.escape(says)}", err), err


# ---------------------------------------------------------------------------------------------- nesting

DEEP_FLOW = "a: " + "[" * 60_000 + "]" * 60_000 + "\n"  # libyaml's composer recursed in C: SIGSEGV
DEEP_BLOCK = "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 400))  # PyYAML: RecursionError


LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 12))  # 12 lines: 10^12 nodes


@pytest.mark.parametrize("text,where,says", [
    (DEEP_FLOW, ":1:103:", "nested deeper than 100 levels"), (DEEP_BLOCK, ":101:201:", "nested deeper than 100 levels"),
    (LAUGHS, ":6:45:", "aliases stand for more than 1,000,000 nodes")], ids=["flow", "block", "aliases"])
@pytest.mark.parametrize("command", ["config", "rules", "lists", "baseline", "registry"])
def test_yaml_nested_past_the_limit_is_one_line(command, text, where, says, tmp_path):
    """Every YAML file users give, nested 60,000 levels deep (flow) or 400 (block): before, the process died
    of SIGSEGV (libyaml: rules, lists, baseline) or ended with a RecursionError (config, registry). Twelve
    lines of aliases standing for 10^12 nodes: rules lint and baseline check walked them for ever (config
    and registry refused the unknown keys; now the aliases first). Subprocesses: a segmentation fault must be seen as one,
    a hang ends at the timeout."""
    import subprocess
    import sys

    from conftest import ROOT

    f = tmp_path / "deep.yaml"
    f.write_text(text)
    pcap = str(ROOT_PCAPS / "modbus-udp.pcap")
    argv = {"config": ["analyze", "-q", "-c", str(f), "-o", str(tmp_path / "o.ndjson"), pcap],
            "rules": ["rules", "lint", str(f)],
            "lists": ["rules", "lint", "--lists", str(f), str(ROOT / "rules")],
            "baseline": ["baseline", "check", str(f)],
            "registry": ["analyze", "-q", "--registry", str(f), "-o", str(tmp_path / "o.ndjson"), pcap]}[command]
    p = subprocess.run([sys.executable, "-m", "ids.cli", *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    said = p.stdout + p.stderr
    assert p.returncode in (1, 2), (p.returncode, said[-500:])  # rules lint: 1, "found something"
    assert "internal error" not in said, said
    assert f"{f}{where} " in said and f"invalid YAML: {says}" in said, said


@pytest.mark.parametrize("command", ["es validate", "rules dry-run", "es load"])
def test_json_nested_past_the_parser_is_one_line(command, tmp_path, capsys):
    """A line of 100,000 nested arrays: json's decoder raised RecursionError, not ValueError."""
    f = tmp_path / "deep.ndjson"
    f.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    if command == "es validate":
        rc = main(["es", "validate", str(f)])
        out, err = capsys.readouterr()
        assert rc == 1 and out == f"{f}:1: not JSON: nested too deep to read\n", out + err
        return
    if command == "rules dry-run":
        rc, err = run(capsys, "rules", "dry-run", "rules", str(f))
        one_line_exit_2(rc, err)
        assert err == f"otids: error: {f}:1: not JSON (nested too deep to read)\n", err
        return
    rec = Recorder()
    try:
        rc, err = run(capsys, "es", "load", "--es", rec.url, str(f))
    finally:
        rec.close()
    one_line_exit_2(rc, err)
    assert err == f"otids: error: {f}:1: not an otids document\n", err


# ---------------------------------------------------------------------------------------------- NDJSON in

@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """Alerts and events of a committed capture, as `otids analyze` writes them."""
    d = tmp_path_factory.mktemp("out")
    assert main(["analyze", "-q", "-o", str(d / "a.ndjson"), "--events", str(d / "e.ndjson"),
                 str(ROOT_PCAPS / "modbus-alert-storm.pcap")]) == 0
    read = lambda p: [json.loads(x) for x in p.read_text().splitlines() if x.strip()]  # noqa: E731
    return read(d / "a.ndjson")[:3], read(d / "e.ndjson")[:3]


def _set(doc: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        doc = doc.setdefault(k, {})
    doc[keys[-1]] = value


REPORT_CASES = {  # field, value, what the line says (each an internal error before: the report model)
    "timestamp_text": ("@timestamp", "x", "@timestamp: date: expected an RFC 3339 date, got 'x'"),
    "timestamp_number": ("@timestamp", 5, "@timestamp: date: expected an RFC 3339 date, got 5"),
    "count_text": ("otids.alert.count", "x", "otids.alert.count: long: expected an integer, got 'x'"),
    "severity_text": ("event.severity", "x", "event.severity: long: expected an integer, got 'x'"),
    "technique_string": ("threat.technique", "x", "threat.technique: expected an object, got 'x'"),
    "technique_id_number": ("threat.technique.id", 5, "threat.technique.id: keyword: expected a string, got 5"),
    "network_string": ("network", "x", "network: expected an object, got 'x'"),
    "source_ip_list": ("source.ip", [], "source.ip: expected one value, got a list []"),
    "rule_name_list": ("rule.name", ["x"], "rule.name: expected one value, got a list ['x']"),
    "source_ip_two": ("source.ip", ["10.0.0.1", "10.0.0.2"],
                      "source.ip: expected one value, got a list ['10.0.0.1', '10.0.0.2']"),
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_report_from_documents_of_the_wrong_shape_names_the_line(case, outputs, tmp_path, capsys):
    field, value, says = REPORT_CASES[case]
    alerts = json.loads(json.dumps(outputs[0]))
    _set(alerts[1], field, value)
    f = tmp_path / "alerts.ndjson"
    f.write_text("".join(json.dumps(d) + "\n" for d in alerts))
    rc, err = run(capsys, "report", "--from", str(f), "-o", str(tmp_path / "r.html"))
    one_line_exit_2(rc, err)
    assert err == f"otids: error: {f}:2: not an otids document ({says})\n", err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("field,value,says", [
    ("event", "x", "event: expected an object, got 'x'"),
    ("event.dataset", [], "event.dataset: expected one value, got a list []"),
    ("source.ip", {}, "source.ip: ip: expected a value, got an object {}"),
], ids=["event-string", "dataset-list", "source-ip-object"])
def test_rules_dry_run_on_events_of_the_wrong_shape_names_the_line(field, value, says, outputs, tmp_path, capsys):
    """An AttributeError or TypeError out of the rules detector before."""
    events = json.loads(json.dumps(outputs[1]))
    _set(events[1], field, value)
    f = tmp_path / "events.ndjson"
    f.write_text("".join(json.dumps(d) + "\n" for d in events))
    rc, err = run(capsys, "rules", "dry-run", "rules", str(f))
    one_line_exit_2(rc, err)
    assert err == f"otids: error: {f}:2: not an otids event ({says})\n", err


@pytest.mark.parametrize("what", ["segment-directory", "alerts-file"])
def test_spool_of_the_wrong_shape_is_one_line(what, tmp_path, capsys):
    """A directory under a spool segment's name, a file where the alerts/ directory belongs (a spool edited
    by hand, a restore gone wrong): an IsADirectoryError, a FileExistsError out of `otids es load` before."""
    seg = tmp_path / "spool" / "alerts" / "000000000001.tsv"
    if what == "segment-directory":
        seg.mkdir(parents=True)
        says = f"{seg}: cannot read spool segment: Is a directory"
    else:
        seg.parent.parent.mkdir()
        seg.parent.write_text("x")
        says = f"{seg.parent}: cannot use as a spool directory: File exists"
    cfg = tmp_path / "otids.yaml"
    cfg.write_text(f"elasticsearch:\n  spool_dir: {tmp_path / 'spool'}\n  shutdown_timeout: 2\n")
    rec = Recorder()
    try:
        rc, err = run(capsys, "es", "load", "--es", rec.url, "-c", str(cfg))
    finally:
        rec.close()
    one_line_exit_2(rc, err)
    assert err == f"otids: error: {says}\n", err
