"""One worker's share of an analysis run: it reads and decodes every frame of the capture (so the decoder's
state, fragment reassembly and checksum auto-detection, is the same in every worker), advances the flow
table's clock on every packet (timeout sweeps at the same packet positions as in one process), but runs the
flow table, reassembly and protocol sessions only for the packets whose host pair hashes to it.

Every event leaves with a sort key that places it where one process would have emitted it:
(global packet index, step, flow, sequence). Steps within a packet: the timeout sweep (its expire pass per
table, the sustained-garbage pass, its removal pass per table), then the packet itself, then the decoder's
notices; the end of input sorts after every packet. Within a sweep one process walks each table in flow
creation order, so the flow's id (here: the global index of the packet that created it, which orders flows
as one process numbers them) places the events of different workers. The merge is ids.parallel.runner.
"""
from __future__ import annotations

import hashlib
import struct

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython

from ..capture.pcapfile import MAX_RECORD, PcapReader
from ..errors import CaptureError
from ..flow.table import SWEEP_EXPIRE, SWEEP_GARBAGE, FlowTable

NS = 1_000_000_000
END = 1 << 62  # packet index of the end of input: after every packet
STEP_EXPIRE = 0  # + table (tcp 0, udp 1, other 2)
STEP_GARBAGE = 3
STEP_REMOVE = 4  # + table
STEP_PACKET = 7
STEP_NOTICE = 8
STEP_WATERMARK = -1  # no event: "nothing before this key is still to come from me"
ETHER = 256
#: The fields of Decoder.decode's fast-path test (EtherType, version/IHL, total length, fragment bits,
#: protocol, TCP data offset)
_FAST = struct.Struct("!12xHBxH2xH1xB22xB")


def _hash(b: bytes) -> int:
    """Bucket hash of an address or pair that is not IPv4 (IPv6): once per pair."""
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "big")


#: Buckets of host pairs (a power of two): each is given to a worker when its first packet arrives.
BUCKET_BITS = 16
BUCKETS = 1 << BUCKET_BITS
#: At most this many workers (a bucket holds its worker in one byte)
MAX_WORKERS = 255
_P = cython.declare(cython.longlong, 2147483647)  # 2**31 - 1: the IPv4 bucket hash stays below 2**62 at
_K1 = cython.declare(cython.longlong, 1103515245)  # every step, in C as in Python
_K2 = cython.declare(cython.longlong, 1664525)
_SHIFT = cython.declare(cython.int, 31 - BUCKET_BITS)


@cython.locals(h=cython.longlong)
def _bucket4(a: int, b: int) -> int:
    """Bucket of the IPv4 host pair (a, b) (addresses as 32-bit integers, either order; a broker's address
    alone is the pair (a, a)): the same value in C and in Python, no 64-bit overflow anywhere."""
    if a > b:
        a, b = b, a
    h = (a % _P) * _K1 % _P
    h = (h + (b + 1) % _P) * _K2 % _P
    return h >> _SHIFT


