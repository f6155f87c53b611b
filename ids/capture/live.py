"""Live capture from network interfaces (Linux AF_PACKET): frames -> (ts_ns, linktype, bytes), with the
kernel's own counters of what it delivered and dropped. Nothing is dissected here (no scapy per packet).

Two ways to read one socket, both the kernel's packet socket: `ring` (default) maps a TPACKET_V3 receive
ring, so the kernel fills blocks of frames with their timestamps, original lengths and VLAN tags and we
read them without a system call per frame; `socket` calls recvmsg() per frame (timestamp and VLAN tag
from ancillary data). `otids bench-live --methods` measures both, scapy's own L2ListenSocket.recv_raw
and libpcap on the same traffic; the figures are in docs/LIVE.md. Filters are compiled by libpcap
(through scapy's compile_filter) and run in the kernel; the socket receives nothing until the filter is
in place, so no unfiltered frame slips through at start-up.

What the frames mean is left to ids.decode; running the loop, counting per interval and alerting on loss
to ids.live.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import socket
import struct

from ..errors import UserError

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

# ARPHRD_* (linux/if_arp.h) -> pcap link type of the frames a SOCK_RAW packet socket hands over
ARPHRD_LINKTYPE = {1: 1, 772: 1, 0xFFFE: 101}  # Ethernet, loopback (Ethernet header), none (raw IP)

#: tpacket3_hdr (linux/if_packet.h): next_offset, sec, nsec, snaplen, len, status, mac, net, rxhash,
#: vlan_tci, vlan_tpid. sockaddr_ll follows at TPACKET_ALIGN(48); its pkttype byte is at +10.
_HDR3 = struct.Struct("=IIIIIIHHIIH")
_PKTTYPE_OFF = 48 + 10
_BLOCK = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt (at block offset 8)
_AUX = struct.Struct("=IIIHHHH")  # tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
_TIMESPEC = struct.Struct("=qq")
_ZERO4 = b"\0\0\0\0"
_ANCBUF = socket.CMSG_SPACE(_AUX.size) + socket.CMSG_SPACE(_TIMESPEC.size)

BLOCK_SIZE = 1 << 20


def compile_bpf(expr: str, linktype: int = 1) -> bytes:
    """Compile a tcpdump filter expression with libpcap; returns the raw instructions (8 bytes each).

    A bad expression is a UserError quoting libpcap's reason."""
    try:
        from scapy.arch.common import compile_filter, free_filter
        from scapy.error import Scapy_Exception
    except ImportError as e:  # pragma: no cover - scapy is a dependency
        raise UserError(f"--bpf needs scapy and libpcap: {e}") from None
    try:
        prog = compile_filter(expr, linktype=linktype)
    except (Scapy_Exception, ImportError, OSError) as e:
        raise UserError(f"--bpf {expr!r}: {str(e).split(' (', 1)[-1].rstrip(')') or e}") from None
    try:
        n = prog.bf_len
        return ctypes.string_at(ctypes.addressof(prog.bf_insns.contents), n * 8)
    finally:
        free_filter(prog)


