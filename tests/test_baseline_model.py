"""Baseline file: canonical YAML, comments that follow entries across a re-learn, loading errors with
file:line:col, review-state merge and the semantic diff."""
from __future__ import annotations

import copy

import pytest
import yaml

from ids.detect.baseline import document, yamlio
from ids.detect.baseline.document import Baseline, BaselineError, merge_review, parse


# ---------------------------------------------------------------------------------------------- scalars

@pytest.mark.parametrize("value,text", [
    ("plain", "plain"),
    ("true", '"true"'),  # would read back as a bool
    ("1", '"1"'),  # as an int
    ("1.12", '"1.12"'),  # a revision string must stay a string
    ("2026-11-22T05:46:27.725689Z", '"2026-11-22T05:46:27.725689Z"'),  # as a timestamp
    ("a: b", '"a: b"'),
    ("x #y", '"x #y"'),
    ("#x", '"#x"'),
    ("", '""'),
    (" lead", '" lead"'),
    ("plant/#", "plant/#"),  # "#" not after a space starts no comment
    ("ns=2;s=Line1.Setpoint", "ns=2;s=Line1.Setpoint"),
    ("0-9", "0-9"),
    ("null", '"null"'),
    ("tab\tin", '"tab\\tin"'),
    ("a?b", '"a?b"'),  # inside a flow collection "?" would end a plain scalar (the corpus mqtt.pcap bug)
    ("x]", '"x]"'), ("a,b", '"a,b"'),
    ("ns=2;s=a:b", "ns=2;s=a:b"),
    ("<<", '"<<"'),  # a merge key when plain
    ("\u2028", '"\\L"'), ("\ufeff", '"\\uFEFF"'), ("\ud800", '"\\uD800"'), ("\x00", '"\\0"'),
    ("caf\u00e9", "caf\u00e9"),
    (None, "null"), (True, "true"), (0, "0"), (1.0, "1.0"), (0.0003, "0.0003"),
])
def test_scalar_reads_back_unchanged(value, text):
    assert yamlio.scalar(value) == text
    assert yaml.safe_load(f"k: {text}")["k"] == value


# Strings from the traffic end up as YAML keys and values (MQTT topics and client ids, OPC UA NodeIds and
# application URIs, device identity text): every one must read back exactly, in block and flow context,
# as a key and as a value. An explicit list of the hard cases, then seeded random strings built from them.
NASTY = [
    "", " ", "  ", "\t", "\n", "\r\n", " lead", "trail ", " both ", "a  b", "null", "Null", "NULL", "~", "true",
    "False", "yes", "no", "on", "off", "y", "n", "1", "-1", "+1", "0x1F", "0o17", "017", "1_000", "1.0", "1e3",
    ".5", "-.inf", ".NaN", "1:20", "2026-11-22", "2026-11-22T05:46:27Z", "12:30:45", "<<", "=", "-", "--", "---",
    "...", "- x", "? x", "?", ":", "::", "a:", ":a", "a: b", "a:b", "a :b", "#", "#x", "x#", "x #y", "x# y", "&a",
    "*a", "!tag", "!!str", "|", ">", "'", '"', "''", '""', "'a'", '"a"', "%TAG", "@at", "`tick`", "a,b", "[a]",
    "{a}", "a[0]", "a{b}", "a}", "a]", "a?b", "a? b", "plant/#", "plant/+/temp", "+/+/#", "+", "/", "//", "a/b/",
    "$SYS/broker/load", "sensor/12/?raw", "topic with spaces", "ns=2;s=a:b", "ns=2;s=Line1.Setpoint",
    "ns=3;s=Tank[1].Level", "ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a", "i=85", "nsu=urn:x:y;s={a, b}",
    "urn:otids:sim:scada1", "http://opcfoundation.org/UA/SecurityPolicy#None", "a\\b", "\\", "\\n", "a\"b",
    "a'b", "\x00", "nul\x00in", "\x01\x02\x1f", "\x7f", "\x80", "\x85", "\x9f", "\xa0", "nb\xa0sp", "\u2028",
    "\u2029", "\ufeff", "\ufeffbom", "\ufffe", "\uffff", "\ud800", "lone\udcffsurrogate", "\u200b", "\u00e9t\u00e9",
    "\u6e29\u5ea6/\u30bb\u30f3\u30b5", "\U0001F600", "e\u0301", "\u202eRTL", "x" * 1100, "k:" * 600, "\u00e9" * 1030,
]
_PIECES = NASTY[:-3] + list(" \t\n#:,?[]{}&*!|>'\"%@`-~=<\\/+$;.") + ["ns=", "s=", "plant", "1.0", "null"]


