"""`otids baseline export-rules`: reviewed baseline entries as allow-list rules in the rule language
(docs/RULES.md). Approved entries become "alert on anything outside what was approved"; denied entries
become "always alert"; learned (unreviewed) entries are left out and counted.

Only what a stateless rule over one event document can say is exported: pairs, ports, function codes,
address ranges, value bands, OPC UA security/services/nodes/methods, MQTT identities/topics/QoS/filters.
Timing (polling and publish periods, stopped polls) needs state across events and stays with
`otids analyze --baseline` (models/README.md says which). The output is deterministic: same baseline,
same bytes.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

import yaml

from ...protocols.modbus.anomalies import MALFORMED
from . import document
from ...protocols.modbus.baseline import ACCESS, REGISTER_WRITES, parse_range
from .rules import RULES

#: Modbus anomalies whose requests the baseline neither learns nor checks (plus answers nobody asked for).
SKIP_ANOMALIES = sorted(MALFORMED | {"unsolicited_response"})
#: One alert per new thing and hour, like the baseline's hold window, not one per packet.
LIMIT = {"type": "limit", "count": 1, "window": "1h"}
#: A documentation address (RFC 5737) for test events of pairs nobody approved.
STRANGER = "192.0.2.66"
#: Candidates for "something not approved" in generated test cases, tried in order.
FC_CANDIDATES = (8, 90, 43, 17, 15, 5, 16, 6, 22, 23, 1, 2, 3, 4, 20, 21, 24, 7, 11, 12)
POLICIES = ("Basic256Sha256", "Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "None")
MODES = ("SignAndEncrypt", "Sign", "None")
SERVICES = ("DeleteNodes", "AddNodes", "HistoryUpdate", "TransferSubscriptions")


@dataclass
class ExportReport:
    rules: int = 0
    approved: dict = field(default_factory=dict)  # section -> entries exported as allow-lists
    denied: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)  # section -> learned entries left out

    def summary(self) -> str:
        def fmt(d):
            return ", ".join(f"{n} {s}" for s, n in d.items() if n) or "none"
        return (f"{self.rules} rules: approved {fmt(self.approved)}; denied {fmt(self.denied)}; "
                f"skipped (learned, not reviewed) {fmt(self.skipped)}")


# ---------------------------------------------------------------------------------------------- helpers

def _ipk(v):
    try:
        a = ipaddress.ip_address(str(v))
        return (0, a.version, int(a))
    except ValueError:
        return (1, 0, str(v))


def _not_one_of(values) -> dict:
    """'Some element is none of these': `not: [..]` would negate the whole list (no element is one of
    them), which misses a write of an approved node together with a new one."""
    alt = "|".join(re.escape(v) for v in sorted(values))
    return {"regex": rf"^(?!(?:{alt})\Z)"}


def _stats(spec, e) -> str:
    n = e.get(spec.count_field)
    span = f"{e.get('first_seen', '?')} .. {e.get('last_seen', '?')}"
    return f"learned from {n if n is not None else '?'} {spec.count_field} ({span})"


def _rid(*parts) -> str:
    return ".".join(str(p) for p in parts if p != "")


def _inside(prefix: str, lo: int, hi: int) -> dict:
    return {f"modbus.request.{prefix}address": {"range": [lo, hi]}, f"modbus.request.{prefix}last_address": {"lte": hi}}


def _ranges(v) -> list[tuple[int, int]]:
    out = []
    for x in v or []:
        r = parse_range(x)
        if r is not None:
            out.append(r)
    out.sort()
    merged: list[list[int]] = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(a, b) for a, b in merged]


def _first_not_in(cands, have, norm=lambda x: x):
    have = {norm(h) for h in have}
    return next((c for c in cands if norm(c) not in have), None)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # a generated file reads top to bottom: no &id001 / *id001
        return True


class _Out:
    """Rules with the comment lines written above each, and banner lines between groups."""

    def __init__(self):
        self.parts: list[tuple[str, object]] = []
        self.n = 0

    def banner(self, text: str) -> None:
        self.parts.append(("banner", text))

    def rule(self, comment: list[str], r: dict) -> None:
        self.parts.append(("rule", (comment, r)))
        self.n += 1

    def text(self) -> str:
        out = []
        for kind, v in self.parts:
            if kind == "banner":
                out += ["", f"  # {'-' * 4} {v} " + "-" * max(4, 100 - len(v))]
                continue
            comment, r = v
            out.append("")
            out += [f"  # {c}" for c in comment]
            body = yaml.dump([r], Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)
            out += ["  " + ln if ln else ln for ln in body.rstrip("\n").split("\n")]
        return "\n".join(out) + "\n"


def _rule(rid, base_id, title, description, protocol, match, tests, group_by=None, severity=None) -> dict:
    meta = RULES[base_id]
    r = {"id": rid, "title": title, "description": description, "severity": severity or meta.severity,
         "protocol": protocol, "match": match}
    if group_by:
        r["threshold"] = dict(LIMIT, group_by=list(group_by))
    if meta.attack:
        r["attack"] = list(meta.attack)
    r["tests"] = [{"match": tests[0]}, {"no_match": tests[1]}]
    return r


# ---------------------------------------------------------------------------------------------- export

def export_rules(b: document.Baseline, name: str) -> tuple[str, ExportReport]:
    """The rule file text for baseline `b` (`name` is what the comments call it) and what went in."""
    rep = ExportReport()
    out = _Out()
    specs = document.sections()
    src = f"baseline {name}"
    by_status: dict[str, dict[str, list]] = {}
    for sec, spec in specs.items():
        ents = sorted(b.section(sec).values(), key=lambda e: document.sort_key(spec, e))
        for st in document.STATUSES:
            by_status.setdefault(sec, {})[st] = [e for e in ents if e.get("status") == st]
        rep.approved[sec] = len(by_status[sec]["approved"])
        rep.denied[sec] = len(by_status[sec]["denied"])
        rep.skipped[sec] = len(by_status[sec]["learned"])

    _assets(out, src, specs["assets"], by_status["assets"])
    _talkers(out, src, specs["talkers"], by_status["talkers"])
    for e in by_status["modbus"]["denied"]:
        _denied(out, src, specs["modbus"], e, "modbus", e["master"], e["slave"], {"modbus.unit_id": e["unit"]})
    for e in by_status["modbus"]["approved"]:
        _modbus(out, src, specs["modbus"], e)
    for e in by_status["opcua"]["denied"]:
        _denied(out, src, specs["opcua"], e, "opcua", e["client"], e["server"])
    for e in by_status["opcua"]["approved"]:
        _opcua(out, src, specs["opcua"], e)
    for e in by_status["mqtt"]["denied"]:
        _denied(out, src, specs["mqtt"], e, "mqtt", e["client"], e["broker"])
    for e in by_status["mqtt"]["approved"]:
        _mqtt(out, src, specs["mqtt"], e)
    rep.rules = out.n

    sha = hashlib.sha256((b.text or "").encode("utf-8")).hexdigest()
    caps = ", ".join(str(c.get("name")) for c in (b.learned.get("captures") or []) if isinstance(c, dict))
    head = [
        f"# Allow-list rules exported from baseline {name} by `otids baseline export-rules` (models/README.md).",
        f"# Baseline sha256 {sha}",
        f"# learned from {caps or 'unknown captures'}, {b.learned.get('first_seen', '?')} .. "
        f"{b.learned.get('last_seen', '?')}.",
        "# Approved entries: rules that alert on traffic outside what was approved. Denied entries: rules that",
        "# always alert. Learned (unreviewed) entries are not exported, so their traffic is outside the",
        "# allow-list and alerts: review them, then export again. Timing (polling/publish periods, stopped",
        "# polls) cannot be said by a rule over one event; `otids analyze --baseline` keeps enforcing it.",
        f"# {rep.summary()}.",
        "# Generated: edit the baseline and export again rather than editing this file.",
        "rules:",
    ]
    if out.n == 0:
        head[-1] = "rules: []"
    return "\n".join(head) + ("\n" + out.text().lstrip("\n") if out.n else "\n"), rep


def _where(src, spec, e, status) -> str:
    return f"From {src}, {document.entry_label(spec, e)} ({status}; {_stats(spec, e)})."


def _comment(src, spec, e) -> list[str]:
    c = [f"{document.entry_label(spec, e)}: {e.get('status')} in {src}; {_stats(spec, e)}"]
    if e.get("note"):
        c.append(f"note: {e['note']}")
    return c


# -- generic

def _assets(out, src, spec, st) -> None:
    denied = st["denied"]
    if not denied:
        return
    out.banner("denied assets")
    for e in denied:
        ip = str(e["ip"])
        for proto in ("modbus", "opcua", "mqtt"):
            out.rule(_comment(src, spec, e), _rule(
                _rid("baseline.asset", ip, "denied", proto), "otids.baseline.denied",
                f"{proto} traffic of denied asset {ip}",
                f"Asset {ip} is denied in the baseline: any {proto} exchange it takes part in alerts. "
                + _where(src, spec, e, "denied"), proto,
                {"any": [{"source.ip": ip}, {"destination.ip": ip}]},
                ({"source.ip": ip, "destination.ip": STRANGER}, {"source.ip": STRANGER, "destination.ip": STRANGER}),
                ("source.ip", "destination.ip")))


def _talkers(out, src, spec, st) -> None:
    approved = st["approved"]
    denied = st["denied"]
    protos = sorted({str(e["protocol"]) for e in approved + denied})
    for proto in protos:
        ap = [e for e in approved if e["protocol"] == proto]
        dn = [e for e in denied if e["protocol"] == proto]
        if proto not in ("modbus", "opcua", "mqtt"):
            continue
        out.banner(f"{proto} talker pairs")
        for e in dn:
            _denied(out, src, spec, e, proto, e["client"], e["server"], tag="talkers")
        if not ap:
            continue
        clauses = []
        for e in ap:
            c = {"source.ip": str(e["client"]), "destination.ip": str(e["server"])}
            ports = sorted(int(p) for p in (e.get("ports") or []))
            if ports:
                c["destination.port"] = ports
            clauses.append(c)
        match = {"not": {"any": clauses}}
        if dn:  # denied pairs have their own rule above; keep them from alerting twice
            match = {"all": [match, {"not": {"any": [{"source.ip": str(e["client"]),
                                                      "destination.ip": str(e["server"])} for e in dn]}}]}
        first = ap[0]
        ok = {"source.ip": str(first["client"]), "destination.ip": str(first["server"])}
        if first.get("ports"):
            ok["destination.port"] = sorted(int(p) for p in first["ports"])[0]
        bad = {"source.ip": STRANGER, "destination.ip": str(first["server"])}
        if "destination.port" in ok:
            bad["destination.port"] = ok["destination.port"]
        lines = [f"approved {proto} talker pairs from {src}:"]
        lines += [f"  {e['client']} -> {e['server']} ports {', '.join(map(str, e.get('ports') or [])) or 'any'}: "
                  f"{_stats(spec, e)}" for e in ap]
        out.rule(lines, _rule(
            _rid("baseline.talkers", proto, "unapproved_pair"), "otids.baseline.new_talker_pair",
            f"{proto} exchange between a pair not approved in the baseline",
            f"A {proto} client and server (and server port) outside the {len(ap)} pair(s) approved in {src}: a new "
            f"device, a new connection between known ones, or a known pair on another port.", proto, match,
            (bad, ok), ("source.ip", "destination.ip", "destination.port")))


def _denied(out, src, spec, e, proto, client, server, extra=None, tag="") -> None:
    client, server = str(client), str(server)
    match = {"source.ip": client, "destination.ip": server, **(extra or {})}
    hit = dict(match)
    miss = dict(match, **{"source.ip": STRANGER})
    out.rule(_comment(src, spec, e), _rule(
        _rid("baseline", tag or spec.name, client, server, *(
            [f"u{extra['modbus.unit_id']}"] if extra and "modbus.unit_id" in extra else []), "denied"),
        "otids.baseline.denied", f"Traffic of denied {document.entry_label(spec, e)}",
        f"{document.entry_label(spec, e)} is denied in the baseline: all of its traffic alerts. "
        + _where(src, spec, e, "denied"), proto, match, (hit, miss), ("source.ip", "destination.ip")))


# -- Modbus

def _modbus(out, src, spec, e) -> None:
    m, s, u = str(e["master"]), str(e["slave"]), int(e["unit"])
    label = document.entry_label(spec, e)
    out.banner(label)
    base = {"source.ip": m, "destination.ip": s, "modbus.unit_id": u}
    pid = _rid("baseline.modbus", m, s, f"u{u}")
    fcs = sorted(int(f) for f in (e.get("functions") or {}))
    names = {int(k): v for k, v in (e.get("functions") or {}).items()}
    skip = {"otids.anomalies": {"not": SKIP_ANOMALIES}}
    where = _where(src, spec, e, "approved")

    # function codes
    bad_fc = _first_not_in(FC_CANDIDATES, fcs)
    if bad_fc is not None:
        ok_fc = fcs[0] if fcs else None
        hit = dict(base, **{"modbus.function_code": bad_fc})
        miss = dict(base, **{"modbus.function_code": ok_fc}) if ok_fc is not None else dict(base, **{"source.ip": STRANGER, "modbus.function_code": bad_fc})
        out.rule(_comment(src, spec, e) + [f"approved function codes: "
                                           + (", ".join(f"{f} {names.get(f, '')}".strip() for f in fcs) or "none")],
                 _rule(_rid(pid, "functions"), "otids.baseline.modbus.new_function",
                       f"Modbus {m} -> {s} unit {u}: function code not approved",
                       f"The master used a function code outside {fcs or 'none'}. {where}", "modbus",
                       {**base, "modbus.function_code": {"not": fcs} if fcs else {"exists": True}, **skip},
                       (hit, miss), ("source.ip", "destination.ip", "modbus.unit_id", "modbus.function_code")))

    # address ranges: per (access, table), the approved function codes that touch it
    tables: dict[tuple, list[int]] = {}
    for fc in fcs:
        if fc in ACCESS:
            tables.setdefault(ACCESS[fc], []).append(fc)
    clauses, notes, case = [], [], None
    for (access, table), tfcs in sorted(tables.items()):
        rng = _ranges(((e.get(access + "s") or {}).get(table)))
        prefix = ""
        c = {"modbus.function_code": tfcs}
        if rng:
            c["not"] = {"any": [_inside(prefix, lo, hi) for lo, hi in rng]}
        clauses.append(c)
        notes.append(f"{access}s of {table} (FC {', '.join(map(str, tfcs))}): "
                     + (", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in rng) or "none approved"))
        if case is None and rng:
            lo, hi = rng[0]
            fc = tfcs[0]
            if hi < 0xFFFF:  # the whole block (largest valid) and one past its end (first invalid)
                ok = dict(base, **{"modbus.function_code": fc, "modbus.request.address": lo,
                                   "modbus.request.quantity": hi - lo + 1, "modbus.request.last_address": hi})
                bad = dict(ok, **{"modbus.request.quantity": hi - lo + 2, "modbus.request.last_address": hi + 1})
                case = (bad, ok)
            elif lo > 0:
                ok = dict(base, **{"modbus.function_code": fc, "modbus.request.address": lo,
                                   "modbus.request.quantity": 1, "modbus.request.last_address": lo})
                case = (dict(ok, **{"modbus.request.address": lo - 1}), ok)
    if 23 in fcs:  # its read half
        rng = _ranges(((e.get("reads") or {}).get("holding_registers")))
        c = {"modbus.function_code": [23]}
        if rng:
            c["not"] = {"any": [_inside("read_", lo, hi) for lo, hi in rng]}
        clauses.append(c)
        notes.append("reads of holding_registers by FC 23 (read half): "
                     + (", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in rng) or "none approved"))
    if clauses and case is not None:
        out.rule(_comment(src, spec, e) + ["approved ranges: " + n for n in notes],
                 _rule(_rid(pid, "ranges"), "otids.baseline.modbus.address_out_of_range",
                       f"Modbus {m} -> {s} unit {u}: access outside approved address ranges",
                       f"A read or write by an approved function code reached addresses outside the ranges approved "
                       f"for its table ({'; '.join(notes)}). {where}", "modbus",
                       {**base, **skip, "any": clauses}, case,
                       ("source.ip", "destination.ip", "modbus.unit_id", "modbus.function_code",
                        "modbus.request.address")))

    # value bands of holding registers, in runs of consecutive registers sharing a band
    wfcs = [f for f in fcs if f in REGISTER_WRITES]
    bands = {}
    for reg, v in sorted(((e.get("values") or {}).get("holding_registers") or {}).items(), key=lambda kv: int(kv[0])):
        band = (v or {}).get("band") if isinstance(v, dict) else None
        if isinstance(band, list) and len(band) == 2:
            bands[int(reg)] = (int(band[0]), int(band[1]))
    runs: list[list] = []
    for reg, band in sorted(bands.items()):
        if runs and runs[-1][1] == reg - 1 and runs[-1][2] == band:
            runs[-1][1] = reg
        else:
            runs.append([reg, reg, band])
    if wfcs and runs:
        clauses = [{**_inside("", lo, hi), "any": [{"modbus.request.values": {"lt": b0}},
                                                  {"modbus.request.values": {"gt": b1}}]} for lo, hi, (b0, b1) in runs]
        lo, hi, (b0, b1) = runs[0]
        fc = 6 if 6 in wfcs else wfcs[0]
        ok = dict(base, **{"modbus.function_code": fc, "modbus.request.address": lo, "modbus.request.quantity": 1,
                           "modbus.request.last_address": lo, "modbus.request.values": [b1]})
        bad = dict(ok, **{"modbus.request.values": [b1 + 1]})
        txt = "; ".join(f"{lo}{'-' + str(hi) if hi != lo else ''}: {b0}..{b1}" for lo, hi, (b0, b1) in runs)
        out.rule(_comment(src, spec, e) + [f"approved value bands (holding registers): {txt}",
                                           "a write spanning registers with different bands is not checked here"],
                 _rule(_rid(pid, "values"), "otids.baseline.modbus.value_out_of_band",
                       f"Modbus {m} -> {s} unit {u}: written value outside its approved band",
                       f"A register write (FC {', '.join(map(str, wfcs))}) inside a block of registers sharing one "
                       f"band wrote a value outside it ({txt}). {where}", "modbus",
                       {**base, **skip, "modbus.function_code": wfcs, "any": clauses}, (bad, ok),
                       ("source.ip", "destination.ip", "modbus.unit_id", "modbus.request.address")))


# -- OPC UA

def _opcua(out, src, spec, e) -> None:
    c, s = str(e["client"]), str(e["server"])
    out.banner(document.entry_label(spec, e))
    base = {"source.ip": c, "destination.ip": s}
    pid = _rid("baseline.opcua", c, s)
    where = _where(src, spec, e, "approved")
    gb = ("source.ip", "destination.ip")
    pols = sorted(str(x) for x in e.get("security_policies") or [])
    modes = sorted(str(x) for x in e.get("security_modes") or [])
    if pols or modes:
        alts = []
        if pols:
            alts.append({"opcua.security_policy.name": {"exists": True, "not": pols}})
        if modes:
            alts.append({"opcua.security_mode": {"exists": True, "not": {"in": modes, "nocase": True}}})
        ok = dict(base, **{"opcua.service": "OpenSecureChannel"})
        if pols:
            ok["opcua.security_policy.name"] = pols[0]
        if modes:
            ok["opcua.security_mode"] = modes[0]
        bad = dict(ok)
        if pols:
            bad["opcua.security_policy.name"] = _first_not_in(POLICIES, pols)
        else:
            bad["opcua.security_mode"] = _first_not_in(MODES, modes, str.lower)
        out.rule(_comment(src, spec, e) + [f"approved security policies {pols or 'any'}, modes {modes or 'any'}"],
                 _rule(_rid(pid, "security"), "otids.baseline.opcua.security_changed",
                       f"OPC UA {c} -> {s}: security policy or mode not approved",
                       f"A secure channel used a policy outside {pols or 'any'} or a mode outside {modes or 'any'}. "
                       f"{where}", "opcua", {**base, "any": alts}, (bad, ok), gb + ("opcua.security_policy.name",)))
    services = sorted(str(x) for x in e.get("services") or [])
    allowed = sorted(set(services) | {"write", "call"})  # writes and calls: the node and method rules below
    ok_svc = next((x for x in services if x not in ("write", "call")), None)
    out.rule(_comment(src, spec, e) + [f"approved services: {', '.join(services) or 'none'}"],
             _rule(_rid(pid, "services"), "otids.baseline.opcua.new_service",
                   f"OPC UA {c} -> {s}: service not approved",
                   f"The client used a service outside {services or 'none'} (writes and calls are checked by node "
                   f"and method). {where}", "opcua",
                   {**base, "opcua.service": {"exists": True, "not": {"in": allowed, "nocase": True}}},
                   (dict(base, **{"opcua.service": _first_not_in(SERVICES, allowed, str.lower)}),
                    dict(base, **{"opcua.service": ok_svc or "Write"})), gb + ("opcua.service",)))
    for svc, key, base_id, what in (("Write", "nodes_written", "otids.baseline.opcua.new_node_written", "node written"),
                                    ("Call", "methods_called", "otids.baseline.opcua.new_method_called", "method called")):
        nodes = sorted(str(x) for x in e.get(key) or [])
        new = "ns=99;s=otids.export.test" if "ns=99;s=otids.export.test" not in nodes else "ns=98;s=otids.export.test"
        cond = _not_one_of(nodes) if nodes else {"exists": True}
        ok = dict(base, **{"opcua.service": svc, "opcua.nodes": nodes[:1]}) if nodes else \
            dict(base, **{"opcua.service": "Read", "opcua.nodes": [new]})
        bad = dict(base, **{"opcua.service": svc, "opcua.nodes": nodes[:1] + [new]})
        out.rule(_comment(src, spec, e) + [f"approved {key.replace('_', ' ')}: {', '.join(nodes) or 'none'}"],
                 _rule(_rid(pid, key), base_id, f"OPC UA {c} -> {s}: {what} not approved",
                       f"A {svc} named a node outside {nodes or 'none'}. {where}", "opcua",
                       {**base, "opcua.service": {"equals": svc, "nocase": True}, "opcua.nodes": cond},
                       (bad, ok), gb + ("opcua.nodes",)))


# -- MQTT

def _mqtt(out, src, spec, e) -> None:
    c, br = str(e["client"]), str(e["broker"])
    out.banner(document.entry_label(spec, e))
    base = {"source.ip": c, "destination.ip": br}
    pid = _rid("baseline.mqtt", c, br)
    where = _where(src, spec, e, "approved")
    gb = ("source.ip", "destination.ip")
    ids = sorted(str(x) for x in e.get("client_ids") or [])
    users = sorted(str(x) for x in e.get("usernames") or [])
    alts = [{"mqtt.connect.client_id": {"exists": True, "not": ids} if ids else {"exists": True}},
            {"mqtt.connect.username": {"exists": True, "not": users + [""]}}]
    ok = dict(base, **{"mqtt.types": ["connect"], "mqtt.connect.client_id": ids[0] if ids else "x"})
    if users:
        ok["mqtt.connect.username"] = users[0]
    bad = dict(ok, **{"mqtt.connect.client_id": "otids-export-test"})
    if not ids:
        ok = dict(base, **{"mqtt.types": ["pingreq"]})
    out.rule(_comment(src, spec, e) + [f"approved client ids {ids or 'none'}, usernames {users or 'none'}"],
             _rule(_rid(pid, "identity"), "otids.baseline.mqtt.new_client_id",
                   f"MQTT {c} -> {br}: client id or username not approved",
                   f"A CONNECT with a client id outside {ids or 'none'} or a username outside {users or 'none'}. "
                   f"{where}", "mqtt", {**base, "any": alts}, (bad, ok),
                   gb + ("mqtt.connect.client_id", "mqtt.connect.username")))
    pubs = {str(k): (v or {}) for k, v in (e.get("publishes") or {}).items()}
    topics = sorted(pubs)
    new = "otids/export/test"
    pub = dict(base, **{"mqtt.types": ["publish"], "mqtt.publish.from_client": True})
    okp = dict(pub, **{"mqtt.publish.topic": topics[0], "mqtt.publish.qos": sorted(pubs[topics[0]].get("qos") or [0])[0]}) \
        if topics else dict(pub, **{"mqtt.publish.from_client": False, "mqtt.publish.topic": new, "mqtt.publish.qos": 0})
    out.rule(_comment(src, spec, e) + [f"approved topics published: {', '.join(topics) or 'none'}"],
             _rule(_rid(pid, "topics"), "otids.baseline.mqtt.new_topic", f"MQTT {c} -> {br}: topic not approved",
                   f"The client published to a topic outside {topics or 'none'} (messages the broker delivers to "
                   f"it do not count). {where}", "mqtt",
                   {**base, "mqtt.publish.from_client": True,
                    "mqtt.publish.topic": {"exists": True, "not": topics} if topics else {"exists": True}},
                   (dict(pub, **{"mqtt.publish.topic": new, "mqtt.publish.qos": 0}), okp), gb + ("mqtt.publish.topic",)))
    qos_alts = []
    for t in topics:
        q = sorted(int(x) for x in pubs[t].get("qos") or [])
        if q and len(q) < 3:
            qos_alts.append({"mqtt.publish.topic": t, "mqtt.publish.qos": {"not": q}})
    if qos_alts:
        t0, q0 = qos_alts[0]["mqtt.publish.topic"], qos_alts[0]["mqtt.publish.qos"]["not"]
        okq = dict(pub, **{"mqtt.publish.topic": t0, "mqtt.publish.qos": q0[0]})
        badq = dict(okq, **{"mqtt.publish.qos": _first_not_in((2, 1, 0), q0)})
        txt = "; ".join(f"{a['mqtt.publish.topic']}: {a['mqtt.publish.qos']['not']}" for a in qos_alts)
        out.rule(_comment(src, spec, e) + [f"approved QoS per topic: {txt}"],
                 _rule(_rid(pid, "qos"), "otids.baseline.mqtt.qos_changed",
                       f"MQTT {c} -> {br}: QoS not approved for the topic",
                       f"The client published to an approved topic with another QoS ({txt}). {where}", "mqtt",
                       {**base, "mqtt.publish.from_client": True, "any": qos_alts}, (badq, okq),
                       gb + ("mqtt.publish.topic", "mqtt.publish.qos")))
    subs = sorted(str(k) for k in (e.get("subscribes") or {}))
    sub = dict(base, **{"mqtt.types": ["subscribe"]})
    oks = dict(sub, **{"mqtt.subscribe.topics": [{"topic": subs[0], "qos": 1}]}) if subs else dict(base, **{"mqtt.types": ["pingreq"]})
    bads = dict(sub, **{"mqtt.subscribe.topics": [{"topic": x, "qos": 1} for x in subs[:1] + ["#"]]})
    if "#" in subs:
        bads = dict(sub, **{"mqtt.subscribe.topics": [{"topic": new, "qos": 1}]})
    out.rule(_comment(src, spec, e) + [f"approved subscriptions: {', '.join(subs) or 'none'}"],
             _rule(_rid(pid, "subscriptions"), "otids.baseline.mqtt.new_subscription",
                   f"MQTT {c} -> {br}: subscription not approved",
                   f"The client subscribed to a topic filter outside {subs or 'none'}. {where}", "mqtt",
                   {**base, "mqtt.subscribe.topics.topic": _not_one_of(subs) if subs else {"exists": True}},
                   (bads, oks), gb + ("mqtt.subscribe.topics.topic",)))


def write_text(path: str | None, text: str) -> None:
    if path is None:
        import sys
        sys.stdout.write(text)
        return
    from .document import write_atomic
    write_atomic(path, text, "rules")
