"""Decode link, network and transport headers into one compact record per packet.

Link types Ethernet (802.1Q, 802.1ad/QinQ), Linux cooked SLL/SLL2, raw IP and BSD loopback; IPv4 (options,
fragments reassembled by ids.decode.frag), IPv6 (extension headers), TCP, UDP, ICMP/ICMPv6 (type and code),
any other IP protocol (by number) and non-IP Ethernet frames (by EtherType, `proto` ETHER), so that every
conversation on the wire reaches the flow table. Each fixed header is one
precompiled struct unpack. Checksums are verified and recorded, never a reason to drop. What the payload
means is left to ids.flow and ids.protocols.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython

from .frag import FragmentReassembler

# Link types (tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_12 = 12  # DLT_RAW on some BSDs
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_TAGS = 8  # 802.1Q / 802.1ad tags decoded per frame (QinQ uses 2; Suricata takes 3, Zeek 2)

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
ETHER = 256  # Packet.proto of a non-IP Ethernet frame (no IP protocol number is this large)


class Packet(NamedTuple):
    """One decoded packet. Addresses stay bytes (4 or 16) until a flow needs text.

    ICMP/ICMPv6: `sport` is the type, `dport` the code, `payload` what follows the 8-byte header. Other IP
    protocols: ports 0, `payload` the IP payload. Non-IP Ethernet (`proto` ETHER): `src`/`dst` are the MACs,
    `sport` the EtherType (0 for 802.3 length-field frames), `payload` what follows the Ethernet header."""

    ts: int  # nanoseconds since the epoch
    proto: int  # IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...) or ETHER
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int  # TCP flags byte (0 for UDP)
    payload: bytes
    src_mac: bytes | None
    dst_mac: bytes | None
    vlan: tuple[int, ...] | None
    bad_checksum: bool
    iplen: int = 0  # IP bytes (header included), as Zeek's ip_bytes; non-IP: the frame from the EtherType on


# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

if not cython.compiled:  # builds a Packet without the generated __new__'s argument handling (packet.pxd)
    from .._records import new_record

_ETH_IP4_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")  # 14 + 20 + 20 bytes
_ETH = struct.Struct("!6s6sH")
_VLAN = struct.Struct("!HH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_SLL = struct.Struct("!HHH8sH")
_SLL2 = struct.Struct("!HHIHBB8s")
_PSEUDO4 = struct.Struct("!4s4sBBH")
_PSEUDO6 = struct.Struct("!16s16sIxxxB")
_u32le = struct.Struct("<I").unpack_from
_u32be = struct.Struct(">I").unpack_from

_from_bytes = int.from_bytes


def _csum_ok(data: bytes) -> bool:
    """True when the one's-complement sum of `data` (16-bit big-endian words) is all ones.

    The one's-complement sum is congruent to the whole buffer read as one integer modulo 0xFFFF, which
    lets one C-level int conversion stand in for a Python loop over words.
    """
    if len(data) & 1:
        data += b"\0"
    return _from_bytes(data, "big") % 0xFFFF == 0


@cython.locals(p=cython.p_uchar, i=cython.Py_ssize_t, last=cython.Py_ssize_t, acc=cython.ulonglong)
def _sum_mod(data: bytes, start: int, end: int) -> int:
    """`int.from_bytes(data[start:end], "big") % 0xFFFF`, padded with a zero byte when odd, computed as the
    one's-complement sum of 16-bit words (2^16 = 1 mod 0xFFFF). The compiled path's checksum: a C loop over
    the bytes, no big integer. As Python it gives the same value, slowly; the pure path uses from_bytes."""
    p = data
    acc = 0
    last = end - 1
    i = start
    while i < last:
        acc += (p[i] << 8) | p[i + 1]
        i += 2
    if i == last:
        acc += p[i] << 8
    return acc % 0xFFFF


class DecodeStats:
    __slots__ = ("packets", "bytes", "not_ip", "not_tcp_udp", "malformed", "truncated", "bad_checksum",
                 "fragments", "linktype_unknown", "checksum_checked")

    def __init__(self):
        for k in self.__slots__:
            setattr(self, k, 0)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


class Decoder:
    """Turns (ts, linktype, frame) into a Packet, or None for what no flow consumes (counted in stats).

    checksums: "on" verifies every IPv4/TCP/UDP checksum; "off" none; "auto" verifies and turns itself off
    once the first `auto_sample` checked packets are mostly wrong (checksum offload on the capturing host,
    as on loopback), saying so in `checksum_note`.
    """

    def __init__(self, checksums: str = "auto", frag: FragmentReassembler | None = None, auto_sample: int = 1000):
        self.stats = DecodeStats()
        self.frag = frag or FragmentReassembler()
        self.verify = checksums != "off"
        self.auto = checksums == "auto"
        self.auto_sample = auto_sample
        self.checksum_note: str | None = None
        self.notices: list[tuple[int, str, dict]] = []  # (ts, action, details) for the flow stage to emit

    # ------------------------------------------------------------------ entry point
    @cython.locals(b=cython.p_uchar, et=cython.int, vhl=cython.int, tot=cython.Py_ssize_t, frag=cython.int,
                   proto=cython.int, off=cython.int, thl=cython.Py_ssize_t, end=cython.Py_ssize_t,
                   seglen=cython.Py_ssize_t)
    def decode(self, ts: int, linktype: int, data: bytes) -> Packet | None:
        st = self.stats
        st.packets += 1
        st.bytes += len(data)
        # Fast path: untagged Ethernet, IPv4 without options, unfragmented TCP.
        if linktype == 1 and len(data) >= 54:
            if cython.compiled and type(data) is bytes:
                # Compiled: the fields the test needs, read from the bytes (no 22-field tuple); the rest
                # only for a packet that takes this path. The same values as the struct below.
                b = data
                et = b[12] << 8 | b[13]
                vhl = b[14]
                tot = b[16] << 8 | b[17]
                frag = b[20] << 8 | b[21]
                proto = b[23]
                off = b[46]
            else:
                (dmac, smac, et, vhl, _tos, tot, _id, frag, _ttl, proto, _ic, src, dst,
                 sport, dport, seq, ack, off, flags, _win, _tc, _urg) = _ETH_IP4_TCP.unpack_from(data)
            thl = (off >> 4) * 4
            end = 14 + tot
            if et == 0x0800 and vhl == 0x45 and proto == 6 and not frag & 0x3FFF \
                    and thl >= 20 and 34 + thl <= end <= len(data):
                bad = False
                if self.verify:
                    # IPv4 header, then TCP over pseudo-header + segment. Source and destination address
                    # (bytes 26-34) sit right before the segment, so one integer covers both; 2^16 = 1
                    # (mod 0xFFFF) lets protocol and length be added rather than concatenated.
                    st.checksum_checked += 1
                    seglen = tot - 20
                    if cython.compiled and type(data) is bytes:  # the same sums, without big integers
                        wrong = _sum_mod(data, 14, 34) or (_sum_mod(data, 26, end) + 6 + seglen) % 0xFFFF
                    else:
                        v = _from_bytes(data[26:end], "big")
                        if seglen & 1:
                            v <<= 8
                        wrong = _from_bytes(data[14:34], "big") % 0xFFFF or (v + 6 + seglen) % 0xFFFF
                    if wrong:
                        bad = self._bad(ts)
                    elif self.auto:
                        self._auto_check()
                if cython.compiled and type(data) is bytes:
                    # b[i:j]: bytes made straight from the frame's memory (no slice object); in bounds by
                    # the test above. The same bytes as data[i:j].
                    return new_record(Packet, (
                        ts, 6, b[26:30], b[30:34], b[34] << 8 | b[35], b[36] << 8 | b[37],
                        cython.cast(cython.uint, b[38]) << 24 | b[39] << 16 | b[40] << 8 | b[41],
                        cython.cast(cython.uint, b[42]) << 24 | b[43] << 16 | b[44] << 8 | b[45],
                        b[47], b[34 + thl:end], b[6:12], b[0:6], None, bad, tot))
                return new_record(Packet, (ts, 6, src, dst, sport, dport, seq, ack, flags, data[34 + thl:end],
                                            smac, dmac, None, bad, tot))
        return self._decode_slow(ts, linktype, data)

    # ------------------------------------------------------------------ general path
    def _decode_slow(self, ts: int, linktype: int, data: bytes) -> Packet | None:
        st = self.stats
        smac = dmac = None
        vlan: list[int] | None = None
        n = len(data)
        if linktype == LINKTYPE_ETHERNET:
            if n < 14:
                st.truncated += 1
                return None
            dmac, smac, etype = _ETH.unpack_from(data)
            off = 14
            while etype in ETH_VLAN:
                if n < off + 4:
                    st.truncated += 1
                    return None
                if off >= 14 + 4 * MAX_VLAN_TAGS:  # no switch stacks that deep: a crafted frame, whose every
                    st.malformed += 1  # distinct stack was a flow key of its own (a 200-tag flood: 388 MB)
                    return None
                tci, etype = _VLAN.unpack_from(data, off)
                (vlan := vlan or []).append(tci & 0x0FFF)
                off += 4
        elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_IPV4, LINKTYPE_IPV6):
            if not n:
                st.truncated += 1
                return None
            etype, off = (ETH_IPV4 if data[0] >> 4 == 4 else ETH_IPV6 if data[0] >> 4 == 6 else 0), 0
        elif linktype == LINKTYPE_LINUX_SLL:
            if n < 16:
                st.truncated += 1
                return None
            _ptype, hatype, halen, addr, etype = _SLL.unpack_from(data)
            if hatype == 1 and halen == 6:
                smac = addr[:6]
            off = 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            if n < 20:
                st.truncated += 1
                return None
            etype, _r, _ifi, hatype, _pt, halen, addr = _SLL2.unpack_from(data)
            if hatype == 1 and halen == 6:
                smac = addr[:6]
            off = 20
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if n < 4:
                st.truncated += 1
                return None
            fam = _u32be(data)[0] if linktype == LINKTYPE_LOOP else _u32le(data)[0]
            if fam > 0xFFFF:  # written in the other host byte order
                fam = _u32be(data)[0] if linktype != LINKTYPE_LOOP else _u32le(data)[0]
            etype = ETH_IPV4 if fam == 2 else ETH_IPV6 if fam in (10, 24, 28, 30) else 0
            off = 4
        else:
            st.linktype_unknown += 1
            return None
        vl = tuple(vlan) if vlan else None
        if etype == ETH_IPV4:
            return self._ipv4(ts, data, off, smac, dmac, vl)
        if etype == ETH_IPV6:
            return self._ipv6(ts, data, off, smac, dmac, vl)
        st.not_ip += 1
        if smac is None or dmac is None:  # no Ethernet addresses (cooked capture): nobody to pair it with
            return None
        return Packet(ts, ETHER, smac, dmac, etype if etype >= 0x600 else 0, 0, 0, 0, 0, data[off:], smac, dmac,
                      vl, False, n - off)

    def _ipv4(self, ts, data, off, smac, dmac, vlan) -> Packet | None:
        st = self.stats
        if len(data) < off + 20:
            st.truncated += 1
            return None
        vhl, _tos, tot, ipid, frag, _ttl, proto, _csum, src, dst = _IP4.unpack_from(data, off)
        ihl = (vhl & 0x0F) * 4
        if vhl >> 4 != 4 or ihl < 20 or tot < ihl:
            st.malformed += 1
            return None
        end = off + tot
        if end > len(data):
            st.truncated += 1  # snaplen cut the packet: decode what is there, the stream will see a gap
            end = len(data)
            if end < off + ihl:
                return None
        bad = False
        if self.verify and not _csum_ok(data[off:off + ihl]):
            st.checksum_checked += 1  # the transport checksum is then not checked: count the packet once here
            bad = self._bad(ts)
        l4 = off + ihl
        if frag & 0x3FFF:  # MF set or offset non-zero
            st.fragments += 1
            key = (src, dst, ipid, proto)
            whole = self.frag.add(ts, key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), data[l4:end], self.notices)
            if whole is None:
                return None
            return self._l4(ts, proto, src, dst, whole, 0, len(whole), smac, dmac, vlan, bad, 4, ihl + len(whole))
        return self._l4(ts, proto, src, dst, data, l4, end, smac, dmac, vlan, bad, 4, end - off)

    def _ipv6(self, ts, data, off, smac, dmac, vlan) -> Packet | None:
        st = self.stats
        if len(data) < off + 40:
            st.truncated += 1
            return None
        vtf, plen, nxt, _hop, src, dst = _IP6.unpack_from(data, off)
        if vtf >> 28 != 6:
            st.malformed += 1
            return None
        end = min(off + 40 + plen, len(data))
        pos = off + 40
        frag = None
        # Extension headers: hop-by-hop, routing, destination options, AH; fragment handled below. The whole
        # chain is walked, as a receiving stack does: each header is at least 8 bytes, so the walk is linear in
        # the packet. (It stopped at 16 headers and dropped the packet as malformed: Modbus behind 17
        # destination-options headers reached the device and was never analysed, said nowhere but the summary.)
        while True:
            if nxt in (0, 43, 60, 135, 139, 140):
                if pos + 2 > end:
                    st.truncated += 1
                    return None
                nxt, hlen = data[pos], (data[pos + 1] + 1) * 8
                pos += hlen
            elif nxt == 51:  # AH: length in 4-octet units minus 2
                if pos + 2 > end:
                    st.truncated += 1
                    return None
                nxt, hlen = data[pos], (data[pos + 1] + 2) * 4
                pos += hlen
            elif nxt == 44:
                if pos + 8 > end:
                    st.truncated += 1
                    return None
                nh, _r, offm, ident = struct.unpack_from("!BBHI", data, pos)
                frag = (offm & 0xFFF8, bool(offm & 1), ident)
                nxt = nh
                pos += 8
            else:
                break
        if pos > end:
            st.truncated += 1
            return None
        if frag is not None and (frag[0] or frag[1]):
            st.fragments += 1
            whole = self.frag.add(ts, (src, dst, frag[2], nxt), frag[0], frag[1], data[pos:end], self.notices)
            if whole is None:
                return None
            return self._l4(ts, nxt, src, dst, whole, 0, len(whole), smac, dmac, vlan, False, 6, 40 + len(whole))
        return self._l4(ts, nxt, src, dst, data, pos, end, smac, dmac, vlan, False, 6, end - off)

    def _l4(self, ts, proto, src, dst, data, pos, end, smac, dmac, vlan, bad, ipver, iplen) -> Packet | None:
        st = self.stats
        if proto == TCP:
            if end - pos < 20:
                st.truncated += 1
                return None
            sport, dport, seq, ack, offb, flags, _w, _c, _u = _TCP.unpack_from(data, pos)
            thl = (offb >> 4) * 4
            if thl < 20 or pos + thl > end:
                st.malformed += 1
                return None
            if self.verify and not bad:
                bad = self._check_l4(data, pos, end, src, dst, 6, ipver, ts)
            return Packet(ts, 6, src, dst, sport, dport, seq, ack, flags, data[pos + thl:end], smac, dmac, vlan, bad,
                          iplen)
        if proto == UDP:
            if end - pos < 8:
                st.truncated += 1
                return None
            sport, dport, ulen, ucs = _UDP.unpack_from(data, pos)
            if self.verify and not bad and ucs:
                bad = self._check_l4(data, pos, end, src, dst, 17, ipver, ts)
            return Packet(ts, 17, src, dst, sport, dport, 0, 0, 0, data[pos + 8:end], smac, dmac, vlan, bad, iplen)
        st.not_tcp_udp += 1
        if proto == ICMP or proto == ICMP6:
            if end - pos < 4:
                st.truncated += 1
                return None
            # RFC 792 / RFC 4443: type, code, checksum, 4 bytes of type-specific header (echo: id, sequence)
            return Packet(ts, proto, src, dst, data[pos], data[pos + 1], 0, 0, 0, data[pos + 8:end], smac, dmac,
                          vlan, bad, iplen)
        return Packet(ts, proto, src, dst, 0, 0, 0, 0, 0, data[pos:end], smac, dmac, vlan, bad, iplen)

    # ------------------------------------------------------------------ checksums
    def _check_l4(self, data, pos, end, src, dst, proto, ipver, ts) -> bool:
        self.stats.checksum_checked += 1
        seg = data[pos:end]
        if ipver == 4:
            pseudo = _PSEUDO4.pack(src, dst, 0, proto, len(seg))
        else:
            pseudo = _PSEUDO6.pack(src, dst, len(seg), proto)
        if _csum_ok(pseudo + seg):
            self._auto_check()
            return False
        return self._bad(ts)

    def _bad(self, ts) -> bool:
        self.stats.bad_checksum += 1
        self._auto_check()
        return True

    def _auto_check(self) -> None:
        st = self.stats
        if self.auto and st.checksum_checked >= self.auto_sample:
            self.auto = False
            if st.bad_checksum * 2 > st.checksum_checked:
                self.verify = False
                self.checksum_note = (f"checksum validation turned off after {st.bad_checksum} of the first "
                                      f"{st.checksum_checked} packets had bad checksums (offload on the capturing host)")
                self.notices.append((0, "checksum_validation_disabled", {"bad": st.bad_checksum,
                                                                         "checked": st.checksum_checked}))
