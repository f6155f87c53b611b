"""Typed fast paths: document fields read straight from event records, so the common rule fields
(function code, unit, addresses, exception) cost no ECS document. Each protocol declares its readers in its
rule keyword table (ids/protocols/<name>/rules.py, `RuleTable.readers`); a test checks that they agree with
the documents on every event of the Modbus captures.
"""
from __future__ import annotations

from ...protocols import REGISTRY

#: record type -> {field: reader}
FAST = {t: p.rules.readers for p in REGISTRY.values() if p.rules is not None and p.rules.readers for t in p.records}
MODBUS = REGISTRY["modbus"].rules.readers  # the old name (tests compare it with the documents)
