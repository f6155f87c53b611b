"""The `mqtt.publish.sparkplug` (and `mqtt.connect.will.sparkplug`) document object; fields declared in
ids/data/fields/sparkplug.yml.

A metric's value is written twice: `value`, always text (one field to search every metric by, whatever its
type: integers in decimal, floats as Python's shortest repr, booleans true/false, DateTime in RFC 3339,
Bytes in hex, arrays as lists), and the typed field of its family (`long`, `unsigned` for UInt64, `double`,
`boolean`), so ranges and aggregations work. DataSet and Template are objects of their own.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

from .datatypes import DataType, SparkplugDataSet, SparkplugTemplate, datatype_name

_LONG_MAX = (1 << 63) - 1


def ms_text(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, OSError, ValueError):
        return str(ms)


def _text(v, dtype) -> str | list:
    if isinstance(v, tuple):
        elem = {DataType.DateTimeArray: DataType.DateTime}.get(dtype)
        return [_text(x, elem) for x in v]
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is bytes:
        return v.hex()
    if dtype == DataType.DateTime and type(v) is int:
        return ms_text(v)
    return str(v) if not isinstance(v, str) else v


def _typed(d: dict, v) -> None:
    items = v if isinstance(v, tuple) else (v,)
    if not items:
        return
    x = items[0]
    if type(x) is bool:
        d["boolean"] = list(items) if isinstance(v, tuple) else v
    elif type(x) is int:
        key = "long" if all(-_LONG_MAX - 1 <= i <= _LONG_MAX for i in items) else "unsigned"
        if key == "unsigned" and any(i < 0 for i in items):
            return
        d[key] = list(items) if isinstance(v, tuple) else v
    elif type(x) is float:
        fin = [i for i in items if math.isfinite(i)]
        if fin:
            d["double"] = fin if isinstance(v, tuple) else fin[0]


def _plain(v):
    """A value for a flattened object (DataSet rows, template parameters, properties)."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if type(v) is bytes:
        return v.hex()
    if type(v) is float and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def metric_doc(m) -> dict:
    d: dict = {}
    if m.name is not None:
        d["name"] = m.name
    if m.alias is not None:
        d["alias"] = m.alias
    if m.name_from_alias:
        d["name_from_alias"] = True
    if m.datatype is not None:
        d["datatype"] = datatype_name(m.datatype)
        if m.datatype_from_birth:
            d["datatype_from_birth"] = True
    if m.timestamp is not None:
        d["timestamp"] = ms_text(m.timestamp)
    for flag in ("is_historical", "is_transient", "is_null"):
        if getattr(m, flag):
            d[flag] = True
    v = m.value
    if isinstance(v, SparkplugDataSet):
        d["dataset"] = {"columns": list(v.columns), "types": [datatype_name(t) for t in v.types],
                        "rows": [_plain(r) for r in v.rows]}
    elif isinstance(v, SparkplugTemplate):
        d["template"] = template_doc(v)
    elif v is not None:
        d["value"] = _text(v, m.datatype)
        _typed(d, v)
    if m.properties:
        d["properties"] = _plain(m.properties)
    if m.error:
        d["error"] = m.error
    return d


def template_doc(t: SparkplugTemplate) -> dict:
    d: dict = {"is_definition": t.is_definition}
    if t.version is not None:
        d["version"] = t.version
    if t.template_ref is not None:
        d["template_ref"] = t.template_ref
    if t.parameters:
        d["parameters"] = [{"name": n, "type": datatype_name(ty), "value": _plain(v)} for n, ty, v in t.parameters]
    if t.metrics:
        d["metrics"] = [_plain(metric_doc(m)) for m in t.metrics]
    return _plain(d)


def sparkplug_doc(s) -> dict:
    d: dict = {"message_type": s.message_type, "version": s.version}
    for k in ("group_id", "edge_node_id", "device_id", "host_id", "seq", "uuid", "body_length", "bdseq", "online"):
        v = getattr(s, k)
        if v is not None:
            d[k] = v
    if s.timestamp is not None:
        d["timestamp"] = ms_text(s.timestamp)
    if s.metrics:
        d["metrics"] = [metric_doc(m) for m in s.metrics]
        d["metric_count"] = len(s.metrics)
    if s.problems:
        d["problems"] = list(s.problems)
    return _texts(d)


def _texts(v):
    """Text fields the protobuf runtime handed over as bytes: a proto2 `string` that is not UTF-8 comes
    back as bytes (a hostile DataSet column name did, fuzz/crashes/session_mqtt/crash-ddf8...), which no
    JSON writer takes. Written as text with the bad bytes escaped."""
    if type(v) is bytes:
        return v.decode("utf-8", "backslashreplace")
    if isinstance(v, dict):
        return {k.decode("utf-8", "backslashreplace") if type(k) is bytes else k: _texts(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_texts(x) for x in v]
    return v
