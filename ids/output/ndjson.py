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
from ..errors import UserError
from ..flow import budget
from ..flow.budget import trim_oldest

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


#: What the occurrence window may hold, in bytes (tests/test_bounds_state.py holds it to tracemalloc). It was
#: 131,072 digests in an OrderedDict, ~27 MB when full (a flood of distinct alerts fills it): now a plain dict
#: keyed by 128 bits of the digest (an int: 48 bytes) with a count, at OCCURRENCE_BYTES each.
OCCURRENCES_BYTES = 8 << 20
#: One remembered document: the int key and its slot in a dict that is also popped from (the slots the pops
#: leave empty are reclaimed at the dict's next resize; measured at its worst, right before that).
OCCURRENCE_BYTES = 120


class Occurrences:
    """Numbers identical documents 1, 2, ... so that each keeps a distinct id. Identical documents (same
    microsecond, same flow, same everything) are written close together; the last distinct ones are
    remembered, within `max_bytes` (the oldest eighth forgotten at once when full), which bounds memory on a
    live sensor and under a flood of alerts. Keys are 128 bits of the document's digest: two distinct
    documents within the window share a key with a probability of about n^2 / 2^129."""

    def __init__(self, max_bytes: int = OCCURRENCES_BYTES):
        self.window = max(16, max_bytes // OCCURRENCE_BYTES)
        self.seen: dict[int, int] = {}

    def id_for(self, body: str) -> str:
        digest = hashlib.sha256(body.encode()).digest()
        key = int.from_bytes(digest[:16], "little")
        seen = self.seen
        n = seen.pop(key, 0) + 1  # moved to the end: the window forgets what has not recurred for longest
        seen[key] = n
        if n == 1:
            if len(seen) > self.window:
                trim_oldest(seen, self.window)
            elif budget.SHARED is not None and len(seen) > 16 and not budget.SHARED.hold(
                    "output.ids", len(seen) * OCCURRENCE_BYTES, self.window * OCCURRENCE_BYTES):
                trim_oldest(seen, len(seen))  # over its share of limits.memory_total: an eighth
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
    """Documents to an NDJSON file. The file is written under a temporary name and renamed into place by
    close(); abort() leaves the previous file as it was (a run that analysed nothing, or was interrupted).
    `atomic=True` is what `analyze` asks for; without it the file is written in place (a live sensor's files
    are read while it runs).

    A write error (full disk) stops writing but not the run: `error` holds one line naming the file, and
    alerts not written are kept and spooled to the state directory at close (events are only counted)."""

    BATCH = 1 << 20  # characters buffered before a write

    def __init__(self, path: str, kind: str, include_secrets: bool = False, atomic: bool = False):
        from .safefile import OutputFile
        self.path = path
        self.kind = kind  # "alerts" or "events"
        # Events that carry secrets (`has_secrets`: MQTT passwords) write them only when the config says so.
        self.include_secrets = include_secrets
        try:
            self.out = OutputFile(path, direct=not atomic)
        except OSError as e:
            raise UserError(f"cannot write {kind} file {path}: {e.strerror}") from None
        self.seq = 0  # documents emitted
        self.ids = Occurrences()  # event.id from content, numbered among identical documents
        self.count = 0  # documents written to the file
        self.error: str | None = None
        self.unwritten: list[str] = []  # alerts that did not reach the file
        self.spooled: str | None = None
        self._buf: list[str] = []
        self._size = 0

    def _write(self, doc: dict) -> None:
        self.seq += 1
        line = stamp(doc, self.ids)
        if self.error is not None:
            if self.kind == "alerts":
                self.unwritten.append(line)
            return
        self._buf.append(line)
        self._size += len(line)
        if self._size >= self.BATCH:
            self._drain()

    def _drain(self) -> None:
        buf, self._buf, self._size = self._buf, [], 0
        if not buf or self.error is not None:
            return
        try:
            self.out.write("\n".join(buf) + "\n")
            self.out.flush()
            self.count += len(buf)
        except OSError as e:
            self._failed(e, buf)

    def _failed(self, e: OSError, buf: list[str]) -> None:
        self.error = f"{self.path}: cannot write {self.kind}: {e.strerror or e}"
        if self.kind != "alerts":
            return
        done: list[str] = []
        if self.out.tmp is not None and self.count:  # the temporary file will not become the output
            try:
                with open(self.out.tmp, encoding="utf-8") as fh:
                    done = fh.read().splitlines()[:self.count]
            except OSError:
                pass
            self.count = 0
        self.unwritten[:0] = done + buf

    def write_alert(self, alert) -> None:
        self._write(alert.to_doc())

    def write_event(self, ev) -> None:
        if self.include_secrets and getattr(ev, "has_secrets", False):
            self._write(ev.to_doc(include_secrets=True))
        else:
            self._write(ev.to_doc())

    def flush(self) -> None:
        """Push buffered documents to the file (a live sensor does this every second)."""
        self._drain()

    def close(self) -> None:
        """The run completed: write what is buffered and put the file in place."""
        self._drain()
        if self.error is None:
            try:
                self.out.commit()
            except OSError as e:
                self._failed(e, [])
                self.out.discard()
        else:
            self.out.discard()
        self._report()

    def abort(self, keep_partial: bool = False) -> None:
        """The run did not complete: leave the previous file as it was. With keep_partial, alerts already
        written are kept beside it as FILE.incomplete (reported in `error`)."""
        self._drain()
        if keep_partial and self.kind == "alerts" and self.count and self.error is None:
            if self.out.keep_as(self.path + ".incomplete"):
                self.error = (f"{self.path}: run incomplete, file left as it was; {self.count} alert(s) kept in "
                              f"{self.path}.incomplete")
                return
        self.out.discard()
        self.count = 0

    def _report(self) -> None:
        if self.error is None:
            return
        if self.kind == "alerts":
            from .safefile import spool_lines
            lost = self.unwritten
            if lost:
                self.spooled = spool_lines(lost, "alerts")
                self.error += (f"; {len(lost)} alert(s) not written, kept in {self.spooled}" if self.spooled else
                               f"; {len(lost)} alert(s) not written and could not be spooled")
        else:
            self.error += f"; {self.seq - self.count} of {self.seq} event document(s) not written"
