"""DHCP (BOOTP): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 2131 section 2 and RFC 1497: op 1/2, hardware type/length, magic cookie 99.130.83.99 at offset 236.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A BOOTP message carrying the DHCP magic cookie."""
    if len(buf) < 240:
        return 0
    return 1 if buf[0] in (1, 2) and buf[236:240] == b"\x63\x82\x53\x63" else 0


PROTOCOL = ProtocolSpec(name="dhcp", transport="udp", ports=(67, 68), probe=probe, session=None,
                        roles={'server': 'dhcp_server', 'client': 'dhcp_client'}, category="it",
                        description="DHCP (BOOTP)")
