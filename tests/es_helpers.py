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


def es_config(tmp: Path, **over) -> ElasticsearchConfig:
    """Fast timings and private spool / dead-letter paths for tests."""
    base = dict(spool_dir=str(tmp / "spool"), dead_letter=str(tmp / "dead-letter.ndjson"), timeout=5,
                flush_interval_ms=50, backoff_initial_ms=50, backoff_max_ms=200, retries=2, shutdown_timeout=20,
                batch_size=50)
    base.update(over)
    return replace(ElasticsearchConfig(), **base)


# ---------------------------------------------------------------------------------------------- recorder

class Recorder:
    """A fake cluster + Kibana on 127.0.0.1 that records every request and answers like Elasticsearch 9:
    GET / (with X-Elastic-Product), PUT -> acknowledged, _bulk -> 201 per action (or scripted statuses),
    Kibana _import -> success."""

    def __init__(self, distribution: str | None = None):
        self.requests: list[dict] = []
        self.bulk_script: list = []  # per bulk request: None (all 201), an int status for the whole request,
        #                              or a list of per-item statuses
        self.distribution = distribution
        self.put_status = 200  # answer for PUT of templates and policies
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
                status, answer = rec.answer(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str, body: bytes):
        if path == "/" and method == "GET":
            v = {"number": "9.1.0", "build_flavor": "default"}
            if self.distribution:
                v["distribution"] = self.distribution
            return 200, {"name": "recorder", "cluster_name": "otids-test", "version": v,
                         "tagline": "You Know, for Search"}
        if path.startswith("/_bulk"):
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            actions = lines[0::2]
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
        if "/api/saved_objects/_import" in path:
            n = sum(1 for line in body.split(b"\n") if line.startswith(b'{"attributes"'))
            return 200, {"success": True, "successCount": n, "errors": []}
        if method == "GET":
            return 404, {"error": {"type": "resource_not_found_exception", "reason": "not found"}, "status": 404}
        if method == "PUT" and self.put_status != 200:
            return self.put_status, {"error": {"type": "security_exception", "reason": "action is unauthorized"},
                                     "status": self.put_status}
        return 200, {"acknowledged": True}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bulk_actions(self) -> list[tuple[dict, dict]]:
        out = []
        for r in self.requests:
            if r["path"].startswith("/_bulk"):
                lines = [json.loads(x) for x in r["body"].splitlines() if x.strip()]
                out += list(zip(lines[0::2], lines[1::2]))
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
