"""Beckhoff ADS/AMS (TwinCAT): identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after Beckhoff ADS specification (infosys.beckhoff.com, TE1000 'ADS'): AMS/TCP header (2 reserved zero bytes, length), 32-byte AMS header with command id 0..9; UDP 48899 discovery magic 0x71146603.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def probe(buf: bytes, to_server: bool) -> int:
    """AMS/TCP: reserved 0, length = AMS header + data, a known command id; or the UDP discovery magic."""
    if buf[:4] == b"\x03\x66\x14\x71":
        return 1
    if len(buf) < 38:
        return -1 if buf[:2] in (b"", b"\0", b"\0\0") else 0
    if buf[:2] != b"\0\0":
        return 0
    n = int.from_bytes(buf[2:6], "little")
    cmd = int.from_bytes(buf[22:24], "little")
    data = int.from_bytes(buf[26:30], "little")
    return 1 if n == 32 + data and cmd <= 9 else 0


PROTOCOL = ProtocolSpec(name="ads", transport="tcp/udp", ports=(48898, 48899), probe=probe, session=None,
                        roles={'server': 'plc', 'client': 'ads_client'}, category="ics",
                        description="Beckhoff ADS/AMS (TwinCAT)")
