"""Elasticsearch / OpenSearch output: alerts (and, when asked, protocol events) into data streams
`logs-otids.alert-<namespace>` and `logs-otids.<protocol>-<namespace>`, or into plain indices; plus the
`otids es` commands (setup, generate, validate, load). Field mappings come from esgen.py, never from here.

Nothing is lost on the way:
  - analysis never waits for the cluster: documents go into a bounded in-memory queue and, when it is
    full or the cluster is down, into the size-capped disk spool (spool.py says what happens at its cap);
  - one sender thread ships batches with `helpers.streaming_bulk` (official `elasticsearch` 9 client, or
    `opensearch-py`); 429, 5xx and connection failures are retried with exponential backoff, and after
    `retries` the batch goes to the spool and the sender probes until the cluster answers, then replays
    the spool before anything new;
  - every document carries a deterministic `_id` (= event.id, ids/output/ndjson.py), sent with op_type
    `create`: a replay of something the cluster already has comes back 409 and is counted as a duplicate,
    never stored twice;
  - documents the cluster rejects (mapping conflicts and other 4xx) go to the dead-letter file with the
    reason; 401/403 are treated as an outage (the documents are fine, the credentials are not);
  - close() delivers what is queued and spooled, for up to `shutdown_timeout` seconds, and leaves the rest
    in the spool for the next run or `otids es load`.
The retry loop is ours rather than streaming_bulk's own `max_retries`, so that every retry is counted and
connection errors (which the helper re-raises) follow the same path as 429 and 5xx.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import queue
import re
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone

from ..errors import UserError
from .esgen import Layout, cluster_objects, stream_name
from .ndjson import stamp

log = logging.getLogger("otids.es")

NS = 1_000_000_000
TRANSIENT = frozenset((401, 403, 429, 500, 502, 503, 504))
COUNTERS = ("sent", "duplicates", "retried", "spooled", "rejected", "dropped")
_NAMESPACE = re.compile(r"^[a-z0-9_]{1,100}$")


# ---------------------------------------------------------------------------------------------- config

def config_problem(cfg) -> tuple[str, str] | None:
    """(key, message) for the first invalid key of an ElasticsearchConfig, or None."""
    if cfg.url is not None:
        p = url_problem(cfg.url)
        if p:
            return ("url", p)
    if cfg.kibana_url is not None:
        p = url_problem(cfg.kibana_url)
        if p:
            return ("kibana_url", p)
    if cfg.flavor not in ("auto", "elasticsearch", "opensearch"):
        return ("flavor", f"must be auto, elasticsearch or opensearch (got {cfg.flavor!r})")
    if cfg.mode not in ("auto", "data_stream", "index"):
        return ("mode", f"must be auto, data_stream or index (got {cfg.mode!r})")
    if not _NAMESPACE.match(cfg.namespace):
        return ("namespace", "must be 1-100 characters of a-z, 0-9 and _ (no '-': it separates the data "
                             "stream name's parts)")
    for k in ("timeout", "batch_size", "queue_size", "flush_interval_ms", "backoff_initial_ms", "backoff_max_ms",
              "spool_max_bytes"):
        if getattr(cfg, k) < 1:
            return (k, "must be at least 1")
    return None


def url_problem(url: str) -> str | None:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"must be an http:// or https:// URL (got {url!r})"
    if u.username or u.password:
        return ("must not contain credentials (they would show in process lists and logs); use "
                "OTIDS_ES_USERNAME/OTIDS_ES_PASSWORD or password_file, or an API key")
    return None


def display_url(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc.rpartition("@")[2], u.path, "", ""))


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
        mode = os.stat(path).st_mode
    except OSError as e:
        raise UserError(f"cannot read {what} file {path}: {e.strerror}") from None
    if not value:
        raise UserError(f"{what} file {path} is empty")
    if mode & 0o077:
        log.warning("otids: elasticsearch: %s file %s is readable by other users (chmod 600 it)", what, path)
    return value


def credentials(cfg, env=None) -> dict:
    """{'api_key': key} or {'basic_auth': (user, password)} or {}. The environment wins over the config
    (an API key over a password at each level): OTIDS_ES_API_KEY(_FILE), then OTIDS_ES_PASSWORD(_FILE) with
    the user from OTIDS_ES_USERNAME or the config, then the config's api_key_file, then its password_file.
    Secrets are never logged or echoed; errors name the file, not the value."""
    env = os.environ if env is None else env
    key = env.get("OTIDS_ES_API_KEY")
    if not key and env.get("OTIDS_ES_API_KEY_FILE"):
        key = _read_secret(env["OTIDS_ES_API_KEY_FILE"], "API key")
    if key:
        return {"api_key": key}
    user = env.get("OTIDS_ES_USERNAME") or cfg.username
    password = env.get("OTIDS_ES_PASSWORD")
    if not password and env.get("OTIDS_ES_PASSWORD_FILE"):
        password = _read_secret(env["OTIDS_ES_PASSWORD_FILE"], "password")
    if not password and cfg.api_key_file:
        return {"api_key": _read_secret(cfg.api_key_file, "API key")}
    if not password and cfg.password_file:
        password = _read_secret(cfg.password_file, "password")
    if user and password:
        return {"basic_auth": (user, password)}
    if user or password:
        raise UserError("elasticsearch: a username needs a password and a password needs a username "
                        "(OTIDS_ES_USERNAME / elasticsearch.username with OTIDS_ES_PASSWORD(_FILE) / password_file)")
    return {}


def auth_header(creds: dict) -> dict:
    if "api_key" in creds:
        return {"authorization": f"ApiKey {creds['api_key']}"}
    if "basic_auth" in creds:
        u, p = creds["basic_auth"]
        return {"authorization": "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()}
    return {}


# ---------------------------------------------------------------------------------------------- clients

class ClusterError(Exception):
    """The cluster answered a setup request with an error status."""

    def __init__(self, status, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class Unreachable(Exception):
    """No answer: connection refused or reset, timeout, TLS failure."""


class Backend:
    """One client library behind the two operations the shipper needs: bulk and plain JSON requests."""

    flavor = "?"
    version = "?"

    def bulk(self, actions: list[dict]) -> list[tuple[bool, dict]]:
        raise NotImplementedError

    def request(self, method: str, path: str, body=None) -> dict:
        raise NotImplementedError


def _quiet_client_loggers() -> None:
    # The client libraries log every failed request at WARNING; with no logging configured Python prints
    # them on stderr, one per retry. Our own messages say when the cluster goes and comes back.
    for name in ("opensearch", "elastic_transport", "elasticsearch"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.CRITICAL)


class EsBackend(Backend):
    flavor = "elasticsearch"

    def __init__(self, url: str, cfg, creds: dict, node_class=None):
        from elasticsearch import Elasticsearch

        _quiet_client_loggers()

        kw = dict(creds, request_timeout=cfg.timeout, max_retries=0, retry_on_timeout=False,
                  verify_certs=cfg.verify_certs, ssl_show_warn=False)
        if cfg.ca_file:
            kw["ca_certs"] = cfg.ca_file
        if node_class is not None:
            kw["node_class"] = node_class
        self.client = Elasticsearch(url, **kw)
        self._auth = auth_header(creds)

    def probe(self) -> dict:
        """GET / through the bare transport: no product check, plain JSON, so OpenSearch answers too."""
        from elastic_transport import HttpHeaders, TransportError

        try:
            meta, body = self.client.transport.perform_request(
                "GET", "/", headers=HttpHeaders({"accept": "application/json", **self._auth}))
        except TransportError as e:
            raise Unreachable(_reason(e)) from None
        if meta.status != 200 or not isinstance(body, dict):
            raise ClusterError(meta.status, _error_reason(body))
        return body

    def bulk(self, actions):
        from elastic_transport import TransportError
        from elasticsearch import helpers

        try:
            return list(helpers.streaming_bulk(self.client, actions, chunk_size=max(1, len(actions)),
                                               raise_on_error=False, raise_on_exception=False, max_retries=0))
        except TransportError as e:
            raise Unreachable(_reason(e)) from None

    def request(self, method, path, body=None):
        from elastic_transport import ApiError, TransportError

        try:
            r = self.client.perform_request(method, path, body=body,
                                            headers={"accept": "application/json",
                                                     "content-type": "application/json"})
        except ApiError as e:
            raise ClusterError(e.status_code, _error_reason(e.body)) from None
        except TransportError as e:
            raise Unreachable(_reason(e)) from None
        return r.body


class OsBackend(Backend):
    flavor = "opensearch"

    def __init__(self, url: str, cfg, creds: dict):
        try:
            from opensearchpy import OpenSearch
        except ImportError:  # pragma: no cover - a dependency of the package
            raise UserError("OpenSearch output needs the opensearch-py package (pip install opensearch-py)") from None
        _quiet_client_loggers()
        if "api_key" in creds:
            raise UserError("OpenSearch has no Elasticsearch API keys: use a username and password "
                            "(OTIDS_ES_USERNAME / OTIDS_ES_PASSWORD)")
        kw = dict(timeout=cfg.timeout, max_retries=0, retry_on_timeout=False, verify_certs=cfg.verify_certs,
                  ssl_show_warn=False)
        if "basic_auth" in creds:
            kw["http_auth"] = creds["basic_auth"]
        if cfg.ca_file:
            kw["ca_certs"] = cfg.ca_file
        self.client = OpenSearch(hosts=[url], **kw)

    def probe(self) -> dict:
        return self.request("GET", "/")

    def bulk(self, actions):
        from opensearchpy import helpers
        from opensearchpy.exceptions import ConnectionError as OsConnectionError

        try:
            out = list(helpers.streaming_bulk(self.client, actions, chunk_size=max(1, len(actions)),
                                              raise_on_error=False, raise_on_exception=False, max_retries=0))
        except OsConnectionError as e:
            raise Unreachable(_reason(e)) from None
        # opensearch-py reports connection failures per item with status "N/A"; make that one outage.
        if out and all(not ok and not isinstance(next(iter(it.values())).get("status"), int) for ok, it in out):
            raise Unreachable(str(next(iter(out[0][1].values())).get("error", "connection failed")))
        return out

    def request(self, method, path, body=None):
        from opensearchpy.exceptions import ConnectionError as OsConnectionError, TransportError

        try:
            return self.client.transport.perform_request(method, path, body=body)
        except OsConnectionError as e:
            raise Unreachable(_reason(e)) from None
        except TransportError as e:
            raise ClusterError(e.status_code, _error_reason(e.info)) from None


def _reason(e: Exception) -> str:
    msg = str(getattr(e, "message", "") or e)
    return msg.split("\n")[0][:300] or type(e).__name__


def _error_reason(body) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return f"{err.get('type', '?')}: {err.get('reason', '')}"[:500]
        return str(err)[:500]
    return str(body)[:500]


def connect(url: str, cfg, creds: dict, node_class=None) -> tuple[Backend, dict]:
    """Open the right client for the cluster at `url` (asking it when flavor is auto); returns the backend
    and the cluster's GET / answer. Raises Unreachable or ClusterError."""
    if cfg.flavor == "opensearch":
        b = OsBackend(url, cfg, creds)
        info = b.probe()
    else:
        b = EsBackend(url, cfg, creds, node_class)
        info = b.probe()
        if cfg.flavor == "auto" and info.get("version", {}).get("distribution") == "opensearch":
            b = OsBackend(url, cfg, creds)
    b.version = str(info.get("version", {}).get("number", "?"))
    return b, info


