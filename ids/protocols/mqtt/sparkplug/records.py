"""Sparkplug B records: one SparkplugMessage per PUBLISH on the `spBv1.0/` namespace (or a 2.2 `STATE/<host>`),
carried on ids.events.MqttPublish.sparkplug, and on MqttConnect.sparkplug for an NDEATH will.

Values are Python values in the metric's datatype (signed integers already sign-extended, arrays as tuples,
DateTime as milliseconds since the epoch, Bytes/File as bytes, DataSet and Template as SparkplugDataSet /
SparkplugTemplate). Rendering to the `mqtt.publish.sparkplug` document object is in ecs.py.
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, NamedTuple


class DataType(IntEnum):
    """Sparkplug B 3.0.0 section 6.4.16 (Tahu sparkplug_b.proto enum DataType)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


_F32 = struct.Struct("<f")


def float32(x: float) -> float:
    """A float32 value as the shortest decimal that is the same float32 (1.1f reads 1.1, not
    1.100000023841858): the value its publisher wrote, and the same bits."""
    if x != x or x in (float("inf"), float("-inf")):
        return x
    want = _F32.pack(x)
    for digits in range(6, 10):
        y = float(f"{x:.{digits}g}")
        if _F32.pack(y) == want:
            return y
    return x


def datatype_name(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return DataType(code).name
    except ValueError:
        return f"unknown-{code}"


#: Message types of the topic namespace (3.0.0 section 4.1.2).
MESSAGE_TYPES = frozenset(("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD", "STATE"))
NODE_TYPES = frozenset(("NBIRTH", "NDEATH", "NDATA", "NCMD"))
DEVICE_TYPES = frozenset(("DBIRTH", "DDEATH", "DDATA", "DCMD"))


class SparkplugDataSet(NamedTuple):
    columns: tuple[str, ...]
    types: tuple[int, ...]
    rows: tuple[tuple, ...]  # one tuple of values per row, each in its column's datatype


class SparkplugTemplate(NamedTuple):
    version: str | None
    template_ref: str | None
    is_definition: bool
    metrics: tuple  # SparkplugMetric
    parameters: tuple  # (name, datatype, value)


class SparkplugMetric(NamedTuple):
    name: str | None  # from the payload, or resolved from the birth through the alias
    alias: int | None
    datatype: int | None  # from the payload, or taken from the birth (by alias or name)
    value: Any = None  # None when is_null or no value was sent
    timestamp: int | None = None  # ms since the epoch
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    properties: dict | None = None  # key -> value (nested property sets as dicts, lists of them as lists)
    name_from_alias: bool = False  # the name was not in this payload but resolved from the birth
    datatype_from_birth: bool = False
    error: str | None = None  # the value does not fit its datatype (e.g. a truncated array)


class SparkplugMessage(NamedTuple):
    """One Sparkplug B message. `problems` are what decoding alone can tell (malformed_payload,
    unknown_alias, undefined_datatype, bad_state_payload, malformed_topic); stateful checks (seq, bdSeq,
    births) are the detector's."""

    message_type: str  # NBIRTH ... STATE, or "unknown-<X>" for an unassigned type
    group_id: str | None = None
    edge_node_id: str | None = None
    device_id: str | None = None
    host_id: str | None = None  # STATE only
    version: str = "3.0"  # "2.2" for the STATE/<host> text form
    timestamp: int | None = None  # payload timestamp, ms
    seq: int | None = None
    uuid: str | None = None
    body_length: int | None = None
    metrics: tuple = ()
    bdseq: int | None = None  # the bdSeq metric of an NBIRTH / NDEATH
    online: bool | None = None  # STATE
    payload_length: int = 0
    problems: tuple[str, ...] = ()

    @property
    def is_device(self) -> bool:
        return self.device_id is not None

    @property
    def edge_key(self) -> tuple[str | None, str | None]:
        return (self.group_id, self.edge_node_id)

    doc_key = "sparkplug"  # where ids.events writes it: mqtt.publish.sparkplug, mqtt.connect.will.sparkplug

    def to_doc(self) -> dict:
        from .ecs import sparkplug_doc
        return sparkplug_doc(self)
