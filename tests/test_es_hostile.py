"""The Elasticsearch sink against hostile `_bulk` answers (issue #16 item 5): a stand-in server on
127.0.0.1 (es_helpers.Recorder) answers the first bulk requests with wrong-shape JSON, non-JSON, lies and
huge bodies, then as Elasticsearch does. Whatever came first, the sender keeps going, every document ends
sent, spooled or dead-lettered (never lost), and what is kept of an error is cut to a bounded size."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from conftest import PCAPS
from es_helpers import RawAnswer, Recorder, es_config

from ids.output.elasticsearch import AlertSink, Shipper
from ids.output.elasticsearch.answers import MAX_REASON, BadAnswer, bulk_items
from ids.pipeline import analyze

N = 12  # documents per case
MB = 1 << 20


@pytest.fixture(scope="module")
def alerts():
    run, col = analyze([str(PCAPS / "modbus-alert-storm.pcap")])
    assert len(col.alerts) >= N
    return col.alerts[:N]


def _items(n, status=201, **extra):
    return {"errors": False, "items": [{"create": {"_index": "x", "_id": str(i), "status": status, **extra}}
                                       for i in range(n)]}


def _j(v) -> bytes:
    return json.dumps(v).encode()


HUGE = "A" * (3 * MB)
CASES = {
    "array": RawAnswer(200, b"[1, 2, 3]"),
    "string": RawAnswer(200, b'"ok"'),
    "null": RawAnswer(200, b"null"),
    "items_string": RawAnswer(200, _j({"errors": False, "items": "all fine"})),
    "items_missing": RawAnswer(200, _j({"errors": False, "took": 3})),
    "items_null_entries": RawAnswer(200, _j({"errors": False, "items": [None] * N})),
    "items_strings": RawAnswer(200, _j({"errors": False, "items": ["created"] * N})),
    "items_empty_objects": RawAnswer(200, _j({"errors": False, "items": [{}] * N})),
    "items_too_few": RawAnswer(200, _j(_items(N - 1))),
    "items_too_many": RawAnswer(200, _j(_items(N + 5))),
    "status_string": RawAnswer(200, _j(_items(N, status="201"))),
    "status_bool": RawAnswer(200, _j(_items(N, status=True))),
    "status_float": RawAnswer(200, _j(_items(N, status=201.0))),
    "non_utf8": RawAnswer(200, b"\xff\xfe{\x00\"\xc3\x28items\xa0\xa1"),
    "truncated": RawAnswer(200, _j(_items(N))[:40], length=len(_j(_items(N)))),
    "gzip_lie": RawAnswer(200, _j(_items(N)), headers={"Content-Encoding": "gzip"}),
    "gzip_garbage": RawAnswer(200, gzip.compress(_j(_items(N)))[:30], headers={"Content-Encoding": "gzip"}),
    "html_200": RawAnswer(200, b"<html><body><h1>Welcome to nginx!</h1></body></html>", ctype="text/html"),
    "html_200_no_product": RawAnswer(200, b"<html>proxy</html>", ctype="text/html", product=False),
    "huge_html_502": RawAnswer(502, b"<html>" + b"x" * (30 * MB) + b"</html>", ctype="text/html"),
    "huge_json_200": RawAnswer(200, _j({"errors": False, "items": "y" * (30 * MB)})),
    "huge_error_500": RawAnswer(500, _j({"error": {"type": "boom", "reason": HUGE}, "status": 500})),
    "deep_json": RawAnswer(200, b"[" * 5000 + b"]" * 5000),
    "slow_drip": RawAnswer(200, _j(_items(N)), drip=64, pause=0.02),
}


def _ship(rec, alerts, caplog, cfg):
    """Every alert through a sink to `rec`, closed; the shipper and its counters (no internal error)."""
    sh = Shipper(rec.url, cfg)
    sink = AlertSink(sh, "default")
    caplog.set_level(logging.WARNING, logger="otids.es")
    for a in alerts:
        sink.write_alert(a)
    sink.close()
    assert "internal error" not in (sh.last_error or ""), sh.last_error
    return sh, sh.counters()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_bulk_answer_never_stops_the_sender(case, alerts, tmp_path, caplog):
    """The first bulk request gets the hostile answer, the later ones real answers: every document is
    delivered (retried), none rejected, spooled or lost; the sender is alive and its log lines are short."""
    rec = Recorder()
    try:
        rec.bulk_raw = [CASES[case]]
        sh, c = _ship(rec, alerts, caplog, es_config(tmp_path, flavor="elasticsearch", retries=3, batch_size=N,
                                                     timeout=5))
        assert (c["sent"], c["rejected"], c["dropped"], c.get("lost", 0)) == (N, 0, 0, 0), c
        if case != "slow_drip":  # a slow but valid answer is a success
            assert c["retried"] >= 1, c  # the hostile answer was noticed, not taken for a success
        assert all(len(r.getMessage()) < 1000 for r in caplog.records), [len(r.getMessage()) for r in caplog.records]
    finally:
        rec.close()


def test_huge_per_document_reasons_are_dead_lettered_cut(alerts, tmp_path):
    """A 400 per document with a 3 MB reason: the document is dead-lettered (not retried forever, not lost),
    its error cut to MAX_REASON characters."""
    rec = Recorder()
    try:
        body = {"errors": True, "items": [{"create": {"_index": "x", "_id": str(i), "status": 400,
                                                      "error": {"type": "mapper_parsing_exception", "reason": HUGE,
                                                                "caused_by": {"type": "x", "reason": HUGE}}}}
                                          for i in range(3)]}
        rec.bulk_raw = [RawAnswer(200, _j(body))]
        sh = Shipper(rec.url, es_config(tmp_path, flavor="elasticsearch", retries=1, batch_size=3))
        sink = AlertSink(sh, "default")
        for a in alerts[:3]:
            sink.write_alert(a)
        sink.close()
        c = sh.counters()
        assert (c["sent"], c["rejected"]) == (0, 3), c
        lines = Path(sh.cfg.dead_letter).read_text().splitlines()
        assert len(lines) == 3
        for line in lines:
            err = json.loads(line)["error"]
            assert len(err["reason"]) <= MAX_REASON and len(err["caused_by"]["reason"]) <= MAX_REASON
            assert len(line) < 40_000
    finally:
        rec.close()


def test_always_hostile_server_spools_everything(alerts, tmp_path):
    """A server that never answers sensibly: nothing is sent, every document is in the spool (counted), the
    run ends within its shutdown timeout."""
    rec = Recorder()
    try:
        rec.bulk_raw = [RawAnswer(200, b"<html>login</html>", ctype="text/html") for _ in range(200)]
        sh = Shipper(rec.url, es_config(tmp_path, flavor="elasticsearch", retries=1, batch_size=N,
                                        shutdown_timeout=2))
        sink = AlertSink(sh, "default")
        for a in alerts:
            sink.write_alert(a)
        sink.close()
        c = sh.counters()
        assert c["sent"] == 0 and c["spooled"] == N and c["dropped"] == 0, c
        assert "internal error" not in sh.last_error
    finally:
        rec.close()


@pytest.mark.parametrize("body,why", [
    ([], "not a JSON object"), ("x", "not JSON"), ({"items": 3}, "no list of items"),
    ({"items": [{"a": 1, "b": 2}]}, "one action"), ({"items": [{"create": []}]}, "not an object"),
    ({"items": []}, "0 items for 1"),
])
def test_bulk_items_says_what_is_wrong(body, why):
    with pytest.raises(BadAnswer, match=why):
        bulk_items(body, 1)


def test_bulk_items_cuts_and_keeps_shape():
    out = bulk_items({"items": [{"index": {"status": 429, "error": {"type": "t" * 10_000, "reason": ["r"] * 10**5}}},
                                {"create": {"status": "500"}}]}, 2)
    assert out[0]["status"] == 429 and len(out[0]["error"]["type"]) <= 100 and len(out[0]["error"]["reason"]) <= MAX_REASON
    assert out[1]["status"] is None and "not an integer" in out[1]["error"]


# The sender's other reads: GET / when it connects (and after every outage), and with elasticsearch.setup
# the GETs of the objects it installs. Before, a GET / whose `version` was not an object, JSON nested past
# the parser, or a template/policy GET of another shape raised out of the sender thread: "sender stopped by
# an internal error", every later document spooled for the rest of the run.
DEEP = b"[" * 100_000 + b"]" * 100_000
CONNECT_CASES = {
    "root_version_string": ("GET /", RawAnswer(200, _j({"name": "x", "version": "9.1.0"}))),
    "root_version_null": ("GET /", RawAnswer(200, _j({"version": None, "tagline": "You Know, for Search"}))),
    "root_version_list": ("GET /", RawAnswer(200, _j({"version": ["9.1.0"]}))),
    "root_deep": ("GET /", RawAnswer(200, DEEP)),
    "ilm_list": ("GET /_ilm/policy/otids-alerts", RawAnswer(200, b"[1, 2]")),
    "ilm_policy_string": ("GET /_ilm/policy/otids-alerts", RawAnswer(200, _j({"otids-alerts": {"policy": "x"}}))),
    "pipeline_string": ("GET /_ingest/pipeline/otids@ingest", RawAnswer(200, _j({"otids@ingest": "x"}))),
    "template_entry_string": ("GET /_index_template/logs-otids.alert", RawAnswer(200, _j({"index_templates": ["x"]}))),
    "template_no_body": ("GET /_index_template/logs-otids.alert",
                         RawAnswer(200, _j({"index_templates": [{"name": "logs-otids.alert"}]}))),
    "template_deep": ("GET /_index_template/logs-otids.alert", RawAnswer(200, DEEP)),
}


@pytest.mark.parametrize("case", sorted(CONNECT_CASES))
def test_hostile_connect_and_setup_answers_never_stop_the_sender(case, alerts, tmp_path, caplog):
    """The first answer to GET / (or to one of setup's GETs) is of the wrong shape, the later ones real: the
    cluster counts as down for that moment (or, for setup, the templates are left to `otids es setup` with
    a warning), the sender keeps going and every document is delivered."""
    rec = Recorder()
    try:
        key, raw = CONNECT_CASES[case]
        rec.path_raw = {key: [raw]}
        sh, c = _ship(rec, alerts, caplog, es_config(tmp_path, flavor="elasticsearch", setup=True, retries=3,
                                                     batch_size=N))
        assert [r for r in rec.requests if r.get("status") == raw.status and r["path"].split("?")[0] == key.split()[1]]
        # a GET / refused: spooled while "down", then replayed; a setup GET refused: shipped straight away
        assert (c["sent"], c["rejected"], c["dropped"], c["replayed"]) == (N, 0, 0, c["spooled"]), c
        assert "unexpected answer" in caplog.text, caplog.text
        assert all(len(r.getMessage()) < 1000 for r in caplog.records), [len(r.getMessage()) for r in caplog.records]
    finally:
        rec.close()
