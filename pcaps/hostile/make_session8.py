"""The hostile capture classes of session 8 (docs/ROBUSTNESS.md, "Hostile captures (session 8)"): each
function writes one class into a pcap with the bench-hostile writer; `files` writes the capture-file
classes (pcap and pcapng headers, records, interfaces, timestamps). Not committed as captures (1-80 MB each):

    python3 pcaps/hostile/make_session8.py OUTDIR [CASE ...]   (no CASE: every one)

then `otids analyze OUTDIR/CASE.pcap -q` and `tshark -r OUTDIR/CASE.pcap -q -z io,phs`, each under
/usr/bin/time. Seeded: the same bytes every run. The findings' regression tests are
tests/test_hostile_captures.py (small captures of their own).
"""
import os
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ids.commands.bench_hostile import PcapOut, tcp_segment, Conv, _csum_fold, T0, SYN, ACK, PSH, RST, _ip
_fb = int.from_bytes
ETH = bytes.fromhex("020000000002" "020000000001")
A, B = bytes([10,0,0,1]), bytes([10,0,0,2])

def ip4(src, dst, proto, l4, ident=0, frag=0x4000):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF, frag, 64, proto, 0, src, dst)
    c = _csum_fold(_fb(h, "big"))
    return h[:10] + struct.pack("!H", c) + h[12:] + l4

def udp(sp, dp, pl):
    return struct.pack("!HHHH", sp, dp, 8 + len(pl), 0) + pl

def ip6(src, dst, nxt, pl):
    return struct.pack("!IHBB16s16s", 6 << 28, len(pl), nxt, 64, src, dst) + pl

S6, D6 = bytes(15) + b"\x01", bytes(15) + b"\x02"

def modbus_req(tid, addr=0, n=1):
    return struct.pack("!HHHBBHH", tid & 0xFFFF, 0, 6, 1, 3, addr, n)
def modbus_resp(tid, n=1):
    return struct.pack("!HHHBBB", tid & 0xFFFF, 0, 3 + 2 * n, 1, 3, 2 * n) + b"\0\x01" * n

def gre_nest(p, n):
    """n packets, each a Modbus-looking TCP segment inside `depth` GRE-in-IPv4 layers (depth 1-200)."""
    for i in range(n):
        inner = ip4(A, B, 6, tcp_segment(A, B, 40000, 502, i, 0, ACK, modbus_req(i)))
        for _ in range(random.randint(1, 200)):
            inner = ip4(A, B, 47, b"\0\0\x08\x00" + inner)
        p.raw(T0 + i * 1000, ETH + b"\x08\x00" + inner[:65000])

def ipip_nest(p, n):
    for i in range(n):
        inner = ip4(A, B, 6, tcp_segment(A, B, 40000, 502, i, 0, ACK, modbus_req(i)))
        for d in range(random.randint(1, 300)):
            inner = ip4(A, B, 4, inner) if d % 2 else ip6(S6, D6, 4, inner)
        v = inner[0] >> 4
        p.raw(T0 + i * 1000, ETH + (b"\x08\x00" if v == 4 else b"\x86\xdd") + inner[:65000])

def vxlan_nest(p, n):
    for i in range(n):
        frame = ETH + b"\x08\x00" + ip4(A, B, 6, tcp_segment(A, B, 40000, 502, i, 0, ACK, modbus_req(i)))
        for _ in range(random.randint(1, 100)):
            frame = ETH + b"\x08\x00" + ip4(A, B, 17, udp(12345, 4789, b"\x08\0\0\0\0\0\x01\0" + frame))
        p.raw(T0 + i * 1000, frame[:65000])

def mpls_stack(p, n):
    for i in range(n):
        depth = random.randint(1, 500)
        labels = b"".join(struct.pack("!I", (random.randrange(1 << 20) << 12) | (64)) for _ in range(depth - 1))
        labels += struct.pack("!I", (16 << 12) | 0x100 | 64)
        p.raw(T0 + i * 1000, ETH + b"\x88\x47" + labels + ip4(A, B, 6, tcp_segment(A, B, 40000, 502, i, 0, ACK, modbus_req(i))))

