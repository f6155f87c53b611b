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
    cap = subprocess.Popen(("ip", "netns", "exec", A, "tcpdump", "-i", "vetha", "-w", out, "-U", "-s", "0"),
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

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "net-basics.pcap"))
