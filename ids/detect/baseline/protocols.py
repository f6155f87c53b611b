"""The per-protocol parts of the baseline, by protocol name (the `protocol` of the events they read).

Each module offers: SECTION (model.SectionSpec: section name, identity fields, field order), ROLES (client
role, server role), DATASETS (event datasets it reads), EVENT_FIELDS (the event fields it relies on, for
models/README.md), `Learner(cfg)` with `learn(ev, epoch)` and `entries(epochs) -> list[dict]`, and
`Enforcer(baseline, cfg, usable_status)` with `check(ev, detector)` and `sweep(now, detector)`. Adding a
protocol to the baseline is one module and one line here.
"""
from __future__ import annotations

from . import modbus, mqtt, network, opcua

PROTOCOL_MODULES = {m.SECTION.protocol: m for m in (modbus, opcua, mqtt, network)}
