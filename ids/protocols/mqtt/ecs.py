"""ECS documents of MQTT exchanges (dataset `otids.mqtt`), in the shape of Suricata's EVE mqtt record.

Rendering only: it reads the records of messages.py (dispatching on each record's `doc_kind`) and touches
no bytes. Output options come as arguments: `include_secrets` (CONNECT passwords, v5 authentication data)
and the string log limit.
"""
from __future__ import annotations

from typing import Any

from ...units import rfc3339
from .consts import reason_name


def exchange_doc(ex, include_secrets: bool = False) -> dict:
    msgs = ex.messages
    v = ex.protocol_version
    first = msgs[0]
    if len(msgs) == 1:  # most exchanges (QoS 0 telemetry)
        t = first.type
        m: dict[str, Any] = {t: _DOC[first.doc_kind](first, v, ex.log_limit, include_secrets), "types": [t]}
    else:
        m = {}
        for msg in msgs:
            if msg.type not in m:  # a type seen twice (v5 AUTH rounds): the first is written
                m[msg.type] = _DOC[msg.doc_kind](msg, v, ex.log_limit, include_secrets)
        m["types"] = list(m)
    if v:
        m["protocol_version"] = v
    m["status"] = ex.status
    ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                          "dataset": ex.dataset, "action": first.type,
                          "outcome": "success" if ex.status == "complete" and len(msgs) == 1
                          and first.doc_kind == "publish" else ex.outcome}
    if len(msgs) > 1:
        ev["duration"] = msgs[-1].ts - first.ts
    doc: dict[str, Any] = {"@timestamp": rfc3339(ex.ts), "event": ev}
    doc.update(ex.flow.network_doc("mqtt"))
    if first.doc_kind == "connect" and first.username is not None:
        doc["user"] = {"name": first.username}
        doc["related"]["user"] = [first.username]
    doc["mqtt"] = m
    doc["otids"] = {"anomalies": list(ex.anomalies)}
    return doc


