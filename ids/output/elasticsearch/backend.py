"""Which client talks to the cluster, and how: Elasticsearch (official client) or OpenSearch
(opensearch-py), chosen from the cluster's own answer to GET /; setup requests (lifecycle policies,
templates) go through the same backend. The shipper (shipper.py) sees only bulk() and request()."""
from __future__ import annotations

import logging
import re
from dataclasses import replace

from ...errors import UserError
from ..esgen import Layout, cluster_objects
from .settings import auth_header, split_urls, tls_options
from .answers import cut, describe, what

log = logging.getLogger("otids.es")


class ClusterError(Exception):
    """The cluster answered a request with an error status (or cannot be used: `status` 'unsupported')."""

    def __init__(self, status, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


#: ClusterError status of an answer whose JSON is not of the shape the API documents (issue #16): the cluster,
#: or a proxy in front of it, answered something else; `otids es setup` says so in one line, the sink retries.
BAD_ANSWER = "unexpected answer"


class Unreachable(Exception):
    """No answer: connection refused or reset, timeout, TLS failure."""


class RequestFailed(Exception):
    """A bulk request failed as a whole (HTTP status of the request, not of one document): 413 from a
    proxy, 429, 5xx, 400 for headers the cluster does not accept, 401/403. None of it is a document's fault."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class Backend:
    """One client library behind the two operations the shipper needs: bulk and plain JSON requests."""

    flavor = "?"
    version = "?"

    urls: list = []

    def bulk(self, body):
        """POST /_bulk with an NDJSON `body`; returns the answer's body as the client read it (answers.py
        checks its shape). Raises RequestFailed when the request failed as a whole, Unreachable when
        nothing answered."""
        return self._each_node(self._bulk1, body)

    def request(self, method: str, path: str, body=None) -> dict:
        return self._each_node(self._request1, method, path, body)

    def _each_node(self, fn, *args):
        # With several URLs, a node that does not answer is marked dead by the transport and the next try
        # goes to another one: try each node once before calling the cluster unreachable.
        for left in range(len(self.urls) - 1, -1, -1):
            try:
                return fn(*args)
            except Unreachable:
                if not left:
                    raise
        raise AssertionError("no URL")  # pragma: no cover

    def _bulk1(self, body) -> list[dict]:
        raise NotImplementedError

    def _request1(self, method: str, path: str, body=None) -> dict:
        raise NotImplementedError


def _quiet_client_loggers() -> None:
    # The client libraries log every failed request at WARNING; with no logging configured Python prints
    # them on stderr, one per retry. Our own messages say when the cluster goes and comes back.
    for name in ("opensearch", "elastic_transport", "elasticsearch"):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.CRITICAL)


_COMPAT = re.compile(r"(compatible-with=)\d+")


def compat_node_class(base, major: int):
    """`base` (an elastic_transport node class) sending `compatible-with=<major>` instead of the client's own
    major. elasticsearch-py 9 asks for `compatible-with=9`, which Elasticsearch 8 refuses with 400
    (`Accept version must be either version 8 or 7, but found 9`; elasticsearch-py #2923/#2927); every
    Elasticsearch accepts its own major, and the 9 client's requests are valid 8.x REST API requests for
    what otids uses (bulk, templates, ILM, ingest pipelines)."""
    from elastic_transport import HttpHeaders

    class CompatNode(base):
        compat_major = major

        def perform_request(self, method, target, body=None, headers=None, **kw):
            h = HttpHeaders(headers or {})
            for k in ("accept", "content-type"):
                if k in h:
                    h[k] = _COMPAT.sub(rf"\g<1>{major}", h[k])
            return super().perform_request(method, target, body=body, headers=h, **kw)

    CompatNode.__name__ = f"{base.__name__}Compat{major}"
    return CompatNode


class EsBackend(Backend):
    flavor = "elasticsearch"

    def __init__(self, url: str, cfg, creds: dict, node_class=None, major: int | None = None):
        from elasticsearch import Elasticsearch

        _quiet_client_loggers()

        tls = tls_options(replace(cfg, url=url))
        kw = dict(creds, request_timeout=cfg.timeout, max_retries=0, retry_on_timeout=False,
                  ssl_show_warn=False, **tls)
        if "ssl_context" not in tls:
            kw["verify_certs"] = cfg.verify_certs
        if major is not None:
            from elastic_transport import Urllib3HttpNode

            node_class = compat_node_class(node_class or Urllib3HttpNode, major)
        if node_class is not None:
            kw["node_class"] = node_class
        # several URLs: the transport spreads requests over them and skips a dead node (max_retries=0 means
        # the failed request is ours to retry, and the retry goes to another node)
        self.urls = split_urls(url)
        self.client = Elasticsearch(self.urls, **kw)
        self._auth = auth_header(creds)

    def probe(self) -> dict:
        """GET / through the bare transport: no product check, plain JSON, so every Elasticsearch major and
        OpenSearch answer it."""
        from elastic_transport import HttpHeaders, TransportError

        for left in range(len(self.urls) - 1, -1, -1):  # a dead node is skipped: try each once
            try:
                meta, body = self.client.transport.perform_request(
                    "GET", "/", headers=HttpHeaders({"accept": "application/json", **self._auth}))
                break
            except TransportError as e:
                if not left:
                    raise Unreachable(_reason(e)) from None
            except RecursionError:  # the client's JSON decoder catches ValueError only
                raise ClusterError(BAD_ANSWER, "GET / answered JSON nested too deep to read") from None
        if meta.status != 200 or not isinstance(body, dict):
            raise ClusterError(meta.status, _error_reason(body))
        return body

    def _bulk1(self, body):
        from elastic_transport import ApiError, SerializationError, TransportError

        try:
            r = self.client.bulk(operations=body)
        except ApiError as e:
            raise RequestFailed(e.status_code, _error_reason(e.body)) from None
        except SerializationError as e:  # an error page in a format the client cannot read (a proxy's)
            raise RequestFailed(0, _reason(e)) from None
        except TransportError as e:
            raise Unreachable(_reason(e)) from None
        except Exception as e:  # the client's own checks on what came back (product header, decoding)
            raise RequestFailed(0, f"{type(e).__name__}: {_reason(e)}") from None
        return r.body

    def _request1(self, method, path, body=None):
        from elastic_transport import ApiError, TransportError

        try:
            r = self.client.perform_request(method, path, body=body,
                                            headers={"accept": "application/json",
                                                     "content-type": "application/json"})
        except ApiError as e:
            raise ClusterError(e.status_code, _error_reason(e.body)) from None
        except TransportError as e:
            raise Unreachable(_reason(e)) from None
        except RecursionError:  # the client's JSON decoder catches ValueError only
            raise ClusterError(BAD_ANSWER, f"{method} {path} answered JSON nested too deep to read") from None
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
                  ssl_show_warn=False, **tls_options(replace(cfg, url=url), "opensearch"))
        if "basic_auth" in creds:
            kw["http_auth"] = creds["basic_auth"]
        self.urls = split_urls(url)
        self.client = OpenSearch(hosts=self.urls, **kw)

    def probe(self) -> dict:
        return self.request("GET", "/")

    def _bulk1(self, body):
        from opensearchpy.exceptions import ConnectionError as OsConnectionError, TransportError

        try:
            r = self.client.bulk(body=body)
        except OsConnectionError as e:  # ConnectionTimeout and SSLError are ConnectionErrors too
            raise Unreachable(_reason(e)) from None
        except TransportError as e:
            status = e.status_code if isinstance(e.status_code, int) else 0
            raise RequestFailed(status, _error_reason(e.info)) from None
        except Exception as e:  # the client's own decoding of what came back
            raise RequestFailed(0, f"{type(e).__name__}: {_reason(e)}") from None
        return r

    def _request1(self, method, path, body=None):
        from opensearchpy.exceptions import ConnectionError as OsConnectionError, SerializationError, TransportError

        try:
            return self.client.transport.perform_request(method, path, body=body)
        except OsConnectionError as e:
            raise Unreachable(_reason(e)) from None
        except TransportError as e:
            raise ClusterError(e.status_code, _error_reason(e.info)) from None
        except SerializationError as e:  # a 200 that is not JSON (a proxy's page): not a TransportError here
            raise ClusterError(BAD_ANSWER, f"{method} {path} answered something that is not JSON: "
                                           f"{describe(e.args[0] if e.args else '')}") from None
        except RecursionError:
            raise ClusterError(BAD_ANSWER, f"{method} {path} answered JSON nested too deep to read") from None


def _reason(e: Exception) -> str:
    msg = str(getattr(e, "message", "") or e)[:4096]
    return msg.split("\n")[0][:300] or type(e).__name__


def _error_reason(body) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            text = f"{cut(err.get('type', '?'), 100)}: {cut(err.get('reason', ''))}"
            cause = err.get("caused_by")
            if isinstance(cause, dict) and cause.get("reason"):
                text += f" ({cut(cause['reason'])})"
            return text[:500]
        return cut(err)
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body[:4096]).decode("utf-8", "replace")
    text = " ".join(re.sub(r"<[^>]+>", " ", body[:4096] if isinstance(body, str) else cut(body)).split())  # a proxy's HTML error page, in one line
    return text[:300]


#: Majors otids supports (docs/ELASTICSEARCH.md): Elasticsearch 8 and 9, OpenSearch 2 and 3.
ES_MAJORS = (8, 9)
OS_MAJORS = (2, 3)


def cluster_major(info: dict) -> int | None:
    try:
        return int(str(_version(info).get("number", "")).split(".")[0])
    except ValueError:
        return None


def _version(info) -> dict:
    """The `version` object of a GET / answer, or ClusterError: anything else is not Elasticsearch or
    OpenSearch (a proxy, another service on the port)."""
    v = info.get("version") if isinstance(info, dict) else None
    if not isinstance(v, dict):
        raise ClusterError(BAD_ANSWER, "GET / has no version object (not Elasticsearch or OpenSearch?): "
                                       + (f"version is {_what(v)}" if isinstance(info, dict) and "version" in info
                                          else describe(info)))
    return v


def connect(url: str, cfg, creds: dict, node_class=None) -> tuple[Backend, dict]:
    """Open the right client for the cluster at `url`, chosen from its own GET / answer: OpenSearch through
    opensearch-py, Elasticsearch through the official client speaking the cluster's major (compatible-with
    headers). Returns the backend and the GET / answer. Raises Unreachable, or ClusterError (status
    'unsupported' for a version otids does not support)."""
    if cfg.flavor == "opensearch":
        b: Backend = OsBackend(url, cfg, creds)
        info = b.probe()
    else:
        probe = EsBackend(url, cfg, creds, node_class)
        info = probe.probe()
        number = cut(_version(info).get("number", "?"), 40)
        major = cluster_major(info)
        if _version(info).get("distribution") == "opensearch":
            # flavor elasticsearch forced on an OpenSearch cluster: the caller's node class decides the headers
            b = OsBackend(url, cfg, creds) if cfg.flavor == "auto" else probe
        elif major is None or major < ES_MAJORS[0]:
            raise ClusterError("unsupported", f"Elasticsearch {number} is not supported: otids needs "
                                              f"{' or '.join(f'{m}.x' for m in ES_MAJORS)}")
        else:
            # A newer major accepts the previous one's compatible-with; 9 is the newest the client knows.
            b = EsBackend(url, cfg, creds, node_class, major=min(major, ES_MAJORS[-1]))
    b.version = cut(_version(info).get("number", "?"), 40)
    return b, info


def layout_for(cfg, flavor: str) -> Layout:
    mode = cfg.mode if cfg.mode != "auto" else ("data_stream" if flavor == "elasticsearch" else "index")
    return Layout(flavor=flavor, mode=mode, alert_retention_days=cfg.alert_retention_days,
                  event_retention_days=cfg.event_retention_days, ignore_malformed=cfg.ignore_malformed)


def installed_version(backend: Backend, obj) -> tuple[bool, int | None, dict]:
    """(present, otids version or None, raw GET answer) of `obj` on the cluster."""
    try:
        cur = backend.request("GET", obj.path)
    except ClusterError as e:
        if e.status == 404:
            return False, None, {}
        raise
    try:
        present, v = _installed(obj, cur)
    except _Shape as e:
        raise ClusterError(BAD_ANSWER, f"GET {obj.path}: {e}, not the {obj.kind} API's answer") from None
    return present, v if type(v) is int else None, cur


class _Shape(Exception):
    """A GET answer of another shape than its API documents."""


def _obj(v, what: str) -> dict:
    if not isinstance(v, dict):
        raise _Shape(f"{what} is {_what(v)}")
    return v


def _what(v) -> str:
    return "missing (or null)" if v is None else what(v)  # a key .get() did not find is None too


def _installed(obj, cur) -> tuple[bool, object]:
    """(present, version as found) of `obj` in the GET answer `cur`, read in each API's documented shape."""
    cur = _obj(cur, "the answer")
    if obj.kind in ("index_template", "component_template"):
        key = obj.kind + "s"
        entries = cur.get(key, [])
        if not isinstance(entries, list):
            raise _Shape(f"{key} is {_what(entries)}")
        items = [_obj(_obj(t, f"an entry of {key}").get(obj.kind), f"{obj.kind} of an entry")
                 for t in entries if _obj(t, f"an entry of {key}").get("name") == obj.name]
        return bool(items), items[0].get("version") if items else None
    if obj.kind == "pipeline":
        return obj.name in cur, _obj(cur.get(obj.name, {}), obj.name).get("version")
    if obj.kind == "ilm":
        policy = _obj(_obj(cur.get(obj.name, {}), obj.name).get("policy", {}), f"{obj.name}.policy")
        return obj.name in cur, _obj(policy.get("_meta", {}), f"{obj.name}.policy._meta").get("otids_version")
    # ism: the version is the description's " vN" suffix; overwriting needs the sequence number and term
    if "policy" not in cur:
        return False, None
    desc = _obj(cur["policy"], "policy").get("description", "")
    for k in ("_seq_no", "_primary_term"):
        if type(cur.get(k)) is not int:
            raise _Shape(f"{k} is {_what(cur.get(k))}")
    m = re.search(r" v(\d{1,9})$", desc) if isinstance(desc, str) else None
    return True, int(m.group(1)) if m else None


