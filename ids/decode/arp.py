"""ARP (RFC 826) over Ethernet for IPv4: one fixed header, one unpack. Anything else (other hardware or
protocol types, short frames) is None: the frame still counts in its Ethernet conversation."""
from __future__ import annotations

import struct

_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen op sha spa tha tpa (28 bytes)


def parse_arp(buf: bytes) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """(op, sender MAC, sender IP, target MAC, target IP) from an Ethernet/IPv4 ARP body, else None."""
    if len(buf) < 28:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    return op, sha, spa, tha, tpa
