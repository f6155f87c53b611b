"""OPC UA part of the baseline: per (client, server) the security policies and modes, the services used,
the nodes written and the methods called, and the client's application URIs.

It reads ids.protocols.opcua.messages.OpcuaEvent records (one per exchange), fields listed in EVENT_FIELDS.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .assets import norm_service
from ...units import rfc3339
from .messages import OpcuaEvent
from ...detect.baseline.section import SectionSpec
from ...detect.bounds import SLOT, Budget, text

if TYPE_CHECKING:
    from ...detect.baseline.document import Baseline

SECTION = SectionSpec("opcua", ("client", "server"),
                      ("first_seen", "last_seen", "messages", "security_policies", "security_modes",
                       "application_uris", "services", "nodes_written", "methods_called"),
                      "messages", "opcua")
ROLES = ("opcua_client", "opcua_server")
DATASETS = ("otids.opcua",)
EVENT_FIELDS = """ids.protocols.opcua.messages.OpcuaEvent (flow client = OPC UA client): `service` (Part 4 name: Write, Call,
CreateSession ...; kept lower-case, e.g. `write`), `nodes` (NodeIds in standard string form: on Write the nodes
written, on Call the methods called), `security_policy_uri` (kept by its short name, e.g. Basic256Sha256),
`security_mode` (None, Sign, SignAndEncrypt), `application_uri` (on CreateSession: the client's)."""

MODES = {1: "None", 2: "Sign", 3: "SignAndEncrypt", "none": "None", "sign": "Sign",
         "signandencrypt": "SignAndEncrypt"}


def policy_name(v) -> str | None:
    if not isinstance(v, str) or not v:
        return None
    return v.rsplit("#", 1)[-1] if "#" in v else v


def mode_name(v) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return MODES.get(v.replace("_", "").lower(), v)
    return MODES.get(v, str(v))


class Facts:
    __slots__ = ("service", "policy", "mode", "written", "called", "app_uri")


def facts(ev: OpcuaEvent) -> Facts:
    f = Facts()
    f.service = svc = norm_service(ev.service) or None
    f.policy = policy_name(ev.security_policy_uri)
    f.mode = mode_name(ev.security_mode)
    f.written = ev.nodes if svc == "write" else ()
    f.called = ev.nodes if svc == "call" else ()  # the parser lists the method ids of a Call
    f.app_uri = ev.application_uri if svc == "createsession" else None
    return f


class _Pair:
    __slots__ = ("first", "last", "n", "policies", "modes", "uris", "services", "written", "called")

    def __init__(self, ts):
        self.first = self.last = ts
        self.n = 0
        self.policies, self.modes, self.uris = set(), set(), set()
        self.services, self.written, self.called = set(), set(), set()


PAIR_BYTES = 2_000  # a (client, server) entry with its six empty sets (tracemalloc)


class Learner:
    def __init__(self, cfg):
        self.pairs: dict[tuple, _Pair] = {}
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not OpcuaEvent:
            return
        f = facts(ev)
        key = (ev.flow.client_ip, ev.flow.server_ip)
        p = self.pairs.get(key)
        take = self.budget.take
        if p is None:
            if not take("opcua", PAIR_BYTES):
                return
            p = self.pairs[key] = _Pair(ev.ts)
        p.n += 1
        p.first, p.last = min(p.first, ev.ts), max(p.last, ev.ts)
        for s, v in ((p.policies, f.policy), (p.modes, f.mode), (p.uris, f.app_uri), (p.services, f.service)):
            if v and v not in s and take("opcua", text(v) + SLOT):
                s.add(v)
        for s, vs in ((p.written, f.written), (p.called, f.called)):
            for v in vs:
                if v not in s and take("opcua", text(v) + SLOT):
                    s.add(v)

    def entries(self, epochs: dict | None = None) -> list[dict]:
        out = []
        for (c, s), p in self.pairs.items():
            e = {"client": c, "server": s, "status": "learned", "first_seen": rfc3339(p.first),
                 "last_seen": rfc3339(p.last), "messages": p.n}
            for name, vals in (("security_policies", p.policies), ("security_modes", p.modes),
                               ("application_uris", p.uris), ("services", p.services),
                               ("nodes_written", p.written), ("methods_called", p.called)):
                if vals:
                    e[name] = sorted(vals)
            out.append(e)
        return out


class _Compiled:
    __slots__ = ("label", "status", "policies", "modes", "uris", "services", "written", "called")


def _strings(b: Baseline, eid: str, e: dict, name: str) -> frozenset:
    v = e.get(name) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise b.error(f"{name} must be a list of strings", "opcua", eid, name)
    return frozenset(v)


class Enforcer:
    section = "opcua"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.pairs: dict[tuple, _Compiled] = {}
        for eid, e in b.section("opcua").items():
            c = _Compiled()
            c.label, c.status = f"opcua {e['client']} -> {e['server']}", e["status"]
            c.policies = _strings(b, eid, e, "security_policies")
            c.modes = frozenset(mode_name(m) for m in _strings(b, eid, e, "security_modes"))
            c.uris = _strings(b, eid, e, "application_uris")
            c.services = frozenset(norm_service(x) for x in _strings(b, eid, e, "services"))
            c.written = _strings(b, eid, e, "nodes_written")
            c.called = _strings(b, eid, e, "methods_called")
            if c.status in usable_status:
                self.pairs[(str(e["client"]), str(e["server"]))] = c

    def check(self, ev, det) -> None:
        if type(ev) is not OpcuaEvent:
            return
        key = (ev.flow.client_ip, ev.flow.server_ip)
        c = self.pairs.get(key)
        if c is None:  # a known talker pair without an opcua entry: nothing of it is known
            c = self.pairs[key] = _Compiled()
            c.label, c.status = f"opcua {key[0]} -> {key[1]}", "learned"
            c.policies = c.modes = c.uris = c.services = c.written = c.called = frozenset()
        if c.status == "denied":
            det.report("otids.baseline.denied", ("opcua.denied",) + key, ev, "no traffic (entry denied)",
                       "OPC UA traffic", entry=c.label)
            return
        f = facts(ev)
        if f.policy and f.policy not in c.policies:
            det.report("otids.baseline.opcua.security_changed", ("opcua.policy",) + key + (f.policy,), ev,
                       "security policy " + (", ".join(sorted(c.policies)) or "none learned"),
                       f"security policy {f.policy}", entry=c.label)
        if f.mode and f.mode not in c.modes:
            det.report("otids.baseline.opcua.security_changed", ("opcua.mode",) + key + (f.mode,), ev,
                       "security mode " + (", ".join(sorted(c.modes)) or "none learned"),
                       f"security mode {f.mode}", entry=c.label)
        svc = f.service
        if svc == "write":
            for n in f.written:
                if n not in c.written:
                    det.report("otids.baseline.opcua.new_node_written", ("opcua.write",) + key + (n,), ev,
                               "writes to " + (", ".join(sorted(c.written)) or "no node"), f"write to {n}",
                               entry=c.label)
        elif svc == "call":
            for m in f.called:
                if m not in c.called:
                    det.report("otids.baseline.opcua.new_method_called", ("opcua.call",) + key + (m,), ev,
                               "calls of " + (", ".join(sorted(c.called)) or "no method"), f"call of {m}",
                               entry=c.label)
        elif svc and svc not in c.services:
            det.report("otids.baseline.opcua.new_service", ("opcua.service",) + key + (svc,), ev,
                       "services " + (", ".join(sorted(c.services)) or "none"), f"service {svc}", entry=c.label)

    def sweep(self, now: int, det) -> None:
        pass
