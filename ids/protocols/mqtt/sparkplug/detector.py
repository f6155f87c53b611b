"""Sparkplug B checks over decoded MQTT exchanges: per edge node session state (seq, bdSeq, births before data,
aliases), host application STATE, commands and reconnaissance subscriptions.

The sensor sees a PUBLISH twice or more: the publisher's copy (client -> broker, `to_server`) and one per
subscriber (broker -> client). Every check that names a sender reads the publisher's copy only, so a
command is attributed to the client that sent it, not to the edge node that received it. Deaths sent by the
broker from a will have no publisher copy; they are taken from the first delivered copy.

Host applications are the clients (address and MQTT client id) that published an online STATE for their
host id (3.0.0 section 7.5), or that received the commanded edge node's NBIRTH as subscribers; a command from
any other client is an alert. Bounded: at most MAX_EDGE_NODES
edge nodes, MAX_FLOWS flows and MAX_HOSTS host ids are tracked (the oldest are forgotten first); the flows'
state is also bounded in bytes (FLOW_STATE_BYTES, what it really holds: every MQTT flow has an entry, so a flood
of MQTT connections fills it), and forgetting flows for that is a memory_cap alert naming `sparkplug.flows`.
"""
from __future__ import annotations

from collections import deque

from ....detect.bounds import Gate, evict_oldest, text
from ....flow import budget
from ....flow.budget import trim_oldest
from ....events import Alert
from ..messages import MqttConnect, MqttExchange, MqttPublish, MqttSubscribe
from ....detect.attack import techniques
from .records import SparkplugMessage

NS = 1_000_000_000
MAX_EDGE_NODES = 16384
MAX_FLOWS = 65536
MAX_HOSTS = 1024
NO_BIRTHS: frozenset = frozenset()
#: The flows' state in bytes, all flows: a flood of 100,000 MQTT clients held 65,536 entries (~13 MB with their
#: client ids) under the count cap alone. At the bound the oldest eighth of the flows is forgotten (a
#: forgotten flow's later traffic is judged as if its CONNECT had not been seen: no data-before-birth check).
FLOW_STATE_BYTES = 4 << 20
#: What one flow's entry holds (tracemalloc, tests/test_bounds_state.py): the _Flow, its flow id (an int the
#: entry keeps alive once the flow has ended) and its dict slot; its client id's text is charged apart
#: (bounds.text), and each edge node in its births at BIRTH_BYTES (a set slot and the key tuple with its texts).
FLOW_BYTES = 190
BIRTH_BYTES = 260
#: Re-alert window per (rule, key): later occurrences are counted into the next alert.
REALERT_NS = 60 * NS
#: NBIRTHs of one edge node within REBIRTH_WINDOW that make a storm.
REBIRTH_COUNT = 5
REBIRTH_WINDOW = 60 * NS
#: A wildcard subscriber that publishes an online STATE within this time is a host application.
HOST_GRACE = 10 * NS
#: seq values just behind the expected one count as reordered or replayed, not as a gap.
REORDER_SPAN = 16
RECON_FILTERS = ("#", "spBv1.0/#", "$sparkplug/certificates/#", "$sparkplug/#")

