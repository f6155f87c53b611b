"""`--workers N` for file analysis: N forked workers each run ids.parallel.shard over the whole capture and
stream their keyed events to this process, which merges them by key and hands them to the run's engine
(every detector, every sink) in exactly the order one process would have. The run's summary figures are
merged from the workers' own at the end.

A worker that fails or dies ends the run with WorkerFailed (one line: which worker, why); Ctrl-C stops the
workers (they ignore SIGINT themselves, so only this process decides) and leaves the outputs as they were.
"""
from __future__ import annotations

import fcntl
import heapq
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from operator import itemgetter

from .. import x509 as _x509
from ..capture import open_capture
from ..errors import CaptureError, UserError
from ..events import FlowNotice
from ..flow import budget
from ..flow.budget import process_share
from ..protocols import DISSECTED
from .offload import Inserted, offloaded, parent_route, parent_views
from .shard import END, NS, STEP_NOTICE, STEP_PACKET, STEP_WATERMARK, ShardTable

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython
if not cython.compiled:  # compiled, the extension types are cimported (runner.pxd)
    from .shard import Emitter, Router, Scan

BATCH_EVENTS = 2048  # events per message to the parent
BATCH_PACKETS = 8192  # packets after which a worker sends what it has (at least a watermark)
#: bytes of its own packets after which a worker sends the events it has: decoded events can be many times
#: their packets (a Sparkplug birth of 15,000 metrics: 500 kB on the wire, 4.5 MB as an event), and 8,192
#: packets of such births held 270 MB in the worker and 340 MB in the parent that unpickled them
BATCH_BYTES = 1 << 20
PIPE_BYTES = 1 << 20  # pipe capacity asked for: workers run ahead of the merge by about this much


class WorkerFailed(UserError):
    exit_code = 2


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def broker_ports(config) -> set[int]:
    return {p for p, n in config.port_map().items() if n == "mqtt"}


def keep_heap() -> None:
    """Ask glibc to keep freed memory instead of handing it back to the kernel at once. The capture reader
    takes 1 MiB chunks; with glibc's defaults each chunk lands in pages returned after the previous one and
    faulted in (zeroed) again: about 20,000 page faults per 100 MB of capture in every process that reads
    it, some 5% of a worker's time. The heap it keeps is a few chunks (RSS unchanged, measured)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: keep up to 64 MiB of free heap top
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD: blocks below 4 MiB come from the heap, not fresh mappings
    except (OSError, AttributeError):  # not glibc: its own allocator's habits apply
        pass


def run_files(run, paths: list[str], workers: int = 1, progress=None) -> None:
    """Analyse `paths` as one continuous capture into `run` (ids.pipeline.Run) and finish it: in this
    process when workers <= 1 (exactly Run.analyze_file + Run.finish), else in `workers` processes."""
    keep_heap()
    if workers <= 1:
        for p in paths:
            run.analyze_file(p, progress)
        run.finish()
        return
    Parallel(run, paths, workers).run()


# ------------------------------------------------------------------------------------------ worker side

def _sweep(em, table, scan, i: int, ts: int) -> int:
    """A timeout sweep at packet `i` (capture time `ts`), its events keyed before that packet's; returns the
    time of the next one, which the reader's scan learns too. Called only when a sweep is due."""
    em.i = i
    em.step = 0
    em.fid = 0
    table.sweep_or_start(ts)
    nsw = table.next_sweep
    scan.set_next_sweep(nsw)
    return nsw


@cython.locals(router=Router, em=Emitter, scan=Scan, i=cython.longlong, me=cython.int, w=cython.int, mb=cython.longlong,
               mine=cython.bint)
