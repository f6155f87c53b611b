"""Modbus asset facts: roles (declared in PROTOCOL) and device identity from FC 43/14 (read device
identification) and FC 17 (report server id) responses. Read by ids.assets and the baseline."""
from __future__ import annotations

from .messages import ModbusTransaction


def printable_runs(raw: bytes, min_len: int = 3) -> str:
    """The readable text in a device-specific byte string (FC 17 server id): runs of printable ASCII of
    at least `min_len` characters, joined by spaces."""
    runs, cur = [], []
    for b in raw:
        if 32 <= b < 127:
            cur.append(chr(b))
        else:
            if len(cur) >= min_len:
                runs.append("".join(cur).strip())
            cur = []
    if len(cur) >= min_len:
        runs.append("".join(cur).strip())
    return " ".join(r for r in runs if r)


def modbus_identity(ev: ModbusTransaction) -> tuple[str, dict] | None:
    """(kind, facts) from a Modbus FC 43/14 or FC 17 response, about the slave (unit in the facts)."""
    resp = ev.response
    if resp is None or not resp.details or ev.exception_code is not None:
        return None
    d = resp.details
    if ev.function_code == 43 and d.get("mei_type") == 14:
        ident = {k: v.strip() for k, v in (d.get("device_identification") or {}).items()
                 if isinstance(v, str) and v.strip()}
        return ("modbus", ident) if ident else None
    if ev.function_code == 17:  # server id, then the additional data some devices put their name in
        runs = [printable_runs(bytes.fromhex(d[k])) for k in ("server_id", "additional_data")
                if isinstance(d.get(k), str)]
        text = " ".join(r for r in runs if r)
        return ("modbus_server_id", {"text": text}) if text else None
    return None
