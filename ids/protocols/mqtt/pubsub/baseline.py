"""OPC UA PubSub part of the baseline (section `pubsub`, one entry per broker and PublisherId): the clients that
publish under the id, its writer groups and DataSetWriters, the security modes and encodings seen, and the band
of every numeric field per writer. Deviations: a new PublisherId, a new writer, a security mode weaker than
learned (UADP None after Sign/SignAndEncrypt, or JSON), a field value outside its band. Publisher's copies only.
"""
from __future__ import annotations

import math

from ....detect.baseline.document import Baseline
from ....detect.baseline.section import SectionSpec
from ....detect.bounds import SLOT, Budget, text
from ....detect.baseline.rules import RULES, BaselineRule
from ....events import rfc3339
from ..messages import MqttExchange, MqttPublish
from .decode import PubSubMessage

SECTION = SectionSpec("pubsub", ("broker", "publisher_id"),
                      ("first_seen", "last_seen", "messages", "clients", "encodings", "security_modes", "writers"),
                      "messages", "mqtt")
ROLES = ("mqtt_client", "mqtt_broker")
DATASETS = ("otids.mqtt",)
EVENT_FIELDS = """ids.protocols.mqtt.messages.MqttExchange whose MqttPublish (`to_server`) carries a decoded
ids.protocols.mqtt.pubsub.decode.PubSubMessage in `decoded` (encoding, publisher_id, security_mode, datasets with
writer_id / writer_name and fields)."""
MAX_FIELDS = 1024
_RANK = {"json": 0, "None": 0, "Sign": 1, "Encrypt": 1, "SignAndEncrypt": 2}

for _r in (
    BaselineRule("otids.baseline.pubsub.new_publisher", "New OPC UA PubSub publisher", "high",
                 "A PublisherId never seen on this broker published PubSub NetworkMessages: a new or replaced "
                 "device, or forged process data.", ("T0856",)),
    BaselineRule("otids.baseline.pubsub.new_writer", "New OPC UA PubSub DataSetWriter", "medium",
                 "A known publisher sent a DataSetMessage from a DataSetWriter never seen for it.", ("T0856",)),
    BaselineRule("otids.baseline.pubsub.security_downgraded", "OPC UA PubSub security weaker than learned", "high",
                 "A publisher sent a NetworkMessage with weaker message security than it ever used (UADP None after "
                 "Sign or SignAndEncrypt, or JSON).", ("T0830",)),
    BaselineRule("otids.baseline.pubsub.field_out_of_band", "OPC UA PubSub field value outside its learned band",
                 "medium", "A DataSetMessage field carried a numeric value outside the band learned for it.",
                 ("T0836",)),
):
    RULES.setdefault(_r.id, _r)


def _mode(p: PubSubMessage) -> str:
    return "json" if p.encoding == "json" else (p.security_mode or "None")


def _writer(d) -> str:
    return str(d.writer_id) if d.writer_id is not None else (d.writer_name or "?")


def facts(ev):
    for m in ev.messages:
        if type(m) is MqttPublish and m.to_server and type(m.decoded) is PubSubMessage \
                and m.decoded.publisher_id is not None and m.decoded.message_type == "ua-data":
            yield m, m.decoded


