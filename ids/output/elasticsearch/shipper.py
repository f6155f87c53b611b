"""The shipper: a bounded queue, one sender thread, retries with backoff, the disk spool (spool.py) and
the dead-letter file, for one cluster. Analysis never waits for the cluster (docs/ELASTICSEARCH.md)."""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone

from ...errors import UserError
from ..esgen import Layout
from .answers import BadAnswer, bounded_error, bulk_items, cut
from .backend import (Backend, ClusterError, RequestFailed, Unreachable, _error_reason, connect, install,
                      layout_for)
from .settings import credentials, display_url, split_urls, url_problem

log = logging.getLogger("otids.es")

TRANSIENT = frozenset((401, 403, 429, 500, 502, 503, 504))
PROBE_MAX_S = 5.0  # longest wait between two connection checks while the cluster is down
PROGRESS_S = 10.0  # a long spool replay says how far it is this often


def _short(reason: str, n: int = 160) -> str:
    """One line, at most `n` characters: state-change lines stay short."""
    r = " ".join(str(reason).split())
    return r if len(r) <= n else r[:n - 3] + "..."
COUNTERS = ("sent", "duplicates", "retried", "spooled", "rejected", "dropped")


class Shipper:
    """Owns the queue, the spool, the dead-letter file and the sender thread for one cluster."""

    def __init__(self, url: str, cfg, *, node_class=None, fields=None, start: bool = True):
        from ..spool import Spool

        for u in split_urls(url):
            problem = url_problem(u)
            if problem:
                raise UserError(f"--es {u}: {problem}")
        self.url = url
        self.cfg = cfg
        self.node_class = node_class
        self.fields = fields
        self.creds = credentials(cfg)
        self.q: queue.Queue = queue.Queue(cfg.queue_size)
        self.spool = Spool(cfg.spool_dir, cfg.spool_max_bytes)
        self.stats = {"alerts": Counter(), "events": Counter()}
        self.backend: Backend | None = None
        self.layout: Layout | None = None
        self.info: dict = {}
        self.connected = False
        self.last_error = ""
        self._dlq = None
        self._closing = False
        self._deadline = 0.0
        self._wake = threading.Event()
        self._down_since: float | None = None
        self._probe_delay = cfg.backoff_initial_ms / 1000
        self._setup_warned = False
        self._inflight: list = []
        self._max_body = 0  # bytes: the largest request known to pass, after a 413; 0 = no limit seen
        self._lock = threading.Lock()
        self._rebuild = False
        self._replayed = 0  # documents replayed since the spool was last empty (for the one line saying so)
        self._progress_at = time.monotonic()
        self.closed = False
        self._failure_said = False
        if not cfg.verify_certs:
            log.warning("otids: elasticsearch: TLS certificate verification is OFF (elasticsearch.verify_certs)")
        self.thread = threading.Thread(target=self._run, name="otids-es", daemon=True)
        if start:
            self.thread.start()

    # ------------------------------------------------------------------ producer side (analysis thread)
    def put(self, kind: str, stream: str, did: str, ts: str, line: str) -> None:
        try:
            self.q.put_nowait((kind, stream, did, ts, line))
        except queue.Full:  # the sender is behind or the cluster is down: disk, not waiting
            self.spool.append(kind, [(stream, did, ts, line)])

    # ------------------------------------------------------------------ sender thread
    def _run(self) -> None:
        try:
            while True:
                if self._closing and time.monotonic() >= self._deadline:
                    break
                if not self.connected:
                    if self._connect():
                        continue
                    self._park()
                    if self._closing and time.monotonic() >= self._deadline:
                        break
                    self._sleep(self._probe_delay)
                    # probes stay a few seconds apart, so a recovery is noticed soon
                    self._probe_delay = min(self._probe_delay * 2, self.cfg.backoff_max_ms / 1000, PROBE_MAX_S)
                    continue
                if self._rebuild:  # SIGHUP changed the credentials: a new client, a new connection check
                    self._rebuild = False
                    self.backend, self.connected = None, False
                    continue
                taken = self.spool.take()
                if taken is not None:
                    self._replay(*taken)
                    continue
                if self._replayed:
                    log.warning("otids: elasticsearch: spool replayed (%d document(s))", self._replayed)
                    self._replayed = 0
                batch = self._take_batch()
                if batch:
                    self._ship(batch)
                    continue
                if self._closing:
                    break
        except Exception as e:  # pragma: no cover - a bug; keep the documents, say so
            log.error("otids: elasticsearch: sender stopped by an internal error: %r", e)
            self.last_error = f"internal error: {e!r}"
        finally:
            self._park()

    def _sleep(self, seconds: float) -> None:
        if self._closing:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        self._wake.wait(seconds)
        self._wake.clear()

    def _connect(self) -> bool:
        try:
            if self.backend is None:
                self.backend, self.info = connect(self.url, self.cfg, self.creds, self.node_class)
            else:
                self.info = self.backend.probe()
            self.layout = layout_for(self.cfg, self.backend.flavor)
        except (Unreachable, ClusterError) as e:
            self._went_down(str(e))
            return False
        if self.cfg.setup:
            try:
                install(self.backend, self.layout, self.fields)
            except Unreachable as e:
                self._went_down(str(e))
                return False
            except ClusterError as e:
                # Typically a least-privilege sensor key (create_doc only): ship anyway; templates are then
                # an administrator's job (`otids es setup`), as docs/ELASTICSEARCH.md recommends.
                if not self._setup_warned:
                    log.warning("otids: elasticsearch: cannot install templates (%s); shipping anyway. Run "
                                "`otids es setup` with a privileged account, or set elasticsearch.setup: false", e)
                    self._setup_warned = True
        self.connected = True
        self._probe_delay = self.cfg.backoff_initial_ms / 1000
        return True

    def _came_back(self) -> None:
        # Said on the first delivery after an outage, not on the first answer to a probe: a cluster that
        # answers GET / but refuses bulk requests (429 storm, missing privileges) is still down.
        log.warning("otids: elasticsearch: %s back after %.0f s; %d spooled document(s) to replay",
                    display_url(self.url), time.monotonic() - self._down_since, sum(self.spool.pending().values()))
        self._down_since = None

    def _went_down(self, reason: str) -> None:
        self.connected = False
        self.last_error = reason
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("otids: elasticsearch: %s down (%s); spooling to %s", display_url(self.url),
                        _short(reason), self.cfg.spool_dir)

    def _park(self) -> None:
        """Move everything queued (and anything in flight) to the spool."""
        items = []
        with self._lock:
            items += self._inflight
            self._inflight = []
        while True:
            try:
                items.append(self.q.get_nowait())
            except queue.Empty:
                break
        self._spool(items)

    def _spool(self, items) -> None:
        by_kind: dict[str, list] = {}
        for kind, stream, did, ts, line in items:
            by_kind.setdefault(kind, []).append((stream, did, ts, line))
        for kind, rows in by_kind.items():
            self.spool.append(kind, rows)  # counts spooled and dropped itself

    def _take_batch(self) -> list:
        batch: list = []
        with self._lock:  # in flight from the first item on: flush() and _park() see it while it fills
            self._inflight = batch
        wait = 0.0 if self._closing else self.cfg.flush_interval_ms / 1000
        end = time.monotonic() + wait
        while True:  # in short slices, so that close() is noticed at once
            try:
                batch.append(self.q.get(timeout=max(0.001, min(0.05, end - time.monotonic())))
                             if not self._closing and end > time.monotonic() else self.q.get_nowait())
                break
            except queue.Empty:
                if self._closing or time.monotonic() >= end:
                    return batch
        deadline = time.monotonic() + wait
        while len(batch) < self.cfg.batch_size:
            try:
                left = deadline - time.monotonic()
                batch.append(self.q.get(timeout=max(0.001, left)) if left > 0 and not self._closing
                             else self.q.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self._inflight = batch
        return batch

    def _ship(self, batch: list) -> None:
        left = self._deliver(batch)
        with self._lock:
            self._inflight = []
        if left:
            self._spool(left)

    def _replay(self, kind: str, seg, rows: list) -> None:
        remaining = []
        for i in range(0, len(rows), self.cfg.batch_size):
            if not self.connected or self._closing and time.monotonic() >= self._deadline:
                remaining += rows[i:]
                continue
            chunk = [(kind, *r) for r in rows[i:i + self.cfg.batch_size]]
            left = self._deliver(chunk, replay=True)
            remaining += [r[1:] for r in left]
            self._progress()
        self.spool.done(kind, seg, remaining)

    def _progress(self) -> None:
        """A long replay says how far it is, one line every PROGRESS_S seconds."""
        now = time.monotonic()
        if now - self._progress_at < PROGRESS_S:
            return
        self._progress_at = now
        log.warning("otids: elasticsearch: replaying the spool: %d document(s) so far, %d still in it",
                    self._replayed, sum(self.spool.pending().values()))

    def _deliver(self, batch: list, replay: bool = False) -> list:
        """Send `batch` until every document is resolved or retries run out; returns the unresolved ones
        (the cluster is then considered down). Only a document the cluster refuses on its own (a mapping
        conflict, a document larger than any request may be) is dead-lettered; a request that failed as a
        whole (429, 5xx, 400/401/403, connection) is retried and then spooled, and a 413 is split."""
        pending = batch
        attempt = 0
        reason = ""
        while pending:
            results = self._bulk(pending)
            retry = []
            for it, item in zip(pending, results):
                kind = it[0]
                status = item.get("status")
                if isinstance(status, int) and 200 <= status < 300:
                    self.stats[kind]["sent"] += 1
                elif status == 409:
                    self.stats[kind]["duplicates"] += 1
                elif item.get("whole") or status in TRANSIENT or not isinstance(status, int):
                    retry.append(it)
                    err = item.get("error")
                    reason = _error_reason({"error": err}) if isinstance(err, dict) else cut(err)
                else:
                    self._reject(it, status, item.get("error"))
            if replay and len(retry) < len(pending):
                self.stats[pending[0][0]]["replayed"] += len(pending) - len(retry)
                self._replayed += len(pending) - len(retry)
            if self._down_since is not None and len(retry) < len(pending):
                self._came_back()
            pending = retry
            if not pending:
                return []
            if attempt >= self.cfg.retries or self._closing and time.monotonic() >= self._deadline:
                self._went_down(f"{reason} (after {attempt + 1} attempt(s))")
                return pending
            attempt += 1
            for it in pending:
                self.stats[it[0]]["retried"] += 1
            self._sleep(min(self.cfg.backoff_initial_ms / 1000 * 2 ** (attempt - 1), self.cfg.backoff_max_ms / 1000))
        return []

    def _bulk(self, items: list) -> list[dict]:
        """One result per item: the cluster's per-document answer, or {"whole": True, "error": ..} when the
        request carrying it failed as a whole. A 413 (a proxy's body limit: nginx's default is 1 MiB)
        splits the request in halves until it passes; the size that passed bounds later requests."""
        lines = [(json.dumps({"create": {"_index": self._index(it), "_id": it[2]}}, separators=(",", ":"))
                  + "\n" + it[4] + "\n").encode() for it in items]
        size = sum(map(len, lines))
        if self._rebuild:  # SIGHUP changed the credentials while this batch was being gathered
            self._rebuild = False
            try:
                self.backend, self.info = connect(self.url, self.cfg, self.creds, self.node_class)
            except (Unreachable, ClusterError) as e:
                self.backend, self.connected = None, False
                return [{"whole": True, "status": None, "error": str(e)}] * len(items)
        if self.backend is None:
            return [{"whole": True, "status": None, "error": self.last_error or "not connected"}] * len(items)
        if self._max_body and size > self._max_body and len(items) > 1:
            half = len(items) // 2
            return self._bulk(items[:half]) + self._bulk(items[half:])
        try:
            return bulk_items(self.backend.bulk(b"".join(lines)), len(items))
        except BadAnswer as e:  # whatever came back, it says nothing per document: retry, then spool
            return [{"whole": True, "status": None, "error": str(e)}] * len(items)
        except RequestFailed as e:
            if e.status != 413:
                return [{"whole": True, "status": e.status, "error": str(e)}] * len(items)
            if len(items) == 1:
                return [{"status": 413, "error": {
                    "type": "request_entity_too_large",
                    "reason": f"this document alone makes a {size:,}-byte request, over the limit of the "
                              f"cluster or a proxy in front of it ({e.reason})"}}]
            if not self._max_body or size <= self._max_body:
                self._max_body = size - 1
                log.warning("otids: elasticsearch: request of %s bytes refused with 413 (%s); sending smaller "
                            "requests", f"{size:,}", e.reason[:120])
            half = len(items) // 2
            return self._bulk(items[:half]) + self._bulk(items[half:])
        except Unreachable as e:
            return [{"whole": True, "status": None, "error": str(e)}] * len(items)

    def _index(self, it) -> str:
        kind, stream, did, ts, line = it
        return stream if self.layout.mode == "data_stream" else f"{stream}-{ts[:4]}.{ts[5:7]}"

    def _reject(self, it, status, error) -> None:
        kind, stream, did, ts, line = it
        self.stats[kind]["rejected"] += 1
        try:
            doc = json.loads(line)
        except ValueError:
            doc = line
        rec = {"@timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "index": self._index(it), "_id": did, "status": status,
               "error": bounded_error(error), "document": doc}
        if self.stats[kind]["rejected"] == 1:
            log.warning("otids: elasticsearch: the cluster rejected a document (%s); rejected documents go to %s",
                        _error_reason({"error": error}), self.cfg.dead_letter)
        try:
            if self._dlq is None:
                fd = os.open(self.cfg.dead_letter, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._dlq = os.fdopen(fd, "a", encoding="utf-8")
            self._dlq.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._dlq.flush()
        except OSError as e:
            self.stats[kind]["rejected"] -= 1
            self.stats[kind]["lost"] += 1
            log.error("otids: elasticsearch: cannot write dead-letter file %s: %s; document %s dropped",
                      self.cfg.dead_letter, e.strerror, did)

    # ------------------------------------------------------------------ SIGHUP
    def reload(self, cfg) -> bool:
        """Re-read the credentials named by `cfg` (an ElasticsearchConfig; the environment still wins): a
        rotated API key or password file takes effect without a restart. True when they changed."""
        new = replace(self.cfg, username=cfg.username, password_file=cfg.password_file,
                      api_key_file=cfg.api_key_file)
        creds = credentials(new)  # an unreadable file raises UserError: the caller keeps the old ones
        if creds == self.creds:
            return False
        self.cfg, self.creds = new, creds
        self._rebuild = True
        self._wake.set()
        log.warning("otids: elasticsearch: credentials changed; reconnecting")
        return True

    # ------------------------------------------------------------------ shutdown and reporting
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is empty and nothing is in flight (tests; `otids es load`)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                idle = not self._inflight
            if idle and self.q.empty() and (not self.spool or not self.connected):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._closing = True
        self._deadline = time.monotonic() + self.cfg.shutdown_timeout
        waiting = self.q.qsize() + sum(self.spool.pending().values())
        if waiting and self._down_since is not None:  # an outage was seen (not merely: still connecting)
            log.warning("otids: elasticsearch: %s down; trying %d s more to deliver %d document(s) (Ctrl-C: "
                        "stop waiting, keep them in the spool)", display_url(self.url), self.cfg.shutdown_timeout,
                        waiting)
        self._wake.set()
        try:
            if self.thread.is_alive():
                self.thread.join(self.cfg.shutdown_timeout + self.cfg.timeout + 5)
        except KeyboardInterrupt:
            # A second Ctrl-C (or SIGTERM) while waiting: stop waiting, keep everything in the spool.
            self._deadline = 0.0
            self._wake.set()
            self.thread.join(self.cfg.timeout + 1)
            log.warning("otids: elasticsearch: interrupted; undelivered documents stay in %s", self.cfg.spool_dir)
        if self.thread.is_alive():  # pragma: no cover - a request hung past its own timeout
            log.error("otids: elasticsearch: sender did not stop; spooling what is left")
        self._park()
        self.spool.close()
        if self._dlq is not None:
            self._dlq.close()
        left = self.spool.pending()
        total = self.counters()
        line = self.summary()
        if total["rejected"] or total["dropped"] or sum(left.values()):
            log.warning("otids: elasticsearch: %s", line)
        else:
            log.info("otids: elasticsearch: %s", line)

    def failure(self) -> str | None:
        """One line when documents did not reach the cluster by the end of the run (left in the spool,
        rejected into the dead-letter file, dropped at the spool cap), else None. Said once per shipper:
        its alert and event sinks share it."""
        if self._failure_said:
            return None
        self._failure_said = True
        c = self.counters()
        left = sum(self.spool.pending().values())
        if not (c["rejected"] or c["dropped"] or left):
            return None
        parts = []
        if left:
            parts.append(f"{left:,} left in the spool {self.cfg.spool_dir} (the next run or `otids es load` ships them)")
        if c["rejected"]:
            parts.append(f"{c['rejected']:,} rejected, in {self.cfg.dead_letter}")
        if c["dropped"]:
            parts.append(f"{c['dropped']:,} dropped at the spool cap")
        line = (f"elasticsearch: {left + c['rejected'] + c['dropped']:,} document(s) did not reach "
                f"{display_url(self.url)}: " + "; ".join(parts))
        if self.last_error and (left or c["dropped"]):
            line += f"; last error: {self.last_error[:200]}"
        return line

    def counters(self, kind: str | None = None) -> dict:
        """sent, duplicates, retried, spooled, rejected, dropped (and replayed) for one kind or both."""
        c: Counter = Counter()
        for k in ([kind] if kind else list(self.stats)):
            c.update(self.stats[k])
            c["spooled"] += self.spool.spooled[k]
            c["dropped"] += self.spool.dropped[k] + self.stats[k]["lost"]
        return {k: c[k] for k in (*COUNTERS, "replayed")}

    def summary(self, kind: str | None = None) -> str:
        c = self.counters(kind)
        parts = [f"{k} {c[k]:,}" for k in COUNTERS]
        if c["replayed"]:
            parts.append(f"replayed from spool {c['replayed']:,}")
        left = self.spool.pending()
        n = left[kind] if kind else sum(left.values())
        if n:
            parts.append(f"left in spool {n:,} ({self.cfg.spool_dir}; shipped by the next run or `otids es load`)")
        if c["rejected"]:
            parts.append(f"rejected ones in {self.cfg.dead_letter}")
        if self.last_error and (n or c["dropped"]):
            parts.append(f"last error: {self.last_error}")
        return ", ".join(parts)

