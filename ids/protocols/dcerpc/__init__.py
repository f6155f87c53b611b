"""DCE/RPC and MS-RPC (endpoint mapper on 135, dynamic ports): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after The Open Group C706 chapter 12: connection-oriented PDU header (version 5.0/5.1, ptype 0..20, fragment length).
"""
from __future__ import annotations

from ..framing.dcerpc import cl_interface, co_header
from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """A connection-oriented (TCP) or connectionless (UDP) DCE/RPC header."""
    if len(buf) < 16:
        return -1 if buf[:1] in (b"", b"\x05") and buf[1:2] in (b"", b"\x00", b"\x01") else 0
    if co_header(buf) is not None:
        return 1
    return 1 if cl_interface(buf) is not None else 0


PROTOCOL = ProtocolSpec(name="dcerpc", transport="tcp/udp", ports=(135,), probe=probe, session=None,
                        roles={'server': 'rpc_server', 'client': 'rpc_client'}, category="it",
                        description="DCE/RPC and MS-RPC (endpoint mapper on 135, dynamic ports)")
