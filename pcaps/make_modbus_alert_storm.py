#!/usr/bin/env python3
"""Write ``pcaps/modbus-alert-storm.pcap``: crafted Modbus/TCP traffic that raises a steady stream of
protocol-anomaly alerts, spread over ten minutes of capture time.

Why: the Elasticsearch output needs a capture with many alerts from many hosts (its fault-injection test
stops the cluster half-way through them), and the Kibana dashboards need alerts of every severity with
ATT&CK techniques. Malformed PDUs and spoofed responses cannot come from a well-behaved library such as
pymodbus, so the frames are built with struct (Ethernet / IPv4 / TCP with correct checksums, Modbus
Application Protocol v1.1b3 frames).

Per master/slave pair (50 pairs, one every 12 s, masters 10.10.0.x, slaves 10.20.0.y on port 502):
  handshake; FC 3 read and its response (normal traffic); FC 16 whose byte count disagrees with its
  quantity (-> malformed PDU alert) answered by exception 3; a response nobody asked for (-> unsolicited
  response alert); FIN/ACK teardown.
Every 10th pair also gets 20 FC 1 requests answered with exception 2 within 4 s (-> exception flood),
every 16th pair 20 FC 4 requests that are never answered (-> unanswered-request flood).
Expected with default config: 50 malformed + 50 unsolicited + 5 exception floods + 4 unanswered floods
= 109 alerts (the test checks this number).

Usage: python3 pcaps/make_modbus_alert_storm.py [OUT.pcap]   (deterministic: same bytes every run)
"""
from __future__ import annotations

import struct
import sys

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
PAIRS = 50


def csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(ip: bytes) -> bytes:
    return b"\x02\x00" + ip  # locally administered, derived from the address


class Flow:
    def __init__(self, w: "Writer", cip: bytes, cport: int, sip: bytes, sport: int):
        self.w, self.cip, self.cport, self.sip, self.sport = w, cip, cport, sip, sport
        self.seq = {True: 1000, False: 50000}  # to_server -> next seq

    def pkt(self, ts: float, to_server: bool, flags: int, payload: bytes = b"") -> None:
        src, dst = (self.cip, self.sip) if to_server else (self.sip, self.cip)
        sp, dp = (self.cport, self.sport) if to_server else (self.sport, self.cport)
        seq, ack = self.seq[to_server], self.seq[not to_server]
        tcp = struct.pack("!HHIIBBHHH", sp, dp, seq, ack if flags & 0x10 else 0, 5 << 4, flags, 8192, 0, 0) + payload
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        self.w.frame(ts, mac(dst) + mac(src) + b"\x08\x00" + ip + tcp)
        self.seq[to_server] = (seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF

    def open(self, ts: float) -> None:
        self.pkt(ts, True, 0x02)
        self.pkt(ts + 0.0001, False, 0x12)
        self.pkt(ts + 0.0002, True, 0x10)

    def close(self, ts: float) -> None:
        self.pkt(ts, True, 0x11)
        self.pkt(ts + 0.0001, False, 0x11)
        self.pkt(ts + 0.0002, True, 0x10)


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class Writer:
    def __init__(self):
        self.out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]

    def frame(self, ts: float, data: bytes) -> None:
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        self.out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)


def main(path: str) -> None:
    w = Writer()
    for i in range(PAIRS):
        cip = bytes((10, 10, 0, 10 + i))
        sip = bytes((10, 20, 0, 1 + i % 25))
        f = Flow(w, cip, 40000 + i, sip, 502)
        t = T0 + 12 * i
        f.open(t)
        f.pkt(t + 0.01, True, 0x18, mbap(1, 1, struct.pack("!BHH", 3, 0, 2)))
        f.pkt(t + 0.02, False, 0x18, mbap(1, 1, struct.pack("!BBHH", 3, 4, 100 + i, 200 + i)))
        # FC 16, quantity 2 but byte count 3 (must be 4): malformed; the slave answers exception 3
        f.pkt(t + 0.03, True, 0x18, mbap(2, 1, struct.pack("!BHHB", 16, 10, 2, 3) + b"\x00\x01\x02"))
        f.pkt(t + 0.04, False, 0x18, mbap(2, 1, struct.pack("!BB", 0x90, 3)))
        # a response to transaction 0x7777, which nobody sent: unsolicited
        f.pkt(t + 0.05, False, 0x18, mbap(0x7777, 1, struct.pack("!BBH", 3, 2, 0xBEEF)))
        if i % 10 == 0:
            for k in range(20):
                tk = t + 0.1 + 0.2 * k
                f.pkt(tk, True, 0x18, mbap(100 + k, 1, struct.pack("!BHH", 1, 9999, 1)))
                f.pkt(tk + 0.01, False, 0x18, mbap(100 + k, 1, struct.pack("!BB", 0x81, 2)))
        if i % 16 == 0:
            for k in range(20):
                f.pkt(t + 4.5 + 0.1 * k, True, 0x18, mbap(200 + k, 1, struct.pack("!BHH", 4, 0, 1)))
        f.close(t + 8)
    with open(path, "wb") as fh:
        fh.write(b"".join(w.out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pcaps/modbus-alert-storm.pcap")
