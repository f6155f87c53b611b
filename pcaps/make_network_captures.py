#!/usr/bin/env python3
"""Regenerate pcaps/net-basics.pcap: real traffic between two network namespaces joined by a veth pair,
captured with tcpdump on one end (needs root, iproute2, tcpdump, iputils-ping, arping, nmap).

What it holds, in order (tests/test_conn.py asserts the connection records of each):
  ARP       arping 2x from A (10.99.0.1) to B (10.99.0.2), plus the kernel's own ARP
  ICMP      ping 2x A -> B; ping6 2x A -> B (fd99::1 -> fd99::2, with neighbour discovery)
  TCP SF    A connects to B:8080, sends "hello", B answers "world", both close
  TCP REJ   A connects to B:8081 (nothing listens: RST)
  UDP       A -> B:9999 (nothing listens: ICMP port unreachable back)
  nmap      -sN (NULL), -sX (Xmas), -sF (FIN) and -sS probes from A to B:8081

and pcaps/modbus-udp.pcap: Modbus/UDP (MBAP frames over UDP 502, a real UDP peer answering each request),
which neither nDPI nor otids' probes name and tshark does (tests/test_deep.py, `otids analyze --deep`);
and pcaps/s7comm-exchange.pcap: a crafted S7comm session between two real TCP peers on port 102 (COTP
connect, setup communication, read DB1.DBW0; byte layouts after Wireshark's s7comm dissector), for
identification and the PLC role (tests/test_identify.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
A, B = "otidsna", "otidsnb"


def sh(*cmd, ns=None, check=True, **kw):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    return subprocess.run(cmd, check=check, **kw)


def main(out: str) -> None:
    for n in (A, B):
        sh("ip", "netns", "del", n, check=False, stderr=subprocess.DEVNULL)
        sh("ip", "netns", "add", n)
    sh("ip", "link", "add", "vetha", "netns", A, "type", "veth", "peer", "name", "vethb", "netns", B)
    for ns, dev, v4, v6 in ((A, "vetha", "10.99.0.1/24", "fd99::1/64"), (B, "vethb", "10.99.0.2/24", "fd99::2/64")):
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "addr", "add", v4, "dev", dev, ns=ns)
        sh("ip", "-6", "addr", "add", v6, "dev", dev, "nodad", ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    # Fixed MACs so that the capture is the same on every run (IEEE locally administered addresses)
    sh("ip", "link", "set", "vetha", "address", "02:99:00:00:00:01", ns=A)
    sh("ip", "link", "set", "vethb", "address", "02:99:00:00:00:02", ns=B)
    time.sleep(1)
    cap = subprocess.Popen(("ip", "netns", "exec", A, "tcpdump", "-i", "vetha", "-w", out, "-U", "--immediate-mode", "-s", "0"),
                           stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    try:
        sh("arping", "-c", "2", "-w", "3", "-I", "vetha", "10.99.0.2", ns=A, stdout=subprocess.DEVNULL)
        sh("ping", "-c", "2", "-i", "0.2", "10.99.0.2", ns=A, stdout=subprocess.DEVNULL)
        sh("ping", "-6", "-c", "2", "-i", "0.2", "fd99::2", ns=A, stdout=subprocess.DEVNULL)
        server = subprocess.Popen(("ip", "netns", "exec", B, sys.executable, "-c", SERVER))
        time.sleep(1)
        sh(sys.executable, "-c", CLIENT, ns=A)
        server.wait(timeout=10)
        for scan in ("-sN", "-sX", "-sF", "-sS"):
            sh("nmap", "-n", "-Pn", scan, "-p", "8081", "--max-retries", "0", "10.99.0.2", ns=A,
               stdout=subprocess.DEVNULL)
        time.sleep(1)
    finally:
        cap.terminate()
        cap.wait()
        for n in (A, B):
            sh("ip", "netns", "del", n, check=False)


SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.99.0.2", 8080)); s.listen(1)
c, _ = s.accept(); c.recv(100); c.sendall(b"world"); c.close()
"""

