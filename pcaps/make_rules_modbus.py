#!/usr/bin/env python3
"""Write ``pcaps/rules-modbus.pcap``: crafted Modbus/TCP sessions that exercise the shipped Modbus rules
(rules/modbus.yml) with a known number of alerts each.

Crafted with scapy (complete TCP handshakes, in-order segments, FIN teardown) because the behaviours are
ones no well-behaved library client produces: broadcast writes, FC 8 restart / listen-only, Schneider
UMAS start/stop and program transfer (FC 90), a function-code scan and a unit-id scan answered with
exceptions. Deterministic: fixed addresses, ports, sequence numbers and timestamps.

Hosts: engineering workstation 10.10.1.5, PLC 10.10.3.4:502, attacker 10.99.0.7.

Expected alerts (rules/modbus.yml, with its test_lists):
  broadcast_write 1, diagnostics_restart 1, diagnostics_listen_only 1, umas_run_state 1,
  umas_program_download 1, umas_program_upload 1, umas_from_unauthorized_host 3,
  function_code_scan 1 (12 codes, fires at the 8th), unit_id_scan 1 (units 1-10),
  exception_flood 1 (22 exceptions within 10 s, fires at the 20th).

Usage: python3 pcaps/make_rules_modbus.py [OUT.pcap]
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

from scapy.all import IP, TCP, Ether, wrpcap

EWS, PLC, ATTACKER = "10.10.1.5", "10.10.3.4", "10.99.0.7"
T0 = 1714557600.0  # 2024-05-01T10:00:00Z
MAC = {EWS: "02:00:00:00:01:05", PLC: "02:00:00:00:03:04", ATTACKER: "02:00:00:00:99:07"}


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class Session:
    """One TCP connection client -> PLC:502, with request/response segments in order."""

    def __init__(self, pkts: list, client: str, sport: int, t: float):
        self.pkts, self.c, self.sport, self.t = pkts, client, sport, t
        self.cseq, self.sseq = 1000, 5000
        self._add(self.c, PLC, "S", b"", seq=self.cseq - 1, ack=0)
        self._add(PLC, self.c, "SA", b"", seq=self.sseq - 1, ack=self.cseq)
        self._add(self.c, PLC, "A", b"", seq=self.cseq, ack=self.sseq)
        self.tid = 0

    def _add(self, src, dst, flags, payload, seq, ack):
        sport, dport = (self.sport, 502) if src == self.c else (502, self.sport)
        p = Ether(src=MAC[src], dst=MAC[dst]) / IP(src=src, dst=dst) / \
            TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=8192) / payload
        p.time = self.t
        self.t += 0.0005
        self.pkts.append(p)

    def exchange(self, unit: int, req: bytes, resp: bytes | None, gap: float = 0.1):
        self.tid += 1
        data = mbap(self.tid, unit, req)
        self._add(self.c, PLC, "PA", data, self.cseq, self.sseq)
        self.cseq += len(data)
        if resp is not None:
            rd = mbap(self.tid, unit, resp)
            self._add(PLC, self.c, "PA", rd, self.sseq, self.cseq)
            self.sseq += len(rd)
        self._add(self.c, PLC, "A", b"", self.cseq, self.sseq)
        self.t += gap

    def close(self):
        self._add(self.c, PLC, "FA", b"", self.cseq, self.sseq)
        self._add(PLC, self.c, "FA", b"", self.sseq, self.cseq + 1)
        self._add(self.c, PLC, "A", b"", self.cseq + 1, self.sseq + 1)
        return self.t


def build() -> list:
    pkts: list = []
    # Engineering workstation: broadcast write (no reply, as broadcasts get none), FC 8/1 and FC 8/4.
    s = Session(pkts, EWS, 40001, T0)
    s.exchange(0, struct.pack("!BHH", 6, 10, 1234), None)
    s.exchange(1, struct.pack("!BHH", 8, 1, 0x0000), struct.pack("!BHH", 8, 1, 0x0000))
    s.exchange(1, struct.pack("!BHH", 8, 4, 0x0000), None)  # listen-only: the device stops answering
    t = s.close() + 1
    # Attacker: UMAS stop PLC, download block, upload block (each answered 0xFE OK).
    s = Session(pkts, ATTACKER, 40002, t)
    for code in (0x41, 0x34, 0x31):
        s.exchange(1, bytes([0x5A, 0x00, code, 0x01, 0x00]), bytes([0x5A, 0x00, 0xFE]))
    t = s.close() + 1
    # Attacker: function-code scan, 12 codes, each rejected with exception 1 (illegal function).
    s = Session(pkts, ATTACKER, 40003, t)
    for fc in (1, 2, 3, 4, 7, 11, 12, 20, 24, 65, 66, 100):
        body = struct.pack("!HH", 0, 1) if fc <= 4 else (b"\x00\x00" if fc >= 20 else b"")
        s.exchange(1, bytes([fc]) + body, bytes([fc | 0x80, 1]), gap=0.05)
    # ... then a unit-id scan, units 1-10, answered with exception 11 (gateway target failed to respond).
    for unit in range(1, 11):
        s.exchange(unit, struct.pack("!BHH", 3, 0, 1), bytes([0x83, 11]), gap=0.05)
    s.close()
    return pkts


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "rules-modbus.pcap"
    pkts = build()
    wrpcap(str(out), pkts)
    print(f"wrote {out} ({len(pkts)} packets)")


if __name__ == "__main__":
    main()
