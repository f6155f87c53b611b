"""`otids live --workers N`: the kernel divides the traffic. Every capture socket, the sensor's own and one per
interface in each of N-1 forked workers, joins one PACKET_FANOUT group per interface (with the defragment
flag, so an IP datagram's fragments reach one socket). The group runs a classic BPF program (PACKET_FANOUT_CBPF,
`pair_program`) that hashes the host pair, the XOR of source and destination address, so every packet
between two hosts, both directions and all their connections, reaches one process; where the kernel refuses
it, the kernel's own flow hash (PACKET_FANOUT_HASH) divides by connection instead.

A worker decodes and runs flows, reassembly and protocol sessions on its share and streams its events
(pickled batches over a pipe) to the sensor process, which runs them through the one engine (every detector,
every sink) beside its own share, and adds the worker's capture counters (frames, kernel drops) into its
interface totals, so stats, loss alerts and `bench-live` count every frame once. With the pair hash a worker
also runs the anomaly detector's checks of protocol records itself, as file workers do (ids.parallel.offload:
their state is per host pair), and sends an event only when the sensor needs it (an event sink writes it or
another detector is routed to it); otherwise it only counts it. Pickling every Modbus transaction was most of
what a second process added.

Live output is complete, not ordered as one process would order it (files are; see ids.parallel.runner). A
worker that dies stops the sensor with an error naming it; SIGTERM or SIGINT to the sensor drains every
worker (its pending exchanges emitted) before the outputs close.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import select
import signal
import struct
import time

from .. import x509 as _x509
from ..capture.live import SOL_PACKET, LiveCapture
from ..errors import UserError
from ..flow import budget
from .offload import offloaded, parent_route
from .runner import WorkerFailed

PACKET_FANOUT = 18
PACKET_FANOUT_DATA = 22
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
NS = 1_000_000_000
SEND_EVENTS = 1024  # events per batch, or whatever is there every SEND_EVERY
SEND_EVERY = NS // 20
BUDGET = 8192
COUNTERS = ("packets", "bytes", "truncated", "errors", "skipped_outgoing", "vlan_restored", "kernel_packets",
            "kernel_drops")


# Classic BPF (linux/filter.h): the fanout program's instructions
_LD_W_ABS, _LD_H_ABS, _TAX, _XOR_X, _MUL_K, _RSH_K, _RET_A, _RET_K, _JEQ_K = \
    0x20, 0x28, 0x07, 0xAC, 0x24, 0x74, 0x16, 0x06, 0x15
_SKF_AD_PROTOCOL = -0x1000  # SKF_AD_OFF + SKF_AD_PROTOCOL: the frame's EtherType (VLAN tag already taken off)
_SKF_NET_OFF = -0x100000  # offsets from the network header, wherever the link header ends


def ring_bytes(caps: list[LiveCapture]) -> int:
    """What the capture rings of `caps` hold: mapped whole (MAP_POPULATE), they are part of the RSS."""
    return sum(len(c.ring) for c in caps if c.ring is not None)


def _insn(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def pair_program() -> bytes:
    """The fanout program: the index of the process for a packet (the kernel takes it modulo the group's
    size) from the XOR of its source and destination address, the same in both directions; IPv6 folds its
    eight address words. Other frames (ARP, LLDP, ...) go to the first member, the sensor."""
    def mix() -> list:  # MurmurHash3's fmix32: every bit of the XOR moves the remainder the kernel takes
        out = []
        for shift, mul in ((16, 0x85EBCA6B), (13, 0xC2B2AE35), (16, None)):
            out += [_insn(_TAX), _insn(_RSH_K, shift), _insn(_XOR_X)]  # A ^= A >> shift
            if mul is not None:
                out.append(_insn(_MUL_K, mul))
        return out + [_insn(_RET_A)]

    v4 = [_insn(_LD_W_ABS, _SKF_NET_OFF + 12), _insn(_TAX), _insn(_LD_W_ABS, _SKF_NET_OFF + 16), _insn(_XOR_X)]
    v4 += mix()
    v6 = [_insn(_LD_W_ABS, _SKF_NET_OFF + 8), _insn(_TAX)]
    for off in range(12, 40, 4):  # source 8..24, destination 24..40
        v6 += [_insn(_LD_W_ABS, _SKF_NET_OFF + off), _insn(_XOR_X)]
        if off != 36:
            v6.append(_insn(_TAX))
    v6 += mix()
    prog = [_insn(_LD_H_ABS, _SKF_AD_PROTOCOL), _insn(_JEQ_K, 0x0800, 0, len(v4))] + v4
    prog += [_insn(_JEQ_K, 0x86DD, 0, len(v6))] + v6 + [_insn(_RET_K, 0)]
    return b"".join(prog)


def join_fanout(cap: LiveCapture, group: int, by_pair: bool = True) -> bool:
    """Join `cap` to fanout `group`: by host pair (True) when the kernel takes the program, else (or when
    `by_pair` is False: every member of a group must use one mode) by the kernel's flow hash (False)."""
    def join(mode: int) -> None:
        cap.sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack(
            "=I", (group & 0xFFFF) | ((mode | PACKET_FANOUT_FLAG_DEFRAG) << 16)))

    if by_pair:
        try:
            join(PACKET_FANOUT_CBPF)
            import ctypes
            insns = pair_program()
            buf = ctypes.create_string_buffer(insns, len(insns))
            cap.sock.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA,
                                struct.pack("HxxxxxxQ", len(insns) // 8, ctypes.addressof(buf)))
            return True
        except OSError:
            if cap.sock.getsockopt(SOL_PACKET, PACKET_FANOUT):  # joined, program refused: no way back
                raise UserError(f"interface {cap.name}: the kernel refused the --workers fanout program") from None
    try:
        join(PACKET_FANOUT_HASH)
    except OSError as e:
        raise UserError(f"interface {cap.name}: cannot join a PACKET_FANOUT group for --workers: "
                        f"{e.strerror or e}") from None
    return False


def _counters(c: LiveCapture) -> tuple:
    c.kernel_stats()
    return tuple(getattr(c, k) for k in COUNTERS)


class _Collect:
    """The worker's stand-in for the engine: what the data path emits goes into the next batch, or, with
    the anomaly checks offloaded (by_pair), through them first: their alerts go into `alerts`, and an event
    the sensor has no use for is only counted (`counts`, for the summary and stats)."""

    def __init__(self, engine, out: list, by_pair: bool):
        self.out = out
        self.alerts: list = []
        self.counts: dict = {}
        self.on_event = out.append
        self.det = None
        if by_pair:
            det, types = offloaded(engine)
            if det is not None:
                self.det, self.types, self.engine = det, types, engine
                self.send_all = bool(engine.event_sinks)
                self.plans: dict = {}
                self.on_event = self._checked

    def _checked(self, ev) -> None:
        t = type(ev)
        p = self.plans.get(t)
        if p is None:
            internal = getattr(t, "internal", False) is True
            check = self.det.on_event if t in self.types else None
            route = parent_route(self.engine, self.det, t) if check is not None else self.engine._route(t)
            p = self.plans[t] = (check, bool(route) or (self.send_all and not internal), not internal)
        check, send, count = p
        if check is not None:
            alerts = check(ev)
            if alerts:
                self.alerts.extend(alerts)
        if send:
            self.out.append(ev)
        elif count:
            k = (ev.dataset, ev.label)
            self.counts[k] = self.counts.get(k, 0) + 1

    def flush(self, ts: int) -> None:
        if self.det is not None:  # the held-back repeats of the checks made here
            self.alerts.extend(self.det.flush(ts) or ())


def _worker(run, caps: list[LiveCapture], wid: int, conn, by_pair: bool = False) -> None:
    stop = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sensor decides when to stop, and tells us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the engine's, in the sensor
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out: list = []
    col = _Collect(run.engine, out, by_pair)
    run.engine = col
    run.table.emit = col.on_event  # no flow exists yet: every session will take this emit
    feed = run.feed
    send = conn.send_bytes

    certs = _x509.JOURNAL = []  # certificates described here: the sensor's checks need their bytes

    def ship(final: bool = False) -> None:
        stats = {c.name: _counters(c) for c in caps}
        send(pickle.dumps(("b", out, stats, final, col.alerts, col.counts, list(dict.fromkeys(certs))), 5))
        out.clear()
        col.alerts.clear()
        col.counts.clear()
        certs.clear()

    poller = select.poll()
    by_fd = {}
    for c in caps:
        by_fd[c.fileno()] = c
        poller.register(c.fileno(), select.POLLIN)
    now = time.time_ns()
    next_tick, next_send = now + NS, now + SEND_EVERY
    while not stop:
        for fd, _ev in poller.poll(50):
            by_fd[fd].dispatch(feed, BUDGET)
        now = time.time_ns()
        if now >= next_tick:
            run.tick(now)
            next_tick = now + NS
        if len(out) + len(col.alerts) >= SEND_EVENTS or now >= next_send:
            ship()
            next_send = now + SEND_EVERY
    for c in caps:  # what the kernel already holds is part of the capture
        while c.dispatch(feed, BUDGET):
            pass
    run.tick(time.time_ns())
    run.finish()
    ship(final=True)


def _drop(c: LiveCapture) -> None:
    """Close a capture inherited from the sensor without reading its counters (a read resets the kernel's)."""
    if c.ring is not None:
        try:
            c.ring.close()
        except BufferError:  # pragma: no cover
            pass
        c.ring = None
    if c.sock is not None:
        c.sock.close()
        c.sock = None


def _worker_main(run, caps, wid, conn, inherited, by_pair) -> None:
    try:
        for c in inherited:  # the sensor's sockets and rings: theirs to read, and no RSS counted twice
            _drop(c)
        _worker(run, caps, wid, conn, by_pair)
    except BaseException as e:  # noqa: BLE001 - reported to the sensor, which stops with it
        try:
            conn.send_bytes(pickle.dumps(("error", f"{type(e).__name__}: {e}")))
        except Exception:  # noqa: BLE001
            pass
        os._exit(1)
    os._exit(0)


class LiveWorkers:
    """The sensor's side: start the workers, take in their batches, stop and drain them."""

    def __init__(self, run, caps: list[LiveCapture], n: int):
        self.run = run
        self.caps = caps
        self.n = n
        self.procs: list = []
        self.conns: list = []
        self.last: list[dict] = []
        self.done: set[int] = set()
        self.stopping = False
        self.by_pair = False  # the kernel divides by host pair (pair_program), not by connection
        self.routes: dict = {}  # event type -> the sensor's route for a worker's event of that type

    def start(self) -> None:
        ctx = mp.get_context("fork")
        self.run.table.share(self.n)  # the sensor and every worker each hold 1/n of the flow bounds
        # and its part of limits.memory_total (before the fork, so every worker inherits it): each had the whole;
        # less its capture rings (every worker maps rings of the same size)
        g = budget.SHARED
        if g is not None:
            g.limit = budget.live_share(self.run.config.limits.memory_total, self.n, ring_bytes(self.caps))
        by_pair = True
        for c in self.caps:
            by_pair = join_fanout(c, os.getpid() + c.ifindex, by_pair)
        self.by_pair = by_pair
        self.det, self.types = offloaded(self.run.engine) if by_pair else (None, frozenset())
        for wid in range(1, self.n):
            mine = []
            try:
                for c in self.caps:
                    w = LiveCapture(c.name, bpf=c.bpf, promisc=c.promisc, method=c.method, buffer_mb=c.buffer_mb,
                                    snaplen=c.snaplen, block_timeout_ms=c.block_timeout_ms)
                    mine.append(w)
                    join_fanout(w, os.getpid() + c.ifindex, by_pair)
                r, wconn = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_worker_main, args=(self.run, mine, wid, wconn, self.caps, by_pair), daemon=True,
                                name=f"otids-live-worker-{wid}")
                p.start()
                wconn.close()
            finally:
                for w in mine:  # the worker has its own copies
                    _drop(w)
            self.procs.append(p)
            self.conns.append(r)
            self.last.append({c.name: (0,) * len(COUNTERS) for c in self.caps})

    def fds(self) -> dict:
        """fd -> callback, for the sensor's poll loop."""
        return {c.fileno(): (lambda k=k: self.take(k)) for k, c in enumerate(self.conns)}

    def take(self, k: int) -> None:
        if k in self.done:
            return
        proc = self.procs[k]
        try:
            msg = pickle.loads(self.conns[k].recv_bytes())
        except (EOFError, OSError):
            self.done.add(k)
            proc.join(5)
            code = proc.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            raise WorkerFailed(f"live worker {k + 1} (pid {proc.pid}) died ({how}): its share of the traffic "
                               f"is no longer analysed; stopping") from None
        if msg[0] == "error":
            self.done.add(k)
            raise WorkerFailed(f"live worker {k + 1} (pid {proc.pid}) failed: {msg[1]}; stopping")
        _, events, stats, final, alerts, counts, certs = msg
        for der in certs:  # described in the worker: the bytes, for the certificate checks here
            _x509.describe(der)
        engine = self.run.engine
        for a in alerts:  # the checks made in the worker (by_pair)
            engine._alert(a)
        if self.det is None:
            for ev in events:
                engine.on_event(ev)
        else:
            for ev in events:
                self._on_event(ev)
        if counts:
            events_seen = engine.events
            for key, v in counts.items():  # not k: that is the worker's index, read below
                events_seen[key] += v
        caps = {c.name: c for c in self.caps}
        for name, now in stats.items():
            before = self.last[k][name]
            c = caps.get(name)
            if c is not None:
                for attr, a, b in zip(COUNTERS, before, now):
                    setattr(c, attr, getattr(c, attr) + b - a)
            self.last[k][name] = now
        if final:
            self.done.add(k)

    def _on_event(self, ev) -> None:
        """Engine.on_event for a worker's event when its anomaly checks were made in the worker: the same
        counting, sinks and detectors, without the checks made there (the sensor's own events keep them)."""
        engine = self.run.engine
        t = type(ev)
        route = self.routes.get(t)
        if route is None:
            full = engine._route(t)
            route = self.routes[t] = parent_route(engine, self.det, t) if t in self.types else full
        if not engine._internal[t]:
            engine.events[ev.dataset, ev.label] += 1
            for s in engine.event_sinks:
                s.write_event(ev)
        for on_event in route:
            alerts = on_event(ev)
            if alerts:
                for a in alerts:
                    engine._alert(a)

    def drain(self, timeout: float = 60) -> None:
        """Stop every worker and take in what it still had (its flows closed, pending exchanges emitted)."""
        for p in self.procs:
            if p.exitcode is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        try:
            while len(self.done) < len(self.procs):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerFailed(f"live workers did not finish within {timeout:.0f} s of being stopped")
                for k, c in enumerate(self.conns):
                    if k not in self.done and c.poll(min(left, 0.2)):
                        self.take(k)
        finally:
            self.close()
        theirs = [sum(v[0] for v in last.values()) for last in self.last]
        mine = sum(c.packets for c in self.caps) - sum(theirs)
        from ..live.sensor import log
        log(f"frames per process (kernel fanout by {'host pair' if self.by_pair else 'flow'}): " + ", ".join(
            [f"sensor {mine:,}"] + [f"worker {k + 1} {n:,}" for k, n in enumerate(theirs)]))

    def close(self) -> None:
        for p in self.procs:
            if p.exitcode is None:
                p.join(5)
            if p.exitcode is None:
                p.kill()
                p.join()
        for c in self.conns:
            c.close()
