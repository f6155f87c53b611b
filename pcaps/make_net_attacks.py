#!/usr/bin/env python3
"""Regenerate pcaps/net-*.pcap: real reconnaissance and spoofing tools against a small Ethernet segment of
network namespaces joined by a bridge, captured on the bridge with tcpdump (needs root, iproute2, tcpdump,
nmap, hping3, arping). tests/test_network_e2e.py states what the network detectors must say about each.

Hosts: 10.98.0.1 an HMI (also the segment's gateway) polling 10.98.0.10, a PLC stand-in (Modbus/TCP frames
on tcp/502 answered with a fixed read response, and a listener on tcp/20000 where a DNP3 outstation would
be); 10.98.0.66 the attacker. Every capture carries the HMI's polling throughout.

  net-probe.pcap      nmap -sS -Pn -p 502 10.98.0.10          (a single-port probe: no port scan)
  net-scan.pcap       nmap -sS --top-ports 300; nmap -sU -p 1-60; nmap -O   (port scan, UDP scan, OS probes)
  net-synflood.pcap   hping3 -S -p 20000 --rand-source -c 600 (spoofed-source SYN flood on the outstation port)
  net-arpspoof.pcap   arping -U -P -S 10.98.0.1 -c 12         (the attacker claims the gateway's address)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SW, HMI, PLC, ATT = "otidsx-sw", "otidsx-hmi", "otidsx-plc", "otidsx-att"
HOSTS = {HMI: ("10.98.0.1", "02:00:5e:98:00:01"), PLC: ("10.98.0.10", "00:80:f4:98:00:10"),
         ATT: ("10.98.0.66", "02:00:5e:98:00:66")}

PLC_SERVER = r"""
import socket, threading
def modbus(c):
    while True:
        req = c.recv(260)
        if not req:
            return
        c.sendall(req[:2] + bytes.fromhex("00000007") + req[6:8] + bytes.fromhex("0400070008"))
def serve(port, handler):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.98.0.10", port)); s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
threading.Thread(target=serve, args=(20000, lambda c: c.recv(64)), daemon=True).start()
serve(502, modbus)
"""

HMI_POLL = r"""
import socket, sys, time
end = time.time() + float(sys.argv[1])
s = socket.create_connection(("10.98.0.10", 502)); tid = 0
while time.time() < end:
    tid = (tid + 1) & 0xFFFF
    s.sendall(tid.to_bytes(2, "big") + bytes.fromhex("000000060103000a0002")); s.recv(64)
    time.sleep(0.5)
s.close()
"""


def sh(*cmd, ns=None, check=True, **kw):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    return subprocess.run(cmd, check=check, **kw)


def bg(*cmd, ns):
    return subprocess.Popen(("ip", "netns", "exec", ns) + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def setup() -> None:
    teardown()
    for n in (SW, *HOSTS):
        sh("ip", "netns", "add", n)
    sh("ip", "link", "add", "br0", "type", "bridge", ns=SW)
    sh("ip", "link", "set", "br0", "up", ns=SW)
    for i, (n, (ip, mac)) in enumerate(HOSTS.items()):
        sh("ip", "link", "add", f"p{i}", "netns", SW, "type", "veth", "peer", "name", "eth0", "netns", n)
        sh("ip", "link", "set", f"p{i}", "master", "br0", ns=SW)
        sh("ip", "link", "set", f"p{i}", "up", ns=SW)
        sh("ip", "link", "set", "lo", "up", ns=n)
        sh("ip", "link", "set", "eth0", "address", mac, ns=n)
        sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=n)
        sh("ip", "link", "set", "eth0", "up", ns=n)
        sh("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1", ns=n)
        if n != HMI:
            sh("ip", "route", "add", "default", "via", "10.98.0.1", ns=n)
    sh("sysctl", "-qw", "net.ipv6.conf.br0.disable_ipv6=1", ns=SW)
    sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", ns=PLC)  # answer every UDP probe (closed: unreachable)
    time.sleep(1.5)  # bridge ports forwarding


def teardown() -> None:
    for n in (SW, *HOSTS):
        sh("ip", "netns", "del", n, check=False, stderr=subprocess.DEVNULL)


def capture(name: str, seconds: float, *attack: tuple) -> None:
    """Poll for `seconds`; run the attack commands (namespace, argv) one after the other from 2 s on."""
    out = os.path.join(HERE, name)
    for n in HOSTS:
        sh("ip", "neigh", "flush", "all", ns=n)
    dump = subprocess.Popen(("ip", "netns", "exec", SW, "tcpdump", "-i", "br0", "-n", "-U", "-s", "0", "-w", out,
                             "not ip6"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    poll = bg(sys.executable, "-c", HMI_POLL, str(seconds), ns=HMI)
    time.sleep(2)
    for ns, *argv in attack:
        sh(*argv, ns=ns, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    poll.wait()
    time.sleep(1)
    dump.send_signal(2)
    dump.wait()
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, tcpdump)")
    setup()
    plc = bg(sys.executable, "-c", PLC_SERVER, ns=PLC)
    try:
        time.sleep(1)
        capture("net-probe.pcap", 10, (ATT, "nmap", "-sS", "-Pn", "-n", "-p", "502", "10.98.0.10"))
        capture("net-scan.pcap", 14,
                (ATT, "nmap", "-sS", "-Pn", "-n", "--top-ports", "300", "10.98.0.10"),
                (ATT, "nmap", "-sU", "-Pn", "-n", "-p", "1-60", "--max-retries", "0", "10.98.0.10"),
                (ATT, "nmap", "-O", "-Pn", "-n", "-p", "1,502", "10.98.0.10"))
        capture("net-synflood.pcap", 8, (ATT, "hping3", "-q", "-S", "-p", "20000", "--rand-source", "-i", "u2000",
                                         "-c", "600", "10.98.0.10"))
        capture("net-arpspoof.pcap", 12, (ATT, "arping", "-q", "-U", "-P", "-S", "10.98.0.1", "-i", "eth0", "-c", "12",
                                          "-W", "0.5", "10.98.0.10"))
    finally:
        plc.kill()
        teardown()


if __name__ == "__main__":
    main()
