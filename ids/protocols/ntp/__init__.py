"""Network Time Protocol: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 5905 section 7.3: 48-byte header, version 1..4, mode 1..5 (plus extension fields or a MAC).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A 48-byte NTP header (optionally followed by a key id and digest) with a valid version and mode."""
    if len(buf) not in (48, 52, 68, 72, 120):
        return 0
    vn, mode = (buf[0] >> 3) & 7, buf[0] & 7
    return 1 if 1 <= vn <= 4 and 1 <= mode <= 5 and buf[1] <= 16 else 0


PROTOCOL = ProtocolSpec(name="ntp", transport="udp", ports=(123,), probe=probe, session=None,
                        roles={'server': 'ntp_server', 'client': 'ntp_client'}, category="it",
                        description="Network Time Protocol")
