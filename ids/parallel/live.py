"""`otids live --workers N`: the kernel divides the traffic. Every capture socket, the sensor's own and one per
interface in each of N-1 forked workers, joins one PACKET_FANOUT group per interface in hash mode (with
the defragment flag, so an IP datagram's fragments reach one socket), and the kernel sends each flow, both
directions, to one of them. A worker decodes and runs flows, reassembly and protocol sessions on its share
and streams its events (pickled batches over a pipe) to the sensor process, which runs them through the one
engine (every detector, every sink) beside its own share, and adds the worker's capture counters (frames,
kernel drops) into its interface totals, so stats, loss alerts and `bench-live` count every frame once.

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

from ..capture.live import SOL_PACKET, LiveCapture
from ..errors import UserError
from .runner import WorkerFailed

PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
NS = 1_000_000_000
SEND_EVENTS = 1024  # events per batch, or whatever is there every SEND_EVERY
SEND_EVERY = NS // 20
BUDGET = 8192
COUNTERS = ("packets", "bytes", "truncated", "errors", "skipped_outgoing", "vlan_restored", "kernel_packets",
            "kernel_drops")


def join_fanout(cap: LiveCapture, group: int) -> None:
    try:
        cap.sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack(
            "=I", (group & 0xFFFF) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16)))
    except OSError as e:
        raise UserError(f"interface {cap.name}: cannot join a PACKET_FANOUT group for --workers: "
                        f"{e.strerror or e}") from None


def _counters(c: LiveCapture) -> tuple:
    c.kernel_stats()
    return tuple(getattr(c, k) for k in COUNTERS)


class _Collect:
    """The worker's stand-in for the engine: what the data path emits goes into the next batch."""

    def __init__(self, out: list):
        self.on_event = out.append

    def flush(self, ts: int) -> None:
        pass


def _worker(run, caps: list[LiveCapture], wid: int, conn) -> None:
    stop = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sensor decides when to stop, and tells us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the engine's, in the sensor
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out: list = []
    run.engine = _Collect(out)
    run.table.emit = out.append  # no flow exists yet: every session will take this emit
    feed = run.feed
    send = conn.send_bytes

    def ship(final: bool = False) -> None:
        stats = {c.name: _counters(c) for c in caps}
        send(pickle.dumps(("b", out, stats, final), 5))
        out.clear()

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
        if len(out) >= SEND_EVENTS or now >= next_send:
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


def _worker_main(run, caps, wid, conn, inherited) -> None:
    try:
        for c in inherited:  # the sensor's sockets and rings: theirs to read, and no RSS counted twice
            _drop(c)
        _worker(run, caps, wid, conn)
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

    def start(self) -> None:
        ctx = mp.get_context("fork")
        for c in self.caps:
            join_fanout(c, os.getpid() + c.ifindex)
        for wid in range(1, self.n):
            mine = []
            try:
                for c in self.caps:
                    w = LiveCapture(c.name, bpf=c.bpf, promisc=c.promisc, method=c.method, buffer_mb=c.buffer_mb,
                                    snaplen=c.snaplen, block_timeout_ms=c.block_timeout_ms)
                    mine.append(w)
                    join_fanout(w, os.getpid() + c.ifindex)
                r, wconn = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_worker_main, args=(self.run, mine, wid, wconn, self.caps), daemon=True,
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
        _, events, stats, final = msg
        on_event = self.run.engine.on_event
        for ev in events:
            on_event(ev)
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
        log("frames per process (kernel fanout by flow): " + ", ".join(
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
