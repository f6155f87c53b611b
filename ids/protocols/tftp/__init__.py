"""Trivial File Transfer Protocol: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 1350 section 5: read/write request (opcode 1/2) with a NUL-terminated file name and mode netascii, octet or mail.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


MODES = (b"netascii", b"octet", b"mail")


def probe(buf: bytes, to_server: bool) -> int:
    """A read or write request naming a file and a mode."""
    if len(buf) < 4 or buf[0] != 0 or buf[1] not in (1, 2):
        return 0
    parts = buf[2:].split(b"\0")
    return 1 if len(parts) >= 3 and parts[0] and parts[1].lower() in MODES else 0


PROTOCOL = ProtocolSpec(name="tftp", transport="udp", ports=(69,), probe=probe, session=None,
                        roles={'server': 'tftp_server', 'client': 'tftp_client'}, category="it",
                        description="Trivial File Transfer Protocol", extra={'it_kind': 'file_sharing'})
