"""The Elasticsearch / OpenSearch output over real HTTP: osmem-server (OpenSearch-compatible, in memory)
for documents, mappings, duplicates and rejections; a recording server for what osmem cannot answer
(data streams, ILM, Kibana import, scripted 429/503). Fault injection (server stopped mid-run) is in
test_es_fault.py."""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import PCAPS, ROOT, read_ndjson, run_cli
from es_helpers import Osmem, PlainJsonNode, RawAnswer, Recorder, es_config, file_view, free_port

from ids.output import esgen
from ids.output.elasticsearch import (AlertSink, EventSink, OsBackend, Shipper, credentials, install)
from ids.output.fields import load_fields
from ids.output.spool import Spool
from ids.pipeline import analyze

STORM = PCAPS / "modbus-alert-storm.pcap"
DEMO = PCAPS / "modbus-demo.pcap"


@pytest.fixture
def osmem(tmp_path):
    srv = Osmem(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


@pytest.fixture(scope="module")
def storm():
    run, col = analyze([str(STORM)])
    assert len(col.alerts) == 109  # pcaps/make_modbus_alert_storm.py
    return col


def cfg_file(tmp_path: Path, **keys) -> str:
    lines = ["elasticsearch:", f"  spool_dir: {tmp_path / 'spool'}", f"  dead_letter: {tmp_path / 'dead.ndjson'}",
             "  flush_interval_ms: 50", "  shutdown_timeout: 10"]
    lines += [f"  {k}: {v}" for k, v in keys.items()]
    p = tmp_path / "otids.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def by_id(hits):
    return {h["_id"]: h for h in hits}




# ---------------------------------------------------------------------------------------------- CLI, osmem

def test_cli_demo_capture_into_osmem(osmem, tmp_path):
    ev, al = tmp_path / "events.ndjson", tmp_path / "alerts.ndjson"
    p = run_cli("analyze", str(DEMO), "--es", osmem.url, "--es-events", "--events", str(ev), "-o", str(al),
                "-c", cfg_file(tmp_path))
    events = read_ndjson(ev)
    hits = osmem.docs("logs-otids.*")
    assert len(hits) == len(events) == 30  # 27 transactions and 3 connection records
    assert {h["_index"] for h in hits} == {"logs-otids.modbus-default-2026.11",  # auto: OpenSearch -> indices
                                           "logs-otids.conn-default-2026.11"}
    stored = by_id(hits)
    for d in events:  # same documents as JSON, under their event.id, plus the cluster-only fields
        src = stored[d["event"]["id"]]["_source"]
        assert file_view(src) == d
        assert src["data_stream"] == {"type": "logs", "dataset": d["event"]["dataset"], "namespace": "default"}
        assert src["observer"]["type"] == "ids" and src["host"]["name"] and src["ecs"]["version"]
    summary = " ".join(p.stderr.split())
    assert "wrote 30 document(s) to " + osmem.url + " logs-otids.<protocol>-default (sent 30, duplicates 0, " \
           "retried 0, spooled 0, rejected 0, dropped 0)" in summary, summary
    # docs/ELASTICSEARCH.md shows this very line
    doc = (ROOT / "docs/ELASTICSEARCH.md").read_text()
    shown = next(x.strip() for x in doc.splitlines() if "wrote 30 document(s)" in x)
    assert shown.replace("http://127.0.0.1:9200", osmem.url) in summary
    m = osmem.request("GET", "/logs-otids.modbus-default-2026.11/_mapping")
    props = m["logs-otids.modbus-default-2026.11"]["mappings"]["properties"]
    assert props["modbus"]["properties"]["response"]["properties"]["device_identification"] == {"type": "flat_object"}


def test_cli_alerts_arrive_once_even_when_run_twice(osmem, tmp_path):
    al = tmp_path / "alerts.ndjson"
    cfg = cfg_file(tmp_path)
    run_cli("analyze", str(STORM), "--es", osmem.url, "-o", str(al), "-q", "-c", cfg)
    alerts = read_ndjson(al)
    hits = osmem.docs("logs-otids.alert-*")
    assert len(hits) == len(alerts) == 109
    assert {h["_index"] for h in hits} == {"logs-otids.alert-default-2023.11"}
    assert {h["_id"]: file_view(h["_source"]) for h in hits} == {a["event"]["id"]: a for a in alerts}
    # the same run again: every document is already there (409), nothing is stored twice
    p = run_cli("analyze", str(STORM), "--es", osmem.url, "-o", str(al), "-c", cfg)
    assert "(sent 0, duplicates 109, retried 0, spooled 0, rejected 0, dropped 0)" in " ".join(p.stderr.split())
    assert len(osmem.docs("logs-otids.alert-*")) == 109


def test_official_client_through_node_class(osmem, tmp_path, storm):
    """The official elasticsearch 9 client, plain JSON media types (PlainJsonNode), plain indices."""
    fs = load_fields()
    install(OsBackend(osmem.url, es_config(tmp_path), {}), esgen.Layout(flavor="opensearch", mode="index"), fs)
    cfg = es_config(tmp_path, flavor="elasticsearch", mode="index", setup=False, batch_size=20)
    sh = Shipper(osmem.url, cfg, node_class=PlainJsonNode)
    sink = AlertSink(sh, "default")
    for a in storm.alerts:
        sink.write_alert(a)
    sink.close()
    assert sh.backend.flavor == "elasticsearch"
    assert sh.counters() == {"sent": 109, "duplicates": 0, "retried": 0, "spooled": 0, "rejected": 0, "dropped": 0,
                            "replayed": 0}
    assert len(osmem.docs("logs-otids.alert-default-*")) == 109


def test_mapping_conflict_goes_to_the_dead_letter_file(osmem, tmp_path, storm):
    cfg = es_config(tmp_path)
    sh = Shipper(osmem.url, cfg)
    sink = AlertSink(sh, "default")
    good = storm.alerts[:5]
    bad = replace(storm.alerts[5], extra={"count": "many"})  # otids.alert.count is a long
    for a in good + [bad]:
        sink.write_alert(a)
    sink.close()
    assert sh.counters()["sent"] == 5 and sh.counters()["rejected"] == 1
    dead = read_ndjson(Path(cfg.dead_letter))
    assert len(dead) == 1
    d = dead[0]
    assert d["status"] == 400 and d["error"]["type"] == "mapper_parsing_exception"
    assert "otids.alert.count" in d["error"]["reason"]
    assert d["document"]["otids"]["alert"]["count"] == "many" and d["_id"] == d["document"]["event"]["id"]
    assert d["index"] == "logs-otids.alert-default-2023.11"
    assert oct(os.stat(cfg.dead_letter).st_mode & 0o777) == "0o600"
    # the validator flags the same document before any cluster sees it
    assert [str(i) for i in load_fields().validate(d["document"])] == [
        "otids.alert.count: wrong type (long: expected an integer, got 'many')"]


# ---------------------------------------------------------------------------------------------- spool

def test_cluster_down_spools_and_the_next_run_replays(tmp_path, storm):
    dead_url = f"http://127.0.0.1:{free_port()}"
    cfg = es_config(tmp_path, shutdown_timeout=1, retries=1)
    sh = Shipper(dead_url, cfg)
    sink = AlertSink(sh, "default")
    for a in storm.alerts:
        sink.write_alert(a)
    sink.close()
    c = sh.counters()
    assert (c["sent"], c["spooled"], c["dropped"], sh.spool.pending()["alerts"]) == (0, 109, 0, 109)
    assert "left in spool 109" in sh.summary() and "Connection" in sh.summary()
    # the cluster is back; a new run (nothing new to send) ships the spool first
    srv = Osmem(tmp_path).start()
    try:
        sh2 = Shipper(srv.url, es_config(tmp_path))
        sh2.close()
        assert sh2.counters()["sent"] == 109 and sh2.counters()["replayed"] == 109
        assert sum(sh2.spool.pending().values()) == 0
        assert len(srv.docs("logs-otids.alert-*")) == 109
        assert [n for n in os.listdir(tmp_path / "spool" / "alerts") if n.endswith(".tsv")] == []
    finally:
        srv.stop()


def test_spool_cap_drops_events_first(tmp_path):
    row = lambda i: ("logs-otids.x-default", f"id{i}", "2024-01-01T00:00:00Z", "x" * 60)  # noqa: E731
    size = len("logs-otids.x-default\tid00\t2024-01-01T00:00:00Z\t".encode()) + 61
    sp = Spool(str(tmp_path / "sp"), max_bytes=10 * size, segment_bytes=2 * size)
    assert sp.append("events", [row(10 + i) for i in range(8)]) == 8
    assert sp.append("events", [row(20 + i) for i in range(3)]) == 2  # the cap: 10 lines; the 11th event is dropped
    assert sp.append("alerts", [row(30 + i) for i in range(5)]) == 5  # alerts evict the oldest event segments
    assert (sp.pending(), sp.dropped) == ({"alerts": 5, "events": 4}, {"events": 1 + 6})
    assert sp.append("alerts", [row(40 + i) for i in range(6)]) == 5  # events gone: the last alert is dropped
    assert (sp.pending(), sp.dropped) == ({"alerts": 10, "events": 0}, {"events": 1 + 10, "alerts": 1})
    assert sp.used <= 10 * size
    kind, seg, items = sp.take()
    assert kind == "alerts" and [i[1] for i in items] == ["id30", "id31"]  # oldest first
    sp.done(kind, seg, items[1:])  # one delivered, one left for later
    assert sp.pending()["alerts"] == 9
    sp.close()
    sp2 = Spool(str(tmp_path / "sp"), max_bytes=10 * size)  # a new run finds what is left
    assert sp2.pending() == {"alerts": 9, "events": 0}
    with pytest.raises(Exception, match="in use by another otids process"):
        Spool(str(tmp_path / "sp"), max_bytes=10 * size)
    sp2.close()


def test_torn_spool_line_is_skipped_and_counted(tmp_path):
    sp = Spool(str(tmp_path / "sp"), max_bytes=1 << 20)
    sp.append("alerts", [("s", "a", "2024-01-01T00:00:00Z", "{}"), ("s", "b", "2024-01-01T00:00:00Z", "{}")])
    sp.close()
    seg = next((tmp_path / "sp" / "alerts").glob("*.tsv"))
    seg.write_bytes(seg.read_bytes()[:-5])  # a crash mid-write
    sp = Spool(str(tmp_path / "sp"), max_bytes=1 << 20)
    kind, s, items = sp.take()
    assert [i[1] for i in items] == ["a"] and sp.bad_lines == 1
    sp.close()


# ---------------------------------------------------------------------------------------------- recorded requests

def test_data_streams_and_retries_recorded(recorder, tmp_path, storm):
    """Elasticsearch flavor, data-stream mode: `create` into logs-otids.alert-default with _id = event.id;
    a 503 for the whole request and per-item 429s are retried with backoff until delivered."""
    recorder.bulk_script = [503, [429] * 3 + [201] * 47]
    cfg = es_config(tmp_path, flavor="elasticsearch", retries=3, batch_size=50)
    sh = Shipper(recorder.url, cfg)
    sink = AlertSink(sh, "plant1")
    for a in storm.alerts[:50]:
        sink.write_alert(a)
    sink.close()
    c = sh.counters()
    assert (c["sent"], c["retried"], c["rejected"], c["spooled"]) == (50, 50 + 3, 0, 0)
    actions = recorder.bulk_actions()
    assert len(actions) == 50 + 50 + 3
    first = actions[0][0]
    assert list(first) == ["create"] and first["create"]["_index"] == "logs-otids.alert-plant1"
    assert first["create"]["_id"] == actions[0][1]["event"]["id"]
    puts = [r["path"] for r in recorder.requests if r["method"] == "PUT" and r["path"] != "/_bulk"]
    assert puts == ["/_ilm/policy/otids-alerts", "/_ilm/policy/otids-events", "/_ingest/pipeline/otids@ingest",
                    "/_component_template/otids@mappings",
                    "/_component_template/otids-alerts@settings", "/_component_template/otids-events@settings",
                    "/_index_template/logs-otids.alert", "/_index_template/logs-otids.events"]
    bulk = next(r for r in recorder.requests if r["path"].startswith("/_bulk"))
    assert bulk["headers"]["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=9"


def test_auth_failures_are_an_outage_not_a_rejection(recorder, tmp_path, storm, caplog):
    """401/403 on bulk: the documents are fine, the credentials are not -- spool and retry, never
    dead-letter. A sensor key that may not install templates (403 on PUT) still ships."""
    recorder.put_status = 403
    recorder.bulk_script = [401, 401]
    sh = Shipper(recorder.url, es_config(tmp_path, flavor="elasticsearch", retries=1))
    sink = AlertSink(sh, "default")
    for a in storm.alerts[:30]:
        sink.write_alert(a)
    sink.close()
    c = sh.counters()
    assert (c["sent"], c["rejected"], c["spooled"], c["replayed"], c["dropped"]) == (30, 0, 30, 30, 0)
    assert not Path(sh.cfg.dead_letter).exists()
    warnings = [r.getMessage() for r in caplog.records if "cannot install templates" in r.getMessage()]
    assert len(warnings) == 1 and "security_exception" in warnings[0]


def test_events_go_to_per_protocol_streams(recorder, tmp_path):
    run, col = analyze([str(DEMO)])
    sh = Shipper(recorder.url, es_config(tmp_path, flavor="elasticsearch", setup=False))
    sink = EventSink(sh, "default")
    for ev in col.events:
        sink.write_event(ev)
    sink.close()
    assert {a["create"]["_index"] for a, _ in recorder.bulk_actions()} == {"logs-otids.modbus-default",
                                                                           "logs-otids.conn-default"}
    assert sh.counters()["sent"] == 30  # connection records have their own stream


def test_setup_requests_recorded(recorder, tmp_path):
    env_key = "c2VjcmV0LWlkOnNlY3JldC1rZXk="
    cfg = cfg_file(tmp_path)
    p = _cli_env({"OTIDS_ES_API_KEY": env_key}, "es", "setup", "--es", recorder.url, "--kibana", recorder.url,
                 "-c", cfg)
    assert p.returncode == 0, p.stderr
    assert env_key not in p.stdout + p.stderr
    puts = [r for r in recorder.requests if r["method"] == "PUT" and r["path"] != "/_bulk"]
    files = {o.path: o.file for o in esgen.cluster_objects(load_fields())}
    assert [r["path"] for r in puts] == list(files)
    for r in puts:  # exactly the committed deploy/ files
        assert json.loads(r["body"]) == json.loads((ROOT / "deploy" / files[r["path"]]).read_text())
        assert r["headers"]["authorization"] == f"ApiKey {env_key}"
    imp = [r for r in recorder.requests if "_import" in r["path"]]
    assert [r["path"] for r in imp] == ["/api/saved_objects/_import?overwrite=true",
                                        "/api/detection_engine/rules/_import?overwrite=true"]
    rules = (ROOT / "deploy/elastic-security/otids-rules.ndjson").read_bytes()
    assert rules in imp[1]["body"] and imp[1]["headers"]["kbn-xsrf"] == "true"
    assert f"imported {len(rules.splitlines())} Elastic Security detection rules" in p.stdout
    h = imp[0]["headers"]
    assert h["kbn-xsrf"] == "true" and h["authorization"] == f"ApiKey {env_key}"
    assert h["content-type"].startswith("multipart/form-data; boundary=")
    assert (ROOT / "deploy/kibana/otids.ndjson").read_bytes() in imp[0]["body"]
    n = len((ROOT / "deploy/kibana/otids.ndjson").read_text().splitlines())
    assert f"imported {n} saved objects into {recorder.url}" in p.stdout


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b'["success"]',
                                  b'{"successCount": ' + b"9" * 5000 + b"}", b'{"success": tr'],
                         ids=["proxy-html", "not-an-object", "int-5000-digits", "cut"])
