#!/usr/bin/env python3
"""Benchmark the MQTT path: a generated capture of mosquitto-like traffic (a subscriber receiving QoS 0
PUBLISHes packed N per segment, plus QoS 1 publishes with their PUBACKs) through the whole pipeline, and
tshark over the same file. Prints figures; asserts nothing.

    python bench/bench_mqtt.py [--messages 200000] [--per-segment 20] [--no-tshark] [--profile]
"""
from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _ip_tcp(src, dst, sport, dport, seq, ack, flags, payload):
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload


def publish(topic: bytes, payload: bytes, qos=0, mid=0) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (struct.pack(">H", mid) if qos else b"") + payload
    n, enc = len(body), bytearray()
    while True:
        d, n = n & 0x7F, n >> 7
        enc.append(d | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30 | qos << 1]) + bytes(enc) + body


def generate(path: str, messages: int, per_seg: int, flows: int = 50) -> tuple[int, int]:
    """-> (packets, MQTT messages). Classic pcap, Ethernet, checksums zero (checksums: auto)."""
    out = open(path, "wb")
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    ts = 1_700_000_000 * 1_000_000
    npk = 0
    nmsg = 0

    def w(frame):
        nonlocal ts, npk
        ts += 50
        out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
        out.write(frame)
        npk += 1

    broker = bytes([10, 0, 0, 1])
    state = []
    for f in range(flows):
        cli = bytes([10, 0, 1 + f // 250, 1 + f % 250])
        cport = 40000 + f
        cs, ss = 1000, 5000
        w(_ip_tcp(cli, broker, cport, 1883, cs - 1, 0, 0x02, b""))
        w(_ip_tcp(broker, cli, 1883, cport, ss - 1, cs, 0x12, b""))
        conn = b"\x10\x13\x00\x04MQTT\x04\x02\x00\x3c\x00\x07sub-%03d" % f
        w(_ip_tcp(cli, broker, cport, 1883, cs, ss, 0x18, conn))
        cs += len(conn)
        w(_ip_tcp(broker, cli, 1883, cport, ss, cs, 0x18, b"\x20\x02\x00\x00"))
        ss += 4
        state.append([cli, cport, cs, ss, 1])
    i = 0
    while nmsg < messages:
        st = state[i % flows]
        cli, cport, cs, ss, mid = st
        if i % 10 == 9:  # a QoS 1 publish from the client and its PUBACK
            p = publish(b"plant/line%d/setpoint" % (i % 7), b"%d" % i, qos=1, mid=mid)
            w(_ip_tcp(cli, broker, cport, 1883, cs, ss, 0x18, p))
            cs += len(p)
            a = b"\x40\x02" + struct.pack(">H", mid)
            w(_ip_tcp(broker, cli, 1883, cport, ss, cs, 0x18, a))
            ss += 4
            st[4] = mid % 65535 + 1
            nmsg += 2
        else:  # the broker forwards a batch of QoS 0 publishes in one segment
            seg = b"".join(publish(b"plant/line%d/temp" % (k % 7), b"%d.%d" % (20 + k % 5, k % 10))
                           for k in range(per_seg))
            w(_ip_tcp(broker, cli, 1883, cport, ss, cs, 0x18, seg))
            ss += len(seg)
            nmsg += per_seg
        st[2], st[3] = cs, ss
        i += 1
    for cli, cport, cs, ss, _ in state:
        w(_ip_tcp(cli, broker, cport, 1883, cs, ss, 0x11, b""))
        w(_ip_tcp(broker, cli, 1883, cport, ss, cs + 1, 0x11, b""))
    out.close()
    return npk, nmsg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--per-segment", type=int, default=20)
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    from ids.pipeline import analyze

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mqtt-bench.pcap")
        npk, nmsg = generate(path, a.messages, a.per_segment)
        print(f"capture: {npk} packets, {nmsg} MQTT messages, {os.path.getsize(path) / 1e6:.1f} MB")
        t0 = time.perf_counter()
        if a.profile:
            import cProfile
            import pstats
            prof = cProfile.Profile()
            prof.enable()
        run, col = analyze([path])
        dt = time.perf_counter() - t0
        if a.profile:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        nex = sum(1 for e in col.events if e.dataset == "otids.mqtt")
        t1 = time.perf_counter()
        for e in col.events:
            e.to_doc()
        ddt = time.perf_counter() - t1
        print(f"otids pipeline (in memory): {dt:.2f} s, {npk / dt:,.0f} packets/s, {nmsg / dt:,.0f} messages/s, "
              f"{nex} exchanges")
        print(f"to_doc for every exchange: {ddt:.2f} s, {nex / ddt:,.0f} documents/s")
        if not a.no_tshark and shutil.which("tshark"):
            t0 = time.perf_counter()
            subprocess.run(["tshark", "-r", path, "-Y", "mqtt", "-T", "fields", "-e", "mqtt.topic"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            tt = time.perf_counter() - t0
            print(f"tshark -Y mqtt -e mqtt.topic: {tt:.2f} s, {npk / tt:,.0f} packets/s "
                  f"(otids is {tt / dt:.1f}x tshark)")


if __name__ == "__main__":
    main()
