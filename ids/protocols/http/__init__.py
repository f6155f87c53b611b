"""HTTP/1.x: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 9112 section 3 and 4: request line 'METHOD target HTTP/1.x', status line 'HTTP/1.x code'.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ", b"PATCH ", b"TRACE ",
           b"PROPFIND ", b"SUBSCRIBE ", b"NOTIFY ", b"M-SEARCH ")


def probe(buf: bytes, to_server: bool) -> int:
    """A request line with a known method and an HTTP/1 version, or a status line."""
    if buf.startswith(b"HTTP/1."):
        return 1
    if not buf.startswith(METHODS):
        return -1 if len(buf) < 8 and any(m.startswith(buf) for m in METHODS + (b"HTTP/1.",)) else 0
    line = buf.split(b"\r\n", 1)
    if len(line) == 1 and len(buf) < 2048:
        return -1
    return 1 if b" HTTP/1." in line[0] else 0


PROTOCOL = ProtocolSpec(name="http", transport="tcp", ports=(80, 8080, 8000, 8008), probe=probe, session=None,
                        roles={'server': 'web_server', 'client': 'http_client'}, category="it",
                        description="HTTP/1.x")