def layout_for(cfg, flavor: str) -> Layout:
    mode = cfg.mode if cfg.mode != "auto" else ("data_stream" if flavor == "elasticsearch" else "index")
    return Layout(flavor=flavor, mode=mode, alert_retention_days=cfg.alert_retention_days,
                  event_retention_days=cfg.event_retention_days, ignore_malformed=cfg.ignore_malformed)


def install(backend: Backend, layout: Layout, fs=None) -> list[str]:
    """PUT lifecycle policies and templates; returns one line per object. A missing ISM plugin on
    OpenSearch is reported, not fatal (indices then simply are not managed)."""
    from .fields import load_fields

    fs = fs or load_fields()
    done = []
    for obj in cluster_objects(fs, layout):
        path = obj.path
        if obj.kind == "ism":
            # ISM refuses to overwrite a policy unless told which version it replaces.
            try:
                cur = backend.request("GET", path)
                path += f"?if_seq_no={cur['_seq_no']}&if_primary_term={cur['_primary_term']}"
            except ClusterError as e:
                if e.status not in (400, 404):
                    raise
                if e.status == 400:
                    done.append(f"skipped {obj.kind} {obj.name}: ISM not available ({e.reason})")
                    continue
        backend.request("PUT", path, obj.body)
        done.append(f"installed {obj.kind} {obj.name}")
    return done


