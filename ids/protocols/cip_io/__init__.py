"""CIP implicit I/O (EtherNet/IP class 0/1 connected data over UDP 2222): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after ODVA CIP Volume 2 chapter 2-6: Common Packet Format with a sequenced address item (0x8002) and a connected data item (0x00B1).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """Common Packet Format: 2 items, sequenced address item (type 0x8002, length 8), then connected data
    item (type 0x00B1) whose length fits the datagram."""
    if len(buf) < 18:
        return 0
    count = int.from_bytes(buf[0:2], "little")
    t1, l1 = int.from_bytes(buf[2:4], "little"), int.from_bytes(buf[4:6], "little")
    if count != 2 or t1 != 0x8002 or l1 != 8:
        return 0
    t2, l2 = int.from_bytes(buf[14:16], "little"), int.from_bytes(buf[16:18], "little")
    return 1 if t2 == 0x00B1 and 18 + l2 == len(buf) else 0


PROTOCOL = ProtocolSpec(name="cip_io", transport="udp", ports=(2222,), probe=probe, session=None,
                        roles={'server': 'io_adapter', 'client': 'io_scanner'}, category="ics",
                        description="CIP implicit I/O (EtherNet/IP class 0/1 connected data over UDP 2222)")