CLIENT = """
import socket, time
c = socket.create_connection(("10.99.0.2", 8080)); c.sendall(b"hello"); c.recv(100); time.sleep(0.2); c.close()
time.sleep(0.3)
try:
    socket.create_connection(("10.99.0.2", 8081), timeout=2)
except OSError:
    pass
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"ping?", ("10.99.0.2", 9999)); time.sleep(0.3)
"""

UDP_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 502)); s.settimeout(5)
for _ in range(3):
    req, peer = s.recvfrom(300)
    tid, unit = req[:2], req[6]
    s.sendto(tid + b"\\0\\0\\0\\x07" + bytes([unit]) + b"\\x03\\x04\\x00\\x2a\\x00\\x2b", peer)
"""

UDP_CLIENT = """
import socket, struct, time
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(2)
for tid in (1, 2, 3):  # read holding registers 0..1 of unit 1 (Modbus Application Protocol 6.3)
    c.sendto(struct.pack("!HHHBBHH", tid, 0, 6, 1, 3, 0, 2), ("127.0.0.1", 502)); c.recvfrom(300)
    time.sleep(0.1)
"""


def modbus_udp(out: str) -> None:
    ns = "otidsnu"
    sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "set", "lo", "up", ns=ns)
        cap = subprocess.Popen(("ip", "netns", "exec", ns, "tcpdump", "-i", "lo", "-w", out, "-U", "--immediate-mode", "udp"),
                               stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        server = subprocess.Popen(("ip", "netns", "exec", ns, sys.executable, "-c", UDP_SERVER))
        time.sleep(0.5)
        sh(sys.executable, "-c", UDP_CLIENT, ns=ns)
        server.wait(timeout=10)
        time.sleep(1.5)
        cap.terminate()
        cap.wait()
    finally:
        sh("ip", "netns", "del", ns, check=False)


S7_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.2", 102)); s.listen(1)
c, _ = s.accept()
for reply in ("0300001611d00001000100c0010ac1020100c2020102",                          # COTP CC
              "0300001b02f080320300000000000800000000f0000001000100f0",                # setup comm ack
              "0300001b02f080320300000001000200060000040 1ff040010002a"):            # read var ack
    c.recv(300); c.sendall(bytes.fromhex(reply.replace(" ", "")))
c.close()
"""

S7_CLIENT = """
import socket, time
c = socket.create_connection(("127.0.0.2", 102), source_address=("127.0.0.3", 0))
for req in ("0300001611e00000000100c0010ac1020100c2020102",                          # COTP CR, TSAP 01.02
            "0300001902f08032010000000000080000f0000001000101e0",                    # setup communication
            "0300001f02f080320100000001000e00000401120a10020002000184000000"):       # read DB1.DBW0
    c.sendall(bytes.fromhex(req)); c.recv(300); time.sleep(0.05)
c.close()
"""


def s7_exchange(out: str) -> None:
    ns = "otidsns7"
    sh("ip", "netns", "del", ns, check=False, stderr=subprocess.DEVNULL)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "set", "lo", "up", ns=ns)
        cap = subprocess.Popen(("ip", "netns", "exec", ns, "tcpdump", "-Z", "root", "-i", "lo", "-w", out, "-U", "--immediate-mode", "tcp"),
                               stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        server = subprocess.Popen(("ip", "netns", "exec", ns, sys.executable, "-c", S7_SERVER))
        time.sleep(0.5)
        sh(sys.executable, "-c", S7_CLIENT, ns=ns)
        server.wait(timeout=10)
        time.sleep(1.5)
        cap.terminate()
        cap.wait()
    finally:
        sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "net-basics.pcap"))
    modbus_udp(os.path.join(HERE, "modbus-udp.pcap"))
    s7_exchange(os.path.join(HERE, "s7comm-exchange.pcap"))
