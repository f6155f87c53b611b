"""The registry and trust store a run checks against, from the command-line options that name them (used at
start by `otids analyze/live/certs` and again on SIGHUP by the detector's reload)."""
from __future__ import annotations

import os
from pathlib import Path

from .certs import TrustStore
from .registry import Registry, load_registry


def load_context(args) -> tuple[Registry | None, TrustStore | None]:
    """Registry and trust store from the command line; a relative trust_store in the registry is read
    relative to the registry file."""
    reg = None
    if getattr(args, "registry", None):
        reg = load_registry(args.registry)
    ts = getattr(args, "trust_store", None)
    if ts is None and reg is not None and reg.trust_store:
        ts = reg.trust_store
        if not os.path.isabs(ts):
            ts = str(Path(args.registry).resolve().parent / ts)
    store = TrustStore.load(ts) if ts else None
    return reg, store
