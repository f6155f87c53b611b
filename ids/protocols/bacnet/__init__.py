"""BACnet/IP: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after ANSI/ASHRAE 135 Annex J: BVLC type 0x81, function 0x00..0x0C, length = datagram length.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A BACnet Virtual Link Control header whose length is the datagram's."""
    if len(buf) < 4:
        return 0
    return 1 if buf[0] == 0x81 and buf[1] <= 0x0C and int.from_bytes(buf[2:4], "big") == len(buf) else 0


PROTOCOL = ProtocolSpec(name="bacnet", transport="udp", ports=(47808,), probe=probe, session=None,
                        roles={'server': 'bacnet_device', 'client': 'bacnet_client'}, category="ics",
                        description="BACnet/IP")