def test_setup_refuses_a_kibana_answer_that_is_not_json_in_one_line(recorder, tmp_path, body):
    """A proxy's page or a cut answer from Kibana's import API with status 200: one line naming Kibana and
    the API (a JSONDecodeError traceback before), exit 2."""
    recorder.kibana_raw = [RawAnswer(200, body, ctype="text/html", product=False)]
    p = _cli_env({}, "es", "setup", "--es", recorder.url, "--kibana", recorder.url, "-c", cfg_file(tmp_path))
    assert p.returncode == 2, p.stderr
    assert re.fullmatch(rf"otids: error: {re.escape(recorder.url)}/?: /api/saved_objects/_import answered with "
                        r"something that is not JSON: .*\n", p.stderr), p.stderr


def test_setup_opensearch_recorded(tmp_path):
    rec = Recorder(distribution="opensearch")
    try:
        p = _cli_env({"OTIDS_ES_USERNAME": "otids", "OTIDS_ES_PASSWORD": "pw-123"}, "es", "setup", "--es", rec.url,
                     "--kibana", rec.url, "-c", cfg_file(tmp_path))
        assert p.returncode == 0, p.stderr
        assert "pw-123" not in p.stdout + p.stderr
        puts = [r["path"] for r in rec.requests if r["method"] == "PUT"]
        assert puts[:2] == ["/_plugins/_ism/policies/otids-alerts", "/_plugins/_ism/policies/otids-events"]
        assert "/_index_template/logs-otids.alert" in puts
        imp = next(r for r in rec.requests if "_import" in r["path"])
        assert imp["headers"]["osd-xsrf"] == "true"
        assert (ROOT / "deploy/opensearch-dashboards/otids.ndjson").read_bytes() in imp["body"]
        assert imp["headers"]["authorization"] == "Basic b3RpZHM6cHctMTIz"
    finally:
        rec.close()