# ---------------------------------------------------------------------------------------------- shipper

class Shipper:
    """Owns the queue, the spool, the dead-letter file and the sender thread for one cluster."""

    def __init__(self, url: str, cfg, *, node_class=None, fields=None, start: bool = True):
        from .spool import Spool

        problem = url_problem(url)
        if problem:
            raise UserError(f"--es {url}: {problem}")
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
        self._lock = threading.Lock()
        self.closed = False
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
                    self._probe_delay = min(self._probe_delay * 2, self.cfg.backoff_max_ms / 1000)
                    continue
                taken = self.spool.take()
                if taken is not None:
                    self._replay(*taken)
                    continue
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
        log.warning("otids: elasticsearch: %s is back after %.0f s; %d spooled document(s) to replay",
                    display_url(self.url), time.monotonic() - self._down_since, sum(self.spool.pending().values()))
        self._down_since = None

    def _went_down(self, reason: str) -> None:
        self.connected = False
        self.last_error = reason
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("otids: elasticsearch: %s unavailable (%s); documents go to the spool %s until it is back",
                        display_url(self.url), reason, self.cfg.spool_dir)

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
        batch = []
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
        self.spool.done(kind, seg, remaining)

    def _deliver(self, batch: list, replay: bool = False) -> list:
        """Send `batch` until every document is resolved or retries run out; returns the unresolved ones
        (the cluster is then considered down)."""
        pending = batch
        attempt = 0
        reason = ""
        while pending:
            try:
                results = self.backend.bulk([self._action(it) for it in pending])
                if len(results) != len(pending):  # pragma: no cover - the helpers answer per action
                    raise Unreachable(f"bulk answered {len(results)} items for {len(pending)} documents")
            except Unreachable as e:
                results = [(False, {"create": {"status": "unreachable", "error": str(e)}})] * len(pending)
            retry = []
            for it, (ok, info) in zip(pending, results):
                kind = it[0]
                item = next(iter(info.values()))
                status = item.get("status")
                if ok:
                    self.stats[kind]["sent"] += 1
                elif status == 409:
                    self.stats[kind]["duplicates"] += 1
                elif status in TRANSIENT or not isinstance(status, int):
                    retry.append(it)
                    reason = _error_reason(item) if isinstance(item.get("error"), dict) else str(item.get("error"))
                else:
                    self._reject(it, status, item.get("error"))
            if replay and len(retry) < len(pending):
                self.stats[pending[0][0]]["replayed"] += len(pending) - len(retry)
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

    def _action(self, it) -> dict:
        kind, stream, did, ts, line = it
        index = stream if self.layout.mode == "data_stream" else f"{stream}-{ts[:4]}.{ts[5:7]}"
        return {"_op_type": "create", "_index": index, "_id": did, "_source": line}

    def _reject(self, it, status, error) -> None:
        kind, stream, did, ts, line = it
        self.stats[kind]["rejected"] += 1
        try:
            doc = json.loads(line)
        except ValueError:
            doc = line
        rec = {"@timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "index": self._action(it)["_index"], "_id": did, "status": status,
               "error": error if isinstance(error, (dict, str)) else str(error), "document": doc}
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


