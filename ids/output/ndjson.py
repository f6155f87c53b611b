"""NDJSON sinks: one ECS document per line, byte-identical for the same input and config.

Each document gets a deterministic `event.id` (hash of its content and its position among identical
documents), so a re-run or a replay into a cluster never duplicates. Secrets (MQTT passwords) are
written only by a sink built with include_secrets, which the CLI does only for `mqtt.log_passwords: true`.
"""
from __future__ import annotations

import hashlib
import json

from ..errors import UserError

try:  # orjson: same compact JSON as the json module below, an order of magnitude faster
    import orjson

    def dumps(doc: dict) -> str:
        return orjson.dumps(doc).decode()
except ImportError:  # pragma: no cover - orjson is a declared dependency
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def doc_id(body: str, seq: int) -> str:
    return hashlib.sha256(f"{seq}:{body}".encode()).hexdigest()[:32]


def stamp(doc: dict, seq: int) -> str:
    """Give `doc` its deterministic event.id (`seq`: its 1-based position in its output) and return the
    compact JSON line. Every sink uses this, so a document has the same id in NDJSON and in the cluster.

    Every document starts {"@timestamp":..,"event":{..}: the id is spliced first into event in the text
    rather than encoding the document a second time (and set on the dict for sinks that need it)."""
    body = dumps(doc)
    i = doc_id(body, seq)
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

    def _write(self, doc: dict) -> None:
        self.count += 1
        self.fh.write(stamp(doc, self.count))
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
