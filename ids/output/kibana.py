"""Kibana (and OpenSearch Dashboards) saved objects for otids: a data view on logs-otids.* and six
dashboards — alerts, OT protocol activity, assets, certificate findings, connections, Sparkplug — built
from the panel list below
and checked against the field definitions, so a visualisation can never name a field the mapping lacks.

Panels are aggregation-based visualisations (not Lens): their format is shared by Kibana 8/9 and
OpenSearch Dashboards, and every field they use sits in plain sight in `visState`, which is what
`check()` reads. A panel that needs a field group not present yet (an OPC UA or MQTT panel before those
dissectors land) is left out and listed by `missing_panels()`; once the group file exists, regenerating
adds it, and a wrong field name in it is then an error.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .fields import FieldSet

DATA_VIEW_ID = "otids-logs"
DATA_VIEW_TITLE = "logs-otids.*"
# Migration versions of the objects as written: the 8.0.0 export format (migrationVersion per type, panel
# references `panel_N`), which every supported Kibana (8.x, 9.x) imports and migrates forward; an object
# declaring a newer version than a Kibana knows is refused by it (8.9.0 here kept Kibana < 8.9 out).
KIBANA_VERSION = "8.0.0"
OSD_VERSION = "7.10.0"  # OpenSearch Dashboards forked from Kibana 7.10.2

ALERTS = (("event.kind", "alert"),)
# Protocol and asset panels read every document: alerts carry the fields of the exchange that triggered
# them, so with protocol events off (the default) these dashboards show the devices and exchanges alerts
# are about; with events on, everything seen.
ANY: tuple = ()


@dataclass(frozen=True)
class Vis:
    id: str
    title: str
    kind: str  # metric | pie | table | bars (count over time, split by `split`)
    # (field, value) pairs ANDed into a KQL query; value None means "field exists", a tuple of values any of
    # them, a value starting with "!" not that value (see kql())
    where: tuple = ()
    rows: tuple = ()  # table: terms split rows; pie: slices; metric: unused
    split: str | None = None  # bars: split series field
    metrics: tuple = (("count", None, "Count"),)  # (agg, field, label); agg "last": the latest value (top hit)
    size: int = 10
    requires: tuple = ()  # field groups the panel needs; absent group -> panel left out
    w: int = 24
    h: int = 15


@dataclass(frozen=True)
class SavedSearch:
    id: str
    title: str
    where: tuple
    columns: tuple
    w: int = 48
    h: int = 18
    requires: tuple = ()


@dataclass(frozen=True)
class Dashboard:
    id: str
    title: str
    description: str
    panels: tuple = field(default_factory=tuple)


DASHBOARDS = (
    Dashboard("otids-alerts", "otids: Alerts",
              "Alerts from every otids detector: severity, rules, MITRE ATT&CK for ICS techniques over time, "
              "top sources and targets.", (
        Vis("otids-alerts-count", "Alerts", "metric", ALERTS, w=12, h=8),
        Vis("otids-alerts-sources-count", "Alerting sources", "metric", ALERTS,
            metrics=(("cardinality", "source.ip", "Distinct sources"),), w=12, h=8),
        Vis("otids-alerts-rules-count", "Rules fired", "metric", ALERTS,
            metrics=(("cardinality", "rule.id", "Distinct rules"),), w=12, h=8),
        Vis("otids-alerts-critical-count", "High and critical alerts", "metric",
            ALERTS + (("event.severity", ">=73"),), w=12, h=8),
        Vis("otids-alerts-severity-time", "Alerts by severity over time", "bars", ALERTS,
            split="otids.alert.severity", size=4),
        Vis("otids-alerts-severity", "Alerts by severity", "pie", ALERTS, rows=("otids.alert.severity",), size=4),
        Vis("otids-alerts-technique-time", "ATT&CK for ICS techniques over time", "bars", ALERTS,
            split="threat.technique.name", size=10),
        Vis("otids-alerts-tactic", "ATT&CK for ICS tactics", "pie", ALERTS, rows=("threat.tactic.name",)),
        Vis("otids-alerts-rules", "Alerts by rule", "table", ALERTS,
            rows=("rule.name", "otids.alert.severity", "rule.category"), size=25,
            metrics=(("count", None, "Alerts"), ("sum", "otids.alert.count", "Occurrences"))),
        Vis("otids-alerts-sources", "Top alert sources", "table", ALERTS, rows=("source.ip",), size=15,
            metrics=(("count", None, "Alerts"), ("cardinality", "rule.id", "Rules"),
                     ("cardinality", "destination.ip", "Targets"))),
        Vis("otids-alerts-targets", "Top alert targets", "table", ALERTS, rows=("destination.ip", "network.protocol"),
            size=15, metrics=(("count", None, "Alerts"), ("cardinality", "source.ip", "Sources"))),
        Vis("otids-alerts-techniques", "Techniques by source", "table", ALERTS,
            rows=("threat.technique.id", "threat.technique.name", "source.ip"), size=20),
        SavedSearch("otids-alerts-list", "otids alerts", ALERTS,
                    ("otids.alert.severity", "rule.name", "source.ip", "destination.ip", "network.protocol",
                     "event.reason", "threat.technique.id")),
    )),
    Dashboard("otids-protocols", "otids: OT protocol activity",
              "What the OT protocols are doing: Modbus function codes per master/slave pair, exceptions and "
              "writes, OPC UA services, MQTT topics. From alerts alone (the exchanges they are about) unless "
              "protocol events are shipped too (--es-events).", (
        Vis("otids-events-dataset-time", "Protocol activity over time", "bars", ANY, split="network.protocol", w=48),
        Vis("otids-modbus-function-pairs", "Modbus function codes per pair", "table",
            (("network.protocol", "modbus"),),
            rows=("source.ip", "destination.ip", "modbus.function_code", "modbus.function"), size=50, w=48),
        Vis("otids-modbus-functions", "Modbus functions", "pie", (("network.protocol", "modbus"),),
            rows=("modbus.function",), size=15),
        Vis("otids-modbus-writes-time", "Modbus writes over time", "bars",
            (("network.protocol", "modbus"), ("modbus.function", "write_*")), split="source.ip"),
        Vis("otids-modbus-exceptions", "Modbus exceptions by slave", "table",
            (("network.protocol", "modbus"), ("modbus.exception", None)),
            rows=("destination.ip", "modbus.unit_id", "modbus.function", "modbus.exception"), size=25),
        Vis("otids-modbus-anomalies", "Protocol anomalies", "table", (("otids.anomalies", None),),
            rows=("network.protocol", "otids.anomalies"), size=25),
        Vis("otids-opcua-services", "OPC UA services per pair", "table", (("network.protocol", "opcua"),),
            rows=("source.ip", "destination.ip", "opcua.service"), size=50, requires=("opcua",)),
        Vis("otids-opcua-services-pie", "OPC UA services", "pie", (("network.protocol", "opcua"),),
            rows=("opcua.service",), size=15, requires=("opcua",)),
        Vis("otids-mqtt-topics", "MQTT topics published", "table", (("network.protocol", "mqtt"),),
            rows=("mqtt.publish.topic", "source.ip"), size=50, requires=("mqtt",)),
    )),
    Dashboard("otids-assets", "otids: Assets",
              "Devices seen on the wire: servers and clients with their MAC addresses, protocols and ports, "
              "Modbus device identification (FC 43/14) and server ids (FC 17). From alerts alone (the devices "
              "they involve) unless protocol events are shipped too (--es-events).", (
        Vis("otids-assets-servers-count", "Servers", "metric", ANY,
            metrics=(("cardinality", "destination.ip", "Servers"),), w=12, h=8),
        Vis("otids-assets-clients-count", "Clients", "metric", ANY,
            metrics=(("cardinality", "source.ip", "Clients"),), w=12, h=8),
        Vis("otids-assets-pairs-count", "Flows", "metric", ANY,
            metrics=(("cardinality", "network.community_id", "Flows"),), w=12, h=8),
        Vis("otids-assets-protocols", "Protocols", "pie", ANY, rows=("network.protocol",), w=12, h=8),
        Vis("otids-assets-servers", "Servers (PLCs, OPC UA servers, brokers)", "table", ANY,
            rows=("destination.ip", "destination.mac", "network.protocol", "destination.port"), size=50,
            metrics=(("count", None, "Events"), ("cardinality", "source.ip", "Clients"))),
        Vis("otids-assets-clients", "Clients (HMIs, engineering stations, SCADA)", "table", ANY,
            rows=("source.ip", "source.mac", "network.protocol"), size=50,
            metrics=(("count", None, "Events"), ("cardinality", "destination.ip", "Servers"))),
        # device_identification is flattened: its keys cannot be aggregated, so a list, not a table
        SavedSearch("otids-assets-modbus-identity", "Modbus device identification",
                    (("modbus.response.device_identification", None),),
                    ("destination.ip", "modbus.unit_id", "modbus.response.device_identification"), w=24, h=15),
        Vis("otids-assets-modbus-server-id", "Modbus server ids (FC 17)", "table",
            (("modbus.response.server_id_text", None),),
            rows=("destination.ip", "modbus.unit_id", "modbus.response.server_id_text"), size=50),
        Vis("otids-assets-pairs", "Talker pairs", "table", ANY,
            rows=("source.ip", "destination.ip", "network.protocol"), size=100, w=48),
    )),
    Dashboard("otids-certificates", "otids: Certificate findings",
              "Findings of the certificate and device-authentication checks (detector `auth`): which checks "
              "fire, on which devices, and the certificates involved.", (
        Vis("otids-certs-time", "Certificate findings over time", "bars",
            ALERTS + (("otids.alert.detector", "auth"),), split="rule.name", w=48),
        Vis("otids-certs-rules", "Findings by check", "table", ALERTS + (("otids.alert.detector", "auth"),),
            rows=("rule.name", "otids.alert.severity"), size=30),
        Vis("otids-certs-devices", "Findings by device", "table", ALERTS + (("otids.alert.detector", "auth"),),
            rows=("destination.ip", "source.ip", "network.protocol", "rule.name"), size=50),
        Vis("otids-certs-tls-server", "TLS server certificates with findings", "table",
            ALERTS + (("otids.alert.detector", "auth"), ("tls.server.x509.subject.common_name", None)),
            rows=("destination.ip", "tls.server.x509.subject.common_name", "tls.server.x509.issuer.common_name",
                  "tls.server.x509.not_after"), size=50, w=48, requires=("tls",)),
        SavedSearch("otids-certs-list", "otids certificate findings", ALERTS + (("otids.alert.detector", "auth"),),
                    ("rule.name", "otids.alert.severity", "source.ip", "destination.ip", "network.protocol",
                     "event.reason")),
    )),
)


# Connection records and Sparkplug messages are protocol events: shipped with `--es-events`
# (elasticsearch.events: true), off in the shipped config. What it costs is in docs/ELASTICSEARCH.md.
CONN = (("event.dataset", "otids.conn"),)
EVENTS_OFF = ("Needs protocol events in the cluster: they are off in the shipped configuration; turn them on "
              "with --es-events or elasticsearch.events: true (volume and cost: docs/ELASTICSEARCH.md, "
              "'Events for the connection and Sparkplug views').")
# Addresses that are not external: RFC 1918, CGNAT, loopback, link-local, multicast, broadcast, IPv6 ULA,
# link-local and multicast. KQL matches an ip field against CIDR blocks.
INTERNAL = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
            "224.0.0.0/4", "255.255.255.255/32", "0.0.0.0/32", "fc00::/7", "fe80::/10", "ff00::/8", "::1/128")
SPB = "mqtt.publish.sparkplug."
# The sensor sees a PUBLISH once from its publisher and once per subscriber: count the publisher's copy,
# whose source.ip is the client that sent it (docs/SPARKPLUG.md).
PUBLISHED = (("mqtt.publish.from_client", "true"),)
SPARKPLUG = PUBLISHED + ((SPB + "message_type", None),)

DASHBOARDS += (
    Dashboard("otids-conn", "otids: Connections",
              "Connection records (dataset otids.conn, Zeek's conn.log in ECS): top talkers by bytes, the "
              "protocols named and how (content or port), TCP connection states, connections to external "
              "addresses, and the network baseline's new hosts, links and services. " + EVENTS_OFF, (
        Vis("otids-conn-count", "Connections", "metric", CONN, w=12, h=8),
        Vis("otids-conn-bytes", "Bytes", "metric", CONN, metrics=(("sum", "network.bytes", "Bytes"),), w=12, h=8),
        Vis("otids-conn-hosts", "Hosts", "metric", CONN,
            metrics=(("cardinality", "source.ip", "Originators"), ("cardinality", "destination.ip", "Responders")),
            w=12, h=8),
        Vis("otids-conn-unnamed", "Connections without a protocol name", "metric",
            CONN + (("network.protocol", "!*"),), w=12, h=8),
        Vis("otids-conn-talkers", "Top talkers by bytes", "table", CONN,
            rows=("source.ip", "destination.ip", "network.protocol"), size=25, w=48,
            metrics=(("sum", "network.bytes", "Bytes"), ("sum", "source.bytes", "Bytes from originator"),
                     ("sum", "destination.bytes", "Bytes from responder"), ("count", None, "Connections"))),
        Vis("otids-conn-protocols", "Protocols by bytes", "pie", CONN, rows=("network.protocol",), size=20,
            metrics=(("sum", "network.bytes", "Bytes"),)),
        Vis("otids-conn-identified", "Protocols named by content or by port", "table", CONN,
            rows=("network.protocol", "otids.conn.identified_by", "network.transport"), size=50,
            metrics=(("count", None, "Connections"), ("sum", "network.bytes", "Bytes"))),
        Vis("otids-conn-state", "Connection states (Zeek conn_state)", "pie",
            CONN + (("network.transport", "tcp"),), rows=("otids.conn.state",), size=13),
        Vis("otids-conn-state-time", "Connection states over time", "bars", CONN + (("network.transport", "tcp"),),
            split="otids.conn.state", size=13),
        Vis("otids-conn-external", "Connections to external addresses (newest first)", "table",
            CONN + (("destination.ip", None),) + tuple(("destination.ip", "!" + c) for c in INTERNAL),
            rows=("destination.ip", "destination.port", "network.protocol", "source.ip"), size=50, w=48,
            metrics=(("max", "event.start", "Last started"), ("min", "event.start", "First started"),
                     ("count", None, "Connections"), ("sum", "network.bytes", "Bytes"))),
        Vis("otids-conn-notes", "Connection notes (odd TCP flags, port/protocol mismatch, ...)", "table",
            CONN + (("otids.conn.notes", None),), rows=("otids.conn.notes", "source.ip", "destination.ip"), size=25),
        Vis("otids-conn-baseline-new", "New hosts, links and services (network baseline alerts)", "table",
            ALERTS + (("rule.id", "otids.baseline.network.*"),),
            rows=("rule.id", "source.ip", "destination.ip"), size=25,
            metrics=(("count", None, "Alerts"), ("min", "@timestamp", "First"))),
    )),
    Dashboard("otids-sparkplug", "otids: Sparkplug and UNS",
              "Sparkplug B over MQTT: edge nodes and devices with their latest birth or death (online or "
              "offline), host applications' STATE, rebirths and rebirth requests, commands and who sent them, "
              "metrics by topic, and the Sparkplug checks' alerts (docs/SPARKPLUG.md). The alert panels work "
              "with alerts alone; the others show the messages alerts are about unless protocol events are "
              "shipped. " + EVENTS_OFF, (
        Vis("otids-spb-edge-nodes", "Edge nodes", "metric", SPARKPLUG,
            metrics=(("cardinality", SPB + "edge_node_id", "Edge nodes"),), w=12, h=8),
        Vis("otids-spb-devices", "Devices", "metric", SPARKPLUG,
            metrics=(("cardinality", SPB + "device_id", "Devices"),), w=12, h=8),
        Vis("otids-spb-births", "Node births (NBIRTH)", "metric", PUBLISHED + ((SPB + "message_type", "NBIRTH"),), w=12, h=8),
        Vis("otids-spb-alerts-count", "Sparkplug alerts", "metric", ALERTS + (("rule.id", "otids.sparkplug.*"),),
            w=12, h=8),
        Vis("otids-spb-nodes", "Edge nodes: latest birth or death", "table",
            PUBLISHED + ((SPB + "message_type", ("NBIRTH", "NDEATH")),),
            rows=(SPB + "group_id", SPB + "edge_node_id"), size=100,
            metrics=(("max", "@timestamp", "At"), ("last", SPB + "message_type", "Latest"),
                     ("count", None, "Births and deaths"))),
        Vis("otids-spb-devices-state", "Devices: latest birth or death", "table",
            PUBLISHED + ((SPB + "message_type", ("DBIRTH", "DDEATH")),),
            rows=(SPB + "edge_node_id", SPB + "device_id"), size=100,
            metrics=(("max", "@timestamp", "At"), ("last", SPB + "message_type", "Latest"),
                     ("count", None, "Births and deaths"))),
        Vis("otids-spb-hosts", "Host applications (STATE)", "table", PUBLISHED + ((SPB + "message_type", "STATE"),),
            rows=(SPB + "host_id", "source.ip"), size=25,
            metrics=(("max", "@timestamp", "At"), ("last", SPB + "online", "Online"))),
        Vis("otids-spb-types-time", "Sparkplug messages by type over time", "bars", SPARKPLUG,
            split=SPB + "message_type", size=12),
        Vis("otids-spb-rebirths-time", "Rebirths (NBIRTH) per edge node over time", "bars",
            PUBLISHED + ((SPB + "message_type", "NBIRTH"),), split=SPB + "edge_node_id", size=10),
        Vis("otids-spb-rebirth-requests", "Rebirth requests (NCMD Node Control/Rebirth)", "table",
            PUBLISHED + ((SPB + "message_type", "NCMD"), (SPB + "metrics.name", "Node Control/Rebirth")),
            rows=(SPB + "edge_node_id", "source.ip"), size=25,
            metrics=(("count", None, "Requests"), ("max", "@timestamp", "Last"))),
        Vis("otids-spb-commands", "Commands (NCMD, DCMD) and their senders", "table",
            PUBLISHED + ((SPB + "message_type", ("NCMD", "DCMD")),),
            rows=("source.ip", SPB + "edge_node_id", SPB + "device_id", SPB + "metrics.name"), size=50, w=48),
        Vis("otids-spb-metrics", "Metrics by topic", "table", SPARKPLUG,
            rows=("mqtt.publish.topic", SPB + "metrics.name"), size=100, w=48,
            metrics=(("count", None, "Messages"), ("min", SPB + "metrics.double", "Min (float)"),
                     ("max", SPB + "metrics.double", "Max (float)"), ("max", "@timestamp", "Last"))),
        Vis("otids-spb-alerts", "Sparkplug check alerts", "table", ALERTS + (("rule.id", "otids.sparkplug.*"),),
            rows=("rule.name", "otids.alert.sparkplug.edge_node", "source.ip"), size=50, w=48),
        Vis("otids-spb-problems", "Decoding problems", "table", PUBLISHED + ((SPB + "problems", None),),
            rows=(SPB + "problems", SPB + "edge_node_id"), size=25),
    )),
)


# ---------------------------------------------------------------------------------------------- building

def kql(where: tuple) -> str:
    parts = []
    for f, v in where:
        if v is None:
            parts.append(f"{f} : *")
        elif isinstance(v, tuple):
            parts.append(f"{f} : (" + " or ".join(f'"{x}"' for x in v) + ")")
        elif v == "!*":
            parts.append(f"not {f} : *")
        elif v.startswith("!"):
            parts.append(f'not {f} : "{v[1:]}"')
        elif v.startswith((">=", "<=")) or v.endswith("*"):
            parts.append(f"{f} {v[:2]} {v[2:]}" if v.startswith((">=", "<=")) else f"{f} : {v}")
        else:
            parts.append(f'{f} : "{v}"')
    return " and ".join(parts)


def _search_source(where: tuple) -> str:
    return json.dumps({"query": {"query": kql(where), "language": "kuery"}, "filter": [],
                       "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}, sort_keys=True)


def _aggs(v: Vis) -> list:
    aggs = []
    for i, (agg, fld, label) in enumerate(v.metrics, 1):
        a = {"id": str(i), "enabled": True, "type": agg, "schema": "metric",
             "params": {"customLabel": label} if fld is None else {"field": fld, "customLabel": label}}
        if agg == "last":  # the value of the newest document in the bucket
            a["type"] = "top_hits"
            a["params"].update(aggregate="concat", size=1, sortField="@timestamp", sortOrder="desc")
        aggs.append(a)
    n = len(aggs)
    if v.kind == "bars":
        aggs.append({"id": str(n + 1), "enabled": True, "type": "date_histogram", "schema": "segment",
                     "params": {"field": "@timestamp", "useNormalizedEsInterval": True, "scaleMetricValues": False,
                                "interval": "auto", "drop_partials": False, "min_doc_count": 1,
                                "extended_bounds": {}}})
        if v.split:
            aggs.append(_terms(n + 2, v.split, v.size, "group"))
    elif v.kind in ("table", "pie"):
        schema = "bucket" if v.kind == "table" else "segment"
        for j, fld in enumerate(v.rows):
            aggs.append(_terms(n + 1 + j, fld, v.size, schema))
    return aggs


def _terms(i: int, fld: str, size: int, schema: str) -> dict:
    return {"id": str(i), "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": fld, "orderBy": "1", "order": "desc", "size": size, "otherBucket": False,
                       "otherBucketLabel": "Other", "missingBucket": False, "missingBucketLabel": "Missing"}}


def _params(v: Vis) -> dict:
    if v.kind == "metric":
        return {"addTooltip": True, "addLegend": False, "type": "metric",
                "metric": {"percentageMode": False, "useRanges": False, "colorSchema": "Green to Red",
                           "metricColorMode": "None", "colorsRange": [{"from": 0, "to": 10000}],
                           "labels": {"show": True}, "invertColors": False,
                           "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "",
                                     "fontSize": 48}}}
    if v.kind == "pie":
        return {"type": "pie", "addTooltip": True, "legendDisplay": "show", "legendPosition": "right",
                "isDonut": True, "distinctColors": True, "palette": {"type": "palette", "name": "default"},
                "labels": {"show": True, "values": True, "last_level": True, "truncate": 100}}
    if v.kind == "table":
        return {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
                "totalFunc": "sum", "percentageCol": ""}
    return {"type": "histogram", "grid": {"categoryLines": False},
            "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                              "style": {}, "scale": {"type": "linear"},
                              "labels": {"show": True, "filter": True, "truncate": 100}, "title": {}}],
            "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                           "show": True, "style": {}, "scale": {"type": "linear", "mode": "normal"},
                           "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                           "title": {"text": "Count"}}],
            "seriesParams": [{"show": True, "type": "histogram", "mode": "stacked",
                              "data": {"label": "Count", "id": "1"}, "valueAxis": "ValueAxis-1",
                              "drawLinesBetweenPoints": True, "lineWidth": 2, "showCircles": True}],
            "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [], "addTimeMarker": False,
            "labels": {"show": False}, "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full",
                                                         "color": "#E7664C"},
            "palette": {"type": "palette", "name": "default"}, "isVislibVis": True, "detailedTooltip": True}


def _object(target: str, otype: str, oid: str, attributes: dict, references: list) -> dict:
    o = {"attributes": attributes, "id": oid, "references": references, "type": otype}
    if target == "kibana":
        o["coreMigrationVersion"] = KIBANA_VERSION
        o["migrationVersion"] = {otype: KIBANA_VERSION}
    else:
        o["migrationVersion"] = {otype: OSD_VERSION}
    return o


def _index_ref() -> list:
    return [{"id": DATA_VIEW_ID, "name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern"}]


def _groups_present(fs: FieldSet, requires: tuple) -> bool:
    return all(g in fs.groups for g in requires)


def missing_panels(fs: FieldSet) -> list[tuple[str, str, tuple]]:
    """(dashboard, panel title, missing groups) for every panel left out because a field group is absent."""
    return [(d.title, p.title, tuple(g for g in p.requires if g not in fs.groups))
            for d in DASHBOARDS for p in d.panels if not _groups_present(fs, p.requires)]


def saved_objects(fs: FieldSet, target: str = "kibana") -> list[dict]:
    """The data view, every visualisation and saved search, and the dashboards (target: kibana | opensearch)."""
    dv_attrs = {"title": DATA_VIEW_TITLE, "timeFieldName": "@timestamp",
                "fieldFormatMap": json.dumps({"event.duration": {"id": "duration", "params": {
                    "inputFormat": "nanoseconds", "outputFormat": "humanizePrecise"}}}, sort_keys=True)}
    if target == "kibana":
        dv_attrs["name"] = "otids (logs-otids.*)"
    objs = [_object(target, "index-pattern", DATA_VIEW_ID, dv_attrs, [])]
    dashboards = []
    for d in DASHBOARDS:
        panels, refs = [], []
        x = y = row_h = 0
        for p in d.panels:
            if not _groups_present(fs, p.requires):
                continue
            if x + p.w > 48:
                x, y, row_h = 0, y + row_h, 0
            idx = str(len(panels) + 1)
            otype = "search" if isinstance(p, SavedSearch) else "visualization"
            if isinstance(p, SavedSearch):
                attrs = {"title": p.title, "description": "", "columns": list(p.columns),
                         "sort": [["@timestamp", "desc"]],
                         "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(p.where)}}
            else:
                vis = {"title": p.title, "type": "histogram" if p.kind == "bars" else p.kind,
                       "aggs": _aggs(p), "params": _params(p)}
                attrs = {"title": p.title, "description": "", "uiStateJSON": "{}", "version": 1,
                         "visState": json.dumps(vis, sort_keys=True),
                         "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(p.where)}}
            objs.append(_object(target, otype, p.id, attrs, _index_ref()))
            grid = {"x": x, "y": y, "w": p.w, "h": p.h, "i": idx}
            n = len(refs)
            panels.append({"version": KIBANA_VERSION if target == "kibana" else OSD_VERSION, "gridData": grid,
                           "panelIndex": idx, "embeddableConfig": {}, "panelRefName": f"panel_{n}"})
            refs.append({"id": p.id, "name": f"panel_{n}", "type": otype})
            x += p.w
            row_h = max(row_h, p.h)
        attrs = {"title": d.title, "description": d.description, "panelsJSON": json.dumps(panels, sort_keys=True),
                 "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                            "syncTooltips": False, "hidePanelTitles": False}, sort_keys=True),
                 "timeRestore": False, "version": 1,
                 "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                     {"query": {"query": "", "language": "kuery"}, "filter": []}, sort_keys=True)}}
        dashboards.append(_object(target, "dashboard", d.id, attrs, refs))
    objs += dashboards
    problems = check(objs, fs)
    if problems:
        raise ValueError("Kibana objects do not match the field definitions:\n  " + "\n  ".join(problems))
    return objs


def ndjson(objs: list[dict]) -> str:
    return "".join(json.dumps(o, sort_keys=True, ensure_ascii=False) + "\n" for o in objs)


# ---------------------------------------------------------------------------------------------- checking

_KQL_FIELD = re.compile(r"(?:^|\band\b|\bor\b|\bnot\b|\()\s*([A-Za-z@_][\w.@]*)\s*(?::|>=|<=|>|<)")


def fields_used(obj: dict) -> list[tuple[str, bool]]:
    """(field, must be aggregatable) for every field a saved object refers to."""
    a = obj.get("attributes", {})
    out: list[tuple[str, bool]] = []
    if obj["type"] == "index-pattern":
        out.append((a["timeFieldName"], True))
        for f in json.loads(a.get("fieldFormatMap") or "{}"):
            out.append((f, False))
        return out
    meta = a.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
    if meta:
        q = json.loads(meta).get("query", {}).get("query", "")
        out += [(m, False) for m in _KQL_FIELD.findall(q)]
    if obj["type"] == "visualization":
        for agg in json.loads(a["visState"]).get("aggs", []):
            if "field" in agg.get("params", {}):
                out.append((agg["params"]["field"], True))
    if obj["type"] == "search":
        out += [(c, False) for c in a.get("columns", [])]
        out += [(s[0], True) for s in a.get("sort", [])]
    return out


def check(objs: list[dict], fs: FieldSet) -> list[str]:
    """Every problem: a field the definitions lack (or that cannot be aggregated where a visualisation
    aggregates it), and references that point at no object in the set."""
    problems = []
    ids = {(o["type"], o["id"]) for o in objs}
    for o in objs:
        for f, agg in fields_used(o):
            if f not in fs:
                problems.append(f"{o['type']} {o['id']}: field '{f}' is not defined in ids/data/fields")
            elif agg and not fs.aggregatable(f):
                problems.append(f"{o['type']} {o['id']}: field '{f}' ({fs.resolve(f).type}) cannot be aggregated")
        for r in o.get("references", []):
            if (r["type"], r["id"]) not in ids:
                problems.append(f"{o['type']} {o['id']}: reference {r['name']} -> {r['type']} {r['id']} is missing")
    return problems
