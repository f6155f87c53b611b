"""Modbus rule keywords: rules are indexed by function code, and a rule on `modbus.function` (or
`event.action`) by name is indexed by the code that name stands for. Pure functions over field names and
values; ids/detect/rules asks them through the registry.
"""
from __future__ import annotations

import re

from ..spec import FLOW_READERS, MISSING, RuleTable
from .consts import FUNCTION_NAMES, VENDOR
from .ecs import last_address


def code_of_name(name: str) -> int | None:
    """The function code a `modbus.function` name stands for, or None."""
    for code, n in FUNCTION_NAMES.items():
        if n == name:
            return code
    for code, n in VENDOR.items():
        if n == name:
            return code
    if name in ("read_device_identification", "canopen_general_reference"):
        return 43
    m = re.match(r"^(?:user_defined_|reserved_|unknown-)(\d+)$", name)
    return int(m.group(1)) if m else None


def _num(x) -> bool:
    return type(x) is int or type(x) is float


def index_keys(f: str, op: str, arg, values, nocase: bool):
    if f == "modbus.function_code":
        if op in ("equals", "in"):
            if values is not None and all(_num(v) for v in values):
                return set(values)
        if op == "range" and all(_num(x) for x in arg) and arg[1] - arg[0] < 256:
            return set(range(int(arg[0]), int(arg[1]) + 1))
    if f in ("modbus.function", "event.action") and op in ("equals", "in") and not nocase:
        if values is not None:
            codes = [code_of_name(v) if isinstance(v, str) else None for v in values]
            if all(c is not None for c in codes):
                return set(codes)
    return None


# ---------------------------------------------------------------------------------------------- readers

def _opt(v):
    return MISSING if v is None else v


def _req(attr):
    def f(e):
        r = e.request
        if r is None:
            return MISSING
        v = getattr(r, attr)
        return MISSING if v is None else v
    return f


def _req_values(e):
    r = e.request
    if r is None or r.values is None or not r.values:
        return MISSING
    return list(r.values)


def _req_last(e):
    r = e.request
    if r is None or r.address is None:
        return MISSING
    return last_address(r.address, r.quantity)


def _req_read_last(e):
    r = e.request
    d = r.details if r is not None else None
    if not d or d.get("read_address") is None:
        return MISSING
    return last_address(d["read_address"], d.get("read_quantity"))


def _req_detail(*keys):
    def f(e):
        r = e.request
        if r is None or not r.details:
            return MISSING
        v = r.details
        for k in keys:
            if not isinstance(v, dict) or k not in v:
                return MISSING
            v = v[k]
        return MISSING if v is None else v
    return f


READERS = {
    **FLOW_READERS,
    "modbus.function_code": lambda e: e.function_code,
    "modbus.function": lambda e: e.function,
    "modbus.unit_id": lambda e: e.unit_id,
    "modbus.transaction_id": lambda e: e.transaction_id,
    "modbus.exception_code": lambda e: _opt(e.exception_code),
    "modbus.exception": lambda e: _opt(e.exception),
    "modbus.request.address": _req("address"),
    "modbus.request.quantity": _req("quantity"),
    "modbus.request.last_address": _req_last,
    "modbus.request.read_last_address": _req_read_last,
    "modbus.request.sub_function": _req("sub_function"),
    "modbus.request.values": _req_values,
    "modbus.request.mei_type": _req_detail("mei_type"),
    "modbus.request.read_address": _req_detail("read_address"),
    "modbus.request.read_quantity": _req_detail("read_quantity"),
    "modbus.request.umas.function_code": _req_detail("umas", "function_code"),
}


RULES = RuleTable(
    index_field="modbus.function_code", index_keys=index_keys, readers=READERS,
    single_valued=frozenset(("modbus.function_code", "modbus.unit_id", "modbus.exception_code", "modbus.function")),
    domains={"modbus.unit_id": (0, 255), "modbus.function_code": (0, 127), "modbus.exception_code": (0, 255),
             "modbus.request.address": (0, 65535), "modbus.response.address": (0, 65535),
             "modbus.request.quantity": (0, 65535), "modbus.response.quantity": (0, 65535),
             "modbus.request.last_address": (0, 65535), "modbus.request.read_last_address": (0, 65535),
             "modbus.request.sub_function": (0, 65535)})
