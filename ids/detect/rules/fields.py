"""Which document fields a rule may name, per protocol, and their types: the rule validators reject a field
the protocol's documents never carry (a typo would otherwise be a rule that silently never fires).

Generated, never hand-kept: each protocol's fields.yml (ids/protocols/<name>/fields.yml) and the shared groups
in ids/data/fields/*.yml are the one source; value domains and secret fields come from each protocol's rule
keyword table (rules.py). Types are Elasticsearch types; `flattened`/`object` fields accept any sub-path.
"""
from __future__ import annotations

import functools

import yaml

from ...output.fields import field_files
from ...protocols import REGISTRY


_COMMON = {
    "@timestamp": "date",
    "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword", "event.dataset": "keyword",
    "event.action": "keyword", "event.outcome": "keyword", "event.duration": "long",
    "source.ip": "ip", "source.port": "long", "source.mac": "keyword",
    "destination.ip": "ip", "destination.port": "long", "destination.mac": "keyword",
    "network.transport": "keyword", "network.community_id": "keyword", "network.type": "keyword",
    "network.protocol": "keyword", "network.vlan.id": "keyword", "network.inner.vlan.id": "keyword",
    "related.ip": "ip", "otids.anomalies": "keyword",
}

#: Protocols rules can name (a rule keyword table in their package): their fields are theirs alone.
RULE_PROTOCOLS = tuple(n for n, p in REGISTRY.items() if p.rules is not None)

#: Fields that hold secrets: documents carry them only when built with include_secrets=True.
SECRET_FIELDS = frozenset(f for p in REGISTRY.values() if p.rules is not None for f in p.rules.secret_fields)

#: Value domains for never-matches checks: (min, max) of integer fields.
DOMAINS = {"source.port": (0, 65535), "destination.port": (0, 65535)}
for _p in REGISTRY.values():
    if _p.rules is not None:
        DOMAINS.update(_p.rules.domains)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: same data, 10x faster


@functools.lru_cache(maxsize=None)
def shared_fields() -> dict[str, str]:
    """Fields declared in the field definition files (name -> type)."""
    out: dict[str, str] = {}
    for p in field_files():
        try:
            data = yaml.load(p.read_text(encoding="utf-8"), Loader=_LOADER) or {}
        except (OSError, yaml.YAMLError):
            continue
        for f in data.get("fields") or ():
            if isinstance(f, dict) and isinstance(f.get("name"), str):
                out[f["name"]] = str(f.get("type", "keyword"))
    return out


@functools.lru_cache(maxsize=None)
def catalog(protocol: str) -> dict[str, str]:
    cat = dict(_COMMON)
    prefix = protocol + "."
    shared = shared_fields()
    own = {n: t for n, t in shared.items() if n.startswith(prefix)}
    cat.update(own)  # the protocol's own fields.yml is the only authority
    if own:
        for part in {n.rsplit(".", 1)[0] for n in own}:  # parents of declared fields are objects
            while part.startswith(prefix) and part not in cat:
                cat[part] = "object"
                part = part.rsplit(".", 1)[0]
        cat.setdefault(protocol, "object")
    for name, t in shared.items():
        if not any(name.startswith(p + ".") for p in RULE_PROTOCOLS):
            cat.setdefault(name, t)  # shared non-protocol fields (user.name, ...)
    return cat


def field_type(protocol: str, name: str) -> str | None:
    """The field's type, or None if the protocol's documents never carry it."""
    cat = catalog(protocol)
    t = cat.get(name)
    if t is not None:
        return t
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if cat.get(".".join(parts[:i])) in ("flattened",):
            return "keyword"
    return None
