"""ids.yamlload.load_plain builds a YAML document's data from the parser's events, without PyYAML's node
tree (two marks per node: a 64,000-topic baseline peaked at 243 MB traced for 36 MB of data). It must build
exactly what get_single_data builds, or say NotPlain and leave the text to the node tree."""
from __future__ import annotations

import math
import tracemalloc

import pytest
import yaml

from ids.yamlload import FastLoader, NotPlain, SafeLoader, load_plain

CASES = {
    "empty": "",
    "comment only": "# nothing\n",
    "null document": "---\n...\n",
    "scalar document": "5\n",
    "plain mapping": "a: 1\nb: [1, 2.5, -3, 0x1f, 0o17, 1_000]\nc: {d: null, e: ~, f: true, g: no}\n",
    "floats": "a: [.inf, -.Inf, .nan, 1e3, 6.02e+23, 1.5]\n",
    "timestamps": "a: 2026-12-06\nb: 2026-12-06T03:04:05.123456Z\nc: 2026-12-06 03:04:05 +02:00\n",
    "explicit scalar tags": "a: !!str 5\nb: !!int '7'\nc: !!float 1\nd: !!binary aGVsbG8=\ne: ! 5\nf: !!null ''\n",
    "block and flow nesting": "top:\n  - name: x\n    items: [{a: 1}, {b: [2, [3, [4]]]}]\n  - []\n  - {}\n",
    "keys of every scalar type": "1: int\n2.5: float\ntrue: bool\nnull: none\n2026-01-01: date\n'5': str\n",
    "duplicate keys": "a: 1\na: 2\nb: {x: 1, x: 3}\n",
    "unicode and escapes": "a: \"\\u00e9\\t\\x41\"\nb: 'it''s'\nc: |\n  two\n  lines\nd: >\n  folded\n  text\n",
    "directive": "%YAML 1.1\n---\na: 1\n",
    "tagged map and seq": "a: !!map {b: 1}\nc: !!seq [1]\n",
    # what only the node tree builds: NotPlain, and the node tree then builds or rejects it
    "anchor and alias": "a: &x [1, 2]\nb: *x\n",
    "merge key": "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n",
    "set": "s: !!set {a, b}\n",
    "omap": "o: !!omap [{a: 1}, {b: 2}]\n",
    "complex key": "? [1, 2]\n: x\n",
    "mapping key": "? {a: 1}\n: x\n",
    "two documents": "a: 1\n---\nb: 2\n",
    # errors: the same error either way
    "bad date": "a: 2026-02-30\n",
    "bad offset": "a: 2026-12-06 03:04:05 +99:00\n",
    "huge int": "a: " + "9" * 5000 + "\n",
    "unknown tag": "a: !custom 5\n",
    "python tag": "a: !!python/object:os.system x\n",
    "syntax error": "a: [1, 2\nb: 3\n",
    "tab indentation": "a:\n\t- 1\n",
    "too deep": "[" * 200 + "]" * 200 + "\n",
}


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _reference(text: str, loader):
    try:
        ld = loader(text)
    except yaml.YAMLError as e:
        return "error", str(e)
    try:
        return "data", ld.get_single_data()
    except yaml.YAMLError as e:
        return "error", str(e)
    finally:
        ld.dispose()


@pytest.mark.parametrize("loader", [FastLoader, SafeLoader], ids=["libyaml", "python"])
@pytest.mark.parametrize("case", list(CASES))
def test_plain_load_builds_what_the_node_tree_builds(case, loader):
    text = CASES[case]
    want = _reference(text, loader)
    try:
        got = "data", load_plain(text, loader)
    except NotPlain:
        assert case in ("anchor and alias", "merge key", "set", "omap", "complex key", "mapping key",
                        "two documents"), f"{case}: NotPlain"
        return
    except yaml.YAMLError as e:
        got = "error", str(e)
    assert got[0] == want[0], (case, got, want)
    if got[0] == "data":
        assert _same(got[1], want[1]), (case, got[1], want[1])


def _baseline_text(topics: int) -> str:
    rows = "".join(f"      plant/line{i % 7}/cell{i % 13}/sensor{i}: {{qos: [0], messages: 1}}\n" for i in range(topics))
    return ("version: 1\nmqtt:\n  - client: 10.0.0.1\n    broker: 192.168.0.10\n    status: learned\n"
            "    messages: 1\n    client_ids: [flooder]\n    publishes:\n" + rows)


def test_baseline_parse_peaks_near_the_data_it_keeps():
    """A baseline of 5,000 MQTT topics: the node tree made the parse peak at about 6.7 times the data it
    keeps (and glibc kept that peak as the RSS of `analyze --baseline` for the whole run: 300 MB for
    64,000 topics); built from events it peaks under twice the data, and the data is the same."""
    from ids.detect.baseline import document
    text = _baseline_text(5_000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        b = document.parse(text, "big.yaml")
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held -= before + len(text) * 2  # Baseline keeps the text for its marks
    peak -= before
    assert len(b.section("mqtt")) == 1
    assert peak < 2 * held + (len(text) * 3), (peak, held)
    assert _same(document._node_and_data(text)[1]["mqtt"][0], next(iter(b.section("mqtt").values())))


POSITION_TEXTS = dict(CASES, **{
    "baseline sections": ("version: 1\nmodbus:\n  - master: 10.0.0.1  # the HMI\n    slave: 10.0.0.2\n    unit: 1\n"
                          "    status: learned\n    polls:\n      - {function: 3, address: 5}\n      # hand poll\n"
                          "      - function: 4\n        address: 7\nmqtt:\n  - client: 10.0.0.3\n    broker: 10.0.0.4\n"
                          "    publishes:\n      a/b: {qos: [0]}\n      c: {qos: [1]}\n"),
    "root list": "- a: 1\n  b: [x, y]\n- c\n- - d\n  - {e: 1}\n",
})


@pytest.mark.parametrize("case", list(POSITION_TEXTS))
def test_comment_positions_from_events_match_the_node_tree(case):
    """The baseline writer keys reviewers' comments by the path starting on each line (yamlio._positions):
    found from events, the paths are those the node-tree walk finds, in the same order per line."""
    from ids.detect.baseline import yamlio
    from ids.detect.baseline.document import item_id
    text = POSITION_TEXTS[case]
    try:
        ld = FastLoader(text)
    except yaml.YAMLError:
        return
    try:
        node = ld.get_single_node()
        want: dict = {}
        if node is not None:
            yamlio._walk(node, ld.construct_document(node), (), want, item_id)
    except yaml.YAMLError:
        return
    finally:
        ld.dispose()
    try:
        got = yamlio._Starts(item_id).read(text, FastLoader)
    except NotPlain:
        assert case in ("anchor and alias", "merge key", "set", "omap", "complex key", "mapping key",
                        "two documents", "duplicate keys",
                        "keys of every scalar type"), f"{case}: NotPlain"  # (1 and true: one key in Python)
        return
    assert got == want


def test_comment_positions_peak_near_the_paths_they_keep():
    """`learn` into a large baseline read its comments' places on the node tree: 357 MB RSS for a
    64,000-topic baseline (182 MB from events). 5,000 topics here, traced: under four times the data."""
    from ids.detect.baseline import yamlio
    from ids.detect.baseline.document import item_id
    text = _baseline_text(5_000).replace("    status: learned\n", "    status: learned  # reviewed\n")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        c = yamlio.read_comments(text, item_id)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert c.trailing and c.trailing[0][1] == "# reviewed"
    assert peak < 4 * len(text) * 8, (peak, len(text))
