"""Connection-record bookkeeping for the flow table: Zeek's history letters and conn_state, community ids for
every IP protocol, and the ConnRecord a flow becomes when it ends (ids.flow.conn is the contract).

Zeek's vocabulary (docs.zeek.org, base/protocols/conn/main.zeek, `conn_state` and `history`): history letters
are upper case for the originator (our client) and lower case for the responder, each recorded the first time
it happens in that direction. The per-packet cost is one bit test (`seen`): only a packet whose flag/payload
combination is new for its direction comes here.
"""
from __future__ import annotations

import base64
import hashlib
import struct

from .conn import ConnRecord

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

# ICMP request/reply pairs (community-id-spec, "ICMP port equivalents"): type -> counterpart type
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
               139: 140, 140: 139, 144: 145, 145: 144}
ICMP4_REQUESTS = frozenset((8, 13, 15, 10, 17))
ICMP6_REQUESTS = frozenset((128, 133, 135, 130, 139, 144))

TRANSPORTS = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp", 47: "gre", 50: "esp", 51: "ah",
              2: "igmp", 89: "ospf", 103: "pim", 112: "vrrp", 41: "ipv6", 4: "ipip"}


def is_host(raw: bytes) -> bool:
    """A unicast address that can be a station: not multicast, broadcast or unspecified."""
    if len(raw) == 4:
        return raw[0] < 224 and raw != b"\0\0\0\0" and raw[3] != 255
    return raw[0] != 0xFF and any(raw)


def transport_name(proto: int) -> str:
    return TRANSPORTS.get(proto) or f"ip-{proto}"


def icmp_ports(proto: int, itype: int, code: int) -> tuple[int, int, bool]:
    """(port 1, port 2, one-way) of an ICMP packet as the Community ID spec defines them."""
    pairs = ICMP6_PAIRS if proto == 58 else ICMP4_PAIRS
    other = pairs.get(itype)
    if other is None:
        return itype, code, True
    return itype, other, False


