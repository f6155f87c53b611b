"""What the pipeline sees of the Elasticsearch output: an alert sink and an event sink in front of one
shipper; each document gets the same deterministic id as in the NDJSON files (ndjson.stamp)."""
from __future__ import annotations

from ..esgen import stream_name
from ..ndjson import stamp
from .settings import display_url
from .shipper import Shipper


class _Sink:
    """What the pipeline sees: write_*(), close(), count and a `path` line for the summary."""

    kind = "?"

    def __init__(self, shipper: Shipper, namespace: str):
        self.shipper = shipper
        self.namespace = namespace
        self.count = 0

    def _put(self, doc: dict, dataset: str) -> None:
        self.count += 1
        ts = doc["@timestamp"]
        line = stamp(doc, self.count)
        self.shipper.put(self.kind, stream_name(dataset, self.namespace), doc["event"]["id"], ts, line)

    def close(self) -> None:
        self.shipper.close()

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