def _random_strings(n: int, seed: int = 6) -> list[str]:
    import random
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(rnd.choice(_PIECES) for _ in range(rnd.randint(1, 6)))
        if rnd.random() < 0.2:
            s += "".join(chr(rnd.randint(0, 0x10FFFF)) for _ in range(rnd.randint(1, 3)))  # any code point
        out.append(s)
    return out


def _string_doc(strings: list[str]) -> dict:
    """Each string as a block value, block key, flow-sequence item, and key and value of a flow mapping."""
    keys = list(dict.fromkeys(strings))
    return {"values": {f"v{i}": s for i, s in enumerate(strings)},
            "keys": {s: i for i, s in enumerate(keys)},
            "lists": {f"l{i}": [s, 1, s] for i, s in enumerate(strings)},
            "deep": {"a": {"b": {s: {"qos": [0], "text": s} for s in keys}}},
            "items": [{"function": s, "n": 1} for s in strings]}


@pytest.mark.parametrize("strings", [NASTY, _random_strings(600)], ids=["explicit", "random"])
def test_any_string_round_trips_in_every_context(strings):
    doc = _string_doc(strings)
    text = yamlio.dump(doc, lambda path, item, i: f"#{i}", [])
    text.encode("utf-8")  # writable as UTF-8 (lone surrogates are escaped)
    back = yaml.safe_load(text)
    for part in doc:
        assert back[part] == doc[part], part
    assert yamlio.dump(back, lambda path, item, i: f"#{i}", []) == text


def test_any_string_round_trips_through_a_baseline_file():
    """Topics, filters, client ids, NodeIds and notes in a real baseline: dump, parse, dump again."""
    strings = list(dict.fromkeys(NASTY + _random_strings(200, seed=7)))
    b = Baseline()
    b.section("mqtt")["10.0.0.5|10.0.0.9"] = {
        "client": "10.0.0.5", "broker": "10.0.0.9", "status": "learned", "note": strings[5],
        "client_ids": strings, "usernames": strings[::-1],
        "publishes": {s: {"qos": [0, 1], "messages": 3} for s in strings},
        "subscribes": {s: {"qos": [1]} for s in strings}}
    b.section("opcua")["10.0.0.5|10.0.0.20"] = {
        "client": "10.0.0.5", "server": "10.0.0.20", "status": "learned", "nodes_written": strings,
        "application_uris": strings}
    text = b.dump()
    b2 = parse(text, "x.yaml")
    assert b2.entries["mqtt"] == b.entries["mqtt"] and b2.entries["opcua"] == b.entries["opcua"]
    assert b2.dump() == text
    assert b2.dump(document.read_comments(text)) == text  # the comment reader copes with every escape


def test_long_key_is_written_as_an_explicit_key():
    k = "t/" * 600
    text = yamlio.dump({"m": {k: {"qos": [0]}, "short": {"qos": [1]}}}, lambda *a: "#", [])
    assert f'm:\n  ? {k}\n  :\n    qos: [0]\n  short:\n    qos: [1]\n' == text
    assert yaml.safe_load(text) == {"m": {k: {"qos": [0]}, "short": {"qos": [1]}}}


