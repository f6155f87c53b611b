"""Issue #16, session 8: hostile capture classes nobody had tried (docs/ROBUSTNESS.md, "Hostile captures
(session 8)"). Each test is the regression test of one finding and failed on the code before its fix; the
captures are crafted here (tests/craft.py), small, through the whole pipeline.
"""
from __future__ import annotations

import struct

import pytest

from craft import TcpConv, eth, ipv4, mbap, tcp, write_pcap
from ids.events import FlowNotice
from ids.protocols.modbus.messages import ModbusTransaction
from ids.pipeline import analyze

READ = bytes([3, 0, 10, 0, 2])  # read holding registers 10..11
RESP = bytes([3, 4, 0, 7, 0, 8])
WRITE = bytes([6, 0, 1, 0xDE, 0xAD])  # write single register 1


def run(tmp_path, frames, name="x.pcap"):
    p = tmp_path / name
    write_pcap(p, frames)
    r, col = analyze([str(p)])
    return ([e for e in col.events if isinstance(e, ModbusTransaction)],
            [e for e in col.events if isinstance(e, FlowNotice)], col.alerts)


def _forged(conv: TcpConv, from_client: bool, flags: str, seq: int) -> None:
    """A segment on the connection's ports at a sequence number of the forger's choosing."""
    if from_client:
        seg = tcp(conv.c, conv.s, conv.cport, conv.sport, seq, conv.sseq, flags)
        conv.frames.append((conv.ts, eth(ipv4(conv.c, conv.s, 6, seg))))
    else:
        seg = tcp(conv.s, conv.c, conv.sport, conv.cport, seq, conv.cseq, flags)
        conv.frames.append((conv.ts, eth(ipv4(conv.s, conv.c, 6, seg))))


# ---------------------------------------------------------------------------------------------- TCB teardown
@pytest.mark.parametrize("flags,from_client", [("R", True), ("RA", False), ("S", True), ("SA", False)])
def test_forged_control_segment_does_not_blind_the_flow(tmp_path, flags, from_client):
    """One RST (or SYN) at a sequence number no receiver takes, then the connection goes on with a write.
    Before: the RST closed the flow and nothing after it was dissected (10 of 30 transactions, no alert);
    the SYN renumbered the client's direction and its later requests were dropped as retransmissions."""
    conv = TcpConv().handshake()
    for i in range(10):
        conv.send(True, mbap(i, 1, READ)).send(False, mbap(i, 1, RESP))
    _forged(conv, from_client, flags, ((conv.cseq if from_client else conv.sseq) + 123_456_789) & 0xFFFFFFFF)
    for i in range(10, 30):
        conv.send(True, mbap(i, 1, WRITE if i == 20 else READ)).send(False, mbap(i, 1, WRITE if i == 20 else RESP))
    conv.close()
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert [t.transaction_id for t in tx] == list(range(30))
    assert all(t.outcome == "success" for t in tx)
    assert [t.function_code for t in tx if t.transaction_id == 20] == [6]
    said = [n for n in notes if n.action == "tcp_control_ignored"]
    assert len(said) == 1 and said[0].details["flag"] == flags[0].replace("S", "SYN").replace("R", "RST")
    assert [a.rule_id for a in alerts] == ["otids.anomaly.flow.tcp_control_ignored"]


def test_reset_in_window_still_ends_the_flow(tmp_path):
    """A real reset (the next byte of its direction, or a little off it) ends the flow as before: what
    follows on the same ports is not this connection's, and nothing alerts."""
    for off in (0, 1, -5_000, 60_000):
        conv = TcpConv().handshake()
        conv.send(True, mbap(1, 1, READ)).send(False, mbap(1, 1, RESP))
        _forged(conv, True, "RA", (conv.cseq + off) & 0xFFFFFFFF)
        conv.send(True, mbap(2, 1, READ)).send(False, mbap(2, 1, RESP))
        tx, notes, alerts = run(tmp_path, conv.frames, name=f"r{off}.pcap")
        assert [t.transaction_id for t in tx] == [1], off
        assert not [n for n in notes if n.action == "tcp_control_ignored"] and not alerts, off


