"""Regression: reassembly must deliver a buffered segment that overlapping data trimmed to start exactly
at the next expected byte (it used to wait for the next gap, which was then reported as 0 bytes)."""
from ids.flow.tcp import Stream


def test_trimmed_overlap_is_delivered_in_order():
    s = Stream()
    s.next_seq = 0
    out: list = []
    s.add(10, b"b" * 10, 1 << 20, out)  # bytes 10..19, out of order
    s.add(5, b"a" * 10, 1 << 20, out)  # bytes 5..14, overlaps the first
    s.add(0, b"0" * 5, 1 << 20, out)  # fills the hole: everything up to 19 is deliverable
    assert out == [b"00000", b"a" * 10, b"b" * 5]
    assert s.next_seq == 20 and not s.segs


def test_ack_inside_a_hole_declares_only_the_acknowledged_part_lost():
    # next byte 100, a segment buffered at 200; the peer acknowledges 150: bytes 100..149 were lost by the
    # capture, but 150..199 may still arrive and must not be taken for an old retransmission.
    s = Stream()
    s.next_seq = 100
    out: list = []
    s.add(200, b"c" * 10, 1 << 20, out)
    assert s.ack_past(150)
    s.skip_gap(out, 150)
    assert out == [50] and s.next_seq == 150
    s.add(150, b"b" * 50, 1 << 20, out)
    assert out == [50, b"b" * 50, b"c" * 10] and s.next_seq == 210
