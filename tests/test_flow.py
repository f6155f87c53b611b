"""Flow table and TCP reassembly through the whole pipeline: ordering, retransmissions, overlaps (first copy
wins), gaps (reported, parsing resumes), caps (reported, never silent), roles, timeouts, probing, IP
fragments, and bounded memory on long streams."""
from __future__ import annotations

import struct

from craft import MAC_A, MAC_B, TcpConv, eth, ip4, ipv4, mbap, tcp, write_pcap
from ids.config import Config, FlowConfig, ProtocolsConfig, DecodeConfig
from ids.events import FlowNotice
from ids.protocols.modbus.messages import ModbusTransaction
from ids.pipeline import analyze

READ = bytes([3, 0, 10, 0, 2])  # read holding registers 10..11
RESP = bytes([3, 4, 0, 7, 0, 8])


def run(tmp_path, frames, config=None, name="x.pcap"):
    p = tmp_path / name
    write_pcap(p, frames)
    r, col = analyze([str(p)], config)
    return r, [e for e in col.events if isinstance(e, ModbusTransaction)], \
        [e for e in col.events if isinstance(e, FlowNotice)], col.alerts


def pair(conv, tid, unit=1):
    conv.send(True, mbap(tid, unit, READ))
    conv.send(False, mbap(tid, unit, RESP))


def test_clean_exchange_fields(tmp_path):
    conv = TcpConv().handshake()
    pair(conv, 7)
    conv.close()
    r, tx, notes, alerts = run(tmp_path, conv.frames)
    assert len(tx) == 1 and not notes and not alerts
    t = tx[0]
    assert (t.transaction_id, t.unit_id, t.function_code, t.function) == (7, 1, 3, "read_holding_registers")
    assert t.request.address == 10 and t.request.quantity == 2 and t.response.values == (7, 8)
    assert t.outcome == "success" and t.anomalies == ()
    f = t.flow
    assert (f.client_ip, f.client_port, f.server_ip, f.server_port) == ("10.0.0.1", 40000, "10.0.0.2", 502)
    assert (f.client_mac, f.server_mac, f.midstream) == ("02-00-00-00-00-01", "02-00-00-00-00-02", False)
    d = t.to_doc()
    from ids.events import community_id  # checked against the spec's vector below
    assert d["network"]["community_id"] == community_id(6, ip4("10.0.0.2"), ip4("10.0.0.1"), 502, 40000)
    assert d["event"]["duration"] == 1_000_000


def test_community_id_matches_spec_vector():
    # corelight/community-id-spec baseline: TCP 128.232.110.120:34855 -> 66.35.250.204:80, seed 0
    from ids.events import community_id
    assert community_id(6, ip4("128.232.110.120"), ip4("66.35.250.204"), 34855, 80) == \
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id(6, ip4("66.35.250.204"), ip4("128.232.110.120"), 80, 34855) == \
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_several_pdus_in_one_segment_and_one_pdu_in_many(tmp_path):
    conv = TcpConv().handshake()
    conv.send(True, mbap(1, 1, READ) + mbap(2, 1, READ) + mbap(3, 1, READ))
    resp = mbap(1, 1, RESP) + mbap(2, 1, RESP) + mbap(3, 1, RESP)
    for i in range(len(resp)):  # one byte per segment
        conv.send(False, resp[i:i + 1])
    conv.close()
    _, tx, notes, _ = run(tmp_path, conv.frames)
    assert [t.transaction_id for t in tx] == [1, 2, 3]
    assert all(t.response.values == (7, 8) for t in tx) and not notes


def test_out_of_order_and_retransmission(tmp_path):
    conv = TcpConv().handshake()
    a, b = mbap(1, 1, READ), mbap(2, 1, READ)
    s0 = conv.cseq
    conv.send(True, b, seq=s0 + len(a), advance=False)  # second PDU first
    conv.send(True, a, seq=s0, advance=False)
    conv.send(True, a, seq=s0, advance=False)  # retransmission of the first
    conv.cseq += len(a) + len(b)
    conv.send(False, mbap(1, 1, RESP) + mbap(2, 1, RESP))
    conv.close()
    r, tx, notes, _ = run(tmp_path, conv.frames)
    assert [t.transaction_id for t in tx] == [1, 2]
    assert all(not t.anomalies for t in tx) and not notes
    assert r.table.stats["retransmissions"] == 1


def test_overlap_first_copy_wins(tmp_path):
    conv = TcpConv().handshake()
    s0 = conv.cseq
    a = mbap(1, 1, READ)
    evil = mbap(1, 1, bytes([6, 0, 10, 0xFF, 0xFF]))  # same length, different content
    conv.send(True, mbap(2, 1, READ), seq=s0 + len(a), advance=False)
    conv.send(True, a, seq=s0, advance=False)
    conv.send(True, evil, seq=s0, advance=False)  # later copy of delivered bytes: ignored
    conv.cseq += 2 * len(a)
    conv.send(False, mbap(1, 1, RESP) + mbap(2, 1, RESP))
    conv.close()
    _, tx, _, _ = run(tmp_path, conv.frames)
    assert [t.function_code for t in tx] == [3, 3]