def attach_bpf(sock: socket.socket, insns: bytes) -> None:
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HxxxxxxQ", len(insns) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class LiveCapture:
    """One interface. `dispatch(feed, budget)` hands ready frames to feed(ts_ns, linktype, data) and returns
    how many; `kernel_stats()` folds the kernel's counters (reset by every read) into the totals.

    Counters: `packets`/`bytes` handed on (bytes = original frame lengths), `truncated` frames longer than
    the snap length (handed on cut short: the decoder cannot use them, so they count as our drops),
    `errors` frames the pipeline raised on (a bug; counted, the sensor goes on), `skipped_outgoing`
    loopback frames seen twice (libpcap skips them too), `kernel_packets` frames the kernel queued for
    us including `kernel_drops` it had to discard because we did not keep up.
    """

    def __init__(self, iface: str, bpf: str | None = None, promisc: bool = True, method: str = "ring",
                 buffer_mb: int = 32, snaplen: int = 65535, block_timeout_ms: int = 20):
        if method not in ("ring", "socket"):
            raise UserError(f"capture method must be ring or socket (got {method!r})")
        self.name = iface
        self.bpf, self.promisc, self.method = bpf, promisc, method
        self.buffer_mb, self.snaplen, self.block_timeout_ms = buffer_mb, snaplen, block_timeout_ms
        self.packets = self.bytes = self.truncated = self.errors = self.skipped_outgoing = 0
        self.vlan_restored = 0  # frames whose VLAN tag the kernel had stripped and we put back
        self.kernel_packets = self.kernel_drops = 0
        self.first_error: str | None = None
        self.ring: mmap.mmap | None = None
        self.sock: socket.socket | None = None
        self._open()

    def reopen(self) -> None:
        """Open the interface again by name (it was removed and came back); counters carry on."""
        self.close()
        self._open()

    def _open(self) -> None:
        iface = self.name
        try:
            self.ifindex = socket.if_nametoindex(iface)
        except OSError:
            raise UserError(f"interface {iface!r}: no such interface") from None
        hatype = _hatype(iface)
        lt = ARPHRD_LINKTYPE.get(hatype)
        if lt is None:
            raise UserError(f"interface {iface}: unsupported hardware type {hatype} (Ethernet, loopback "
                            f"and raw-IP interfaces are supported)")
        insns = compile_bpf(self.bpf, lt) if self.bpf else None
        try:
            # Protocol 0: nothing is queued until bind(), after the filter is attached.
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise UserError(f"interface {iface}: capturing needs root or CAP_NET_RAW") from None
        self.sock = s
        try:
            if self.promisc:
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                             struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b""))
            if self.method == "ring":
                self._setup_ring(self.buffer_mb, self.block_timeout_ms)
            else:
                s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN; fall back to what is allowed
                    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.buffer_mb << 20)
                except PermissionError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_mb << 20)
            if insns:
                attach_bpf(s, insns)
            s.bind((iface, ETH_P_ALL))
            s.setblocking(False)
        except OSError as e:
            self.close()
            raise UserError(f"interface {iface}: cannot capture: {e.strerror or e}") from None
        self.linktype = lt
        self.hatype = hatype
        self.skip_outgoing = hatype == 772  # loopback: each frame is seen leaving and arriving

    def _setup_ring(self, buffer_mb: int, block_timeout_ms: int) -> None:
        s = self.sock
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        self.block_nr = max(2, buffer_mb * (1 << 20) // BLOCK_SIZE)
        frame = 2048
        req = struct.pack("=7I", BLOCK_SIZE, self.block_nr, frame, BLOCK_SIZE // frame * self.block_nr,
                          block_timeout_ms, 0, 0)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        # MAP_POPULATE maps the whole ring now: no page faults on the hot path, and the sensor's RSS holds
        # the ring from the start instead of creeping up to it as bursts reach deeper into the blocks.
        self.ring = mmap.mmap(s.fileno(), BLOCK_SIZE * self.block_nr, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self.cur = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    # ------------------------------------------------------------------ reading
    def dispatch(self, feed, budget: int = 4096) -> int:
        if self.ring is not None:
            return self._dispatch_ring(feed, budget)
        return self._dispatch_socket(feed, budget)

    def _dispatch_ring(self, feed, budget: int) -> int:
        mm, hdr, lt = self.ring, _HDR3.unpack_from, self.linktype
        skip_out = self.skip_outgoing
        n = nbytes = 0
        cur, nr = self.cur, self.block_nr
        while n < budget:
            boff = cur * BLOCK_SIZE
            status, num, first = _BLOCK.unpack_from(mm, boff + 8)
            if not status & TP_STATUS_USER:
                break
            off = boff + first
            for _ in range(num):
                nxt, sec, nsec, snap, length, st, mac, _net, _rxh, tci, tpid = hdr(mm, off)
                if skip_out and mm[off + _PKTTYPE_OFF] == PACKET_OUTGOING:
                    self.skipped_outgoing += 1
                    off += nxt
                    continue
                data = mm[off + mac:off + mac + snap]
                if st & TP_STATUS_VLAN_VALID and (tci or st & TP_STATUS_VLAN_TPID_VALID):
                    # the NIC stripped the 802.1Q tag; put it back where the decoder expects it
                    self.vlan_restored += 1
                    data = data[:12] + struct.pack("!HH", tpid if st & TP_STATUS_VLAN_TPID_VALID else 0x8100,
                                                   tci & 0xFFFF) + data[12:]
                if snap < length:
                    self.truncated += 1
                n += 1
                nbytes += length
                try:
                    feed(sec * 1_000_000_000 + nsec, lt, data)
                except Exception as e:  # a bug on one frame must not blind the sensor for weeks
                    self._error(e)
                off += nxt
            mm[boff + 8:boff + 12] = _ZERO4  # TP_STATUS_KERNEL: hand the block back
            cur += 1
            if cur == nr:
                cur = 0
        self.cur = cur
        self.packets += n
        self.bytes += nbytes
        return n

    def _dispatch_socket(self, feed, budget: int) -> int:
        recvmsg, snaplen, lt = self.sock.recvmsg, self.snaplen, self.linktype
        aux_unpack, ts_unpack = _AUX.unpack_from, _TIMESPEC.unpack_from
        skip_out = self.skip_outgoing
        n = nbytes = 0
        while n < budget:
            try:
                data, anc, _flags, addr = recvmsg(snaplen, _ANCBUF)
            except BlockingIOError:
                break
            if skip_out and addr[2] == PACKET_OUTGOING:
                self.skipped_outgoing += 1
                continue
            ts = length = 0
            for level, kind, cdata in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    st, length, _snap, _mac, _net, tci, tpid = aux_unpack(cdata)
                    if st & TP_STATUS_VLAN_VALID and (tci or st & TP_STATUS_VLAN_TPID_VALID):
                        self.vlan_restored += 1
                        data = data[:12] + struct.pack("!HH", tpid if st & TP_STATUS_VLAN_TPID_VALID else 0x8100,
                                                       tci) + data[12:]
                elif kind == SO_TIMESTAMPNS:
                    sec, nsec = ts_unpack(cdata)
                    ts = sec * 1_000_000_000 + nsec
            if length > len(data):
                self.truncated += 1
            n += 1
            nbytes += length or len(data)
            try:
                feed(ts, lt, data)
            except Exception as e:
                self._error(e)
        self.packets += n
        self.bytes += nbytes
        return n

    def _error(self, e: Exception) -> None:
        self.errors += 1
        if self.first_error is None:
            import traceback
            self.first_error = "".join(traceback.format_exception(e)).rstrip()

    # ------------------------------------------------------------------ state and counters
    def pending_error(self) -> int:
        """The socket's pending error (ENETDOWN when the link went down), cleared by reading it."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def gone(self) -> bool:
        """The interface was removed (or replaced by another of the same name): the socket is dead."""
        try:
            return socket.if_nametoindex(self.name) != self.ifindex
        except OSError:
            return True

    def kernel_stats(self) -> tuple[int, int]:
        """Fold PACKET_STATISTICS into the totals (the kernel resets its copy on every read); returns the
        totals (frames queued for us including drops, frames dropped)."""
        if self.sock is None:
            return self.kernel_packets, self.kernel_drops
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12 if self.ring is not None else 8)
        except OSError:
            return self.kernel_packets, self.kernel_drops
        pk, dr = struct.unpack_from("=II", raw)
        self.kernel_packets += pk
        self.kernel_drops += dr
        return self.kernel_packets, self.kernel_drops

    @property
    def sensor_drops(self) -> int:
        return self.truncated + self.errors

    def close(self) -> None:
        if self.ring is not None:
            try:
                self.ring.close()
            except BufferError:  # pragma: no cover - a frame view still alive; the socket close frees it
                pass
            self.ring = None
        if self.sock is not None:
            self.kernel_stats()
            self.sock.close()
            self.sock = None


def _hatype(iface: str) -> int:
    try:
        with open(f"/sys/class/net/{iface}/type") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 1


def link_state(iface: str) -> str:
    """'up', 'down' or 'absent', from sysfs ('unknown', as loopback and tun report, counts as up)."""
    try:
        with open(f"/sys/class/net/{iface}/operstate") as fh:
            st = fh.read().strip()
    except OSError:
        return "absent"
    return "down" if st in ("down", "lowerlayerdown", "notpresent", "dormant") else "up"


def link_offloads(iface: str) -> list[str]:
    """Receive offloads that merge frames before capture (GRO, LRO): captured frames then carry header
    fields of the first segment only, which reassembly and checksums misread. Returns those enabled."""
    import fcntl
    on = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for name, cmd in (("gro", 0x2B), ("lro", None)):
            buf = ctypes.create_string_buffer(struct.pack("II", cmd or 0x25, 0), 8)  # ETHTOOL_GGRO / GFLAGS
            ifr = struct.pack("16sQ", iface.encode()[:15], ctypes.addressof(buf))
            try:
                fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.ENODEV, errno.EPERM, errno.EINVAL):
                    continue
                raise
            val = struct.unpack("II", buf.raw)[1]
            if (cmd and val) or (cmd is None and val & 0x8000):  # ETH_FLAG_LRO
                on.append(name)
    finally:
        s.close()
    return on