# id: (name, severity, description, ATT&CK for ICS)
RULES = {
    "rogue_command": (
        "Sparkplug command from a client that is not a host application", "high",
        "An NCMD or DCMD was published by a client that never announced itself as a Sparkplug host application "
        "(online STATE), never received the edge node's NBIRTH as a subscriber (births are not retained, so a "
        "client that connects just to command has not), and was not learned as a command sender: writes to edge "
        "node or device metrics (set points, valves, rebirth, reboot) from an unknown source.", ("T0855", "T0831")),
    "rebirth_storm": (
        "Sparkplug rebirth storm", "medium",
        "An edge node published many NBIRTHs, or was sent many Node Control/Rebirth requests, in a short time: "
        "a flapping connection, a misbehaving host, or an attacker forcing rebirths (load on the edge node and "
        "every host application, data stale meanwhile).", ("T0814",)),
    "seq_gap": (
        "Sparkplug sequence gap", "low",
        "An edge node's message skipped sequence numbers (one counter 0-255 across NBIRTH, DBIRTH, NDATA, "
        "DDATA, DDEATH): messages lost, or injected by another client under the edge node's name.",
        ("T0856",)),
    "seq_reorder": (
        "Sparkplug sequence reordered or replayed", "medium",
        "An edge node's message carried a sequence number already used in its recent past: replayed or "
        "injected data under the edge node's name.", ("T0856", "T0830")),
    "bdseq_mismatch": (
        "Sparkplug bdSeq mismatch between will and NBIRTH", "medium",
        "The NBIRTH's bdSeq differs from the bdSeq of the NDEATH will registered in the same CONNECT (3.0.0 "
        "section 7.2): host applications will mis-pair this session's death, or the birth is forged.",
        ("T0856",)),
    "death_without_birth": (
        "Sparkplug NDEATH without birth", "low",
        "An NDEATH for an edge node that has no live session (no NBIRTH since its last death): a forged death "
        "that marks the edge node's data stale.", ("T0856",)),
    "data_before_birth": (
        "Sparkplug data before birth", "medium",
        "DATA or DBIRTH on a connection that did not publish the edge node's NBIRTH (or the device's DBIRTH) "
        "first (3.0.0 section 7.1): data injected under the edge node's name, or a broken edge node.",
        ("T0856",)),
    "unknown_alias": (
        "Sparkplug metric alias used before definition", "low",
        "A metric carried an alias that the edge node's births never defined: its value cannot be attributed "
        "to a metric (misuse of aliases, or data injected after a birth the sensor saw).", ("T0856",)),
    "state_spoofing": (
        "Sparkplug host STATE spoofed", "high",
        "A STATE for a host application was published by a client other than the host itself: an offline one "
        "makes every edge node configured for that primary host disconnect and fail over (3.0.0 section 7.5), "
        "an online one claims the host's place.",
        ("T0856", "T0814")),
    "state_stale_timestamp": (
        "Sparkplug host STATE with an older timestamp", "medium",
        "A STATE message whose timestamp is older than the last one seen for the host: a replayed STATE.",
        ("T0856", "T0830")),
    "state_cleared": (
        "Sparkplug retained host STATE cleared", "medium",
        "A retained STATE message with an empty payload removes the host's retained STATE from the broker: "
        "edge nodes that connect afterwards see no primary host.", ("T0814",)),
    "wildcard_subscription": (
        "Sparkplug namespace wildcard subscription", "low",
        "A client that is not a host application subscribed to the whole Sparkplug namespace or the "
        "certificate topics: reconnaissance of edge nodes, devices and metrics.", ("T0842", "T0861")),
}


class _Edge:
    __slots__ = ("seq", "born", "dead", "births", "rebirths", "bdseq", "flow", "devices", "last_death")

    def __init__(self):
        self.seq = None  # next expected seq
        self.born = False
        self.dead = False
        self.births: deque = deque(maxlen=REBIRTH_COUNT + 1)
        self.rebirths: deque = deque(maxlen=REBIRTH_COUNT + 1)  # times of Node Control/Rebirth requests
        self.bdseq = None
        self.flow = None  # flow id that published the current NBIRTH
        self.devices: set = set()
        self.last_death = None


class _Flow:
    __slots__ = ("client_id", "connected", "will_bdseq", "will_edge", "births")

    def __init__(self):
        # edge nodes whose NBIRTH the broker delivered to this client; a shared empty one until the first (every
        # MQTT flow has a _Flow: an empty set each was 216 of its ~320 bytes, MAX_FLOWS of them 21 MB)
        self.births = NO_BIRTHS
        self.client_id = None
        self.connected = False  # its CONNECT was seen: births before data can be judged
        self.will_bdseq = None
        self.will_edge = None


