"""Which client talks to the cluster, and how: Elasticsearch (official client) or OpenSearch
(opensearch-py), chosen from the cluster's own answer to GET /; setup requests (lifecycle policies,
templates) go through the same backend. The shipper (shipper.py) sees only bulk() and request()."""
from __future__ import annotations

import logging

from ...errors import UserError
from ..esgen import Layout, cluster_objects
from .settings import auth_header

log = logging.getLogger("otids.es")


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
    from ..fields import load_fields

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

