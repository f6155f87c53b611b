"""Files generated from the field definitions (templates, lifecycle policies, Kibana objects, FIELDS.md):
regenerating gives the committed bytes, the mappings carry every declared field, OpenSearch (osmem)
accepts its templates, and every saved object uses only defined fields."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from es_helpers import Osmem

from ids.output import esgen, kibana
from ids.output.elasticsearch import OsBackend, install
from ids.output.fields import load_fields


@pytest.fixture(scope="module")
def fs():
    return load_fields()


def test_committed_files_equal_a_fresh_generation(fs):
    files = esgen.generated_files(fs)
    assert len(files) == 20
    stale = [rel for rel, content in files.items()
             if not (ROOT / rel).exists() or (ROOT / rel).read_text(encoding="utf-8") != content]
    assert stale == [], "run `python -m ids.cli es generate` and commit the result"
    p = run_cli("es", "generate", "--check")
    assert p.returncode == 0


def test_generate_check_reports_a_stale_file(tmp_path):
    p = run_cli("es", "generate", "--out", str(tmp_path))
    assert "20 changed" in p.stdout
    target = tmp_path / "deploy/elasticsearch/index_template/logs-otids.alert.json"
    target.write_text(target.read_text().replace('"priority": 210', '"priority": 1'))
    p = run_cli("es", "generate", "--check", "--out", str(tmp_path), check_rc=1)
    assert p.stderr.strip() == ("otids: deploy/elasticsearch/index_template/logs-otids.alert.json is stale: "
                                "run `otids es generate`")


def test_generate_check_outside_a_checkout_says_so(tmp_path):
    """--check where none of the generated files exists is a wrong directory (2, one line), not twenty
    'stale' files; one file gone is 'missing'."""
    p = run_cli("es", "generate", "--check", "--out", str(tmp_path), check_rc=2)
    assert p.stderr.strip() == (f"otids: error: {tmp_path}: none of the generated files is there (deploy/, "
                                f"docs/FIELDS.md): not an otids checkout; run it in one or give --out DIR")
    run_cli("es", "generate", "--out", str(tmp_path))
    (tmp_path / "docs/FIELDS.md").unlink()
    p = run_cli("es", "generate", "--check", "--out", str(tmp_path), check_rc=1)
    assert p.stderr.strip() == "otids: docs/FIELDS.md is missing: run `otids es generate`"


def _leaf(props: dict, name: str) -> dict:
    node = {"properties": props}
    for part in name.split("."):
        node = node["properties"][part]
    return node


def test_mappings_carry_every_field_with_its_type(fs):
    es = fs.properties("elasticsearch")
    os_ = fs.properties("opensearch")
    for f in fs.fields.values():
        m = _leaf(es, f.name)
        if f.type == "object":
            assert "properties" in m
        else:
            assert m["type"] == f.type, f.name
            assert _leaf(os_, f.name)["type"] == {"flattened": "flat_object", "match_only_text": "text",
                                                  "constant_keyword": "keyword"}.get(f.type, f.type), f.name
    assert _leaf(es, "event.kind") == {"type": "keyword", "ignore_above": 1024}


def test_elasticsearch_templates_use_data_streams_and_ilm(fs):
    objs = {o.name: o for o in esgen.cluster_objects(fs)}
    alert = objs["logs-otids.alert"].body
    assert alert["data_stream"] == {} and alert["index_patterns"] == ["logs-otids.alert-*"]
    # composed with Elastic's built-in logs components (data_stream.*, default pipeline), which need not exist
    assert alert["composed_of"] == ["logs@mappings", "logs@settings", "otids@mappings", "otids-alerts@settings",
                                    "logs@custom", "otids@custom"]
    assert alert["ignore_missing_component_templates"] == ["logs@mappings", "logs@settings", "logs@custom",
                                                           "otids@custom"]
    assert alert["version"] == esgen.TEMPLATE_VERSION
    assert objs["logs-otids.events"].body["index_patterns"] == ["logs-otids.*-*"]
    assert alert["priority"] > objs["logs-otids.events"].body["priority"] > 100  # above the built-in logs-*-*
    settings = objs["otids-alerts@settings"].body["template"]["settings"]
    assert settings["index.lifecycle.name"] == "otids-alerts" and settings["index.final_pipeline"] == "otids@ingest"
    assert objs["otids@ingest"].body["processors"] == [{"set": {
        "field": "event.ingested", "value": "{{{_ingest.timestamp}}}", "tag": "otids-event-ingested"}}]
    # ILM counts delete from rollover: a document lives between retention and retention + rollover age
    ilm = objs["otids-alerts"].body["policy"]["phases"]
    assert ilm["hot"]["actions"]["rollover"] == {"max_age": "7d", "max_primary_shard_size": "50gb"}
    assert ilm["delete"] == {"min_age": "365d", "actions": {"delete": {}}}
    ev = objs["otids-events"].body["policy"]["phases"]
    assert ev["delete"]["min_age"] == "30d" and ev["hot"]["actions"]["rollover"]["max_age"] == "3d"
    assert objs["otids-events"].body["policy"]["_meta"]["otids_version"] == esgen.TEMPLATE_VERSION
    mappings = objs["otids@mappings"].body["template"]["mappings"]
    assert mappings["dynamic"] is False and mappings["date_detection"] is False
    # index mode: no data stream, and no rollover (plain indices cannot roll over without an alias)
    idx = {o.name: o for o in esgen.cluster_objects(fs, esgen.Layout(mode="index", alert_retention_days=0))}
    assert "data_stream" not in idx["logs-otids.alert"].body
    assert idx["otids-alerts"].body["policy"]["phases"] == {"hot": {"min_age": "0ms", "actions": {}}}


def test_opensearch_templates_install_on_osmem_and_map_documents(fs, tmp_path):
    srv = Osmem(tmp_path).start()
    try:
        from ids.config import ElasticsearchConfig
        backend = OsBackend(srv.url, ElasticsearchConfig(), {})
        done = install(backend, esgen.Layout(flavor="opensearch", mode="index"), fs)
        # osmem has no ingest API: the pipeline is skipped and no settings name it
        assert done[2] == ("skipped pipeline otids@ingest: ingest pipelines (event.ingested not set) not "
                           "available (no handler found for uri [/_ingest/pipeline/otids@ingest] and method [GET])")
        del done[2]
        assert done == ["skipped ism otids-alerts: ISM not available (no handler found for uri "
                        "[/_plugins/_ism/policies/otids-alerts] and method [GET])",
                        "skipped ism otids-events: ISM not available (no handler found for uri "
                        "[/_plugins/_ism/policies/otids-events] and method [GET])",
                        "installed component_template otids@mappings",
                        "installed component_template otids-alerts@settings",
                        "installed component_template otids-events@settings",
                        "installed index_template logs-otids.alert",
                        "installed index_template logs-otids.events"]
        got = srv.request("GET", "/_index_template/logs-otids.alert")["index_templates"][0]["index_template"]
        assert got["composed_of"] == ["otids@mappings", "otids-alerts@settings"]
        ism = {o.name: o.body for o in esgen.cluster_objects(fs, esgen.Layout(flavor="opensearch", mode="index"))}
        assert ism["otids-alerts"]["policy"]["description"] == \
            f"otids alerts (kept at least 365 days) v{esgen.TEMPLATE_VERSION}"
        delete = ism["otids-events"]["policy"]["states"][0]["transitions"][0]["conditions"]
        assert delete == {"min_index_age": "61d"}  # monthly indices: 30 days + the month they take documents
        st = srv.request("GET", "/_component_template/otids-alerts@settings")["component_templates"][0]
        assert "final_pipeline" not in json.dumps(st)
        # installed again: same version on the cluster, so kept
        again = install(backend, esgen.Layout(flavor="opensearch", mode="index"), fs)
        assert again[3] == f"kept component_template otids@mappings (version {esgen.TEMPLATE_VERSION} on the " \
                           "cluster; --force overwrites)"
        srv.request("PUT", "/logs-otids.modbus-default-2024.01", {})
        m = srv.request("GET", "/logs-otids.modbus-default-2024.01/_mapping")
        props = m["logs-otids.modbus-default-2024.01"]["mappings"]["properties"]
        assert props == fs.properties("opensearch")
    finally:
        srv.stop()


def test_fields_doc_lists_every_field(fs):
    text = (ROOT / "docs/FIELDS.md").read_text()
    for f in fs.fields.values():
        assert f"| `{f.name}` | {f.type} |" in text


# ---------------------------------------------------------------------------------------------- Kibana

def _committed(target: str) -> list[dict]:
    rel = "deploy/kibana/otids.ndjson" if target == "kibana" else "deploy/opensearch-dashboards/otids.ndjson"
    return [json.loads(x) for x in (ROOT / rel).read_text().splitlines()]


@pytest.mark.parametrize("target", ["kibana", "opensearch"])
def test_saved_objects_use_only_defined_fields(fs, target):
    objs = _committed(target)
    assert kibana.check(objs, fs) == []
    by_type = {}
    for o in objs:
        by_type.setdefault(o["type"], []).append(o)
    assert [o["attributes"]["title"] for o in by_type["index-pattern"]] == ["logs-otids.*"]
    assert sorted(o["id"] for o in by_type["dashboard"]) == ["otids-alerts", "otids-assets", "otids-certificates",
                                                             "otids-conn", "otids-protocols", "otids-sparkplug"]
    used = {f for o in objs for f, _ in kibana.fields_used(o)}
    # what the dashboards must show, per issue #7
    assert {"otids.alert.severity", "rule.name", "threat.technique.name", "source.ip", "modbus.function_code",
            "modbus.response.device_identification", "otids.alert.detector"} <= used
    # the connection and Sparkplug views (issue #17): talkers by bytes, protocols and how they were named,
    # conn_state, edge nodes and devices, STATE, metrics by topic, the Sparkplug checks' alerts
    assert {"network.bytes", "otids.conn.state", "otids.conn.identified_by", "event.start",
            "mqtt.publish.sparkplug.edge_node_id", "mqtt.publish.sparkplug.device_id",
            "mqtt.publish.sparkplug.online", "mqtt.publish.sparkplug.metrics.name", "mqtt.publish.topic",
            "otids.alert.sparkplug.edge_node"} <= used
    # the oldest format every supported Kibana imports (it migrates forward, and refuses newer ones)
    if target == "kibana":
        assert {o["coreMigrationVersion"] for o in objs} == {"8.0.0"}
        assert all(list(o["migrationVersion"].values()) == ["8.0.0"] and "typeMigrationVersion" not in o
                   for o in objs)
    for d in by_type["dashboard"]:
        panels = json.loads(d["attributes"]["panelsJSON"])
        assert len(panels) == len(d["references"]) >= 3
        for p in panels:
            g = p["gridData"]
            assert g["x"] + g["w"] <= 48


def test_check_catches_unknown_and_unaggregatable_fields(fs):
    objs = kibana.saved_objects(fs)
    vis = next(o for o in objs if o["id"] == "otids-alerts-sources")
    state = json.loads(vis["attributes"]["visState"])
    state["aggs"][-1]["params"]["field"] = "source.address"
    vis["attributes"]["visState"] = json.dumps(state)
    search = next(o for o in objs if o["type"] == "search")
    search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] = json.dumps(
        {"query": {"query": 'event.kind : "alert" and rule.nam : "x"', "language": "kuery"}, "filter": []})
    pie = next(o for o in objs if o["id"] == "otids-modbus-functions")
    state = json.loads(pie["attributes"]["visState"])
    state["aggs"][-1]["params"]["field"] = "modbus.response.objects"
    pie["attributes"]["visState"] = json.dumps(state)
    dash = next(o for o in objs if o["id"] == "otids-assets")
    dash["references"][0]["id"] = "otids-gone"
    flat = next(o for o in objs if o["id"] == "otids-assets-servers")
    state = json.loads(flat["attributes"]["visState"])
    state["aggs"][-1]["params"]["field"] = "modbus.response.device_identification.vendor_name"
    flat["attributes"]["visState"] = json.dumps(state)
    assert kibana.check(objs, fs) == [
        "visualization otids-alerts-sources: field 'source.address' is not defined in ids/data/fields",
        "search otids-alerts-list: field 'rule.nam' is not defined in ids/data/fields",
        "visualization otids-modbus-functions: field 'modbus.response.objects' (object) cannot be aggregated",
        "visualization otids-assets-servers: field 'modbus.response.device_identification.vendor_name' "
        "(flattened) cannot be aggregated",
        "dashboard otids-assets: reference panel_0 -> visualization otids-gone is missing",
    ]


AGGREGATABLE_MAPPED = {"keyword", "constant_keyword", "long", "integer", "short", "byte", "unsigned_long",
                       "double", "float", "half_float", "scaled_float", "date", "ip", "boolean"}


@pytest.mark.parametrize("target", ["kibana", "opensearch"])
def test_every_panel_field_is_aggregatable_in_the_generated_mappings(fs, target):
    """Read the committed mappings (not the field definitions): every field a visualisation aggregates must
    be a leaf of an aggregatable type, and not a key inside a flattened / flat_object field."""
    root = "elasticsearch" if target == "kibana" else "opensearch"
    mappings = json.loads((ROOT / f"deploy/{root}/component_template/otids@mappings.json").read_text())
    props = mappings["template"]["mappings"]["properties"]
    checked = 0
    for o in _committed(target):
        for f, agg in kibana.fields_used(o):
            if not agg:
                continue
            node = {"properties": props}
            for part in f.split("."):
                assert "properties" in node, f"{o['id']}: {f} lies inside a {node.get('type')} field"
                node = node["properties"][part]
            assert node.get("type") in AGGREGATABLE_MAPPED, f"{o['id']}: {f} is mapped {node.get('type')}"
            checked += 1
    assert checked > 50


def test_connection_and_sparkplug_queries(fs):
    """The KQL the new views filter with: OR-lists, negations (external addresses), "no value", and the
    latest-value metric (top hit on @timestamp) for whether an edge node is born or dead."""
    objs = {o["id"]: o for o in kibana.saved_objects(fs)}

    def query(oid):
        return json.loads(objs[oid]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]

    assert query("otids-spb-nodes") == ('mqtt.publish.from_client : "true" and '
                                        'mqtt.publish.sparkplug.message_type : ("NBIRTH" or "NDEATH")')
    assert query("otids-conn-unnamed") == 'event.dataset : "otids.conn" and not network.protocol : *'
    ext = query("otids-conn-external")
    assert ext.startswith('event.dataset : "otids.conn" and destination.ip : * and not destination.ip : "10.0.0.0/8"')
    assert 'not destination.ip : "fc00::/7"' in ext
    aggs = json.loads(objs["otids-spb-nodes"]["attributes"]["visState"])["aggs"]
    assert aggs[1] == {"id": "2", "enabled": True, "type": "top_hits", "schema": "metric", "params": {
        "field": "mqtt.publish.sparkplug.message_type", "customLabel": "Latest", "aggregate": "concat", "size": 1,
        "sortField": "@timestamp", "sortOrder": "desc"}}
    assert aggs[0]["type"] == "max"  # terms order by the first metric; Kibana cannot order by a top hit
    for d in ("otids-conn", "otids-sparkplug"):  # the events they need are off by default: the view says so
        assert "--es-events" in next(o for o in objs.values() if o["id"] == d)["attributes"]["description"]


def test_protocol_panels_present_and_valid(fs):
    """The OPC UA, MQTT and TLS panels appear now that their field groups exist, and name only real fields."""
    assert kibana.missing_panels(fs) == []
    objs = kibana.saved_objects(fs)
    titles = {o["attributes"].get("title") for o in objs}
    assert {"OPC UA services per pair", "OPC UA services", "MQTT topics published",
            "TLS server certificates with findings"} <= titles
    assert kibana.check(objs, fs) == []




# ---------------------------------------------------------------------------------------------- Security rules

def test_detection_rules_promote_every_alert_once_with_severity_risk_and_attack(fs):
    """The committed NDJSON, rule by rule against the detection engine's rule schema (query rules): every
    otids alert matches exactly one rule unless its techniques span several tactics."""
    from ids.detect.attack import TECHNIQUES
    from ids.output import secrules

    rules = [json.loads(x) for x in (ROOT / "deploy/elastic-security/otids-rules.ndjson").read_text().splitlines()]
    assert rules == secrules.detection_rules()
    required = {"rule_id", "name", "description", "type", "query", "language", "index", "risk_score", "severity"}
    for r in rules:
        assert required <= set(r) and r["type"] == "query" and r["language"] == "kuery"
        assert r["index"] == ["logs-otids.alert-*"] and r["timestamp_override"] == "event.ingested"
        assert r["rule_name_override"] == "rule.name" and r["enabled"] is False
        assert r["risk_score_mapping"] == [{"field": "event.severity", "operator": "equals", "value": ""}]
        assert {m["value"]: m["severity"] for m in r["severity_mapping"]} == {
            "low": "low", "medium": "medium", "high": "high", "critical": "critical", "info": "low"}
        for t in r["threat"]:
            assert t["framework"] == "MITRE ATT&CK" and re.fullmatch(r"TA01\d\d", t["tactic"]["id"])
            for tech in t["technique"]:
                assert TECHNIQUES[tech["id"]].tactic_id == t["tactic"]["id"]
        for f in re.findall(r"([a-z_.]+):", r["query"]):
            assert f in fs, f
    # every technique in exactly one rule, plus the catch-all
    listed = [tech["id"] for r in rules for t in r["threat"] for tech in t["technique"]]
    assert sorted(listed) == sorted(TECHNIQUES) and rules[-1]["rule_id"] == "otids-unmapped"
    assert len({r["rule_id"] for r in rules}) == len(rules)


# ---------------------------------------------------------------------------------------------- views on real documents

def _values(doc, name: str) -> list:
    """Every value at dotted `name` in `doc`, through lists of objects (as Elasticsearch flattens them)."""
    out = [doc]
    for part in name.split("."):
        nxt = []
        for o in out:
            for item in (o if isinstance(o, list) else [o]):
                if isinstance(item, dict) and part in item:
                    v = item[part]
                    nxt.extend(v if isinstance(v, list) else [v])
        out = nxt
    return out


def _kql_match(query: str, doc: dict) -> bool:
    """The KQL the generator writes (kibana.kql): clauses joined by `and`, each `f : *`, `not f : *`,
    `f : "v"`, `not f : "v"` (an ip field takes CIDR), `f : ("a" or "b")`, `f : prefix*`, `f >= n`."""
    import ipaddress

    def eq(v, want: str) -> bool:
        try:
            net = ipaddress.ip_network(want)  # a CIDR block (the field is an ip)
        except ValueError:
            return str(v).lower() == want.lower() if isinstance(v, bool) else str(v) == want
        try:
            return ipaddress.ip_address(v) in net
        except ValueError:
            return False

    for clause in query.split(" and "):
        neg = clause.startswith("not ")
        clause = clause[4:] if neg else clause
        m = re.fullmatch(r'([\w.@]+) (:|>=|<=) (.+)', clause)
        assert m, clause
        f, op, rhs = m.groups()
        vals = _values(doc, f)
        if op != ":":
            hit = any(isinstance(v, (int, float)) and (v >= float(rhs) if op == ">=" else v <= float(rhs)) for v in vals)
        elif rhs == "*":
            hit = bool(vals)
        elif rhs.startswith("("):
            wants = re.findall(r'"([^"]*)"', rhs)
            hit = any(eq(v, w) for v in vals for w in wants)
        elif rhs.startswith('"'):
            hit = any(eq(v, rhs.strip('"')) for v in vals)
        else:
            assert rhs.endswith("*"), clause
            hit = any(str(v).startswith(rhs[:-1]) for v in vals)
        if hit == neg:
            return False
    return True


def test_connection_and_sparkplug_views_show_data_from_the_captures():
    """Over every capture's alerts and events (the golden files of pcaps/ and the corpus: what `analyze
    --events` writes; connections to external addresses are only in the corpus), each panel
    of the two views matches documents carrying every field it aggregates, so with events on no panel is
    empty (the network baseline panel needs `--baseline`, which the golden runs do not use)."""
    import gzip

    docs = []
    for p in sorted((ROOT / "tests/golden").rglob("*.gz")):
        if p.name.endswith((".alerts.gz", ".events.gz")):
            # only what the two views can match: connection records, Sparkplug messages and alerts
            docs += [json.loads(x) for x in gzip.decompress(p.read_bytes()).splitlines()
                     if x.startswith(b"{") and (b'"otids.conn"' in x or b"sparkplug" in x)]
    assert len(docs) > 1000
    objs = {o["id"]: o for o in kibana.saved_objects(load_fields())}
    empty = []
    for dash in ("otids-conn", "otids-sparkplug"):
        for ref in objs[dash]["references"]:
            o = objs[ref["id"]]
            q = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
            aggregated = [f for f, agg in kibana.fields_used(o) if agg and f != "@timestamp"]
            rows = [d for d in docs if _kql_match(q, d) and all(_values(d, f) for f in aggregated)]
            if not rows:
                empty.append(o["id"])
    assert empty == ["otids-conn-baseline-new"]
