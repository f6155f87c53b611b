"""OPC UA rule keywords: rules are indexed by service name. Pure functions; ids/detect/rules asks them
through the registry.
"""
from __future__ import annotations

from ..spec import FLOW_READERS, MISSING, RuleTable


def index_keys(f: str, op: str, arg, values, nocase: bool):
    if f == "opcua.service" and op in ("equals", "in") and not nocase:
        if values is not None and all(isinstance(v, str) for v in values):
            return set(values)
    return None



def _opt(v):
    return MISSING if v is None else v


def _policy_name(e):
    u = e.security_policy_uri
    if u is None:
        return MISSING
    return u.rsplit("#", 1)[-1] if "#" in u else u


READERS = {
    **FLOW_READERS,
    "opcua.service": lambda e: e.service,
    "opcua.message_type": lambda e: e.message_type,
    "opcua.status_code": lambda e: _opt(e.status_code),
    "opcua.status": lambda e: _opt(e.status),
    "opcua.user_token_type": lambda e: _opt(e.user_token_type),
    "opcua.security_mode": lambda e: _opt(e.security_mode),
    "opcua.security_policy.uri": lambda e: _opt(e.security_policy_uri),
    "opcua.security_policy.name": _policy_name,
    "opcua.nodes": lambda e: list(e.nodes) if e.nodes else MISSING,
}


RULES = RuleTable(index_field="opcua.service", index_keys=index_keys, readers=READERS,
                  single_valued=frozenset(("opcua.service",)))