def ipv6_ext_chain(p, n):
    """IPv6 with 1-1000 destination-options headers before TCP to port 502 (each header 8 bytes)."""
    for i in range(n):
        k = random.randint(1, 1000)
        seg = tcp_segment(S6[:4], D6[:4], 40000 + i % 1000, 502, i, 0, SYN, b"")  # checksum wrong for v6: fine
        chain = b""
        for j in range(k):
            chain += bytes([60 if j < k - 1 else 6, 0]) + b"\x01\x04\0\0\0\0"
        p.raw(T0 + i * 1000, ETH + b"\x86\xdd" + ip6(S6, D6, 60, chain + seg))

def ipv6_frag_in_routing(p, n):
    """fragments (some with two fragment headers, some after a routing header), many datagrams."""
    for i in range(n):
        pl = tcp_segment(S6[:4], D6[:4], 40000, 502, i, 0, PSH | ACK, modbus_req(i) * 20)
        half = (len(pl) // 2) & ~7
        for off, chunk, more in ((0, pl[:half], 1), (half, pl[half:], 0)):
            fh = struct.pack("!BBHI", 6, 0, off | more, i)
            rh = bytes([44, 2, 0, 1, 0, 0, 0, 0]) + S6 + D6  # routing type 0, 2 addresses
            if i % 3 == 0:
                p.raw(T0 + i * 1000, ETH + b"\x86\xdd" + ip6(S6, D6, 43, rh + fh + chunk))
            elif i % 3 == 1:
                fh2 = struct.pack("!BBHI", 44, 0, 0 | 1, i + 7)
                p.raw(T0 + i * 1000, ETH + b"\x86\xdd" + ip6(S6, D6, 44, fh2 + fh + chunk))
            else:
                p.raw(T0 + i * 1000, ETH + b"\x86\xdd" + ip6(S6, D6, 44, fh + chunk))

def teardrop(p, n):
    """overlapping IPv4 fragments, each rewriting the TCP header of the first (ports, flags)."""
    for i in range(n):
        seg = tcp_segment(A, B, 40000 + i % 20000, 502, 1, 0, SYN, b"")
        evil = tcp_segment(A, B, 40000 + i % 20000, 22, 1, 0, SYN, b"")
        src = _ip(i)
        p.raw(T0 + i * 1000, ETH + b"\x08\x00" + ip4(src, B, 6, seg + b"x" * 16, ident=i, frag=0x2000))
        p.raw(T0 + i * 1000, ETH + b"\x08\x00" + ip4(src, B, 6, evil[8:] + b"y" * 40, ident=i, frag=1))  # offset 8, last: rewrites seq to flags
        p.raw(T0 + i * 1000, ETH + b"\x08\x00" + ip4(src, B, 6, b"z" * 8, ident=i, frag=0x0000 | 7))  # offset 56, last

def seq_wrap(p, n):
    """one Modbus connection whose client sequence numbers wrap at 2^32, n request/response pairs."""
    c = Conv(p, A, B, 40000, 502, T0)
    c.cseq = (1 << 32) - 3 * 12 - 5
    c.sseq = (1 << 32) - 7
    c.handshake()
    for i in range(n):
        c.send(True, modbus_req(i))
        c.cseq &= 0xFFFFFFFF
        c.send(False, modbus_resp(i))
        c.sseq &= 0xFFFFFFFF
    c.close()

def syn_data(p, n):
    """n Modbus connections whose first request rides on the SYN (TCP Fast Open style)."""
    for i in range(n):
        cip = _ip(i)
        ts = T0 + i * 100_000
        p.tcp(ts, cip, B, 40000, 502, 999, 0, SYN, modbus_req(i))
        p.tcp(ts, B, cip, 502, 40000, 4999, 1000 + 12, SYN | ACK)
        p.tcp(ts, cip, B, 40000, 502, 1012, 5000, ACK)
        p.tcp(ts, B, cip, 502, 40000, 5000, 1012, PSH | ACK, modbus_resp(i))

def rst_storm(p, n):
    """100 live Modbus flows, each taking n/100 RSTs with random sequence numbers between its requests."""
    conns = [Conv(p, _ip(k), B, 41000 + k, 502, T0).handshake() for k in range(100)]
    ts = T0
    for i in range(n):
        c = conns[i % 100]
        ts += 1000
        c.ts = ts
        p.tcp(ts, c.c, c.s, c.cp, c.sp, random.getrandbits(32), 0, RST)
        if i % 10 == 0:
            c.send(True, modbus_req(i)); c.send(False, modbus_resp(i))

def far_segments(p, n):
    """MQTT/Modbus flows receiving segments 1 MB to 2^31-1 bytes beyond next_seq."""
    for k in range(n // 20):
        c = Conv(p, _ip(k), B, 40000, 502, T0 + k * 1_000_000).handshake()
        for j in range(20):
            far = random.choice((1 << 20, 1 << 30, (1 << 31) - 1, (1 << 31) - 100, 1 << 31))
            p.tcp(c.ts, c.c, c.s, c.cp, c.sp, (c.cseq + far) & 0xFFFFFFFF, c.sseq, PSH | ACK, modbus_req(j))
            c.send(True, modbus_req(j)); c.send(False, modbus_resp(j))
        c.close()

def overlap_conflict(p, n):
    """Modbus: every request sent twice at the same sequence number, the second copy a write (fc 6)."""
    c = Conv(p, A, B, 40000, 502, T0).handshake()
    for i in range(n):
        good = modbus_req(i)
        bad = struct.pack("!HHHBBHH", i & 0xFFFF, 0, 6, 1, 6, 0, 0xDEAD)
        # out of order first: the next segment, then the conflicting pair
        p.tcp(c.ts, c.c, c.s, c.cp, c.sp, c.cseq + 12, c.sseq, PSH | ACK, modbus_req(i + 1))
        p.tcp(c.ts, c.c, c.s, c.cp, c.sp, c.cseq + 12, c.sseq, PSH | ACK, bad)
        c.send(True, good)
        c.send(True, modbus_req(i + 1))
        p.tcp(c.ts, c.c, c.s, c.cp, c.sp, c.cseq - 12, c.sseq, PSH | ACK, bad)  # in-order retransmission, other bytes
        c.send(False, modbus_resp(i)); c.send(False, modbus_resp(i + 1))
    c.close()

def window_zero(p, n):
    """a Modbus server advertises window 0 while the client keeps sending (zero-window probes with data)."""
    c = Conv(p, A, B, 40000, 502, T0).handshake()
    for i in range(n):
        c.send(True, modbus_req(i))
    c.close()

# ---- pcap-file level
def pcap_hdr(snaplen=262144, linktype=1, magic=0xA1B2C3D4):
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)

def write_raw(path, data):
    with open(path, "wb") as f:
        f.write(data)

def modbus_frames(n):
    out = []
    for i in range(n):
        out.append(ETH + b"\x08\x00" + ip4(A, B, 6, tcp_segment(A, B, 40000, 502, 1000 + 12 * i, 0, PSH | ACK, modbus_req(i))))
    return out

def rec(ts_s, ts_us, frame, incl=None, orig=None):
    return struct.pack("<IIII", ts_s, ts_us, len(frame) if incl is None else incl, len(frame) if orig is None else orig) + frame

def pcapng_block(t, body):
    body += b"\0" * (-len(body) % 4)
    L = 12 + len(body)
    return struct.pack("<II", t, L) + body + struct.pack("<I", L)

def shb():
    return pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))

