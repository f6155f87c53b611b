"""The findings of the always-on network detectors: one rule per kind, with severity, an explanation for
the analyst and MITRE ATT&CK for ICS techniques (ids/detect/attack.py). docs/NETWORK.md is the reference."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetRule:
    id: str
    name: str
    severity: str
    description: str
    attack: tuple[str, ...]


_R = (
    # ARP watch (arp.py)
    NetRule("otids.network.arp.new_station", "New ARP station", "low",
            "A hardware address never seen in ARP before announced itself after the warm-up: a new or replaced "
            "device, or a laptop plugged into the OT segment.", ("T0864",)),
    NetRule("otids.network.arp.ip_claimed", "IP address claimed by a second MAC", "high",
            "ARP said an IP address belongs to a hardware address other than the one that held it: ARP spoofing "
            "(the classic man-in-the-middle in front of a PLC), an address conflict, or a replaced device.",
            ("T0830",)),
    NetRule("otids.network.arp.mac_many_ips", "MAC claiming many IP addresses", "high",
            "One hardware address claimed many IP addresses in ARP: ARP spoofing of several hosts, or a router "
            "answering by proxy ARP.", ("T0830",)),
    NetRule("otids.network.arp.gratuitous_burst", "Burst of gratuitous or unsolicited ARP replies", "medium",
            "One hardware address sent many gratuitous ARPs or replies nobody asked for in a short time: ARP "
            "cache poisoning tools re-announce every few seconds.", ("T0830",)),
    # scans and floods (scan.py)
    NetRule("otids.network.scan.port_scan", "TCP port scan", "medium",
            "One source tried many TCP ports of one host without a conversation on them (vertical scan).",
            ("T0846", "T0888")),
    NetRule("otids.network.scan.address_scan", "TCP address scan", "medium",
            "One source tried one TCP port on many hosts without a conversation (horizontal scan).",
            ("T0846",)),
    NetRule("otids.network.scan.udp_scan", "UDP scan", "medium",
            "One source sent unanswered UDP datagrams to many ports of one host, or one port of many hosts.",
            ("T0846", "T0888")),
    NetRule("otids.network.scan.icmp_sweep", "ICMP sweep", "medium",
            "One source sent unanswered ICMP echo, timestamp or address-mask requests to many hosts (ping sweep).",
            ("T0846",)),
    NetRule("otids.network.flood.syn_flood", "SYN flood", "high",
            "Many connection attempts without a conversation to one host and port in a short time, from one or "
            "many (often spoofed) sources.", ("T0814",)),
    # TCP flags (flags.py)
    NetRule("otids.network.tcp.flag_probe", "Unusual TCP flag combination", "medium",
            "TCP segments with flag combinations no TCP stack sends in a conversation (no flags, FIN+PSH+URG, "
            "SYN+FIN, SYN+RST, FIN without ACK): OS fingerprinting and stealth scans (nmap -O, -sN, -sF, -sX).",
            ("T0888", "T0846")),
)

RULES: dict[str, NetRule] = {r.id: r for r in _R}