def _numeric(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


class _Pub:
    __slots__ = ("first", "last", "n", "clients", "encodings", "modes", "writers")

    def __init__(self, ts):
        self.first = self.last = ts
        self.n = 0
        self.clients, self.encodings, self.modes = set(), set(), set()
        self.writers: dict[str, dict] = {}  # writer -> field -> [lo, hi, n]


PUB_BYTES = 1_300  # a (broker, publisher id) entry with its empty tables (tracemalloc)
FIELD_BYTES = 300  # a field's value band or a writer's table, besides its name


class Learner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.pubs: dict[tuple, _Pub] = {}
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not MqttExchange:
            return
        for m, p in facts(ev):
            key = (ev.flow.server_ip, p.publisher_id)
            e = self.pubs.get(key)
            take = self.budget.take
            if e is None:
                if not take("pubsub", PUB_BYTES + text(p.publisher_id)):
                    continue
                e = self.pubs[key] = _Pub(m.ts)
            e.n += 1
            e.first, e.last = min(e.first, m.ts), max(e.last, m.ts)
            if ev.flow.client_ip not in e.clients and take("pubsub", text(ev.flow.client_ip) + SLOT):
                e.clients.add(ev.flow.client_ip)
            e.encodings.add(p.encoding)
            e.modes.add(_mode(p))
            for d in p.datasets:
                w = _writer(d)
                fields = e.writers.get(w)
                if fields is None:
                    if not take("pubsub", FIELD_BYTES):
                        continue
                    fields = e.writers[w] = {}
                for name, v, _ in d.fields:
                    if not _numeric(v) or isinstance(v, bool):
                        continue
                    b = fields.get(name)
                    if b is None:
                        if len(fields) < MAX_FIELDS and take("pubsub", FIELD_BYTES + text(name)):
                            fields[name] = [v, v, 1]
                    else:
                        b[0], b[1], b[2] = min(b[0], v), max(b[1], v), b[2] + 1

    def entries(self, epochs: dict | None = None) -> list[dict]:
        pct = self.cfg.value_margin_percent
        out = []
        for (broker, pid), e in sorted(self.pubs.items()):
            writers = {}
            for w in sorted(e.writers):
                fields = {}
                for name in sorted(e.writers[w]):
                    lo, hi, n = e.writers[w][name]
                    margin = (hi - lo) * pct / 100
                    fields[name] = {"band": [lo - margin, hi + margin], "seen": [lo, hi], "count": n}
                writers[w] = {"fields": fields} if fields else {}
            out.append({"broker": broker, "publisher_id": pid, "status": "learned", "first_seen": rfc3339(e.first),
                        "last_seen": rfc3339(e.last), "messages": e.n, "clients": sorted(e.clients),
                        "encodings": sorted(e.encodings), "security_modes": sorted(e.modes), "writers": writers})
        return out


class _Compiled:
    __slots__ = ("label", "status", "best", "writers")


class Enforcer:
    section = "pubsub"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.pubs: dict[tuple, _Compiled] = {}
        self.brokers: set = set()
        for eid, e in b.section("pubsub").items():
            c = _Compiled()
            c.label, c.status = f"pubsub {e.get('publisher_id')} via {e.get('broker')}", e.get("status")
            modes = e.get("security_modes") or []
            if not isinstance(modes, list) or any(m not in _RANK for m in modes):
                raise b.error(f"security_modes must be a list of {', '.join(_RANK)}", "pubsub", eid, "security_modes")
            c.best = max((_RANK[m] for m in modes), default=0)
            writers = e.get("writers") or {}
            if not isinstance(writers, dict):
                raise b.error("writers must map writer ids to {fields: {...}}", "pubsub", eid, "writers")
            c.writers = {}
            for w, spec in writers.items():
                bands = {}
                for name, f in ((spec or {}).get("fields") or {}).items():
                    band = f.get("band") if isinstance(f, dict) else None
                    if not (isinstance(band, list) and len(band) == 2 and all(isinstance(x, (int, float)) for x in band)
                            and band[0] <= band[1]):
                        raise b.error("band must be [LOW, HIGH] with LOW <= HIGH", "pubsub", eid, "writers", w, name)
                    bands[str(name)] = (band[0], band[1])
                c.writers[str(w)] = bands
            if c.status in usable_status:
                self.pubs[(str(e.get("broker")), str(e.get("publisher_id")))] = c
                self.brokers.add(str(e.get("broker")))

    def check(self, ev, det) -> None:
        if type(ev) is not MqttExchange or ev.flow.server_ip not in self.brokers:
            return
        for m, p in facts(ev):
            key = (ev.flow.server_ip, p.publisher_id)
            c = self.pubs.get(key)
            if c is None:
                det.report("otids.baseline.pubsub.new_publisher", ("pubsub.pub",) + key, ev,
                           "known publishers " + ", ".join(sorted(k[1] for k in self.pubs if k[0] == key[0])),
                           f"PublisherId {p.publisher_id} on {m.topic}", entry=f"pubsub {key[0]}")
                continue
            if c.status == "denied":
                det.report("otids.baseline.denied", ("pubsub.denied",) + key, ev, "no traffic (entry denied)",
                           "PubSub NetworkMessage", entry=c.label)
                continue
            mode = _mode(p)
            if _RANK[mode] < c.best:
                det.report("otids.baseline.pubsub.security_downgraded", ("pubsub.sec",) + key + (mode,), ev,
                           f"security rank {c.best}", f"{mode}", entry=c.label)
            for d in p.datasets:
                w = _writer(d)
                bands = c.writers.get(w)
                if bands is None:
                    det.report("otids.baseline.pubsub.new_writer", ("pubsub.writer",) + key + (w,), ev,
                               "writers " + ", ".join(sorted(c.writers)), f"DataSetWriter {w}", entry=c.label)
                    continue
                for name, v, _ in d.fields:
                    band = bands.get(name)
                    if band is not None and _numeric(v) and not isinstance(v, bool) and not band[0] <= v <= band[1]:
                        det.report("otids.baseline.pubsub.field_out_of_band", ("pubsub.band",) + key + (w, name), ev,
                                   f"writer {w} field {name} in [{band[0]:g}, {band[1]:g}]", f"{name} = {v:g}",
                                   entry=c.label)

    def sweep(self, now: int, det) -> None:
        return None
