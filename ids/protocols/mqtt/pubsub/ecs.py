"""The `mqtt.publish.pubsub` document object (fields in ids/data/fields/sparkplug.yml, group sparkplug)."""
from __future__ import annotations

import math


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items() if x is not None}
    return v


def dataset_doc(d) -> dict:
    out: dict = {}
    for k in ("writer_id", "writer_name", "sequence_number", "message_type", "status", "timestamp"):
        v = getattr(d, k)
        if v is not None:
            out[k] = v
    if d.encrypted:
        out["encrypted"] = True
    if d.named:
        out["fields_named_from_metadata"] = True
    if d.fields:
        out["fields"] = {name: _plain(v) for name, v, _ in d.fields if v is not None}
        types = {name: t for name, _, t in d.fields if t}
        if types:
            out["field_types"] = types
    return out


def pubsub_doc(p) -> dict:
    d: dict = {"encoding": p.encoding}
    for k in ("message_type", "publisher_id", "writer_group_id", "writer_group_name", "group_version",
              "network_message_number", "sequence_number", "security_mode", "security_token_id",
              "dataset_class_id", "metadata_name"):
        v = getattr(p, k)
        if v is not None:
            d[k] = v
    if p.datasets:
        d["dataset_messages"] = [dataset_doc(x) for x in p.datasets]
    if p.metadata_fields:
        d["metadata_fields"] = [{"name": n, "type": t} if t else {"name": n} for n, t in p.metadata_fields]
    if p.problems:
        d["problems"] = list(p.problems)
    return d
