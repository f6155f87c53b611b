"""DNP3 (IEEE 1815) over TCP or UDP: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after IEEE 1815-2012 clause 9.2: link header 0x0564, length >= 5, CRC-16/DNP over the first 8 bytes.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def _crc(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
    return ~crc & 0xFFFF


def probe(buf: bytes, to_server: bool) -> int:
    """A link-layer frame: start 0x05 0x64, length >= 5, and the header CRC right."""
    if len(buf) < 10:
        return -1 if b"\x05\x64".startswith(buf[:2]) else 0
    if buf[0] != 0x05 or buf[1] != 0x64 or buf[2] < 5:
        return 0
    return 1 if _crc(buf[:8]) == int.from_bytes(buf[8:10], "little") else 0


PROTOCOL = ProtocolSpec(name="dnp3", transport="tcp/udp", ports=(20000,), probe=probe, session=None,
                        roles={'server': 'outstation', 'client': 'dnp3_master'}, category="ics",
                        description="DNP3 (IEEE 1815) over TCP or UDP")
