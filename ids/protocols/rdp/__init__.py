"""Remote Desktop Protocol: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after MS-RDPBCGR 2.2.1.1: X.224 connection request over TPKT carrying 'Cookie: mstshash=' or an RDP negotiation request (type 0x01, length 8).
"""
from __future__ import annotations

from ..framing.tpkt import COTP_CC, COTP_CR, cotp
from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A connection request or confirm with a cookie or an RDP negotiation structure at its end."""
    c = cotp(buf)
    if c is None:
        return 0
    code, off = c
    if code not in (COTP_CR, COTP_CC):
        return 0
    if b"Cookie: mstshash=" in buf or b"Cookie: msts=" in buf:
        return 1
    tail = buf[-8:]
    return 1 if len(buf) >= 19 and tail[0] in (1, 2, 3) and tail[2:4] == b"\x08\x00" else 0


PROTOCOL = ProtocolSpec(name="rdp", transport="tcp", ports=(3389,), probe=probe, session=None,
                        roles={'server': 'rdp_server', 'client': 'rdp_client'}, category="it",
                        description="Remote Desktop Protocol", extra={'it_kind': 'remote_access'})
