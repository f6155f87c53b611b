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


def _module_paths():
    """Each spec's "baseline": one module path, or several when one protocol's events feed several
    sections (MQTT: mqtt, then sparkplug, pubsub and namespace)."""
    for p in REGISTRY.values():
        b = p.extra.get("baseline")
        if b:
            yield from ((b,) if isinstance(b, str) else b)
    yield "ids.detect.baseline.network"  # every connection on the wire, whatever its protocol (ConnRecord)


# By section name, in registry order, then the network section (the order of the baseline file's sections).
PROTOCOL_MODULES = {m.SECTION.name: m for m in map(importlib.import_module, _module_paths())}
BY_PROTOCOL: dict[str, list[str]] = {}  # event protocol -> the sections reading it
for _m in PROTOCOL_MODULES.values():
    BY_PROTOCOL.setdefault(_m.SECTION.protocol, []).append(_m.SECTION.name)
