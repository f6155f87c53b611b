"""Siemens S7comm (S7-300/400 and S7-1200/1500 in compatibility mode): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after over ISO-on-TCP (RFC 1006 TPKT, ISO 8073 COTP); S7 header protocol id 0x32 (Wireshark packet-s7comm.c).
"""
from __future__ import annotations

from ..framing.tpkt import cotp_data
from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """COTP data TPDU whose payload starts with the S7 protocol id 0x32; a connection request or confirm
    (the first exchange) is undecided, since MMS and S7comm-plus start the same way."""
    off = cotp_data(buf, 1)
    if off < 0:
        return -1 if off == -1 else 0
    return 1 if buf[off] == 0x32 and len(buf) >= off + 10 and buf[off + 1] in (1, 2, 3, 7) else 0


PROTOCOL = ProtocolSpec(name="s7comm", transport="tcp", ports=(102,), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 's7comm_client'}, category="ics",
                        description="Siemens S7comm (S7-300/400 and S7-1200/1500 in compatibility mode)")
