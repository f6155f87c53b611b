"""ECS documents of OPC UA exchanges (dataset `otids.opcua`): the field names fields.yml declares.

Rendering only: it reads an `OpcuaEvent` (messages.py) and touches no bytes.
"""
from __future__ import annotations

from typing import Any

from ...units import rfc3339


def event_doc(t) -> dict:
    o: dict[str, Any] = {"message_type": t.message_type, "service": t.service,
                         "encrypted": t.encrypted}
    for k in ("secure_channel_id", "token_id", "request_id", "request_handle", "security_mode",
              "status_code", "status", "endpoint_url", "application_uri", "user_token_type"):
        v = getattr(t, k)
        if v is not None:
            o[k] = v
    if t.security_policy_uri is not None:
        uri = t.security_policy_uri
        o["security_policy"] = {"uri": uri, "name": uri.rsplit("#", 1)[-1] if "#" in uri else uri}
    if t.nodes:
        o["nodes"] = list(t.nodes)
    if t.request is not None:
        o["request"] = t.request
    if t.response is not None:
        o["response"] = t.response
    if t.certificates:
        for role, c in t.certificates.items():
            o[f"{role}_certificate"] = c
    ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                          "dataset": t.dataset, "action": t.action, "outcome": t.outcome}
    if t.response_ts is not None:
        ev["duration"] = t.response_ts - t.ts
    doc = {"@timestamp": rfc3339(t.ts), "event": ev}
    doc.update(t.flow.network_doc("opcua"))
    doc["opcua"] = o
    user = (t.request or {}).get("identity", {}).get("user_name")
    if user:
        doc["user"] = {"name": user}
    doc["otids"] = {"anomalies": list(t.anomalies)}
    return doc
