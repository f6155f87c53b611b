"""Sparkplug part of the baseline (section `sparkplug`, one entry per broker and edge node): who publishes the
edge node's messages, its devices, who commands it and which metrics each sender commanded, and the band of
every numeric metric value it published (the Modbus register bands' counterpart).

Reads the publisher's copy of each PUBLISH only (`to_server`): the broker's deliveries to subscribers are not
the subscribers commanding or publishing. Deviations: a command from a sender never seen commanding this edge
node, a command to a metric that sender never commanded, a metric value outside its learned band.
"""
from __future__ import annotations

import math

from ....detect.baseline.document import Baseline
from ....detect.baseline.section import SectionSpec
from ....detect.bounds import SLOT, Budget, text
from ....detect.baseline.rules import RULES, BaselineRule
from ....events import rfc3339
from ..messages import MqttConnect, MqttExchange, MqttPublish
from .records import SparkplugMessage, datatype_name

SECTION = SectionSpec("sparkplug", ("broker", "edge_node"),
                      ("first_seen", "last_seen", "messages", "publishers", "devices", "commands", "metrics"),
                      "messages", "mqtt")
ROLES = ("mqtt_client", "mqtt_broker")
DATASETS = ("otids.mqtt",)
EVENT_FIELDS = """ids.protocols.mqtt.messages.MqttExchange whose MqttPublish (`to_server`: the publisher's copy) carries a decoded
ids.protocols.mqtt.sparkplug.records.SparkplugMessage in `decoded` (message_type, group_id, edge_node_id,
device_id, metrics with name, datatype, value); the client id from the flow's MqttConnect."""

#: Numeric scalar datatypes whose values get a band (Int8..Double).
_NUMERIC = frozenset(range(1, 11))
#: Counters that change by design on every session: no band.
_NO_BAND = frozenset(("bdSeq",))
MAX_METRICS = 4096  # per edge node
MAX_FLOWS = 65536

# The section's deviations, added to the baseline rule table (#14; kept here so the protocol owns them).
for _r in (
    BaselineRule("otids.baseline.sparkplug.new_command_sender", "New Sparkplug command sender", "high",
                 "A client never seen commanding this edge node sent it an NCMD/DCMD: an engineering laptop, a "
                 "new host application, or an attacker writing to the process.", ("T0855", "T0831")),
    BaselineRule("otids.baseline.sparkplug.new_command_metric", "Sparkplug command to a metric never commanded",
                 "medium", "A known command sender wrote a metric it never wrote before (a set point, a control "
                 "bit, Node Control/Reboot).", ("T0855", "T0836")),
    BaselineRule("otids.baseline.sparkplug.value_out_of_band", "Sparkplug metric value outside its learned band",
                 "medium", "An edge node published (or was commanded) a numeric metric value outside the band "
                 "learned for it: a process upset, a manipulated device, or a malicious command.",
                 ("T0836",)),
):
    RULES.setdefault(_r.id, _r)


def _client_ids(ev: MqttExchange, flows: dict):
    fid = ev.flow.flow_id
    for m in ev.messages:
        if type(m) is MqttConnect and m.to_server:
            if len(flows) >= MAX_FLOWS and fid not in flows:
                flows.clear()
            flows[fid] = m.client_id
    return flows.get(fid)


def facts(ev: MqttExchange):
    """(message, SparkplugMessage) for the publisher's copies of Sparkplug messages in the exchange."""
    for m in ev.messages:
        if type(m) is MqttPublish and m.to_server and type(m.decoded) is SparkplugMessage:
            sp = m.decoded
            if sp.edge_node_id is not None and sp.message_type != "STATE":
                yield m, sp


def _sender(ip: str, cid) -> str:
    return f"{ip} {cid}" if cid else ip


