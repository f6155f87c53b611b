"""The Elastic integration package (`otids es package`, ids/output/fleet.py): written as a directory or as
the zip Kibana's upload takes, never over a user's directory, valid against the package-spec checklist
(tests/data/package_spec_checklist.yml; the spec's own schemas are applied by tools/package_spec_check.py
on a checkout of elastic/package-spec, which may not be copied here: docs/ELASTICSEARCH.md), and consistent: every field its pipelines and dashboards use is
declared, once, with a type Elasticsearch knows."""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli
from jsonschema import Draft202012Validator

from ids import __version__
from ids.errors import UserError
from ids.output import esgen, fleet, kibana
from ids.output.fields import load_fields

CHECKLIST = yaml.safe_load((ROOT / "tests/data/package_spec_checklist.yml").read_text())


@pytest.fixture(scope="module")
def fs():
    return load_fields()


@pytest.fixture(scope="module")
def files(fs):
    return fleet.package_files(fs, license_text="LICENSE")


def _errors(kind: str, doc) -> list[str]:
    v = Draft202012Validator(CHECKLIST[kind])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in v.iter_errors(doc)]


def test_cli_writes_a_directory_and_never_replaces_a_users_one(tmp_path, fs):
    out = tmp_path / "pkg"
    p = run_cli("es", "package", "-o", str(out))
    assert p.stdout.startswith(f"otids: wrote integration package otids {__version__} (format 2.13.0) to ")
    assert (out / "manifest.yml").is_file() and (out / "LICENSE.txt").read_text().startswith("\n")
    p = run_cli("es", "package", "-o", str(out), check_rc=2)
    assert p.stderr.strip() == f"otids: error: {out}: exists; --force replaces it"
    (out / "stale.txt").write_text("old")
    fleet.write_package(fs, str(out), force=True)
    assert not (out / "stale.txt").exists() and (out / "manifest.yml").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an integration package"):
        fleet.write_package(fs, str(mine), force=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="does not exist"):
        fleet.write_package(fs, str(tmp_path / "nowhere" / "pkg"))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["mine", "pkg"]  # no temporary left behind


def test_zip_holds_the_package_under_name_version(tmp_path, fs, files):
    z = tmp_path / "otids.zip"
    fleet.write_package(fs, str(z), license_text="LICENSE")
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        root = f"otids-{__version__}/"
        assert all(n.startswith(root) for n in names)
        assert sorted(n[len(root):] for n in names) == sorted(files)
        assert yaml.safe_load(zf.read(root + "manifest.yml"))["version"] == __version__
    with pytest.raises(UserError, match="exists; --force replaces it"):
        fleet.write_package(fs, str(z))
    fleet.write_package(fs, str(z), force=True)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["otids.zip"]


def test_package_satisfies_the_spec_checklist(files):
    lay = CHECKLIST["layout"]
    problems = []
    for req in lay["required"]:
        if req not in files:
            problems.append(f"{req}: missing")
    for path in files:
        top = path.split("/")[0]
        if top not in lay["top_level"]:
            problems.append(f"{path}: not a top-level entry the spec knows")
    streams = sorted({p.split("/")[1] for p in files if p.startswith("data_stream/")})
    assert streams == ["alert", "conn", "events"]
    for s in streams:
        assert re.match(lay["data_stream_name"], s)
        for req in lay["data_stream_required"]:
            if not any(p.startswith(f"data_stream/{s}/{req}") for p in files):
                problems.append(f"data_stream/{s}/{req}: missing")
    checks = (("manifest.yml", "manifest"), ("changelog.yml", "changelog"),
              ("data_stream/*/manifest.yml", "data_stream_manifest"),
              ("data_stream/*/fields/*", "fields"),
              ("data_stream/*/elasticsearch/ingest_pipeline/*", "pipeline"),
              ("data_stream/*/routing_rules.yml", "routing_rules"))
    seen = {}
    for path, data in files.items():
        for pattern, kind in checks:
            if Path(path).match(pattern) and path.count("/") == pattern.count("/"):
                seen[kind] = seen.get(kind, 0) + 1
                problems += [f"{path}: {e}" for e in _errors(kind, yaml.safe_load(data))]
        if path.startswith("data_stream/") and "/fields/" in path:
            if not re.match(lay["fields_file_name"], Path(path).name):
                problems.append(f"{path}: file name the spec refuses")
        if path.startswith("kibana/"):
            folder, name = path.split("/")[1:]
            if folder not in lay["kibana_folders"] or (folder != "index_pattern"
                                                      and not re.match(lay["kibana_asset_name"], name)):
                problems.append(f"{path}: not a Kibana asset path the spec allows")
    assert problems == []
    assert seen == {"manifest": 1, "changelog": 1, "data_stream_manifest": 3, "fields": 3 * 16,
                    "pipeline": 3, "routing_rules": 1}


def test_checklist_catches_what_the_spec_refuses(files):
    """The checklist is not a rubber stamp: a wrong type, a dotted parent, an unknown processor fail."""
    m = yaml.safe_load(files["manifest.yml"])
    m["type"] = "input-ish"
    del m["owner"]["type"]
    assert _errors("manifest", m) == ["type: 'input-ish' is not one of ['integration']",
                                      "owner: 'type' is a required property"]
    assert _errors("fields", [{"name": "a", "type": "long", "fields": [{"name": "b", "type": "long"}]}]) == [
        "0/type: 'long' is not one of ['group', 'nested']"]
    assert _errors("fields", [{"name": "a", "type": "longish"}])[0].startswith("0/type: 'longish' is not one of")
    assert _errors("pipeline", {"processors": [{"reroute": {"dataset": "x"}}]})[0].startswith("processors/0: 'reroute'")


