"""Protocols: one package per protocol, each declaring itself once as `PROTOCOL` (a ProtocolSpec, spec.py).

`REGISTRY` maps every protocol's name to its spec; a new protocol is a folder plus one line below.
Dissected protocols (a `session` factory: bytes -> typed records) are `DISSECTED`; identified-only ones
declare name, transport, ports, probe, roles and category only. Frameworks read the parts they own from the
specs (config sections, anomaly catalogues, fields.yml, rule keyword tables) and skip specs without them.
"""
from __future__ import annotations

from .spec import ProtocolSpec

from .modbus import PROTOCOL as _modbus
from .opcua import PROTOCOL as _opcua
from .mqtt import PROTOCOL as _mqtt
from .tls import PROTOCOL as _tls

_SPECS: tuple[ProtocolSpec, ...] = (
    _modbus,
    _opcua,
    _mqtt,
    _tls,
)

REGISTRY: dict[str, ProtocolSpec] = {p.name: p for p in _SPECS}
DISSECTED: dict[str, ProtocolSpec] = {n: p for n, p in REGISTRY.items() if p.session is not None}


def by_record_type() -> dict[type, ProtocolSpec]:
    """Record class -> the spec of the protocol that emits it (for detectors dispatching on `type(ev)`)."""
    return {t: p for p in REGISTRY.values() for t in p.records}


__all__ = ["REGISTRY", "DISSECTED", "ProtocolSpec", "by_record_type"]
