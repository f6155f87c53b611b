"""SNMP v1/v2c/v3: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 3416/RFC 3412: BER SEQUENCE, INTEGER version 0/1/3, then the community OCTET STRING (v1, v2c) or the header SEQUENCE (v3).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """The message's BER framing up to the community or v3 header."""
    if len(buf) < 8 or buf[0] != 0x30:
        return 0
    pos = 2
    if buf[1] & 0x80:
        pos = 2 + (buf[1] & 0x7F)
        if pos > 4:
            return 0
    if buf[pos:pos + 2] != b"\x02\x01" or len(buf) < pos + 4:
        return 0
    version, nxt = buf[pos + 2], buf[pos + 3]
    return 1 if (version in (0, 1) and nxt == 0x04) or (version == 3 and nxt == 0x30) else 0


PROTOCOL = ProtocolSpec(name="snmp", transport="udp", ports=(161, 162), probe=probe, session=None,
                        roles={'server': 'snmp_agent', 'client': 'snmp_manager'}, category="it",
                        description="SNMP v1/v2c/v3")
