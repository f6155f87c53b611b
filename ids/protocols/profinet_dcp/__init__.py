"""PROFINET DCP (discovery and basic configuration): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after IEC 61158-6-10: EtherType 0x8892, frame IDs 0xFEFC hello, 0xFEFD get/set, 0xFEFE identify request, 0xFEFF identify response.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """The frame ID after the EtherType is a DCP one; buf is the frame from the EtherType on."""
    if len(buf) < 2:
        return 0
    return 1 if 0xFEFC <= int.from_bytes(buf[:2], "big") <= 0xFEFF else 0


PROTOCOL = ProtocolSpec(name="profinet_dcp", transport="ether", ports=(0x8892,), probe=probe, session=None,
                        roles={'server': 'profinet_device', 'client': 'profinet_dcp_client'}, category="ics",
                        description="PROFINET DCP (discovery and basic configuration)")
