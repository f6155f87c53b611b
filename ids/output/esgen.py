"""What the cluster needs, generated from the field definitions (fields.py): lifecycle policies (ILM on
Elasticsearch, ISM on OpenSearch), component and composable index templates, and the field reference
docs/FIELDS.md; `otids es generate` writes them (with the Kibana objects of kibana.py) under deploy/ and
docs/, and `otids es setup` / the sink install the very same bodies. Nothing here is written by hand twice.

Layout in the cluster (names are stable; sites customise through the optional `otids@custom` component):
  logs-otids.alert-<namespace>        alerts       (template logs-otids.alert, lifecycle otids-alerts)
  logs-otids.<protocol>-<namespace>   events       (template logs-otids.events, lifecycle otids-events)
In `index` mode the same names get a `-YYYY.MM` suffix from each document's @timestamp and are plain indices.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .fields import FieldSet

from .streams import ALERT_STREAM_PREFIX  # noqa: E402,F401  (re-exported)
EVENT_STREAM_GLOB = "logs-otids.*-*"
ALERT_TEMPLATE = "logs-otids.alert"
EVENT_TEMPLATE = "logs-otids.events"
MAPPINGS_COMPONENT = "otids@mappings"
CUSTOM_COMPONENT = "otids@custom"
ALERT_POLICY = "otids-alerts"
EVENT_POLICY = "otids-events"
PIPELINE = "otids@ingest"
#: Built-in component templates of Elasticsearch's `logs` index template (8.x, 9.x): data_stream.* and
#: @timestamp mappings, and the logs default pipeline. Ours compose with them instead of outranking them;
#: listed as optional, so a cluster without them still takes our templates.
LOGS_COMPONENTS = ("logs@mappings", "logs@settings")
LOGS_CUSTOM = "logs@custom"
#: Version of every object installed (index and component templates, pipeline; ILM/ISM in `_meta`).
#: `otids es setup` and the sink install an object when the cluster lacks it or holds an older version,
#: and overwrite a same-or-newer one only with --force. Bump it whenever a generated body changes.
TEMPLATE_VERSION = 2
MAX_SHARD = "50gb"


def rollover_days(retention_days: int) -> int:
    """Rollover age of a data stream's backing index: ILM counts the delete phase from rollover, so a
    document lives between `retention` and `retention + rollover` days; a short rollover keeps that close."""
    return 30 if not retention_days else max(1, min(7, retention_days // 10))


@dataclass(frozen=True)
class Layout:
    """The knobs that change what is installed: product, data streams or plain indices, retention."""

    flavor: str = "elasticsearch"  # elasticsearch | opensearch
    mode: str = "data_stream"  # data_stream | index
    alert_retention_days: int = 365  # 0: keep forever
    event_retention_days: int = 30
    lifecycle: bool = True
    ignore_malformed: bool = False


@dataclass(frozen=True)
class ClusterObject:
    """One PUT request: `path` on the cluster, its JSON `body`, and the file under deploy/ holding it."""

    kind: str  # ilm | ism | pipeline | component_template | index_template
    name: str
    path: str
    body: dict
    file: str


def dumps(obj) -> str:
    """Canonical JSON for generated files: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def fields_hash(fs: FieldSet) -> str:
    return hashlib.sha256(json.dumps([(f.name, f.type) for f in fs.fields.values()]).encode()).hexdigest()[:16]


