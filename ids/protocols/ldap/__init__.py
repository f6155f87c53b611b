"""LDAP and CLDAP: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 4511 section 4.1.1: LDAPMessage SEQUENCE, messageID INTEGER, protocolOp [APPLICATION 0..25].
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """An LDAPMessage: SEQUENCE, INTEGER messageID (1..4 bytes), then an application-class protocolOp."""
    if len(buf) < 7 or buf[0] != 0x30:
        return 0
    pos = 2
    if buf[1] & 0x80:
        pos = 2 + (buf[1] & 0x7F)
        if pos > 6:
            return 0
    if len(buf) < pos + 3 or buf[pos] != 0x02 or not 1 <= buf[pos + 1] <= 4:
        return 0
    op = pos + 2 + buf[pos + 1]
    if op >= len(buf):
        return 0
    tag = buf[op]
    return 1 if 0x60 <= tag <= 0x79 or tag in (0x42, 0x4A, 0x50) else 0


PROTOCOL = ProtocolSpec(name="ldap", transport="tcp/udp", ports=(389, 3268), probe=probe, session=None,
                        roles={'server': 'directory_server', 'client': 'ldap_client'}, category="it",
                        description="LDAP and CLDAP")
