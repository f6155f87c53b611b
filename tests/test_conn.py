"""Connection records (dataset otids.conn, ids.flow.conn) and ARP packets, on real traffic between two network
namespaces (pcaps/make_network_captures.py: arping, ping, ping6, a TCP exchange, a refused connection, UDP to
a closed port, nmap NULL/Xmas/FIN/SYN probes), checked against Zeek's conn_state/history vocabulary and the
Community ID reference library."""
from __future__ import annotations

from pathlib import Path

import communityid
import pytest

from ids.config import Config
from ids.flow.conn import ArpPacket, ConnRecord
from ids.pipeline import Collector, Run, analyze

ROOT = Path(__file__).resolve().parent.parent
NET = ROOT / "pcaps" / "net-basics.pcap"


class Spy:
    """A detector that keeps what it is given (the engine's routing is under test, not a detector)."""

    def __init__(self):
        self.seen = []

    def on_event(self, ev):
        self.seen.append(ev)

    def flush(self, ts):
        return None


@pytest.fixture(scope="module")
def net():
    spy, col = Spy(), Collector()
    run = Run(Config(), [spy], [col], [col])
    run.analyze_file(str(NET))
    run.finish()
    conns = [e for e in col.events if type(e) is ConnRecord]
    return run, spy, col, conns


def _one(conns, **kw) -> ConnRecord:
    got = [c for c in conns if all(getattr(c, k) == v for k, v in kw.items())]
    assert len(got) == 1, (kw, got)
    return got[0]


def test_tcp_exchange_is_sf_with_zeek_history(net):
    c = _one(net[3], transport="tcp", server_port=8080)
    assert (c.client_ip, c.server_ip) == ("10.99.0.1", "10.99.0.2")
    assert c.state == "SF" and c.history == "ShADadfF"  # the server closed first: f before F
    assert (c.client_payload, c.server_payload) == (5, 5)  # "hello", "world"
    assert (c.client_packets, c.server_packets) == (6, 5)
    assert c.client_bytes == 60 + 4 * 52 + 57  # IP bytes (from tshark): SYN 60, four ACK/FIN 52, "hello" 57
    assert c.client_mac == "02-99-00-00-00-01" and c.server_mac == "02-99-00-00-00-02"
    assert c.end - c.start == c.duration > 0 and c.ts >= c.end


def test_refused_connection_and_scans(net):
    conns = net[3]
    rej = [c for c in conns if c.transport == "tcp" and c.state == "REJ"]
    assert len(rej) == 2 and {c.history for c in rej} == {"Sr"}  # connect() and nmap -sS to a closed port
    notes = {n for c in conns for n in c.notes if n.startswith("tcp_flags")}
    assert notes == {"tcp_flags_null", "tcp_flags_xmas", "tcp_flags_fin_no_ack"}  # -sN, -sX, -sF
    xmas = [c for c in conns if "tcp_flags_xmas" in c.notes]
    assert len(xmas) == 1 and xmas[0].state == "RSTR" and "tcp_flags_fin_no_ack" not in xmas[0].notes


def test_udp_and_icmp(net):
    conns = net[3]
    u = _one(conns, transport="udp")
    assert u.state == "S0" and u.history == "D" and u.client_payload == 5
    ping = _one(conns, transport="icmp", client_port=8)
    assert (ping.server_port, ping.client_packets, ping.server_packets) == (0, 2, 2)  # request and reply: one
    unreach = _one(conns, transport="icmp", client_port=3)  # port unreachable, sent by the UDP server's host
    assert unreach.client_ip == "10.99.0.2" and unreach.server_port == 3 and unreach.server_packets == 0
    ping6 = _one(conns, transport="ipv6-icmp", client_port=128)
    assert ping6.server_port == 129 and (ping6.client_packets, ping6.server_packets) == (2, 2)
    cid = communityid.CommunityID()
    assert ping.community_id == cid.calc(communityid.FlowTuple.make_icmp("10.99.0.1", "10.99.0.2", 8, 0))
    assert unreach.community_id == cid.calc(communityid.FlowTuple.make_icmp("10.99.0.2", "10.99.0.1", 3, 3))
    assert ping6.community_id == cid.calc(communityid.FlowTuple.make_icmp6("fd99::1", "fd99::2", 128, 0))


def test_arp_is_one_conversation_per_pair_and_internal_packets(net):
    run, spy, col, conns = net
    arp = _one(conns, transport="ether", ether_type=0x0806)
    assert arp.client_mac == "02-99-00-00-00-01" and arp.server_mac == "02-99-00-00-00-02"
    assert (arp.client_packets, arp.server_packets) == (7, 7) and arp.client_ip is None
    pk = [e for e in spy.seen if type(e) is ArpPacket]
    assert len(pk) == 14 and {p.op for p in pk} == {1, 2}
    assert pk[0].sender_ip == "10.99.0.1" and pk[0].target_ip == "10.99.0.2" and pk[0].eth_dst == "FF-FF-FF-FF-FF-FF"
    # internal: detectors get them, sinks and the summary counts never do
    assert not [e for e in col.events if type(e) is ArpPacket]
    assert not [k for k in run.engine.events if k[0] == "otids.arp"]
    assert sum(1 for e in spy.seen if type(e) is ConnRecord) == len(conns)


def test_documents_are_ecs(net):
    docs = [c.to_doc() for c in net[3]]
    d = [x for x in docs if x["network"]["transport"] == "tcp" and x["destination"].get("port") == 8080][0]
    assert d["event"]["category"] == ["network"] and d["event"]["type"] == ["connection", "end"]
    assert d["event"]["dataset"] == "otids.conn" and d["event"]["duration"] > 0
    assert d["network"]["bytes"] == d["source"]["bytes"] + d["destination"]["bytes"]
    assert d["network"]["packets"] == 11 and d["otids"]["conn"]["state"] == "SF"
    e = [x for x in docs if x["network"]["transport"] == "ether"][0]
    assert "ip" not in e["source"] and e["otids"]["conn"]["ether_type"] == "0x0806"


def test_every_flow_kind_ends_in_one_record_in_a_stable_order(net):
    conns = net[3]
    ids = [c.flow_id for c in conns]
    assert len(ids) == len(set(ids)) == net[0].table.stats["flows"]
    again = [c for c in analyze([str(NET)])[1].events if type(c) is ConnRecord]
    assert again == conns