# ---------------------------------------------------------------------------------------------- sinks

class _Sink:
    """What the pipeline sees: write_*(), close(), count and a `path` line for the summary."""

    kind = "?"

    def __init__(self, shipper: Shipper, namespace: str):
        self.shipper = shipper
        self.namespace = namespace
        self.count = 0

    def _put(self, doc: dict, dataset: str) -> None:
        self.count += 1
        ts = doc["@timestamp"]
        line = stamp(doc, self.count)
        self.shipper.put(self.kind, stream_name(dataset, self.namespace), doc["event"]["id"], ts, line)

    def close(self) -> None:
        self.shipper.close()

    @property
    def path(self) -> str:
        target = (f"logs-otids.alert-{self.namespace}" if self.kind == "alerts"
                  else f"logs-otids.<protocol>-{self.namespace}")
        s = f"{display_url(self.shipper.url)} {target}"
        if self.shipper.closed:
            s += f" ({self.shipper.summary(self.kind)})"
        return s


class AlertSink(_Sink):
    kind = "alerts"

    def write_alert(self, alert) -> None:
        self._put(alert.to_doc(), "otids.alert")


class EventSink(_Sink):
    kind = "events"

    def write_event(self, ev) -> None:
        self._put(ev.to_doc(), ev.dataset)


