"""What a protocol package declares about itself: one `ProtocolSpec` per package (its `PROTOCOL`), collected
into `ids.protocols.REGISTRY`. The flow table, detectors and outputs learn about a protocol only from here.

Two kinds of protocol share the declaration: dissected ones (a `session` factory that turns bytes into typed
records) and identified ones (name, ports, a content probe and asset roles only: the flow is named in its
connection record, nobody dissects it). Adding a protocol is a folder with `PROTOCOL` plus one line in
`ids/protocols/__init__.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol


class NeedData(Exception):
    """The parser needs `n` more bytes before it can say anything (not an error: reassembly waits)."""

    def __init__(self, n: int = 1):
        super().__init__(n)
        self.n = n


class Malformed(Exception):
    """The bytes cannot be this protocol's message; `reason` becomes an anomaly name on the event."""

    def __init__(self, reason: str, offset: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class Session(Protocol):
    """One flow's protocol state. Emits typed records through the context it was built with."""

    def data(self, to_server: bool, buf: bytes, ts: int) -> None: ...

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None: ...

    def expire(self, now: int) -> None: ...

    def close(self, ts: int) -> None: ...


# probe(buf, to_server) -> 1 this protocol, 0 not this protocol, -1 need more bytes
Probe = Callable[[bytes, bool], int]


@dataclass(frozen=True)
class ProtocolSpec:
    """Everything the rest of otids may know about one protocol.

    name        lower-case protocol name, as written to `network.protocol` (one documented table)
    transport   "tcp", "udp", "tcp/udp" or "ether" (non-IP, by EtherType)
    ports       well-known server ports (port-based identification, lowest priority)
    probe       content check on a flow's first bytes (content-based identification, first priority)
    session     factory(flow, ctx) -> Session for dissected protocols; None for identified-only ones
    roles       asset roles by side: {"server": "plc", "client": "engineering_station"}
    category    "ics" or "it" (for remote-access / file-sharing / IT-into-OT checks)
    extra       a package's further parts (config class, anomaly catalogue, ECS renderer, fields.yml,
                rule keyword table and index field, baseline section, ML feature view, asset identity):
                named slots are added here as the house grows, read by the framework that owns each part
    """

    name: str
    transport: str = "tcp"
    ports: tuple[int, ...] = ()
    probe: Probe | None = None
    session: Callable[..., Any] | None = None
    roles: dict[str, str] = field(default_factory=dict)
    category: str = "ics"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def default_ports(self) -> tuple[int, ...]:  # the wave-1 name, kept while callers move
        return self.ports
