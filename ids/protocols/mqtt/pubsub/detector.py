"""OPC UA PubSub policy check: on a site that requires message security (`--pubsub-require-security`), every
UADP NetworkMessage without a security header (SecurityMode None) and every JSON NetworkMessage (JSON has no
message security, OPC 10000-14 7.2.5) is an alert. Publisher's copies only (client -> broker); what is new
(publisher ids, writers, field values) is the baseline's (pubsub section)."""
from __future__ import annotations

from ....flow.budget import trim_oldest
from ....detect.attack import techniques
from ....events import Alert
from ..messages import MqttExchange, MqttPublish
from .decode import PubSubMessage

NS = 1_000_000_000
REALERT_NS = 60 * NS
MAX_KEYS = 65536
RULE = ("otids.pubsub.unsecured", "Unsecured OPC UA PubSub message where security is required", "high",
        "An OPC UA PubSub NetworkMessage was published without message security (UADP SecurityMode None, or JSON "
        "encoding, which has none) on a site configured to require Sign or SignAndEncrypt: its values can be "
        "forged or altered by anyone on the path to the subscribers.", ("T0830", "T0856"))


class PubSubDetector:
    def __init__(self):
        self.last: dict[tuple, list] = {}

    def accepts(self, t) -> bool:
        return t is MqttExchange

    def on_event(self, ev):
        out = None
        for m in ev.messages:
            if type(m) is not MqttPublish or not m.to_server or type(m.decoded) is not PubSubMessage:
                continue
            p = m.decoded
            if p.message_type not in ("ua-data", "ua-metadata") or (p.encoding == "uadp" and p.security_mode != "None"):
                continue
            key = (ev.flow.client_ip, p.publisher_id, p.encoding)
            st = self.last.get(key)
            if st is not None and ev.ts - st[0] < REALERT_NS:
                st[1] += 1
                continue
            count = 1 + (st[1] if st else 0)
            self.last[key] = [ev.ts, 0]
            if len(self.last) > MAX_KEYS:
                trim_oldest(self.last, MAX_KEYS)
            why = "JSON encoding (no message security)" if p.encoding == "json" else "UADP SecurityMode None"
            rid, name, sev, desc, att = RULE
            a = Alert(ev.ts, rid, name, desc, sev, f"PubSub {p.message_type} from publisher {p.publisher_id} "
                      f"({ev.flow.client_ip}) on {m.topic}: {why}", "pubsub", techniques(*att), ev, ev.flow, "mqtt",
                      count, extra={"pubsub": {"publisher_id": p.publisher_id}} if p.publisher_id else {})
            out = out or []
            out.append(a)
        return out

    def flush(self, ts: int):
        return ()
