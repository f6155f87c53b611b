"""Disk spool: documents the cluster cannot take now wait here, in size-capped segment files, and are
replayed oldest first (alerts before events) when it is back -- also by the next run after a crash or a
shutdown that ran out of time. Delivery order and retries are the shipper's business (elasticsearch/shipper.py).

What happens at the cap (`spool_max_bytes`, alerts and events together), counted in `dropped`:
  - an event that does not fit is dropped;
  - an alert that does not fit first evicts the oldest event segments (their events are dropped);
  - an alert is dropped only when the spool holds nothing but alerts. It is still in the NDJSON alerts
    file of its run, which `otids es load` ships later with the same _id.

Line format: `stream TAB _id TAB @timestamp TAB document-json NEWLINE`; compact JSON escapes tabs and
newlines, so the split is unambiguous. A torn line (crash mid-write) is skipped and counted in `bad_lines`.
"""
from __future__ import annotations

import fcntl
import os
import threading
from collections import Counter, deque
from dataclasses import dataclass, field

from ..errors import UserError

KINDS = ("alerts", "events")  # replay order


@dataclass
class Segment:
    path: str
    bytes: int = 0
    docs: int = 0
    busy: bool = False  # being replayed: neither appended to nor evicted


@dataclass
class _Queue:
    directory: str
    segments: deque = field(default_factory=deque)
    current: object = None  # open file of the newest segment, or None
    next_seq: int = 1


class Spool:
    def __init__(self, root: str, max_bytes: int, segment_bytes: int = 1 << 20):
        self.root = root
        self.max_bytes = max_bytes
        self.segment_bytes = max(1, min(segment_bytes, max_bytes // 4 or 1))
        self.lock = threading.Lock()
        self.spooled: Counter = Counter()  # documents written this run, per kind
        self.dropped: Counter = Counter()  # documents lost at the cap, per kind
        self.bad_lines = 0
        self.used = 0
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
            self._lockfile = open(os.path.join(root, ".lock"), "a+")
        except OSError as e:
            raise UserError(f"cannot use spool directory {root}: {e.strerror}") from None
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise UserError(f"spool directory {root} is in use by another otids process "
                            f"(give each sensor its own elasticsearch.spool_dir)") from None
        self.queues = {k: _Queue(os.path.join(root, k)) for k in KINDS}
        for q in self.queues.values():
            try:
                os.makedirs(q.directory, mode=0o700, exist_ok=True)
                names = sorted(n for n in os.listdir(q.directory)
                               if n.endswith(".tsv") and n[:-4].isascii() and n[:-4].isdigit())  # int("²") fails
            except OSError as e:  # a file where the alerts/ or events/ directory belongs
                self._lockfile.close()
                raise UserError(f"{q.directory}: cannot use as a spool directory: {e.strerror}") from None
            for n in names:
                p = os.path.join(q.directory, n)
                try:  # a directory or an unreadable file under a segment's name: say which, not a traceback
                    with open(p, "rb") as fh:
                        data = fh.read()
                except OSError as e:
                    self._lockfile.close()
                    raise UserError(f"{p}: cannot read spool segment: {e.strerror}") from None
                q.segments.append(Segment(p, len(data), data.count(b"\n")))
                self.used += len(data)
                q.next_seq = int(n[:-4]) + 1

    # ------------------------------------------------------------------ writing (any thread)
    def append(self, kind: str, items) -> int:
        """Write (stream, _id, @timestamp, json) items of one kind; returns how many were kept."""
        kept = 0
        with self.lock:
            q = self.queues[kind]
            for stream, did, ts, line in items:
                raw = f"{stream}\t{did}\t{ts}\t{line}\n".encode()
                if self.used + len(raw) > self.max_bytes and not self._make_room(kind, len(raw)):
                    self.dropped[kind] += 1
                    continue
                seg = self._writable(q)
                q.current.write(raw)
                seg.bytes += len(raw)
                seg.docs += 1
                self.used += len(raw)
                self.spooled[kind] += 1
                kept += 1
            if q.current is not None:
                q.current.flush()
        return kept

    def _make_room(self, kind: str, need: int) -> bool:
        if kind != "alerts":
            return False
        ev = self.queues["events"]
        while self.used + need > self.max_bytes:
            victim = next((s for s in ev.segments if not s.busy), None)
            if victim is None:
                return False
            if ev.current is not None and victim is ev.segments[-1]:
                ev.current.close()
                ev.current = None
            ev.segments.remove(victim)
            self._unlink(victim.path)
            self.used -= victim.bytes
            self.dropped["events"] += victim.docs
        return True

    def _writable(self, q: _Queue) -> Segment:
        seg = q.segments[-1] if q.segments else None
        if q.current is None or seg is None or seg.busy or seg.bytes >= self.segment_bytes:
            if q.current is not None:
                q.current.close()
            path = os.path.join(q.directory, f"{q.next_seq:012d}.tsv")
            q.next_seq += 1
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            q.current = os.fdopen(fd, "ab")
            seg = Segment(path)
            q.segments.append(seg)
        return seg

    # ------------------------------------------------------------------ replay (shipper thread)
    def take(self) -> tuple[str, Segment, list] | None:
        """The oldest segment (alerts first), closed for appending, with its parsed items."""
        with self.lock:
            for kind in KINDS:
                q = self.queues[kind]
                if not q.segments:
                    continue
                seg = q.segments[0]
                if seg is q.segments[-1] and q.current is not None:
                    q.current.close()
                    q.current = None
                seg.busy = True
                break
            else:
                return None
        items = []
        with open(seg.path, "rb") as fh:
            for raw in fh:
                parts = raw.decode("utf-8", "replace").rstrip("\n").split("\t", 3) if raw.endswith(b"\n") else ()
                if len(parts) != 4:
                    self.bad_lines += 1
                    continue
                items.append(tuple(parts))
        return kind, seg, items

    def done(self, kind: str, seg: Segment, remaining: list) -> None:
        """Replay of `seg` finished; `remaining` items (not delivered) stay for the next attempt."""
        with self.lock:
            q = self.queues[kind]
            if not remaining:
                q.segments.remove(seg)
                self._unlink(seg.path)
                self.used -= seg.bytes
                return
            data = b"".join(f"{s}\t{d}\t{t}\t{j}\n".encode() for s, d, t, j in remaining)
            tmp = seg.path + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, seg.path)
            self.used += len(data) - seg.bytes
            seg.bytes, seg.docs, seg.busy = len(data), len(remaining), False

    # ------------------------------------------------------------------ state
    def pending(self) -> Counter:
        with self.lock:
            return Counter({k: sum(s.docs for s in q.segments) for k, q in self.queues.items()})

    def __bool__(self) -> bool:
        return any(q.segments for q in self.queues.values())

    def close(self) -> None:
        with self.lock:
            for q in self.queues.values():
                if q.current is not None:
                    q.current.close()
                    q.current = None
            try:
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            finally:
                self._lockfile.close()

    @staticmethod
    def _unlink(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
