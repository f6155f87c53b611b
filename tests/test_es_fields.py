"""Field definitions (ids/data/fields/*.yml): the loader's errors, the document validator at the edges of
each type, and every document otids emits -- from the demo capture through the CLI, from every capture
under pcaps/, from the corpus -- against the definitions."""
from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
from conftest import CORPUS, PCAPS, need, read_ndjson, run_cli

from ids.errors import SourceLocation
from ids.output.fields import FIELDS_DIR, DefinitionError, FieldDefinitionError, Issue, group_of, load_fields
from ids.output.ndjson import stamp
from ids.pipeline import analyze


@pytest.fixture(scope="module")
def fs():
    return load_fields()


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ---------------------------------------------------------------------------------------------- loader

def test_shipped_definitions_load(fs):
    assert {"ecs", "otids", "modbus"} <= set(fs.groups)
    assert fs.fields["@timestamp"].type == "date"
    assert fs.fields["source.ip"].type == "ip"
    assert fs.fields["modbus.request.values"].type == "long"
    assert fs.fields["modbus.response.device_identification"].type == "flattened"
    for g in fs.groups.values():
        assert group_of(g.path) == g.name and g.fields, g


def test_duplicate_across_files_names_both_places(tmp_path):
    a = write(tmp_path, "a.yml", "group: a\ndescription: A\nfields:\n  - name: x.y\n    type: keyword\n    description: d\n")
    b = write(tmp_path, "b.yml", "group: b\ndescription: B\nfields:\n  - name: z\n    type: long\n    description: d\n"
                                  "  - name: x.y\n    type: long\n    description: again\n")
    with pytest.raises(FieldDefinitionError) as e:
        load_fields([a, b])
    assert e.value.errors == (DefinitionError(SourceLocation(b, 7, 5),
                                              f"duplicate field 'x.y' (first declared at {a}:4:5)"),)


def test_conflicts_and_bad_entries_all_reported(tmp_path):
    p = write(tmp_path, "c.yml", "\n".join([
        "group: c",
        "description: C",
        "fields:",
        "  - name: a.b",          # 4
        "    type: keyword",
        "    description: leaf",
        "  - name: a.b.c",        # 7: below a leaf
        "    type: long",
        "    description: child",
        "  - name: Bad.Name",     # 10
        "    type: keyword",
        "    description: d",
        "  - name: t",            # 13
        "    type: strng",
        "    description: d",
        "  - name: o",            # 16: object with nothing below
        "    type: object",
        "    description: d",
        "  - name: u",            # 19
        "    type: keyword",
        "    description: d",
        "    mapping: {}",
        ""]))
    with pytest.raises(FieldDefinitionError) as e:
        load_fields([p])
    assert [(x.where.line, x.message.split(" (")[0]) for x in e.value.errors] == [
        (10, "field name 'Bad.Name' must be lower-case dotted words"),
        (14, "field 't': unknown type 'strng'"),
        (22, "unknown key 'mapping'"),
        (7, f"'a.b.c' is declared below 'a.b'"),
        (16, "object field 'o' declares no sub-fields; use flattened for an object whose keys vary"),
    ]
    assert str(e.value).splitlines()[0].startswith(f"{p}:10:")


def test_group_must_match_file_name(tmp_path):
    p = write(tmp_path, "mqtt.yml", "group: mqt\ndescription: M\nfields:\n  - name: mqtt.a\n    type: keyword\n    description: d\n")
    with pytest.raises(FieldDefinitionError) as e:
        load_fields([p])
    assert e.value.errors[0] == DefinitionError(SourceLocation(p, 1, 8), "group 'mqt' must match the file name 'mqtt.yml'")


def test_bad_field_file_is_a_one_line_cli_error(tmp_path):
    # The loader's errors are UserErrors: the CLI prints file:line, no traceback.
    bad = Path(FIELDS_DIR) / "zz_test_broken.yml"
    bad.write_text("group: zz_test_broken\ndescription: x\nfields:\n  - name: source.ip\n    type: keyword\n    description: dup\n")
    try:
        p = run_cli("es", "generate", "--check", check_rc=2)
    finally:
        bad.unlink()
    assert "zz_test_broken.yml:4:5: duplicate field 'source.ip' (first declared at" in p.stderr


# ---------------------------------------------------------------------------------------------- validator

@pytest.mark.parametrize("field,value,problem", [
    ("modbus.unit_id", 32767, None),                     # short: largest valid
    ("modbus.unit_id", 32768, "out of range"),           # first invalid
    ("modbus.unit_id", -32768, None),
    ("modbus.unit_id", -32769, "out of range"),
    ("modbus.transaction_id", 2 ** 31 - 1, None),        # integer
    ("modbus.transaction_id", 2 ** 31, "out of range"),
    ("modbus.request.values", [1, 2, 65535], None),      # arrays of the field's type
    ("modbus.request.values", [1, True], "wrong type"),  # a long field rejects JSON true (ES does too)
    ("modbus.request.values", "7", "wrong type"),
    ("source.port", 1.5, "wrong type"),
    ("source.ip", "10.0.0.1", None),
    ("source.ip", "fe80::1", None),
    ("source.ip", "10.0.0.256", "wrong type"),
    ("event.action", 3, "wrong type"),                   # keyword wants strings
    ("@timestamp", "2024-02-29T23:59:59.999999Z", None),
    ("@timestamp", "2023-02-29T00:00:00Z", "wrong type"),
    ("@timestamp", 1700000000, "wrong type"),
    ("modbus.response.run_indicator", True, None),
    ("modbus.response.run_indicator", 1, "wrong type"),
    ("event.reason", None, "null value"),
])
def test_leaf_types_at_the_edges(fs, field, value, problem):
    doc: dict = {}
    node = doc
    parts = field.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    issues = fs.validate(doc)
    assert [i.problem for i in issues] == ([problem] if problem else [])


