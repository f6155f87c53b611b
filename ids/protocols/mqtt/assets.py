"""MQTT asset facts: the client id and username of a client's CONNECT. Read by ids.assets."""
from __future__ import annotations

from .messages import MqttExchange


def mqtt_identity(ev: MqttExchange) -> list[tuple[str, str, object]]:
    """(side, fact, value) from an MQTT exchange: the client id and username of the client's CONNECT."""
    m = ev.messages[0]
    if m.doc_kind != "connect" or not m.to_server:
        return []
    return [("client", f"mqtt_{f}", v) for f, v in (("client_id", m.client_id), ("username", m.username))
            if isinstance(v, str) and v]
