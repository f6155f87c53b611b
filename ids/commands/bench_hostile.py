"""`otids bench-hostile`: the sensor under resource-exhaustion floods (issue #16, docs/ROBUSTNESS.md).

Each case writes its capture (streamed to disk, never built in memory), runs `otids analyze` on it with
the default configuration in its own process, and prints the wall time, the throughput, the peak RSS of
that process (wait4's rusage) and the alerts it raised by rule. tshark reads the same capture in the same
run (`tshark -r PCAP -q -z io,phs`: every frame dissected, its reassembly on as by default; plain `-q`
skips dissection) and its time and RSS are printed beside, so the figures read as ratios on this machine. Figures only, no pass/fail: the goals (peak RSS <= 250 MB,
time linear in the input, an alert naming what was capped) are read off the table; `--scale 0.01` makes
every case a hundredth of its size (the test suite's smoke run).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from .bench import _measure
from ..errors import UserError

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
_ETH = bytes.fromhex("020000000002" "020000000001") + b"\x08\x00"
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_REC = struct.Struct("<IIII")
_fb = int.from_bytes


def _csum_fold(v: int) -> int:
    v %= 0xFFFF
    return (~v & 0xFFFF) or 0xFFFF if v else 0xFFFF


class PcapOut:
    """Ethernet/IPv4/TCP frames with correct checksums, streamed into a pcap file."""

    def __init__(self, path: str):
        self.fh = open(path, "wb", buffering=1 << 20)
        self.fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.frames = 0
        self.bytes = 0

    def raw(self, ts: int, frame: bytes) -> None:
        sec, ns = divmod(ts, NS)
        self.fh.write(_REC.pack(sec, ns // 1000, len(frame), len(frame)))
        self.fh.write(frame)
        self.frames += 1
        self.bytes += len(frame) + 16

    def ip(self, ts: int, src: bytes, dst: bytes, proto: int, l4: bytes, ident: int = 0, frag: int = 0x4000) -> None:
        h = _IP.pack(0x45, 0, 20 + len(l4), ident & 0xFFFF, frag, 64, proto, 0, src, dst)
        c = _csum_fold(_fb(h, "big"))
        self.raw(ts, _ETH + h[:10] + struct.pack("!H", c) + h[12:] + l4)

    def tcp(self, ts: int, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
            payload: bytes = b"") -> None:
        self.ip(ts, src, dst, 6, tcp_segment(src, dst, sport, dport, seq, ack, flags, payload))

    def close(self) -> None:
        self.fh.close()


def tcp_segment(src, dst, sport, dport, seq, ack, flags, payload) -> bytes:
    h = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
    n = 20 + len(payload)
    seg = h + payload
    v = _fb(src + dst, "big") + 6 + n + _fb(seg if not n & 1 else seg + b"\0", "big")
    return h[:16] + struct.pack("!H", _csum_fold(v)) + h[18:] + payload


SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


class Conv:
    """One TCP connection in a PcapOut: handshake, data both ways, teardown."""

    def __init__(self, out: PcapOut, cip: bytes, sip: bytes, cport: int, sport: int, ts: int):
        self.o, self.c, self.s, self.cp, self.sp, self.ts = out, cip, sip, cport, sport, ts
        self.cseq, self.sseq = 1000, 5000

    def handshake(self) -> "Conv":
        self.o.tcp(self.ts, self.c, self.s, self.cp, self.sp, self.cseq - 1, 0, SYN)
        self.o.tcp(self.ts, self.s, self.c, self.sp, self.cp, self.sseq - 1, self.cseq, SYN | ACK)
        self.o.tcp(self.ts, self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, ACK)
        return self

    def send(self, to_server: bool, payload: bytes, dt: int = 10_000) -> None:
        self.ts += dt
        if to_server:
            self.o.tcp(self.ts, self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, PSH | ACK, payload)
            self.cseq += len(payload)
        else:
            self.o.tcp(self.ts, self.s, self.c, self.sp, self.cp, self.sseq, self.cseq, PSH | ACK, payload)
            self.sseq += len(payload)

    def close(self) -> None:
        self.ts += 1000
        self.o.tcp(self.ts, self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, FIN | ACK)
        self.o.tcp(self.ts, self.s, self.c, self.sp, self.cp, self.sseq, self.cseq + 1, FIN | ACK)


def _ip(n: int, net: int = 10) -> bytes:
    return struct.pack("!I", (net << 24) | (n & 0xFFFFFF))


SERVER = bytes([192, 168, 0, 10])


# ---------------------------------------------------------------------------------------------- cases
def syn_flood(out: PcapOut, n: int) -> None:
    """n SYNs from n sources to a Modbus server: half-open flows that never complete."""
    ts = T0
    for k in range(n):
        ts += 1000
        out.tcp(ts, _ip(k + 1), SERVER, 40000 + (k & 0x3FFF), 502, k * 7919, 0, SYN)


def garbage(port: int) -> Callable[[PcapOut, int], None]:
    def gen(out: PcapOut, nbytes: int) -> None:
        """nbytes of random bytes on one connection to `port`, in 1400-byte segments."""
        rnd = random.Random(port)
        block = rnd.randbytes(1 << 16)
        c = Conv(out, _ip(1), SERVER, 40000, port, T0).handshake()
        sent = 0
        while sent < nbytes:
            o = rnd.randrange(0, len(block) - 1400)
            c.send(True, block[o:o + 1400], dt=12_000)  # ~1 Gb/s
            sent += 1400
        c.close()
    gen.__doc__ = f"random bytes on port {port}"
    return gen


def _mqtt_len(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def _mqtt_connect(cid: bytes) -> bytes:
    body = _mqtt_str(b"MQTT") + b"\x04\x02" + struct.pack("!H", 60) + _mqtt_str(cid)
    return b"\x10" + _mqtt_len(len(body)) + body


def mqtt_oversized(out: PcapOut, conns: int) -> None:
    """conns connections, each a CONNECT then a PUBLISH declaring 268 MB (the largest length MQTT can say)
    of which 64 kB follow before the connection ends."""
    for k in range(conns):
        c = Conv(out, _ip(k + 1), SERVER, 30000 + (k & 0x7FFF), 1883, T0 + k * 1_000_000).handshake()
        c.send(True, _mqtt_connect(b"dev%d" % k))
        c.send(False, b"\x20\x02\x00\x00")
        head = b"\x30" + _mqtt_len(268_435_455) + _mqtt_str(b"t/big") + bytes(1392)
        c.send(True, head[:1400])
        for _ in range(46):
            c.send(True, bytes(1400))
        c.close()


def mqtt_topics(out: PcapOut, n: int) -> None:
    """One client publishing to n distinct topics (QoS 0), several PUBLISH packets per segment."""
    c = Conv(out, _ip(1), SERVER, 40000, 1883, T0).handshake()
    c.send(True, _mqtt_connect(b"flooder"))
    c.send(False, b"\x20\x02\x00\x00")
    batch = bytearray()
    for k in range(n):
        body = _mqtt_str(b"plant/line%d/cell%d/sensor%d" % (k % 97, k // 97 % 89, k)) + b"%d" % k
        batch += b"\x30" + _mqtt_len(len(body)) + body
        if len(batch) > 1300:
            c.send(True, bytes(batch), dt=20_000)
            batch.clear()
    if batch:
        c.send(True, bytes(batch))
    c.close()


def modbus_unanswered(out: PcapOut, n: int) -> None:
    """n Modbus read requests on one connection that the slave never answers."""
    c = Conv(out, _ip(1), SERVER, 40000, 502, T0).handshake()
    batch = bytearray()
    for k in range(n):
        batch += struct.pack(">HHHBBHH", k & 0xFFFF, 0, 6, 1, 3, k & 0xFFFF, 10)
        if len(batch) >= 1200:
            c.send(True, bytes(batch), dt=100_000)
            batch.clear()
    if batch:
        c.send(True, bytes(batch))
    c.close()


def ooo_segments(out: PcapOut, n: int) -> None:
    """A one-byte hole, then n one-byte segments after it, last first: nothing is ever in order."""
    c = Conv(out, _ip(1), SERVER, 40000, 502, T0).handshake()
    ts = c.ts
    base = c.cseq + 1
    for k in range(n - 1, -1, -1):
        ts += 1000
        out.tcp(ts, c.c, c.s, c.cp, c.sp, base + k, c.sseq, ACK, b"\x00")


def fragment_flood(out: PcapOut, n: int) -> None:
    """n eight-byte IPv4 fragments: datagrams of 2000 fragments each whose last fragment never comes."""
    per = 2000
    src, dst = _ip(9), SERVER
    ts = T0
    l4 = tcp_segment(src, dst, 40000, 502, 1, 0, PSH | ACK, bytes(per * 8))
    for k in range(n):
        d, f = divmod(k, per)
        ts += 1000
        out.ip(ts, src, dst, 6, l4[f * 8:f * 8 + 8], ident=d, frag=0x2000 | f)


def _ua(mt: bytes, ct: bytes, body: bytes) -> bytes:
    return mt + ct + struct.pack("<I", 8 + len(body)) + body


def _ua_str(s: bytes | None) -> bytes:
    return struct.pack("<i", -1) if s is None else struct.pack("<i", len(s)) + s


_POLICY_NONE = b"http://opcfoundation.org/UA/SecurityPolicy#None"


def _ua_open(c: Conv) -> None:
    c.send(True, _ua(b"HEL", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + _ua_str(b"opc.tcp://plc:4840")))
    c.send(False, _ua(b"ACK", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0)))
    asym = _ua_str(_POLICY_NONE) + _ua_str(None) + _ua_str(None)
    c.send(True, _ua(b"OPN", b"F", struct.pack("<I", 0) + asym + struct.pack("<II", 1, 1) + bytes(16)))


def opcua_chunk_bombs(out: PcapOut, flows: int) -> None:
    """flows connections, each one request in 2 intermediate chunks of 8 kB that never gets its final
    chunk: all of it is held for reassembly."""
    for f in range(flows):
        c = Conv(out, _ip(f + 1), SERVER, 20000 + (f & 0x7FFF), 4840, T0 + f * 1_000_000).handshake()
        _ua_open(c)
        for k in range(2):
            hdr = struct.pack("<IIII", 1, 0, 2 + k, 77)
            body = (b"\x01\x00\x77\x02" if k == 0 else b"") + bytes(8000)
            c.send(True, _ua(b"MSG", b"C", hdr + body))


def opcua_writes(out: PcapOut, nodes: int) -> None:
    """WriteRequests over one secure channel (policy None), 100 distinct nodes each, all answered."""
    c = Conv(out, _ip(1), SERVER, 40000, 4840, T0).handshake()
    _ua_open(c)
    per = 100
    seq = 2
    for r in range(0, nodes, per):
        req = bytearray(b"\x01\x00" + struct.pack("<H", 673))  # WriteRequest, binary
        req += b"\x00\x00" + struct.pack("<qII", 0, r // per + 1, 0) + _ua_str(None) + struct.pack("<I", 0) \
            + b"\x00\x00\x00"  # request header: auth token, time, handle, diagnostics, audit id, hint, ext
        count = min(per, nodes - r)
        req += struct.pack("<i", count)
        for k in range(r, r + count):
            req += b"\x03" + struct.pack("<H", 2) + _ua_str(b"Plant.Line1.Tag%d" % k) + struct.pack("<I", 13) \
                + _ua_str(None) + b"\x01\x06" + struct.pack("<i", k)
        c.send(True, _ua(b"MSG", b"F", struct.pack("<IIII", 1, 1, seq, 100 + r) + bytes(req)))
        resp = bytearray(b"\x01\x00" + struct.pack("<H", 676)) + struct.pack("<qII", 0, r // per + 1, 0) \
            + b"\x00" + struct.pack("<i", 0) + b"\x00\x00\x00" + struct.pack("<i", count) + bytes(4 * count) \
            + struct.pack("<i", -1)
        c.send(False, _ua(b"MSG", b"F", struct.pack("<IIII", 1, 1, seq, 100 + r) + bytes(resp)))
        seq += 1
    c.close()


def opcua_auth_none(out: PcapOut, channels: int) -> None:
    """channels connections from as many clients, each a secure channel on SecurityPolicy None and one
    WriteRequest on it: every one an auth finding (policy None where the default policy wants Sign)."""
    hdr = b"\x00\x00" + struct.pack("<qII", 0, 1, 0) + _ua_str(None) + struct.pack("<I", 0) + b"\x00\x00\x00"
    opn = (b"\x01\x00" + struct.pack("<H", 446) + hdr  # OpenSecureChannelRequest: issue, mode None, no nonce
           + struct.pack("<III", 0, 0, 1) + _ua_str(b"") + struct.pack("<I", 3_600_000))
    opn_resp = (b"\x01\x00" + struct.pack("<H", 449) + struct.pack("<qII", 0, 1, 0) + b"\x00" + struct.pack("<i", -1)
                + b"\x00\x00\x00" + struct.pack("<IIIqI", 0, 1, 1, 0, 3_600_000) + _ua_str(b""))  # channel 1, token 1
    asym = _ua_str(_POLICY_NONE) + _ua_str(None) + _ua_str(None)
    for f in range(channels):
        c = Conv(out, _ip(f + 1), SERVER, 20000 + (f & 0x7FFF), 4840, T0 + f * 1_000_000).handshake()
        c.send(True, _ua(b"HEL", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + _ua_str(b"opc.tcp://plc:4840")))
        c.send(False, _ua(b"ACK", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0)))
        c.send(True, _ua(b"OPN", b"F", struct.pack("<I", 0) + asym + struct.pack("<II", 1, 1) + opn))
        c.send(False, _ua(b"OPN", b"F", struct.pack("<I", 1) + asym + struct.pack("<II", 1, 1) + opn_resp))
        req = bytearray(b"\x01\x00" + struct.pack("<H", 673))  # WriteRequest, binary
        req += b"\x00\x00" + struct.pack("<qII", 0, 1, 0) + _ua_str(None) + struct.pack("<I", 0) + b"\x00\x00\x00"
        req += struct.pack("<i", 1) + b"\x03" + struct.pack("<H", 2) + _ua_str(b"Plant.Line1.Tag1") \
            + struct.pack("<I", 13) + _ua_str(None) + b"\x01\x06" + struct.pack("<i", f)
        c.send(True, _ua(b"MSG", b"F", struct.pack("<IIII", 1, 1, 2, 100) + bytes(req)))
        c.close()


def mqtt_publish_flood(out: PcapOut, n: int) -> None:
    """One client publishing n times to one topic within 20 s, one PUBLISH a segment (one event each)."""
    c = Conv(out, _ip(1), SERVER, 40000, 1883, T0).handshake()
    c.send(True, _mqtt_connect(b"flooder"))
    c.send(False, b"\x20\x02\x00\x00")
    body = _mqtt_str(b"plant/line1/cell1/sensor1") + b"1"
    pub = b"\x30" + _mqtt_len(len(body)) + body
    for _ in range(n):
        c.send(True, pub, dt=20 * NS // max(n, 1))
    c.close()


def modbus_ranges(out: PcapOut, n: int) -> None:
    """One master reading n single registers two apart (addresses 0, 2, 4, ... in random order), each
    answered: n disjoint intervals of one table for the Modbus learner to merge (32,768 is the most a table
    can hold)."""
    rnd = random.Random(16)
    addrs = [2 * k % 0x10000 for k in range(n)]
    rnd.shuffle(addrs)
    c = Conv(out, _ip(1), SERVER, 40000, 502, T0).handshake()
    for b in range(0, n, 50):
        chunk = addrs[b:b + 50]
        c.send(True, b"".join(struct.pack(">HHHBBHH", (b + i) & 0xFFFF, 0, 6, 1, 3, a, 1)
                              for i, a in enumerate(chunk)), dt=1_000_000)
        c.send(False, b"".join(struct.pack(">HHHBBBH", (b + i) & 0xFFFF, 0, 5, 1, 3, 2, a & 0xFFFF)
                               for i, a in enumerate(chunk)), dt=1_000_000)
    c.close()


def _mqtt_connect_user(cid: bytes, user: bytes, password: bytes) -> bytes:
    body = _mqtt_str(b"MQTT") + b"\x04\xc2" + struct.pack("!H", 60) + _mqtt_str(cid) + _mqtt_str(user) \
        + _mqtt_str(password)
    return b"\x10" + _mqtt_len(len(body)) + body


def mqtt_refusals(out: PcapOut, n: int) -> None:
    """A password guesser: one client id from one address, n connections within 50 s, every CONNECT refused
    (return code 4, bad user name or password)."""
    step = 50 * NS // max(n, 1)
    for k in range(n):
        c = Conv(out, _ip(1), SERVER, 1024 + k % 64000, 1883, T0 + k * step).handshake()
        c.send(True, _mqtt_connect_user(b"plc-7", b"admin", b"guess%d" % k), dt=1000)
        c.send(False, b"\x20\x02\x00\x04", dt=1000)
        c.close()


def mqtt_clients(out: PcapOut, n: int) -> None:
    """n MQTT clients from as many addresses, each a CONNECT and one PUBLISH: every one a new asset to a
    baseline (the enforcer's per-flow verdicts)."""
    for k in range(n):
        c = Conv(out, _ip(k + 1), SERVER, 30000 + (k & 0x7FFF), 1883, T0 + k * 100_000).handshake()
        c.send(True, _mqtt_connect(b"dev%d" % k), dt=1000)
        c.send(False, b"\x20\x02\x00\x00", dt=1000)
        body = _mqtt_str(b"plant/line1/cell1/sensor1") + b"1"
        c.send(True, b"\x30" + _mqtt_len(len(body)) + body, dt=1000)
        c.close()


#: name -> (generator, full-scale size, unit, what)
def tcp_random_flags(out: PcapOut, n: int) -> None:
    """n TCP segments from 500 sources to 20 servers on 20 ports (dissected, identified and unknown) with
    random flag bytes, sequence and acknowledgement numbers and short random payloads: short flows that
    SYNs renumber while segments wait, most of them under nDPI (findings F10-F12)."""
    rnd = random.Random(12)
    ports = (502, 1883, 4840, 8883, 102, 20000, 44818, 80, 443, 445, 135, 3389, 21, 23, 22, 2404, 48898, 9600,
             5007, 1089)
    ts = T0
    for k in range(n):
        c, s = _ip(rnd.randint(1, 500)), _ip(0x10000 + rnd.randint(1, 20))
        port, cport = rnd.choice(ports), rnd.randint(30000, 30050)
        seq = rnd.getrandbits(32) if rnd.random() < 0.3 else k * 100
        body = rnd.randbytes(rnd.choice((0, 0, 1, 12, 60)))
        ts += rnd.choice((1, 1000, 1_000_000))
        if rnd.random() < 0.6:
            out.tcp(ts, c, s, cport, port, seq, rnd.getrandbits(32), rnd.getrandbits(8), body)
        else:
            out.tcp(ts, s, c, port, cport, seq, rnd.getrandbits(32), rnd.getrandbits(8), body)


def arp_flood(out: PcapOut, n: int) -> None:
    """n ARP requests from n stations (distinct MAC and IPv4 address each), broadcast: one non-IP flow, host
    and asset per station (the flow table left them out of its byte bound)."""
    ts = T0
    for i in range(n):
        mac, ip = struct.pack("!IH", 0x02000000 | i >> 16, i & 0xFFFF), struct.pack("!I", 0x0A000000 | i + 2)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, bytes(6), b"\x0a\x00\x00\x01")
        ts += 10_000
        out.raw(ts, b"\xff" * 6 + mac + b"\x08\x06" + arp)


