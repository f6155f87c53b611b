#!/usr/bin/env python3
"""Hostile traffic for issue #16: the crafted captures behind findings F1-F8 and the flood generators that
the regression tests (tests/test_hostile.py) and `otids bench hostile` run at any size.

Small cases are written here as committed captures (deterministic: same bytes every run):
  f1-tls-duplicate-extension.pcap   TLS 1.2 handshake whose server certificate carries subjectAltName twice
                                     (cryptography raises DuplicateExtension on reading its extensions)
  f2-pcapng-year-10000.pcapng       a Modbus exchange stamped past year 9999 (pcapng has 64-bit times)
  f6-opcua-chunk-bomb.pcap          OPC UA over one channel: intermediate chunks of one request, never final
  f7-ip-fragment-flood.pcap         one IPv4 datagram in 8191 eight-byte fragments (cut to 1024 here)
  tcp-random-flags.pcap             3,000 TCP segments between one host pair with random flags, sequence
                                     and acknowledgement numbers (near and far), options and payloads, to
                                     the dissected ports: SYNs renumber streams while segments wait (found
                                     a reassembly KeyError that ended the run, 2026-12-05)
Floods (F3, F4, F5, F7 at scale, F8 and the benchmark cases) are generators: `frames_*` functions yield
(ts_ns, Ethernet frame) so a test writes them into its tmp dir and the benchmark streams them to a file.

Frames come from tests/craft.py (struct only: exact control of every byte, correct checksums).
Usage: python3 pcaps/hostile/make_hostile.py [OUTDIR]   (default: the folder of this script)
"""
from __future__ import annotations

import datetime as dt
import os
import struct
import sys
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.craft import (MAC_A, MAC_B, TcpConv, csum, eth, ip4, ipv4, mbap, tcp, write_pcap,  # noqa: E402
                         write_pcapng)

T0 = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
NS = 10**9


