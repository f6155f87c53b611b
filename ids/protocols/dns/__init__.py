"""Domain Name System: identified, not dissected (ids.flow.identify names the flow in its connection record).

Content probe after RFC 1035 section 4.1: header, question names as labels <= 63 bytes, QCLASS IN/CH/HS/ANY.
"""
from __future__ import annotations

from ..spec import ProtocolSpec


def dns_message(buf: bytes) -> bool:
    """One DNS message: a sane header and a first question whose name, type and class parse."""
    if len(buf) < 17:
        return False
    flags = int.from_bytes(buf[2:4], "big")
    qd = int.from_bytes(buf[4:6], "big")
    an, ns, ar = (int.from_bytes(buf[i:i + 2], "big") for i in (6, 8, 10))
    opcode = (flags >> 11) & 0xF
    if opcode not in (0, 1, 2, 4, 5) or flags & 0x0040 or not 1 <= qd <= 16 or an + ns + ar > 512:
        return False
    pos, labels = 12, 0
    while True:
        if pos >= len(buf):
            return False
        n = buf[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            pos += 2
            break
        if n > 63 or labels > 127:
            return False
        pos += n + 1
        labels += 1
    if pos + 4 > len(buf):
        return False
    qclass = int.from_bytes(buf[pos + 2:pos + 4], "big") & 0x7FFF  # top bit: mDNS unicast response
    return qclass in (1, 3, 4, 255)


def probe(buf: bytes, to_server: bool) -> int:
    """A DNS message (over TCP: after its 2-byte length)."""
    if dns_message(buf):
        return 1
    if len(buf) > 2 and int.from_bytes(buf[:2], "big") == len(buf) - 2 and dns_message(buf[2:]):
        return 1
    return 0


PROTOCOL = ProtocolSpec(name="dns", transport="tcp/udp", ports=(53,), probe=probe, session=None,
                        roles={'server': 'dns_server', 'client': 'dns_client'}, category="it",
                        description="Domain Name System")
