"""SMB 1/2/3 (Windows file sharing) over TCP 445 or NetBIOS session 139: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after MS-SMB2 2.2.1 (0xFE 'SMB'), MS-SMB2 2.2.41 transform header (0xFD 'SMB'), MS-CIFS 2.2.3.1 (0xFF 'SMB'), after the 4-byte direct-TCP / NetBIOS session header (RFC 1002 4.3.1).
"""
from __future__ import annotations

from ..spec import ProtocolSpec


MAGICS = (b"\xffSMB", b"\xfeSMB", b"\xfdSMB", b"\xfcSMB")


def probe(buf: bytes, to_server: bool) -> int:
    """A session message (type 0) whose payload starts with an SMB1, SMB2/3 or transform magic."""
    if len(buf) < 8:
        return -1 if buf[:1] in (b"", b"\0") else 0
    return 1 if buf[0] == 0 and buf[4:8] in MAGICS else 0


PROTOCOL = ProtocolSpec(name="smb", transport="tcp", ports=(445, 139), probe=probe, session=None,
                        roles={'server': 'file_server', 'client': 'smb_client'}, category="it",
                        description="SMB 1/2/3 (Windows file sharing) over TCP 445 or NetBIOS session 139", extra={'it_kind': 'file_sharing'})
