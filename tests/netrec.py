"""Connection records and ARP frames built the way the producer (ids/flow/conn.py) writes them, for the
network detector tests: each helper stands for one thing a real tool does on the wire (nmap's SYN probe
answered by RST, a Modbus poll that completes, a spoofed SYN nobody acknowledges)."""
from __future__ import annotations

from ids.flow.conn import ArpPacket, ConnRecord

NS = 1_000_000_000
T0 = 1_764_000_000 * NS

_seq = [0]


def conn(start_s: float, client: str, server: str, port: int, *, transport="tcp", state="SF", history="ShADadFf",
         cpay=0, spay=0, cpk=None, spk=None, sport=40000, protocol=None, notes=(), dur_s=0.01,
         cmac="02-00-00-00-00-01", smac="02-00-00-00-00-02", vlan=None) -> ConnRecord:
    _seq[0] += 1
    start = T0 + int(start_s * NS)
    if cpk is None:
        cpk = 1 if state in ("S0", "REJ", "OTH") else 4
    if spk is None:
        spk = 0 if state == "S0" else (1 if state == "REJ" else 4)
    return ConnRecord(ts=start + int(dur_s * NS), start=start, flow_id=_seq[0], transport=transport,
                      protocol=protocol, identified_by="port" if protocol else None, client_ip=client,
                      client_port=sport, client_mac=cmac, server_ip=server, server_port=port, server_mac=smac,
                      vlan=vlan, community_id=f"1:test{_seq[0]}", client_packets=cpk,
                      client_bytes=cpk * 60 + cpay, server_packets=spk, server_bytes=spk * 60 + spay,
                      client_payload=cpay, server_payload=spay, state=state, history=history, missed_bytes=0,
                      notes=tuple(notes))


def syn_closed(t, c, s, port, **kw):
    """nmap -sS against a closed port: SYN, RST-ACK (Zeek REJ, history Sr)."""
    return conn(t, c, s, port, state="REJ", history="Sr", **kw)


def syn_open(t, c, s, port, **kw):
    """nmap -sS against an open port: SYN, SYN-ACK, RST from the scanner (Zeek RSTO/RSTOS0-like, no data)."""
    return conn(t, c, s, port, state="RSTO", history="ShR", cpk=2, spk=1, **kw)


def syn_unanswered(t, c, s, port, **kw):
    """A SYN nobody answered (filtered port, absent host, spoofed flood source): Zeek S0."""
    return conn(t, c, s, port, state="S0", history="S", **kw)


def modbus_poll(t, c, s, **kw):
    """A Modbus/TCP connection that carried requests and responses and closed normally."""
    return conn(t, c, s, 502, state="SF", history="ShADadFf", cpay=12 * 50, spay=29 * 50, cpk=55, spk=55,
                protocol="modbus", **kw)


def udp(t, c, s, port, answered=True, **kw):
    return conn(t, c, s, port, transport="udp", state="SF" if answered else "S0", history="Dd" if answered else "D",
                cpay=20, spay=40 if answered else 0, cpk=1, spk=1 if answered else 0, **kw)


def ping(t, c, s, answered=True, **kw):
    return conn(t, c, s, 0, transport="icmp", sport=8, state="OTH", history="", cpay=56, spay=56 if answered else 0,
                cpk=1, spk=1 if answered else 0, **kw)


def arp(t, op, smac, sip, tip, tmac="00-00-00-00-00-00", dst=None, vlan=None) -> ArpPacket:
    ts = T0 + int(t * NS)
    return ArpPacket(ts=ts, op=op, sender_mac=smac, sender_ip=sip, target_mac=tmac, target_ip=tip, eth_src=smac,
                     eth_dst=dst or ("FF-FF-FF-FF-FF-FF" if op == 1 else tmac), vlan=vlan)


def run(detector, events) -> list:
    out = []
    for ev in events:
        out += detector.on_event(ev) or []
    out += detector.flush(events[-1].ts if events else 0) or []
    return out
