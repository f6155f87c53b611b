"""The live sensor loop: frames from every capture interface through the same pipeline as `analyze`,
for weeks. It owns the clock (timeouts while traffic is idle), the counters (printed and emitted as
`otids.stats` events every interval), interface state, signals (SIGHUP reload, SIGTERM/SIGINT clean stop)
and the evidence ring.

Capture itself is ids.capture.live; detection and outputs are the Run that `analyze` builds.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time

from ..capture.live import LiveCapture, link_state
from ..config import Config, load_config
from ..errors import UserError
from ..events import SensorStats

NS = 1_000_000_000
TICK = NS  # clock resolution for idle timeouts and interface checks
REOPEN_EVERY = 2 * NS  # cheap when the interface is still absent (one if_nametoindex)
BUDGET = 8192  # frames from one interface before the others and the timers get a turn


def log(msg: str) -> None:
    print(f"otids live: {msg}", file=sys.stderr, flush=True)


class Sensor:
    def __init__(self, run, captures: list[LiveCapture], config: Config, config_path: str | None,
                 stats_sinks: list, evidence=None, quiet: bool = False, stats_interval: int | None = None):
        self.run = run
        self.caps = captures
        self.config = config
        self.config_path = config_path
        self.stats_sinks = stats_sinks
        self.evidence = evidence
        self.quiet = quiet
        self.interval = (stats_interval or config.live.stats_interval) * NS
        self.stop = False
        self.hup = False
        self.started = time.time_ns()
        self.state = {c.name: "up" for c in captures}
        self.dead: dict[str, int] = {}  # interface removed: name -> next reopen attempt
        self.last = {c.name: self._snapshot(c) for c in captures}
        self.feeds = [self._feed_for(i) for i in range(len(captures))]
        self.extra: dict = {}  # more fds to poll -> callback (ids.parallel.live: the workers' event pipes)
        self.before_finish: list = []  # called at stop, before the run finishes (workers drained)

    # ------------------------------------------------------------------ frames
    def _feed_for(self, i: int):
        feed = self.run.feed
        if self.evidence is None:
            return feed
        add = self.evidence.add

        def tee(ts, lt, data):
            add(ts, i, data)
            feed(ts, lt, data)
        return tee

    # ------------------------------------------------------------------ loop
    def serve(self, ready: str | None = None) -> int:
        """Run until SIGTERM/SIGINT. `ready` is logged once the signal handlers are in place: a SIGHUP or
        SIGTERM that arrives after it is handled, never the default action (which would lose outputs)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_wake = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handlers = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        for fd in self.extra:
            poller.register(fd, select.POLLIN)
        by_fd: dict[int, int] = {}

        def register():
            for fd in list(by_fd):
                try:
                    poller.unregister(fd)
                except KeyError:
                    pass
            by_fd.clear()
            for i, c in enumerate(self.caps):
                if c.sock is not None:
                    by_fd[c.fileno()] = i
                    poller.register(c.fileno(), select.POLLIN)

        register()
        if ready:
            log(ready)
        now = time.time_ns()
        next_tick, next_stats = now + TICK, now + self.interval
        run, caps, feeds = self.run, self.caps, self.feeds
        try:
            while not self.stop:
                for fd, ev in poller.poll(min(1000, max(0, (min(next_tick, next_stats) - now) // 1_000_000))):
                    if fd == wake_r:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                        continue
                    i = by_fd.get(fd)
                    if i is None:
                        if fd in self.extra:
                            self.extra[fd]()
                        continue
                    c = caps[i]
                    if ev & select.POLLERR:
                        if self._link_error(c):
                            register()
                            continue
                    c.dispatch(feeds[i], BUDGET)
                now = time.time_ns()
                if now >= next_tick:
                    run.tick(now)
                    if self._check_links(now):
                        register()
                    if self.evidence is not None:
                        self._evidence(now)
                    self._flush_outputs()
                    next_tick = now + TICK
                if now >= next_stats:
                    self.stats(now)
                    next_stats = now + self.interval
                if self.hup:
                    self.hup = False
                    self.reload(now)
        finally:
            # Stopping (or failing): what the kernel already holds is part of the capture, and every
            # pending exchange is emitted before the outputs close.
            try:
                for i, c in enumerate(caps):
                    if c.sock is not None:
                        while c.dispatch(feeds[i], BUDGET):
                            pass
                for f in self.before_finish:
                    f()
                now = time.time_ns()
                run.tick(now)
                self.stats(now)
                run.finish()
                if self.evidence is not None:
                    self._evidence(now)
            finally:
                signal.set_wakeup_fd(old_wake)
                os.close(wake_r)
                os.close(wake_w)
                self._handlers = handlers
        return 0

    def restore_signals(self) -> None:
        """Back to the previous handlers; until then a repeated SIGTERM during the final flush only sets
        the flag again instead of killing the process with outputs half written."""
        for s, h in getattr(self, "_handlers", {}).items():
            signal.signal(s, h)

    def _signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self.hup = True
        else:
            self.stop = True

    # ------------------------------------------------------------------ interfaces
    def _link_error(self, c: LiveCapture) -> bool:
        """POLLERR on a capture socket: ENETDOWN when the link went down (the socket resumes by itself
        when it comes back), or the interface was removed (the socket is dead). True if re-registering."""
        err = c.pending_error()
        if err == 0:
            return False
        if c.gone():
            self._down(c, time.time_ns(), "removed")
            c.close()
            self.dead[c.name] = time.time_ns() + REOPEN_EVERY
            return True
        self._down(c, time.time_ns(), errno.errorcode.get(err, str(err)).lower())
        return False

    def _down(self, c: LiveCapture, now: int, reason: str) -> None:
        if self.state.get(c.name) == "down":
            return
        self.state[c.name] = "down"
        log(f"{c.name}: interface down ({reason}); nothing on it is analysed until it returns")
        self.emit(SensorStats(now, "interface_down", c.name, {"reason": reason}))

    def _up(self, c: LiveCapture, now: int, reason: str) -> None:
        self.state[c.name] = "up"
        log(f"{c.name}: interface up again ({reason})")
        self.emit(SensorStats(now, "interface_up", c.name, {"reason": reason}))

    def _check_links(self, now: int) -> bool:
        changed = False
        for c in self.caps:
            if c.name in self.dead:
                if now < self.dead[c.name]:
                    continue
                try:
                    c.reopen()
                except UserError as e:
                    self.dead[c.name] = now + REOPEN_EVERY
                    if "CAP_NET_RAW" in str(e) and not getattr(self, "_said_noraw", False):
                        self._said_noraw = True
                        log(f"{c.name}: cannot reopen: {e} (keep live.keep_net_raw: true to allow it)")
                    continue
                del self.dead[c.name]
                self._up(c, now, "reopened")
                changed = True
                continue
            st = link_state(c.name)
            if st == "absent" or (st == "up" and c.gone()):
                self._down(c, now, "removed")
                c.close()
                self.dead[c.name] = now + REOPEN_EVERY
                changed = True
            elif st == "down":
                self._down(c, now, "link down")
            elif self.state.get(c.name) == "down":
                self._up(c, now, "link up")
        return changed

    def _flush_outputs(self) -> None:
        """Alerts reach their files within a second, not when a buffer fills. Any sink with a `flush()`
        taking no argument gets it every second, so it must not block (NdjsonSink.flush writes its buffer;
        the Elasticsearch shipper sends from its own thread and needs nothing here)."""
        eng = self.run.engine
        for s in {id(s): s for s in [*eng.alert_sinks, *eng.event_sinks, *self.stats_sinks]}.values():
            fl = getattr(s, "flush", None)
            if fl is not None:
                try:
                    fl()
                except OSError as e:
                    log(f"cannot write {getattr(s, 'path', type(s).__name__)}: {e.strerror or e}")

    # ------------------------------------------------------------------ counters
    @staticmethod
    def _snapshot(c: LiveCapture) -> tuple:
        c.kernel_stats()
        return (time.time_ns(), c.packets, c.bytes, c.kernel_drops, c.sensor_drops)

    def emit(self, ev: SensorStats) -> None:
        self.run.engine.on_event(ev)
        for s in self.stats_sinks:
            s.write_event(ev)

    def stats(self, now: int) -> None:
        run = self.run
        for c in self.caps:
            t0, p0, b0, k0, s0 = self.last[c.name]
            snap = self._snapshot(c)
            t1, p1, b1, k1, s1 = snap
            self.last[c.name] = snap
            dt = max(1, t1 - t0) / NS
            dp, dk, ds = p1 - p0, k1 - k0, s1 - s0
            seen = dp + dk
            d = {"interval_s": round(dt, 3), "packets": dp, "bytes": b1 - b0, "kernel_drops": dk,
                 "sensor_drops": ds, "loss_ratio": round((dk + ds) / seen, 6) if seen else 0.0,
                 "packets_per_s": round(dp / dt, 1),
                 "total": {"packets": c.packets, "bytes": c.bytes, "kernel_packets": c.kernel_packets,
                           "kernel_drops": c.kernel_drops, "sensor_drops": c.sensor_drops,
                           "truncated": c.truncated, "errors": c.errors, "skipped_outgoing": c.skipped_outgoing,
                           "vlan_restored": c.vlan_restored}}
            self.emit(SensorStats(now, "capture", c.name, d))
            if c.first_error is not None:
                log(f"{c.name}: a frame raised inside the pipeline (counted as a sensor drop; further ones "
                    f"are only counted):\n{c.first_error}")
                c.first_error = ""
            if not self.quiet:
                log(f"{c.name}: {dp:,} frames ({dp / dt:,.0f}/s), {(b1 - b0) / 1e6:,.1f} MB; "
                    f"kernel drops {dk:,}, sensor drops {ds:,}; totals {c.packets:,} frames, "
                    f"{c.kernel_drops:,} kernel drops, {c.sensor_drops:,} sensor drops")
        d = self.sensor_counters(now)
        self.emit(SensorStats(now, "sensor", None, d))
        if not self.quiet:
            protos = ", ".join(f"{k} {v['packets']:,}" for k, v in sorted(d["protocol"].items()))
            log(f"flows {d['flows_active']:,} live / {d['flows_total']:,} seen; events {d['events']:,}, "
                f"alerts {d['alerts']:,}; packets by protocol: {protos or '-'}; RSS {d['rss_bytes'] / 2**20:.1f} MiB")

    def sensor_counters(self, now: int) -> dict:
        run = self.run
        table = run.table
        proto: dict[str, list[int]] = {}
        for (_c, _s, app, *_service), (fl, pk, by) in table.talkers.items():  # flows removed from the table
            t = proto.setdefault(app or "unidentified", [0, 0, 0])
            t[0] += fl
            t[1] += pk
            t[2] += by
        for tab in (table.tcp, table.udp, table.other):
            for f, is_c in tab.values():
                if is_c:  # still in the table, closed (lingering) or not: counted in talkers only once removed
                    t = proto.setdefault(f.app or "unidentified", [0, 0, 0])
                    t[0] += 1
                    t[1] += f.pkts[0] + f.pkts[1]
                    t[2] += f.bytes[0] + f.bytes[1]
        ds = run.decoder.stats
        return {"uptime_s": round((now - self.started) / NS, 3), "rss_bytes": rss_bytes(),
                "flows_active": table.live, "flows_total": table.stats["flows"],
                "events": sum(n for (dset, _), n in run.engine.events.items() if dset != SensorStats.dataset),
                "alerts": sum(run.engine.alerts.values()),
                "decode": {"packets": ds.packets, "not_ip": ds.not_ip, "not_tcp_udp": ds.not_tcp_udp,
                           "truncated": ds.truncated, "malformed": ds.malformed, "bad_checksum": ds.bad_checksum},
                "protocol": {k: {"flows": v[0], "packets": v[1], "bytes": v[2]} for k, v in proto.items()}}

    # ------------------------------------------------------------------ SIGHUP
    def reload(self, now: int) -> list[str]:
        """Re-read the config and let every detector or sink with a reload hook re-read its files. A bad
        file keeps the old state of whatever it feeds; the outcome is logged and emitted as an event."""
        errors: list[str] = []
        done: list[str] = []
        try:
            config = load_config(self.config_path)
        except UserError as e:
            errors.append(str(e))
            config = None
        if config is not None:
            eng = self.run.engine
            seen: set[int] = set()
            for obj in [*eng.detectors, *eng.alert_sinks, *eng.event_sinks]:
                if id(obj) in seen or not hasattr(obj, "reload"):
                    continue
                seen.add(id(obj))
                try:
                    obj.reload(config)
                    done.append(type(obj).__name__)
                except UserError as e:
                    errors.append(str(e))
                except Exception as e:  # a plug-in's bug must not take the sensor down
                    errors.append(f"{type(obj).__name__}: {type(e).__name__}: {e}")
            self.config = config
        for e in errors:
            log(f"reload: {e}; keeping the previous version")
        log(f"reload: {'done' if not errors else 'partly failed'} ({', '.join(done) or 'nothing reloadable'})")
        self.emit(SensorStats(now, "config_reload", None, {"reload": {"ok": not errors, "reloaded": done,
                                                                      "errors": errors}}))
        return errors

    # ------------------------------------------------------------------ evidence
    def _evidence(self, now: int) -> None:
        try:
            path = self.evidence.poll(now)
        except OSError as e:
            log(f"evidence: cannot write to {self.evidence.dir}: {e.strerror or e}")
            return
        if path:
            log(f"evidence: wrote {path}")


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0