# ------------------------------------------------------------------------------------------- F1: X.509
def duplicate_extension_cert() -> bytes:
    """A self-signed certificate with subjectAltName present twice (RFC 5280 4.2 forbids it). Built with
    an Ed25519 key from a fixed seed (deterministic signature); the second extension is made under a
    placeholder OID of the same length, then renamed in the DER, which leaves the signature broken but
    every length intact."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile.example")])
    placeholder = x509.ObjectIdentifier("2.5.29.99")  # encodes as 55 1d 63, subjectAltName as 55 1d 11
    san = x509.SubjectAlternativeName([x509.DNSName("hostile.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x1601).not_valid_before(dt.datetime(2023, 1, 1))
            .not_valid_after(dt.datetime(2033, 1, 1))
            .add_extension(san, critical=False)
            .add_extension(x509.UnrecognizedExtension(placeholder, san.public_bytes()), critical=False)
            .sign(key, None))
    from cryptography.hazmat.primitives.serialization import Encoding
    der = cert.public_bytes(Encoding.DER)
    assert der.count(b"\x06\x03\x55\x1d\x63") == 1
    return der.replace(b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x11")


def _hs(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def _record(ctype: int, body: bytes) -> bytes:
    return struct.pack("!BHH", ctype, 0x0303, len(body)) + body


def tls_frames(der: bytes, port: int = 8883) -> list[tuple[int, bytes]]:
    """TLS 1.2: ClientHello; ServerHello + Certificate(der); both ChangeCipherSpec; teardown."""
    ch = struct.pack("!H", 0x0303) + bytes(32) + b"\x00" + struct.pack("!HH", 2, 0x002F) + b"\x01\x00" + \
        struct.pack("!H", 0)
    sh = struct.pack("!H", 0x0303) + bytes(range(32)) + b"\x00" + struct.pack("!H", 0x002F) + b"\x00"
    certs = len(der).to_bytes(3, "big") + der
    cmsg = len(certs).to_bytes(3, "big") + certs
    c = TcpConv(sport=port).handshake()
    c.send(True, _record(22, _hs(1, ch)))
    c.send(False, _record(22, _hs(2, sh) + _hs(11, cmsg) + _hs(14, b"")))
    c.send(True, _record(20, b"\x01"))
    c.send(False, _record(20, b"\x01"))
    c.close()
    return c.frames


# ------------------------------------------------------------------------------------------- F2: time
def modbus_exchange_frames(t0: int = T0) -> list[tuple[int, bytes]]:
    c = TcpConv(t0=t0).handshake()
    c.send(True, mbap(1, 1, b"\x03\x00\x00\x00\x02"))
    c.send(False, mbap(1, 1, b"\x03\x04\x00\x01\x00\x02"))
    c.close()
    return c.frames


def write_far_future_pcapng(path) -> None:
    """The same Modbus exchange with microsecond times in year ~12000 (past what datetime can hold)."""
    base_us = 315_537_897_600 * 10**6 + 10**15  # 9999-12-31T00:00Z, plus ~31 years
    frames = modbus_exchange_frames()
    write_pcapng(path, [(1, None)], [(0, base_us + (ts - T0) // 1000, f) for ts, f in frames])


# ------------------------------------------------------------------------------------------- TCP floods
def ooo_frames(n: int, port: int = 502, hole: int = 1) -> Iterator[tuple[int, bytes]]:
    """F3/F4: a handshake, then a hole of `hole` bytes, then `n` one-byte segments after it, in reverse
    order (each one out of order, none ever deliverable until the hole fills; it never does)."""
    c = TcpConv(sport=port).handshake()
    yield from c.frames
    ts = c.ts
    base = c.cseq + hole
    for k in range(n - 1, -1, -1):
        ts += 1000
        seg = tcp(c.c, c.s, c.cport, c.sport, base + k, c.sseq, "A", b"\x00")
        yield ts, eth(ipv4(c.c, c.s, 6, seg), src=MAC_A, dst=MAC_B)


def syn_flood_frames(n: int, port: int = 502) -> Iterator[tuple[int, bytes]]:
    """F5: `n` SYNs from distinct sources (10.0.0.0/8 walked) to one server, each answered by SYN-ACK and
    reset, so every flow closes and lands in the talker table."""
    s = ip4("192.168.0.10")
    ts = T0
    for k in range(n):
        c = struct.pack("!I", (10 << 24) | (k + 1))
        ts += 1000
        yield ts, eth(ipv4(c, s, 6, tcp(c, s, 40000, port, 1, 0, "S")), src=MAC_A, dst=MAC_B)
        yield ts + 1, eth(ipv4(c, s, 6, tcp(c, s, 40000, port, 2, 0, "R")), src=MAC_A, dst=MAC_B)


def garbage_frames(nbytes: int, port: int = 502, seg: int = 1400, seed: int = 1) -> Iterator[tuple[int, bytes]]:
    """F8: `nbytes` of pseudo-random bytes from a client to `port`, in `seg`-byte segments."""
    import random
    rnd = random.Random(seed)
    c = TcpConv(sport=port).handshake()
    yield from c.frames
    ts = c.ts
    seq = c.cseq
    block = rnd.randbytes(1 << 16)
    sent = 0
    while sent < nbytes:
        k = min(seg, nbytes - sent)
        o = rnd.randrange(0, len(block) - k)
        ts += 10_000
        yield ts, eth(ipv4(c.c, c.s, 6, tcp(c.c, c.s, c.cport, c.sport, seq, c.sseq, "PA", block[o:o + k])),
                      src=MAC_A, dst=MAC_B)
        seq += k
        sent += k


# ------------------------------------------------------------------------------------------- OPC UA
def _ua(mt: bytes, ct: bytes, body: bytes) -> bytes:
    return mt + ct + struct.pack("<I", 8 + len(body)) + body


def _ua_string(s: str | None) -> bytes:
    if s is None:
        return struct.pack("<i", -1)
    b = s.encode()
    return struct.pack("<i", len(b)) + b


POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"


def opcua_open(conv: TcpConv, cid: int = 1) -> None:
    """HEL/ACK and an OPN with policy None (the body is not parsed for what follows)."""
    hel = struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + _ua_string("opc.tcp://x:4840")
    conv.send(True, _ua(b"HEL", b"F", hel))
    conv.send(False, _ua(b"ACK", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0)))
    asym = _ua_string(POLICY_NONE) + _ua_string(None) + _ua_string(None)
    body = struct.pack("<I", 0) + asym + struct.pack("<II", 1, 1) + bytes(16)
    conv.send(True, _ua(b"OPN", b"F", body))


def opcua_chunk_bomb_frames(flows: int, chunks: int, chunk_body: int = 8000,
                            port: int = 4840) -> Iterator[tuple[int, bytes]]:
    """F6: on each of `flows` connections, one request split in `chunks` intermediate chunks (type C) of
    `chunk_body` bytes that never get their final chunk: everything is held for reassembly."""
    ts = T0
    for f in range(flows):
        c = TcpConv(cip=f"10.1.{(f >> 8) & 255}.{f & 255}", cport=20000 + (f % 40000), sport=port, t0=ts)
        c.handshake()
        opcua_open(c)
        body0 = struct.pack("<II", 7, 2) + b"\x01\x00\x77\x02"  # seq, request id, ReadRequest (i=631)
        pad = bytes(chunk_body)
        for k in range(chunks):
            head = struct.pack("<II", 1, 0) + struct.pack("<II", 2 + k, 77)  # channel, token; seq, request id
            c.send(True, _ua(b"MSG", b"C", head + (body0[8:] if k == 0 else b"") + pad))
        yield from c.frames
        ts = c.ts


# ------------------------------------------------------------------------------------------- IP fragments
def fragment_flood_frames(datagrams: int, frags: int, size: int = 8, port: int = 502,
                          ident0: int = 1) -> Iterator[tuple[int, bytes]]:
    """F7: `datagrams` IPv4 datagrams, each cut in `frags` fragments of `size` bytes (the last fragment
    never sent: each stays incomplete, held until timeout)."""
    src, dst = ip4("10.9.0.1"), ip4("10.9.0.2")
    ts = T0
    payload = tcp(src, dst, 40000, port, 1, 0, "PA", bytes(frags * size))
    for d in range(datagrams):
        ident = (ident0 + d) & 0xFFFF
        for k in range(frags):
            ts += 1000
            part = payload[k * size:(k + 1) * size]
            h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(part), ident, 0x2000 | (k * size // 8), 64, 6, 0,
                            src, dst)
            yield ts, eth(h + part)


# ------------------------------------------------------------------------------------------- files
def random_tcp_frames(n: int, seed: int = 2) -> Iterator[tuple[int, bytes]]:
    """`n` TCP segments from one client port to the dissected ports with random flag bytes (FIN and RST rare), sequence numbers
    (mostly near the last one, sometimes anywhere), acknowledgements, options and payloads (seeded)."""
    import random
    rnd = random.Random(seed)
    c, s = ip4("10.5.0.1"), ip4("10.5.0.2")
    seqs = {p: rnd.getrandbits(32) for p in (502, 1883, 4840, 8883, 102, 20000, 44818)}
    ts = T0
    for _ in range(n):
        port = rnd.choice(list(seqs))
        to_server = rnd.random() < 0.6
        seq = seqs[port] + rnd.randint(-200, 400) if rnd.random() < 0.5 else rnd.getrandbits(32)
        seqs[port] = seq & 0xFFFFFFFF
        opts = bytes(rnd.getrandbits(8) for _ in range(rnd.choice((0, 0, 4, 8, 40))))
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.choice((0, 1, 12, 60, 300))))
        if rnd.random() < 0.3 and port == 502:
            body = mbap(rnd.getrandbits(16), 1, bytes((3, 0, 0, 0, 10)))
        src, dst, sp, dp = (c, s, 40000, port) if to_server else (s, c, port, 40000)
        flags = rnd.getrandbits(8) & (0xFF if rnd.random() < 0.05 else ~0x05)  # FIN and RST rarely: flows live
        hdr = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, rnd.getrandbits(32),
                          ((20 + len(opts)) // 4) << 4, flags, rnd.getrandbits(16), 0,
                          rnd.getrandbits(16))
        seg = hdr + opts + body
        ck = csum(src + dst + struct.pack("!BBH", 0, 6, len(seg)) + seg)
        seg = seg[:16] + struct.pack("!H", ck) + seg[18:]
        ts += rnd.choice((1, 1000, 10**6, 10**9))
        yield ts, eth(ipv4(src, dst, 6, seg), src=MAC_A if to_server else MAC_B, dst=MAC_B if to_server else MAC_A)


def write(path, frames: Iterable[tuple[int, bytes]]) -> None:
    write_pcap(path, frames)


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "f1-tls-duplicate-extension.pcap"), tls_frames(duplicate_extension_cert()))
    write_far_future_pcapng(os.path.join(out, "f2-pcapng-year-10000.pcapng"))
    write(os.path.join(out, "f6-opcua-chunk-bomb.pcap"), opcua_chunk_bomb_frames(2, 8, 1000))
    write(os.path.join(out, "f7-ip-fragment-flood.pcap"), fragment_flood_frames(1, 1100))
    write(os.path.join(out, "tcp-random-flags.pcap"), random_tcp_frames(3000))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent))