class _Edge:
    __slots__ = ("first", "last", "n", "publishers", "devices", "commands", "metrics")

    def __init__(self, ts):
        self.first = self.last = ts
        self.n = 0
        self.publishers: set = set()
        self.devices: set = set()
        self.commands: dict[str, dict] = {}  # sender -> {metric: count}
        self.metrics: dict[str, list] = {}  # metric -> [datatype, lo, hi, count]


def _scope(sp) -> str:
    return f"{sp.device_id}/" if sp.device_id else ""


EDGE_BYTES = 1_500  # an edge node entry with its empty tables (tracemalloc)
METRIC_BYTES = 300  # a metric's value band or a command's count, besides its name


class Learner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.edges: dict[tuple, _Edge] = {}
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)
        self.flows: dict[int, str | None] = {}

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not MqttExchange:
            return
        cid = _client_ids(ev, self.flows)
        for m, sp in facts(ev):
            key = (ev.flow.server_ip, f"{sp.group_id}/{sp.edge_node_id}")
            e = self.edges.get(key)
            take = self.budget.take
            if e is None:
                if not take("sparkplug", EDGE_BYTES + text(key[1])):
                    continue
                e = self.edges[key] = _Edge(ev.ts)
            e.n += 1
            e.first, e.last = min(e.first, m.ts), max(e.last, m.ts)
            sender = _sender(ev.flow.client_ip, cid)
            if sp.device_id and sp.device_id not in e.devices and take("sparkplug", text(sp.device_id) + SLOT):
                e.devices.add(sp.device_id)
            if sp.message_type in ("NCMD", "DCMD"):
                cmds = e.commands.get(sender)
                if cmds is None:
                    if not take("sparkplug", METRIC_BYTES):
                        continue
                    cmds = e.commands[sender] = {}
                for x in sp.metrics:
                    name = _scope(sp) + (x.name or f"alias {x.alias}")
                    if name in cmds or take("sparkplug", METRIC_BYTES + text(name)):
                        cmds[name] = cmds.get(name, 0) + 1
            elif sp.message_type != "NDEATH" and sender not in e.publishers and take("sparkplug", METRIC_BYTES):
                e.publishers.add(sender)
            for x in sp.metrics:
                v = x.value
                if x.name is None or x.datatype not in _NUMERIC or type(v) not in (int, float) or \
                        (type(v) is float and not math.isfinite(v)) or x.name in _NO_BAND:
                    continue
                name = _scope(sp) + x.name
                b = e.metrics.get(name)
                if b is None:
                    if len(e.metrics) >= MAX_METRICS or not take("sparkplug", METRIC_BYTES + text(name)):
                        continue
                    e.metrics[name] = [x.datatype, v, v, 1]
                else:
                    b[1], b[2], b[3] = min(b[1], v), max(b[2], v), b[3] + 1

    def entries(self, epochs: dict | None = None) -> list[dict]:
        pct = self.cfg.value_margin_percent
        out = []
        for (broker, node), e in sorted(self.edges.items()):
            d: dict = {"broker": broker, "edge_node": node, "status": "learned", "first_seen": rfc3339(e.first),
                       "last_seen": rfc3339(e.last), "messages": e.n}
            if e.publishers:
                d["publishers"] = sorted(e.publishers)
            if e.devices:
                d["devices"] = sorted(e.devices)
            if e.commands:
                d["commands"] = {s: {"metrics": sorted(c)} for s, c in sorted(e.commands.items())}
            if e.metrics:
                mets = {}
                for name in sorted(e.metrics):
                    dt, lo, hi, n = e.metrics[name]
                    margin = (hi - lo) * pct / 100
                    band = [lo - margin, hi + margin]
                    if dt < 9:  # integer types: whole bounds
                        band = [math.floor(band[0]), math.ceil(band[1])]
                    mets[name] = {"datatype": datatype_name(dt), "band": band, "seen": [lo, hi], "count": n}
                d["metrics"] = mets
            out.append(d)
        return out