def _work(run, paths: list[str], wid: int, n: int, conn) -> None:
    config = run.config
    table = ShardTable(config, DISSECTED, None, verify_checksums=config.decode.checksums == "on")
    table.share(n)  # the flow bounds are the run's, divided among the workers
    budget.install(process_share(config.limits.memory_total, n))  # and limits.memory_total with the parent
    run.table = table
    det, types = offloaded(run.engine)
    if det is not None:
        table.offload(run.engine, det, types, bool(run.engine.event_sinks))
    router = Router(n, broker_ports(config))
    em = table.em
    me = wid
    decoder = run.decoder
    decode = decoder.decode
    notices = decoder.notices
    tcp, udp, other = table._tcp, table._udp, table._other
    out = em.out
    send = conn.send_bytes
    dumps = pickle.dumps

    certs = _x509.JOURNAL = []  # certificates described here: the parent's checks need their bytes

    def flush(i: int) -> None:
        out.append(((i, STEP_WATERMARK, 0, 0), None, None))
        send(dumps(("b", out, list(dict.fromkeys(certs))), 5))
        out.clear()
        certs.clear()

    def note(ts: int) -> None:
        if wid == 0:
            for nts, action, details in notices:
                table.emit(FlowNotice(nts or ts, action, None, None, details))
        notices.clear()

    st = decoder.stats
    shared_checked = shared_bad = 0  # checksums of packets every worker decodes (not the fast path's)
    scan = Scan(router, me, BATCH_PACKETS)  # other workers' fast-path packets: counted there, added at the end
    scan.auto = decoder.auto
    i = 0
    ts = 0
    last_ts = 0
    mb = 0  # bytes of this worker's own packets since it last sent (BATCH_BYTES)
    for path in paths:
        try:
            reader = open_capture(path)
        except CaptureError as e:
            run.errors.append(str(e))
            run.files_unreadable += 1
            continue
        ok = True
        ts = last_ts
        nsw = table.next_sweep
        try:
            for ts, lt, data, w in scan.frames(reader):
                i = scan.i
                if w >= 0:
                    # Decoder.decode's fast path (untagged Ethernet, IPv4 without options, unfragmented TCP):
                    # a packet that takes it always decodes, so another worker's needs only counting and the
                    # clock (Scan hands it over only when a sweep is due or a watermark). Once checksum
                    # auto-detection has settled, nothing else of the decoder's state depends on it; before,
                    # every worker decodes every packet.
                    if w != me:
                        scan.skipped += 1
                        scan.skipped_bytes += len(data)
                        if ts >= nsw:
                            nsw = _sweep(em, table, scan, i, ts)
                        if len(out) >= BATCH_EVENTS or not i % BATCH_PACKETS:
                            flush(i)
                            mb = 0
                        continue
                    p = decode(ts, lt, data)
                    mine = True
                else:
                    c0, b0 = st.checksum_checked, st.bad_checksum
                    p = decode(ts, lt, data)
                    shared_checked += st.checksum_checked - c0
                    shared_bad += st.bad_checksum - b0
                    scan.auto = decoder.auto
                    mine = False
                if p is not None:
                    if ts >= nsw:
                        nsw = _sweep(em, table, scan, i, ts)
                    if mine or router.owner(p) == me:
                        mb += len(data)
                        em.i = i
                        em.step = STEP_PACKET
                        em.fid = 0
                        proto = p.proto
                        if proto == 6:
                            tcp(p, ts)
                        elif proto == 17:
                            udp(p, ts)
                        else:
                            other(p, ts)
                if notices:
                    em.i = i
                    em.step = STEP_NOTICE
                    em.fid = 0
                    note(ts)
                if len(out) >= BATCH_EVENTS or not i % BATCH_PACKETS or (mb >= BATCH_BYTES and out):
                    flush(i)
                    mb = 0
        except CaptureError as e:
            run.errors.append(str(e))
            run.files_damaged += 1
            ok = False
        finally:
            reader.close()
        last_ts = max(last_ts, scan.ts)  # the last frame read, which may have been another worker's
        if ok:
            run.files_ok += 1
    st.packets += scan.skipped
    st.bytes += scan.skipped_bytes
    # Run.finish, keyed after every packet
    em.i = END
    em.step = 0
    em.fid = 0
    decoder.frag.expire(last_ts + config.decode.fragment_timeout * NS + 1, notices)
    if notices:
        note(last_ts)
    table.finish(last_ts)
    flush(END + 1)
    tk = table.talker_rank
    em_counts = em.counts if det is not None else {}
    result = {
        "packets": i, "last_ts": last_ts, "errors": run.errors, "files_ok": run.files_ok,
        "files_damaged": run.files_damaged, "files_unreadable": run.files_unreadable,
        "decode": decoder.stats.as_dict(), "checksum_note": decoder.checksum_note,
        "flow_stats": table.stats, "hosts": table.hosts,
        "talkers": [(tk.get(k, (0,)), k, v) for k, v in table.talkers.items()],
        "cpu": sum(os.times()[:2]),
        "own_checksums": (st.checksum_checked - shared_checked, st.bad_checksum - shared_bad),
        "counts": em_counts,
        "pending": em.inserted.pending() if det is not None else [],
    }
    send(dumps(("end", result), 5))


