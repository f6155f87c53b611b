"""NetBIOS over TCP/IP (name service 137, datagram 138, session 139): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 1002: NBNS 4.2.1 (DNS-like header, encoded names of 32 bytes), NBDGM 4.4.1 (message types 0x10..0x16), NBSS 4.3.1 (types 0x00, 0x81..0x85).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """An NBNS query/response with one 32-byte encoded name, an NBDGM datagram header, or an NBSS
    session request/response/keepalive."""
    if len(buf) >= 50 and buf[12] == 0x20 and int.from_bytes(buf[4:6], "big") + \
            int.from_bytes(buf[6:8], "big") + int.from_bytes(buf[8:10], "big") + int.from_bytes(buf[10:12], "big") <= 4:
        return 1
    if len(buf) >= 14 and 0x10 <= buf[0] <= 0x16 and buf[1] & 0xF0 == 0:
        return 1 if int.from_bytes(buf[10:12], "big") + 14 <= len(buf) or buf[0] >= 0x13 else 0
    if len(buf) >= 4 and buf[0] in (0x81, 0x82, 0x83, 0x84, 0x85) and buf[1] & 0xFE == 0:
        return 1 if int.from_bytes(buf[2:4], "big") + 4 == len(buf) else 0
    return 0


PROTOCOL = ProtocolSpec(name="netbios", transport="tcp/udp", ports=(137, 138, 139), probe=probe, session=None,
                        roles={'server': 'netbios_server', 'client': 'netbios_client'}, category="it",
                        description="NetBIOS over TCP/IP (name service 137, datagram 138, session 139)", extra={'it_kind': 'file_sharing'})
