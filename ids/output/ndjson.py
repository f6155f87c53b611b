"""NDJSON sinks: one ECS document per line, byte-identical for the same input and config.

Each document gets a deterministic `event.id` (hash of its content and its position among identical
documents), so a re-run or a replay into a cluster never duplicates. Secrets never reach this stage: the
parsers leave them out of the events.
"""
from __future__ import annotations

import hashlib
import json

from ..errors import UserError

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def doc_id(body: str, seq: int) -> str:
    return hashlib.sha256(f"{seq}:{body}".encode()).hexdigest()[:32]


class NdjsonSink:
    def __init__(self, path: str, kind: str):
        self.path = path
        self.kind = kind  # "alerts" or "events"
        try:
            self.fh = open(path, "w", encoding="utf-8", buffering=1 << 20)
        except OSError as e:
            raise UserError(f"cannot write {kind} file {path}: {e.strerror}") from None
        self.count = 0

    def _write(self, doc: dict) -> None:
        self.count += 1
        body = _dumps(doc)
        doc["event"]["id"] = doc_id(body, self.count)
        self.fh.write(_dumps(doc))
        self.fh.write("\n")

    def write_alert(self, alert) -> None:
        self._write(alert.to_doc())

    def write_event(self, ev) -> None:
        self._write(ev.to_doc())

    def flush(self) -> None:
        """Push buffered documents to the file (a live sensor does this every second)."""
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
