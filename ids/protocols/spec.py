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

from ..errors import MalformedPdu, NeedData  # noqa: F401  (re-exported for protocol packages)


# "Need more bytes" is not "malformed": reassembly waits on the one and resynchronises on the other. Defined
# once in ids/errors.py; these are the names a protocol package uses.
Malformed = MalformedPdu


class Session(Protocol):
    """One flow's protocol state. Emits typed records through the context it was built with."""

    def data(self, to_server: bool, buf: bytes, ts: int) -> None: ...

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None: ...

    def expire(self, now: int) -> None: ...

    def close(self, ts: int) -> None: ...


# probe(buf, to_server) -> 1 this protocol, 0 not this protocol, -1 need more bytes
Probe = Callable[[bytes, bool], int]


@dataclass(frozen=True)
class AnomalyCatalogue:
    """The anomaly names a protocol puts on its records, and which alert (Zeek: each protocol declares its
    notice types). Read by ids.detect.anomaly, which knows no protocol itself.

    title    how alert reasons name the protocol ("Modbus", "OPC UA")
    rules    ids.detect.api.RuleInfo of every alert the catalogue can raise
    known    every anomaly name the protocol emits, alerted or not; any other name still alerts (low)
    named    anomaly name -> rule id, for the default check: one alert per name that has a rule
    what     ev -> text naming the exchange in the default check's reason (default: the record's label)
    checker  detector -> (ev -> alerts | None), replacing the default check where a protocol needs more
             (grouped names, floods, rates); it calls the detector's `fire`, `flood` and `named`
    """

    title: str
    rules: tuple = ()
    known: frozenset = frozenset()
    named: dict[str, str] = field(default_factory=dict)
    what: Callable[[Any], str] | None = None
    checker: Callable[[Any], Callable[[Any], Any]] | None = None


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
    description one line for docs and `otids` listings

    The parts of a dissected protocol (None or empty for identified-only ones; every framework that reads a
    part skips a spec without it):
    records     the typed record classes its session emits (messages.py); `protocol` and `dataset` on each
    dataset     the `event.dataset` of its records ("otids.<name>")
    config      the frozen dataclass of its config section, named after the protocol (config.py)
    anomalies   its AnomalyCatalogue (anomalies.py)
    fields      path of its fields.yml: the document fields it writes, from which the rule field table,
                Elasticsearch mappings and docs/FIELDS.md are generated
    rules       its rule keyword table (rules.py: index field, value domains, secret fields), or None when
                rules cannot name the protocol
    identity    ev -> [(side, fact, value)]: asset identity facts from one record (assets.py), for the
                inventory and the baseline's assets section
    extra       further parts by key: "ml" (ml.py: the ML feature view, registered by ids/detect/ml/adapters.py),
                "baseline" (baseline.py: the baseline section, learner and enforcer, read by
                ids/detect/baseline/protocols.py)
    """

    name: str
    transport: str = "tcp"
    ports: tuple[int, ...] = ()
    probe: Probe | None = None
    session: Callable[..., Any] | None = None
    roles: dict[str, str] = field(default_factory=dict)
    category: str = "ics"
    description: str = ""
    records: tuple[type, ...] = ()
    dataset: str | None = None
    config: type | None = None
    anomalies: AnomalyCatalogue | None = None
    fields: str | None = None
    rules: Any = None
    identity: Callable[[Any], list] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dissected(self) -> bool:
        return self.session is not None

    @property
    def default_ports(self) -> tuple[int, ...]:  # the wave-1 name, kept while callers move
        return self.ports


#: What a rule reader returns when the document has no such field.
MISSING = object()

#: Readers of the flow fields every protocol's documents carry (for RuleTable.readers).
FLOW_READERS: dict[str, Callable[[Any], Any]] = {
    "event.dataset": lambda e: e.dataset,
    "source.ip": lambda e: e.flow.client_ip,
    "destination.ip": lambda e: e.flow.server_ip,
    "source.port": lambda e: e.flow.client_port,
    "destination.port": lambda e: e.flow.server_port,
}


@dataclass(frozen=True)
class RuleTable:
    """What the rule engine needs to know about one protocol (Suricata: a protocol's detect keywords). The
    fields rules may name come from the protocol's fields.yml; this adds what a field list cannot say.

    index_field   the document field the engine indexes the protocol's rules by
    multi_key     the index field holds several keys per event (all of an MQTT exchange's message types)
    index_keys    (field, op, arg, values, nocase) -> the index keys a condition can only match, or None;
                  `values` are the condition's plain values (lists resolved), None when a list is unknown
    prefix_keys   field -> the index keys any condition on that field implies (mqtt.publish.* -> publish)
    domains       {field: (min, max)} of integer fields, for the never-matches check
    secret_fields fields documents carry only when written with secrets (rules on them are refused)
    single_valued fields that hold one value per event (an `equals` on two values of one never matches)
    readers       {field: record -> value}: typed fast paths, each returning exactly what the document holds at
                  that path (MISSING where it has none), so common rule fields cost no ECS document
    """

    index_field: str
    multi_key: bool = False
    index_keys: Callable[..., Any] | None = None
    prefix_keys: Callable[[str], Any] | None = None
    domains: dict[str, tuple[int, int]] = field(default_factory=dict)
    secret_fields: frozenset = frozenset()
    single_valued: frozenset = frozenset()
    readers: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