def arp_spoof(out: PcapOut, n: int) -> None:
    """One IP address claimed in ARP replies by n random MACs (a spoofing flood): the ARP watch compared each
    new MAC with every earlier one (quadratic: over six CPU minutes for 200,000) and the asset kept them all."""
    rnd = random.Random(16)
    ts = T0
    for _ in range(n):
        mac = rnd.randbytes(6)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, b"\x0a\x00\x00\x05", b"\xff" * 6,
                          b"\x0a\x00\x00\x01")
        ts += 10_000
        out.raw(ts, b"\xff" * 6 + mac + b"\x08\x06" + arp)


def syn_flood6(out: PcapOut, n: int) -> None:
    """n IPv6 SYNs from n random addresses of one /64 to a Modbus server (every address formatted twice per
    connection record: ipaddress took a third of the time)."""
    rnd = random.Random(17)
    dst = bytes.fromhex("fd000000000000000000000000000001")
    ts = T0
    for _ in range(n):
        src = bytes.fromhex("fd00000000000001") + rnd.randbytes(8)
        seg = struct.pack("!HHIIBBHHH", rnd.randint(1024, 65535), 502, rnd.getrandbits(32), 0, 0x50, 0x02, 8192, 0, 0)
        c = _csum_fold(_fb(src + dst + struct.pack("!IxxxB", len(seg), 6) + seg, "big"))
        seg = seg[:16] + struct.pack("!H", c) + seg[18:]
        ts += 1000
        out.raw(ts, _ETH[:12] + b"\x86\xdd" + struct.pack("!IHBB16s16s", 0x60000000, len(seg), 6, 64, src, dst) + seg)