def idb(lt, tsresol=None, snap=0):
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack("<HH", 0, 0)
    return pcapng_block(1, struct.pack("<HHI", lt, 0, snap) + opts)

def epb(iid, ts, frame):
    return pcapng_block(6, struct.pack("<IIIII", iid, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame)

def files(d):
    fr = modbus_frames(20000)
    # snaplen 0 and 2^32-1
    write_raw(f"{d}/snaplen0.pcap", pcap_hdr(snaplen=0) + b"".join(rec(1700000000, i, f) for i, f in enumerate(fr)))
    write_raw(f"{d}/snaplenmax.pcap", pcap_hdr(snaplen=0xFFFFFFFF) + b"".join(rec(1700000000, i, f) for i, f in enumerate(fr)))
    # incl > orig, and a record length past the file at the end
    write_raw(f"{d}/incl_gt_orig.pcap", pcap_hdr() + b"".join(rec(1700000000, i, f, orig=1) for i, f in enumerate(fr)))
    write_raw(f"{d}/record_past_eof.pcap", pcap_hdr() + b"".join(rec(1700000000, i, f) for i, f in enumerate(fr)) + rec(1700000000, 0, fr[0], incl=900000))
    # unknown link type (147 = USER0), 200k frames
    write_raw(f"{d}/linktype_unknown.pcap", pcap_hdr(linktype=147) + b"".join(rec(1700000000, i % 1000000, f) for i, f in enumerate(fr * 10)))
    # timestamps: decades back and forth, 2106 (u32 max), 0
    tsl = [0xFFFFFFFF, 0, 1700000000, 86400, 0xFFFFFFFE, 1]
    write_raw(f"{d}/ts_jumps.pcap", pcap_hdr() + b"".join(rec(tsl[i % 6], 999999, f) for i, f in enumerate(fr)))
    # microsecond field past 10^6 (ts_us = 0xFFFFFFFF)
    write_raw(f"{d}/usec_overflow.pcap", pcap_hdr() + b"".join(rec(1700000000, 0xFFFFFFFF - i, f) for i, f in enumerate(fr)))
    # pcapng: 200,000 interface blocks then packets naming the last ones
    blob = [shb()] + [idb(1) for _ in range(200000)] + [epb(199999 - (i % 1000), (1700000000 * 10**6 + i), f) for i, f in enumerate(fr)]
    write_raw(f"{d}/pcapng_many_idb.pcapng", b"".join(blob))
    # pcapng: interfaces with mixed resolutions (us, ns, 2^-127, 10^-127, 10^0), alternating
    blob = [shb(), idb(1), idb(1, 9), idb(1, 0x80 | 127), idb(1, 127), idb(1, 0)]
    blob += [epb(i % 5, (1700000000 * 10**6 + i) * (1 if i % 5 != 1 else 1000), f) for i, f in enumerate(fr)]
    write_raw(f"{d}/pcapng_tsresol_mix.pcapng", b"".join(blob))
    # pcapng: 100,000 sections each with its interface and one packet
    blob = []
    for i, f in enumerate(fr * 5):
        blob += [shb(), idb(1), epb(0, 1700000000 * 10**6 + i, f)]
    write_raw(f"{d}/pcapng_many_sections.pcapng", b"".join(blob))
    # pcapng: timestamps 2^64-1
    blob = [shb(), idb(1, 0)] + [epb(0, (1 << 64) - 1 - i, f) for i, f in enumerate(fr)]
    write_raw(f"{d}/pcapng_ts_max.pcapng", b"".join(blob))
    # pcapng: huge unknown blocks (1 MB custom blocks) between packets
    blob = [shb(), idb(1)]
    for i, f in enumerate(fr[:2000]):
        blob += [pcapng_block(0x40000BAD, b"\0" * 1000), epb(0, 1700000000 * 10**6 + i, f)]
    write_raw(f"{d}/pcapng_custom_blocks.pcapng", b"".join(blob))
    # gzip: a pcap header, then 200 MiB of zeros (13,107,200 empty records) in 200 KB
    import gzip
    with gzip.open(f"{d}/gz_zeros.pcap.gz", "wb", compresslevel=9) as f:
        f.write(pcap_hdr())
        for _ in range(200):
            f.write(b"\0" * (1 << 20))

def dns_flows(p, n):
    for i in range(n):
        src = _ip(i)
        q = struct.pack("!HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + b"\x03www\x07example\x03com\0\0\x01\0\x01"
        p.raw(T0 + i * 10_000, ETH + b"\x08\x00" + ip4(src, B, 17, udp(1024 + i % 60000, 53, q)))

def it_tiny_flows(p, n):
    """DNS, NTP, SNMP, syslog: one datagram per flow from n/4 sources each."""
    ntp = b"\x23" + b"\0" * 47
    snmp = bytes.fromhex("302602010104067075626c6963a01902044b1c2b3f020100020100300b300906052b060102010500")
    sysl = b"<34>Oct 11 22:14:15 host su: 'su root' failed"
    dns = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x03www\x07example\x03com\0\0\x01\0\x01"
    for i in range(n):
        port, pl = ((53, dns), (123, ntp), (161, snmp), (514, sysl))[i % 4]
        p.raw(T0 + i * 10_000, ETH + b"\x08\x00" + ip4(_ip(i), B, 17, udp(1024 + i % 60000, port, pl)))

def every_proto_one_port(p, n):
    """one client, connections to port 502 each carrying another protocol's opening bytes."""
    hellos = [
        bytes.fromhex("101000044d5154540402003c0004636c6964"),  # MQTT CONNECT
        b"HELF" + struct.pack("<I", 32) + b"\0" * 24,  # OPC UA HEL
        bytes.fromhex("16030100310100002d0303") + b"\0" * 32 + b"\0\0\x02\x00\x2f\x01\x00",  # TLS ClientHello-ish
        bytes.fromhex("0300001611e00000000100c0010ac1020100c2020102"),  # COTP CR (S7)
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"SSH-2.0-OpenSSH_9.0\r\n",
        bytes.fromhex("0564") + b"\x05\xc9\x01\x00\x00\x04\xe9\x21",  # DNP3
        bytes.fromhex("680407000000"),  # IEC 104 STARTDT
        bytes.fromhex("65000400000000000000000000000000000000000000000001000000"),  # ENIP RegisterSession
        modbus_req(1), b"\x00" * 12, bytes(range(256)),
    ]
    for i in range(n):
        c = Conv(p, A, B, 10000 + i % 50000, 502, T0 + i * 1_000_000).handshake()
        c.send(True, hellos[i % len(hellos)])
        c.send(False, hellos[(i * 7 + 3) % len(hellos)])
        c.close()

def tls_cert_chain(p, n, chain=1000, sans=0):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2030, 1, 1)))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(f"h{i}.example") for i in range(sans)]), False)
    der = b.sign(key, hashes.SHA256()).public_bytes(__import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)
    certs = b"".join(len(der).to_bytes(3, "big") + der for _ in range(chain))
    body = len(certs).to_bytes(3, "big") + certs
    msg = b"\x0b" + len(body).to_bytes(3, "big") + body
    shb_ = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x2f" + b"\x00" + b"\x00\x00"
    sh = b"\x02" + len(shb_).to_bytes(3, "big") + shb_
    hs = sh + msg
    recs = b"".join(b"\x16\x03\x03" + len(hs[o:o + 16384]).to_bytes(2, "big") + hs[o:o + 16384] for o in range(0, len(hs), 16384))
    ch_body = b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    ch = b"\x16\x03\x01" + (len(ch_body) + 4).to_bytes(2, "big") + b"\x01" + len(ch_body).to_bytes(3, "big") + ch_body
    for i in range(n):
        c = Conv(p, _ip(i), B, 40000, 4843, T0 + i * 1_000_000).handshake()
        c.send(True, ch)
        for o in range(0, len(recs), 1400):
            c.send(False, recs[o:o + 1400], dt=10)
        c.close()

