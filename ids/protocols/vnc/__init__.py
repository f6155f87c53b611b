"""VNC (Remote Framebuffer): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 6143 section 7.1.1: ProtocolVersion 'RFB 003.00x\\n'.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """The 12-byte ProtocolVersion handshake."""
    if len(buf) < 12:
        return -1 if b"RFB 0".startswith(buf[:5]) else 0
    return 1 if buf[:4] == b"RFB " and buf[7:8] == b"." and buf[11:12] == b"\n" else 0


PROTOCOL = ProtocolSpec(name="vnc", transport="tcp", ports=(5900, 5901), probe=probe, session=None,
                        roles={'server': 'vnc_server', 'client': 'vnc_client'}, category="it",
                        description="VNC (Remote Framebuffer)", extra={'it_kind': 'remote_access'})
