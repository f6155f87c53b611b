#!/usr/bin/env python3
"""Write ``pcaps/live-sample.pcap``: a small crafted Modbus/TCP capture for the live-sensor tests, made to
raise alerts and to carry VLAN tags, so replaying it over a veth pair checks that live and offline
analysis agree on alerts (not only events) and that tags the kernel strips from frames come back.

Crafted with struct (no live peers): the point is the exact frames, not device behaviour. Checksums are
correct, TCP sequence numbers coherent, timestamps 10 ms apart from a fixed start (deterministic bytes).

Flows (server port 502 everywhere):
  1. 802.1Q VLAN 100: 10.1.0.10 -> 10.1.0.2, FC3 read and its response, then a response nobody asked
     for (transaction 99: unsolicited_response alert), FIN teardown.
  2. untagged: 10.1.0.11 -> 10.1.0.3, 24 FC3 requests answered with exception 2 within 0.5 s
     (exception_flood alert), FIN teardown.
  3. 802.1ad QinQ, outer 200 / inner 300: 10.1.0.12 -> 10.1.0.4, FC3 with quantity 0 (malformed:
     quantity_out_of_range) answered with exception 3, then a normal FC6 write, RST.

Usage: python3 pcaps/make_live_sample.py [OUT.pcap]
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "live-sample.pcap"
T0 = 1_790_000_000  # 2026-09-21, seconds
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


class Conn:
    def __init__(self, out: list, cip: str, sip: str, cport: int, vlans: tuple = (), cmac: int = 1, smac: int = 2):
        self.out, self.cip, self.sip, self.cport, self.vlans = out, ip4(cip), ip4(sip), cport, vlans
        self.cmac, self.smac = b"\x02\x00\x00\x00\x00" + bytes([cmac]), b"\x02\x00\x00\x00\x00" + bytes([smac])
        self.seq = [1000, 5000]  # client, server

    def pkt(self, to_server: bool, flags: int, payload: bytes = b"") -> None:
        i = 0 if to_server else 1
        src, dst = (self.cip, self.sip) if to_server else (self.sip, self.cip)
        sport, dport = (self.cport, 502) if to_server else (502, self.cport)
        ack = self.seq[1 - i] if flags & ACK else 0
        tcp = struct.pack("!HHIIBBHHH", sport, dport, self.seq[i], ack, 5 << 4, flags, 8192, 0, 0) + payload
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), len(self.out) & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        eth = (self.smac + self.cmac) if not to_server else (self.cmac + self.smac)
        for tpid, vid in self.vlans:
            eth += struct.pack("!HH", tpid, vid)
        eth += b"\x08\x00"
        self.out.append(eth + ip + tcp)
        self.seq[i] = (self.seq[i] + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF

    def open(self) -> None:
        self.pkt(True, SYN)
        self.pkt(False, SYN | ACK)
        self.pkt(True, ACK)

    def close(self) -> None:
        self.pkt(True, FIN | ACK)
        self.pkt(False, FIN | ACK)
        self.pkt(True, ACK)


def mbap(tid: int, pdu: bytes, unit: int = 1) -> bytes:
    return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def build() -> list[bytes]:
    out: list[bytes] = []
    a = Conn(out, "10.1.0.10", "10.1.0.2", 40001, ((0x8100, 100),), 10, 2)
    a.open()
    a.pkt(True, PSH | ACK, mbap(1, struct.pack("!BHH", 3, 0, 2)))
    a.pkt(False, PSH | ACK, mbap(1, struct.pack("!BB2H", 3, 4, 11, 22)))
    a.pkt(False, PSH | ACK, mbap(99, struct.pack("!BB2H", 3, 4, 33, 44)))  # nobody asked
    a.close()

    b = Conn(out, "10.1.0.11", "10.1.0.3", 40002, (), 11, 3)
    b.open()
    for tid in range(1, 25):
        b.pkt(True, PSH | ACK, mbap(tid, struct.pack("!BHH", 3, 1000 + tid, 1)))
        b.pkt(False, PSH | ACK, mbap(tid, bytes([0x83, 2])))
    b.close()

    c = Conn(out, "10.1.0.12", "10.1.0.4", 40003, ((0x88A8, 200), (0x8100, 300)), 12, 4)
    c.open()
    c.pkt(True, PSH | ACK, mbap(7, struct.pack("!BHH", 3, 0, 0)))  # quantity 0: out of range
    c.pkt(False, PSH | ACK, mbap(7, bytes([0x83, 3])))
    c.pkt(True, PSH | ACK, mbap(8, struct.pack("!BHH", 6, 10, 1234)))
    c.pkt(False, PSH | ACK, mbap(8, struct.pack("!BHH", 6, 10, 1234)))
    c.pkt(True, RST | ACK)
    return out


def write(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, f in enumerate(frames):
            usec = i * 10_000
            fh.write(struct.pack("<IIII", T0 + usec // 1_000_000, usec % 1_000_000, len(f), len(f)) + f)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    frames = build()
    write(out, frames)
    print(f"wrote {out} ({len(frames)} frames)")