def inject(p, kind, n=100):
    """one Modbus connection, n request/response pairs; after the 10th a forged `kind` segment (rst/syn/rstack)."""
    c = Conv(p, A, B, 40000, 502, T0).handshake()
    for i in range(n):
        if i == 10:
            seq = (c.cseq + 123456789) & 0xFFFFFFFF
            fl = {"rst": RST, "syn": SYN, "rstack": RST | ACK, "synack": SYN | ACK}[kind]
            p.tcp(c.ts, c.c, c.s, c.cp, c.sp, seq, c.sseq, fl)
        c.send(True, modbus_req(i)); c.send(False, modbus_resp(i))
    c.close()

def dns_hostile(p, n):
    """DNS responses with compression-pointer loops and 255-label names, from 53 to random ports."""
    loop = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0) + b"\xc0\x0c" + b"\0\x01\0\x01" + b"\xc0\x0c\0\x01\0\x01\0\0\0\x3c\0\x04\x01\x02\x03\x04"
    long = struct.pack("!HHHHHH", 2, 0x0100, 1, 0, 0, 0) + b"\x01a" * 255 + b"\0\0\x01\0\x01"
    deep = struct.pack("!HHHHHH", 3, 0x8180, 1, 200, 0, 0) + b"\x01a\0\0\x01\0\x01" + b"".join(
        struct.pack("!H", 0xC000 | (12 + 2 * (k % 3))) + b"\0\x01\0\x01\0\0\0\x3c\0\x04\x01\x02\x03\x04" for k in range(200))
    for i in range(n):
        pl = (loop, long, deep)[i % 3]
        p.raw(T0 + i * 10_000, ETH + b"\x08\x00" + ip4(B, _ip(i % 5000), 17, udp(53, 1024 + i % 60000, pl)))

