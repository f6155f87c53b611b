"""An Elastic integration package (package-spec format) for otids, generated from the same field definitions,
ingest pipeline and Kibana objects as `otids es setup` installs (fields.py, esgen.py, kibana.py): Fleet
installs it through Kibana's integration upload, and Elastic Agent's `filestream` input ships the NDJSON
files otids writes (`-o` alerts, `--events` protocol events and connection records) into its data streams.

What it is made of, and nothing written twice: the fields files are the definitions nested the way packages
declare them (plus the few fields Elastic Agent adds), the ingest pipelines hold the shipped pipeline's
processors after parsing the line, the dashboards are kibana.saved_objects(). The package-spec JSON schemas
are not copied here (their licence does not allow it): tools/package_spec_check.py validates a generated
package against a checkout of elastic/package-spec, and tests/test_es_package.py against our own checklist.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import __version__
from ..errors import UserError
from . import esgen, kibana
from .elasticsearch.sinks import ECS_VERSION
from .fields import AGGREGATABLE, Field, FieldSet

NAME = "otids"
#: package-spec format. 2.x, not 3.x: format 3 refuses the aggregation-based visualisations saved by
#: reference that our dashboards are made of (they import into every Kibana 8.x/9.x, and OpenSearch
#: Dashboards, which Lens panels would not); format 2.13 only warns about them. Routing rules need >= 2.9.
FORMAT_VERSION = "2.13.0"
#: the Kibana releases otids supports (docs/ELASTICSEARCH.md): routing rules and the json processor's
#: merge strategy are there on every one of them.
KIBANA_VERSIONS = "^8.18.0 || ^9.0.0"
DEFAULT_ALERTS = "/var/log/otids/alerts.ndjson"
DEFAULT_EVENTS = "/var/log/otids/events.ndjson"


@dataclass(frozen=True)
class Stream:
    name: str  # data stream folder; dataset otids.<name>
    title: str
    description: str
    paths: tuple[str, ...] = ()  # default paths of its filestream input; () = no input (a routing target)


STREAMS = (
    Stream("alert", "otids alerts",
           "Alerts from every otids detector (the NDJSON file `otids analyze -o` / `otids live -o` writes).",
           (DEFAULT_ALERTS,)),
    Stream("events", "otids protocol events",
           "Protocol events (Modbus, OPC UA, MQTT, Sparkplug, TLS, ...) from the NDJSON file otids writes "
           "with --events; connection records in it are routed to the conn data stream.", (DEFAULT_EVENTS,)),
    Stream("conn", "otids connection records",
           "Connection records (dataset otids.conn, Zeek's conn.log in ECS), routed here from the events "
           "data stream."),
)

#: Fields Elastic Agent and Fleet add to every document (filestream input, add_host_metadata, the
#: `.fleet_final_pipeline`), and the two the package's pipeline writes: declared in the package only, since
#: otids never writes them itself.
AGENT_FIELDS = (
    ("agent.ephemeral_id", "keyword", "Ephemeral id of the Elastic Agent's Beat."),
    ("agent.id", "keyword", "Id of the Elastic Agent."),
    ("agent.name", "keyword", "Name of the Elastic Agent."),
    ("agent.type", "keyword", "Type of the Elastic Agent's Beat (filebeat)."),
    ("agent.version", "keyword", "Version of the Elastic Agent."),
    ("elastic_agent.id", "keyword", "Elastic Agent id."),
    ("elastic_agent.snapshot", "boolean", "Whether the Elastic Agent is a snapshot build."),
    ("elastic_agent.version", "keyword", "Elastic Agent version."),
    ("event.agent_id_status", "keyword", "Whether the agent id was verified (set by Fleet's final pipeline)."),
    ("event.original", "keyword", "The NDJSON line as read, kept only with the preserve_original_event tag."),
    ("error.message", "match_only_text", "Why the ingest pipeline failed on this document."),
    ("input.type", "keyword", "Elastic Agent input type (filestream)."),
    ("log.file.path", "keyword", "The NDJSON file the document was read from."),
    ("log.offset", "long", "Offset of the line in that file."),
    ("log.flags", "keyword", "Flags of the log line (multiline, ...)."),
    ("tags", "keyword", "Tags the Elastic Agent policy adds (preserve_original_event, forwarded, ...)."),
    ("host.architecture", "keyword", "Host architecture (add_host_metadata)."),
    ("host.containerized", "boolean", "Whether the host is a container (add_host_metadata)."),
    ("host.id", "keyword", "Host id (add_host_metadata)."),
    ("host.ip", "ip", "Host addresses (add_host_metadata)."),
    ("host.mac", "keyword", "Host MAC addresses (add_host_metadata)."),
    ("host.os.family", "keyword", "OS family (add_host_metadata)."),
    ("host.os.kernel", "keyword", "OS kernel (add_host_metadata)."),
    ("host.os.name", "keyword", "OS name (add_host_metadata)."),
    ("host.os.platform", "keyword", "OS platform (add_host_metadata)."),
    ("host.os.type", "keyword", "OS type (add_host_metadata)."),
    ("host.os.version", "keyword", "OS version (add_host_metadata)."),
    ("host.os.codename", "keyword", "OS codename (add_host_metadata)."),
)

#: Kibana saved-object type -> the package folder it goes in.
KIBANA_DIRS = {"dashboard": "dashboard", "visualization": "visualization", "search": "search",
               "index-pattern": "index_pattern"}


# ---------------------------------------------------------------------------------------------- fields

def package_fields(fs: FieldSet) -> dict[str, list[Field]]:
    """File name -> the fields it declares, for every data stream (each may hold any otids field: an alert
    carries the fields of the exchange that triggered it). One file per definition group, and agent.yml for
    what Elastic Agent adds; a name is declared once across the files."""
    out: dict[str, list[Field]] = {}
    for g in fs.groups.values():
        out[f"{g.name}-fields.yml"] = [fs.fields[n] for n in g.fields]  # spec: names of 3+ characters
    extra = [Field(n, t, d, "agent", None) for n, t, d in AGENT_FIELDS if n not in fs.fields]
    out["agent.yml"] = extra
    return out


def nest(fields: list[Field], fs: FieldSet | None = None) -> list[dict]:
    """Dotted definitions as package fields files declare them (format 3 refuses dotted names): one entry
    per name part, `group` for objects, leaves with their type. An `object` or `nested` field declared in
    the definitions becomes that group (or `nested`) node."""
    root: dict = {}
    for f in fields:
        node = root
        parts = f.name.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {"__children__": {}})["__children__"]
        leaf = node.setdefault(parts[-1], {"__children__": {}})
        leaf["__field__"] = f

    def render(tree: dict, prefix: str) -> list[dict]:
        items = []
        for name in sorted(tree):
            node = tree[name]
            f: Field | None = node.get("__field__")
            kids = node["__children__"]
            if kids:
                typ = "nested" if f is not None and f.type == "nested" else "group"
                if f is None and fs is not None and fs.fields.get(prefix + name) is not None:
                    f = fs.fields[prefix + name]
                    typ = "nested" if f.type == "nested" else "group"
                e = {"name": name, "type": typ}
                if f is not None:
                    e["description"] = f.description
                e["fields"] = render(kids, prefix + name + ".")
            else:
                e = {"name": name, **_leaf_type(f.type), "description": f.description}
                if f.example is not None:
                    e["example"] = f.example
            items.append(e)
        return items

    return render(root, "")


def _leaf_type(t: str) -> dict:
    if t == "keyword":
        return {"type": "keyword", "ignore_above": 1024}
    if t == "scaled_float":
        return {"type": t, "scaling_factor": 1000}
    if t == "object":  # an object without declared sub-fields cannot exist (fields.py refuses it)
        raise ValueError("object field without sub-fields")
    return {"type": t}


# ---------------------------------------------------------------------------------------------- pipeline

def shipped_processors(fs: FieldSet) -> list[dict]:
    """The processors of the pipeline `otids es setup` installs (otids@ingest): event.ingested, ..."""
    pipe = next(o for o in esgen.cluster_objects(fs) if o.kind == "pipeline")
    return [dict(p) for p in pipe.body["processors"]]


def pipeline(stream: Stream, fs: FieldSet) -> dict:
    """The data stream's default ingest pipeline: parse the NDJSON line into the document (the line kept
    in event.original only with the preserve_original_event tag), give it the same `_id` as the NDJSON
    files and `otids es` (event.id: re-shipping a file stores nothing twice), add what the otids sink adds
    (observer.*, ecs.version, an alert's message), then the shipped pipeline's processors."""
    procs: list[dict] = [
        {"rename": {"field": "message", "target_field": "event.original", "ignore_missing": True,
                    "if": "ctx.event?.original == null", "tag": "rename-message"}},
        {"remove": {"field": "message", "ignore_missing": True, "if": "ctx.event?.original != null",
                    "tag": "remove-message"}},
        # The line's own fields win over what the agent set (event.dataset, ...), objects are merged. A
        # document rerouted from the events data stream arrives parsed (event.original gone, or kept and
        # parsed again to the same values).
        {"json": {"field": "event.original", "add_to_root": True, "add_to_root_conflict_strategy": "merge",
                  "if": "ctx.event?.original != null", "tag": "parse-ndjson"}},
        {"remove": {"field": "event.original", "ignore_missing": True,
                    "if": "ctx.tags == null || !ctx.tags.contains('preserve_original_event')",
                    "tag": "remove-original"}},
        {"set": {"field": "_id", "copy_from": "event.id", "if": "ctx.event?.id != null", "tag": "id-from-event-id"}},
        {"set": {"field": "ecs.version", "value": ECS_VERSION, "tag": "ecs-version"}},
        {"set": {"field": "observer.vendor", "value": "otids", "override": False, "tag": "observer-vendor"}},
        {"set": {"field": "observer.product", "value": "otids", "override": False, "tag": "observer-product"}},
        {"set": {"field": "observer.type", "value": "ids", "override": False, "tag": "observer-type"}},
        {"set": {"field": "observer.hostname", "copy_from": "host.hostname", "override": False,
                 "if": "ctx.host?.hostname != null", "tag": "observer-hostname"}},
        {"set": {"field": "observer.name", "copy_from": "host.name", "override": False,
                 "if": "ctx.host?.name != null", "tag": "observer-name"}},
    ]
    if stream.name == "alert":
        # The title Elastic Security gives a promoted alert (sinks.cluster_fields does the same).
        procs += [
            {"set": {"field": "message", "value": "{{{rule.name}}}: {{{event.reason}}}",
                     "if": "ctx.rule?.name != null && ctx.event?.reason != null", "tag": "alert-message"}},
            {"set": {"field": "message", "copy_from": "rule.name", "override": False,
                     "if": "ctx.rule?.name != null", "tag": "alert-message-rule"}},
        ]
    procs += shipped_processors(fs)
    return {"description": f"{stream.title}: parse the NDJSON line, _id from event.id, observer.* "
                           f"(generated by otids es package)",
            "processors": procs,
            "on_failure": [
                {"set": {"field": "event.kind", "value": "pipeline_error", "tag": "failure-kind"}},
                {"append": {"field": "error.message", "tag": "failure-message",
                            "value": "{{{_ingest.on_failure_message}}} (processor "
                                     "{{{_ingest.on_failure_processor_type}}} {{{_ingest.on_failure_processor_tag}}})"}},
            ]}


def pipeline_fields(p: dict) -> set[str]:
    """Document fields the pipeline reads or writes (metadata such as _id and _ingest left out)."""
    out: set[str] = set()
    for proc in p["processors"] + p.get("on_failure", []):
        (body,) = proc.values()
        for k in ("field", "target_field", "copy_from"):
            v = body.get(k)
            if isinstance(v, str) and not v.startswith("_"):
                out.add(v)
        for text in (body.get("value"), body.get("if")):
            if isinstance(text, str):
                out.update(m for m in re.findall(r"\{\{\{([\w.@]+)\}\}\}", text) if not m.startswith("_"))
                for m in re.finditer(r"ctx\.(\w+(?:\??\.\w+)*)", text):
                    name = m.group(1).replace("?.", ".")
                    if text[m.end():m.end() + 1] == "(":  # a method call: ctx.tags.contains(...)
                        name = name.rpartition(".")[0]
                    if name and not name.startswith("_"):
                        out.add(name)
    return out


# ---------------------------------------------------------------------------------------------- files

def _yaml(obj, document: bool = False) -> str:
    text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=110)
    return ("---\n" + text) if document else text


STREAM_TEMPLATE = """\
paths:
{{#each paths as |path|}}
  - {{path}}
{{/each}}
prospector.scanner.exclude_files: ['\\.gz$']
{{#if preserve_original_event}}
tags:
  - preserve_original_event
{{#each tags as |tag|}}
  - {{tag}}
{{/each}}
{{else}}
{{#if tags}}
tags:
{{#each tags as |tag|}}
  - {{tag}}
{{/each}}
{{/if}}
{{/if}}
{{#contains "forwarded" tags}}
publisher_pipeline.disable_host: true
{{/contains}}
{{#if processors}}
processors:
{{processors}}
{{/if}}
"""

ICON = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="10" fill="#1B4F72"/>
<path d="M12 40h10l5-14 6 22 5-16 4 8h10" fill="none" stroke="#F4D03F" stroke-width="4" stroke-linejoin="round" stroke-linecap="round"/>
<text x="32" y="18" font-family="sans-serif" font-size="11" font-weight="bold" fill="#FFFFFF" text-anchor="middle">otids</text>
</svg>
"""


def manifest() -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "name": NAME,
        "title": "otids (OT intrusion detection)",
        "version": __version__,
        "description": "Alerts, OT protocol events and connection records from otids, the passive OT "
                       "intrusion detection system, read from the NDJSON files it writes.",
        "type": "integration",
        "source": {"license": "Apache-2.0"},
        "categories": ["security", "network", "ids_ips"],
        "conditions": {"kibana": {"version": KIBANA_VERSIONS}, "elastic": {"subscription": "basic"}},
        "icons": [{"src": "/img/otids-logo.svg", "title": "otids", "size": "64x64", "type": "image/svg+xml"}],
        "policy_templates": [{
            "name": NAME,
            "title": "otids NDJSON files",
            "description": "Collect otids alerts, protocol events and connection records from its NDJSON files "
                           "with Elastic Agent.",
            "data_streams": [s.name for s in STREAMS if s.paths],
            "inputs": [{"type": "filestream", "title": "Collect otids NDJSON files",
                        "description": "Read the alerts and events files otids writes (one ECS document per line)."}],
        }],
        "owner": {"github": "otids/otids", "type": "community"},
    }


def stream_manifest(s: Stream) -> dict:
    m: dict = {"title": s.title, "type": "logs"}
    if s.paths:
        m["streams"] = [{
            "input": "filestream",
            "title": s.title,
            "description": f"Collect {s.title} from the NDJSON file otids writes, with Elastic Agent.",
            "template_path": "filestream.yml.hbs",
            "vars": [
                {"name": "paths", "type": "text", "title": "Paths", "multi": True, "required": True,
                 "show_user": True, "default": list(s.paths)},
                {"name": "preserve_original_event", "type": "bool", "title": "Preserve original event",
                 "description": "Keep the NDJSON line as read in event.original.", "multi": False,
                 "required": True, "show_user": True, "default": False},
                {"name": "tags", "type": "text", "title": "Tags", "multi": True, "required": False,
                 "show_user": False, "default": [f"otids-{s.name}"]},
                {"name": "processors", "type": "yaml", "title": "Processors", "multi": False, "required": False,
                 "show_user": False, "description": "Elastic Agent processors run before the ingest pipeline."},
            ],
        }]
    return m


ROUTING_RULES = [{"source_dataset": "otids.events", "rules": [
    {"target_dataset": "otids.conn", "if": "ctx.event?.dataset == 'otids.conn'",
     "namespace": ["{{data_stream.namespace}}", "default"]}]}]


def readme(fs: FieldSet) -> str:
    dash = ", ".join(f"\"{d.title}\"" for d in kibana.DASHBOARDS)
    return f"""# otids integration

otids is a passive intrusion detection system for OT networks (Modbus/TCP, OPC UA, MQTT and Sparkplug B,
S7comm, DNP3, IEC 104, ...). This integration reads the NDJSON files otids writes and stores them in the same
data streams `otids es` writes directly: `logs-otids.alert-*` (alerts), `logs-otids.events-*` (protocol
events) and `logs-otids.conn-*` (connection records, routed from the events data stream).

## Setup

1. Run otids with its outputs in files the agent can read, for example
   `otids live -i eth1 -o {DEFAULT_ALERTS} --events {DEFAULT_EVENTS}`
   (alerts only: leave out `--events`; the connection and Sparkplug dashboards then show only what alerts carry).
2. Add the otids integration to the Elastic Agent policy of that host, with those paths.

Each line keeps its `event.id` as the document `_id`, so reading a file twice (a re-installed agent, a
replayed capture) stores nothing twice. The ingest pipeline adds `event.ingested`, `observer.*`,
`ecs.version` and, on alerts, the `message` Elastic Security uses as the alert title.

## Dashboards

{dash}.

## Data streams

| data stream | what |
|---|---|
| `otids.alert` | alerts: `rule.*`, `threat.*` (MITRE ATT&CK for ICS), `event.severity`, `otids.alert.*`, and the fields of the exchange that triggered the alert |
| `otids.events` | protocol events: `modbus.*`, `opcua.*`, `mqtt.*` (with Sparkplug B and OPC UA PubSub), `tls.*`, `otids.flow.*`, ... |
| `otids.conn` | connection records: `source.*`/`destination.*` bytes and packets, `network.*`, `otids.conn.*` |

Every data stream declares all {len(fs.fields)} otids fields (an alert carries the fields of its exchange);
the field reference is docs/FIELDS.md in the otids repository.
"""


def changelog() -> list:
    return [{"version": __version__, "changes": [
        {"description": "First package: alerts, protocol events and connection records from otids' NDJSON "
                        "files, with the otids dashboards.", "type": "enhancement",
         "link": "https://github.com/otids/otids/issues/17"}]}]


def package_files(fs: FieldSet, license_text: str | None = None) -> dict[str, bytes]:
    """Every file of the package, path relative to the package root -> content."""
    out: dict[str, str] = {
        "manifest.yml": _yaml(manifest()),
        "changelog.yml": _yaml(changelog()),
        "docs/README.md": readme(fs),
        "img/otids-logo.svg": ICON,
    }
    if license_text:
        out["LICENSE.txt"] = license_text
    files = package_fields(fs)
    for s in STREAMS:
        base = f"data_stream/{s.name}/"
        out[base + "manifest.yml"] = _yaml(stream_manifest(s))
        for name, flds in files.items():
            if flds:
                out[base + "fields/" + name] = _yaml(nest(flds, fs))
        out[base + "elasticsearch/ingest_pipeline/default.yml"] = _yaml(pipeline(s, fs), document=True)
        if s.paths:
            out[base + "agent/stream/filestream.yml.hbs"] = STREAM_TEMPLATE
        if s.name == "events":
            out[base + "routing_rules.yml"] = _yaml(ROUTING_RULES)
    for o in kibana.saved_objects(fs, "kibana"):
        out[f"kibana/{KIBANA_DIRS[o['type']]}/{o['id']}.json"] = json.dumps(o, indent=2, sort_keys=True) + "\n"
    return {k: v.encode("utf-8") for k, v in sorted(out.items())}


def write_package(fs: FieldSet, target: str, force: bool = False, license_text: str | None = None) -> str:
    """Write the package as a directory, or as FILE.zip holding `otids-<version>/` (Kibana's upload format).
    An existing target is replaced only with `force`; a directory that is not an otids package, never."""
    files = package_files(fs, license_text)
    root = f"{NAME}-{__version__}"
    t = Path(target)
    if t.exists() and not force:
        raise UserError(f"{target}: exists; --force replaces it")
    if target.endswith(".zip"):
        if t.is_dir():
            raise UserError(f"{target}: is a directory")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for rel, data in files.items():
                info = zipfile.ZipInfo(f"{root}/{rel}", date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
        d = t.parent if str(t.parent) else Path(".")
        if not d.is_dir():
            raise UserError(f"{target}: directory {d} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.getvalue())
            os.chmod(tmp, 0o644)
            os.replace(tmp, t)
        except OSError as e:
            os.unlink(tmp)
            raise UserError(f"{target}: cannot write: {e.strerror}") from None
        return f"{root}.zip layout, {len(files)} files"
    if t.exists():
        if not t.is_dir():
            raise UserError(f"{target}: exists and is not a directory")
        if any(t.iterdir()) and not (t / "manifest.yml").is_file():
            raise UserError(f"{target}: not an integration package (no manifest.yml); not replaced")
    parent = t.parent if str(t.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{target}: directory {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.", dir=parent))
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        os.chmod(tmp, 0o755)
        if t.exists():
            shutil.rmtree(t)
        os.replace(tmp, t)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{target}: cannot write: {e.strerror}") from None
    return f"{len(files)} files"


# ---------------------------------------------------------------------------------------------- checks

def check(files: dict[str, bytes], fs: FieldSet) -> list[str]:
    """Semantic checks the JSON schemas cannot make: per data stream, every field name declared once across
    its fields files and of a type Elasticsearch knows; every field a pipeline or a dashboard uses declared
    (and aggregatable where a panel aggregates it); every dashboard reference present in the package."""
    problems: list[str] = []
    known = {*AGGREGATABLE, "text", "match_only_text", "flattened", "group", "nested", "object"}
    streams = sorted({p.split("/")[1] for p in files if p.startswith("data_stream/")})
    declared_by_stream: dict[str, dict[str, str]] = {}
    for s in streams:
        declared: dict[str, str] = {}
        for path in sorted(p for p in files if p.startswith(f"data_stream/{s}/fields/")):
            for name, typ in _flatten(yaml.safe_load(files[path]), ""):
                if name in declared:
                    problems.append(f"{path}: field '{name}' declared twice in data stream {s}")
                declared[name] = typ
                if typ not in known:
                    problems.append(f"{path}: field '{name}' has type '{typ}', unknown to Elasticsearch")
        declared_by_stream[s] = declared
        pipe = yaml.safe_load(files[f"data_stream/{s}/elasticsearch/ingest_pipeline/default.yml"])
        for f in sorted(pipeline_fields(pipe)):
            if f not in declared and not any(f.startswith(n + ".") for n, t in declared.items() if t == "flattened"):
                problems.append(f"data_stream/{s}: the pipeline uses '{f}', which no fields file declares")
    objs = [json.loads(v) for p, v in files.items() if p.startswith("kibana/")]
    ids = {(o["type"], o["id"]) for o in objs}
    for o in objs:
        for f, agg in kibana.fields_used(o):
            for s, declared in declared_by_stream.items():
                t = declared.get(f)
                if t is None:
                    problems.append(f"{o['type']} {o['id']}: field '{f}' not declared in data stream {s}")
                elif agg and t not in AGGREGATABLE:
                    problems.append(f"{o['type']} {o['id']}: field '{f}' ({t}) cannot be aggregated")
        for r in o.get("references", []):
            if (r["type"], r["id"]) not in ids:
                problems.append(f"{o['type']} {o['id']}: reference {r['name']} -> {r['type']} {r['id']} "
                                f"is not in the package")
    return problems


def _flatten(items: list, prefix: str):
    for e in items:
        name = prefix + e["name"]
        if e.get("type") in ("group", "nested") or "fields" in e:
            if e.get("type") == "nested":
                yield name, "nested"
            yield from _flatten(e.get("fields", []), name + ".")
        else:
            yield name, e.get("type", "keyword")
