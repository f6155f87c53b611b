"""Test support for the Elasticsearch output: a real osmem-server process (in-memory OpenSearch-compatible
server, pip package osmem-server) on 127.0.0.1, the node class that lets the official elasticsearch
client talk to it, and a recording HTTP server for the requests osmem cannot answer (data streams, ILM,
Kibana). Imported by the test modules (fixtures are plain functions here, wrapped in each module)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elastic_transport import HttpHeaders, Urllib3HttpNode

from ids.config import ElasticsearchConfig


def osmem_binary() -> str:
    try:
        import osmem_server
    except ImportError:
        pytest.fail("osmem-server is not installed (pip install -e '.[test]')")
    exe = Path(osmem_server.__file__).parent / "bin" / "osmem-server"
    if not exe.exists():
        pytest.fail(f"osmem-server binary missing at {exe}")
    return str(exe)


class Osmem:
    """An osmem-server process started directly (not through OsmemServer.start, whose parent-pid watcher
    leaks file descriptors). stop() kills it; start() again reuses the same port, empty."""

    def __init__(self, workdir: Path):
        self.exe = osmem_binary()
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Osmem":
        self.starts += 1
        log = self.workdir / f"osmem-{self.starts}.out"
        with open(log, "w") as out:
            self.proc = subprocess.Popen([self.exe, "--addr", f"127.0.0.1:{self.port}", "--no-stdin-watch", "--no-ja"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = log.read_text()
            if text.strip().startswith("{"):
                self.port = int(json.loads(text.splitlines()[0])["url"].rsplit(":", 1)[1])
                break
            if self.proc.poll() is not None:
                pytest.fail(f"osmem-server exited at start: {text[-500:]}")
            time.sleep(0.01)
        else:
            self.stop()
            pytest.fail("osmem-server did not report ready within 15 s")
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.02)
        pytest.fail(f"osmem-server at {self.url} not answering")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def request(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return {"status": e.code, **json.loads(e.read() or b"{}")}

    def docs(self, pattern: str) -> list[dict]:
        """Every hit (_id, _index, _source) in indices matching `pattern`."""
        self.request("POST", f"/{pattern}/_refresh")
        r = self.request("POST", f"/{pattern}/_search", {"size": 10000, "query": {"match_all": {}}})
        return r.get("hits", {}).get("hits", [])


class PlainJsonNode(Urllib3HttpNode):
    """The official client sends `application/vnd.elasticsearch+json; compatible-with=9`, which osmem
    answers with 406; send the plain media types instead (test side only)."""

    _VND = re.compile(r"application/vnd\.elasticsearch\+([a-z-]+)(;\s*compatible-with=\d+)?")

    def perform_request(self, method, target, body=None, headers=None, **kw):
        h = HttpHeaders(headers or {})
        for k in ("accept", "content-type"):
            if k in h:
                h[k] = self._VND.sub(r"application/\1", h[k])
        return super().perform_request(method, target, body=body, headers=h, **kw)


CLUSTER_ONLY = ("ecs", "data_stream", "host", "message")


def file_view(source: dict) -> dict:
    """A stored document as the NDJSON file holds it: without the fields only the cluster gets
    (ids/data/fields/cluster.yml)."""
    d = {k: v for k, v in source.items() if k not in CLUSTER_ONLY}
    d["event"] = {k: v for k, v in d["event"].items() if k != "ingested"}
    obs = {k: v for k, v in d.pop("observer", {}).items()
           if k not in ("hostname", "name", "type", "vendor", "product", "version")}
    if obs:
        d["observer"] = obs
    return d


def es_config(tmp: Path, **over) -> ElasticsearchConfig:
    """Fast timings and private spool / dead-letter paths for tests."""
    base = dict(spool_dir=str(tmp / "spool"), dead_letter=str(tmp / "dead-letter.ndjson"), timeout=5,
                flush_interval_ms=50, backoff_initial_ms=50, backoff_max_ms=200, retries=2, shutdown_timeout=20,
                batch_size=50)
    base.update(over)
    return replace(ElasticsearchConfig(), **base)


# ---------------------------------------------------------------------------------------------- recorder

class RawAnswer:
    """An answer sent byte for byte as given (hostile servers, tests/test_es_hostile.py): `length` may lie
    (a truncated body), `drip` sends the body `drip` bytes at a time `pause` seconds apart."""

    def __init__(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None,
                 length: int | None = None, drip: int = 0, pause: float = 0.0, product: bool = True,
                 wire: bytes | None = None):
        self.status, self.body, self.ctype, self.headers = status, body, ctype, headers or {}
        self.length = len(body) if length is None else length
        self.drip, self.pause, self.product = drip, pause, product
        self.wire = wire  # bytes written instead of any HTTP answer (not HTTP at all), then the connection closed

    def send(self, h) -> None:
        if self.wire is not None:
            h.wfile.write(self.wire)
            h.close_connection = True
            return
        h.send_response(self.status)
        h.send_header("Content-Type", self.ctype)
        if self.product:
            h.send_header("X-Elastic-Product", "Elasticsearch")
        for k, v in self.headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(self.length))
        h.end_headers()
        try:
            if not self.drip:
                h.wfile.write(self.body)
            else:
                for i in range(0, len(self.body), self.drip):
                    h.wfile.write(self.body[i:i + self.drip])
                    h.wfile.flush()
                    time.sleep(self.pause)
            if self.length != len(self.body):
                h.close_connection = True
        except OSError:  # the client gave up (its timeout): what a real server sees too
            h.close_connection = True


NGINX_413 = (b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 "
             b"Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
_COMPAT = re.compile(r"application/vnd\.elasticsearch\+[a-z-]+;\s*compatible-with=(\d+)")


class Recorder:
    """A stand-in Elasticsearch (and Kibana) on 127.0.0.1 that records every request and answers as the
    Elasticsearch `version` would, following Elastic's REST API documentation:

    - GET / with X-Elastic-Product on every answer (the official client checks it);
    - REST API compatibility (RestCompatibleVersionHelper): a `compatible-with=N` media type is accepted
      for N = the cluster's major or the one before, else 400 media_type_header_exception "Accept version
      must be either version 9 or 8, but found 7"; asking on one of Accept / Content-Type only is 400 too;
    - _bulk: NDJSON that ends with a newline, action lines `{"create": {"_index", "_id"}}` each followed by
      a source line, else 400 as Elasticsearch says it; answers per item (scripted statuses) or for the
      whole request (scripted int status);
    - `body_limit`: a proxy in front (nginx client_max_body_size) answering 413 with its HTML page;
    - templates, component templates, ingest pipelines, ILM policies: PUT stores, GET answers in each API's
      documented shape, 404 when absent;
    - Kibana's saved-objects _import."""

    def __init__(self, distribution: str | None = None, version: str = "9.1.0", tls=None):
        self.requests: list[dict] = []
        self.bulk_script: list = []  # per bulk request: None (all 201), an int status for the whole request,
        #                              or a list of per-item statuses
        self.distribution = distribution
        self.version = version
        self.put_status = 200  # answer for PUT of templates and policies
        self.body_limit = 0  # bytes; 0 = no proxy limit
        self.objects: dict[str, dict] = {}  # path -> stored body
        self.bulk_raw: list = []  # per bulk request, before bulk_script: a raw answer (RawAnswer) to send as is
        self.kibana_raw: list = []  # per Kibana API request (/api/...): the same
        self.path_raw: dict[str, list] = {}  # per request whose "METHOD path" or path (query cut) is the
        #                                      key: the same, so GET / and setup's GETs and PUTs can answer anything
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle on, the body waited for the client's delayed
            # ACK, 40 ms a request (most of an `es setup` test's time)
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec.requests.append({"method": self.command, "path": self.path, "headers": headers, "body": body})
                if rec.body_limit and len(body) > rec.body_limit:
                    rec.requests[-1]["status"] = 413
                    self._send(413, NGINX_413, "text/html", product=False)
                    return
                raws = rec.bulk_raw if self.path.startswith("/_bulk") else \
                    rec.kibana_raw if self.path.startswith("/api/") else None
                base = self.path.split("?")[0]
                for key in (f"{self.command} {base}", base):
                    if not raws and rec.path_raw.get(key):
                        raws = rec.path_raw[key]
                if raws:
                    raw = raws.pop(0)
                    rec.requests[-1]["status"] = raw.status
                    raw.send(self)
                    return
                bad = rec.compat_problem(headers)
                status, answer = (400, bad) if bad else rec.answer(self.command, self.path, body)
                rec.requests[-1]["status"] = status
                self._send(status, json.dumps(answer).encode(), "application/json")

            def _send(self, status, data, ctype, product=True):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if product and rec.distribution != "opensearch":
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        if tls is not None:  # an ssl.SSLContext (server side): HTTPS, client certificates if it asks for them
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls is not None else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        # close() waits for the serving loop to notice: 0.05 s, not the default 0.5 s a test
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def compat_problem(self, headers: dict) -> dict | None:
        """Elasticsearch's answer to media types it does not accept, or None."""
        if self.distribution == "opensearch":
            return None
        accept, ctype = headers.get("accept", ""), headers.get("content-type", "")
        va, vc = _COMPAT.search(accept), _COMPAT.search(ctype)
        cause = None
        for v, name, value in ((va, "Accept", accept), (vc, "Content-Type", ctype)):
            if v and int(v.group(1)) not in (self.major, self.major - 1):
                cause = (f"{name} version must be either version {self.major} or {self.major - 1}, but found "
                         f"{v.group(1)}. {name}={value}")
                break
        else:
            if ctype and bool(va) != bool(vc):
                cause = ("A compatible version is required on both Content-Type and Accept headers if either one "
                         f"has requested a compatible version. Accept={accept}, Content-Type={ctype}")
            elif va and vc and va.group(1) != vc.group(1):
                cause = ("Content-Type and Accept headers have to have the same version. "
                         f"Accept={accept}, Content-Type={ctype}")
        if cause is None:
            return None
        err = {"type": "media_type_header_exception",
               "reason": "Invalid media-type value on headers [Accept, Content-Type]"}
        return {"error": {"root_cause": [err], **err, "caused_by": {"type": "status_exception", "reason": cause}},
                "status": 400}

    def answer(self, method: str, path: str, body: bytes):
        if path == "/" and method == "GET":
            v = {"number": self.version, "build_flavor": "default", "minimum_wire_compatibility_version": "8.19.0"}
            if self.distribution:
                v["distribution"] = self.distribution
            return 200, {"name": "recorder", "cluster_name": "otids-test", "version": v,
                         "tagline": "You Know, for Search"}
        if path.startswith("/_bulk"):
            return self._bulk(body)
        if "/api/detection_engine/rules/_import" in path:
            n = sum(1 for line in body.split(b"\n") if line.startswith(b'{"author"'))
            return 200, {"success": True, "success_count": n, "rules_count": n, "errors": []}
        if "/api/saved_objects/_import" in path:
            n = sum(1 for line in body.split(b"\n") if line.startswith(b'{"attributes"'))
            return 200, {"success": True, "successCount": n, "errors": []}
        base = path.split("?")[0]
        kind, _, name = base.strip("/").rpartition("/")
        if method == "GET":
            if base not in self.objects:
                return 404, {"error": {"type": "resource_not_found_exception", "reason": f"{name} not found"},
                             "status": 404}
            b = self.objects[base]
            if kind == "_index_template":
                return 200, {"index_templates": [{"name": name, "index_template": b}]}
            if kind == "_component_template":
                return 200, {"component_templates": [{"name": name, "component_template": b}]}
            if kind == "_plugins/_ism/policies":  # OpenSearch ISM: the policy with its sequence number
                return 200, {"_id": name, "_version": 1, "_seq_no": 0, "_primary_term": 1, **b}
            if kind == "_ilm/policy":
                return 200, {name: {"version": 1, "modified_date": "2026-12-05T00:00:00.000Z", **b}}
            return 200, {name: b}
        if method == "PUT" and self.put_status != 200:
            return self.put_status, {"error": {"type": "security_exception", "reason": "action is unauthorized"},
                                     "status": self.put_status}
        if method == "PUT":
            self.objects[base] = json.loads(body)
        return 200, {"acknowledged": True}

    def _bulk(self, body: bytes):
        def bad(reason):
            err = {"type": "illegal_argument_exception", "reason": reason}
            return 400, {"error": {"root_cause": [err], **err}, "status": 400}

        if not body.endswith(b"\n"):
            return bad("The bulk request must be terminated by a newline [\\n]")
        lines = [json.loads(x) for x in body.splitlines() if x.strip()]
        actions, sources = lines[0::2], lines[1::2]
        if len(actions) != len(sources):
            return bad("Validation Failed: 1: no requests added;")
        for a in actions:
            if len(a) != 1 or next(iter(a)) not in ("create", "index") or "_index" not in next(iter(a.values())):
                return bad(f"Malformed action/metadata line, expected one of [create, delete, index, update]: {a}")
        script = self.bulk_script.pop(0) if self.bulk_script else None
        if isinstance(script, int):
            return script, {"error": {"type": "scripted", "reason": f"scripted {script}"}, "status": script}
        items = []
        for i, a in enumerate(actions):
            op, meta = next(iter(a.items()))
            st = script[i] if isinstance(script, list) else 201
            item = {"_index": meta["_index"], "_id": meta.get("_id"), "status": st}
            if st >= 300:
                item["error"] = {"type": "scripted_exception", "reason": f"scripted {st}"}
            else:
                item["result"] = "created"
            items.append({op: item})
        return 200, {"errors": any(next(iter(i.values()))["status"] >= 300 for i in items), "items": items}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bulk_actions(self, status: int | None = None) -> list[tuple[dict, dict]]:
        """(action, document) of every bulk request (answered with `status`, if given)."""
        out = []
        for r in self.requests:
            if r["path"].startswith("/_bulk") and r["body"] and (status is None or r.get("status") == status):
                lines = [json.loads(x) for x in r["body"].splitlines() if x.strip()]
                out += list(zip(lines[0::2], lines[1::2]))
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
