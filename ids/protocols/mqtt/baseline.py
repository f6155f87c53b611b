"""MQTT part of the baseline: per (client, broker) the client ids and usernames it connected with, the topics
it published (QoS levels, message count, period and jitter when periodic) and the filters it subscribed to.

It reads ids.protocols.mqtt.messages.MqttExchange records. A PUBLISH counts for its publisher only: each message says which
way it went (`to_server`, in the document `mqtt.publish.from_client`), and the broker delivering a message
to a subscriber (to_client) is not the subscriber publishing, so deliveries are neither learned nor
checked; the publisher's own PUBLISH is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...units import rfc3339
from .messages import MqttConnect, MqttExchange, MqttPublish, MqttSubscribe
from ...detect.baseline.periodic import IntervalSample, PeriodTracker, period_seen, seconds
from ...detect.baseline.section import SectionSpec
from ...detect.bounds import SLOT, Budget, text

if TYPE_CHECKING:
    from ...detect.baseline.document import Baseline

SECTION = SectionSpec("mqtt", ("client", "broker"),
                      ("first_seen", "last_seen", "messages", "client_ids", "usernames", "publishes", "subscribes"),
                      "messages", "mqtt")
ROLES = ("mqtt_client", "mqtt_broker")
DATASETS = ("otids.mqtt",)
EVENT_FIELDS = """ids.protocols.mqtt.messages.MqttExchange (flow client = MQTT client, server = broker), its messages: MqttConnect
sent by the client (`client_id`, `username`), MqttPublish (`topic`, `qos`, `to_server`: true when the client
published, false when the broker delivered to the client), MqttSubscribe sent by the client (`topics`: (filter,
options) with the requested QoS in bits 0-1)."""


class Facts:
    """What one exchange says, from the client's side."""

    __slots__ = ("client_id", "username", "topic", "qos", "subscribe")

    def __init__(self):
        self.client_id = self.username = self.topic = self.qos = None
        self.subscribe: list[tuple[str, int]] = []


def facts(ev: MqttExchange) -> Facts:
    f = Facts()
    for m in ev.messages:
        t = type(m)
        if t is MqttPublish:
            if m.to_server and m.topic is not None and f.topic is None:  # client -> broker only
                f.topic, f.qos = m.topic, m.qos
        elif t is MqttConnect:
            if m.to_server:
                f.client_id, f.username = m.client_id, m.username
        elif t is MqttSubscribe:
            if m.to_server:
                f.subscribe = [(name, opts & 3) for name, opts in m.topics]
    return f


class _Client:
    __slots__ = ("first", "last", "n", "ids", "users", "topics", "subs")

    def __init__(self, ts):
        self.first = self.last = ts
        self.n = 0
        self.ids, self.users = set(), set()
        self.topics: dict[str, list] = {}  # topic -> [qos set, count, IntervalSample]
        self.subs: dict[str, set] = {}


CLIENT_BYTES = 1_100  # a (client, broker) entry with its empty sets and tables (tracemalloc)
TOPIC_BYTES = 900  # a topic published: its QoS set, count and interval sample, besides its name
FILTER_BYTES = 300  # a subscription filter with its QoS set, besides its text


class Learner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.clients: dict[tuple, _Client] = {}
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not MqttExchange:
            return
        f = facts(ev)
        key = (ev.flow.client_ip, ev.flow.server_ip)
        c = self.clients.get(key)
        take = self.budget.take
        if c is None:
            if not take("mqtt", CLIENT_BYTES):
                return
            c = self.clients[key] = _Client(ev.ts)
        c.n += 1
        c.first, c.last = min(c.first, ev.ts), max(c.last, ev.ts)
        if f.client_id is not None and f.client_id not in c.ids and take("mqtt", text(f.client_id) + SLOT):
            c.ids.add(f.client_id)
        if f.username and f.username not in c.users and take("mqtt", text(f.username) + SLOT):
            c.users.add(f.username)
        if f.topic is not None:
            t = c.topics.get(f.topic)
            if t is None and take("mqtt", TOPIC_BYTES + text(f.topic)):
                t = c.topics[f.topic] = [set(), 0, IntervalSample(self.cfg.poll_window, self.budget)]
            if t is not None:
                t[0].add(f.qos)
                t[1] += 1
                t[2].add(ev.ts, epoch)
        for flt, q in f.subscribe:
            s = c.subs.get(flt)
            if s is None:
                if not take("mqtt", FILTER_BYTES + text(flt)):
                    continue
                s = c.subs[flt] = set()
            s.add(q)

    def entries(self, epochs: dict | None = None) -> list[dict]:
        cfg = self.cfg
        out = []
        for (cl, br), c in self.clients.items():
            e: dict = {"client": cl, "broker": br, "status": "learned", "first_seen": rfc3339(c.first),
                       "last_seen": rfc3339(c.last), "messages": c.n}
            if c.ids:
                e["client_ids"] = sorted(c.ids)
            if c.users:
                e["usernames"] = sorted(c.users)
            if c.topics:
                pubs = {}
                for topic in sorted(c.topics):
                    qos, n, sample = c.topics[topic]
                    d: dict = {"qos": sorted(qos), "messages": n}
                    p = sample.period(cfg, epochs)
                    if p is not None:
                        d["period"], d["jitter"] = seconds(p[0]), seconds(p[1])
                    pubs[topic] = d
                e["publishes"] = pubs
            if c.subs:
                e["subscribes"] = {flt: {"qos": sorted(c.subs[flt])} for flt in sorted(c.subs)}
            out.append(e)
        return out


class _Compiled:
    __slots__ = ("label", "status", "ids", "users", "topics", "subs", "periods")


