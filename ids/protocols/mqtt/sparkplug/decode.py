"""Sparkplug B decoding: topic namespace, payload (protobuf, through the Tahu schema compiled into
sparkplug_b_pb2), metric values by datatype, STATE payloads (3.0 JSON, 2.2 text).

Pure functions from bytes to ids.protocols.mqtt.sparkplug.records; aliases and datatypes a DATA message
leaves out are resolved by the caller's Births table (state.py) before values are converted, so a DDATA
that carries only an alias still gets its name and its signed value. Never raises on input.
"""
from __future__ import annotations

import struct

import orjson
from google.protobuf.message import DecodeError

from .records import (DEVICE_TYPES, MESSAGE_TYPES, NODE_TYPES, DataType, SparkplugDataSet, SparkplugMessage,
                      SparkplugMetric, SparkplugTemplate, float32)
from .sparkplug_b_pb2 import Payload

NAMESPACE = "spBv1.0"
_PREFIX = NAMESPACE + "/"
#: Bound on metrics decoded per payload (a birth of a large edge node has thousands; beyond: problem).
MAX_METRICS = 65536
#: Bound on Template nesting (a template's metrics may be templates).
MAX_DEPTH = 8

_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64}
# 3.0.0 section 6.4.17: arrays are little-endian packed into bytes_value.
_ARRAY_FMT = {DataType.Int8Array: "b", DataType.Int16Array: "h", DataType.Int32Array: "i",
              DataType.Int64Array: "q", DataType.UInt8Array: "B", DataType.UInt16Array: "H",
              DataType.UInt32Array: "I", DataType.UInt64Array: "Q", DataType.FloatArray: "f",
              DataType.DoubleArray: "d", DataType.DateTimeArray: "q"}


def is_sparkplug_topic(topic: str) -> bool:
    return topic.startswith(_PREFIX) or topic.startswith("STATE/")


def parse_topic(topic: str) -> SparkplugMessage | None:
    """`spBv1.0/<group>/<type>/<edge node>[/<device>]`, `spBv1.0/STATE/<host>` (3.0) or `STATE/<host>`
    (2.2), as a SparkplugMessage without payload fields; None for any other topic."""
    parts = topic.split("/")
    if parts[0] == "STATE":
        if len(parts) == 2 and parts[1]:
            return SparkplugMessage("STATE", host_id=parts[1], version="2.2")
        return None
    if parts[0] != NAMESPACE:
        return None
    n = len(parts)
    if n == 3 and parts[1] == "STATE":
        return SparkplugMessage("STATE", host_id=parts[2])
    if n not in (4, 5) or not all(parts[1:]):
        return SparkplugMessage("unknown", problems=("malformed_topic",))
    group, mtype, edge = parts[1], parts[2], parts[3]
    device = parts[4] if n == 5 else None
    if mtype not in MESSAGE_TYPES or mtype == "STATE":
        return SparkplugMessage(f"unknown-{mtype}", group, edge, device, problems=("unknown_message_type",))
    if (mtype in DEVICE_TYPES) != (device is not None):
        return SparkplugMessage(mtype, group, edge, device, problems=("malformed_topic",))
    return SparkplugMessage(mtype, group, edge, device)


def decode_state(head: SparkplugMessage, payload: bytes) -> SparkplugMessage:
    """3.0: `{"online": bool, "timestamp": ms}`; 2.2: `ONLINE` / `OFFLINE` text."""
    n = len(payload)
    if head.version == "2.2":
        text = payload.strip()
        online = {b"ONLINE": True, b"OFFLINE": False}.get(text)
        probs = () if online is not None else ("bad_state_payload",)
        return head._replace(online=online, payload_length=n, problems=probs)
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or type(obj.get("online")) is not bool:
        return head._replace(payload_length=n, problems=("bad_state_payload",))
    ts = obj.get("timestamp")
    ts = ts if type(ts) is int and ts >= 0 else None
    return head._replace(online=obj["online"], timestamp=ts, payload_length=n,
                         problems=() if ts is not None else ("bad_state_payload",))


def decode_payload(head: SparkplugMessage, payload: bytes, births=None) -> SparkplugMessage:
    """The protobuf payload of a non-STATE message. `births` (state.Births or None) resolves aliases and
    datatypes, and learns them from NBIRTH/DBIRTH."""
    n = len(payload)
    if head.message_type == "STATE":
        return decode_state(head, payload)
    pb = Payload()
    try:
        pb.ParseFromString(payload)
    except (DecodeError, RuntimeError, ValueError):
        return head._replace(payload_length=n, problems=head.problems + ("malformed_payload",))
    problems = list(head.problems)
    mtype = head.message_type
    table = births.table(head, birth=mtype in ("NBIRTH", "DBIRTH")) if births is not None else None
    metrics = []
    bdseq = None
    for i, m in enumerate(pb.metrics):
        if i >= MAX_METRICS:
            problems.append("too_many_metrics")
            break
        met = _metric(m, table, problems, 0)
        if table is not None and mtype in ("NBIRTH", "DBIRTH"):
            births.learn(table, met)
        if met.name == "bdSeq" and mtype in ("NBIRTH", "NDEATH") and type(met.value) is int:
            bdseq = met.value
        metrics.append(met)
    return head._replace(
        timestamp=pb.timestamp if pb.HasField("timestamp") else None,
        seq=pb.seq if pb.HasField("seq") else None,
        uuid=pb.uuid if pb.HasField("uuid") else None,
        body_length=len(pb.body) if pb.HasField("body") else None,
        metrics=tuple(metrics), bdseq=bdseq, payload_length=n, problems=tuple(dict.fromkeys(problems)))


