"""OPC UA rule keywords: rules are indexed by service name. Pure functions; ids/detect/rules asks them
through the registry.
"""
from __future__ import annotations

from ..spec import RuleTable


def index_keys(f: str, op: str, arg, values, nocase: bool):
    if f == "opcua.service" and op in ("equals", "in") and not nocase:
        if values is not None and all(isinstance(v, str) for v in values):
            return set(values)
    return None


RULES = RuleTable(index_field="opcua.service", index_keys=index_keys)
