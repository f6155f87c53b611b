"""Ground truth for `otids eval`: attack labels by time range and hosts, or per packet.

Time-range CSV (what pcaps/ml/make_ml_captures.py writes):
    start,end,src,dst,attack[,note]
    2025-03-03T12:05:00.000000Z,2025-03-03T12:05:32.000000Z,127.0.0.66,127.0.0.12,fc_scan,...
start/end: RFC 3339 (Z or an offset) or epoch seconds; src/dst: an IP or * (any). A window is an attack
window when its pair matches the hosts (either direction) and its longest window overlaps [start, end].

Per-packet CSV: `frame,attack` (frames numbered from 1 across the captures in the order given, as one
capture) or `file,frame,attack` (frames numbered per file, file by name); frames not listed, and attack
values "", "benign", "normal" or "0", are benign. Consecutive attack packets of one attack type and host
pair less than a minute apart become one attack instance.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ...errors import UserError

NS = 1_000_000_000
BENIGN = frozenset(("", "benign", "normal", "0"))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
GAP_NS = 60 * NS  # packets further apart start a new instance


@dataclass(frozen=True)
class Label:
    start: int  # ns
    end: int  # ns
    src: str | None  # None: any host
    dst: str | None
    attack: str
    note: str
    where: str  # file:line it came from

    def matches(self, client: str, server: str) -> bool:
        s, d = self.src, self.dst
        return ((s is None or s == client) and (d is None or d == server)) or \
               ((s is None or s == server) and (d is None or d == client))


def parse_time(text: str) -> int:
    t = text.strip()
    try:
        return round(float(t) * NS)
    except ValueError:
        pass
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


def load_labels(path: str, pcaps: list[str]) -> list[Label]:
    reader = None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            rows = list(reader)
    except OSError as e:
        raise UserError(f"{path}: cannot read labels: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 CSV file") from None
    except csv.Error as e:  # a field past the csv module's limit (128 KiB)
        raise UserError(f"{path}:{reader.line_num if reader else 1}: not a labels CSV file ({e})") from None
    if not rows:
        raise UserError(f"{path}:1: empty labels file (expected a header: start,end,src,dst,attack or frame,attack)")
    head = [h.strip().lower() for h in rows[0]]
    if "start" in head and "end" in head:
        return _ranges(path, head, rows[1:])
    if "frame" in head and "attack" in head:
        return _packets(path, head, rows[1:], pcaps)
    raise UserError(f"{path}:1: unknown header {','.join(rows[0])!r} (expected start,end,src,dst,attack or "
                    f"[file,]frame,attack)")


def _ranges(path: str, head: list[str], rows: list[list[str]]) -> list[Label]:
    for need in ("attack",):
        if need not in head:
            raise UserError(f"{path}:1: the header has no '{need}' column")
    col = {h: i for i, h in enumerate(head)}
    out = []
    for n, r in enumerate(rows, start=2):
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) < len(head) - ("note" in col):
            raise UserError(f"{path}:{n}: {len(r)} columns, the header has {len(head)}")

        def get(k, default=""):
            i = col.get(k)
            return r[i].strip() if i is not None and i < len(r) else default
        try:
            start, end = parse_time(get("start")), parse_time(get("end"))
        except (ValueError, OverflowError) as e:  # OverflowError: inf, 1e400 seconds
            raise UserError(f"{path}:{n}: bad time ({e}); use RFC 3339 or epoch seconds") from None
        if end < start:
            raise UserError(f"{path}:{n}: end before start")
        attack = get("attack")
        if attack.lower() in BENIGN:
            continue
        src, dst = get("src", "*"), get("dst", "*")
        out.append(Label(start, end, None if src in ("*", "") else src, None if dst in ("*", "") else dst, attack,
                         get("note"), f"{path}:{n}"))
    return out


def _packets(path: str, head: list[str], rows: list[list[str]], pcaps: list[str]) -> list[Label]:
    from ...capture import open_capture
    from ...decode import Decoder
    from ...events import ip_text

    col = {h: i for i, h in enumerate(head)}
    per_file = "file" in col
    want: dict[tuple, tuple[str, str]] = {}  # (file or None, frame) -> (attack, where)
    for n, r in enumerate(rows, start=2):
        if not r or all(not c.strip() for c in r):
            continue
        try:
            frame = int(r[col["frame"]])
            attack = r[col["attack"]].strip()
            fname = os.path.basename(r[col["file"]].strip()) if per_file else None
        except (ValueError, IndexError):
            raise UserError(f"{path}:{n}: expected {','.join(head)}") from None
        if frame < 1:
            raise UserError(f"{path}:{n}: frame numbers start at 1")
        if attack.lower() not in BENIGN:
            want[(fname, frame)] = (attack, f"{path}:{n}")
    hits = []  # (ts, attack, src, dst, where)
    total = 0
    dec = Decoder("off")
    for p in pcaps:
        name = os.path.basename(p)
        with open_capture(p) as reader:
            for i, (ts, lt, data) in enumerate(reader.packets(), start=1):
                total += 1
                key = (name, i) if per_file else (None, total)
                lab = want.pop(key, None)
                if lab is None:
                    continue
                pk = dec.decode(ts, lt, data)
                if pk is None:
                    continue
                hits.append((ts, lab[0], ip_text(pk.src), ip_text(pk.dst), lab[1]))
    if want:
        (fname, frame), (_, where) = next(iter(want.items()))
        raise UserError(f"{where}: frame {frame}{' of ' + fname if fname else ''} is not in the captures "
                        f"({total} frames)")
    hits.sort()
    open_: dict[tuple, list] = {}
    out = []
    for ts, attack, s, d, where in hits:
        key = (attack, min(s, d), max(s, d))
        cur = open_.get(key)
        if cur is not None and ts - cur[1] <= GAP_NS:
            cur[1] = ts
            continue
        if cur is not None:
            out.append(Label(cur[0], cur[1], key[1], key[2], attack, "", cur[2]))
        open_[key] = [ts, ts, where]
    for key, cur in open_.items():
        out.append(Label(cur[0], cur[1], key[1], key[2], key[0], "", cur[2]))
    out.sort(key=lambda lb: (lb.start, lb.attack))
    return out