def test_gap_reported_and_parsing_resumes(tmp_path):
    conv = TcpConv().handshake()
    pair(conv, 1)
    lost = mbap(2, 1, READ)
    conv.cseq += len(lost)  # request 2 never captured ...
    conv.send(False, mbap(2, 1, RESP))  # ... but answered, and the server's ACK covers it
    conv.send(True, mbap(3, 1, READ))
    conv.send(False, mbap(3, 1, RESP))
    conv.close()
    _, tx, notes, _ = run(tmp_path, conv.frames)
    gaps = [n for n in notes if n.action == "tcp_gap"]
    assert len(gaps) == 1 and gaps[0].details == {"bytes": len(lost), "direction": "to_server"}
    assert [(t.transaction_id, t.outcome) for t in tx] == [(1, "success"), (2, "failure"), (3, "success")]
    assert tx[1].anomalies == ("unsolicited_response",)


def test_gap_mid_pdu_resynchronises(tmp_path):
    conv = TcpConv().handshake()
    pair(conv, 1)
    # the client sends two requests in two segments; the first segment (1.5 PDUs) is lost
    two = mbap(2, 1, READ) + mbap(3, 1, READ)
    cut = len(two) - 5
    conv.cseq += cut
    conv.send(True, two[cut:] + mbap(4, 1, READ))
    conv.send(False, mbap(4, 1, RESP))
    conv.close()
    r, tx, notes, _ = run(tmp_path, conv.frames)
    # the trailing 5 bytes of request 3 follow the hole; they cannot be parsed and must not be
    # taken for a frame, request 4 after them must be found again
    assert [t.transaction_id for t in tx if t.outcome == "success"] == [1, 4]


def test_midstream_pickup_roles_from_port(tmp_path):
    conv = TcpConv(cport=40000, sport=502)
    conv.send(False, mbap(9, 1, RESP))  # a response first: capture started mid-exchange
    pair(conv, 10)
    _, tx, _, _ = run(tmp_path, conv.frames)
    assert tx[0].flow.midstream and tx[0].flow.server_port == 502
    assert [t.anomalies for t in tx] == [("unsolicited_response",), ()]


def test_roles_from_syn_ack_only(tmp_path):
    conv = TcpConv(cport=40000, sport=502).handshake()
    frames = conv.frames[1:]  # the SYN was not captured
    conv.frames = frames
    pair(conv, 1)
    _, tx, _, _ = run(tmp_path, conv.frames)
    assert tx[0].flow.client_port == 40000 and not tx[0].flow.midstream