def vlan_stack(out: PcapOut, n: int) -> None:
    """n Modbus/TCP SYNs inside 1 to 200 random 802.1Q tags each: every distinct stack was a flow key of its
    own (the decoder now stops at 8 tags and counts the frame malformed)."""
    rnd = random.Random(13)
    ts = T0
    for i in range(n):
        tags = b"".join(struct.pack("!HH", rnd.getrandbits(12), 0x8100) for _ in range(rnd.randint(1, 200)))
        seg = tcp_segment(_ip(i % 5000 + 1), SERVER, 1024 + i % 60000, 502, i, 0, 0x02, b"")
        h = _IP.pack(0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, _ip(i % 5000 + 1), SERVER)
        h = h[:10] + struct.pack("!H", _csum_fold(_fb(h, "big"))) + h[12:]
        ts += 10_000
        out.raw(ts, _ETH[:12] + b"\x81\x00" + tags[:-2] + b"\x08\x00" + h + seg)


def icmp_errors(out: PcapOut, n: int) -> None:
    """n ICMP errors (unreachable, time exceeded, redirect, parameter problem) from 4,096 routers quoting
    random or cut inner headers: one-way ICMP flows under the flow table's bounds."""
    rnd = random.Random(14)
    ts = T0
    for i in range(n):
        inner = _IP.pack(0x45, 0, 40, 0, 0, 64, rnd.choice((6, 17, 1)), 0, rnd.randbytes(4), rnd.randbytes(4)) + \
            rnd.randbytes(rnd.randint(0, 20))
        body = struct.pack("!BBHI", rnd.choice((3, 11, 5, 12)), rnd.randrange(16), 0, 0) + \
            inner[:rnd.randint(0, len(inner))]
        c = _csum_fold(_fb(body + b"\x00" * (len(body) & 1), "big"))
        ts += 10_000
        out.ip(ts, _ip(0x20000 + rnd.randrange(4096)), SERVER, 1, body[:2] + struct.pack("!H", c) + body[4:])