def test_out_of_window_fin_after_capture_loss_is_noted_but_not_alerted(tmp_path):
    """A FIN far ahead after the capture lost bytes (corpus zeek modbus fuzz-1011 has one): not honoured,
    noted on the connection record, and no alert unless its direction sends payload after it."""
    conv = TcpConv().handshake()
    conv.send(True, mbap(1, 1, READ)).send(False, mbap(1, 1, RESP))
    conv.cseq += 200_000  # lost by the capture
    seg = tcp(conv.c, conv.s, conv.cport, conv.sport, conv.cseq, conv.sseq, "FA")
    conv.frames.append((conv.ts, eth(ipv4(conv.c, conv.s, 6, seg))))
    conv.send(False, mbap(9, 1, RESP))  # the server may still send (half-close)
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert not [n for n in notes if n.action == "tcp_control_ignored"]
    assert not [a for a in alerts if "control" in a.rule_id]


# ---------------------------------------------------------------------------------------------- overlap conflicts
def test_overlapping_segments_with_different_bytes_alert(tmp_path):
    """The same stream position sent twice, once a read and once a write, both out of order. Before: counted
    in Stream.overlaps and said nowhere."""
    conv = TcpConv().handshake()
    conv.send(True, mbap(1, 1, READ)).send(False, mbap(1, 1, RESP))
    hole = mbap(2, 1, READ)
    at = conv.cseq + len(hole)
    conv.send(True, mbap(3, 1, READ), seq=at, advance=False)
    conv.send(True, mbap(3, 1, WRITE), seq=at, advance=False)  # same bytes' place, other bytes
    conv.send(True, hole)
    conv.cseq += len(mbap(3, 1, READ))
    conv.send(False, mbap(2, 1, RESP)).send(False, mbap(3, 1, RESP))
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert [(t.transaction_id, t.function_code) for t in tx] == [(1, 3), (2, 3), (3, 3)]  # the first copy wins
    assert [n.action for n in notes if "overlap" in n.action] == ["tcp_overlap_conflict"]
    assert [a.rule_id for a in alerts] == ["otids.anomaly.flow.tcp_overlap_conflict"]


def test_identical_retransmission_is_no_conflict(tmp_path):
    conv = TcpConv().handshake()
    hole = mbap(1, 1, READ)
    at = conv.cseq + len(hole)
    for _ in range(3):
        conv.send(True, mbap(2, 1, READ), seq=at, advance=False)
    conv.send(True, hole)
    conv.cseq += len(hole)
    conv.send(False, mbap(1, 1, RESP)).send(False, mbap(2, 1, RESP))
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert [t.transaction_id for t in tx] == [1, 2]
    assert not [n for n in notes if "overlap" in n.action] and not alerts


# ---------------------------------------------------------------------------------------------- IPv6 header chains
def test_ipv6_extension_header_chain_of_any_length_is_walked(tmp_path):
    """Modbus over IPv6 behind 40 destination-options headers (a stack walks the whole chain). Before: a
    chain of more than 16 headers was dropped as malformed, the exchange never analysed."""
    from craft import ip6, ipv6
    c, s = ip6("fd00::1"), ip6("fd00::2")
    frames, ts, cseq, sseq = [], 1_700_000_000 * 10**9, 1000, 5000

    def seg(src, dst, sport, dport, seq, ack, flags, payload=b"", depth=40):
        chain = b"".join(bytes([60 if i < depth - 1 else 6, 0]) + b"\x01\x04\0\0\0\0" for i in range(depth))
        frames.append((ts + len(frames) * 1000, eth(ipv6(src, dst, 60, chain + tcp(src, dst, sport, dport, seq, ack,
                                                                                    flags, payload)), etype=0x86DD)))
    seg(c, s, 40000, 502, cseq - 1, 0, "S")
    seg(s, c, 502, 40000, sseq - 1, cseq, "SA")
    for i in range(3):
        seg(c, s, 40000, 502, cseq, sseq, "PA", mbap(i, 1, READ))
        cseq += 12
        seg(s, c, 502, 40000, sseq, cseq, "PA", mbap(i, 1, RESP))
        sseq += 13
    tx, _, _ = run(tmp_path, frames)
    assert [(t.transaction_id, t.outcome) for t in tx] == [(0, "success"), (1, "success"), (2, "success")]