class Emitter:
    """The merge key of what a worker emits and where it goes: `i` (global packet index), `step` and `fid`
    (flow id) are set by the worker's loop and the table's walks; each emission adds a running sequence
    number. An extension type when compiled (shard.pxd): the loop sets the fields as C values."""

    def __init__(self):
        self.i = 0
        self.step = STEP_PACKET
        self.fid = 0
        self.seq = 0
        self.out: list = []

    def key(self) -> tuple:
        return (self.i, self.step, self.fid, self.seq)

    def emit(self, ev) -> None:
        self.seq += 1
        self.out.append(((self.i, self.step, self.fid, self.seq), ev, None))

    def offload(self, engine, det, types, send_all: bool) -> None:
        from .offload import Inserted
        self.det = det
        self.types = types
        self.engine = engine
        self.send_all = send_all
        self.plans = {}
        self.counts = {}  # (dataset, label) -> events counted here, not sent
        self.inserted = Inserted(det.limiter)
        self.lim_entries = det.limiter.entries
        self.lim_max = det.limiter.max_keys

    def _plan(self, t: type) -> tuple:
        from .offload import parent_route, worker_view
        internal = getattr(t, "internal", False) is True
        check = self.det.on_event if t in self.types else None
        route = parent_route(self.engine, self.det, t) if check is not None else self.engine._route(t)
        # the ML detector the parent's only reader: its feature view crosses instead of the event (offload.py)
        view = None if self.send_all or internal else worker_view(route, t)
        p = self.plans[t] = (check, view is None and (bool(route) or (self.send_all and not internal)),
                             not internal, view)
        return p

    def emit_plan(self, ev) -> None:
        self.seq += 1
        key = (self.i, self.step, self.fid, self.seq)
        p = self.plans.get(type(ev))
        if p is None:
            p = self._plan(type(ev))
        check, send, count, view = p
        alerts = None
        if check is not None:
            ent = self.lim_entries
            n = len(ent)
            if n < self.lim_max:  # Inserted.call, inlined: this runs for most events
                alerts = check(ev)
                if len(ent) != n:
                    self.inserted.grew(n, key)
            else:
                alerts = self.inserted.call(check, ev, key)
        if send:
            self.out.append((key, ev, alerts))
            return
        if count:
            k = (ev.dataset, ev.label)
            self.counts[k] = self.counts.get(k, 0) + 1
        if view is not None:
            v = view(ev)
            if v is not None:
                self.out.append((key, v, alerts))
                return
        if alerts:
            self.out.append((key, None, alerts))


class ShardTable(FlowTable):
    """A FlowTable whose emissions carry their merge key (ids.parallel.shard.Emitter), and whose sweep and
    end-of-input walks say which flow each emission belongs to. The walks are FlowTable's own, step for
    step (tests/test_parallel.py holds every capture's output identical to one process)."""

    def __init__(self, *a, **kw):
        self.em = em = Emitter()
        self._nf = 0
        self._nf_at = -1
        super().__init__(*a, **kw)
        self.out = em.out
        self.vrank: dict = {}  # violated flow -> its rank in one process's violated dict (when it was detached)
        self.talker_rank: dict = {}  # talker key -> key of the emission that created it (summary order)
        self.emit = em.emit
        self.sweep_at = self._sweep_at

    @property
    def nflows(self) -> int:
        """A new flow's id is the global index of the packet that made it (one process numbers flows in
        that order); read only when a flow is made, so the loop never sets it."""
        i = self.em.i
        return self._nf if self._nf_at == i else i - 1

    @nflows.setter
    def nflows(self, v: int) -> None:
        self._nf = v
        self._nf_at = self.em.i

    def offload(self, engine, det, types, send_all: bool) -> None:
        """Run `det`'s checks of `types` here (ids.parallel.offload) and send an event only when the parent
        needs it: an event sink (`send_all`) or a detector of the parent's is routed to it; else count it."""
        self.em.offload(engine, det, types, send_all)
        self.emit = self.em.emit_plan

    def detach(self, flow, ts: int, reason: str) -> None:
        if flow.app and flow not in self.violated:
            # one process orders the garbage pass by detach time: packet index, then emission order (a detach
            # is a packet-step emission of the packet's one owner, so the sequence breaks ties within it)
            em = self.em
            self.vrank[flow] = (em.i << 40) | (em.seq & ((1 << 40) - 1))
        super().detach(flow, ts, reason)

    def _remove(self, flow, ts: int, why: str) -> None:
        n = len(self.talkers)
        super()._remove(flow, ts, why)
        if len(self.talkers) > n:
            self.talker_rank[next(reversed(self.talkers))] = self.em.key()

    def sweep(self, now: int) -> None:
        """FlowTable.sweep, with each flow's emissions keyed by its pass, table and id (_sweep_at)."""
        super().sweep(now)
        em = self.em
        em.step = STEP_PACKET
        em.fid = 0

    def _sweep_at(self, what: int, f) -> None:
        em = self.em
        if what == SWEEP_GARBAGE:
            em.step = STEP_GARBAGE
            em.fid = self.vrank.get(f, 0)
        else:
            t = 0 if f.proto == 6 else 1 if f.proto == 17 else 2  # its table: tcp, udp, other
            em.step = (STEP_EXPIRE if what == SWEEP_EXPIRE else STEP_REMOVE) + t
            em.fid = f.flow_id

    def _close(self, flow, ts: int) -> None:
        super()._close(flow, ts)
        self.vrank.pop(flow, None)

    def finish(self, ts: int) -> None:
        flows = sorted({id(f): f for table in (self.tcp, self.udp, self.other) for f, _ in table.values()}.values(),
                       key=lambda f: f.flow_id)
        em = self.em
        em.i = END
        em.step = 1
        for f in flows:
            em.fid = f.flow_id
            self._remove(f, ts, "end")


