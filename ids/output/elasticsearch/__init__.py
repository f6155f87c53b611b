"""Elasticsearch / OpenSearch output: alerts (and, when asked, protocol events) into data streams
`logs-otids.alert-<namespace>` and `logs-otids.<protocol>-<namespace>`, or into plain indices; plus the
`otids es` commands (setup, generate, validate, load). Field mappings come from esgen.py, never from here.

One module per job:
  settings.py  URL checks, credentials and the authorization header;
  backend.py   which client talks to the cluster and with which headers, chosen from its GET / answer;
               setup requests (policies, templates, pipeline) through the same backend;
  shipper.py   queue, sender thread, retries, spool (../spool.py) and dead-letter file;
  sinks.py     the alert and event sinks the pipeline writes to;
and ids/commands/es.py: the `analyze`/`live` options and the `otids es` subcommands.

Nothing is lost on the way: analysis never waits for the cluster (documents go into a bounded queue and,
when it is full or the cluster is down, into the size-capped disk spool); whole-request failures (429,
5xx, connection, and anything else that is not one document's fault) are retried and then spooled; only
documents the cluster rejects one by one go to the dead-letter file; every document carries a
deterministic `_id` sent with op_type `create`, so a replay is never stored twice.
"""
from __future__ import annotations

# The names below load their module at first use (PEP 562): `otids analyze` without a cluster never imports
# the HTTP client, ssl and the sender (about 25 ms of every run's start-up).
_WHERE = {"Backend": "backend", "ClusterError": "backend", "EsBackend": "backend", "OsBackend": "backend",
          "Unreachable": "backend", "connect": "backend", "install": "backend", "layout_for": "backend",
          "auth_header": "settings", "config_problem": "settings", "credentials": "settings",
          "display_url": "settings", "url_problem": "settings", "Shipper": "shipper", "AlertSink": "sinks",
          "EventSink": "sinks"}


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = ["AlertSink", "Backend", "ClusterError", "EsBackend", "EventSink", "OsBackend", "Shipper", "Unreachable",
           "auth_header", "config_problem", "connect", "credentials", "display_url", "install", "layout_for",
           "url_problem"]