def tls_small_records(out: PcapOut, n: int) -> None:
    """n TLS connections, each a 60 KB ClientHello cut into 4-byte handshake records (legal TLS, 15,000
    records per message), sent in 1,400-byte segments."""
    body = b"\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"
    ext = b"\xff\xce" + (60_000).to_bytes(2, "big") + bytes(60_000)
    body += len(ext).to_bytes(2, "big") + ext
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    recs = b"".join(b"\x16\x03\x01\x00" + bytes([len(msg[i:i + 4])]) + msg[i:i + 4] for i in range(0, len(msg), 4))
    for k in range(n):
        c = Conv(out, _ip(k + 1), SERVER, 40000 + k % 20000, 443, T0 + k * 10_000_000).handshake()
        for i in range(0, len(recs), 1400):
            c.send(True, recs[i:i + 1400])
        c.close()


def udp_ports(out: PcapOut, n: int) -> None:
    """n UDP datagrams from 65,536 sources to 256 servers, to ICS and IT ports (DNS, SNMP, BACnet, DNP3,
    EtherNet/IP, PROFINET, mDNS, LLMNR, NTP, TFTP) and random ones, random short payloads: short flows
    each identified by content (the probes and nDPI)."""
    rnd = random.Random(15)
    ports = (53, 161, 47808, 20000, 2222, 44818, 34964, 5353, 5355, 123, 69, 514, 137, 67)
    ts = T0
    for i in range(n):
        dp = rnd.choice(ports) if rnd.random() < 0.8 else rnd.randint(1, 65535)
        data = rnd.randbytes(rnd.randint(0, 60))
        ts += 10_000
        out.ip(ts, _ip(0x30000 + rnd.randrange(65536)), _ip(0x40000 + rnd.randrange(256)), 17,
               struct.pack("!HHHH", rnd.randint(1024, 65535), dp, 8 + len(data), 0) + data)


