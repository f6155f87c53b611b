"""Omron FINS over UDP or TCP: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after Omron FINS Commands Reference Manual (W227) section 3: 10-byte header (ICF, RSV 0, GCT, addresses, SID) and command code; FINS/TCP header 'FINS'.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


MRC = frozenset((0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0C, 0x21, 0x22, 0x23, 0x26, 0x27, 0x28))


def probe(buf: bytes, to_server: bool) -> int:
    """FINS/TCP ('FINS' magic) or a FINS frame: ICF with reserved bits 0, RSV 0, gateway count <= 7, a
    known main request code."""
    if buf[:4] == b"FINS":
        return 1
    if len(buf) < 12:
        return -1 if len(buf) < 4 and b"FINS".startswith(buf) else 0
    icf, rsv, gct = buf[0], buf[1], buf[2]
    if icf & 0x3E or not icf & 0x80 or rsv != 0 or gct > 7:
        return 0
    return 1 if buf[10] in MRC else 0


PROTOCOL = ProtocolSpec(name="omron_fins", transport="tcp/udp", ports=(9600,), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 'fins_client'}, category="ics",
                        description="Omron FINS over UDP or TCP")
