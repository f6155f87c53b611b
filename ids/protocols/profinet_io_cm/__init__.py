"""PROFINET IO context management (connectionless DCE/RPC on UDP 34964): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after IEC 61158-6-10 clause 4.10: DCE/RPC (C706 chapter 12) with the PNIO interface UUIDs DEA00001..DEA00004-6C97-11D1-8271-00A02442DF7D.
"""
from __future__ import annotations

import uuid

from ..framing.dcerpc import cl_interface
from ..spec import ProtocolSpec


PNIO_INTERFACES = frozenset(uuid.UUID(f"dea0000{i}-6c97-11d1-8271-00a02442df7d") for i in (1, 2, 3, 4))
EPMAP = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")  # endpoint mapper, which PNIO lookups ask


def probe(buf: bytes, to_server: bool) -> int:
    """A connectionless DCE/RPC PDU whose interface is a PNIO one (or the endpoint mapper on 34964)."""
    iface = cl_interface(buf)
    if iface is None:
        return 0
    return 1 if iface in PNIO_INTERFACES else 0


PROTOCOL = ProtocolSpec(name="profinet_io_cm", transport="udp", ports=(34964,), probe=probe, session=None,
                        roles={'server': 'profinet_device', 'client': 'profinet_controller'}, category="ics",
                        description="PROFINET IO context management (connectionless DCE/RPC on UDP 34964)",
                        extra={'refines': 'dcerpc'})
