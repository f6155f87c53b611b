"""ids.units' address formatting against the reference formatters: IPv4 through the C formatter must print
what `ipaddress` prints, and MAC addresses what the per-byte upper-case form printed."""
from __future__ import annotations

import ipaddress
import random

from ids.units import ip_text, mac_text


def test_ipv4_text_is_ipaddress_text():
    rnd = random.Random(4)
    cases = [bytes(4), b"\xff" * 4, b"\x0a\x00\x00\x01", b"\x01\x02\x03\x04"] + [rnd.randbytes(4) for _ in range(20_000)]
    for raw in cases:
        assert ip_text(raw) == str(ipaddress.ip_address(raw)), raw


def test_ipv6_text_is_ipaddress_text():
    rnd = random.Random(6)
    cases = [bytes(16), b"\xff" * 16, bytes(10) + b"\xff\xff\x0a\x00\x00\x01", b"\xfe\x80" + bytes(13) + b"\x01"]
    cases += [bytes(rnd.choice((0, 0, rnd.getrandbits(8))) for _ in range(16)) for _ in range(5_000)]
    # the IPv4-embedding forms (glibc writes them dotted, ipaddress does not) and zero runs of every length
    cases += [bytes(12) + rnd.randbytes(4) for _ in range(200)] + [bytes(10) + b"\xff\xff" + rnd.randbytes(4)
                                                                  for _ in range(200)]
    cases += [bytes(k) + rnd.randbytes(16 - k) for k in range(17)] + [rnd.randbytes(16 - k) + bytes(k) for k in range(17)]
    for raw in cases:
        assert ip_text(raw) == str(ipaddress.ip_address(raw)), raw


def test_mac_text_is_upper_case_with_hyphens():
    rnd = random.Random(8)
    for raw in [bytes(6), b"\xff" * 6] + [rnd.randbytes(6) for _ in range(5_000)]:
        assert mac_text(raw) == "-".join(f"{b:02X}" for b in raw)
    assert mac_text(None) is None and mac_text(b"") is None
