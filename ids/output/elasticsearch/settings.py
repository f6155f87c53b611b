"""Settings of the Elasticsearch output that are not cluster traffic: URL checks, credentials (environment,
files, config) and the authorization header built from them. The config file's own checks of the
`elasticsearch` section live in ids/config.py (config never imports output code)."""
from __future__ import annotations

import base64
import logging
import os
import re
import socket
import urllib.parse

from ...config import url_problem  # noqa: F401  (re-exported)
from ...errors import UserError

log = logging.getLogger("otids.es")


def config_problem(cfg) -> tuple[str, str] | None:
    """(key, message) for the first invalid key of an ElasticsearchConfig, or None."""
    return cfg.problem()


def split_urls(url: str) -> list[str]:
    """`url` may name several nodes, comma-separated: the client spreads requests and fails over."""
    return [u.strip() for u in url.split(",") if u.strip()]


def display_url(url: str) -> str:
    out = []
    for one in split_urls(url) or [url]:
        u = urllib.parse.urlsplit(one)
        out.append(urllib.parse.urlunsplit((u.scheme, u.netloc.rpartition("@")[2], u.path, "", "")))
    return ",".join(out)


def cloud_urls(cloud_id: str) -> tuple[str, str | None]:
    """(Elasticsearch URL, Kibana URL or None) of an Elastic Cloud id, as the official client decodes it."""
    from elastic_transport.client_utils import parse_cloud_id

    try:
        c = parse_cloud_id(cloud_id)
    except ValueError:
        raise UserError("elasticsearch.cloud_id: not an Elastic Cloud id (name:base64 of host$es$kibana)") from None
    if c.es_address is None:
        raise UserError("elasticsearch.cloud_id names no Elasticsearch cluster")
    es = f"https://{c.es_address[0]}:{c.es_address[1]}"
    kb = f"https://{c.kibana_address[0]}:{c.kibana_address[1]}" if c.kibana_address else None
    return es, kb


def sensor_name(cfg) -> str:
    """elasticsearch.sensor_name, else OTIDS_SENSOR_NAME (a systemd unit sets it per instance), else the
    host name."""
    return cfg.sensor_name or os.environ.get("OTIDS_SENSOR_NAME") or socket.gethostname()


def sensor_paths(cfg):
    """`cfg` with `{sensor}` in spool_dir and dead_letter replaced by the sensor name, so that several
    sensors sharing one configuration (systemd instances, containers) each get their own spool."""
    from dataclasses import replace

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", sensor_name(cfg))
    return replace(cfg, spool_dir=cfg.spool_dir.replace("{sensor}", name),
                   dead_letter=cfg.dead_letter.replace("{sensor}", name))


def tls_options(cfg, flavor: str = "elasticsearch") -> dict:
    """CA bundle, client certificate and CA pinning, as each client library takes them (only for https).

    elastic-transport ignores client_cert/client_key when a fingerprint is pinned or verification is off,
    so with a client certificate it gets an SSLContext of ours holding the certificate (its documented way:
    `ssl_context`, and nothing else but `ssl_assert_fingerprint`). Its fingerprint may be that of any
    certificate of the chain (the CA's, as Elasticsearch prints at first start); opensearch-py (urllib3)
    checks the server's own certificate."""
    if not any(u.startswith("https:") for u in split_urls(cfg.url or "")):
        return {}
    kw: dict = {}
    if cfg.client_cert and flavor == "elasticsearch":
        import ssl

        try:
            ctx = ssl.create_default_context(cafile=cfg.ca_file)
            ctx.load_cert_chain(cfg.client_cert, cfg.client_key)
        except (OSError, ssl.SSLError) as e:
            raise UserError(f"elasticsearch.client_cert {cfg.client_cert}: cannot load it: {e}") from None
        if not cfg.verify_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        kw["ssl_context"] = ctx
    else:
        if cfg.ca_file:
            kw["ca_certs"] = cfg.ca_file
        if cfg.client_cert:
            kw["client_cert"] = cfg.client_cert
        if cfg.client_key:
            kw["client_key"] = cfg.client_key
    if cfg.ca_fingerprint:
        kw["ssl_assert_fingerprint"] = cfg.ca_fingerprint.replace(":", "").lower()
    return kw


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

