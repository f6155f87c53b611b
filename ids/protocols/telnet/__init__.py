"""Telnet: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 854: IAC (0xFF) followed by an option command WILL/WONT/DO/DONT (0xFB..0xFE).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """Option negotiation at the start of the stream."""
    if len(buf) < 3:
        return -1 if buf[:1] in (b"", b"\xff") else 0
    return 1 if buf[0] == 0xFF and 0xFB <= buf[1] <= 0xFE else 0


PROTOCOL = ProtocolSpec(name="telnet", transport="tcp", ports=(23,), probe=probe, session=None,
                        roles={'server': 'telnet_server', 'client': 'telnet_client'}, category="it",
                        description="Telnet", extra={'it_kind': 'remote_access'})
