"""The feature view: what the ML detector needs from one protocol exchange, the same for every protocol.

Each event type gets one small adapter, `adapter(event) -> FeatureView | None`, registered with
`@adapter_for(EventType)`. The windowing code (features.py) reads nothing but FeatureViews, so a new
protocol (OPC UA, MQTT) plugs in with one adapter and no other change; docs/ML.md "Adapters" says what each
field must hold; each protocol's ml.py has its view (adapters.py registers them). Adapters run on the hot path: plain attribute reads, no allocation beyond the view.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple


class FeatureView(NamedTuple):
    """One exchange as the feature extractor sees it. Times are int nanoseconds since the epoch."""

    ts: int  # request time (response time for an unsolicited response)
    protocol: str  # "modbus", "opcua", "mqtt": part of the (client, server, protocol) key
    client: str  # IP of the side that asks (Modbus master, OPC UA client, MQTT client)
    server: str  # IP of the side that answers (Modbus slave, OPC UA server, MQTT broker)
    operation: str  # function / service / packet type name, e.g. "read_holding_registers"
    is_write: bool  # the exchange changes state in the server (write, call, publish)
    is_error: bool  # exception response, bad status code, refused connection or subscription
    keys: tuple[str, ...]  # what was addressed: register ranges, node ids, topics ("" parts allowed)
    writes: tuple[tuple[str, float], ...]  # numeric values written, each with the key it was written to
    answered: bool | None  # True answered, False unanswered, None no answer expected; see `request`
    request: bool  # False for what the server sent on its own: a response nobody asked for (unsolicited, with
    #               answered=True) or a message the server pushes (MQTT delivery, OPC UA ERR; answered=None)
    latency_ns: int | None  # response time - request time, when both were seen
    nbytes: int  # application bytes of the exchange, both directions (estimated where the event lacks sizes)
    anomalous: bool  # the parser put protocol anomalies on the event
    flow: Any  # ids.events.FlowContext of the connection, for the alert's network fields


#: event type -> adapter. Looked up by exact type on every event (one dict access).
ADAPTERS: dict[type, Callable[[Any], FeatureView | None]] = {}


def adapter_for(event_type: type):
    """Register the decorated function as the adapter for `event_type` (one adapter per type)."""
    def register(fn):
        if event_type in ADAPTERS and ADAPTERS[event_type] is not fn:
            raise ValueError(f"an ML adapter for {event_type.__name__} is already registered")
        ADAPTERS[event_type] = fn
        return fn
    return register


def view_of(event) -> FeatureView | None:
    """The feature view of any event, or None for events the ML detector does not use."""
    fn = ADAPTERS.get(type(event))
    return fn(event) if fn is not None else None


# ---------------------------------------------------------------------------------------------- numbers (for adapters)

NUMERIC_MAX = 1024  # longest payload read for numbers (longer ones are blobs, not readings)
JSON_FIELDS = 16  # numeric fields taken from one JSON object payload


def number(v) -> float | None:
    """A finite float from a bool, int or float; None for anything else (strings, arrays, NaN, infinities):
    one NaN would turn every written-value statistic of its window into NaN."""
    t = type(v)
    if t is bool:
        return 1.0 if v else 0.0
    if t is int or t is float:
        f = float(v) if t is float or -(1 << 53) <= v <= 1 << 53 else None
        return f if f is not None and math.isfinite(f) else None
    return None
