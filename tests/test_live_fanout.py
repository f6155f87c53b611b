"""The live workers' fanout program (ids.parallel.live.pair_program): the kernel runs it for every frame of a
PACKET_FANOUT_CBPF group, and every packet between two hosts, both directions, must reach one socket, so a
live worker can run the per-host-pair checks as file workers do. Real sockets on loopback (needs root,
like the other live tests); the datagrams carry a marker so other traffic on lo is ignored."""
from __future__ import annotations

import ctypes
import os
import socket
import struct
import time

import pytest

from ids.capture.live import SOL_PACKET
from ids.parallel.live import (PACKET_FANOUT, PACKET_FANOUT_CBPF, PACKET_FANOUT_DATA, PACKET_FANOUT_FLAG_DEFRAG,
                               pair_program)

MARK = b"otids-fanout-test-" + str(os.getpid()).encode()


def _fmix(h: int) -> int:  # the program's arithmetic, in Python (MurmurHash3 fmix32)
    m = 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    return h ^ (h >> 16)


def _members(n: int) -> list[socket.socket]:
    if os.geteuid() != 0:
        pytest.fail("the fanout test needs root (AF_PACKET sockets), as the live capture tests do")
    insns = pair_program()
    buf = ctypes.create_string_buffer(insns, len(insns))
    group = (os.getpid() ^ 0x5A5A) & 0xFFFF
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        # lo carries whatever else runs on the machine: a roomy buffer so that none of it pushes out ours
        s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root)
        s.bind(("lo", 0))
        s.setsockopt(SOL_PACKET, PACKET_FANOUT,
                     struct.pack("=I", group | ((PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_DEFRAG) << 16)))
        s.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, struct.pack("HxxxxxxQ", len(insns) // 8, ctypes.addressof(buf)))
        s.setblocking(False)
        out.append(s)
    return out


def _send(fam: int, src: str, dst: str) -> None:
    with socket.socket(fam, socket.SOCK_DGRAM) as u:
        u.bind((src, 0))
        u.sendto(MARK, (dst, 9))


def test_every_packet_of_a_host_pair_reaches_one_socket_in_both_directions():
    socks = _members(3)
    try:
        pairs = [("127.0.0.1", f"127.0.{k // 200}.{k % 200 + 2}") for k in range(60)]
        for a, b in pairs:
            _send(socket.AF_INET, a, b)
            _send(socket.AF_INET, b, a)
        _send(socket.AF_INET6, "::1", "::1")
        time.sleep(0.3)
        where: dict = {}
        v6 = []
        for i, s in enumerate(socks):
            while True:
                try:
                    d = s.recv(4096)
                except BlockingIOError:
                    break
                if MARK not in d:
                    continue
                if d[12:14] == b"\x08\x00" and d[23] == 17:  # the datagrams, not the ICMP errors they cause
                    key = frozenset((d[26:30], d[30:34]))
                    where.setdefault(key, set()).add((d[26:30], i))
                    x = int.from_bytes(d[26:30], "big") ^ int.from_bytes(d[30:34], "big")
                    assert _fmix(x) % 3 == i  # the program computes what it says
                elif d[12:14] == b"\x86\xdd":
                    v6.append(i)
    finally:
        for s in socks:
            s.close()
    assert len(where) == len(pairs)
    # both directions seen (lo shows each packet going out and coming in), all in one socket
    assert all(len({src for src, _ in v}) == 2 and len({i for _, i in v}) == 1 for v in where.values()), where
    shares = [sum(1 for v in where.values() if next(iter(v))[1] == i) for i in range(3)]
    assert all(n >= 10 for n in shares), shares  # and the pairs spread over every member
    assert v6 and set(v6) == {0}  # ::1 to itself: the XOR of its words is 0