# ---------------------------------------------------------------------------------------------- analyze plug-in

def add_arguments(parser) -> None:
    g = parser.add_argument_group("Elasticsearch / OpenSearch output (docs/ELASTICSEARCH.md)")
    g.add_argument("--es", metavar="URL", help="also send alerts to this Elasticsearch or OpenSearch cluster "
                                              "(credentials: OTIDS_ES_API_KEY or OTIDS_ES_USERNAME/OTIDS_ES_PASSWORD)")
    g.add_argument("--es-events", action="store_true", help="also send every protocol event to the cluster")
    g.add_argument("--es-flavor", choices=("auto", "elasticsearch", "opensearch"),
                   help="client to use (default: elasticsearch.flavor, auto)")


def effective_config(args, config):
    cfg = config.elasticsearch
    over = {}
    if getattr(args, "es", None):
        over["url"] = args.es
    if getattr(args, "es_events", False):
        over["events"] = True
    if getattr(args, "es_flavor", None):
        over["flavor"] = args.es_flavor
    if getattr(args, "kibana", None):
        over["kibana_url"] = args.kibana
    cfg = replace(cfg, **over) if over else cfg
    problem = config_problem(cfg)
    if problem:
        raise UserError(f"elasticsearch.{problem[0]}: {problem[1]}")
    return cfg


def build(args, config):
    cfg = effective_config(args, config)
    if not cfg.url:
        return [], [], []
    shipper = Shipper(cfg.url, cfg)
    _sigterm_closes_outputs()
    alerts = AlertSink(shipper, cfg.namespace)
    events = [EventSink(shipper, cfg.namespace)] if cfg.events else []
    return [], [alerts], events


