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

from .backend import Backend, ClusterError, EsBackend, OsBackend, Unreachable, connect, install, layout_for
from .settings import auth_header, config_problem, credentials, display_url, url_problem
from .shipper import Shipper
from .sinks import AlertSink, EventSink

__all__ = ["AlertSink", "Backend", "ClusterError", "EsBackend", "EventSink", "OsBackend", "Shipper", "Unreachable",
           "auth_header", "config_problem", "connect", "credentials", "display_url", "install", "layout_for",
           "url_problem"]
