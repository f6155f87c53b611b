"""DCE/RPC headers (C706, chapter 12): connection-oriented (version 5) and connectionless (version 4), and the
interface UUIDs a bind or request names, for the probes of DCE/RPC, OPC DA (DCOM) and PROFINET IO CM."""
from __future__ import annotations

import uuid


def co_header(buf: bytes) -> int | None:
    """Connection-oriented PDU type (C706 12.6.3.1: version 5, minor 0 or 1, ptype 0..20), else None."""
    if len(buf) < 16 or buf[0] != 5 or buf[1] > 1 or buf[2] > 20:
        return None
    little = bool(buf[4] & 0x10)
    flen = int.from_bytes(buf[8:10], "little" if little else "big")
    if flen < 16:
        return None
    return buf[2]


def cl_interface(buf: bytes) -> uuid.UUID | None:
    """Connectionless PDU (C706 12.5.3.1: version 4, ptype 0..10): its interface UUID, else None."""
    if len(buf) < 80 or buf[0] != 4 or buf[1] > 10:
        return None
    raw = buf[24:40]
    return uuid.UUID(bytes_le=raw) if buf[4] & 0x10 else uuid.UUID(bytes=raw)


def uuid_in(buf: bytes, uuids: frozenset[bytes]) -> bool:
    """True when one of `uuids` (given as little-endian wire bytes) appears anywhere in `buf`: a bind's
    context items, a request's object UUID or a DCOM activation's CLSID."""
    return any(u in buf for u in uuids)


def le_bytes(*uuids: str) -> frozenset[bytes]:
    return frozenset(uuid.UUID(u).bytes_le for u in uuids)