def test_partly_overlapping_segments_with_different_bytes_alert(tmp_path):
    """Two out-of-order segments where the second starts inside the first with other bytes (the classic
    partial overlap, whose winner depends on the device's stack). Before: trimmed without a comparison."""
    conv = TcpConv().handshake()
    hole = mbap(1, 1, READ)
    at = conv.cseq + len(hole)
    second = mbap(2, 1, READ)
    conv.send(True, second, seq=at, advance=False)
    conv.send(True, b"\xff" * 6 + mbap(3, 1, READ), seq=at + 6, advance=False)  # bytes 6-11 of `second` differ
    conv.send(True, hole)
    conv.cseq += len(second) + 12
    conv.send(False, mbap(1, 1, RESP)).send(False, mbap(2, 1, RESP)).send(False, mbap(3, 1, RESP))
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert [t.transaction_id for t in tx] == [1, 2, 3]
    assert [n.action for n in notes if "overlap" in n.action] == ["tcp_overlap_conflict"]
    assert [a.rule_id for a in alerts] == ["otids.anomaly.flow.tcp_overlap_conflict"]


def test_partly_overlapping_segments_with_the_same_bytes_are_no_conflict(tmp_path):
    conv = TcpConv().handshake()
    hole = mbap(1, 1, READ)
    at = conv.cseq + len(hole)
    data = mbap(2, 1, READ) + mbap(3, 1, READ)
    conv.send(True, data[:12], seq=at, advance=False)
    conv.send(True, data[6:], seq=at + 6, advance=False)
    conv.send(True, hole)
    conv.cseq += len(data)
    conv.send(False, mbap(1, 1, RESP)).send(False, mbap(2, 1, RESP)).send(False, mbap(3, 1, RESP))
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert [t.transaction_id for t in tx] == [1, 2, 3]
    assert not [n for n in notes if "overlap" in n.action] and not alerts


def test_retransmission_of_delivered_bytes_with_other_bytes_alerts(tmp_path):
    """A request delivered in order, then "retransmitted" at the same place and length as a write (the
    device may take either, depending on whether it saw the first). Before: counted as a retransmission."""
    conv = TcpConv().handshake()
    conv.send(True, mbap(1, 1, READ))
    conv.send(True, mbap(1, 1, WRITE), seq=conv.cseq - 12, advance=False)
    conv.send(True, mbap(1, 1, READ), seq=conv.cseq - 12, advance=False)  # an honest retransmission too
    conv.send(False, mbap(1, 1, RESP))
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert [(t.transaction_id, t.function_code) for t in tx] == [(1, 3)]
    assert [n.action for n in notes if "overlap" in n.action] == ["tcp_overlap_conflict"]
    assert [a.rule_id for a in alerts] == ["otids.anomaly.flow.tcp_overlap_conflict"]


def test_honest_retransmissions_of_delivered_bytes_are_no_conflict(tmp_path):
    conv = TcpConv().handshake()
    for i in range(20):
        conv.send(True, mbap(i, 1, READ))
        conv.send(True, mbap(i, 1, READ), seq=conv.cseq - 12, advance=False)
        conv.send(False, mbap(i, 1, RESP))
        conv.send(False, mbap(i, 1, RESP), seq=conv.sseq - 13, advance=False)
    tx, notes, alerts = run(tmp_path, conv.frames)
    assert len(tx) == 20 and not [n for n in notes if "overlap" in n.action] and not alerts
