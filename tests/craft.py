"""Packet and capture-file builders for crafted edge cases (struct only: exact control over every byte).

Frames: eth(), vlan tags, sll(), sll2(), ipv4() with options and fragment fields, ipv6() with extension
headers, tcp(), udp(), with correct checksums unless asked otherwise. Files: write_pcap() in either byte
order and µs or ns resolution, write_pcapng() with several interfaces and per-interface link types.
"""
from __future__ import annotations

import struct
from array import array

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def ip6(a: str) -> bytes:
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int = 0, flags: str = "A",
        payload: bytes = b"", bad_checksum: bool = False, options: bytes = b"") -> bytes:
    fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}[c] for c in flags)
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, fl, 65535, 0, 0)
    seg = hdr + options + payload
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
    c = csum(pseudo + seg) ^ (0x1234 if bad_checksum else 0)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(seg)) if len(src) == 4 else \
        src + dst + struct.pack("!IxxxB", len(seg), 17)
    c = csum(pseudo + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def ipv4(src: bytes, dst: bytes, proto: int, l4: bytes, ident: int = 1, frag_off: int = 0, mf: bool = False,
         df: bool = True, options: bytes = b"", total_len: int | None = None) -> bytes:
    ihl = (20 + len(options)) // 4
    flags = (0x4000 if df and not mf and not frag_off else 0) | (0x2000 if mf else 0) | (frag_off // 8)
    tot = total_len if total_len is not None else ihl * 4 + len(l4)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, ident, flags, 64, proto, 0, src, dst) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4


def ipv6(src: bytes, dst: bytes, nxt: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64, src, dst) + payload


def eth(payload: bytes, etype: int = 0x0800, src: bytes = MAC_A, dst: bytes = MAC_B, vlans=()) -> bytes:
    tags = b""
    for i, v in enumerate(vlans):
        tpid = 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100
        tags += struct.pack("!HH", tpid, v)
    return dst + src + tags + struct.pack("!H", etype) + payload


def sll(payload: bytes, etype: int = 0x0800, src: bytes = MAC_A) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, src + b"\0\0", etype) + payload


def sll2(payload: bytes, etype: int = 0x0800, src: bytes = MAC_A) -> bytes:
    return struct.pack("!HHIHBB8s", etype, 0, 1, 1, 0, 6, src + b"\0\0") + payload


def write_pcap(path, packets, linktype: int = 1, endian: str = "<", nanos: bool = False) -> None:
    """packets: iterable of (ts_ns, frame bytes)."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    with open(path, "wb") as fh:
        fh.write(struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for ts, frame in packets:
            sec, ns = divmod(ts, 1_000_000_000)
            frac = ns if nanos else ns // 1000
            fh.write(struct.pack(endian + "IIII", sec, frac, len(frame), len(frame)) + frame)


def _block(btype: int, body: bytes, endian: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def write_pcapng(path, interfaces, packets, endian: str = "<") -> None:
    """interfaces: list of (linktype, tsresol byte or None); packets: (iface, ts_units, frame)."""
    out = _block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)
    for lt, res in interfaces:
        opts = b""
        if res is not None:
            opts = struct.pack(endian + "HH", 9, 1) + bytes([res]) + b"\0\0\0" + struct.pack(endian + "HH", 0, 0)
        out += _block(1, struct.pack(endian + "HHI", lt, 0, 262144) + opts, endian)
    # a Name Resolution Block nobody asked for, to be skipped
    out += _block(4, struct.pack(endian + "HH", 0, 0), endian)
    for iface, units, frame in packets:
        out += _block(6, struct.pack(endian + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame),
                                     len(frame)) + frame, endian)
    with open(path, "wb") as fh:
        fh.write(out)


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class TcpConv:
    """A TCP conversation between a client and a server that produces Ethernet/IPv4 frames with coherent
    sequence numbers; `ts` advances 1 ms per frame."""

    def __init__(self, cip="10.0.0.1", sip="10.0.0.2", cport=40000, sport=502, t0=1_700_000_000 * 10**9):
        self.c, self.s = ip4(cip), ip4(sip)
        self.cport, self.sport = cport, sport
        self.cseq, self.sseq = 1000, 5000
        self.ts = t0
        self.frames: list[tuple[int, bytes]] = []

    def _emit(self, from_client: bool, flags: str, payload: bytes = b"", seq=None, **kw) -> bytes:
        if from_client:
            seg = tcp(self.c, self.s, self.cport, self.sport, self.cseq if seq is None else seq, self.sseq, flags,
                      payload, **kw)
            frame = eth(ipv4(self.c, self.s, 6, seg), src=MAC_A, dst=MAC_B)
        else:
            seg = tcp(self.s, self.c, self.sport, self.cport, self.sseq if seq is None else seq, self.cseq, flags,
                      payload, **kw)
            frame = eth(ipv4(self.s, self.c, 6, seg), src=MAC_B, dst=MAC_A)
        self.ts += 1_000_000
        self.frames.append((self.ts, frame))
        return frame

    def handshake(self):
        self._emit(True, "S")
        self.cseq += 1
        self._emit(False, "SA")
        self.sseq += 1
        self._emit(True, "A")
        return self

    def send(self, from_client: bool, payload: bytes, advance: bool = True, seq=None, **kw):
        self._emit(from_client, "PA", payload, seq=seq, **kw)
        if advance:
            if from_client:
                self.cseq += len(payload)
            else:
                self.sseq += len(payload)
        return self

    def close(self):
        self._emit(True, "FA")
        self.cseq += 1
        self._emit(False, "FA")
        self.sseq += 1
        self._emit(True, "A")
        return self
