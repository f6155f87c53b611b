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
    """Well spread over structured addresses (crc32 is linear: plant subnets split unevenly); once per pair."""
    return int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "big")


class ShardTable(FlowTable):
    """A FlowTable whose emissions carry their merge key (`cur` + a running sequence number), and whose
    sweep and end-of-input walks say which flow each emission belongs to. The walks are FlowTable's own,
    step for step (tests/test_parallel.py holds every capture's output identical to one process)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.out: list = []
        self.seq = 0
        self.cur = (0, STEP_PACKET, 0)
        self.vrank: dict = {}  # violated flow -> its rank in one process's violated dict (when it was detached)
        self.talker_rank: dict = {}  # talker key -> key of the emission that created it (summary order)
        self.emit = self._emit
        self.sweep_at = self._sweep_at

    def _emit(self, ev) -> None:
        self.seq += 1
        c = self.cur
        self.out.append(((c[0], c[1], c[2], self.seq), ev, None))

    def offload(self, engine, det, types, send_all: bool) -> None:
        """Run `det`'s checks of `types` here (ids.parallel.offload) and send an event only when the parent
        needs it: an event sink (`send_all`) or a detector of the parent's is routed to it; else count it."""
        from .offload import Inserted
        self.det = det
        self.types = types
        self.engine = engine
        self.send_all = send_all
        self.plans: dict = {}
        self.counts: dict = {}  # (dataset, label) -> events counted here, not sent
        self.inserted = Inserted(det.limiter)
        self.lim_entries = det.limiter.entries
        self.lim_max = det.limiter.max_keys
        self.emit = self._emit_plan

    def _plan(self, t: type) -> tuple:
        from .offload import parent_route
        internal = getattr(t, "internal", False) is True
        check = self.det.on_event if t in self.types else None
        route = parent_route(self.engine, self.det, t) if check is not None else self.engine._route(t)
        p = self.plans[t] = (check, bool(route) or (self.send_all and not internal), not internal)
        return p

    def _emit_plan(self, ev) -> None:
        self.seq += 1
        c = self.cur
        key = (c[0], c[1], c[2], self.seq)
        p = self.plans.get(type(ev))
        if p is None:
            p = self._plan(type(ev))
        check, send, count = p
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
        if alerts:
            self.out.append((key, None, alerts))

    def detach(self, flow, ts: int, reason: str) -> None:
        if flow.app and flow not in self.violated:
            # one process orders the garbage pass by detach time: packet index, then emission order (a detach
            # is a packet-step emission of the packet's one owner, so the sequence breaks ties within it)
            self.vrank[flow] = (self.cur[0] << 40) | (self.seq & ((1 << 40) - 1))
        super().detach(flow, ts, reason)

    def _remove(self, flow, ts: int, why: str) -> None:
        n = len(self.talkers)
        super()._remove(flow, ts, why)
        if len(self.talkers) > n:
            c = self.cur
            self.talker_rank[next(reversed(self.talkers))] = (c[0], c[1], c[2], self.seq)

    def sweep(self, now: int) -> None:
        """FlowTable.sweep, with each flow's emissions keyed by its pass, table and id (_sweep_at)."""
        i = self.cur[0]
        super().sweep(now)
        self.cur = (i, STEP_PACKET, 0)

    def _sweep_at(self, what: int, f) -> None:
        i = self.cur[0]
        if what == SWEEP_GARBAGE:
            self.cur = (i, STEP_GARBAGE, self.vrank.get(f, 0))
        else:
            t = 0 if f.proto == 6 else 1 if f.proto == 17 else 2  # its table: tcp, udp, other
            self.cur = (i, (STEP_EXPIRE if what == SWEEP_EXPIRE else STEP_REMOVE) + t, f.flow_id)

    def _close(self, flow, ts: int) -> None:
        super()._close(flow, ts)
        self.vrank.pop(flow, None)

    def finish(self, ts: int) -> None:
        flows = sorted({id(f): f for table in (self.tcp, self.udp, self.other) for f, _ in table.values()}.values(),
                       key=lambda f: f.flow_id)
        for f in flows:
            self.cur = (END, 1, f.flow_id)
            self._remove(f, ts, "end")


class Router:
    """Which worker owns a packet: a hash of its host pair, the same for both directions, so every flow of a
    pair lands in one worker. MQTT (dissected ports) goes by the broker's address alone: Sparkplug births and
    PubSub metadata learned on one client's connection are applied on another's (state per broker and run).
    Non-IP frames (ARP, LLDP, ...) all go to worker 0."""

    __slots__ = ("n", "broker_ports", "cache", "frames")

    def __init__(self, n: int, broker_ports: set[int]):
        self.n = n
        self.broker_ports = broker_ports
        self.cache: dict = {}
        self.frames: dict = {}  # addresses and ports as they sit in a frame (12 bytes) -> owner

    @cython.locals(b=cython.p_uchar, et=cython.int, vhl=cython.int, tot=cython.Py_ssize_t, frag=cython.int,
                   proto=cython.int, off=cython.int, thl=cython.Py_ssize_t)
    def frame_owner(self, data: bytes) -> int:
        """owner() of an Ethernet frame that takes Decoder.decode's fast path (untagged Ethernet, IPv4
        without options, unfragmented TCP; such a packet always decodes), from its bytes; -1 for any other
        frame. Once per frame in every worker: no decode, no tuple of fields, one dict lookup."""
        if len(data) < 54:
            return -1
        if cython.compiled and type(data) is bytes:
            b = data
            et = b[12] << 8 | b[13]
            vhl = b[14]
            tot = b[16] << 8 | b[17]
            frag = b[20] << 8 | b[21]
            proto = b[23]
            off = b[46]
        else:
            et, vhl, tot, frag, proto, off = _FAST.unpack_from(data)
        thl = (off >> 4) * 4
        if et != 0x0800 or vhl != 0x45 or proto != 6 or frag & 0x3FFF or thl < 20 or 34 + thl > 14 + tot \
                or 14 + tot > len(data):
            return -1
        k = data[26:38]
        w = self.frames.get(k)
        if w is None:
            if len(self.frames) >= 1 << 16:
                self.frames.clear()
            w = self.frames[k] = self.tcp_owner(data[26:30], data[30:34], int.from_bytes(data[34:36], "big"),
                                                int.from_bytes(data[36:38], "big"))
        return w

    def owner(self, p) -> int:
        proto = p.proto
        if proto == ETHER:
            return 0
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
        k = (src, dst) if src < dst else (dst, src)
        w = self.cache.get(k)
        if w is None:
            if len(self.cache) >= 1 << 16:
                self.cache.clear()
            w = self.cache[k] = _hash(k[0] + k[1]) % self.n
        return w

    def _one(self, addr: bytes) -> int:
        w = self.cache.get(addr)
        if w is None:
            if len(self.cache) >= 1 << 16:
                self.cache.clear()
            w = self.cache[addr] = _hash(addr) % self.n
        return w