def _worker_main(run, paths, wid, n, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    try:
        _work(run, paths, wid, n, conn)
    except BrokenPipeError:  # the parent has gone (it failed, or was interrupted): nothing to report to
        os._exit(1)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the run
        try:
            conn.send_bytes(pickle.dumps(("error", f"{type(e).__name__}: {e}")))
        except Exception:  # noqa: BLE001
            pass
        os._exit(1)
    conn.close()
    os._exit(0)  # no atexit, no flushing of file objects inherited from the parent (its output sinks)


# ------------------------------------------------------------------------------------------ parent side

class Parallel:
    def __init__(self, run, paths: list[str], workers: int):
        self.run_ = run
        self.paths = paths
        self.n = workers
        self.procs: list = []
        self.results: list = [None] * workers
        self.inserted = None  # the parent's anomaly limiter, when the workers run the record checks

    def _stream(self, wid: int, conn):
        proc = self.procs[wid]
        loads = pickle.loads
        describe = _x509.describe
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                proc.join(5)
                code = proc.exitcode
                how = (f"killed by signal {-code}" if code is not None and code < 0 else
                       f"exit status {code}" if code is not None else "closed its pipe")
                raise WorkerFailed(f"worker {wid} (pid {proc.pid}) died ({how}) before the end of the capture; "
                                   f"the run is incomplete") from None
            msg = loads(data)
            kind = msg[0]
            if kind == "b":
                for der in msg[2]:  # described in the worker: the bytes, for the checks here (der_by_sha256)
                    describe(der)
                yield from msg[1]
            elif kind == "end":
                self.results[wid] = msg[1]
                return
            else:
                raise WorkerFailed(f"worker {wid} (pid {proc.pid}) failed: {msg[1]}")

    def run(self) -> None:
        run = self.run_
        budget.install(process_share(run.config.limits.memory_total, self.n))  # the parent's detectors' share
        t0 = time.perf_counter()
        ctx = mp.get_context("fork")
        conns = []
        try:
            for wid in range(self.n):
                r, w = ctx.Pipe(duplex=False)
                try:
                    fcntl.fcntl(w.fileno(), 1031, PIPE_BYTES)  # F_SETPIPE_SZ: let workers run ahead
                except OSError:
                    pass
                p = ctx.Process(target=_worker_main, args=(run, self.paths, wid, self.n, w), daemon=True,
                                name=f"otids-worker-{wid}")
                p.start()
                w.close()  # only the worker holds the write end: its death is our EOF
                self.procs.append(p)
                conns.append(r)
            engine = run.engine
            on_event = engine.on_event
            alert = engine._alert
            det, types = offloaded(engine)
            self.inserted = None
            merged = heapq.merge(*(self._stream(w, c) for w, c in enumerate(conns)), key=itemgetter(0))
            if det is None:
                for _key, ev, _alerts in merged:
                    if ev is not None:
                        on_event(ev)
            else:
                for t in types:  # their anomaly checks ran in the workers
                    engine._routes[t] = parent_route(engine, det, t)
                view = parent_views(engine)  # the ML detector's entry for the views the workers built
                call = (ins := Inserted(det.limiter)).call
                self.inserted = ins
                for key, ev, alerts in merged:
                    if alerts:
                        for a in alerts:
                            alert(a)
                    if ev is not None:
                        if type(ev) is tuple:  # a feature view: the ML detector's alone, uncounted (offload.py)
                            out = view(ev)
                            if out:
                                for a in out:
                                    alert(a)
                        else:
                            call(on_event, ev, key)
            for p in self.procs:
                p.join()
        finally:
            for p in self.procs:
                if p.exitcode is None:
                    p.kill()
                    p.join()
            for c in conns:
                c.close()
        self._merge()
        self._flush(run.last_ts)
        run.elapsed += time.perf_counter() - t0
        run.worker_cpu = [r["cpu"] for r in self.results]  # seconds per worker (otids bench, docs/PERFORMANCE.md)
        if os.environ.get("OTIDS_WORKER_CPU"):
            print(f"workers cpu {run.worker_cpu} parent cpu {sum(os.times()[:2]):.1f}", file=sys.stderr)

    def _flush(self, ts: int) -> None:
        """Engine.flush, with the anomaly detector's held-back repeats of every process in one limiter's order."""
        engine = self.run_.engine
        if self.inserted is None:
            engine.flush(ts)
            return
        det = engine.detectors[0]
        for d in engine.detectors:
            if d is det:
                held = self.inserted.pending()
                for r in self.results:
                    held += r["pending"]
                held.sort(key=itemgetter(0))
                alerts = [det._repeat(k[0], e, ts) for _at, k, e in held]
            else:
                alerts = d.flush(ts) or ()
            for a in alerts:
                engine._alert(a)

    def _merge(self) -> None:
        """The run's figures from the workers': reading and decoding were done by all (worker 0's stand for
        them), flows by one each (summed)."""
        run = self.run_
        r0 = self.results[0]
        run.errors += r0["errors"]
        run.files_ok += r0["files_ok"]
        run.files_damaged += r0["files_damaged"]
        run.files_unreadable += r0["files_unreadable"]
        run.last_ts = max(run.last_ts, r0["last_ts"])
        for k, v in r0["decode"].items():
            setattr(run.decoder.stats, k, v)
        # Fast-path packets were checksummed by their owner only: worker 0's count plus the others' own ones.
        st = run.decoder.stats
        for r in self.results[1:]:
            st.checksum_checked += r["own_checksums"][0]
            st.bad_checksum += r["own_checksums"][1]
        run.decoder.checksum_note = r0["checksum_note"]
        table = run.table
        for r in self.results:
            for k, v in r["flow_stats"].items():
                table.stats[k] = table.stats.get(k, 0) + v
            table.hosts |= r["hosts"]
        events = self.run_.engine.events
        for r in self.results:  # events the workers counted without sending
            for k, v in r["counts"].items():
                events[k] += v
        talkers = sorted((t for r in self.results for t in r["talkers"]), key=itemgetter(0))
        for _rank, k, v in talkers:
            t = table.talkers.get(k)
            if t is None:
                table.talkers[k] = list(v)
            else:
                for j in range(len(v)):
                    t[j] += v[j]