class SparkplugDetector:
    """Detector (ids.detect.engine interface): `on_event` -> alerts, `flush` at the end of input."""

    def __init__(self, command_senders: frozenset = frozenset()):
        self.edges: dict[tuple, _Edge] = {}
        self.flows: dict[int, _Flow] = {}
        self.hosts: dict[str, tuple] = {}  # host id -> (client ip, client id) of its online STATE
        self.host_clients: set = set()
        self.state_ts: dict[str, int] = {}
        self.command_senders = set(command_senders)  # (client ip, client id) learned or configured
        self.last: dict[tuple, list] = {}  # (rule, key) -> [ts of last alert, suppressed count]
        self.recon: deque = deque()  # (ts, filter, exchange, flow state) of wildcard subscriptions, oldest first
        self.flow_bytes = 0  # what self.flows holds (FLOW_BYTES a flow, its client id, its births)
        self.flow_cap = FLOW_STATE_BYTES
        self.gate = Gate()  # one memory_cap alert a minute at most

    def accepts(self, t) -> bool:
        return t is MqttExchange

    # ------------------------------------------------------------------ events
    def on_event(self, ev):
        if type(ev) is not MqttExchange:
            return None
        out: list = []
        fl = self._flow(ev.flow.flow_id)
        for m in ev.messages:
            t = type(m)
            if t is MqttPublish:
                sp = m.decoded
                if type(sp) is SparkplugMessage:
                    self._publish(ev, m, sp, fl, out)
            elif t is MqttConnect and m.to_server:
                if fl.client_id is not None:
                    self.flow_bytes -= text(fl.client_id)
                fl.client_id = m.client_id
                if fl.client_id is not None:
                    self.flow_bytes += text(fl.client_id)
                fl.connected = True
                sp = m.decoded
                if type(sp) is SparkplugMessage and sp.message_type == "NDEATH":
                    fl.will_bdseq, fl.will_edge = sp.bdseq, sp.edge_key
            elif t is MqttSubscribe and m.to_server:
                for flt, opts in m.topics:
                    if flt in RECON_FILTERS:
                        if len(self.recon) < MAX_FLOWS:
                            # held HOST_GRACE for its alert: the exchange with this filter alone, not the
                            # SUBSCRIBE's up to 1,024 others (2,000 such packets in 10 s held ~240 MB)
                            one = ev._replace(messages=tuple(x._replace(topics=((flt, opts),)) if x is m else x
                                                             for x in ev.messages))
                            self.recon.append((m.ts, flt, one, fl))
        if self.recon:
            self._recon(ev.ts, out)
        g = budget.SHARED  # limits.memory_total, shared with the other bounded tables
        if self.flow_bytes > self.flow_cap or (g is not None and len(self.flows) > 16 and
                                               not g.hold("sparkplug.flows", self.flow_bytes, self.flow_cap)):
            # the oldest eighth at once (F9: never one key per new key); only here, after the event, so the
            # flow this event changed is charged whole before it can be forgotten
            over = self.flow_bytes > self.flow_cap
            n, freed = evict_oldest(self.flows, _flow_cost)
            self.flow_bytes -= freed
            self.gate.note("sparkplug.flows", self.flow_cap, forgotten=n,
                           **({} if over else {"forgotten_for_memory_total": n}))
        if self.gate.due:
            out += self.gate.alerts(ev.ts, "sparkplug", "the Sparkplug detector's FLOW_STATE_BYTES")
        return out

    def _flow(self, fid: int) -> _Flow:
        fl = self.flows.get(fid)
        if fl is None:
            if len(self.flows) >= MAX_FLOWS:
                self.flow_bytes -= evict_oldest(self.flows, _flow_cost)[1]
            fl = self.flows[fid] = _Flow()
            self.flow_bytes += FLOW_BYTES
        return fl

    def _edge(self, key) -> _Edge:
        e = self.edges.get(key)
        if e is None:
            if len(self.edges) >= MAX_EDGE_NODES:
                trim_oldest(self.edges, MAX_EDGE_NODES)
            e = self.edges[key] = _Edge()
        return e

    def _sender(self, ev, fl) -> tuple:
        return (ev.flow.client_ip, fl.client_id)

    def _publish(self, ev, m, sp: SparkplugMessage, fl: _Flow, out: list) -> None:
        mt = sp.message_type
        if mt == "STATE":
            self._state(ev, m, sp, fl, out)
            return
        key = sp.edge_key
        if key[1] is None:
            return
        node = f"{key[0]}/{key[1]}"
        if mt == "NDEATH":
            self._death(ev, m, sp, key, node, out)
            return
        if not m.to_server:
            if mt == "NBIRTH" and len(fl.births) < MAX_EDGE_NODES:
                if fl.births is NO_BIRTHS:
                    fl.births = set()
                if key not in fl.births:
                    self.flow_bytes += BIRTH_BYTES
                fl.births.add(key)  # a subscriber that knows this edge node's birth: how host applications work
            return
        if "unknown_alias" in sp.problems:
            aliases = sorted({x.alias for x in sp.metrics if x.name is None and x.alias is not None})
            self._alert(out, "unknown_alias", (key, sp.device_id), ev,
                        f"{mt} from {node} uses alias(es) {', '.join(map(str, aliases[:8]))} that no birth "
                        f"defined", {"edge_node": node})
        if mt in ("NCMD", "DCMD"):
            sender = self._sender(ev, fl)
            # Not a host: no online STATE of its own, not a learned sender, and never given this edge node's
            # birth (births are not retained: a client that connects to send a command has not seen one).
            if sender not in self.host_clients and sender not in self.command_senders and key not in fl.births:
                target = node + (f"/{sp.device_id}" if sp.device_id else "")
                names = [x.name or f"alias {x.alias}" for x in sp.metrics][:8]
                self._alert(out, "rogue_command", (sender, key, mt, sp.device_id), ev,
                            f"{mt} to {target} ({', '.join(map(str, names)) or 'no metrics'}) from "
                            f"{sender[0]} client id {sender[1]!r}, not a host application",
                            {"edge_node": node, "sender": sender[0]})
            if mt == "NCMD" and any(x.name == "Node Control/Rebirth" and x.value is True for x in sp.metrics):
                e = self._edge(key)
                e.rebirths.append(m.ts)
                if len(e.rebirths) > REBIRTH_COUNT and m.ts - e.rebirths[0] <= REBIRTH_WINDOW:
                    self._alert(out, "rebirth_storm", (key,), ev,
                                f"{len(e.rebirths)} rebirth requests to {node} within "
                                f"{(m.ts - e.rebirths[0]) / NS:.1f} s, the last from {sender[0]}",
                                {"edge_node": node, "sender": sender[0]})
            return
        e = self._edge(key)
        if mt == "NBIRTH":
            e.births.append(m.ts)
            if len(e.births) > REBIRTH_COUNT and m.ts - e.births[0] <= REBIRTH_WINDOW:
                self._alert(out, "rebirth_storm", (key,), ev,
                            f"{len(e.births)} NBIRTHs from {node} within "
                            f"{(m.ts - e.births[0]) / NS:.1f} s", {"edge_node": node})
            if fl.will_edge == key and fl.will_bdseq is not None and sp.bdseq != fl.will_bdseq:
                self._alert(out, "bdseq_mismatch", (key,), ev,
                            f"NBIRTH from {node} carries bdSeq {sp.bdseq}, its CONNECT will NDEATH bdSeq "
                            f"{fl.will_bdseq}", {"edge_node": node})
            e.born, e.dead, e.flow, e.bdseq = True, False, ev.flow.flow_id, sp.bdseq
            e.devices = set()
            e.seq = None
            self._seq(e, sp, ev, node, out)
            return
        # DBIRTH, NDATA, DDATA, DDEATH
        if fl.connected and (e.flow != ev.flow.flow_id or not e.born):
            self._alert(out, "data_before_birth", (key, ev.flow.flow_id), ev,
                        f"{mt} for {node} on a connection that published no NBIRTH for it", {"edge_node": node})
        elif mt == "DDATA" and fl.connected and sp.device_id not in e.devices:
            self._alert(out, "data_before_birth", (key, sp.device_id, ev.flow.flow_id), ev,
                        f"DDATA for device {sp.device_id} of {node} before its DBIRTH", {"edge_node": node})
        if mt == "DBIRTH":
            e.devices.add(sp.device_id)
        elif mt == "DDEATH":
            e.devices.discard(sp.device_id)
        self._seq(e, sp, ev, node, out)

    def _seq(self, e: _Edge, sp, ev, node, out) -> None:
        s = sp.seq
        if s is None:
            return
        exp = e.seq
        e.seq = (s + 1) & 255
        if exp is None or s == exp:
            return
        behind = (exp - s) & 255
        if 0 < behind <= REORDER_SPAN:
            self._alert(out, "seq_reorder", (sp.edge_key,), ev,
                        f"{sp.message_type} from {node} with seq {s}, expected {exp}", {"edge_node": node})
            e.seq = exp  # keep the forward counter: the late message does not rewind it
        else:
            self._alert(out, "seq_gap", (sp.edge_key,), ev,
                        f"{sp.message_type} from {node} with seq {s}, expected {exp} "
                        f"({(s - exp) & 255} missing)", {"edge_node": node})

    def _death(self, ev, m, sp, key, node, out) -> None:
        e = self._edge(key)
        if not m.to_server:  # a will delivered by the broker: one alert for all its copies
            if e.last_death is not None and m.ts - e.last_death < 2 * NS:
                return
        e.last_death = m.ts
        if e.dead or (not e.born and e.flow is None and self._seen_connect(key)):
            self._alert(out, "death_without_birth", (key,), ev,
                        f"NDEATH for {node} (bdSeq {sp.bdseq}) with no NBIRTH since "
                        + ("its last death" if e.dead else "its connection"), {"edge_node": node})
        e.dead, e.born = True, False
        e.devices = set()

    def _seen_connect(self, key) -> bool:
        return any(f.will_edge == key and f.connected for f in self.flows.values())

    def _state(self, ev, m, sp, fl: _Flow, out) -> None:
        if not m.to_server:
            return
        host = sp.host_id
        sender = self._sender(ev, fl)
        if m.retain and sp.payload_length == 0:
            self._alert(out, "state_cleared", (host, sender), ev,
                        f"retained STATE of host {host} cleared by {sender[0]} client id {sender[1]!r}",
                        {"host_id": host})
            return
        if sp.online is None:
            return
        owner = self.hosts.get(host)
        if owner is not None and owner != sender:
            # Another client speaking for a known host: offline sends its edge nodes away, online claims
            # the host's place (and would make its commands look legitimate): neither moves the ownership.
            self._alert(out, "state_spoofing", (host, sender), ev,
                        f"{'online' if sp.online else 'offline'} STATE for host {host} from {sender[0]} client id "
                        f"{sender[1]!r}; the host is {owner[0]} client id {owner[1]!r}", {"host_id": host})
        elif sp.online:
            if len(self.hosts) >= MAX_HOSTS and host not in self.hosts:
                trim_oldest(self.hosts, MAX_HOSTS)
            self.hosts[host] = sender
            self.host_clients.add(sender)
        ts = sp.timestamp
        if ts is not None and sp.version == "3.0":
            last = self.state_ts.get(host)
            if last is not None and ts < last:
                self._alert(out, "state_stale_timestamp", (host, sender), ev,
                            f"STATE for host {host} with timestamp {ts} older than the last seen ({last})",
                            {"host_id": host})
            else:
                self.state_ts[host] = ts

    def _recon(self, now: int, out) -> None:
        """Wildcard subscriptions pending since HOST_GRACE ago: reconnaissance unless the client has become a
        host (on any client's traffic, so a subscriber that then stays silent is still reported)."""
        recon = self.recon
        while recon and now - recon[0][0] >= HOST_GRACE:
            _, flt, ev, fl = recon.popleft()
            self._recon_alert(fl, ev, flt, out)

    def _recon_alert(self, fl, ev, flt, out) -> None:
        sender = self._sender(ev, fl)
        if sender in self.host_clients:
            return
        self._alert(out, "wildcard_subscription", (sender, flt), ev,
                    f"{sender[0]} client id {sender[1]!r} subscribed to {flt}", {"filter": flt})

    # ------------------------------------------------------------------ alerts
    def _alert(self, out: list, rule: str, key: tuple, ev, reason: str, extra: dict) -> None:
        k = (rule, key)
        st = self.last.get(k)
        if st is not None and ev.ts - st[0] < REALERT_NS:
            st[1] += 1
            return
        count = 1 + (st[1] if st else 0)
        self.last[k] = [ev.ts, 0]
        if len(self.last) > MAX_FLOWS:
            trim_oldest(self.last, MAX_FLOWS)
        name, sev, desc, att = RULES[rule]
        out.append(Alert(ev.ts, f"otids.sparkplug.{rule}", name, desc, sev, reason, "sparkplug",
                         techniques(*att), ev, ev.flow, "mqtt", count, extra={"sparkplug": extra}))

    def flush(self, ts: int):
        out: list = []
        while self.recon:
            _, flt, ev, fl = self.recon.popleft()
            self._recon_alert(fl, ev, flt, out)
        out += self.gate.alerts(ts, "sparkplug", "the Sparkplug detector's FLOW_STATE_BYTES", force=True)
        return out


