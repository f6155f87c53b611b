"""PROFINET RT (cyclic real-time data, alarms, PTCP): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after IEC 61158-6-10: EtherType 0x8892, frame IDs other than DCP (0x8000..0xFBFF cyclic RT, 0xFC01/0xFE01 alarms, 0x0000..0x00FF and 0xFF00..0xFF43 PTCP).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """Any frame ID that is not DCP."""
    if len(buf) < 2:
        return 0
    return 0 if 0xFEFC <= int.from_bytes(buf[:2], "big") <= 0xFEFF else 1


PROTOCOL = ProtocolSpec(name="profinet_rt", transport="ether", ports=(0x8892,), probe=probe, session=None,
                        roles={'server': 'profinet_device', 'client': 'profinet_controller'}, category="ics",
                        description="PROFINET RT (cyclic real-time data, alarms, PTCP)")
