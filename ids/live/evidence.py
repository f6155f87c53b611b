"""Evidence for responders: the last N MB of captured frames kept in memory and written, when an alert
fires, as a pcapng file (one interface block per capture interface, nanosecond timestamps) with a JSON
file beside it holding the alerts it documents.

The file is written `after` seconds past the first alert, so it shows what led up to the alert and what
followed; alerts in that window share the file. Memory is bounded by the configured size (frame bytes
plus bookkeeping), disk by the number of files kept. Nothing reaches the disk without an alert.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections import deque

from ..errors import UserError
from ..events import rfc3339

OVERHEAD = 120  # bytes of bookkeeping per kept frame (tuple, bytes header, deque slot), counted in the bound
MAX_ALERTS_PER_FILE = 1000


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


class EvidenceRing:
    """An alert sink: `add()` every frame; alerts schedule a file; `poll(now)` writes it when due."""

    def __init__(self, max_bytes: int, directory: str, after_s: int, max_files: int,
                 interfaces: list[tuple[str, int, int]]):
        self.max_bytes = max_bytes
        self.dir = directory
        self.after = after_s * 1_000_000_000
        self.max_files = max_files
        self.interfaces = interfaces  # (name, linktype, snaplen), index = interface id in the file
        self.frames: deque = deque()
        self.size = 0
        self.due: int | None = None
        self.alerts: list = []
        self.count = 0
        self.path = directory
        try:
            os.makedirs(directory, exist_ok=True)
            # files of earlier runs count against max_files too, oldest first
            old = sorted((e for e in os.scandir(directory) if e.name.startswith("otids-") and e.name.endswith(".pcapng")),
                         key=lambda e: e.stat().st_mtime)
        except OSError as e:
            raise UserError(f"live.evidence_dir {directory}: {e.strerror}") from None
        self.written = [e.path[:-len(".pcapng")] for e in old]

    def check_writable(self) -> None:
        """After dropping privileges: the service user must be able to write here."""
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise UserError(f"live.evidence_dir {self.dir}: not writable by uid {os.getuid()}")

    def add(self, ts: int, iface: int, data: bytes) -> None:
        frames = self.frames
        frames.append((ts, iface, data))
        self.size += len(data) + OVERHEAD
        while self.size > self.max_bytes and frames:
            self.size -= len(frames.popleft()[2]) + OVERHEAD

    # ------------------------------------------------------------------ alert sink
    def write_alert(self, alert) -> None:
        if self.due is None:
            self.due = time.time_ns() + self.after
        if len(self.alerts) < MAX_ALERTS_PER_FILE:
            self.alerts.append(alert)

    def write_event(self, ev) -> None:  # pragma: no cover - only registered as an alert sink
        pass

    def poll(self, now: int) -> str | None:
        if self.due is not None and now >= self.due:
            return self.dump()
        return None

    def dump(self) -> str | None:
        alerts, self.alerts, self.due = self.alerts, [], None
        if not alerts:
            return None
        first = alerts[0]
        stamp = rfc3339(first.ts).replace(":", "").replace("-", "")
        base = os.path.join(self.dir, f"otids-{stamp}-{first.rule_id}")
        n = 1
        while os.path.exists(base + ".pcapng"):
            n += 1
            base = os.path.join(self.dir, f"otids-{stamp}-{first.rule_id}-{n}")
        tmp = base + ".pcapng.part"
        with open(tmp, "wb") as fh:
            fh.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                            + _opt(4, b"otids live sensor") + _opt(0, b"")))
            for name, lt, snap in self.interfaces:
                fh.write(_block(1, struct.pack("<HHI", lt, 0, snap) + _opt(2, name.encode())
                                + _opt(9, b"\x09") + _opt(0, b"")))
            pack = struct.Struct("<IIIII").pack
            for ts, iface, data in list(self.frames):
                n = len(data)
                fh.write(_block(6, pack(iface, ts >> 32, ts & 0xFFFFFFFF, n, n) + data + b"\0" * (-n % 4)))
        os.replace(tmp, base + ".pcapng")
        with open(base + ".json", "w", encoding="utf-8") as fh:
            json.dump({"pcap": os.path.basename(base + ".pcapng"), "frames": len(self.frames),
                       "alerts": [a.to_doc() for a in alerts]}, fh, indent=1)
        self.count += 1
        self.written.append(base)
        while len(self.written) > self.max_files:
            old = self.written.pop(0)
            for ext in (".pcapng", ".json"):
                try:
                    os.remove(old + ext)
                except OSError:
                    pass
        return base + ".pcapng"

    def close(self) -> None:
        if self.alerts:
            try:
                self.dump()
            except OSError as e:
                print(f"otids live: evidence: cannot write to {self.dir}: {e.strerror or e}", file=sys.stderr)
