"""The data path for one run: capture -> decode -> flow table (reassembly, protocol sessions) -> detection
engine -> sinks. Several capture files are one continuous capture, in the order given.

This module only wires stages together and keeps the hot loop tight; each stage owns its own logic.
"""
from __future__ import annotations

import gc
import os
import time

from .capture import open_capture
from .config import Config
from .decode import Decoder
from .decode.frag import FragmentReassembler
from .detect.engine import Engine
from .errors import CaptureError
from .events import FlowNotice
from .flow import budget
from .flow.table import FlowTable
from .protocols import DISSECTED

NS = 1_000_000_000


class Run:
    """One analysis run over one or more capture files."""

    def __init__(self, config: Config, detectors: list, alert_sinks: list, event_sinks: list):
        self.config = config
        # Flows, streams and sessions are many long-lived containers, freed by reference counting (flow removal
        # breaks their one cycle). At the default gen-0 threshold (700 allocations) the cyclic collector walks
        # them over and over under a flow flood: half the run time of a 200k-SYN flood (docs/ROBUSTNESS.md).
        # 200,000, not 50,000: a flood's flows are evicted within a few hundred thousand allocations, so at
        # the larger threshold most have died before a collection walks them (300k SYNs: 10.8 -> 9.5 CPU s).
        if gc.get_threshold()[0] < 200_000:
            gc.set_threshold(200_000, 20, 100)
        # What is loaded by now (modules, rules, models) lives as long as the process: out of the collector's
        # sight, so its full collections walk only what the traffic built.
        gc.freeze()
        self.engine = Engine(detectors, alert_sinks, event_sinks)
        budget.install(config.limits.memory_total)  # the bound the tables of this process share
        dc = config.decode
        lim = config.limits
        self.decoder = Decoder(dc.checksums, FragmentReassembler(dc.max_fragmented_datagrams,
                                                                 timeout_ns=dc.fragment_timeout * NS,
                                                                 max_fragments=lim.max_fragments,
                                                                 max_total_bytes=lim.fragment_bytes_total))
        self.table = FlowTable(config, DISSECTED, self.engine.on_event,
                               verify_checksums=dc.checksums == "on")
        self.errors: list[str] = []
        self.files_ok = 0
        self.files_damaged = 0  # read up to damage (what came before was analysed)
        self.files_unreadable = 0  # not a capture at all
        self.elapsed = 0.0
        self.last_ts = 0
        self.outputs: list[tuple[str, int]] = []

    def analyze_file(self, path: str, progress=None) -> bool:
        """Feed one capture through the pipeline. Damage ends the file after its last good packet and is
        recorded as a one-line error; returns False then."""
        t0 = time.perf_counter()
        ok = True
        try:
            reader = open_capture(path)
        except CaptureError as e:
            self.errors.append(str(e))
            self.files_unreadable += 1
            return False
        size = os.path.getsize(path) if progress is not None else 0
        task = progress.add_task(os.path.basename(path), total=size) if progress is not None else None
        decode = self.decoder.decode
        table = self.table
        notices = self.decoder.notices
        ts = self.last_ts
        try:
            if task is None:
                # The hot loop: FlowTable.packet's sweep check is inlined (one call less per packet).
                tcp, udp, other = table._tcp, table._udp, table._other
                for ts, lt, data in reader.packets():
                    p = decode(ts, lt, data)
                    if p is not None:
                        if ts >= table.next_sweep:
                            table.sweep_or_start(ts)
                        if p.proto == 6:
                            tcp(p, ts)
                        elif p.proto == 17:
                            udp(p, ts)
                        else:
                            other(p, ts)
                    if notices:
                        self._notices(ts)
            else:
                packet = table.packet
                n = 0
                for ts, lt, data in reader.packets():
                    p = decode(ts, lt, data)
                    if p is not None:
                        packet(p)
                    if notices:
                        self._notices(ts)
                    n += 1
                    if not n & 0x3FFF:
                        progress.update(task, completed=reader.offset)
        except CaptureError as e:
            self.errors.append(str(e))
            self.files_damaged += 1
            ok = False
        finally:
            reader.close()
            if task is not None:
                progress.update(task, completed=size)
        self.last_ts = max(self.last_ts, ts)
        if ok:
            self.files_ok += 1
        self.elapsed += time.perf_counter() - t0
        return ok

    def feed(self, ts: int, linktype: int, data: bytes) -> None:
        """One frame from a source other than a file (a live interface): the same path as analyze_file."""
        p = self.decoder.decode(ts, linktype, data)
        if p is not None:
            self.table.packet(p)
        if self.decoder.notices:
            self._notices(ts)
        if ts > self.last_ts:
            self.last_ts = ts

    def tick(self, now: int) -> None:
        """The clock moved without traffic (live capture gone quiet): run the timeout sweep that packets
        would otherwise trigger, so idle flows, pending transactions and fragments still expire."""
        if now > self.last_ts:
            self.last_ts = now
        table = self.table
        if table.next_sweep >= 0 and now >= table.next_sweep:
            table.sweep(now)
            self.decoder.frag.expire(now, self.decoder.notices)
        if self.decoder.notices:
            self._notices(now)

    def _notices(self, ts: int) -> None:
        for nts, action, details in self.decoder.notices:
            self.engine.on_event(FlowNotice(nts or ts, action, None, None, details))
        self.decoder.notices.clear()

    def finish(self) -> None:
        """End of input: close every flow (emitting pending exchanges) and flush detectors."""
        t0 = time.perf_counter()
        self.decoder.frag.expire(self.last_ts + self.config.decode.fragment_timeout * NS + 1, self.decoder.notices)
        if self.decoder.notices:
            self._notices(self.last_ts)
        self.table.finish(self.last_ts)
        self.engine.flush(self.last_ts)
        self.elapsed += time.perf_counter() - t0


class Collector:
    """An in-memory sink: keeps every event and alert (tests, `otids assets`, `otids rules test`)."""

    def __init__(self):
        self.events: list = []
        self.alerts: list = []
        self.count = 0
        self.path = "<memory>"

    def write_event(self, ev) -> None:
        self.events.append(ev)

    def write_alert(self, a) -> None:
        self.alerts.append(a)

    def close(self) -> None:
        pass


def analyze(paths: list[str], config: Config | None = None, detectors: list | None = None) -> tuple[Run, Collector]:
    """Run the whole pipeline over `paths` in memory; returns the finished Run and what it emitted."""
    from .detect.anomaly import AnomalyDetector

    config = config or Config()
    if detectors is None:
        detectors = [AnomalyDetector(config.anomaly)] if config.anomaly.enabled else []
    col = Collector()
    run = Run(config, detectors, [col], [col])
    for p in paths:
        run.analyze_file(p)
    run.finish()
    return run, col