def community_id_any(proto: int, saddr: bytes, daddr: bytes, sport: int | None, dport: int | None,
                     one_way: bool = False, seed: int = 0) -> str:
    """Community ID v1 for any IP protocol: ports for TCP, UDP, SCTP and ICMP (type/code equivalents),
    none for the rest; endpoints ordered unless the ICMP message is one-way."""
    if sport is not None and not one_way and (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    elif sport is None and saddr > daddr:
        saddr, daddr = daddr, saddr
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!Bx", proto)
    if sport is not None:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


# ---------------------------------------------------------------------------------------------- history

def tcp_letters(flags: int, has_payload: bool) -> str:
    """Zeek history letters (originator case) for one TCP packet, in the order Zeek adds them."""
    out = ""
    syn, fin, rst = flags & SYN, flags & FIN, flags & RST
    if syn and (fin or rst):
        out += "Q"  # multi-flag packet
    elif fin and rst:
        out += "I"  # inconsistent packet
    if syn:
        out += "H" if flags & ACK else "S"
    elif flags & ACK and not (fin or rst or has_payload):
        out += "A"
    if has_payload:
        out += "D"
    if fin:
        out += "F"
    if rst:
        out += "R"
    return out


def unusual_flags(flags: int) -> str | None:
    """The note for a TCP flag combination no normal stack sends (OS fingerprinting and stealth scans)."""
    f = flags & 0x3F
    if f == 0:
        return "tcp_flags_null"
    if f & (FIN | PSH | URG) == FIN | PSH | URG:
        return "tcp_flags_xmas"
    if f & (SYN | FIN) == SYN | FIN:
        return "tcp_flags_syn_fin"
    if f & (SYN | RST) == SYN | RST:
        return "tcp_flags_syn_rst"
    if f & FIN and not f & ACK:
        return "tcp_flags_fin_no_ack"
    return None


def tcp_history(flow, d: int, flags: int, has_payload: bool, bit: int) -> None:
    """A flag/payload combination new for direction `d` (0 client, 1 server): add its letters and notes."""
    flow.hseen[d] |= bit
    letters = tcp_letters(flags, has_payload)
    hist = flow.hist
    for ch in letters:
        ch = ch if d == 0 else ch.lower()
        if ch not in hist:
            hist.append(ch)
    note = unusual_flags(flags)
    if note is not None:
        flow.cnotes.add(note)


def simple_history(flow, d: int, has_payload: bool) -> None:
    """UDP: Zeek records D/d for payload in each direction."""
    if has_payload:
        ch = "D" if d == 0 else "d"
        if ch not in flow.hist:
            flow.hist.append(ch)


# ---------------------------------------------------------------------------------------------- state

def _endpoint(letters: set, sent: int, established: bool) -> str:
    if "R" in letters:
        return "RESET"
    if "F" in letters:
        return "CLOSED"
    if established:
        return "ESTABLISHED"
    if "S" in letters:
        return "SYN_SENT"
    if "H" in letters:
        return "SYN_ACK_SENT"
    return "PARTIAL" if sent else "INACTIVE"


def conn_state(flow) -> str:
    """Zeek's conn_state from what each endpoint did (base/protocols/conn/main.zeek, `conn_state`)."""
    proto = flow.proto
    if proto == 17:
        o, r = flow.pkts[0] > 0, flow.pkts[1] > 0
        return ("SF" if r else "S0") if o else ("SHR" if r else "OTH")
    if proto != 6:
        return "OTH"
    hist = [c for c in flow.hist if c != "^"]
    ol = {c for c in hist if c.isupper()}
    rl = {c.upper() for c in hist if c.islower()}
    est = "S" in ol and "H" in rl and bool(ol & {"A", "D", "F"})
    os_ = _endpoint(ol, flow.pkts[0], est)
    rs = _endpoint(rl, flow.pkts[1], est)
    o_inactive = os_ in ("INACTIVE", "PARTIAL")
    r_inactive = rs in ("INACTIVE", "PARTIAL")
    if rs == "RESET":
        if os_ in ("SYN_SENT", "SYN_ACK_SENT") or (os_ == "RESET" and not flow.bytes[0] and not flow.bytes[1]):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == "RESET":
        if r_inactive:
            # Zeek: history matches ^?S[^HAFGIQ]*R.*
            h = "".join(hist)
            if h.startswith("S") and "R" in h and not set(h[:h.index("R")]) & set("HAFGIQ"):
                return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == "CLOSED" and os_ == "CLOSED":
        return "SF"
    if os_ == "CLOSED":
        return "SH" if r_inactive else "S2"
    if rs == "CLOSED":
        return "SHR" if o_inactive else "S3"
    if os_ == "SYN_SENT" and rs == "INACTIVE":
        return "S0"
    if os_ == "ESTABLISHED" and rs == "ESTABLISHED":
        return "S1"
    return "OTH"


# ---------------------------------------------------------------------------------------------- records

def record(flow, ts: int, why: str) -> ConnRecord:
    """The ConnRecord of a flow that ends now (`why`: end, timeout, evicted, reused)."""
    from ..events import ip_text, mac_text
    proto = flow.proto
    notes = set(flow.cnotes)
    if flow.midstream:
        notes.add("midstream")
    if why == "evicted":
        notes.add("evicted")
    cs, ss = flow.to_server, flow.to_client
    if proto == 256:  # non-IP Ethernet conversation
        return ConnRecord(ts, flow.first_ts, flow.flow_id, "ether", flow.app or None, flow.ident_by,
                          None, None, mac_text(flow.client_mac), None, None, mac_text(flow.server_mac),
                          flow.vlan, None,
                          flow.pkts[0], flow.ipb[0], flow.pkts[1], flow.ipb[1], flow.bytes[0], flow.bytes[1],
                          "OTH", "", 0, flow.etype, tuple(sorted(notes)), flow.last_ts, None, None, None)
    if proto == 6 or proto == 17:
        ctx = flow.context  # built for the flow's events, or now: its texts serve the record too
        cid = ctx.community_id
        cip, cmac, sip, smac = ctx.client_ip, ctx.client_mac, ctx.server_ip, ctx.server_mac
    elif proto == 1 or proto == 58:  # ports are the ICMP type and its counterpart or code; etype 1: one-way
        cid = community_id_any(proto, flow.client_ip, flow.server_ip, flow.client_port, flow.server_port,
                               flow.etype == 1)
    else:
        cid = community_id_any(proto, flow.client_ip, flow.server_ip, None, None)
    if proto != 6 and proto != 17:
        cip, cmac = ip_text(flow.client_ip), mac_text(flow.client_mac)
        sip, smac = ip_text(flow.server_ip), mac_text(flow.server_mac)
    if proto == 6:
        hist, missed = "".join(flow.hist), cs.gap_bytes + ss.gap_bytes
    elif proto == 17:
        hist, missed = "".join(flow.hist), 0
    else:
        hist, missed = "", 0
    has_ports = proto in (6, 17, 1, 58)
    return ConnRecord(ts, flow.first_ts, flow.flow_id, transport_name(proto), flow.app or None, flow.ident_by,
                      cip, flow.client_port if has_ports else None, cmac,
                      sip, flow.server_port if has_ports else None, smac,
                      flow.vlan, cid,
                      flow.pkts[0], flow.ipb[0], flow.pkts[1], flow.ipb[1], flow.bytes[0], flow.bytes[1],
                      conn_state(flow), hist, missed, None, tuple(sorted(notes)), flow.last_ts,
                      4 if len(flow.client_ip) == 4 else 6, proto, flow.dissector)
