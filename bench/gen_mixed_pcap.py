#!/usr/bin/env python3
"""Second benchmark workload: Modbus/TCP, OPC UA and MQTT on one wire (`otids bench` makes it).

    python3 bench/gen_mixed_pcap.py OUT [--modbus 100x1000] [--opcua 2000] [--mqtt 1000]

The Modbus part is ../shared/bench/gen_modbus_pcap.py's (CONNECTIONSxTXNS). OPC UA and MQTT are sessions
recorded between real peers (pcaps/opcua-none-anonymous.pcap, pcaps/opcua-chunked.pcap: open62541 server and
asyncua client; pcaps/mqtt-mosquitto.pcap: mosquitto with its clients), replayed N times each as other
clients (10.30.0.0/16 addresses) spread over the Modbus part's time span, with IPv4 and TCP
checksums recomputed. Deterministic: same arguments, same bytes. Classic pcap, Ethernet.
"""
from __future__ import annotations

import argparse
import heapq
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scapy.utils import checksum  # noqa: E402 - the Internet checksum (RFC 1071)

TEMPLATES = (("pcaps/opcua-none-anonymous.pcap", 4840), ("pcaps/opcua-chunked.pcap", 4840),
             ("pcaps/mqtt-mosquitto.pcap", 1883))


def _frames(path: str) -> list[tuple[int, bytes]]:
    from ids.capture import open_capture
    with open_capture(path) as r:
        return [(ts, bytes(d)) for ts, lt, d in r.packets() if lt == 1]


def _rewrite(frame: bytes, server_port: int, client_ip: bytes) -> bytes | None:
    """The frame as if from/to another client (its ports kept: the recording's connections stay apart);
    None when it is not IPv4/TCP to or from the server port."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    tot = struct.unpack_from("!H", frame, 16)[0]
    ip = bytearray(frame[14:14 + tot])
    sport, dport = struct.unpack_from("!HH", ip, ihl)
    if dport == server_port:
        ip[12:16] = client_ip
    elif sport == server_port:
        ip[16:20] = client_ip
    else:
        return None
    ip[10:12] = b"\0\0"
    struct.pack_into("!H", ip, 10, checksum(bytes(ip[:ihl])))
    seg = bytearray(ip[ihl:])
    seg[16:18] = b"\0\0"
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(seg))
    struct.pack_into("!H", seg, 16, checksum(pseudo + bytes(seg)))
    return frame[:14] + bytes(ip[:ihl]) + bytes(seg)


def _pcap_records(path: str):
    with open(path, "rb") as f:
        hdr = f.read(24)
        if struct.unpack_from("<I", hdr)[0] != 0xA1B2C3D4:
            raise SystemExit(f"{path}: expected a little-endian microsecond pcap from the Modbus generator")
        while True:
            rh = f.read(16)
            if len(rh) < 16:
                return
            sec, usec, incl, _orig = struct.unpack("<IIII", rh)
            yield sec * 1_000_000 + usec, f.read(incl)


def generate(out: str, modbus: tuple[int, int], opcua: int, mqtt: int, generator: str) -> int:
    with tempfile.TemporaryDirectory() as td:
        mb = os.path.join(td, "modbus.pcap")
        subprocess.run([sys.executable, generator, mb, str(modbus[0]), str(modbus[1])], check=True,
                       stdout=subprocess.DEVNULL)
        first = last = None
        for us, _ in _pcap_records(mb):
            first = us if first is None else first
            last = us
        span = max(1, (last or 0) - (first or 0))
        copies = []
        k = 0
        for (tpl, port), n in zip(TEMPLATES, (opcua // 2, opcua - opcua // 2, mqtt)):
            frames = _frames(os.path.join(ROOT, tpl))
            t0 = frames[0][0] // 1000
            for j in range(n):
                k += 1
                cip = bytes((10, 30, (k >> 8) & 0xFF, k & 0xFF))
                start = first + span * j // max(1, n) + k % 997
                recs = []
                for ts, fr in frames:
                    new = _rewrite(fr, port, cip)
                    if new is not None:
                        recs.append((start + ts // 1000 - t0, new))
                copies.append(recs)
        n = 0
        with open(out, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for us, fr in heapq.merge(_pcap_records(mb), *copies, key=lambda r: r[0]):
                f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(fr), len(fr)) + fr)
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--modbus", default="100x1000", help="CONNECTIONSxTXNS for gen_modbus_pcap.py")
    ap.add_argument("--opcua", type=int, default=2000, help="OPC UA sessions")
    ap.add_argument("--mqtt", type=int, default=1000, help="MQTT sessions")
    ap.add_argument("--generator", default=os.path.join(ROOT, "..", "shared", "bench", "gen_modbus_pcap.py"))
    a = ap.parse_args()
    c, t = (int(x) for x in a.modbus.split("x"))
    print("packets", generate(a.out, (c, t), a.opcua, a.mqtt, a.generator))


if __name__ == "__main__":
    main()