def cluster_objects(fs: FieldSet, layout: Layout = Layout()) -> list[ClusterObject]:
    """Everything to install, in dependency order (policies, pipeline, components, then index templates)."""
    es = layout.flavor == "elasticsearch"
    ds = layout.mode == "data_stream"
    root = "elasticsearch" if es else "opensearch"
    meta = {"managed_by": "otids", "fields_hash": fields_hash(fs), "otids_version": TEMPLATE_VERSION}
    out: list[ClusterObject] = []
    policies = {}
    for name, days, pattern, prio in ((ALERT_POLICY, layout.alert_retention_days, ALERT_STREAM_PREFIX + "-*", 110),
                                      (EVENT_POLICY, layout.event_retention_days, "logs-otids.*", 100)):
        if not layout.lifecycle:
            break
        if es:
            # Delete is counted from rollover: a document is kept at least `days` and at most days + rollover.
            rollover = {"max_age": f"{rollover_days(days)}d", "max_primary_shard_size": MAX_SHARD}
            phases: dict = {"hot": {"min_age": "0ms", "actions": {"rollover": rollover} if ds else {}}}
            if days:
                phases["delete"] = {"min_age": f"{days}d", "actions": {"delete": {}}}
            body = {"policy": {"_meta": dict(meta), "phases": phases}}
            out.append(ClusterObject("ilm", name, f"/_ilm/policy/{name}", body, f"{root}/ilm/{name}.json"))
            policies[name] = name
        else:
            hot: dict = {"name": "hot", "actions": [{"rollover": {"min_index_age": f"{rollover_days(days)}d",
                                                                  "min_primary_shard_size": MAX_SHARD}}]
                         if ds else [], "transitions": []}
            states = [hot]
            if days:
                # ISM counts from index creation. A monthly index (`index` mode) takes documents for up to 31
                # days after it is created, so it is deleted 31 days later than `days`: every document is
                # kept at least `days`. With rollover, the delete state is entered after it anyway.
                age = days + (0 if ds else 31)
                hot["transitions"] = [{"state_name": "delete", "conditions": {"min_index_age": f"{age}d"}}]
                states.append({"name": "delete", "actions": [{"delete": {}}], "transitions": []})
            if not days and not ds:
                continue  # nothing to manage: plain indices kept forever
            body = {"policy": {"description": f"otids {'alerts' if name == ALERT_POLICY else 'protocol events'}"
                                              f" ({'kept forever' if not days else f'kept at least {days} days'})"
                                              f" v{TEMPLATE_VERSION}",  # the version install() compares
                               "default_state": "hot", "states": states,
                               "ism_template": [{"index_patterns": [pattern], "priority": prio}]}}
            out.append(ClusterObject("ism", name, f"/_plugins/_ism/policies/{name}", body, f"{root}/ism/{name}.json"))
            policies[name] = name

    # event.ingested is set by the cluster when the document arrives (not by the sensor): Elastic Security
    # rules look back on it, so alerts replayed after an outage, or loaded from pcaps, are still promoted.
    out.append(ClusterObject("pipeline", PIPELINE, f"/_ingest/pipeline/{PIPELINE}", {
        "description": "otids: event.ingested = arrival time in the cluster (managed by otids)",
        "version": TEMPLATE_VERSION,
        "processors": [{"set": {"field": "event.ingested", "value": "{{{_ingest.timestamp}}}",
                                "tag": "otids-event-ingested"}}]},
        f"{root}/ingest_pipeline/{PIPELINE}.json"))
    mappings = {"dynamic": False, "date_detection": False, "properties": fs.properties(layout.flavor)}
    out.append(ClusterObject("component_template", MAPPINGS_COMPONENT, f"/_component_template/{MAPPINGS_COMPONENT}",
                             {"template": {"mappings": mappings}, "version": TEMPLATE_VERSION,
                              "_meta": dict(meta, description="otids field mappings, generated from ids/data/fields")},
                             f"{root}/component_template/{MAPPINGS_COMPONENT}.json"))
    for kind, policy in (("alerts", ALERT_POLICY), ("events", EVENT_POLICY)):
        settings: dict = {"index.mapping.ignore_malformed": layout.ignore_malformed,
                          "index.final_pipeline": PIPELINE}
        if es:
            settings["index.codec"] = "best_compression"
            if policy in policies:
                settings["index.lifecycle.name"] = policy
        name = f"otids-{kind}@settings"
        out.append(ClusterObject("component_template", name, f"/_component_template/{name}",
                                 {"template": {"settings": settings}, "version": TEMPLATE_VERSION,
                                  "_meta": dict(meta, description=f"otids {kind} index settings")},
                                 f"{root}/component_template/{name}.json"))
    for name, patterns, prio, kind in ((ALERT_TEMPLATE, [ALERT_STREAM_PREFIX + "-*"], 210, "alerts"),
                                       (EVENT_TEMPLATE, [EVENT_STREAM_GLOB], 200, "events")):
        body: dict = {"index_patterns": patterns, "priority": prio, "version": TEMPLATE_VERSION,
                      "composed_of": [MAPPINGS_COMPONENT, f"otids-{kind}@settings"],
                      "_meta": dict(meta, description=f"otids {kind}: {'data streams' if ds else 'indices'} "
                                                      f"{patterns[0]}")}
        if es:
            # Compose with the built-in logs components (later ones win: ours override their lifecycle and
            # codec), then the site's own: logs@custom (every logs-*-* stream) and otids@custom. None of those
            # need exist. Priority above the built-in `logs` template (100) only selects this template.
            body["composed_of"] = [*LOGS_COMPONENTS, *body["composed_of"], LOGS_CUSTOM, CUSTOM_COMPONENT]
            body["ignore_missing_component_templates"] = [*LOGS_COMPONENTS, LOGS_CUSTOM, CUSTOM_COMPONENT]
        if ds:
            body["data_stream"] = {}
        out.append(ClusterObject("index_template", name, f"/_index_template/{name}", body,
                                 f"{root}/index_template/{name}.json"))
    return out