def test_manifest_and_streams(files):
    m = yaml.safe_load(files["manifest.yml"])
    assert (m["name"], m["type"], m["version"], m["format_version"]) == ("otids", "integration", __version__, "2.13.0")
    assert m["conditions"]["kibana"]["version"] == "^8.18.0 || ^9.0.0"
    (pt,) = m["policy_templates"]
    assert pt["data_streams"] == ["alert", "events"] and pt["inputs"][0]["type"] == "filestream"
    for s in ("alert", "events"):
        dm = yaml.safe_load(files[f"data_stream/{s}/manifest.yml"])
        (st,) = dm["streams"]
        assert st["input"] == "filestream" and st["template_path"] == "filestream.yml.hbs"
        assert f"data_stream/{s}/agent/stream/filestream.yml.hbs" in files
        assert {v["name"] for v in st["vars"]} == {"paths", "preserve_original_event", "tags", "processors"}
    assert "streams" not in yaml.safe_load(files["data_stream/conn/manifest.yml"])  # filled by routing
    (rr,) = yaml.safe_load(files["data_stream/events/routing_rules.yml"])
    assert rr["source_dataset"] == "otids.events"
    assert rr["rules"][0]["target_dataset"] == "otids.conn"
    assert "img/otids-logo.svg" in files and files["img/otids-logo.svg"].startswith(b"<svg")
    readme = files["docs/README.md"].decode()
    assert all(d.title in readme for d in kibana.DASHBOARDS)


def test_pipelines_parse_the_line_and_end_with_the_shipped_processors(fs, files):
    shipped = next(o for o in esgen.cluster_objects(fs) if o.kind == "pipeline").body["processors"]
    for s in ("alert", "events", "conn"):
        p = yaml.safe_load(files[f"data_stream/{s}/elasticsearch/ingest_pipeline/default.yml"])
        procs = p["processors"]
        assert procs[-len(shipped):] == shipped  # event.ingested, as `otids es setup` installs it
        # the spec's rule (format >= 3.1): message -> event.original only when absent, then message removed
        assert procs[0] == {"rename": {"field": "message", "target_field": "event.original", "ignore_missing": True,
                                       "if": "ctx.event?.original == null", "tag": "rename-message"}}
        assert procs[1]["remove"]["if"] == "ctx.event?.original != null" and procs[1]["remove"]["ignore_missing"]
        assert procs[2]["json"]["add_to_root"] is True
        assert {"set": {"field": "_id", "copy_from": "event.id", "if": "ctx.event?.id != null",
                        "tag": "id-from-event-id"}} in procs
        tags = [next(iter(x.values()))["tag"] for x in procs + p["on_failure"]]
        assert len(tags) == len(set(tags))
        has_message = any(next(iter(x.values())).get("tag") == "alert-message" for x in procs)
        assert has_message == (s == "alert")


def test_fields_and_dashboards_are_consistent(fs, files):
    assert fleet.check(files, fs) == []
    declared = {}
    for path, data in files.items():
        if path.startswith("data_stream/conn/fields/"):
            for name, typ in fleet._flatten(yaml.safe_load(data), ""):
                declared[name] = typ
    # every otids field, with its type (containers become groups), and the agent's
    for f in fs.fields.values():
        if f.type != "object":
            assert declared[f.name] == f.type, f.name
    assert declared["log.file.path"] == "keyword" and declared["event.original"] == "keyword"
    # the package's dashboards are the saved objects otids es setup imports, one file each
    objs = {(o["type"], o["id"]): o for o in kibana.saved_objects(fs)}
    in_pkg = {}
    for path, data in files.items():
        if path.startswith("kibana/"):
            o = json.loads(data)
            in_pkg[(o["type"], o["id"])] = o
            assert path == f"kibana/{fleet.KIBANA_DIRS[o['type']]}/{o['id']}.json"
    assert in_pkg == objs
    assert {i for t, i in in_pkg if t == "dashboard"} >= {"otids-conn", "otids-sparkplug", "otids-alerts"}


def test_semantic_check_catches_duplicates_unknown_types_and_missing_fields(fs, files):
    bad = dict(files)
    bad["data_stream/alert/fields/extra-fields.yml"] = yaml.safe_dump(
        [{"name": "rule", "type": "group", "fields": [{"name": "name", "type": "keyword"}]},
         {"name": "weird", "type": "longish"}]).encode()
    conn = [x for x in yaml.safe_load(files["data_stream/conn/fields/conn-fields.yml"])]
    for g in conn:
        if g["name"] == "otids":
            g["fields"][0]["fields"] = [x for x in g["fields"][0]["fields"] if x["name"] != "state"]
    bad["data_stream/conn/fields/conn-fields.yml"] = yaml.safe_dump(conn).encode()
    pipe = yaml.safe_load(files["data_stream/events/elasticsearch/ingest_pipeline/default.yml"])
    pipe["processors"].append({"set": {"field": "otids.nowhere", "value": "x", "tag": "t"}})
    bad["data_stream/events/elasticsearch/ingest_pipeline/default.yml"] = yaml.safe_dump(pipe).encode()
    got = fleet.check(bad, fs)
    assert "data_stream/alert/fields/extra-fields.yml: field 'rule.name' declared twice in data stream alert" in got
    assert "data_stream/alert/fields/extra-fields.yml: field 'weird' has type 'longish', unknown to Elasticsearch" in got
    assert "data_stream/events: the pipeline uses 'otids.nowhere', which no fields file declares" in got
    assert "visualization otids-conn-state: field 'otids.conn.state' not declared in data stream conn" in got