def _cli_env(env: dict, *args):
    import subprocess
    import sys
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-m", "ids.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=e, timeout=120)


# ---------------------------------------------------------------------------------------------- credentials

def test_credentials_precedence_and_errors(tmp_path):
    cfg = es_config(tmp_path)
    kf = tmp_path / "key"
    kf.write_text("from-file\n")
    kf.chmod(0o600)
    pf = tmp_path / "pw"
    pf.write_text("pw-file\n")
    pf.chmod(0o600)
    assert credentials(cfg, {}) == {}
    assert credentials(replace(cfg, api_key_file=str(kf)), {}) == {"api_key": "from-file"}
    assert credentials(replace(cfg, api_key_file=str(kf)), {"OTIDS_ES_API_KEY": "env"}) == {"api_key": "env"}
    assert credentials(replace(cfg, username="u", password_file=str(pf)), {}) == {"basic_auth": ("u", "pw-file")}
    assert credentials(cfg, {"OTIDS_ES_USERNAME": "u", "OTIDS_ES_PASSWORD_FILE": str(pf)}) == \
        {"basic_auth": ("u", "pw-file")}
    # the environment wins over the config: an admin password for `otids es setup` beats the sensor's key file
    assert credentials(replace(cfg, api_key_file=str(kf)), {"OTIDS_ES_USERNAME": "elastic",
                                                            "OTIDS_ES_PASSWORD": "pw"}) == \
        {"basic_auth": ("elastic", "pw")}
    with pytest.raises(Exception, match="a username needs a password"):
        credentials(replace(cfg, username="u"), {})
    with pytest.raises(Exception, match=f"cannot read password file {tmp_path}/nope: No such file"):
        credentials(replace(cfg, username="u", password_file=str(tmp_path / "nope")), {})


