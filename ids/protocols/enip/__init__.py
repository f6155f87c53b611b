"""EtherNet/IP encapsulation (explicit messaging, CIP over TCP/UDP 44818): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after ODVA CIP Volume 2 (EtherNet/IP adaptation) chapter 2: 24-byte encapsulation header.
"""
from __future__ import annotations

import struct

from ..spec import ProtocolSpec


COMMANDS = frozenset((0x0000, 0x0004, 0x0063, 0x0064, 0x0065, 0x0066, 0x006F, 0x0070, 0x0072, 0x0073))
# ListServices, ListIdentity, ListInterfaces: the request is the header alone (Vol. 2 2-4.2, 2-4.3, 2-4.4).
LIST_REQUESTS = frozenset((0x0004, 0x0063, 0x0064))
_HDR = struct.Struct("<HHIIQI")  # command, length, session handle, status, sender context, options


def probe(buf: bytes, to_server: bool) -> int:
    """A known encapsulation command, options 0 (Vol. 2 2-3.6); a List request is the bare header, followed
    by nothing or by another encapsulation header. A connectionless DCE/RPC request with a nil object UUID
    (version 4, ptype 0: the same first two bytes as ListServices) has its flags where the length is and
    56 more header bytes after 24: it is not taken for ListServices."""
    if len(buf) < 24:
        return -1 if len(buf) < 2 or int.from_bytes(buf[:2], "little") in COMMANDS else 0
    cmd, length, _sess, status, _ctx, options = _HDR.unpack_from(buf)
    if cmd not in COMMANDS or options != 0 or length > 65511 or status > 0xFF:
        return 0
    if to_server and cmd in LIST_REQUESTS and (length or (len(buf) > 24 and probe(buf[24:48], True) <= 0)):
        return 0
    return 1


PROTOCOL = ProtocolSpec(name="enip", transport="tcp/udp", ports=(44818,), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 'enip_scanner'}, category="ics",
                        description="EtherNet/IP encapsulation (explicit messaging, CIP over TCP/UDP 44818)")
