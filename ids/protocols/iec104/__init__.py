"""IEC 60870-5-104: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after IEC 60870-5-104 clause 5: APCI start 0x68, APDU length 4..253, control field I, S or U format.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


U_FUNCTIONS = (0x07, 0x0B, 0x13, 0x23, 0x43, 0x83)  # STARTDT/STOPDT/TESTFR act and con (clause 5.3)


def probe(buf: bytes, to_server: bool) -> int:
    """One APDU: 0x68, length 4..253, a U frame with one function bit, an S frame, or an I frame long
    enough for an ASDU."""
    if len(buf) < 6:
        return -1 if buf[:1] in (b"", b"\x68") else 0
    if buf[0] != 0x68 or not 4 <= buf[1] <= 253:
        return 0
    c1 = buf[2]
    if c1 & 3 == 3:
        return 1 if buf[1] == 4 and c1 in U_FUNCTIONS and buf[3:6] == b"\0\0\0" else 0
    if c1 & 3 == 1:
        return 1 if buf[1] == 4 and c1 == 1 and buf[3] == 0 else 0
    return 1 if buf[1] >= 10 and len(buf) >= 8 else 0


PROTOCOL = ProtocolSpec(name="iec104", transport="tcp", ports=(2404,), probe=probe, session=None,
                        roles={'server': 'rtu', 'client': 'scada_master'}, category="ics",
                        description="IEC 60870-5-104")
