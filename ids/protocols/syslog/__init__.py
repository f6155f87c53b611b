"""Syslog: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 5424 section 6 and RFC 3164 section 4.1.1: '<PRI>' with PRI 0..191.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A priority value in angle brackets at the start (RFC 6587 octet counting allowed over TCP)."""
    if buf[:1].isdigit():
        sp = buf.find(b" ")
        if 0 < sp <= 5 and buf[:sp].isdigit():
            buf = buf[sp + 1:]
    if len(buf) < 4 or buf[0] != 0x3C:
        return 0
    end = buf.find(b">", 1, 5)
    return 1 if end > 1 and buf[1:end].isdigit() and int(buf[1:end]) <= 191 else 0


PROTOCOL = ProtocolSpec(name="syslog", transport="tcp/udp", ports=(514, 601), probe=probe, session=None,
                        roles={'server': 'syslog_server', 'client': 'syslog_sender'}, category="it",
                        description="Syslog")
