"""Units and formats every stage shares, defined once: nanosecond time, RFC 3339 timestamps, address text and
the Community ID of a flow. Pure functions with no knowledge of protocols or detection.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from datetime import datetime, timezone
from socket import AF_INET6 as _AF6
from socket import inet_ntoa as _ntoa
from socket import inet_ntop as _ntop

NS = 1_000_000_000  # capture time is an int of nanoseconds since the epoch

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_sec_cache: dict[int, str] = {}


MAX_SEC = 253_402_300_799  # 9999-12-31T23:59:59: past it no datetime exists


def capture_datetime(ts_ns: int) -> datetime:
    """Nanosecond epoch timestamp -> aware UTC datetime, clamped to what datetime can hold (a hostile capture's
    timestamps may lie anywhere in 64 bits: before 1970 is the epoch, past year 9999 its last second)."""
    if ts_ns // 1_000_000_000 >= MAX_SEC:
        return datetime.fromtimestamp(MAX_SEC, timezone.utc).replace(microsecond=999_999)
    if ts_ns < 0:
        return _EPOCH
    return datetime.fromtimestamp(ts_ns / 1_000_000_000, timezone.utc)


def rfc3339(ts_ns: int) -> str:
    """Nanosecond epoch timestamp -> RFC 3339 UTC with microseconds, e.g. 2024-01-31T12:00:00.123456Z."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    if sec > MAX_SEC:  # the last second a datetime can say
        sec, ns = MAX_SEC, 999_999_999
    head = _sec_cache.get(sec)
    if head is None:  # events arrive in time order: the formatted second is reused many times
        if len(_sec_cache) > 4096:
            _sec_cache.clear()
        t = datetime.fromtimestamp(sec, timezone.utc) if sec >= 0 else _EPOCH
        head = _sec_cache[sec] = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{ns // 1000:06d}Z"


_V4_IN_V6 = (b"\x00\x00", b"\xff\xff")  # ::a.b.c.d and ::ffff:a.b.c.d, which the C formatter writes dotted


def ip_text(raw: bytes) -> str:
    # IPv4 and IPv6 through the C formatters (the same text, ~10x faster: every connection record formats
    # two; an IPv6 SYN flood spent a third of its time in ipaddress); ipaddress is the reference
    # (tests/test_units.py compares both) and still formats the IPv4-embedding forms glibc writes dotted
    if len(raw) == 4:
        return _ntoa(raw)
    if raw[:10] == bytes(10) and raw[10:12] in _V4_IN_V6:
        return str(ipaddress.ip_address(raw))
    return _ntop(_AF6, raw)


def mac_text(raw: bytes | None) -> str | None:
    # ECS: MAC addresses in upper case, separated by hyphens.
    return raw.hex("-").upper() if raw else None


def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 (github.com/corelight/community-id-spec) of a flow, endpoint order normalised."""
    if (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    h = hashlib.sha1(struct.pack("!H", seed) + saddr + daddr + struct.pack("!BxHH", proto, sport, dport))
    return "1:" + base64.b64encode(h.digest()).decode()