def _flow_cost(fl: _Flow) -> int:
    """What a flow's entry was charged (FLOW_BYTES, its client id, its births)."""
    return FLOW_BYTES + (text(fl.client_id) if fl.client_id is not None else 0) + BIRTH_BYTES * len(fl.births)


# ------------------------------------------------------------------ plug-in (ids.cli ANALYZE_PLUGINS)
def add_arguments(p) -> None:
    g = p.add_argument_group("Sparkplug B and OPC UA PubSub over MQTT")
    g.add_argument("--no-sparkplug", action="store_true", help="do not run the Sparkplug B checks")
    g.add_argument("--pubsub-require-security", action="store_true",
                   help="alert on OPC UA PubSub messages without message security (UADP SecurityMode None, JSON)")


def baseline_senders(path: str | None, require_approved: bool) -> frozenset:
    """Command senders of a baseline file's sparkplug section ("ADDRESS CLIENT-ID" -> (address, client id)),
    so a sender learned (or approved) there is not a rogue. Errors in the file are reported by the baseline
    plug-in, which loads the same file."""
    import os

    if not path or not os.path.exists(path):
        return frozenset()
    from ....detect.baseline import document as model
    from ....errors import UserError
    try:
        b = model.load(path, shared=True)
    except UserError:
        return frozenset()
    usable = ("approved",) if require_approved else ("approved", "learned")
    out = set()
    for e in b.section("sparkplug").values():
        if e.get("status") in usable and isinstance(e.get("commands"), dict):
            for s in e["commands"]:
                ip, _, cid = str(s).partition(" ")
                out.add((ip, cid or None))
    return frozenset(out)


def build(args, config):
    senders = baseline_senders(getattr(args, "baseline", None) or config.baseline.file,
                               config.baseline.require_approved)
    dets: list = [] if getattr(args, "no_sparkplug", False) else [SparkplugDetector(senders)]
    if getattr(args, "pubsub_require_security", False):
        from ..pubsub.detector import PubSubDetector
        dets.append(PubSubDetector())
    return dets, [], []
