"""OPC UA asset facts: application descriptions (CreateSession, GetEndpoints, FindServers) and the
certificates of client and server. Read by ids.assets and the baseline."""
from __future__ import annotations

from ...x509 import cert_summary
from .messages import OpcuaEvent


def norm_service(s) -> str:
    s = str(s or "").replace("_", "").replace(" ", "").lower()
    for suffix in ("request", "response"):
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[: -len(suffix)]
    return s


#: OPC UA ApplicationDescription fields kept as identity facts (asset fact `opcua_<field>`)
OPCUA_APP_FIELDS = ("application_uri", "product_uri", "application_name")


def _app_facts(side: str, desc, out: list) -> None:
    if isinstance(desc, dict):
        for f in OPCUA_APP_FIELDS:
            v = desc.get(f)
            if isinstance(v, str) and v:
                out.append((side, f"opcua_{f}", v))


def _url_host(url) -> str | None:
    if not isinstance(url, str) or "://" not in url:
        return None
    host = url.split("://", 1)[1].split("/", 1)[0]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def opcua_identity(ev: OpcuaEvent) -> list[tuple[str, str, object]]:
    """(side, fact, value) from an OPC UA exchange: the client's ApplicationDescription in CreateSession,
    the server's in the CreateSession response endpoints and GetEndpoints (a server describing itself),
    FindServers entries only where a discovery URL names the server's own address (a discovery server lists
    others too), and the client and server certificates."""
    out: list[tuple[str, str, object]] = []
    svc = ev.service
    req, resp = ev.request, ev.response
    if svc == "CreateSession":
        if req:
            _app_facts("client", req.get("client"), out)
        if resp:
            for e in resp.get("server_endpoints") or ():
                _app_facts("server", e.get("server"), out)
    elif svc == "GetEndpoints" and resp:
        for e in resp.get("endpoints") or ():
            _app_facts("server", e.get("server"), out)
    elif svc == "FindServers" and resp:
        for d in resp.get("servers") or ():
            if any(_url_host(u) == ev.flow.server_ip for u in d.get("discovery_urls") or ()):
                _app_facts("server", d, out)
    if ev.certificates:
        for role in ("client", "server"):
            c = ev.certificates.get(role)
            if isinstance(c, dict) and c.get("hash"):
                x = c.get("x509") or {}
                out.append((role, "certificate", cert_summary((x.get("subject") or {}),
                                                              (x.get("issuer") or {}), x.get("not_after"),
                                                              c["hash"].get("sha256"), x.get("serial_number"))))
    return out
