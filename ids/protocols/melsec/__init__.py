"""Mitsubishi MELSEC communication (MC protocol 3E/4E frames; MELSOFT discovery): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after Mitsubishi MELSEC Communication Protocol Reference Manual (SH-080008) chapter 3: 3E subheader 0x5000/0xD000, 4E 0x5400/0xD400, request destination I/O 0x03FF, data length; MELSOFT discovery on UDP 5560 as captured in the ITI corpus (request 0x5A 00 00 01, response 0xDA 00 00 01).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A 3E or 4E frame whose data length field is what follows, or a MELSOFT discovery datagram."""
    if buf[:4] in (b"\x5a\x00\x00\x01", b"\xda\x00\x00\x01"):
        return 1
    if len(buf) < 11:
        return 0
    if buf[:2] in (b"\x50\x00", b"\xd0\x00"):
        off = 2
    elif buf[:2] in (b"\x54\x00", b"\xd4\x00") and len(buf) >= 15 and buf[4:6] == b"\0\0":
        off = 6
    else:
        return 0
    if buf[off + 2:off + 4] != b"\xff\x03":
        return 0
    return 1 if int.from_bytes(buf[off + 5:off + 7], "little") == len(buf) - off - 7 else 0


PROTOCOL = ProtocolSpec(name="melsec", transport="tcp/udp", ports=(5000, 5001, 5002, 5006, 5007, 5560), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 'melsec_client'}, category="ics",
                        description="Mitsubishi MELSEC communication (MC protocol 3E/4E frames; MELSOFT discovery)")
