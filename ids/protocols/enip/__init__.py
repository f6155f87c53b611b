"""EtherNet/IP encapsulation (explicit messaging, CIP over TCP/UDP 44818): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after ODVA CIP Volume 2 (EtherNet/IP adaptation) chapter 2: 24-byte encapsulation header.
"""
from __future__ import annotations

import struct

from ..spec import ProtocolSpec


COMMANDS = frozenset((0x0000, 0x0004, 0x0063, 0x0064, 0x0065, 0x0066, 0x006F, 0x0070, 0x0072, 0x0073))
_HDR = struct.Struct("<HHIIQI")  # command, length, session handle, status, sender context, options


def probe(buf: bytes, to_server: bool) -> int:
    """A known encapsulation command whose length field fits what follows, options 0 (Vol. 2 2-3.6)."""
    if len(buf) < 24:
        return -1 if len(buf) < 2 or int.from_bytes(buf[:2], "little") in COMMANDS else 0
    cmd, length, _sess, status, _ctx, options = _HDR.unpack_from(buf)
    if cmd not in COMMANDS or options != 0 or length > 65511 or status > 0xFF:
        return 0
    return 1


PROTOCOL = ProtocolSpec(name="enip", transport="tcp/udp", ports=(44818,), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 'enip_scanner'}, category="ics",
                        description="EtherNet/IP encapsulation (explicit messaging, CIP over TCP/UDP 44818)")
