"""NDJSON sinks: one ECS document per line, byte-identical for the same input and config.

Each document gets a deterministic `event.id` derived from its content only (its time, flow, rule or
exchange: everything it says) and, for documents that say exactly the same thing, its position among those
identical ones -- never from its position in the run. So any re-run of the same traffic, alone or with
other captures, gives the same ids, and a cluster stores it once. Secrets (MQTT passwords) are
written only by a sink built with include_secrets, which the CLI does only for `mqtt.log_passwords: true`.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

from ..errors import UserError

try:  # orjson: same compact JSON as the json module below, an order of magnitude faster
    import orjson

    def dumps(doc: dict) -> str:
        return orjson.dumps(doc).decode()
except ImportError:  # pragma: no cover - orjson is a declared dependency
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def doc_id(body: str, occurrence: int = 1) -> str:
    """Id of the `occurrence`-th document (1-based) whose compact JSON, without event.id, is `body`."""
    digest = hashlib.sha256(body.encode()).digest()
    return _id(digest, occurrence)


def _id(digest: bytes, occurrence: int) -> str:
    if occurrence == 1:
        return digest.hex()[:32]
    return hashlib.sha256(digest + b"#%d" % occurrence).hexdigest()[:32]


class Occurrences:
    """Numbers identical documents 1, 2, ... so that each keeps a distinct id. Identical documents (same
    microsecond, same flow, same everything) are written close together; the last `window` distinct ones
    are remembered, which bounds memory on a live sensor."""

    def __init__(self, window: int = 1 << 17):
        self.window = window
        self.seen: OrderedDict = OrderedDict()

    def id_for(self, body: str) -> str:
        digest = hashlib.sha256(body.encode()).digest()
        n = self.seen.pop(digest, 0) + 1
        self.seen[digest] = n
        if len(self.seen) > self.window:
            self.seen.popitem(last=False)
        return _id(digest, n)


def stamp(doc: dict, seen: Occurrences | int | None = None) -> str:
    """Give `doc` its deterministic event.id and return the compact JSON line. `seen` is the sink's
    Occurrences (or a fixed occurrence number). Every sink uses this, so a document has the same id in
    NDJSON and in the cluster.

    Every document starts {"@timestamp":..,"event":{..}: the id is spliced first into event in the text
    rather than encoding the document a second time (and set on the dict for sinks that need it)."""
    body = dumps(doc)
    i = seen.id_for(body) if isinstance(seen, Occurrences) else doc_id(body, seen or 1)
    doc["event"]["id"] = i
    return body.replace('"event":{', f'"event":{{"id":"{i}",', 1)


class NdjsonSink:
    def __init__(self, path: str, kind: str, include_secrets: bool = False):
        self.path = path
        self.kind = kind  # "alerts" or "events"
        # Events that carry secrets (`has_secrets`: MQTT passwords) write them only when the config says so.
        self.include_secrets = include_secrets
        try:
            self.fh = open(path, "w", encoding="utf-8", buffering=1 << 20)
        except OSError as e:
            raise UserError(f"cannot write {kind} file {path}: {e.strerror}") from None
        self.count = 0
        self.ids = Occurrences()

    def _write(self, doc: dict) -> None:
        self.count += 1
        self.fh.write(stamp(doc, self.ids))
        self.fh.write("\n")

    def write_alert(self, alert) -> None:
        self._write(alert.to_doc())

    def write_event(self, ev) -> None:
        if self.include_secrets and getattr(ev, "has_secrets", False):
            self._write(ev.to_doc(include_secrets=True))
        else:
            self._write(ev.to_doc())

    def flush(self) -> None:
        """Push buffered documents to the file (a live sensor does this every second)."""
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