class Router:
    """Which worker owns a packet: its host pair's bucket, the same for both directions, so every flow of a
    pair lands in one worker. MQTT (dissected ports) goes by the broker's address alone: Sparkplug births and
    PubSub metadata learned on one client's connection are applied on another's (state per broker and run).
    Non-IP frames (ARP, LLDP, ...) all go to one worker (bucket 0's).

    A bucket is given, when its first packet arrives, to the worker that owns the fewest packets so far:
    every worker reads every frame and asks the router about each, in the same order, so all of them make
    the same choices (a hash alone split the reference capture 53/47). Buckets are never given again, so a
    pair stays with its worker for the whole run; the table is fixed in size (BUCKETS)."""

    def __init__(self, n: int, broker_ports: set[int]):
        if not 1 <= n <= MAX_WORKERS:
            raise ValueError(f"1 to {MAX_WORKERS} workers")
        self.n = n
        self.broker_ports = broker_ports
        self.cache: dict = {}  # IPv6 pair or address -> bucket
        self.nbp = 0
        if not cython.compiled:  # compiled, these are C arrays (shard.pxd), zeroed
            self.bp = [0] * 8  # broker ports (the first 8; more are looked up in the set)
            self.buckets = bytearray(BUCKETS)  # bucket -> worker + 1 (0: not given yet)
            self.loads = [0] * n  # packets owned so far, per worker
        for p in sorted(broker_ports)[:8]:
            self.bp[self.nbp] = p
            self.nbp += 1

    @cython.locals(w=cython.int, j=cython.int, best=cython.longlong)
    def _take(self, h: cython.Py_ssize_t) -> int:
        """The worker of bucket `h` (given now if new), its packet count advanced."""
        w = self.buckets[h]
        if w == 0:
            best = self.loads[0]
            w = 1
            for j in range(1, self.n):
                if self.loads[j] < best:
                    best = self.loads[j]
                    w = j + 1
            self.buckets[h] = w
        self.loads[w - 1] += 1
        return w - 1

    @cython.locals(b=cython.p_uchar, et=cython.int, vhl=cython.int, tot=cython.Py_ssize_t, frag=cython.int,
                   proto=cython.int, off=cython.int, thl=cython.Py_ssize_t)
    def frame_owner(self, data: bytes) -> int:
        """owner() of an Ethernet frame that takes Decoder.decode's fast path (untagged Ethernet, IPv4
        without options, unfragmented TCP; such a packet always decodes), from its bytes; -1 for any other
        frame. Once per frame in every worker: no decode, no Python object made."""
        if cython.compiled and type(data) is bytes:
            b = data
            return self.owner_at(b, len(data))
        if len(data) < 54:
            return -1
        et, vhl, tot, frag, proto, off = _FAST.unpack_from(data)
        thl = (off >> 4) * 4
        if et != 0x0800 or vhl != 0x45 or proto != 6 or frag & 0x3FFF or thl < 20 or 34 + thl > 14 + tot \
                or 14 + tot > len(data):
            return -1
        return self.tcp_owner(data[26:30], data[30:34], int.from_bytes(data[34:36], "big"),
                              int.from_bytes(data[36:38], "big"))

    @cython.locals(et=cython.int, vhl=cython.int, tot=cython.Py_ssize_t, frag=cython.int, proto=cython.int,
                   off=cython.int, thl=cython.Py_ssize_t, sa=cython.longlong, da=cython.longlong, sp=cython.int,
                   dp=cython.int, j=cython.int, nbp=cython.int)
    def owner_at(self, b, n: int) -> int:
        """frame_owner() of the `n` bytes of a frame at `b`: compiled, a pointer into the capture reader's
        buffer (ids.parallel.shard.Scan), so another worker's frame never becomes a bytes object."""
        if n < 54:
            return -1
        et = b[12] << 8 | b[13]
        vhl = b[14]
        tot = b[16] << 8 | b[17]
        frag = b[20] << 8 | b[21]
        proto = b[23]
        off = b[46]
        thl = (off >> 4) * 4
        if et != 0x0800 or vhl != 0x45 or proto != 6 or frag & 0x3FFF or thl < 20 or 34 + thl > 14 + tot \
                or 14 + tot > n:
            return -1
        sa = cython.cast(cython.longlong, b[26]) << 24 | b[27] << 16 | b[28] << 8 | b[29]
        da = cython.cast(cython.longlong, b[30]) << 24 | b[31] << 16 | b[32] << 8 | b[33]
        sp = b[34] << 8 | b[35]
        dp = b[36] << 8 | b[37]
        nbp = self.nbp
        if nbp:
            if len(self.broker_ports) > nbp:  # more than the table holds: the set
                return self.tcp_owner(b[26:30], b[30:34], sp, dp)
            for j in range(nbp):
                if dp == self.bp[j]:
                    return self._take(_bucket4(da, da))
            for j in range(nbp):
                if sp == self.bp[j]:
                    return self._take(_bucket4(sa, sa))
        return self._take(_bucket4(sa, da))

    def owner(self, p) -> int:
        proto = p.proto
        if proto == ETHER:
            return self._take(0)
        if proto == 6:
            return self.tcp_owner(p.src, p.dst, p.sport, p.dport)
        return self._pair(p.src, p.dst)

    def tcp_owner(self, src: bytes, dst: bytes, sport: int, dport: int) -> int:
        """owner() from the header fields of a TCP packet not yet decoded."""
        bp = self.broker_ports
        if bp:
            if dport in bp:
                return self._one(dst)
            if sport in bp:
                return self._one(src)
        return self._pair(src, dst)

    def _pair(self, src: bytes, dst: bytes) -> int:
        """The worker of a host pair, the same for both directions."""
        if len(src) == 4 and len(dst) == 4:
            return self._take(_bucket4(int.from_bytes(src, "big"), int.from_bytes(dst, "big")))
        k = (src, dst) if src < dst else (dst, src)
        h = self.cache.get(k)
        if h is None:
            if len(self.cache) >= 1 << 16:
                self.cache.clear()
            h = self.cache[k] = _hash(k[0] + k[1]) % BUCKETS
        return self._take(h)

    def _one(self, addr: bytes) -> int:
        if len(addr) == 4:
            a = int.from_bytes(addr, "big")
            return self._take(_bucket4(a, a))
        h = self.cache.get(addr)
        if h is None:
            if len(self.cache) >= 1 << 16:
                self.cache.clear()
            h = self.cache[addr] = _hash(addr) % BUCKETS
        return self._take(h)