def netbios_lies(p, n):
    """SMB/NetBIOS, DCERPC and LDAP whose length fields announce far more than is sent."""
    smb = b"\x00\xff\xff\xff\xfeSMB" + b"\x72" + b"\0" * 60
    dce = bytes([5, 0, 11, 3, 0x10, 0, 0, 0]) + struct.pack("<HHI", 0xFFFF, 0xFFFF, 1) + b"\0" * 60
    ldap = b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01" + b"\x30" * 60
    for i in range(n):
        port, pl = ((445, smb), (135, dce), (389, ldap))[i % 3]
        c = Conv(p, _ip(i), B, 40000, port, T0 + i * 1_000_000).handshake()
        for _ in range(5):
            c.send(True, pl)
        c.close()

def ber_nesting(p, n):
    """SNMP and LDAP messages nested 10,000 SEQUENCEs deep (indefinite-length form: two bytes a level)."""
    bomb = b"\x30\x80" * 10000 + b"\x00\x00" * 10000
    for i in range(n):
        if i % 2:
            p.raw(T0 + i * 10_000, ETH + b"\x08\x00" + ip4(_ip(i), B, 17, udp(40000, 161, b"\x30\x82\x9c\x4a\x02\x01\x01\x04\x06public" + bomb[:3000])))
        else:
            c = Conv(p, _ip(i), B, 40000, 389, T0 + i * 1_000_000).handshake()
            for o in range(0, len(bomb), 1400):
                c.send(True, bomb[o:o + 1400])
            c.close()


