"""IEC 61850 MMS (ISO 9506) over ISO-on-TCP: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after ISO 8327 session SPDU after COTP: CONNECT 0x0D, ACCEPT 0x0E, GIVE-TOKENS/DATA 0x01 (IEC 61850-8-1 clause 6).
"""
from __future__ import annotations

from ..framing.tpkt import cotp_data
from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """COTP data TPDU carrying an ISO 8327 session SPDU: CONNECT (0x0D), ACCEPT (0x0E), or GIVE-TOKENS
    (0x01 0x00) followed by DATA TRANSFER (0x01 0x00) as in every MMS PDU after association."""
    off = cotp_data(buf, 4)
    if off < 0:
        return -1 if off == -1 else 0
    spdu = buf[off]
    if spdu in (0x0D, 0x0E) and buf[off + 1] > 0:
        return 1
    return 1 if buf[off:off + 4] == b"\x01\x00\x01\x00" else 0


PROTOCOL = ProtocolSpec(name="mms", transport="tcp", ports=(102,), probe=probe, session=None,
                        roles={'server': 'ied', 'client': 'mms_client'}, category="ics",
                        description="IEC 61850 MMS (ISO 9506) over ISO-on-TCP")