def sparkplug_births(out: PcapOut, n: int) -> None:
    """n Sparkplug B NBIRTHs of 15,000 metrics each (named, aliased), one edge node each, on one connection:
    each metric ~25 bytes on the wire, ~200 held in the alias tables (and 300 in the event while it lives)."""
    from ..protocols.mqtt.sparkplug import sparkplug_b_pb2 as pb
    c = mqtt_client(out, b"edge")
    for k in range(n):
        p = pb.Payload()
        p.seq, p.timestamp = 0, 1
        for i in range(15_000):
            m = p.metrics.add()
            m.name, m.alias, m.datatype, m.int_value = "line%d/cell%d/m%d" % (k, i % 50, i), i, 3, i
        bd = p.metrics.add()
        bd.name, bd.datatype, bd.long_value = "bdSeq", 8, 0
        body = _mqtt_str(b"spBv1.0/plant/NBIRTH/edge%d" % k) + p.SerializeToString()
        _send_whole(c, b"\x30" + _mqtt_len(len(body)) + body)
    c.close()


def mqtt_client(out: PcapOut, cid: bytes, ip: int = 1, port: int = 40000, ts: int = T0, v5: bool = False) -> Conv:
    """A client's connection to the broker, through CONNECT (MQTT 3.1.1, or 5) and its CONNACK."""
    c = Conv(out, _ip(ip), SERVER, port, 1883, ts).handshake()
    if v5:
        body = _mqtt_str(b"MQTT") + b"\x05\x02" + struct.pack("!H", 60) + b"\x00" + _mqtt_str(cid)
        c.send(True, b"\x10" + _mqtt_len(len(body)) + body)
        c.send(False, b"\x20\x03\x00\x00\x00")
    else:
        c.send(True, _mqtt_connect(cid))
        c.send(False, b"\x20\x02\x00\x00")
    return c