def _qos(b: Baseline, d, *where) -> frozenset:
    """The `qos` list of a topic's entry ({qos: [0, 1]}; an empty or missing entry: none seen)."""
    if d is None:
        return frozenset()
    q = d.get("qos") if isinstance(d, dict) else d
    if q is None:
        return frozenset()
    if not isinstance(d, dict) or not isinstance(q, list) or not all(type(x) is int for x in q):
        raise b.error(f"{where[-1]!r} must be {{qos: [...]}}, a list of QoS levels", *where)  # as learned, even 3
    return frozenset(q)


class Enforcer:
    section = "mqtt"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.cfg = cfg
        self.clients: dict[tuple, _Compiled] = {}
        for eid, e in b.section("mqtt").items():
            c = _Compiled()
            c.label, c.status = f"mqtt {e['client']} -> {e['broker']}", e["status"]
            for name, attr in (("client_ids", "ids"), ("usernames", "users")):
                v = e.get(name) or []
                if not isinstance(v, list):
                    raise b.error(f"{name} must be a list", "mqtt", eid, name)
                setattr(c, attr, frozenset(str(x) for x in v))
            pubs = e.get("publishes") or {}
            if not isinstance(pubs, dict):
                raise b.error("publishes must map topics to {qos: [...]}", "mqtt", eid, "publishes")
            c.topics, c.periods = {}, {}
            for topic, d in pubs.items():
                d = d if isinstance(d, dict) else {}
                c.topics[str(topic)] = _qos(b, d, "mqtt", eid, "publishes", topic)
                if isinstance(d.get("period"), (int, float)) and d["period"] > 0:
                    jitter = d.get("jitter") or 0
                    if not isinstance(jitter, (int, float)) or jitter < 0:
                        raise b.error("jitter must be a number of seconds", "mqtt", eid, "publishes", topic, "jitter")
                    c.periods[str(topic)] = PeriodTracker(float(d["period"]), float(jitter), cfg.poll_window)
            subs = e.get("subscribes") or {}
            if not isinstance(subs, dict):
                raise b.error("subscribes must map topic filters to {qos: [...]}", "mqtt", eid, "subscribes")
            c.subs = {str(k): _qos(b, v, "mqtt", eid, "subscribes", k) for k, v in subs.items()}
            if c.status in usable_status:
                self.clients[(str(e["client"]), str(e["broker"]))] = c

    def check(self, ev, det) -> None:
        if type(ev) is not MqttExchange:
            return
        f = facts(ev)
        key = (ev.flow.client_ip, ev.flow.server_ip)
        c = self.clients.get(key)
        if c is None:
            c = self.clients[key] = _Compiled()
            c.label, c.status = f"mqtt {key[0]} -> {key[1]}", "learned"
            c.ids = c.users = frozenset()
            c.topics, c.subs, c.periods = {}, {}, {}
        if c.status == "denied":
            det.report("otids.baseline.denied", ("mqtt.denied",) + key, ev, "no traffic (entry denied)",
                       "MQTT traffic", entry=c.label)
            return
        for what, val, known in (("client id", f.client_id, c.ids), ("username", f.username, c.users)):
            if isinstance(val, str) and (val or what == "client id") and val not in known:
                det.report("otids.baseline.mqtt.new_client_id", ("mqtt.id",) + key + (what, val), ev,
                           f"{what}s " + (", ".join(sorted(known)) or "none"), f"{what} {val!r}", entry=c.label)
        topic = f.topic
        if topic is not None:
            qos = c.topics.get(topic)
            if qos is None:
                det.report("otids.baseline.mqtt.new_topic", ("mqtt.topic",) + key + (topic,), ev,
                           "publishes to " + (", ".join(sorted(c.topics)) or "no topic"), f"publish to {topic}",
                           entry=c.label)
            else:
                if qos and f.qos not in qos:
                    det.report("otids.baseline.mqtt.qos_changed", ("mqtt.qos",) + key + (topic, f.qos), ev,
                               f"{topic} with QoS {', '.join(map(str, sorted(qos)))}",
                               f"{topic} with QoS {f.qos}", entry=c.label)
                t = c.periods.get(topic)
                if t is not None:
                    t.ctx = ev.flow
                    m = t.observe(ev.ts, det.epoch, self.cfg.poll_tolerance_percent)
                    if m is not None:
                        det.report("otids.baseline.mqtt.publish_period_changed", ("mqtt.period",) + key + (topic,),
                                   ev, f"{topic} every {t.period / 1e9:g} s", f"every {m / 1e9:.3g} s",
                                   entry=c.label, item=m, item_fmt=lambda xs, p=t.period: period_seen(xs, p))
        for flt, q in f.subscribe:
            if flt not in c.subs:
                det.report("otids.baseline.mqtt.new_subscription", ("mqtt.sub",) + key + (flt,), ev,
                           "subscriptions " + (", ".join(sorted(c.subs)) or "none"), f"subscribe {flt}",
                           entry=c.label)

    def sweep(self, now: int, det) -> None:
        stop_min = self.cfg.poll_stop_min * 1_000_000_000
        for key, c in self.clients.items():
            for topic, t in c.periods.items():
                silent = t.silent_for(now, det.epoch, det.epoch_start)
                if silent > max(self.cfg.poll_stop_factor * t.period, stop_min) and not t.stopped:
                    t.stopped = True
                    det.report("otids.baseline.mqtt.publish_stopped", ("mqtt.stopped",) + key + (topic,), None,
                               f"{topic} every {t.period / 1e9:g} s", f"none for {silent / 1e9:.0f} s",
                               entry=c.label, ts=now, flow=t.ctx, protocol="mqtt")