def _doc():
    return {
        "version": 1,
        "learned": {"events": 3},
        "assets": [{"ip": "10.0.0.2", "status": "learned", "roles": ["modbus_master"]},
                   {"ip": "10.0.0.10", "status": "learned", "roles": ["modbus_slave"]}],
        "talkers": [],
        "modbus": [{"master": "10.0.0.2", "slave": "10.0.0.10", "unit": 1, "status": "learned",
                    "functions": {3: "read_holding_registers"},
                    "reads": {"holding_registers": ["0-9", 20]},
                    "values": {"holding_registers": {20: {"band": [40, 60], "seen": [41, 59], "count": 9}}},
                    "polls": [{"function": 3, "address": 0, "period": 1.0, "jitter": 0.001, "samples": 9}]}],
        "opcua": [], "mqtt": [],
    }


def test_dump_reads_back_and_is_canonical():
    text = yamlio.dump(_doc(), document.item_id, document.HEADER)
    assert yaml.safe_load(text) == _doc()
    assert "        20: {band: [40, 60], seen: [41, 59], count: 9}\n" in text
    assert "      - {function: 3, address: 0, period: 1.0, jitter: 0.001, samples: 9}\n" in text
    assert yamlio.dump(yaml.safe_load(text), document.item_id, document.HEADER) == text


# ---------------------------------------------------------------------------------------------- comments

def test_comments_follow_entries_when_entries_move_and_change():
    text = yamlio.dump(_doc(), document.item_id, document.HEADER)
    text = text.replace("  - ip: 10.0.0.10\n", "  # the boiler PLC, cabinet 3\n  - ip: 10.0.0.10  # fixed IP\n")
    text = text.replace("    functions:\n", "    # reviewed by J. on 2026-11-02\n    functions:\n")
    text = text.replace("samples: 9}\n", "samples: 9}  # the HMI's main poll\n")
    text = text.replace("version: 1\n", "version: 1\n# about assets\n")
    comments = document.read_comments(text)
    doc = _doc()
    # a re-learn: a new asset sorts in between, facts change
    doc["assets"].insert(1, {"ip": "10.0.0.5", "status": "learned", "roles": ["modbus_master"]})
    doc["modbus"][0]["functions"][6] = "write_single_register"
    doc["modbus"][0]["polls"][0]["samples"] = 99
    out = yamlio.dump(doc, document.item_id, document.HEADER, comments)
    lines = out.splitlines()
    i = lines.index("  # the boiler PLC, cabinet 3")
    assert lines[i + 1] == "  - ip: 10.0.0.10  # fixed IP"
    assert lines[lines.index("    # reviewed by J. on 2026-11-02") + 1] == "    functions:"
    assert any(ln.endswith("samples: 99}  # the HMI's main poll") for ln in lines)
    assert lines[lines.index("# about assets") + 1] == "learned:"
    assert out.count("# otids baseline:") == 1  # the generated header is not kept as a comment
    assert yaml.safe_load(out) == doc
    # and again: stable
    assert yamlio.dump(doc, document.item_id, document.HEADER, document.read_comments(out)) == out


def test_comment_of_a_removed_entry_is_kept_at_the_end():
    text = yamlio.dump(_doc(), document.item_id, document.HEADER)
    text = text.replace("  - ip: 10.0.0.2\n", "  # old laptop, remove\n  - ip: 10.0.0.2\n")
    doc = _doc()
    del doc["assets"][0]
    out = yamlio.dump(doc, document.item_id, document.HEADER, document.read_comments(text))
    assert out.rstrip().endswith(yamlio.ORPHAN_MARK + "\n# old laptop, remove")
    again = yamlio.dump(doc, document.item_id, document.HEADER, document.read_comments(out))
    assert again == out  # the orphan block is not duplicated or moved on the next re-learn


