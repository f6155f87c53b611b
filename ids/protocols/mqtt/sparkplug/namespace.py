"""Unified namespace part of the baseline (section `namespace`, one entry per broker): the topic tree as
ISA-95 style levels (enterprise/site/area/line/cell), cut at DEPTH levels, with the publishers of each subtree,
so an engineer can review who writes where; then an alert when a publisher writes into a subtree it never
wrote to. Sparkplug topics are cut at their edge node (spBv1.0/<group>/*/<edge node>), STATE at the host.

Only the publisher's copy of a PUBLISH counts (`to_server`); publishers are client addresses (a changed client
id is the mqtt section's finding). A subtree stops before a topic's last level, which names the value. In the file each tree node maps a level name to
its child node; `publishers` (a list, where a child is always a mapping) names who wrote at that subtree.
Kept beside the Sparkplug code for now (#14); it reads any MQTT publish.
"""
from __future__ import annotations

from ....detect.baseline.document import Baseline
from ....detect.baseline.section import SectionSpec
from ....detect.bounds import SLOT, Budget, text
from ....detect.baseline.rules import RULES, BaselineRule
from ....events import rfc3339
from ..messages import MqttExchange, MqttPublish

SECTION = SectionSpec("namespace", ("broker",), ("first_seen", "last_seen", "messages", "depth", "tree"),
                      "messages", "mqtt")
ROLES = ("mqtt_client", "mqtt_broker")
DATASETS = ("otids.mqtt",)
EVENT_FIELDS = """ids.protocols.mqtt.messages.MqttExchange: MqttPublish `topic` and `to_server` (the publisher's copy), the flow's
client address."""

#: Levels that make a subtree: enterprise/site/area.
DEPTH = 3
MAX_SUBTREES = 8192  # per broker
MAX_FLOWS = 65536

RULES.setdefault("otids.baseline.mqtt.new_subtree", BaselineRule(
    "otids.baseline.mqtt.new_subtree", "MQTT publisher writing into a new namespace subtree", "high",
    "A client published under a part of the unified namespace (enterprise/site/area, or a Sparkplug edge node) it "
    "never wrote to: a device or gateway writing into another line's data, or an intruder injecting values.",
    ("T0856", "T0855")))


def subtree(topic: str, depth: int = DEPTH) -> tuple[str, ...]:
    parts = topic.split("/")
    if parts[0] == "spBv1.0" and len(parts) >= 4:
        return ("spBv1.0", parts[1], parts[3])  # group, edge node (the message type is not a place)
    if parts[0] == "spBv1.0" and len(parts) == 3:
        return tuple(parts)  # spBv1.0/STATE/<host>
    return tuple(parts[:min(depth, len(parts) - 1)])  # the last level names the value, not a place


def _publishes(ev):
    for m in ev.messages:
        if type(m) is MqttPublish and m.to_server and m.topic:
            yield m


class _Broker:
    __slots__ = ("first", "last", "n", "subtrees")

    def __init__(self, ts):
        self.first = self.last = ts
        self.n = 0
        self.subtrees: dict[tuple, set] = {}


BROKER_BYTES = 700  # a broker entry (tracemalloc)
SUBTREE_BYTES = 400  # a subtree with its set of publishers, besides its name


class Learner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.brokers: dict[str, _Broker] = {}
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not MqttExchange:
            return
        for m in _publishes(ev):
            b = self.brokers.get(ev.flow.server_ip)
            take = self.budget.take
            if b is None:
                if not take("namespace", BROKER_BYTES):
                    continue
                b = self.brokers[ev.flow.server_ip] = _Broker(m.ts)
            b.n += 1
            b.first, b.last = min(b.first, m.ts), max(b.last, m.ts)
            st = subtree(m.topic)
            pubs = b.subtrees.get(st)
            if pubs is None:
                if len(b.subtrees) >= MAX_SUBTREES or not take("namespace", SUBTREE_BYTES + text(st)):
                    continue
                pubs = b.subtrees[st] = set()
            if ev.flow.client_ip not in pubs and (not pubs or take("namespace", SLOT)):
                pubs.add(ev.flow.client_ip)

    def entries(self, epochs: dict | None = None) -> list[dict]:
        out = []
        for broker, b in sorted(self.brokers.items()):
            tree: dict = {}
            for st in sorted(b.subtrees):
                node = tree
                for level in st:
                    nxt = node.get(level)
                    if not isinstance(nxt, dict):
                        nxt = node[level] = {}
                    node = nxt
                node["publishers"] = sorted(b.subtrees[st])
            out.append({"broker": broker, "status": "learned", "first_seen": rfc3339(b.first),
                        "last_seen": rfc3339(b.last), "messages": b.n, "depth": DEPTH, "tree": tree})
        return out


class Enforcer:
    section = "namespace"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.known: dict[str, dict] = {}  # broker -> subtree -> frozenset(publishers)
        self.writers: dict[str, frozenset] = {}  # broker -> every publisher of its tree
        self.depth: dict[str, int] = {}
        for eid, e in b.section("namespace").items():
            tree = e.get("tree") or {}
            if not isinstance(tree, dict):
                raise b.error("tree must map topic levels to nodes", "namespace", eid, "tree")
            depth = e.get("depth", DEPTH)
            if not isinstance(depth, int) or depth < 1:
                raise b.error("depth must be a positive integer", "namespace", eid, "depth")
            subs: dict = {}
            stack = [((), tree)]
            while stack:
                path, node = stack.pop()
                for k, v in node.items():
                    if isinstance(v, dict):
                        stack.append((path + (str(k),), v))
                    elif k == "publishers" and isinstance(v, list):
                        subs[path] = frozenset(str(x) for x in v)
                    else:
                        raise b.error("a tree node holds levels (mappings) and `publishers` (a list)",
                                      "namespace", eid, "tree", *path, k)
            if e.get("status") in usable_status:
                self.known[str(e.get("broker"))] = subs
                self.writers[str(e.get("broker"))] = frozenset().union(*subs.values())
                self.depth[str(e.get("broker"))] = depth

    def check(self, ev, det) -> None:
        if type(ev) is not MqttExchange:
            return
        subs = self.known.get(ev.flow.server_ip)
        if subs is None:
            return
        for m in _publishes(ev):
            st = subtree(m.topic, self.depth[ev.flow.server_ip])
            pubs = subs.get(st)
            who = ev.flow.client_ip
            # A known publisher crossing into another subtree; a client that never published at all is the
            # mqtt section's new_topic.
            if (pubs is None or who not in pubs) and who in self.writers[ev.flow.server_ip]:
                where = "/".join(st)
                det.report("otids.baseline.mqtt.new_subtree", ("mqtt.subtree", ev.flow.server_ip, who, st), ev,
                           f"{where} written by " + (", ".join(sorted(pubs)) if pubs else "nobody"),
                           f"{who} publishes {m.topic}", entry=f"namespace {ev.flow.server_ip}")

    def sweep(self, now: int, det) -> None:
        return None
