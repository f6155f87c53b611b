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

#: Identified-only protocols (name, ports, content probe, roles; no dissector): one line each. The flow table
#: names unclaimed flows with them (ids.flow.identify); names are listed in docs/IDENTIFICATION.md.
IDENTIFIED_PACKAGES = (
    "s7comm",
    "s7comm_plus",
    "mms",
    "dnp3",
    "iec104",
    "enip",
    "cip_io",
    "bacnet",
    "profinet_dcp",
    "profinet_rt",
    "profinet_io_cm",
    "omron_fins",
    "melsec",
    "hart_ip",
    "ads",
    "opc_da",
    "dcerpc",
    "smb",
    "netbios",
    "rdp",
    "ssh",
    "telnet",
    "ftp",
    "tftp",
    "http",
    "dns",
    "mdns",
    "llmnr",
    "dhcp",
    "ntp",
    "snmp",
    "syslog",
    "ldap",
    "kerberos",
    "vnc",
)


def identified() -> dict:
    """name -> ProtocolSpec of every identified-only protocol package, in IDENTIFIED_PACKAGES order."""
    import importlib
    specs = (importlib.import_module(f"{__name__}.{n}").PROTOCOL for n in IDENTIFIED_PACKAGES)
    return {s.name: s for s in specs}


REGISTRY: dict[str, ProtocolSpec] = {p.name: p for p in _SPECS}
REGISTRY.update(identified())
DISSECTED: dict[str, ProtocolSpec] = {n: p for n, p in REGISTRY.items() if p.session is not None}


def by_record_type() -> dict[type, ProtocolSpec]:
    """Record class -> the spec of the protocol that emits it (for detectors dispatching on `type(ev)`)."""
    return {t: p for p in REGISTRY.values() for t in p.records}


__all__ = ["REGISTRY", "DISSECTED", "IDENTIFIED_PACKAGES", "ProtocolSpec", "by_record_type", "identified"]
