"""OPC UA feature view: what the ML detector reads of one exchange (ids/detect/ml/view.py says what
each field of the view must hold). Runs on the hot path: plain attribute reads, no allocation beyond the view."""
from __future__ import annotations

from ...detect.ml.view import FeatureView, number as _number
from .messages import OpcuaEvent

#: Services that change server state (OPC UA Part 4): attribute writes (5.10.4), method calls (5.11.2), history
#: updates (5.10.5) and node management (5.7). Subscriptions and sessions change server state too, but only
#: the client's own; they are the routine of every client, not commands to the process.
_OPCUA_WRITES = frozenset(("Write", "Call", "HistoryUpdate", "AddNodes", "AddReferences", "DeleteNodes",
                           "DeleteReferences"))
_BAD = 0x80000000  # StatusCode severity Bad (Part 4 7.39); Uncertain (0x40000000) is not an error
_OPCUA_BALANCE = frozenset(("unanswered_request", "unsolicited_response"))
#: Transport messages without a size in the event: fixed layout (Part 6 7.1.2.3-7.1.2.5), strings added below.
_HEL, _ACK, _ERR = 32, 28, 16


def _opcua_error(ev: OpcuaEvent) -> bool:
    code = ev.status_code
    if code is not None and code & _BAD:
        return True
    resp = ev.response
    if resp is None:
        return ev.message_type == "ERR"
    if resp.get("service_fault"):
        return True
    if "operation_status" in resp:  # set by the session when any per-operation result is Bad or Uncertain
        for r in resp.get("results") or ():
            if type(r) is dict and (r.get("status_code") or 0) & _BAD:
                return True
    return False


def _opcua_writes(ev: OpcuaEvent) -> tuple[tuple[str, float], ...]:
    req = ev.request
    if req is None:
        return ()
    out = []
    if ev.service == "Write":
        for w in req.get("nodes_to_write") or ():
            v = _number(w.get("value"))
            if v is not None:
                attr = w.get("attribute")
                node = w.get("node", "")
                out.append((node if attr in (None, "Value") else f"{node}#{attr}", v))
    elif ev.service == "Call":  # numeric input arguments, one key per argument position of the method
        for c in req.get("methods_to_call") or ():
            m = c.get("method", "")
            for i, a in enumerate(c.get("arguments") or ()):
                v = _number(a.get("value")) if type(a) is dict else None
                if v is not None:
                    out.append((f"{m}#{i}", v))
    return tuple(out)


def _opcua_bytes(ev: OpcuaEvent) -> int:
    n = 0
    req, resp = ev.request, ev.response
    if ev.message_type == "HEL":
        if req is not None:
            n += _HEL + len((req.get("endpoint_url") or "").encode())
        if resp is not None:
            n += _ERR + len((resp.get("reason") or "").encode()) if ev.status_code is not None else _ACK
        return n
    if req is not None:
        n += req.get("size") or 0
    if resp is not None:
        n += resp.get("size") or (_ERR + len((resp.get("reason") or "").encode()) if ev.message_type == "ERR" else 0)
    return n


def opcua_view(ev: OpcuaEvent) -> FeatureView:
    f = ev.flow
    an = ev.anomalies
    req, resp, mt = ev.request, ev.response, ev.message_type
    if req is None:  # a response nobody asked for, or a message the server sends on its own (ERR, RHE)
        request = False
        answered: bool | None = True if resp is not None and "unsolicited_response" in an else None
    else:
        request = True
        if mt == "CLO" or (ev.encrypted and mt == "MSG"):
            answered = None  # no response follows a CLO (Part 6 7.1.3); ciphertext cannot be paired
        else:
            answered = resp is not None
    service = ev.service
    is_write = service in _OPCUA_WRITES
    lat = ev.response_ts - ev.ts if ev.response_ts is not None and req is not None else None
    return FeatureView(
        ev.ts, "opcua", f.client_ip, f.server_ip, service, is_write, _opcua_error(ev), ev.nodes,
        _opcua_writes(ev) if is_write else (), answered, request, lat, _opcua_bytes(ev),
        bool(an) and any(a not in _OPCUA_BALANCE for a in an), f)
