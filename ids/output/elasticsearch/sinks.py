"""What the pipeline sees of the Elasticsearch output: an alert sink and an event sink in front of one
shipper. Each document gets the same deterministic id as in the NDJSON files (ndjson.stamp), then what a
cluster reader needs and a file does not (cluster_fields): which sensor (observer.*, host.*), the ECS
version, the data stream, and for alerts a `message` that titles them in Elastic Security. The cluster's
ingest pipeline (esgen.PIPELINE) adds event.ingested on arrival."""
from __future__ import annotations

import socket

from ... import __version__
from ..esgen import stream_name
from ..ndjson import Occurrences, dumps, stamp
from .settings import display_url
from .shipper import Shipper

#: ECS release whose field definitions the documents follow (ids/data/fields/ecs.yml).
ECS_VERSION = "8.17.0"


def sensor_identity(name: str | None = None) -> dict:
    """observer.* and host.* of this sensor. host.* is the machine running otids, as Elastic Agent's
    integrations set it; observer.* says it is an otids IDS (ECS: the observer of network traffic)."""
    hostname = socket.gethostname()
    return {"observer": {"hostname": hostname, "name": name or hostname, "type": "ids", "vendor": "otids",
                         "product": "otids", "version": __version__},
            "host": {"name": name or hostname, "hostname": hostname}}


def cluster_fields(doc: dict, dataset: str, namespace: str, identity: dict | None) -> dict:
    """Add the cluster-only fields to `doc` (already stamped with its id) and return it."""
    doc["ecs"] = {"version": ECS_VERSION}
    doc["data_stream"] = {"type": "logs", "dataset": dataset, "namespace": namespace}
    if identity:
        obs = doc.get("observer")
        doc["observer"] = {**identity["observer"], **obs} if isinstance(obs, dict) else dict(identity["observer"])
        doc["host"] = dict(identity["host"])
    ev = doc.get("event", {})
    if ev.get("kind") == "alert" and "message" not in doc:
        rule = doc.get("rule")
        rule = (rule.get("name") if isinstance(rule, dict) else None) or "otids alert"
        doc["message"] = f"{rule}: {ev['reason']}" if ev.get("reason") else rule
    return doc


class _Sink:
    """What the pipeline sees: write_*(), close(), count and a `path` line for the summary."""

    kind = "?"

    def __init__(self, shipper: Shipper, namespace: str, sensor_name: str | None = None):
        self.shipper = shipper
        self.namespace = namespace
        self.count = 0
        self.ids = Occurrences()
        self.identity = sensor_identity(sensor_name)

    def _put(self, doc: dict, dataset: str) -> None:
        self.count += 1
        ts = doc["@timestamp"]
        stamp(doc, self.ids)  # the NDJSON id, from the document as the files hold it
        line = dumps(cluster_fields(doc, dataset, self.namespace, self.identity))
        self.shipper.put(self.kind, stream_name(dataset, self.namespace), doc["event"]["id"], ts, line)

    def close(self) -> None:
        self.shipper.close()

    def reload(self, config) -> None:
        """SIGHUP (otids live): re-read rotated credentials (the two sinks share one shipper)."""
        self.shipper.reload(config.elasticsearch)

    @property
    def failure(self) -> str | None:
        """After close(): one line when documents did not reach the cluster (the CLI exits non-zero)."""
        return self.shipper.failure() if self.shipper.closed else None

    @property
    def path(self) -> str:
        target = (f"logs-otids.alert-{self.namespace}" if self.kind == "alerts"
                  else f"logs-otids.<protocol>-{self.namespace}")
        s = f"{display_url(self.shipper.url)} {target}"
        if self.shipper.closed:
            s += f" ({self.shipper.summary(self.kind)})"
        return s


class AlertSink(_Sink):
    kind = "alerts"

    def write_alert(self, alert) -> None:
        self._put(alert.to_doc(), "otids.alert")


class EventSink(_Sink):
    kind = "events"

    def write_event(self, ev) -> None:
        self._put(ev.to_doc(), ev.dataset)