def install(backend: Backend, layout: Layout, fs=None, force: bool = False) -> list[str]:
    """Install lifecycle policies, the ingest pipeline and templates; returns one line per object. An object
    is written when the cluster lacks it or holds an older otids version (esgen.TEMPLATE_VERSION); one of the
    same or a newer version (an administrator's edit keeps its version) is kept unless `force`. A missing
    ISM plugin on OpenSearch is reported, not fatal (indices then simply are not managed)."""
    from ..esgen import TEMPLATE_VERSION
    from ..fields import load_fields

    fs = fs or load_fields()
    done = []
    no_pipeline = False
    for obj in cluster_objects(fs, layout):
        path = obj.path
        if no_pipeline and obj.kind == "component_template" and "settings" in obj.body["template"]:
            settings = {k: v for k, v in obj.body["template"]["settings"].items() if k != "index.final_pipeline"}
            obj = replace(obj, body={**obj.body, "template": {**obj.body["template"], "settings": settings}})
        try:
            present, version, cur = installed_version(backend, obj)
        except ClusterError as e:
            # "no handler found": a server without the ISM plugin or the ingest API (an OpenSearch
            # stand-in). Without the pipeline, event.ingested is not set and no template may name it.
            if obj.kind in ("ism", "pipeline") and e.status == 400:
                what = "ISM" if obj.kind == "ism" else "ingest pipelines (event.ingested not set)"
                done.append(f"skipped {obj.kind} {obj.name}: {what} not available ({e.reason})")
                no_pipeline |= obj.kind == "pipeline"
                continue
            raise
        if present and not force and version is not None and version >= TEMPLATE_VERSION:
            done.append(f"kept {obj.kind} {obj.name} (version {version} on the cluster; --force overwrites)")
            continue
        if obj.kind == "ism" and present:
            # ISM refuses to overwrite a policy unless told which version it replaces.
            path += f"?if_seq_no={cur['_seq_no']}&if_primary_term={cur['_primary_term']}"
        backend.request("PUT", path, obj.body)
        if not present:
            done.append(f"installed {obj.kind} {obj.name}")
        elif force and version is not None and version >= TEMPLATE_VERSION:
            done.append(f"overwrote {obj.kind} {obj.name} (--force; version {version} on the cluster)")
        else:
            done.append(f"upgraded {obj.kind} {obj.name} (version {version if version is not None else 'none'} "
                        f"-> {TEMPLATE_VERSION})")
    return done