def _sigterm_closes_outputs() -> None:
    """docker stop / systemctl stop send SIGTERM: turn it into the same clean stop as Ctrl-C, so the
    CLI's finally-block closes the outputs and the queue is delivered or spooled, not lost."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def _term(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, _term)


# ---------------------------------------------------------------------------------------------- otids es

def register(sub) -> None:
    p = sub.add_parser("es", help="Elasticsearch / OpenSearch: set up a cluster, generate mappings, validate, load",
                       description="Elasticsearch and OpenSearch support (docs/ELASTICSEARCH.md).")
    es = p.add_subparsers(dest="es_command", metavar="ACTION")

    s = es.add_parser("setup", help="install lifecycle policies, templates and the Kibana saved objects",
                      description="Install the ILM (Elasticsearch) or ISM (OpenSearch) policies, component and "
                                  "index templates, and import the dashboards through Kibana's (or OpenSearch "
                                  "Dashboards') saved-objects API.")
    _cluster_args(s)
    s.add_argument("--kibana", metavar="URL", help="Kibana / OpenSearch Dashboards URL (default: elasticsearch.kibana_url)")
    s.add_argument("--no-kibana", action="store_true", help="skip the saved objects")
    s.add_argument("--wait", type=int, default=0, metavar="SECONDS",
                   help="wait up to this long for the cluster and Kibana to answer (containers starting)")
    s.set_defaults(func=cmd_setup)

    g = es.add_parser("generate", help="regenerate deploy/ templates, Kibana objects and docs/FIELDS.md",
                      description="Write every file generated from ids/data/fields/*.yml.")
    g.add_argument("--out", default=".", metavar="DIR", help="repository root to write into (default: .)")
    g.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    g.set_defaults(func=cmd_generate)

    v = es.add_parser("validate", help="check NDJSON documents against the field definitions",
                      description="Report every field that is undeclared, of the wrong type or out of range.")
    v.add_argument("files", nargs="+", metavar="NDJSON")
    v.set_defaults(func=cmd_validate)

    ld = es.add_parser("load", help="ship NDJSON alert/event files (and the spool) to the cluster",
                       description="Send documents written by `otids analyze -o/--events` to the cluster with "
                                   "their event.id as _id (so nothing is stored twice), after replaying the spool.")
    _cluster_args(ld)
    ld.add_argument("files", nargs="*", metavar="NDJSON")
    ld.set_defaults(func=cmd_load)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _cluster_args(p) -> None:
    p.add_argument("--es", metavar="URL", help="cluster URL (default: elasticsearch.url from the config)")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration")
    p.add_argument("--es-flavor", choices=("auto", "elasticsearch", "opensearch"))


def _load_cfg(args):
    from ..config import load_config

    cfg = effective_config(args, load_config(args.config))
    if not cfg.url:
        raise UserError("no cluster: give --es URL or set elasticsearch.url in the config")
    return cfg


def cmd_setup(args) -> int:
    cfg = _load_cfg(args)
    creds = credentials(cfg)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            backend, info = connect(cfg.url, cfg, creds)
            break
        except (Unreachable, ClusterError) as e:
            if time.monotonic() >= deadline:
                raise UserError(f"{display_url(cfg.url)}: {e}") from None
            time.sleep(2)
    layout = layout_for(cfg, backend.flavor)
    print(f"otids: {backend.flavor} {backend.version} at {display_url(cfg.url)} ({layout.mode} mode)")
    try:
        for line in install(backend, layout):
            print(f"  {line}")
    except (Unreachable, ClusterError) as e:
        raise UserError(f"{display_url(cfg.url)}: setup failed: {e}") from None
    if args.no_kibana:
        return 0
    if not cfg.kibana_url:
        print("  Kibana: no URL (--kibana or elasticsearch.kibana_url); saved objects not imported")
        return 0
    n = import_saved_objects(cfg, creds, backend.flavor, deadline)
    print(f"  imported {n} saved objects into {display_url(cfg.kibana_url)}")
    return 0


def import_saved_objects(cfg, creds: dict, flavor: str, deadline: float = 0.0) -> int:
    """POST the saved objects to Kibana's (or OpenSearch Dashboards') _import API, overwriting ours."""
    from . import kibana
    from .fields import load_fields

    objs = kibana.saved_objects(load_fields(), "kibana" if flavor == "elasticsearch" else "opensearch")
    body_file = kibana.ndjson(objs).encode()
    boundary = "otids-" + uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"otids.ndjson\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n").encode() + body_file + f"\r\n--{boundary}--\r\n".encode()
    base = cfg.kibana_url.rstrip("/")
    space = f"/s/{cfg.kibana_space}" if cfg.kibana_space else ""
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               ("kbn-xsrf" if flavor == "elasticsearch" else "osd-xsrf"): "true", **auth_header(creds)}
    req = urllib.request.Request(f"{base}{space}/api/saved_objects/_import?overwrite=true", data=body,
                                 headers=headers, method="POST")
    ctx = None
    if base.startswith("https:"):
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        if not cfg.verify_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    while True:
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout, context=ctx) as r:
                answer = json.loads(r.read() or b"{}")
            break
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")[:300]
            if e.code == 503 and time.monotonic() < deadline:  # Kibana still starting
                time.sleep(2)
                continue
            raise UserError(f"{display_url(cfg.kibana_url)}: saved objects import failed: HTTP {e.code} {text}") from None
        except (urllib.error.URLError, OSError) as e:
            if time.monotonic() < deadline:
                time.sleep(2)
                continue
            raise UserError(f"{display_url(cfg.kibana_url)}: {getattr(e, 'reason', e)}") from None
    if not answer.get("success", False):
        errs = answer.get("errors") or []
        first = "; ".join(f"{x.get('type')} {x.get('id')}: {x.get('error', {}).get('type')}" for x in errs[:3])
        raise UserError(f"{display_url(cfg.kibana_url)}: saved objects import reported {len(errs)} error(s): {first}")
    return int(answer.get("successCount", len(objs)))


def cmd_generate(args) -> int:
    from . import esgen, kibana
    from .fields import load_fields

    fs = load_fields()
    files = esgen.generated_files(fs)
    stale = []
    for rel, content in files.items():
        path = os.path.join(args.out, rel)
        try:
            with open(path, encoding="utf-8") as fh:
                same = fh.read() == content
        except OSError:
            same = False
        if same:
            continue
        stale.append(rel)
        if not args.check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(content)
    for d, title, groups in kibana.missing_panels(fs):
        print(f"otids: note: panel '{title}' ({d}) left out until field group(s) {', '.join(groups)} exist")
    if args.check:
        for rel in stale:
            print(f"otids: {rel} is stale: run `otids es generate`", file=sys.stderr)
        return 1 if stale else 0
    print(f"otids: {len(files)} generated file(s), {len(stale)} changed, from {len(fs)} fields in "
          f"{len(fs.groups)} groups")
    return 0


def cmd_validate(args) -> int:
    from .fields import load_fields

    fs = load_fields()
    bad = docs = 0
    for path in args.files:
        try:
            fh = open(path, encoding="utf-8")
        except OSError as e:
            raise UserError(f"{path}: {e.strerror}") from None
        with fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                docs += 1
                try:
                    doc = json.loads(line)
                except ValueError as e:
                    print(f"{path}:{n}: not JSON: {e}")
                    bad += 1
                    continue
                issues = fs.validate(doc)
                bad += bool(issues)
                for i in issues:
                    print(f"{path}:{n}: {i}")
    print(f"otids: {docs} document(s), {bad} with problems", file=sys.stderr)
    return 1 if bad else 0


def cmd_load(args) -> int:
    from .ndjson import doc_id

    cfg = _load_cfg(args)
    shipper = Shipper(cfg.url, cfg)
    n = 0
    try:
        for path in args.files:
            try:
                fh = open(path, encoding="utf-8")
            except OSError as e:
                raise UserError(f"{path}: {e.strerror}") from None
            with fh:
                for lineno, line in enumerate(fh, 1):
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        doc = json.loads(line)
                        ev = doc["event"]
                        ts = doc["@timestamp"]
                    except (ValueError, KeyError, TypeError):
                        raise UserError(f"{path}:{lineno}: not an otids document") from None
                    did = ev.get("id") or doc_id(line, lineno)
                    alert = ev.get("kind") == "alert"
                    stream = stream_name("otids.alert" if alert else ev.get("dataset", "otids.unknown"), cfg.namespace)
                    shipper.put("alerts" if alert else "events", stream, did, ts,
                                json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
                    n += 1
    finally:
        shipper.close()
    print(f"otids: {n:,} document(s) read; {shipper.summary()}")
    t = shipper.counters()
    return 1 if t["rejected"] or t["dropped"] or sum(shipper.spool.pending().values()) else 0