class Scan:
    """The frames of a capture one worker has to look at, as (ts, linktype, data, owner): its own, every
    frame Router.frame_owner cannot place (they are decoded by every worker), and another worker's frame
    only where the loop must act on it (a timeout sweep is due, or a watermark: every BATCH_PACKETS
    frames). The others are only counted (`skipped`, `skipped_bytes`). `i` is the global index of the last
    frame read; the loop keeps `auto` (checksum auto-detection still running: every frame is decoded) and
    `next_sweep` up to date. Compiled, a little-endian pcap file's records are walked here, as
    PcapReader.packets walks them, so another worker's frame never becomes a Python object."""

    def __init__(self, router: Router, me: int, batch: int):
        self.router = router
        self.me = me
        self.batch = batch
        self.i = 0
        self.ts = 0  # of the last frame read, skipped or not
        self.auto = True
        self.next_sweep = -1
        self.c_next_sweep = -1  # next_sweep as a C integer, clamped (timestamps may pass 2**63: MAX_TS)
        self.skipped = 0
        self.skipped_bytes = 0

    def set_next_sweep(self, t: int) -> None:
        self.next_sweep = t
        self.c_next_sweep = min(t, (1 << 63) - 1)

    @cython.locals(w=cython.int)
    def frames(self, reader):
        if cython.compiled and type(reader) is PcapReader and reader.endian == "<":
            yield from self._pcap_le(reader)
            return
        router = self.router
        for ts, lt, data in reader.packets():
            self.i += 1
            self.ts = ts
            w = -1
            if lt == 1 and not self.auto:
                w = router.frame_owner(data)
                if w >= 0 and w != self.me and ts < self.next_sweep and self.i % self.batch:
                    self.skipped += 1
                    self.skipped_bytes += len(data)
                    continue
            yield ts, lt, data, w

    @cython.locals(buf=bytes, pos=cython.Py_ssize_t, end=cython.Py_ssize_t, nxt=cython.Py_ssize_t,
                   base=cython.Py_ssize_t, b=cython.p_uchar, sec=cython.ulonglong, frac=cython.ulonglong,
                   incl=cython.ulonglong, mult=cython.ulonglong, ts=cython.longlong, w=cython.int,
                   lt=cython.int, router=Router, maxrec=cython.ulonglong, last=cython.longlong,
                   got=cython.bint, nsw=cython.longlong)
    def _pcap_le(self, reader):
        """PcapReader.packets for a little-endian file (compiled only), with the skipping of frames()."""
        lt = reader.linktype
        maxrec = MAX_RECORD
        linktype, mult, path = reader.linktype, reader.ts_mult, reader.path
        router = self.router
        buf, pos, base, eof = b"", 0, reader.offset, False
        last = 0
        got = False
        while True:
            end = len(buf)
            while pos + 16 <= end:
                b = buf
                sec = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16 | cython.cast(cython.uint, b[pos + 3]) << 24
                frac = b[pos + 4] | b[pos + 5] << 8 | b[pos + 6] << 16 | cython.cast(cython.uint, b[pos + 7]) << 24
                incl = b[pos + 8] | b[pos + 9] << 8 | b[pos + 10] << 16 | cython.cast(cython.uint, b[pos + 11]) << 24
                if incl > maxrec:
                    reader.offset = base + pos
                    if got:
                        self.ts = last
                    raise CaptureError(path, reader.offset, f"corrupt record header (captured length {incl})")
                nxt = pos + 16 + incl
                if nxt > end:
                    break
                reader.packets_read += 1
                self.i += 1
                ts = sec * 1_000_000_000 + frac * mult  # below 2**63: 32-bit seconds
                last = ts
                got = True
                w = -1
                if lt == 1 and not self.auto:
                    w = router.owner_at(b + pos + 16, incl)
                    if w >= 0 and w != self.me and ts < self.c_next_sweep and self.i % self.batch:
                        self.skipped += 1
                        self.skipped_bytes += incl
                        pos = nxt
                        continue
                yield (ts, linktype, b[pos + 16:nxt], w)
                pos = nxt
            reader.offset = base + pos
            if got:
                self.ts = last
            if eof:
                if pos < end:
                    raise CaptureError(path, reader.offset, f"truncated record ({end - pos} bytes left at end of file)")
                return
            more = reader._read()
            buf, base, pos, eof = buf[pos:] + more, base + pos, 0, not more
