"""Protocols: one package per protocol (consts, parser, session), registered here by name.

A protocol offers `name`, `default_ports`, `probe(buf, to_server) -> 1 yes / 0 no / -1 need more bytes`,
and `session(flow, table)` returning an object with `data(to_server, bytes, ts)`, `gap(to_server, ts,
nbytes)`, `expire(now)` and `close(ts)`. Sessions emit ids.events records through `table.emit`; nothing
after a session touches bytes.
"""
from __future__ import annotations

from .modbus import MODBUS
from .opcua import OPCUA

PROTOCOLS = {p.name: p for p in (MODBUS, OPCUA)}

__all__ = ["PROTOCOLS"]