def stream_name(dataset: str, namespace: str) -> str:
    """Data stream (or index base name) for a document of `dataset` (otids.alert, otids.modbus, ...)."""
    return f"logs-{dataset}-{namespace}"


# ---------------------------------------------------------------------------------------------- docs

def fields_markdown(fs: FieldSet) -> str:
    lines = ["# Field reference", "",
             "<!-- Generated by `otids es generate` from ids/data/fields/*.yml; edit those files, not this one. -->",
             "",
             "Every field an otids document (alert, protocol event, flow notice) can carry, with its Elasticsearch",
             "type. The index templates under deploy/, the Kibana objects and the document validator are generated",
             "from the same definitions. Arrays are not a type of their own: any field may hold a list of values of",
             "its type. `flattened` fields hold objects whose keys vary; their keys are searched as keywords",
             "(and cannot be aggregated in Kibana: no panel uses them).", "",
             "## Where custom fields live (decision, issue #17)", "",
             "ECS reserves the top level for its own field sets and advises custom fields under a namespace of the",
             "product, so a future ECS release cannot collide with them; Elastic's integrations do so (`zeek.*`,",
             "`suricata.eve.*`, `nozomi_networks.*`). otids follows ECS wherever ECS has the field (`source.*`,",
             "`destination.*`, `network.*`, `event.*`, `rule.*`, `threat.*`, `tls.*`, `observer.*`), and keeps its",
             "own fields under `otids.*` (`otids.alert.*`, `otids.flow.*`, `otids.stats.*`). The protocol trees",
             "(`modbus.*`, `mqtt.*`, `opcua.*`, `sparkplug.*`, ...) are the exception today: ECS has no field sets",
             "for them, and several protocol branches were writing them at once. Decision: they move to",
             "`otids.<protocol>.*` in one later change, made when the per-protocol folders (issue #13) have",
             "settled: each protocol's `fields.yml` is renamed by the generator, the templates carry field aliases",
             "at the old names for one release (so saved searches and dashboards keep working), and the rule field",
             "table maps the short names rule authors write (`modbus.function`) to the new paths, so rules do not",
             "change. `event.original_dataset` (not ECS: the dataset of the event that triggered an alert) stays",
             "until then and becomes `otids.alert.original_dataset` in the same change, with an alias. Fields only",
             "the cluster gets (`message`, `observer.*`, `host.*`, `ecs.version`, `data_stream.*`,",
             "`event.ingested`) are in the `cluster` group.", ""]
    lines.append("| Group | Fields | Description |")
    lines.append("|---|---:|---|")
    for g in fs.groups.values():
        lines.append(f"| [{g.name}](#{g.name}) | {len(g.fields)} | {g.description} |")
    lines.append("")
    for g in fs.groups.values():
        lines += [f"## {g.name}", "", g.description, "", f"Defined in `{_rel(g.path)}`.", "",
                  "| Field | Type | Description |", "|---|---|---|"]
        for name in g.fields:
            f = fs.fields[name]
            desc = f.description.replace("|", "\\|")
            if f.example is not None:
                desc += f" Example: `{f.example}`".replace("|", "\\|")
            lines.append(f"| `{name}` | {f.type} | {desc} |")
        lines.append("")
    return "\n".join(lines)


def _rel(path: str) -> str:
    p = path.replace("\\", "/")
    i = max(p.rfind("ids/data/fields/"), p.rfind("ids/protocols/"))  # shared groups, or a protocol's own
    return p[i:] if i >= 0 else p


def generated_files(fs: FieldSet) -> dict[str, str]:
    """Every generated file, relative path under the repository root -> content."""
    from . import kibana

    out: dict[str, str] = {}
    for flavor, mode in (("elasticsearch", "data_stream"), ("opensearch", "index")):
        for obj in cluster_objects(fs, Layout(flavor=flavor, mode=mode)):
            out["deploy/" + obj.file] = dumps(obj.body)
    out["deploy/kibana/otids.ndjson"] = kibana.ndjson(kibana.saved_objects(fs, "kibana"))
    out["deploy/opensearch-dashboards/otids.ndjson"] = kibana.ndjson(kibana.saved_objects(fs, "opensearch"))
    from . import secrules

    out["deploy/elastic-security/otids-rules.ndjson"] = secrules.ndjson(secrules.detection_rules())
    out["docs/FIELDS.md"] = fields_markdown(fs)
    return out
