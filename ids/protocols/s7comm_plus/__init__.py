"""Siemens S7comm-plus (S7-1200/1500, TIA Portal): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after over ISO-on-TCP; protocol id 0x72 (Wireshark s7comm_plus dissector, Kleinmann & Wool, 'A Statechart-Based Anomaly Detection Model for S7comm-plus').
"""
from __future__ import annotations

from ..framing.tpkt import cotp_data
from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """COTP data TPDU whose payload starts with the S7comm-plus protocol id 0x72 and a version byte."""
    off = cotp_data(buf, 2)
    if off < 0:
        return -1 if off == -1 else 0
    return 1 if buf[off] == 0x72 and buf[off + 1] in (1, 2, 3, 0xFE) else 0


PROTOCOL = ProtocolSpec(name="s7comm_plus", transport="tcp", ports=(102,), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 'engineering_station'}, category="ics",
                        description="Siemens S7comm-plus (S7-1200/1500, TIA Portal)")