def test_hash_inside_quoted_value_is_not_a_comment():
    doc = {"version": 1, "mqtt": [{"client": "10.0.0.5", "broker": "10.0.0.9", "status": "learned",
                                   "subscribes": {"plant/#": {"qos": [1]}}}]}
    text = yamlio.dump(doc, document.item_id, [])
    c = document.read_comments(text)
    assert not c
    out = yamlio.dump(doc, document.item_id, [], c)
    assert out == text


# ---------------------------------------------------------------------------------------------- loading

def _text(**changes):
    doc = _doc()
    for k, v in changes.items():
        doc["modbus"][0][k] = v
    return yamlio.dump(doc, document.item_id, document.HEADER)


def test_load_ok():
    b = parse(_text(), "b.yaml")
    assert b.count() == 3
    assert set(b.section("modbus")) == {"10.0.0.2|10.0.0.10|1"}


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


@pytest.mark.parametrize("mutate,message,needle", [
    (lambda t: t.replace("    status: learned\n    functions", "    status: reviewed\n    functions"),
     "status must be one of approved, denied, learned (got 'reviewed')", "status: reviewed"),
    (lambda t: t.replace("slave: 10.0.0.10", "slave: plc-1"), "'slave' must be an IP address", "slave: plc-1"),
    (lambda t: t.replace("unit: 1\n", "unit: 256\n"), "'unit' must be a Modbus unit id 0-255", "unit: 256"),
    (lambda t: t.replace("opcua: []", "opcua: []\nmodbuz: []"), "unknown top-level key 'modbuz'", "modbuz"),
    (lambda t: t.replace("version: 1", "version: 2"), "unsupported format version 2", "version: 2"),
    (lambda t: t.replace("  - ip: 10.0.0.10\n", "  - ip: 10.0.0.2\n"), "duplicate assets entry 10.0.0.2",
     None),
    (lambda t: t.replace("    status: learned\n    roles: [modbus_slave]", "    roles: [modbus_slave]"),
     "status must be one of", None),
])
def test_load_errors_name_the_place(mutate, message, needle):
    text = mutate(_text())
    with pytest.raises(BaselineError) as ei:
        parse(text, "b.yaml")
    e = ei.value
    assert message in e.message
    assert e.source.path == "b.yaml" and e.source.line is not None
    if needle:
        assert e.source.line == _line_of(text, needle), (str(e), text)


def test_load_invalid_yaml_names_line():
    with pytest.raises(BaselineError) as ei:
        parse("version: 1\nassets: [\n", "b.yaml")
    assert ei.value.source.line is not None and "invalid YAML" in ei.value.message


@pytest.mark.parametrize("field,value,message", [
    ("reads", {"holding_registers": ["9-3"]}, "bad address range '9-3'"),
    ("reads", {"holding_registers": ["0-65536"]}, "bad address range"),
    ("reads", {"holding_registerz": [1]}, "unknown table 'holding_registerz'"),
    ("functions", {128: "x"}, "functions must map function codes (0-127)"),
    ("values", {"holding_registers": {20: {"band": [60, 40]}}}, "LOW <= HIGH"),
    ("polls", [{"function": 3, "address": 0, "period": 0}], "period > 0"),
])
def test_modbus_section_errors(field, value, message):
    from ids.config import BaselineConfig
    from ids.detect.baseline.enforcer import BaselineDetector
    text = _text(**{field: value})
    b = parse(text, "b.yaml")
    with pytest.raises(BaselineError) as ei:
        BaselineDetector(b, BaselineConfig())
    assert message in ei.value.message
    assert ei.value.source.line is not None and ei.value.source.line >= _line_of(text, f"{field}:")


def test_modbus_range_edges_accepted():
    from ids.config import BaselineConfig
    from ids.detect.baseline.enforcer import BaselineDetector
    b = parse(_text(reads={"holding_registers": ["0-65535", 7, [3, 4]]}), "b.yaml")
    BaselineDetector(b, BaselineConfig())


# ---------------------------------------------------------------------------------------------- re-learn

def _baseline(doc) -> Baseline:
    return parse(yamlio.dump(doc, document.item_id, document.HEADER), "x.yaml")


