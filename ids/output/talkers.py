"""Rows of the summary's top-talkers table: client, server, protocol and service (transport/port, or the
EtherType of a non-IP conversation) for every flow kind. The flow table keeps the counts (FlowTable.talkers)."""
from __future__ import annotations

from ..events import ip_text, mac_text
from ..flow.connlog import transport_name

ETHER = 256


def _addr(raw: bytes) -> str:
    return mac_text(raw) if len(raw) == 6 else ip_text(raw)


def service(proto: int, port) -> str:
    if proto == ETHER:
        return f"ether/0x{port or 0:04x}"
    if proto in (6, 17):
        return f"{transport_name(proto)}/{port}"
    if proto in (1, 58):
        return f"{transport_name(proto)}/type {port}"
    return transport_name(proto)


def talker_rows(talkers: dict, n: int = 10) -> list[tuple[str, ...]]:
    """The `n` busiest (client, server, protocol, transport, port) keys by packets, as text rows."""
    top = sorted(talkers.items(), key=lambda x: (-x[1][1], x[0]))[:n]
    return [(_addr(ci), _addr(si), app or "-", service(proto, port), f"{fl:,}", f"{pk:,}", f"{by:,}")
            for (ci, si, app, proto, port), (fl, pk, by) in top]