def test_unknown_fields_objects_and_flattened(fs):
    doc = {"@timestamp": "2024-01-01T00:00:00Z",
           "event": {"kind": "event", "colour": "red"},
           "source": "10.0.0.1",
           "modbus": {"response": {"device_identification": {"vendor_name": "x", "private_130": "y"},
                                   "objects": [{"id": 1, "name": "vendor_name", "value": "x"}, {"id": "2"}]}},
           "extra": {"a": 1}}
    assert sorted(fs.validate(doc)) == sorted([
        Issue("event.colour", "unknown field", "'red'"),
        Issue("source", "wrong type", "expected an object, got '10.0.0.1'"),
        Issue("modbus.response.objects.id", "wrong type", "short: expected an integer, got '2'"),
        Issue("extra", "unknown field", "{'a': 1}"),
    ])
    assert fs.resolve("modbus.response.device_identification.anything").type == "flattened"
    assert not fs.aggregatable("modbus.response.device_identification.vendor_name")  # data views do not list it
    assert not fs.aggregatable("modbus.response.objects")


# ---------------------------------------------------------------------------------------------- real documents

def test_demo_capture_events_and_alerts_validate_via_cli(fs, tmp_path):
    ev, al = tmp_path / "events.ndjson", tmp_path / "alerts.ndjson"
    run_cli("analyze", str(PCAPS / "modbus-demo.pcap"), "--events", str(ev), "-o", str(al), "-q")
    events, alerts = read_ndjson(ev), read_ndjson(al)
    conns = [d for d in events if d["event"]["dataset"] == "otids.conn"]
    assert len(conns) == 3  # one connection record per TCP connection
    events = [d for d in events if d["event"]["dataset"] != "otids.conn"]
    assert len(events) == 27  # the demo's transactions (pcaps/make_modbus_demo.py)
    bad = {d["event"]["id"]: fs.validate(d) for d in events + alerts + conns if fs.validate(d)}
    assert bad == {}
    # coil states are 0/1 in documents (a long field rejects true/false)
    coils = [d for d in events if d["modbus"]["function"] == "read_coils"]
    assert coils and all(set(d["modbus"]["response"]["values"]) <= {0, 1} for d in coils)


def _documents(paths) -> list[dict]:
    run, col = analyze([str(p) for p in paths])
    docs = [ev.to_doc() for ev in col.events] + [a.to_doc() for a in col.alerts]
    for i, d in enumerate(docs, 1):
        stamp(d, i)  # as a sink writes them: with event.id
    return docs


ALL_PCAPS = sorted(Path(p) for p in glob.glob(str(PCAPS / "*.pcap*")))


@pytest.mark.parametrize("pcap", ALL_PCAPS, ids=lambda p: p.name)
def test_every_document_from_every_capture_validates(fs, pcap):
    docs = _documents([pcap])
    assert docs, f"{pcap.name} produced no documents"
    problems = {}
    for d in docs:
        for i in fs.validate(d):
            problems.setdefault(str(i), d["event"].get("dataset"))
    assert problems == {}


def _group_names():
    return list(load_fields().groups)


@pytest.mark.parametrize("group", _group_names())
def test_each_field_group_is_exercised_by_the_captures(fs, group):
    """A protocol group (all its fields under `<group>.`) must have documents among the captures under
    pcaps/, and they must validate; for shared groups (ecs, otids, detector extras) documents that use
    their fields are validated wherever they occur."""
    docs = _documents(ALL_PCAPS)
    names = set(fs.groups[group].fields)

    def uses(d, prefix=""):
        for k, v in d.items():
            n = prefix + k
            if n in names or (fs.resolve(n) is not None and fs.resolve(n).name in names):
                return True
            if isinstance(v, dict) and uses(v, n + "."):
                return True
            if isinstance(v, list) and any(isinstance(x, dict) and uses(x, n + ".") for x in v):
                return True
        return False

    mine = [d for d in docs if uses(d)]
    protocol_group = all(n.startswith(group + ".") for n in names)
    if protocol_group:
        assert mine, f"no capture under pcaps/ produces {group}.* fields: add one (and the script that makes it)"
    assert [str(i) for d in mine for i in fs.validate(d)] == []


def test_corpus_documents_validate(fs):
    caps = sorted(glob.glob(str(need(CORPUS) / "**" / "*.pcap*"), recursive=True))
    assert len(caps) > 50
    n = 0
    problems = set()
    for c in caps:
        for d in _documents([c]):
            n += 1
            problems.update(f"{Path(c).name}: {i}" for i in fs.validate(d))
    assert n > 5000 and sorted(problems) == []


def test_validate_command(tmp_path):
    good = tmp_path / "good.ndjson"
    bad = tmp_path / "bad.ndjson"
    run_cli("analyze", str(PCAPS / "modbus-demo.pcap"), "--events", str(good), "-o", str(tmp_path / "a.ndjson"), "-q")
    doc = json.loads(good.read_text().splitlines()[0])
    doc["modbus"]["unit_id"] = "one"
    doc["modbus"]["colour"] = "red"
    bad.write_text(json.dumps(doc) + "\n")
    assert run_cli("es", "validate", str(good)).returncode == 0
    p = run_cli("es", "validate", str(bad), check_rc=1)
    assert p.stdout.splitlines() == [f"{bad}:1: modbus.unit_id: wrong type (short: expected an integer, got 'one')",
                                     f"{bad}:1: modbus.colour: unknown field ('red')"]