def test_cli_refuses_credentials_in_the_url(tmp_path):
    p = run_cli("analyze", str(DEMO), "--es", "http://elastic:changeme@127.0.0.1:9200", "-o",
                str(tmp_path / "a.ndjson"), check_rc=2)
    assert "changeme" not in p.stderr
    assert p.stderr.strip().startswith("otids: error: elasticsearch.url: must not contain credentials")
    p = run_cli("analyze", str(DEMO), "--es", "ftp://x", "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert "must be an http:// or https:// URL" in p.stderr


def test_load_ships_ndjson_files_with_their_ids(osmem, tmp_path):
    al, ev = tmp_path / "alerts.ndjson", tmp_path / "events.ndjson"
    run_cli("analyze", str(STORM), "-o", str(al), "--events", str(ev), "-q")
    cfg = cfg_file(tmp_path)
    p = run_cli("es", "load", "--es", osmem.url, "-c", cfg, str(al), str(ev))
    assert p.stdout.startswith("otids: 489 document(s) read; sent 489, duplicates 0, retried 0, spooled 0, "
                               "rejected 0, dropped 0")
    alerts = read_ndjson(al)
    stored = by_id(osmem.docs("logs-otids.alert-*"))
    assert {i: file_view(h["_source"]) for i, h in stored.items()} == {a["event"]["id"]: a for a in alerts}
    assert len(osmem.docs("logs-otids.modbus-*")) == 330
    assert len(osmem.docs("logs-otids.conn-*")) == 50  # one connection record per flow of the storm capture
    p = run_cli("es", "load", "--es", osmem.url, "-c", cfg, str(al))
    assert "sent 0, duplicates 109," in p.stdout


def test_load_of_a_file_that_is_not_otids_output_leaves_no_spool(tmp_path):
    """`es load` of a binary or missing file against a cluster that is down refuses it in one line (2) and
    leaves nothing behind: the spool directory was created before the first line was read."""
    cfg = cfg_file(tmp_path)
    down = f"http://127.0.0.1:{free_port()}"
    binf = tmp_path / "x.ndjson"
    binf.write_bytes(b"\x7fELF\x02\x01\xd0\xff\n")
    p = run_cli("es", "load", "--es", down, "-c", cfg, str(binf), check_rc=2)
    assert p.stderr.strip() == f"otids: error: {binf}:1: not an otids document (not UTF-8 text)"
    p = run_cli("es", "load", "--es", down, "-c", cfg, str(tmp_path / "nope.ndjson"), check_rc=2)
    assert p.stderr.strip() == f"otids: error: {tmp_path / 'nope.ndjson'}: no such file"
    assert not (tmp_path / "spool").exists()


def test_bad_elasticsearch_config_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("elasticsearch:\n  url: http://127.0.0.1:9200\n  namespace: plant-1\n")
    r = run_cli("analyze", str(DEMO), "-c", str(p), "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert r.stderr.strip().startswith(f"otids: error: {p}:3:3: 'elasticsearch.namespace' must be 1-100 characters")
    p.write_text("elasticsearch:\n  flavour: opensearch\n")
    r = run_cli("analyze", str(DEMO), "-c", str(p), "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert f"{p}:2:3: unknown key 'elasticsearch.flavour'" in r.stderr


def test_ids_depend_on_content_not_on_the_run(tmp_path):
    """Issue #17 item 6: the storm capture's alerts and events have the same ids whether it is analysed
    alone or after another capture in the same run, so a cluster stores a re-analysis once."""
    alone, after = tmp_path / "alone.ndjson", tmp_path / "after.ndjson"
    ea, eb = tmp_path / "ev-alone.ndjson", tmp_path / "ev-after.ndjson"
    run_cli("analyze", str(STORM), "-q", "-o", str(alone), "--events", str(ea))
    run_cli("analyze", str(DEMO), str(STORM), "-q", "-o", str(after), "--events", str(eb))
    ids_alone = [d["event"]["id"] for d in read_ndjson(alone)]
    ids_after = {d["event"]["id"] for d in read_ndjson(after)}
    assert len(ids_alone) == len(set(ids_alone)) == 109 and set(ids_alone) <= ids_after
    ev_alone = [d["event"]["id"] for d in read_ndjson(ea)]
    assert len(ev_alone) == len(set(ev_alone)) and set(ev_alone) <= {d["event"]["id"] for d in read_ndjson(eb)}
