"""Kerberos v5: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 4120 section 5.10 and 7.2.2: APPLICATION tags AS-REQ 10 .. KRB-ERROR 30, over TCP after a 4-byte length.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


TAGS = frozenset((0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x74, 0x75, 0x76, 0x7E))


def _message(buf: bytes) -> bool:
    if len(buf) < 4 or buf[0] not in TAGS:
        return False
    pos = 2 + (buf[1] & 0x7F if buf[1] & 0x80 else 0)
    return pos < len(buf) and buf[pos] == 0x30


def probe(buf: bytes, to_server: bool) -> int:
    """A KDC or application message (over TCP: after its 4-byte record mark)."""
    if _message(buf):
        return 1
    return 1 if len(buf) > 8 and int.from_bytes(buf[:4], "big") == len(buf) - 4 and _message(buf[4:]) else 0


PROTOCOL = ProtocolSpec(name="kerberos", transport="tcp/udp", ports=(88,), probe=probe, session=None,
                        roles={'server': 'kdc', 'client': 'kerberos_client'}, category="it",
                        description="Kerberos v5")
