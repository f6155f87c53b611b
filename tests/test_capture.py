"""Capture readers and link-layer decoding: pcap in both byte orders and resolutions, pcapng with several
interfaces and link types, gzip, and damaged files (packets before the damage kept, then one error naming
the byte offset)."""
from __future__ import annotations

import gzip

import pytest

from craft import (MAC_A, TcpConv, eth, ip4, ip6, ipv4, ipv6, mbap, sll, sll2, tcp, udp, write_pcap,
                   write_pcapng)
from ids.capture import open_capture
from ids.decode import Decoder
from ids.errors import CaptureError
from ids.pipeline import analyze

T0 = 1_700_000_000_123_456_789


def _frames(n=3):
    c = ip4("10.0.0.1")
    s = ip4("10.0.0.2")
    return [(T0 + i * 1000, eth(ipv4(c, s, 6, tcp(c, s, 40000 + i, 502, 1)))) for i in range(n)]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, endian, nanos):
    p = tmp_path / "x.pcap"
    write_pcap(p, _frames(), endian=endian, nanos=nanos)
    with open_capture(str(p)) as r:
        pk = list(r.packets())
    assert [x[2] for x in pk] == [f for _, f in _frames()]
    want = [T0 + i * 1000 for i in range(3)]
    if not nanos:  # microsecond files keep microseconds
        want = [w // 1000 * 1000 for w in want]
    assert [x[0] for x in pk] == want
    assert {x[1] for x in pk} == {1}


def test_pcapng_several_interfaces_link_types_and_resolutions(tmp_path):
    c, s = ip4("10.0.0.1"), ip4("10.0.0.2")
    l3 = ipv4(c, s, 6, tcp(c, s, 1234, 502, 1))
    p = tmp_path / "x.pcapng"
    # iface 0: Ethernet, default µs; iface 1: raw IP, ns (tsresol 9); iface 2: SLL2, 2^-10 s
    write_pcapng(p, [(1, None), (101, 9), (276, 0x8A)],
                 [(0, 1_700_000_000_000_001, eth(l3)), (1, 1_700_000_000_000_000_002, l3),
                  (2, 1024 * 1_700_000_000 + 512, sll2(l3))])
    with open_capture(str(p)) as r:
        pk = list(r.packets())
    assert [(ts, lt) for ts, lt, _ in pk] == [(1_700_000_000_000_001_000, 1), (1_700_000_000_000_000_002, 101),
                                             (1_700_000_000_500_000_000, 276)]
    d = Decoder("on")
    decoded = [d.decode(*x) for x in pk]
    assert all(x is not None and x.dport == 502 and not x.bad_checksum for x in decoded)
    assert decoded[2].src_mac == MAC_A


def test_pcapng_big_endian(tmp_path):
    p = tmp_path / "be.pcapng"
    write_pcapng(p, [(1, None)], [(0, 5, f) for _, f in _frames(2)], endian=">")
    with open_capture(str(p)) as r:
        assert len(list(r.packets())) == 2


def test_gzip_capture(tmp_path):
    p = tmp_path / "x.pcap"
    write_pcap(p, _frames())
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    with open_capture(str(gz)) as r:
        assert len(list(r.packets())) == 3


def test_link_types_vlan_qinq_sll_raw_null(tmp_path):
    c, s = ip4("10.0.0.1"), ip4("10.0.0.2")
    l3 = ipv4(c, s, 6, tcp(c, s, 1234, 502, 1))
    d = Decoder("on")
    p = d.decode(0, 1, eth(l3, vlans=(10,)))
    assert p.vlan == (10,) and p.dport == 502
    p = d.decode(0, 1, eth(l3, vlans=(100, 20)))
    assert p.vlan == (100, 20)
    assert d.decode(0, 113, sll(l3)).src_mac == MAC_A
    assert d.decode(0, 276, sll2(l3)).sport == 1234
    assert d.decode(0, 101, l3).dport == 502
    assert d.decode(0, 0, b"\x02\0\0\0" + l3).dport == 502  # BSD loopback, little-endian family
    assert d.decode(0, 147, l3) is None and d.stats.linktype_unknown == 1


def test_vlan_stack_depth_is_bounded():
    """Eight 802.1Q/802.1ad tags decode; a ninth makes the frame malformed (counted, not decoded). Every
    distinct stack of a crafted 200-tag flood was a flow key of its own: 388 MB and 12 CPU s for 200,000
    frames before the cap, 45 MB and 1 s after."""
    c, s = ip4("10.0.0.1"), ip4("10.0.0.2")
    l3 = ipv4(c, s, 6, tcp(c, s, 1234, 502, 1))
    d = Decoder("on")
    p = d.decode(0, 1, eth(l3, vlans=tuple(range(1, 9))))
    assert p.vlan == tuple(range(1, 9)) and p.dport == 502
    assert d.decode(0, 1, eth(l3, vlans=tuple(range(1, 10)))) is None
    assert d.stats.malformed == 1


def test_truncated_pcap_keeps_packets_before_damage(tmp_path):
    p = tmp_path / "t.pcap"
    write_pcap(p, _frames(3))
    raw = p.read_bytes()
    p.write_bytes(raw[:-10])  # cut the last record short
    r = open_capture(str(p))
    got = []
    with pytest.raises(CaptureError) as e:
        for x in r.packets():
            got.append(x)
    assert len(got) == 2
    last = 24 + 2 * (16 + len(_frames()[0][1]))
    assert e.value.offset == last
    assert str(e.value) == f"{p}: byte {last}: truncated record ({len(raw) - 10 - last} bytes left at end of file)"


def test_corrupt_record_length(tmp_path):
    p = tmp_path / "c.pcap"
    write_pcap(p, _frames(2))
    raw = bytearray(p.read_bytes())
    second = 24 + 16 + len(_frames()[0][1])
    raw[second + 8:second + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    r = open_capture(str(p))
    with pytest.raises(CaptureError, match=rf"byte {second}: corrupt record header"):
        n = sum(1 for _ in r.packets())
    assert r.packets_read == 1


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"hello world, not a capture", "not a pcap"),
                                         (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap file header")])
def test_not_a_capture(tmp_path, content, msg):
    p = tmp_path / "bad.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureError, match=msg):
        open_capture(str(p))


def test_truncated_pcapng_block(tmp_path):
    p = tmp_path / "t.pcapng"
    write_pcapng(p, [(1, None)], [(0, 5, f) for _, f in _frames(3)])
    raw = p.read_bytes()
    p.write_bytes(raw[:-7])
    r = open_capture(str(p))
    got = []
    with pytest.raises(CaptureError, match="truncated block"):
        for x in r.packets():
            got.append(x)
    assert len(got) == 2


def test_large_file_spans_read_chunks(tmp_path):
    """Records straddle the reader's 1 MiB chunks: every packet comes out whole and in order."""
    conv = TcpConv().handshake()
    for i in range(6000):
        conv.send(True, mbap(i & 0xFFFF, 1, bytes([3, 0, 0, 0, 10])) + b"\0" * 150)
    p = tmp_path / "big.pcap"
    write_pcap(p, conv.frames)
    assert p.stat().st_size > (1 << 20) + 1000
    with open_capture(str(p)) as r:
        frames = [f for _, _, f in r.packets()]
    assert frames == [f for _, f in conv.frames]


def test_ipv6_and_udp(tmp_path):
    c, s = ip6("2001:db8::1"), ip6("2001:db8::2")
    seg = tcp(c, s, 40000, 502, 1, flags="S")
    # hop-by-hop options header (8 bytes) then TCP
    hbh = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    d = Decoder("on")
    p = d.decode(0, 1, eth(ipv6(c, s, 0, hbh + seg), etype=0x86DD))
    assert p is not None and p.dport == 502 and not p.bad_checksum and len(p.src) == 16
    c4, s4 = ip4("10.0.0.1"), ip4("10.0.0.2")
    u = d.decode(0, 1, eth(ipv4(c4, s4, 17, udp(c4, s4, 5000, 53, b"abc"))))
    assert u.proto == 17 and u.payload == b"abc" and not u.bad_checksum