def _send_whole(c: "Conv", msg: bytes) -> None:
    for o in range(0, len(msg), 1400):
        c.send(True, msg[o:o + 1400], dt=1000)


def mqtt_topic_aliases(out: PcapOut, n: int) -> None:
    """MQTT 5 clients defining n topic aliases in all (4,000 a connection), each a 30 kB topic."""
    for f in range((n + 3999) // 4000):
        c = mqtt_client(out, b"c%d" % f, f + 1, 40000 + f, T0 + f * 1000, v5=True)
        for a in range(1, min(4000, n - f * 4000) + 1):
            props = b"\x23" + struct.pack("!H", a)
            body = _mqtt_str((b"t%d/%d/" % (f, a)).ljust(30_000, b"x")) + _mqtt_len(len(props)) + props + b"1"
            _send_whole(c, b"\x30" + _mqtt_len(len(body)) + body)
        c.close()


def mqtt_subscribe_filters(out: PcapOut, n: int) -> None:
    """n unanswered SUBSCRIBEs of 150,000 one-byte topic filters each (`#` first)."""
    c = mqtt_client(out, b"sub")
    filters = _mqtt_str(b"#") + b"\x00" + b"".join(_mqtt_str(b"%d" % (i % 10)) + b"\x00" for i in range(149_999))
    for k in range(n):
        body = struct.pack("!H", k + 1) + filters
        _send_whole(c, b"\x82" + _mqtt_len(len(body)) + body)
    c.close()


def mqtt_user_properties(out: PcapOut, n: int) -> None:
    """n unanswered MQTT 5 QoS 1 PUBLISHes of 80,000 user properties each."""
    c = mqtt_client(out, b"p", v5=True)
    props = b"".join(b"\x26" + _mqtt_str(b"k%d" % i) + _mqtt_str(b"v") for i in range(80_000))
    for k in range(n):
        body = _mqtt_str(b"t/x") + struct.pack("!H", k + 1) + _mqtt_len(len(props)) + props + b"1"
        _send_whole(c, b"\x32" + _mqtt_len(len(body)) + body)
    c.close()


CASES: dict[str, tuple[Callable, int, str]] = {
    "syn_flood": (syn_flood, 1_000_000, "flows"),
    "garbage_502": (garbage(502), 200 << 20, "bytes"),
    "garbage_4840": (garbage(4840), 200 << 20, "bytes"),
    "garbage_1883": (garbage(1883), 200 << 20, "bytes"),
    "garbage_8883": (garbage(8883), 200 << 20, "bytes"),
    "mqtt_oversized": (mqtt_oversized, 10_000, "connections"),
    "opcua_chunk_bombs": (opcua_chunk_bombs, 10_000, "channels"),
    "modbus_unanswered": (modbus_unanswered, 100_000, "requests"),
    "ooo_segments": (ooo_segments, 1_000_000, "segments"),
    "fragment_flood": (fragment_flood, 1_000_000, "fragments"),
    "mqtt_topics": (mqtt_topics, 1_000_000, "topics"),
    "opcua_writes": (opcua_writes, 100_000, "nodes"),
    "opcua_auth_none": (opcua_auth_none, 10_000, "channels"),
    "rule_threshold_keys": (mqtt_topics, 100_000, "topics"),
    "mqtt_topics_learn": (mqtt_topics, 1_000_000, "topics"),
    "mqtt_topics_baseline": (mqtt_topics, 1_000_000, "topics"),
    "modbus_ranges_learn": (modbus_ranges, 32_768, "intervals"),
    "mqtt_refusals": (mqtt_refusals, 50_000, "refusals"),
    "rule_threshold_both": (mqtt_publish_flood, 1_000_000, "publishes"),
    "mqtt_clients_baseline": (mqtt_clients, 100_000, "clients"),
    "tcp_random_flags": (tcp_random_flags, 200_000, "segments"),
    "arp_flood": (arp_flood, 200_000, "stations"),
    "vlan_stack": (vlan_stack, 200_000, "frames"),
    "icmp_errors": (icmp_errors, 200_000, "messages"),
    "udp_ports": (udp_ports, 200_000, "datagrams"),
    "arp_spoof": (arp_spoof, 200_000, "MACs"),
    "syn_flood6": (syn_flood6, 300_000, "flows"),
    "tls_small_records": (tls_small_records, 50, "handshakes"),  # tshark: ~3 s a handshake
    "sparkplug_births": (sparkplug_births, 200, "births"),
    "mqtt_topic_aliases": (mqtt_topic_aliases, 8_000, "aliases"),
    "mqtt_subscribe_filters": (mqtt_subscribe_filters, 100, "subscribes"),
    "mqtt_user_properties": (mqtt_user_properties, 60, "publishes"),
}
# cases run through another command than a plain `otids analyze`: `otids learn` (the learner's bounds), and
# analyze enforcing a baseline learned from the first 100 topics (every further topic a deviation)
LEARN, BASELINE, THRESHOLDS = "mqtt_topics_learn", "mqtt_topics_baseline", "rule_threshold_keys"
# modbus_ranges_learn through `otids learn` too; mqtt_clients_baseline under a baseline of its first 100
# clients; rule_threshold_both: one `both` threshold over the flooding client's publishes (one group)
LEARNS = (LEARN, "modbus_ranges_learn")
BASELINES = (BASELINE, "mqtt_clients_baseline")
THRESHOLD_BOTH = """rules:
  - id: bench.mqtt.publish_flood
    title: A flood of publishes from one client
    description: Ten or more publishes from one client within a minute (one alert a minute at most).
    severity: low
    protocol: mqtt
    match: {mqtt.types: publish}
    threshold: {type: both, count: 10, window: 60s, group_by: [source.ip]}
"""
# rule_threshold_keys: one threshold rule counting publishes per topic (every topic a group)
THRESHOLD_RULE = """rules:
  - id: bench.mqtt.topic_burst
    title: Bursts of publishes to one topic
    description: Ten or more publishes to one topic within a minute.
    severity: low
    protocol: mqtt
    match: {mqtt.types: publish}
    threshold: {count: 10, window: 60s, group_by: [mqtt.publish.topic]}
"""


def _learned(path: str) -> Counter:
    """How many MQTT topics a baseline learned under a flood kept (for the learn rows). Counted line by line:
    loading a large baseline here would grow this process, and every command it starts after would inherit
    that peak in its ru_maxrss."""
    c: Counter = Counter()
    section = None
    inside = False
    with open(path) as fh:
        for line in fh:
            if line[:1].isalpha():
                section = line.split(":", 1)[0]
                continue
            if section == "modbus":  # a table's intervals are one flow-style list: [0, 2, "4-9", ...]
                if line.lstrip().startswith(("coils:", "discrete_inputs:", "holding_registers:", "input_registers:")):
                    c["learned modbus intervals"] += line.count(",") + 1 if "[" in line and "[]" not in line else 0
                continue
            if section != "mqtt":
                continue
            if line.startswith("    publishes:"):
                inside = True
            elif inside and line.startswith("      "):
                c["learned mqtt topics"] += 1
            else:
                inside = False
    return c


def _alerts(path: str) -> Counter:
    c: Counter = Counter()
    try:
        with open(path) as fh:
            for line in fh:
                d = json.loads(line)
                c[d["rule"]["id"].removeprefix("otids.")] += (d.get("otids", {}).get("alert", {}).get("count") or 1)
    except FileNotFoundError:
        pass
    return c


def run(cases: list[str], scale: float, workdir: str, tshark: bool, extra: list[str], echo=print) -> list[dict]:
    rows = []
    otids = [sys.executable, "-c", "import sys; from ids.cli import main; sys.exit(main(sys.argv[1:]))"]
    for name in cases:
        gen, full, unit = CASES[name]
        size = max(1, int(full * scale))
        pcap = os.path.join(workdir, f"{name}.pcap")
        t0 = time.perf_counter()
        out = PcapOut(pcap)
        gen(out, size)
        out.close()
        gen_s = time.perf_counter() - t0
        alerts = os.path.join(workdir, f"{name}.alerts.ndjson")
        more: list[str] = []
        if name in BASELINES:
            small = os.path.join(workdir, "baseline-topics.pcap")
            o = PcapOut(small)
            gen(o, 100)
            o.close()
            more = ["--baseline", os.path.join(workdir, f"{name}.yaml")]
            subprocess.run(otids + ["learn", small, "-q", "-o", more[1]], check=True, capture_output=True)
            os.unlink(small)
        if name in (THRESHOLDS, "rule_threshold_both"):
            rules = os.path.join(workdir, "threshold-rules.yml")
            with open(rules, "w") as fh:
                fh.write(THRESHOLD_RULE if name == THRESHOLDS else THRESHOLD_BOTH)
            more = ["--rules", rules]
        if name in LEARNS:
            bl = os.path.join(workdir, "learned.yaml")
            for f in (bl, bl + ".bak"):  # learn merges into a file that exists: each case learns afresh
                if os.path.exists(f):
                    os.unlink(f)
            secs, rss, _ = _measure(otids + ["learn", pcap, "-q", "-o", bl])
            got = _learned(bl)
        else:
            secs, rss, _ = _measure(otids + ["analyze", pcap, "-q", "-o", alerts, "--workers", "1", *more, *extra])
            got = _alerts(alerts)
        row = {"case": name, "size": size, "unit": unit, "frames": out.frames, "mb": out.bytes / 1e6,
               "seconds": secs, "rss_mb": rss / 1e6, "alerts": got, "generate_s": gen_s}
        if tshark:
            ts_secs, ts_rss, _ = _measure(["tshark", "-r", pcap, "-q", "-z", "io,phs"])
            row.update(tshark_s=ts_secs, tshark_rss_mb=ts_rss / 1e6)
        rows.append(row)
        echo(_line(row))
        os.unlink(pcap)
    return rows


HEADER = (f"{'case':18} {'input':>18} {'MB':>7} {'frames':>9} {'time s':>7} {'MB/s':>6} {'RSS MB':>7} "
          f"{'tshark s':>8} {'tsk RSS':>7}  alerts (rule: count)")


def _line(r: dict) -> str:
    al = ", ".join(f"{k}: {v}" for k, v in sorted(r["alerts"].items())) or "none"
    ts = f"{r['tshark_s']:8.1f} {r['tshark_rss_mb']:7.0f}" if "tshark_s" in r else f"{'-':>8} {'-':>7}"
    return (f"{r['case']:18} {r['size']:>10,} {r['unit']:>7} {r['mb']:7.1f} {r['frames']:9,} {r['seconds']:7.1f} "
            f"{r['mb'] / max(r['seconds'], 1e-9):6.1f} {r['rss_mb']:7.0f} {ts}  {al}")


def register(sub) -> None:
    p = sub.add_parser("bench-hostile", help="resource-exhaustion floods: peak RSS, time and alerts per case",
                       description="Generate each flood capture, run `otids analyze` on it with the default "
                                   "configuration (and tshark on the same file), print time, peak RSS and the "
                                   "alerts raised. Figures only (docs/ROBUSTNESS.md).")
    p.add_argument("cases", nargs="*", metavar="CASE", help=f"default: all of {', '.join(CASES)}")
    p.add_argument("--scale", type=float, default=1.0, help="size factor for every case (0.01: a smoke run)")
    p.add_argument("--workdir", default=None, help="where captures are written, one at a time (default: temp)")
    p.add_argument("--no-tshark", action="store_true", help="skip the tshark reference")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument("--analyze-args", default="", help="extra `otids analyze` arguments, e.g. '--rules rules'")
    p.add_argument("--live", action="store_true",
                   help="the live sensor instead (root): the floods (SYN flood, garbage on 502, fragments; "
                        "cases given or LIVE_CASES) replayed in a loop over a veth pair between network "
                        "namespaces hostile-<pid>-tx/-rx into `otids live`, RSS sampled, drops reported")
    p.add_argument("--minutes", type=float, default=10, help="--live: length of the flood (default 10)")
    p.add_argument("--pps", type=int, default=20000, help="--live: replay rate, packets/s (default 20,000)")
    p.add_argument("--netns", default=None, metavar="TAG",
                   help="--live: name the namespaces TAG-tx and TAG-rx (default hostile-<pid>)")
    p.set_defaults(func=cmd_bench_hostile)


#: the floods of the live run, and the size of each in the looped capture
LIVE_CASES = {"syn_flood": 0.05, "garbage_502": 0.02, "fragment_flood": 0.05}


def live_flood(args, cases: list[str], work: str) -> int:
    """The live sensor under the floods (issue #16 item 4): one capture holding each flood in turn,
    replayed in a loop into `otids live` over a veth pair; the netns rig's memory run samples its RSS."""
    from ..live.bench import memory
    from ..live.netns import VethPair
    if os.geteuid() != 0:
        raise UserError("bench-hostile --live creates network namespaces: run it as root")
    for tool in ("ip", "tcpreplay"):
        if shutil.which(tool) is None:
            raise UserError(f"bench-hostile --live needs {tool} (iproute2, tcpreplay)")
    pcap = os.path.join(work, "live-floods.pcap")
    out = PcapOut(pcap)
    for name in cases:
        gen, full, unit = CASES[name]
        gen(out, max(1, int(full * LIVE_CASES.get(name, args.scale if args.scale != 1.0 else 0.02))))
    out.close()
    print(f"live: {', '.join(cases)} in one capture ({out.frames:,} frames, {out.bytes / 1e6:.0f} MB), "
          f"looped at {args.pps:,} pps for {args.minutes:g} min; outputs in {work}", flush=True)
    with VethPair(args.netns or f"hostile-{os.getpid()}") as veth:
        memory(veth, pcap, args.minutes, args.pps, "ring", Path(work))
    al = _alerts(os.path.join(work, "memory", "alerts.ndjson"))
    print("alerts: " + (", ".join(f"{k}: {v:,}" for k, v in sorted(al.items())) or "none"))
    return 0


def cmd_bench_hostile(args) -> int:
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        raise UserError(f"unknown case {', '.join(bad)} (known: {', '.join(CASES)})")
    if args.scale <= 0:
        raise UserError("--scale must be positive")
    if args.live:
        work = args.workdir or tempfile.mkdtemp(prefix="otids-bench-hostile-live-")
        Path(work).mkdir(parents=True, exist_ok=True)
        return live_flood(args, args.cases or list(LIVE_CASES), work)
    tshark = not args.no_tshark
    if tshark and shutil.which("tshark") is None:
        raise UserError("tshark not found (install it, or pass --no-tshark)")
    work = args.workdir or tempfile.mkdtemp(prefix="otids-bench-hostile-")
    Path(work).mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    rows = run(args.cases or list(CASES), args.scale, work, tshark, args.analyze_args.split(),
               echo=lambda s: print(s, flush=True))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([dict(r, alerts=dict(r["alerts"])) for r in rows], fh, indent=1)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0
