"""ECS documents of Modbus transactions (dataset `otids.modbus`): the field names fields.yml declares.

Rendering only: it reads a `ModbusTransaction` (messages.py) and touches no bytes.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ...units import rfc3339


def transaction_doc(t) -> dict:
    m: dict[str, Any] = {"transaction_id": t.transaction_id, "unit_id": t.unit_id,
                         "function_code": t.function_code, "function": t.function}
    if t.exception_code is not None:
        m["exception_code"] = t.exception_code
        m["exception"] = t.exception
    if t.request is not None:
        m["request"] = r = _part_doc(t.request)
        # The last address touched, so that a range query (or an allow-list rule) can ask whether a
        # request stays inside a block without arithmetic on address + quantity.
        last = last_address(r.get("address"), r.get("quantity"))
        if last is not None:
            r["last_address"] = last
        last = last_address(r.get("read_address"), r.get("read_quantity"))
        if last is not None:
            r["read_last_address"] = last
    if t.response is not None:
        m["response"] = _part_doc(t.response)
    ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                          "dataset": t.dataset, "action": t.function, "outcome": t.outcome}
    if t.response_ts is not None and t.request is not None:
        ev["duration"] = t.response_ts - t.ts
    doc = {"@timestamp": rfc3339(t.ts), "event": ev}
    doc.update(t.flow.network_doc("modbus"))
    doc["modbus"] = m
    doc["otids"] = {"anomalies": list(t.anomalies)}
    return doc


def last_address(address: int | None, quantity: int | None) -> int | None:
    """Last address of a block (a missing or zero quantity counts as one item), capped at 65535."""
    if address is None:
        return None
    return min(0xFFFF, address + (quantity or 1) - 1)


def _part_doc(p: NamedTuple) -> dict:
    d: dict[str, Any] = {}
    for k, v in zip(p._fields, p):
        if v is None:
            continue
        if k == "details":
            d.update(v)
        elif k == "values":
            # Coil states are bools on the typed event but 0/1 in the document: one Elasticsearch field
            # holds either registers or coils, and a `long` field rejects JSON true/false.
            d[k] = [int(x) for x in v]
        else:
            d[k] = v
    return d
