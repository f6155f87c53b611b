"""MQTT feature view: what the ML detector reads of one exchange (ids/detect/ml/view.py says what
each field of the view must hold). Runs on the hot path: plain attribute reads, no allocation beyond the view."""
from __future__ import annotations

import json
import math

from ...detect.ml.view import JSON_FIELDS as _JSON_FIELDS, NUMERIC_MAX as _NUMERIC_MAX, FeatureView, number as _number
from .messages import MqttConnack, MqttConnect, MqttExchange, MqttPublish

#: Anomalies that mean "an answer to nothing seen": the balance feature counts them (status unsolicited).
_MQTT_BALANCE = frozenset(("missing_connect", "missing_publish", "missing_subscribe", "missing_unsubscribe"))


def _mqtt_payload_numbers(topic: str, p: MqttPublish) -> tuple[tuple[str, float], ...]:
    """Numbers in a publish payload: a plain number (`61.5`, `true`), or the numeric top-level fields of a
    flat JSON object (`{"t": 61.5}` -> key `topic#t`). Anything else (binary, Sparkplug, text) gives none."""
    b = p.payload
    if not b or len(b) > _NUMERIC_MAX or (p.payload_length is not None and p.payload_length != len(b)):
        return ()
    c = b[0]
    if c == 0x7B:  # '{'
        try:
            obj = json.loads(b)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return ()
        if type(obj) is not dict:
            return ()
        out = []
        for k in sorted(obj)[:_JSON_FIELDS]:  # sorted: a publisher's key order must not change the keys
            v = _number(obj[k])
            if v is not None:
                out.append((f"{topic}#{k}", v))
        return tuple(out)
    if len(b) > 32:
        return ()
    try:
        s = b.decode("ascii").strip()
    except UnicodeDecodeError:
        return ()
    if s == "true" or s == "false":
        return ((topic, 1.0 if s == "true" else 0.0),)
    try:
        v = float(s)
    except ValueError:
        return ()
    return ((topic, v),) if math.isfinite(v) else ()


def mqtt_view(ev: MqttExchange) -> FeatureView:
    f = ev.flow
    msgs = ev.messages
    first = msgs[0]
    op = first.type
    from_client = first.to_server
    status = ev.status
    err = False
    nbytes = 0
    for m in msgs:
        nbytes += m.length
        t = type(m)
        if t is MqttConnack:
            if m.return_code:  # 3.1.1 return codes 1-5 and 5.0 reason codes >= 0x80 all refuse
                err = True
        elif t is not MqttConnect and t is not MqttPublish:
            rc = getattr(m, "reason_code", None)
            if rc is not None and rc >= 0x80:
                err = True
            for c in getattr(m, "codes", ()):  # SUBACK / UNSUBACK, one per filter: 0x80 and above fail
                if c >= 0x80:
                    err = True
    keys: tuple[str, ...] = ()
    writes: tuple[tuple[str, float], ...] = ()
    t = type(first)
    if t is MqttPublish:
        topic = first.topic
        if topic is not None:
            keys = (topic,)
            if from_client:
                writes = _mqtt_payload_numbers(topic, first)
    elif t is MqttConnect:
        # The account, not the client id: client ids are often random per connection, usernames are stable
        keys = ("user:" + (first.username or ""),)
    elif op == "subscribe" or op == "unsubscribe":
        keys = tuple(x[0] if type(x) is tuple else x for x in first.topics)
    unsolicited = status == "unsolicited"
    if unsolicited:
        answered: bool | None = True
    elif status == "incomplete":
        answered = False
    elif len(msgs) > 1:
        answered = True
    else:
        answered = None  # QoS 0 PUBLISH, PINGREQ/PINGRESP (paired by nobody), DISCONNECT: no answer expected
    # Server-initiated exchanges (deliveries to a subscriber, PINGRESP, a broker's DISCONNECT) are not requests
    # of the client: they count in bytes, operations and keys, not in request rates or the balance.
    request = from_client and not unsolicited
    if not from_client and not unsolicited:
        answered = None
    lat = msgs[-1].ts - first.ts if answered and request and len(msgs) > 1 else None
    an = ev.anomalies
    return FeatureView(
        ev.ts, "mqtt", f.client_ip, f.server_ip, op, op == "publish" and from_client, err, keys, writes,
        answered, request, lat, nbytes, bool(an) and any(a not in _MQTT_BALANCE for a in an), f)