class _Compiled:
    __slots__ = ("label", "status", "commands", "bands")


class Enforcer:
    section = "sparkplug"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.cfg = cfg
        self.edges: dict[tuple, _Compiled] = {}
        self.flows: dict[int, str | None] = {}
        for eid, e in b.section("sparkplug").items():
            c = _Compiled()
            c.label, c.status = f"sparkplug {e.get('edge_node')} via {e.get('broker')}", e.get("status")
            cmds = e.get("commands") or {}
            if not isinstance(cmds, dict):
                raise b.error("commands must map senders to {metrics: [...]}", "sparkplug", eid, "commands")
            c.commands = {}
            for s, v in cmds.items():
                mets = (v or {}).get("metrics") if isinstance(v, dict) else None
                if mets is not None and not isinstance(mets, list):
                    raise b.error("metrics must be a list of metric names", "sparkplug", eid, "commands", s)
                c.commands[str(s)] = frozenset(str(x) for x in mets or ())
            mets = e.get("metrics") or {}
            if not isinstance(mets, dict):
                raise b.error("metrics must map metric names to {band: [LOW, HIGH]}", "sparkplug", eid, "metrics")
            c.bands = {}
            for name, spec in mets.items():
                band = spec.get("band") if isinstance(spec, dict) else None
                if band is None:
                    continue
                if not (isinstance(band, list) and len(band) == 2 and all(isinstance(x, (int, float)) for x in band)
                        and band[0] <= band[1]):
                    raise b.error("band must be [LOW, HIGH] with LOW <= HIGH", "sparkplug", eid, "metrics", name)
                c.bands[str(name)] = (band[0], band[1])
            if c.status in usable_status:
                self.edges[(str(e.get("broker")), str(e.get("edge_node")))] = c

    def check(self, ev, det) -> None:
        if type(ev) is not MqttExchange:
            return
        cid = _client_ids(ev, self.flows)
        for m, sp in facts(ev):
            node = f"{sp.group_id}/{sp.edge_node_id}"
            key = (ev.flow.server_ip, node)
            c = self.edges.get(key)
            if c is None:
                continue  # a new edge node: the mqtt section reports the new topics
            if c.status == "denied":
                det.report("otids.baseline.denied", ("sparkplug.denied",) + key, ev, "no traffic (entry denied)",
                           f"Sparkplug {sp.message_type}", entry=c.label)
                continue
            sender = _sender(ev.flow.client_ip, cid)
            is_cmd = sp.message_type in ("NCMD", "DCMD")
            if is_cmd:
                known = c.commands.get(sender)
                if known is None:
                    det.report("otids.baseline.sparkplug.new_command_sender", ("sparkplug.sender",) + key + (sender,),
                               ev, "commands from " + (", ".join(sorted(c.commands)) or "nobody"),
                               f"{sp.message_type} from {sender}", entry=c.label)
                else:
                    for x in sp.metrics:
                        name = _scope(sp) + (x.name or f"alias {x.alias}")
                        if name not in known:
                            det.report("otids.baseline.sparkplug.new_command_metric",
                                       ("sparkplug.cmd",) + key + (sender, name), ev,
                                       f"{sender} commands " + (", ".join(sorted(known)) or "nothing"),
                                       f"{sp.message_type} writes {name}", entry=c.label)
            for x in sp.metrics:
                v = x.value
                if x.name is None or type(v) not in (int, float):
                    continue
                name = _scope(sp) + x.name
                band = c.bands.get(name)
                if band is not None and not band[0] <= v <= band[1]:
                    det.report("otids.baseline.sparkplug.value_out_of_band", ("sparkplug.band",) + key + (name,), ev,
                               f"{name} in [{band[0]:g}, {band[1]:g}]",
                               f"{'command' if is_cmd else sp.message_type} {name} = {v:g}", entry=c.label)

    def sweep(self, now: int, det) -> None:
        return None
