"""HART-IP: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after FieldComm Group HCF_SPEC-085 section 10: 8-byte header (version 1/2, message type 0..3, message id 0..4, status, sequence, byte count).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A HART-IP header whose byte count is the message length."""
    if len(buf) < 8:
        return -1 if not buf or buf[0] in (1, 2) else 0
    if buf[0] not in (1, 2) or buf[1] > 3 or buf[2] > 4:
        return 0
    n = int.from_bytes(buf[6:8], "big")
    return 1 if 8 <= n <= len(buf) else 0


PROTOCOL = ProtocolSpec(name="hart_ip", transport="tcp/udp", ports=(5094,), probe=probe, session=None,
                        roles={'server': 'hart_ip_server', 'client': 'hart_ip_client'}, category="ics",
                        description="HART-IP")
