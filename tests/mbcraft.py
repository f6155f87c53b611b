"""Crafted Modbus/TCP conversations for tests: Ethernet/IPv4/TCP frames built with struct (correct
checksums, real sequence numbers) and written as a classic pcap, so edge cases go through the real
capture reader, decoder, flow table and reassembly.

    conv = Conversation(client=("10.0.0.1", 40000), server=("10.0.0.2", 502))
    conv.handshake()
    conv.send(True, adu(1, 1, 3, "0000000a"))   # client -> server
    conv.send(False, adu(1, 1, 3, "1400010002..."))
    conv.close()
    write_pcap(tmp_path / "x.pcap", conv.frames)
"""
from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import craft

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_MAC = {True: b"\x02\x00\x00\x00\x00\x01", False: b"\x02\x00\x00\x00\x00\x02"}


def adu(tid: int, unit: int, fc: int, data: str | bytes = b"", pid: int = 0, length: int | None = None) -> bytes:
    """One MBAP frame: header (length computed unless given) + function code + data (hex or bytes)."""
    body = bytes.fromhex(data) if isinstance(data, str) else data
    if length is None:
        length = 2 + len(body)
    return struct.pack(">HHHBB", tid, pid, length, unit, fc) + body


def frame(src: tuple, dst: tuple, seq: int, ack: int, flags: int, payload: bytes = b"",
          src_mac: bytes = _MAC[True], dst_mac: bytes = _MAC[False]) -> bytes:
    """One Ethernet/IPv4/TCP frame with correct checksums (built by craft.py's primitives)."""
    sip, dip = ipaddress.ip_address(src[0]).packed, ipaddress.ip_address(dst[0]).packed
    names = "".join(c for bit, c in ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A")) if flags & bit)
    return craft.eth(craft.ipv4(sip, dip, 6, craft.tcp(sip, dip, src[1], dst[1], seq, ack, names, payload)),
                     src=src_mac, dst=dst_mac)


class Conversation:
    """One TCP connection; `frames` collects (ts_ns, bytes). Time advances 1 ms per packet unless given."""

    def __init__(self, client=("10.0.0.1", 40000), server=("10.0.0.2", 502), ts: int = 1_700_000_000_000_000_000,
                 cseq: int = 1000, sseq: int = 5000):
        self.client, self.server = client, server
        self.seq = {True: cseq, False: sseq}  # next sequence number per direction (True: client -> server)
        self.ts = ts
        self.frames: list[tuple[int, bytes]] = []

    def _emit(self, to_server: bool, flags: int, payload: bytes = b"", seq: int | None = None,
              ts: int | None = None) -> None:
        self.ts = ts if ts is not None else self.ts + 1_000_000
        src, dst = (self.client, self.server) if to_server else (self.server, self.client)
        s = self.seq[to_server] if seq is None else seq
        self.frames.append((self.ts, frame(src, dst, s, self.seq[not to_server], flags, payload,
                                           _MAC[to_server], _MAC[not to_server])))

    def handshake(self) -> "Conversation":
        self._emit(True, SYN)
        self.seq[True] += 1
        self._emit(False, SYN | ACK)
        self.seq[False] += 1
        self._emit(True, ACK)
        return self

    def send(self, to_server: bool, payload: bytes, ts: int | None = None) -> "Conversation":
        self._emit(to_server, PSH | ACK, payload, ts=ts)
        self.seq[to_server] += len(payload)
        return self

    def send_split(self, to_server: bool, payload: bytes, sizes: list[int]) -> "Conversation":
        """One payload in several segments of the given sizes (the rest in a last segment)."""
        off = 0
        for n in sizes:
            self.send(to_server, payload[off:off + n])
            off += n
        if off < len(payload):
            self.send(to_server, payload[off:])
        return self

    def lose(self, to_server: bool, nbytes: int) -> "Conversation":
        """Bytes the capture never saw: the sequence number moves on without a packet."""
        self.seq[to_server] += nbytes
        return self

    def ack(self, to_server: bool, ts: int | None = None) -> "Conversation":
        self._emit(to_server, ACK, ts=ts)
        return self

    def close(self) -> "Conversation":
        self._emit(True, FIN | ACK)
        self.seq[True] += 1
        self._emit(False, FIN | ACK)
        self.seq[False] += 1
        self._emit(True, ACK)
        return self


def write_pcap(path: Path, frames: list[tuple[int, bytes]]) -> Path:
    """Classic pcap, microsecond timestamps, Ethernet; frames sorted by time."""
    craft.write_pcap(path, sorted(frames, key=lambda f: f[0]))
    return path