def test_probe_finds_modbus_on_other_port_and_not_other_protocols(tmp_path):
    conv = TcpConv(sport=1502).handshake()
    pair(conv, 1)
    pair(conv, 2)
    other = TcpConv(cport=40001, sport=1503).handshake()
    other.send(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    other.send(False, b"HTTP/1.1 200 OK\r\n\r\n")
    _, tx, _, _ = run(tmp_path, conv.frames + other.frames)
    assert [t.transaction_id for t in tx] == [1, 2] and tx[0].flow.server_port == 1502
    cfg = Config(protocols=ProtocolsConfig(probe=False))
    _, tx, _, _ = run(tmp_path, conv.frames, cfg, name="y.pcap")
    assert tx == []


def test_sequence_number_wraparound(tmp_path):
    conv = TcpConv()
    conv.cseq = 0xFFFFFFFF - 5
    conv.handshake()
    pair(conv, 1)
    pair(conv, 2)
    _, tx, notes, _ = run(tmp_path, conv.frames)
    assert [t.outcome for t in tx] == ["success", "success"] and not notes


def test_flow_cap_evicts_and_says_so(tmp_path):
    frames = []
    for i in range(5):
        conv = TcpConv(cport=41000 + i).handshake()
        conv.ts += i * 10**9
        pair(conv, i)
        frames += conv.frames
    frames.sort(key=lambda x: x[0])
    cfg = Config(flow=FlowConfig(max_flows=2))
    _, tx, notes, alerts = run(tmp_path, frames, cfg)
    assert sorted(t.transaction_id for t in tx) == [0, 1, 2, 3, 4]  # nothing lost: evicted flows flushed
    full = [n for n in notes if n.action == "flow_table_full"]
    assert full and full[0].details["max_flows"] == 2
    assert any(a.rule_id == "otids.anomaly.flow.table_full" for a in alerts)


def test_stream_buffer_cap(tmp_path):
    conv = TcpConv().handshake()
    s0 = conv.cseq
    hole = mbap(1, 1, READ)
    seq = s0 + len(hole)
    for i in range(10):  # out-of-order data piles up behind a hole that never fills
        p = mbap(2 + i, 1, READ)
        conv.send(True, p, seq=seq, advance=False)
        seq += len(p)
    cfg = Config(flow=FlowConfig(max_stream_buffer=40))
    _, tx, notes, alerts = run(tmp_path, conv.frames, cfg)
    caps = [n for n in notes if n.action == "stream_buffer_cap"]
    assert caps and caps[0].details["max_bytes"] == 40
    assert any(n.action == "tcp_gap" for n in notes)
    assert sorted(t.transaction_id for t in tx) == list(range(2, 12))  # all unanswered, none lost
    assert any(a.rule_id == "otids.anomaly.flow.stream_buffer_cap" for a in alerts)


def test_unanswered_request_expires_on_timeout_not_only_at_end(tmp_path):
    conv = TcpConv().handshake()
    conv.send(True, mbap(1, 1, READ))
    conv.ts += 120 * 10**9  # two minutes of silence on this flow, then another flow's traffic
    other = TcpConv(cport=40002).handshake()
    other.ts = conv.ts
    other.handshake()
    pair(other, 5)
    p = tmp_path / "t.pcap"
    write_pcap(p, conv.frames + other.frames)
    _, col = analyze([str(p)])
    tx = [e for e in col.events if isinstance(e, ModbusTransaction)]
    # the unanswered request is emitted by the periodic sweep, before the later flow's exchange
    assert [(t.transaction_id, t.outcome) for t in tx][:2] == [(1, "unknown"), (5, "success")]
    assert "unanswered_request" in tx[0].anomalies


def test_ip_fragments_reassembled_and_overlap_flagged(tmp_path):
    c, s = ip4("10.0.0.1"), ip4("10.0.0.2")
    conv = TcpConv().handshake()
    seg = tcp(c, s, 40000, 502, conv.cseq, conv.sseq, "PA", mbap(1, 1, READ))
    a, b = seg[:16], seg[16:]
    frames = conv.frames + [
        (conv.ts + 1, eth(ipv4(c, s, 6, b, ident=77, frag_off=16, mf=False))),  # second fragment first
        (conv.ts + 2, eth(ipv4(c, s, 6, a, ident=77, frag_off=0, mf=True))),
    ]
    conv.cseq += len(mbap(1, 1, READ))
    conv.ts += 10
    conv.send(False, mbap(1, 1, RESP))
    frames += conv.frames[-1:]
    # an overlapping pair on another datagram
    seg2 = tcp(c, s, 40000, 502, conv.cseq, conv.sseq, "PA", mbap(2, 1, READ))
    frames += [(conv.ts + 5, eth(ipv4(c, s, 6, seg2[:24], ident=78, mf=True))),
               (conv.ts + 6, eth(ipv4(c, s, 6, seg2[16:], ident=78, frag_off=16)))]
    _, tx, notes, alerts = run(tmp_path, frames)
    assert [(t.transaction_id, t.outcome) for t in tx] == [(1, "success"), (2, "unknown")]
    assert [n.action for n in notes] == ["ip_fragment_overlap"]
    assert [a.rule_id for a in alerts if "fragment" in a.rule_id] == ["otids.anomaly.ip.fragment_overlap"]


def test_bad_checksum_recorded_not_dropped(tmp_path):
    conv = TcpConv().handshake()
    conv.send(True, mbap(1, 1, READ), bad_checksum=True)
    conv.send(False, mbap(1, 1, RESP))
    r, tx, notes, _ = run(tmp_path, conv.frames, Config(decode=DecodeConfig(checksums="on")))
    assert tx[0].outcome == "success"
    assert r.decoder.stats.bad_checksum == 1
    assert [n.action for n in notes] == ["bad_checksum"]
    r, tx, notes, _ = run(tmp_path, conv.frames, Config(decode=DecodeConfig(checksums="off")), name="off.pcap")
    assert r.decoder.stats.bad_checksum == 0 and tx[0].outcome == "success" and not notes


def test_long_stream_bounded_memory(tmp_path):
    conv = TcpConv().handshake()
    for i in range(3000):
        conv.send(True, mbap(i, 1, READ))
        if i % 3 == 0:  # half a response now, the rest in the next segment
            full = mbap(i, 1, RESP)
            conv.send(False, full[:5])
            conv.send(False, full[5:])
        else:
            conv.send(False, mbap(i, 1, RESP))
    p = tmp_path / "long.pcap"
    write_pcap(p, conv.frames)
    from ids.pipeline import Collector, Run
    col = Collector()
    r = Run(Config(), [], [col], [col])
    r.analyze_file(str(p))
    (flow, _), = [v for v in r.table.tcp.values() if v[1]]
    assert flow.to_server.segs in (None, {}) and flow.to_client.segs in (None, {}) and flow.to_server.buffered == 0
    assert flow.session.buf == [b"", b""] and flow.session.pending == {}
    assert flow.to_server.bytes == 3000 * len(mbap(0, 1, READ))
    r.finish()
    assert len(col.events) == 3001  # 3000 transactions and the connection record
    assert col.events[-1].dataset == "otids.conn" and col.events[-1].client_packets >= 3000
