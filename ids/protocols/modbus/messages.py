"""Modbus/TCP typed records: a request and its response become one `ModbusTransaction` (dataset
`otids.modbus`). The session builds them; detectors read their fields; `to_doc()` hands the ECS rendering to
ecs.py. Field names in the documents are a published contract (fields.yml beside this file).
"""
from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

from ...events import FlowContext
from . import ecs as _ecs

class ModbusRequest(NamedTuple):
    """What the master asked for. Fields not meaningful for a function code stay None.

    `values`: written coils (bools) or registers (ints), capped at `modbus.max_values` (config).
    `details`: function-specific extras (sub-function data, read/write split of FC 23, file records,
    MEI objects), a plain dict with documented keys (docs/EVENTS.md).
    """

    address: int | None = None
    quantity: int | None = None
    values: tuple | None = None
    sub_function: int | None = None
    details: dict | None = None


class ModbusResponse(NamedTuple):
    address: int | None = None
    quantity: int | None = None
    values: tuple | None = None
    sub_function: int | None = None
    details: dict | None = None


#: Anomalies that describe the record, not a fault of the exchange: they do not make it a failure.
INFORMATIONAL_ANOMALIES = frozenset(("values_truncated",))


class ModbusTransaction(NamedTuple):
    """One Modbus/TCP request and its response (dataset `otids.modbus`).

    Emitted when the response arrives, or without one (outcome "unknown", anomaly unanswered_request)
    when the request times out or its flow ends; a response nobody asked for is emitted alone
    (anomaly unsolicited_response).
    """

    ts: int  # request time (response time when unsolicited)
    flow: FlowContext
    transaction_id: int
    unit_id: int
    function_code: int  # without the 0x80 exception bit
    function: str
    request: ModbusRequest | None
    response: ModbusResponse | None
    exception_code: int | None
    exception: str | None
    anomalies: tuple[str, ...]
    response_ts: int | None

    dataset = "otids.modbus"
    protocol = "modbus"
    label = property(itemgetter(5))  # function

    @property
    def outcome(self) -> str:
        if self.response is None and self.exception_code is None:
            return "unknown"
        if self.exception_code is not None:
            return "failure"
        an = self.anomalies
        return "failure" if an and not INFORMATIONAL_ANOMALIES.issuperset(an) else "success"

    def to_doc(self) -> dict:
        return _ecs.transaction_doc(self)
