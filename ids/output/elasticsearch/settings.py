"""Settings of the Elasticsearch output that are not cluster traffic: URL checks, credentials (environment,
files, config) and the authorization header built from them. The config file's own checks of the
`elasticsearch` section live in ids/config.py (config never imports output code)."""
from __future__ import annotations

import base64
import logging
import os
import urllib.parse

from ...config import url_problem  # noqa: F401  (re-exported)
from ...errors import UserError

log = logging.getLogger("otids.es")


def config_problem(cfg) -> tuple[str, str] | None:
    """(key, message) for the first invalid key of an ElasticsearchConfig, or None."""
    return cfg.problem()


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