#: case -> (writer, size); the TLS cases are one writer at several chain shapes
SIZES = dict(gre_nest=5000, ipip_nest=3000, vxlan_nest=5000, mpls_stack=5000, ipv6_ext_chain=1000,
             ipv6_frag_in_routing=20000, teardrop=20000, seq_wrap=50000, syn_data=20000, rst_storm=100000,
             far_segments=4000, overlap_conflict=20000, window_zero=50000, dns_flows=100000, it_tiny_flows=100000,
             every_proto_one_port=12000, dns_hostile=60000, netbios_lies=6000, ber_nesting=400)
TLS = {"tls_chain1000": (3, 1000, 0), "tls_sans": (5, 1, 10000), "tls_sans3000": (300, 1, 3000),
       "tls_chain40": (300, 40, 0)}
INJECT = ("rst", "rstack", "syn", "synack")


def main(d: str, which: list[str]) -> None:
    for name in which:
        random.seed(8)
        if name == "files":
            files(d)
            continue
        if name == "inject":
            for k in INJECT:
                p = PcapOut(f"{d}/inject_{k}.pcap")
                inject(p, k)
                p.close()
            continue
        p = PcapOut(f"{d}/{name}.pcap")
        if name in TLS:
            n, chain, sans = TLS[name]
            tls_cert_chain(p, n, chain=chain, sans=sans)
        else:
            globals()[name](p, SIZES[name])
        p.close()
        print(name, p.frames, os.path.getsize(f"{d}/{name}.pcap"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or [*SIZES, *TLS, "inject", "files"])
