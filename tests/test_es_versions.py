"""Elasticsearch 8.x and 9.x (and an unsupported 7.x) as the cluster's own GET / says, through stand-in
servers on loopback that check media types the way Elasticsearch does (es_helpers.Recorder): the client
speaks each cluster's major; whole-request failures (413 from a proxy, 400, 429, 5xx) are split, retried or
spooled and never dead-lettered; a run whose documents did not reach the cluster exits non-zero with one
line; templates are installed when absent or older and overwritten only with --force."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import PCAPS, read_ndjson, run_cli
from es_helpers import Recorder, es_config

from ids.output import esgen
from ids.output.elasticsearch import AlertSink, EsBackend, Shipper, install
from ids.output.elasticsearch.backend import connect
from ids.output.fields import load_fields
from ids.pipeline import analyze

STORM = PCAPS / "modbus-alert-storm.pcap"
DEMO = PCAPS / "modbus-demo.pcap"


@pytest.fixture(scope="module")
def storm():
    run, col = analyze([str(STORM)])
    assert len(col.alerts) == 109
    return col


def cfg_file(tmp_path: Path, **keys) -> str:
    lines = ["elasticsearch:", f"  spool_dir: {tmp_path / 'spool'}", f"  dead_letter: {tmp_path / 'dead.ndjson'}",
             "  flush_interval_ms: 50", "  shutdown_timeout: 3", "  backoff_initial_ms: 20",
             "  backoff_max_ms: 50", "  retries: 1"]
    lines += [f"  {k}: {v}" for k, v in keys.items()]
    p = tmp_path / "otids.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def compat_versions(rec: Recorder) -> set[str]:
    """Every compatible-with version the client asked for (Accept and Content-Type)."""
    out = set()
    for r in rec.requests:
        for h in ("accept", "content-type"):
            out.update(re.findall(r"compatible-with=(\d+)", r["headers"].get(h, "")))
    return out


@pytest.mark.parametrize("version", ["8.19.3", "8.18.8", "9.1.0", "9.2.1"])
def test_each_major_gets_its_own_compatible_with(tmp_path, storm, version):
    rec = Recorder(version=version)
    try:
        sh = Shipper(rec.url, es_config(tmp_path, flavor="auto"))
        sink = AlertSink(sh, "default")
        for a in storm.alerts:
            sink.write_alert(a)
        sink.close()
        c = sh.counters()
        assert (c["sent"], c["rejected"], c["spooled"]) == (109, 0, 0), sh.summary()
        assert sink.failure is None
        assert compat_versions(rec) == {version.split(".")[0]}
        assert all(r["status"] == 200 or r["method"] == "GET" and r["status"] == 404 for r in rec.requests), [(r["path"], r["status"]) for r in rec.requests]
        assert sh.backend.version == version
        # setup went through too: pipeline, components and index templates are on the stand-in
        assert "/_index_template/logs-otids.alert" in rec.objects and "/_ingest/pipeline/otids@ingest" in rec.objects
    finally:
        rec.close()


def test_the_unpatched_client_is_refused_by_8x(tmp_path):
    """What issue #17 saw: the 9 client's own headers against 8.x -> 400 media_type_header_exception (the
    stand-in is strict the way Elasticsearch is; this is the check that it is)."""
    rec = Recorder(version="8.19.3")
    try:
        raw = EsBackend(rec.url, es_config(tmp_path), {})  # no major: the client's compatible-with=9
        with pytest.raises(Exception) as e:
            raw.request("GET", "/_index_template/x")
        assert "Accept version must be either version 8 or 7, but found 9" in str(e.value)
        b, info = connect(rec.url, es_config(tmp_path), {})
        with pytest.raises(Exception, match="404"):  # understood: it simply is not there
            b.request("GET", "/_index_template/x")
    finally:
        rec.close()


def test_cli_against_8x_delivers_and_exits_0(tmp_path):
    rec = Recorder(version="8.19.3")
    try:
        al = tmp_path / "alerts.ndjson"
        p = run_cli("analyze", str(STORM), "--es", rec.url, "-o", str(al), "-c", cfg_file(tmp_path))
        assert "sent 109, duplicates 0, retried 0, spooled 0, rejected 0, dropped 0" in " ".join(p.stderr.split())
        ids = [a["event"]["id"] for a in read_ndjson(al)]
        assert [x["create"]["_id"] for x, _ in rec.bulk_actions()] == ids
    finally:
        rec.close()


def test_unsupported_7x_exits_non_zero_with_one_line(tmp_path):
    rec = Recorder(version="7.17.25")
    try:
        p = run_cli("analyze", str(STORM), "--es", rec.url, "-o", str(tmp_path / "a.ndjson"), "-q",
                    "-c", cfg_file(tmp_path), check_rc=1)
        lines = [x for x in p.stderr.splitlines() if x.startswith("otids: error:")]
        assert len(lines) == 1, p.stderr
        assert "109 document(s) did not reach" in lines[0] and "left in the spool" in lines[0]
        assert "Elasticsearch 7.17.25 is not supported: otids needs 8.x or 9.x" in lines[0]
        assert not (tmp_path / "dead.ndjson").exists()
    finally:
        rec.close()


@pytest.mark.parametrize("status", [400, 429, 502, 503])
def test_whole_request_failures_are_spooled_not_dead_lettered(tmp_path, status):
    rec = Recorder(version="9.1.0")
    rec.bulk_script = [status] * 1000
    try:
        p = run_cli("analyze", str(STORM), "--es", rec.url, "-o", str(tmp_path / "a.ndjson"), "-q",
                    "-c", cfg_file(tmp_path), check_rc=1)
        line = next(x for x in p.stderr.splitlines() if x.startswith("otids: error: elasticsearch"))
        assert "109 document(s) did not reach" in line and f"HTTP {status}" in line, line
        assert not (tmp_path / "dead.ndjson").exists()
        down = [x for x in p.stderr.splitlines() if " down (" in x]
        assert len(down) == 1 and len(down[0]) < 300, down  # one short line per state change
        # the next run (the cluster fine again) ships the spool
        rec.bulk_script = []
        p = run_cli("es", "load", "--es", rec.url, "-c", cfg_file(tmp_path))
        assert "replayed from spool 109" in p.stdout
    finally:
        rec.close()


def test_413_from_a_proxy_splits_requests(tmp_path, storm):
    """nginx in front with a small client_max_body_size: requests are halved until they pass, later
    ones are cut to the size that passed; nothing is dead-lettered."""
    rec = Recorder(version="9.1.0")
    rec.body_limit = 20_000
    try:
        sh = Shipper(rec.url, es_config(tmp_path, batch_size=109, flush_interval_ms=500))
        sink = AlertSink(sh, "default")
        for a in storm.alerts:
            sink.write_alert(a)
        sink.close()
        c = sh.counters()
        assert (c["sent"], c["rejected"], c["spooled"], c["dropped"]) == (109, 0, 0, 0), sh.summary()
        bulks = [r for r in rec.requests if r["path"].startswith("/_bulk")]
        assert bulks[0]["status"] == 413 and len(bulks[0]["body"]) > 20_000
        assert all(len(r["body"]) <= 20_000 for r in bulks if r["status"] == 200)
        assert len({a["create"]["_id"] for a, _ in rec.bulk_actions(status=200)}) == 109
        assert not Path(sh.cfg.dead_letter).exists()
    finally:
        rec.close()


def test_one_document_over_the_limit_is_dead_lettered_alone(tmp_path, storm):
    rec = Recorder(version="9.1.0")
    rec.body_limit = 3_000
    try:
        sh = Shipper(rec.url, es_config(tmp_path, batch_size=10))
        sink = AlertSink(sh, "default")
        for a in storm.alerts[:10]:
            sink.write_alert(a)
        big = storm.alerts[10]
        from dataclasses import replace
        sink.write_alert(replace(big, reason="x" * 5000))
        sink.close()
        c = sh.counters()
        assert (c["sent"], c["rejected"]) == (10, 1), sh.summary()
        dead = read_ndjson(Path(sh.cfg.dead_letter))
        assert dead[0]["status"] == 413 and dead[0]["error"]["type"] == "request_entity_too_large"
        assert "413 Request Entity Too Large" in dead[0]["error"]["reason"]
        assert sink.failure.startswith("elasticsearch: 1 document(s) did not reach")
    finally:
        rec.close()


def test_partial_failures_dead_letter_only_the_rejected_document(tmp_path, storm):
    rec = Recorder(version="8.19.3")
    rec.bulk_script = [[201] * 4 + [400] + [429] + [201] * 4, None]
    try:
        sh = Shipper(rec.url, es_config(tmp_path, batch_size=10))
        sink = AlertSink(sh, "default")
        for a in storm.alerts[:10]:
            sink.write_alert(a)
        sink.close()
        c = sh.counters()
        assert (c["sent"], c["rejected"], c["retried"]) == (9, 1, 1), sh.summary()
        assert len(read_ndjson(Path(sh.cfg.dead_letter))) == 1
    finally:
        rec.close()


def test_setup_installs_when_absent_or_older_and_overwrites_only_with_force(tmp_path):
    rec = Recorder(version="9.1.0")
    try:
        fs = load_fields()
        b, _ = connect(rec.url, es_config(tmp_path), {})
        layout = esgen.Layout()
        first = install(b, layout, fs)
        assert all(x.startswith("installed ") for x in first) and len(first) == 8
        # an administrator edits the alert template (keeping its version): kept
        rec.objects["/_index_template/logs-otids.alert"]["priority"] = 333
        second = install(b, layout, fs)
        assert all(x.startswith("kept ") for x in second)
        assert rec.objects["/_index_template/logs-otids.alert"]["priority"] == 333
        # an older otids's template (version 1, or none at all) is upgraded
        rec.objects["/_index_template/logs-otids.alert"]["version"] = 1
        del rec.objects["/_component_template/otids@mappings"]["version"]
        third = install(b, layout, fs)
        assert f"upgraded index_template logs-otids.alert (version 1 -> {esgen.TEMPLATE_VERSION})" in third
        assert f"upgraded component_template otids@mappings (version none -> {esgen.TEMPLATE_VERSION})" in third
        assert rec.objects["/_index_template/logs-otids.alert"]["priority"] == 210
        rec.objects["/_index_template/logs-otids.alert"]["priority"] = 333
        forced = install(b, layout, fs, force=True)
        assert all(x.startswith("overwrote ") for x in forced)
        assert rec.objects["/_index_template/logs-otids.alert"]["priority"] == 210
    finally:
        rec.close()


def test_setup_command_against_8x_and_force(tmp_path):
    rec = Recorder(version="8.18.8")
    try:
        p = run_cli("es", "setup", "--es", rec.url, "--no-kibana", "-c", cfg_file(tmp_path))
        assert p.stdout.splitlines()[0] == f"otids: elasticsearch 8.18.8 at {rec.url} (data_stream mode)"
        p = run_cli("es", "setup", "--es", rec.url, "--no-kibana", "-c", cfg_file(tmp_path))
        assert "kept index_template logs-otids.alert" in p.stdout
        p = run_cli("es", "setup", "--es", rec.url, "--no-kibana", "--force", "-c", cfg_file(tmp_path))
        assert "overwrote index_template logs-otids.alert" in p.stdout
    finally:
        rec.close()


def test_setup_refused_exits_non_zero(tmp_path):
    rec = Recorder(version="9.1.0")
    rec.put_status = 403
    try:
        p = run_cli("es", "setup", "--es", rec.url, "--no-kibana", "-c", cfg_file(tmp_path), check_rc=2)
        assert "setup failed: 403" in p.stderr
    finally:
        rec.close()


def test_cluster_documents_carry_sensor_message_and_ecs(tmp_path, storm):
    rec = Recorder(version="9.1.0")
    try:
        cfg = es_config(tmp_path, sensor_name="cell3")
        sh = Shipper(rec.url, cfg)
        sink = AlertSink(sh, "plant1", cfg.sensor_name)
        sink.write_alert(storm.alerts[0])
        sink.close()
        (action, doc), = rec.bulk_actions()
        a = storm.alerts[0]
        assert doc["message"] == f"{a.rule_name}: {a.reason}"
        assert doc["observer"]["name"] == doc["host"]["name"] == "cell3" and doc["observer"]["type"] == "ids"
        assert doc["ecs"]["version"] and doc["data_stream"] == {"type": "logs", "dataset": "otids.alert",
                                                                "namespace": "plant1"}
        assert [str(i) for i in load_fields().validate(doc)] == []
        assert json.dumps(doc).count('"id"') >= 1 and action["create"]["_id"] == doc["event"]["id"]
    finally:
        rec.close()


def test_opensearch_ism_versioned_too(tmp_path):
    rec = Recorder(distribution="opensearch", version="2.19.1")
    try:
        b, _ = connect(rec.url, es_config(tmp_path), {})
        assert b.flavor == "opensearch"
        layout = esgen.Layout(flavor="opensearch", mode="index")
        assert install(b, layout)[0] == "installed ism otids-alerts"
        assert install(b, layout)[0].startswith("kept ism otids-alerts (version 2")
        forced = install(b, layout, force=True)[0]
        assert forced.startswith("overwrote ism otids-alerts")
        put = [r for r in rec.requests if r["method"] == "PUT" and "_ism" in r["path"]][-1]
        assert put["path"].endswith("?if_seq_no=0&if_primary_term=1")  # ISM's optimistic concurrency
    finally:
        rec.close()
