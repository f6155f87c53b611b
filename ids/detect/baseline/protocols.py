"""The per-protocol parts of the baseline, by protocol name (the `protocol` of the events they read).

Each module offers: SECTION (model.SectionSpec: section name, identity fields, field order), ROLES (client
role, server role), DATASETS (event datasets it reads), EVENT_FIELDS (the event fields it relies on, for
models/README.md), `Learner(cfg)` with `learn(ev, epoch)` and `entries(epochs) -> list[dict]`, and
`Enforcer(baseline, cfg, usable_status)` with `check(ev, detector)` and `sweep(now, detector)`. Adding a
protocol to the baseline is one module and one line here.
"""
from __future__ import annotations

from . import modbus, mqtt, opcua
from ...protocols.mqtt.pubsub import baseline as pubsub  # #14
from ...protocols.mqtt.sparkplug import baseline as sparkplug, namespace  # #14

# By section name; several sections may read one protocol's events (#14: sparkplug, pubsub, namespace read MQTT).
PROTOCOL_MODULES = {m.SECTION.name: m for m in (modbus, opcua, mqtt, sparkplug, pubsub, namespace)}
BY_PROTOCOL: dict = {}  # #14: event protocol -> the sections reading it
for _m in PROTOCOL_MODULES.values():
    BY_PROTOCOL.setdefault(_m.SECTION.protocol, []).append(_m.SECTION.name)
