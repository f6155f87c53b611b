"""Sparkplug B records: one SparkplugMessage per PUBLISH on the `spBv1.0/` namespace (or a 2.2 `STATE/<host>`),
carried on ids.protocols.mqtt.messages.MqttPublish.sparkplug, and on MqttConnect.sparkplug for an NDEATH will.

Values are Python values in the metric's datatype (signed integers already sign-extended, arrays as tuples,
DateTime as milliseconds since the epoch, Bytes/File as bytes, DataSet and Template as SparkplugDataSet /
SparkplugTemplate). Rendering to the `mqtt.publish.sparkplug` document object is in ecs.py.
"""
from __future__ import annotations

from typing import Any, NamedTuple


from .datatypes import (DEVICE_TYPES, MESSAGE_TYPES, NODE_TYPES, DataType, SparkplugDataSet,  # noqa: F401
                        SparkplugTemplate, datatype_name, float32)


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