def test_merge_keeps_review_and_drops_unseen_learned_entries():
    old_doc = _doc()
    old_doc["assets"][0]["status"] = "approved"
    old_doc["assets"][0]["note"] = "HMI, approved"
    old_doc["assets"][1]["note"] = "PLC"
    old_doc["modbus"][0]["status"] = "denied"
    old_doc["assets"].append({"ip": "10.0.0.99", "status": "learned", "roles": ["modbus_master"]})
    new_doc = _doc()
    new_doc["assets"][0]["roles"] = ["modbus_master", "mqtt_client"]  # more facts for an approved entry
    new_doc["modbus"][0]["functions"][16] = "write_multiple_registers"
    old, new = _baseline(old_doc), _baseline(new_doc)
    rep = merge_review(new, old)
    a = new.section("assets")
    assert a["10.0.0.2"]["roles"] == ["modbus_master"] and a["10.0.0.2"]["status"] == "approved"
    assert a["10.0.0.10"]["note"] == "PLC" and a["10.0.0.10"]["status"] == "learned"
    assert "10.0.0.99" not in a and rep.dropped_learned == ["asset 10.0.0.99"]
    assert new.section("modbus")["10.0.0.2|10.0.0.10|1"]["status"] == "denied"
    assert 16 not in new.section("modbus")["10.0.0.2|10.0.0.10|1"]["functions"]
    assert rep.kept_reviewed == 2 and rep.carried_status == 1
    labels = dict(rep.reviewed_with_new)
    assert labels["asset 10.0.0.2"] == ["roles mqtt_client"]
    assert labels["modbus 10.0.0.2 -> 10.0.0.10 unit 1"] == ["functions.16"]


# ---------------------------------------------------------------------------------------------- diff

def test_diff_by_identity():
    a = _doc()
    b = copy.deepcopy(a)
    b["assets"].reverse()  # order is no difference
    assert document.diff(_baseline(a), _baseline(b)) == []
    b["assets"].append({"ip": "10.0.0.7", "status": "learned", "roles": ["modbus_master"]})
    b["modbus"][0]["reads"]["holding_registers"] = ["0-19", 20]
    b["modbus"][0]["status"] = "approved"
    del b["assets"][0]
    ch = document.diff(_baseline(a), _baseline(b))
    got = {(c.op, c.label): c.details for c in ch}
    assert ("added", "asset 10.0.0.7") in got
    assert ("removed", "asset 10.0.0.10") in got
    d = got[("changed", "modbus 10.0.0.2 -> 10.0.0.10 unit 1")]
    assert "status: learned -> approved" in d
    assert "reads.holding_registers: +0-19 -0-9" in d


def test_scalars_that_resolve_to_unconstructible_ints_are_quoted():
    """'0x_' and '0b_' are ints to YAML's resolver that do not construct: the writer's check raised
    ValueError on them, so a topic or client id of that name ended `otids learn`. Now quoted, and any
    string written plain reads back as itself (the writer no longer parses each string to decide: a
    64,000-topic baseline spent 41 s there)."""
    import random
    import string
    for s in ("0x_", "0b_", "+0b_", "...", "... a"):
        assert yamlio.scalar(s).startswith('"') and yaml.safe_load(yamlio.scalar(s)) == s
    rnd = random.Random(11)
    alphabet = string.ascii_letters + string.digits + " -_./:#@!?&*|>%\\'\"{}[],=~+`." + "éü€"
    for _ in range(20_000):
        s = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6)))
        assert yaml.safe_load(yamlio.scalar(s)) == s, s
    b = Baseline()
    b.section("mqtt")["10.0.0.5|10.0.0.9"] = {"client": "10.0.0.5", "broker": "10.0.0.9", "status": "learned",
                                              "publishes": {"0x_": {"qos": [0]}, "0b_": {"qos": [1]}}}
    assert parse(b.dump(), "x.yaml").entries["mqtt"] == b.entries["mqtt"]
