"""Sparkplug B datatypes (Sparkplug 3.0.0, 6.4.16) and the two composite values, DataSet and Template: what
both the records (records.py) and their rendering (ecs.py) need, so neither imports the other at load."""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

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
