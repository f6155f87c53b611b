"""Modbus rule keywords: rules are indexed by function code, and a rule on `modbus.function` (or
`event.action`) by name is indexed by the code that name stands for. Pure functions over field names and
values; ids/detect/rules asks them through the registry.
"""
from __future__ import annotations

import re

from ..spec import RuleTable
from .consts import FUNCTION_NAMES, VENDOR


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


RULES = RuleTable(
    index_field="modbus.function_code", index_keys=index_keys,
    domains={"modbus.unit_id": (0, 255), "modbus.function_code": (0, 127), "modbus.exception_code": (0, 255),
             "modbus.request.address": (0, 65535), "modbus.response.address": (0, 65535),
             "modbus.request.quantity": (0, 65535), "modbus.response.quantity": (0, 65535),
             "modbus.request.last_address": (0, 65535), "modbus.request.read_last_address": (0, 65535),
             "modbus.request.sub_function": (0, 65535)})
