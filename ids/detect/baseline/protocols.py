"""The per-protocol parts of the baseline, by protocol name (the `protocol` of the events they read), from the
protocol registry: each protocol that has one names its module as `spec.extra["baseline"]`
(ids/protocols/<name>/baseline.py), imported here so that the protocol packages never import the baseline.

Each module offers: SECTION (section.SectionSpec: section name, identity fields, field order), ROLES (client
role, server role), DATASETS (event datasets it reads), EVENT_FIELDS (the event fields it relies on, for
models/README.md), `Learner(cfg)` with `learn(ev, epoch)` and `entries(epochs) -> list[dict]`, and
`Enforcer(baseline, cfg, usable_status)` with `check(ev, detector)` and `sweep(now, detector)`.
"""
from __future__ import annotations

import importlib

from ...protocols import REGISTRY

PROTOCOL_MODULES = {n: importlib.import_module(p.extra["baseline"]) for n, p in REGISTRY.items()
                    if p.extra.get("baseline")}