def _metric(m, table, problems: list, depth: int) -> SparkplugMetric:
    name = m.name if m.HasField("name") else None
    alias = m.alias if m.HasField("alias") else None
    dtype = m.datatype if m.HasField("datatype") else None
    from_alias = from_birth = False
    if table is not None and (name is None or dtype is None):
        known = table.lookup(name, alias)
        if known is not None:
            if name is None:
                name, from_alias = known[0], True
            if dtype is None:
                dtype, from_birth = known[1], True
        elif name is None and alias is not None and not table.incomplete:  # (not all its birth was kept)
            problems.append("unknown_alias")
    is_null = m.is_null if m.HasField("is_null") else False
    kind = m.WhichOneof("value")
    value = err = None
    if kind is not None and not is_null:
        raw = getattr(m, kind)
        if kind == "dataset_value":
            value = _dataset(raw, problems)
        elif kind == "template_value":
            value = _template(raw, table, problems, depth + 1)
        elif kind == "extension_value":
            value = None
        else:
            if dtype is None:
                problems.append("undefined_datatype")
            value, err = convert(dtype, kind, raw)
            if err:
                problems.append(err)
    props = _propertyset(m.properties, 0) if m.HasField("properties") else None
    return SparkplugMetric(name, alias, dtype, value, m.timestamp if m.HasField("timestamp") else None,
                           m.is_historical, m.is_transient, is_null, props, from_alias, from_birth, err)


def convert(dtype: int | None, kind: str, raw):
    """A protobuf oneof value as the Python value of `dtype` -> (value, problem or None). Signed integers are
    sign-extended from the datatype's width, so both encodings seen in the field (the 32/64-bit two's
    complement of Tahu's Java, and the N-bit one of pysparkplug) decode alike."""
    if dtype in _SIGNED_BITS and kind in ("int_value", "long_value"):
        bits = _SIGNED_BITS[dtype]
        v = raw & ((1 << bits) - 1)
        return (v - (1 << bits) if v >> (bits - 1) else v), None
    if dtype in _UNSIGNED_BITS and kind in ("int_value", "long_value"):
        return raw & ((1 << _UNSIGNED_BITS[dtype]) - 1), None
    if kind == "float_value":
        return float32(raw), None
    if kind == "bytes_value" and dtype is not None and dtype >= DataType.Int8Array:
        v, err = _array(dtype, raw)
        if dtype == DataType.FloatArray and v:
            v = tuple(float32(x) for x in v)
        return v, err
    if kind == "bytes_value":
        return bytes(raw), None
    return raw, None


def _array(dtype: int, raw: bytes):
    if dtype == DataType.BooleanArray:  # 4-byte LE count, then bits packed most significant first
        if len(raw) < 4:
            return None, "bad_array"
        count = int.from_bytes(raw[:4], "little")
        bits = [bool(b & (0x80 >> i)) for b in raw[4:] for i in range(8)]
        if count > len(bits):
            return tuple(bits), "bad_array"
        return tuple(bits[:count]), None
    if dtype == DataType.StringArray:  # NUL-terminated UTF-8 strings
        if not raw:
            return (), None
        parts = raw.split(b"\0")
        err = None if parts[-1] == b"" else "bad_array"
        if parts[-1] == b"":
            parts.pop()
        return tuple(p.decode("utf-8", "backslashreplace") for p in parts), err
    fmt = _ARRAY_FMT.get(dtype)
    if fmt is None:
        return bytes(raw), None
    size = struct.calcsize(fmt)
    count, rest = divmod(len(raw), size)
    return struct.unpack(f"<{count}{fmt}", raw[:count * size]), ("bad_array" if rest else None)


def _value_of(holder, dtype):
    kind = holder.WhichOneof("value")
    if kind is None or kind == "extension_value":
        return None
    v, _ = convert(dtype, kind, getattr(holder, kind))
    return v


def _dataset(ds, problems: list) -> SparkplugDataSet:
    types = tuple(ds.types)
    rows = []
    for r in ds.rows:
        rows.append(tuple(_value_of(e, types[i] if i < len(types) else None) for i, e in enumerate(r.elements)))
    if len(ds.columns) != len(types) or (ds.HasField("num_of_columns") and ds.num_of_columns != len(types)):
        problems.append("bad_dataset")
    return SparkplugDataSet(tuple(ds.columns), types, tuple(rows))


def _template(t, table, problems: list, depth: int) -> SparkplugTemplate | None:
    if depth > MAX_DEPTH:
        problems.append("template_too_deep")
        return None
    # Metrics inside a template are named relative to it: no alias table applies.
    mets = tuple(_metric(m, None, problems, depth) for m in t.metrics)
    params = tuple((p.name, p.type if p.HasField("type") else None, _value_of(p, p.type if p.HasField("type") else None))
                   for p in t.parameters)
    return SparkplugTemplate(t.version if t.HasField("version") else None,
                             t.template_ref if t.HasField("template_ref") else None,
                             t.is_definition, mets, params)


def _propertyset(ps, depth: int) -> dict:
    out: dict = {}
    for k, pv in zip(ps.keys, ps.values):
        if depth >= MAX_DEPTH:
            break
        kind = pv.WhichOneof("value")
        if pv.is_null or kind is None or kind == "extension_value":
            v = None
        elif kind == "propertyset_value":
            v = _propertyset(pv.propertyset_value, depth + 1)
        elif kind == "propertysets_value":
            v = [_propertyset(p, depth + 1) for p in pv.propertysets_value.propertyset]
        else:
            v, _ = convert(pv.type if pv.HasField("type") else None, kind, getattr(pv, kind))
        out[k] = v
    return out