def _btext(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _capped(raw: bytes, total: int, limit: int) -> str:
    """Suricata's string-log-limit form: the first `limit` bytes, then how many more there were."""
    if total > limit:
        return _btext(raw[:limit]) + f"[truncated {total - limit} additional bytes]"
    return _btext(raw)


def _props_doc(p: dict, secrets: bool) -> dict:
    out = {}
    for k, val in p.items():
        if type(val) is bytes:
            if k == "authentication_data" and not secrets:
                continue
            val = _btext(val)
        elif type(val) is list:
            val = [_btext(x) if type(x) is bytes else x for x in val]
        out[k] = val
    return out


def _hdr(msg) -> dict:
    return {"qos": msg.qos, "retain": msg.retain, "dup": msg.dup}


def _connect_doc(c, v, limit, secrets) -> dict:
    d = _hdr(c)
    if c.protocol_string is not None:
        d["protocol_string"] = c.protocol_string
    if c.protocol_version is not None:
        d["protocol_version"] = c.protocol_version
    if c.client_id is not None:
        d["client_id"] = c.client_id
    f = c.flags
    if f is not None:
        d["flags"] = {"username": bool(f & 0x80), "password": bool(f & 0x40), "will": bool(f & 0x04),
                      "will_retain": bool(f & 0x20), "clean_session": bool(f & 0x02)}
        if f & 0x04:
            w: dict[str, Any] = {"qos": (f >> 3) & 3, "retain": bool(f & 0x20)}
            if c.will_topic is not None:
                w["topic"] = c.will_topic
            if c.will_message is not None:
                w["message"] = _capped(c.will_message, c.will_payload_length, limit)
                w["payload_length"] = c.will_payload_length
            if c.will_properties:
                w["properties"] = _props_doc(c.will_properties, secrets)
            if c.decoded is not None:
                w[c.decoded.doc_key] = c.decoded.to_doc()
            d["will"] = w
    if c.keepalive is not None:
        d["keepalive"] = c.keepalive
    if c.username is not None:
        d["username"] = c.username
    if secrets and c.password is not None:
        d["password"] = _btext(c.password)
    if c.properties:
        d["properties"] = _props_doc(c.properties, secrets)
    return d


def _connack_doc(c, v, limit, secrets) -> dict:
    d = _hdr(c)
    if c.session_present is not None:
        d["session_present"] = c.session_present
    if c.return_code is not None:
        d["return_code"] = c.return_code
        d["reason"] = _mqtt_reason(c.return_code, 2, v)
    if c.properties:
        d["properties"] = _props_doc(c.properties, secrets)
    return d


def _publish_doc(p, v, limit, secrets) -> dict:
    d = _hdr(p)
    if p.topic is not None:
        d["topic"] = p.topic
        if p.topic_from_alias:
            d["topic_from_alias"] = True
    if p.message_id is not None:
        d["message_id"] = p.message_id
    if p.payload is not None and not p.truncated:
        d["message"] = _capped(p.payload, p.payload_length, limit)
    if p.payload_length is not None:
        d["payload_length"] = p.payload_length
    if p.properties:
        d["properties"] = _props_doc(p.properties, secrets)
    d["from_client"] = p.to_server
    if p.decoded is not None:  # mqtt.publish.sparkplug / mqtt.publish.pubsub
        d[p.decoded.doc_key] = p.decoded.to_doc()
    if p.truncated:
        d["truncated"] = True
        d["skipped_length"] = p.length
    return d


def _ack_doc(a, v, limit, secrets) -> dict:
    d = _hdr(a)
    if a.message_id is not None:
        d["message_id"] = a.message_id
    if a.reason_code is not None:
        d["reason_code"] = a.reason_code
        d["reason"] = _mqtt_reason(a.reason_code, 4, v)
    if a.properties:
        d["properties"] = _props_doc(a.properties, secrets)
    return d


def _subscribe_doc(s, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    topics = []
    budget = limit
    for name, opts in s.topics:  # the limit bounds all filters together (Suricata string-log-limit)
        t: dict[str, Any] = {"topic": name, "qos": opts & 3}
        raw = name.encode()
        n = len(raw)
        if n > budget:
            t["topic"] = _capped(raw, n, budget)
        if v == 5:
            t["no_local"] = bool(opts & 4)
            t["retain_as_published"] = bool(opts & 8)
            t["retain_handling"] = (opts >> 4) & 3
        topics.append(t)
        if n > budget:
            break
        budget -= n
    d["topics"] = topics
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _suback_doc(s, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    d["qos_granted"] = list(s.codes)
    if v == 5:
        d["reason_codes"] = list(s.codes)
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _unsubscribe_doc(s, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    topics = []
    budget = limit
    for name in s.topics:
        raw = name.encode()
        n = len(raw)
        if n > budget:
            topics.append(_capped(raw, n, budget))
            break
        topics.append(name)
        budget -= n
    d["topics"] = topics
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _unsuback_doc(s, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.message_id is not None:
        d["message_id"] = s.message_id
    if s.codes:
        d["reason_codes"] = list(s.codes)
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    return d


def _disconnect_doc(s, v, limit, secrets) -> dict:
    d = _hdr(s)
    if s.reason_code is not None:
        d["reason_code"] = s.reason_code
        d["reason"] = _mqtt_reason(s.reason_code, 14 if s.type == "disconnect" else 15, v)
    if s.properties:
        d["properties"] = _props_doc(s.properties, secrets)
    d["from_client"] = s.to_server
    return d


def _bare_doc(b, v, limit, secrets) -> dict:
    d = _hdr(b)
    if b.truncated:
        d["truncated"] = True
        d["skipped_length"] = b.length
    if b.type == "unassigned":
        d["type_code"] = b.type_code
        d["length"] = b.length
    return d


def _mqtt_reason(code: int, ptype: int, version: int) -> str:
    return reason_name(code, ptype, version)


_DOC = {"connect": _connect_doc, "connack": _connack_doc, "publish": _publish_doc, "ack": _ack_doc,
        "subscribe": _subscribe_doc, "suback": _suback_doc, "unsubscribe": _unsubscribe_doc,
        "unsuback": _unsuback_doc, "disconnect": _disconnect_doc, "bare": _bare_doc}
