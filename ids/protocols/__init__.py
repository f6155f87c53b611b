"""Protocols: one package per protocol (consts, parser, session), registered here by name.

A protocol offers `name`, `default_ports`, `probe(buf, to_server) -> 1 yes / 0 no / -1 need more bytes`,
and `session(flow, table)` returning an object with `data(to_server, bytes, ts)`, `gap(to_server, ts,
nbytes)`, `expire(now)` and `close(ts)`. Sessions emit ids.events records through `table.emit`; nothing
after a session touches bytes.
"""
from __future__ import annotations

from .modbus import MODBUS
from .mqtt import MQTT
from .opcua import OPCUA
from .tls import TLS

PROTOCOLS = {p.name: p for p in (MODBUS, OPCUA, MQTT, TLS)}

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


__all__ = ["PROTOCOLS", "IDENTIFIED_PACKAGES", "identified"]
