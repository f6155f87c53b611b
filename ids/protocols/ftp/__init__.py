"""File Transfer Protocol (control connection): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 959 section 4: client commands (USER, AUTH from RFC 4217, FEAT from RFC 2389), server greeting 220 naming FTP.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


COMMANDS = (b"USER ", b"AUTH TLS", b"AUTH SSL", b"FEAT\r\n", b"SYST\r\n", b"OPTS UTF8")


def probe(buf: bytes, to_server: bool) -> int:
    """A client login/feature command, or a 220 greeting that says FTP."""
    if to_server:
        if buf.upper().startswith(COMMANDS):
            return 1
        return -1 if len(buf) < 9 and any(c.startswith(buf.upper()) for c in COMMANDS) else 0
    if len(buf) < 4:
        return -1 if b"220".startswith(buf[:3]) else 0
    if buf[:3] != b"220" or buf[3:4] not in (b" ", b"-"):
        return 0
    line = buf.split(b"\n", 1)[0].lower()
    return 1 if b"ftp" in line else -1


PROTOCOL = ProtocolSpec(name="ftp", transport="tcp", ports=(21,), probe=probe, session=None,
                        roles={'server': 'ftp_server', 'client': 'ftp_client'}, category="it",
                        description="File Transfer Protocol (control connection)", extra={'it_kind': 'file_sharing'})
