"""Network part of the baseline: every host that held a conversation on the wire, whatever it speaks (from
the connection records of ids/flow/conn.py), with its MACs and VLANs, the services it offered, the links it
opened (server, transport/port, application protocol), whether it is an internet (global) address, and how
long it may be silent. Enforced: new host, host moved (MAC or VLAN), new link, new service, new port, new
application protocol on a known link, IT remote-access or file-sharing protocol into a host that never used
it, internet address talking to an OT device, host gone silent.

Only conversations count, on both sides (a TCP connection that carried data from the server, or data from
the client after the server's SYN-ACK; an answered UDP or ICMP exchange): scans, floods and probes that never
became a conversation are the always-on detectors' business (ids/detect/network/), so one scan is one scan
alert, not a new-host alert per address tried. A host offers a service only once it answered on it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import ipaddress
from functools import lru_cache

from ...assets import MAX_MACS, NO_MAC
from ...assets.oui import mac_vendor
from ...events import rfc3339
from ...flow.conn import ConnRecord
from ...flow.budget import trim_oldest
from .section import SectionSpec
from ..bounds import SLOT, Budget, text

if TYPE_CHECKING:
    from .document import Baseline

NS = 1_000_000_000
SECTION = SectionSpec("network", ("host",),
                      ("macs", "vlans", "internet", "services", "links", "silent_after", "first_seen", "last_seen",
                       "connections"), "connections", "network")
ROLES = ("client", "server")
DATASETS = ("otids.conn",)
EVENT_FIELDS = """ids.flow.conn.ConnRecord (client = originator): transport, server_port (ICMP: client_port is the
type), protocol (identified application protocol, lower case), client/server ip, mac, vlan, packets and payload
bytes per side, history (Zeek letters), start and ts."""

MAX_HOSTS = 100_000  # hosts learned; beyond, new ones are counted (`otids learn` says so)
HOST_BYTES = 900  # a host with its empty sets (tracemalloc); limits.learner_bytes counts it
LINK_BYTES = 350  # a peer it talks to, with its first service
SWEEP_NS = 10 * NS  # silent hosts are looked for every 10 s of capture time

#: IT remote-access and file-sharing protocols (family -> identified names, and server ports when the
#: protocol was not identified): into a host that never used the family, `it_protocol` (high).
IT_FAMILIES: dict[str, tuple[frozenset, frozenset]] = {
    "rdp": (frozenset({"rdp"}), frozenset({("tcp", 3389), ("udp", 3389)})),
    "vnc": (frozenset({"vnc", "rfb"}), frozenset({("tcp", p) for p in range(5900, 5904)})),
    "ssh": (frozenset({"ssh"}), frozenset({("tcp", 22)})),
    "telnet": (frozenset({"telnet"}), frozenset({("tcp", 23)})),
    "smb": (frozenset({"smb", "smb1", "smb2", "smb3", "smbv1", "smbv23", "netbios", "netbios-ssn", "cifs"}),
            frozenset({("tcp", 445), ("tcp", 139)})),
    "ftp": (frozenset({"ftp", "ftp_control", "ftp-control", "ftp_data", "ftp-data", "ftps"}),
            frozenset({("tcp", 21), ("tcp", 990)})),
    "tftp": (frozenset({"tftp"}), frozenset({("udp", 69)})),
    "nfs": (frozenset({"nfs"}), frozenset({("tcp", 2049), ("udp", 2049)})),
    "winrm": (frozenset({"winrm"}), frozenset({("tcp", 5985), ("tcp", 5986)})),
    "rlogin": (frozenset({"rlogin", "rsh", "rexec"}), frozenset({("tcp", 512), ("tcp", 513), ("tcp", 514)})),
    "teamviewer": (frozenset({"teamviewer"}), frozenset({("tcp", 5938), ("udp", 5938)})),
    "anydesk": (frozenset({"anydesk"}), frozenset({("tcp", 7070)})),
}
_BY_NAME = {n: fam for fam, (names, _) in IT_FAMILIES.items() for n in names}
_BY_PORT = {p: fam for fam, (_, ports) in IT_FAMILIES.items() for p in ports}

#: Industrial protocols: a host that offered or used one is an OT device (for the internet check), and
#: so is every device of the baseline's `assets` section.
OT_PROTOCOLS = frozenset({
    "modbus", "s7comm", "s7comm-plus", "s7comm_plus", "s7commplus", "dnp3", "iec104", "iec60870", "iec-104",
    "iec60870-5-104", "enip", "ethernetip", "ethernet/ip", "cip", "bacnet", "profinet", "profinet-dcp",
    "profinet-rt", "profinet-io", "fins", "omron-fins", "omron_fins", "melsec", "hart-ip", "hartip", "mms",
    "iec61850", "iec61850-mms", "goose", "ads", "beckhoff-ads", "ams", "opcua", "opc-da", "opc_da", "mqtt",
    "codesys", "pcworx", "gesrtp", "ge-srtp"})


@lru_cache(maxsize=65536)
def is_global(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


@lru_cache(maxsize=65536)
def _unicast(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (a.is_multicast or a.is_unspecified or (a.version == 4 and a.packed[3] == 255))


def conversation(r: ConnRecord) -> bool:
    """Did the record carry a conversation (not a scan probe, a flood packet or an unanswered datagram)?"""
    if r.client_ip is None or r.server_ip is None or not _unicast(r.server_ip):
        return False
    if r.transport == "tcp":
        return r.server_payload > 0 or (r.client_payload > 0 and "h" in r.history)
    return r.server_packets > 0


def service(r: ConnRecord) -> str:
    """How a link's service is written: `tcp/502 modbus`, `tcp/4444`, `icmp/8` (ICMP: the type), `gre`."""
    t = r.transport
    if t in ("tcp", "udp", "sctp"):
        s = f"{t}/{r.server_port}"
    elif t in ("icmp", "ipv6-icmp"):
        s = f"{t}/{r.client_port}"
    else:
        s = t
    return f"{s} {r.protocol}" if r.protocol else s


def parse_service(s) -> tuple[tuple, str | None] | None:
    """`tcp/502 modbus` -> (("tcp", 502), "modbus"); None when malformed."""
    if not isinstance(s, str) or not s.strip():
        return None
    head, _, proto = s.strip().partition(" ")
    t, _, port = head.partition("/")
    if not t:
        return None
    if port:
        if not port.isdigit() or int(port) > 65535:
            return None
        key = (t.lower(), int(port))
    else:
        key = (t.lower(), None)
    return key, (proto.strip().lower() or None)


def it_family(transport: str, port, protocol: str | None) -> str | None:
    if protocol:
        fam = _BY_NAME.get(protocol.lower())
        if fam is not None or protocol.lower() not in ("tls", "http", "ssl"):
            return fam
    return _BY_PORT.get((transport, port))


# ---------------------------------------------------------------------------------------------- learning

class _Host:
    __slots__ = ("first", "last", "n", "macs", "vlans", "services", "links", "seen", "gap", "longest", "epoch")

    def __init__(self, ts):
        self.first, self.last = ts, ts
        self.n = 0
        self.macs: set = set()
        self.vlans: set = set()
        self.services: set = set()
        self.links: dict[str, set] = {}
        self.seen = None  # end of its latest connection (for the longest silence)
        self.gap = 0
        self.longest = 0
        self.epoch = 0


class Learner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.hosts: dict[str, _Host] = {}
        self.untracked = 0
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not ConnRecord or not conversation(ev):
            return
        r = ev
        svc = service(r)
        for ip, mac, server in ((r.client_ip, r.client_mac, False), (r.server_ip, r.server_mac, True)):
            h = self.hosts.get(ip)
            if h is None:
                if len(self.hosts) >= MAX_HOSTS or not self.budget.take("network", HOST_BYTES):
                    self.untracked += 1
                    continue
                h = self.hosts[ip] = _Host(r.start)
                h.epoch = epoch
            h.n += 1
            if r.start < h.first:
                h.first = r.start
            if r.ts > h.last:
                h.last = r.ts
            if h.seen is not None and h.epoch == epoch and r.start > h.seen:
                h.gap = max(h.gap, r.start - h.seen)
            h.epoch = epoch
            h.seen = r.ts if h.seen is None or r.ts > h.seen or h.epoch != epoch else h.seen
            h.longest = max(h.longest, r.ts - r.start)
            if mac and mac != NO_MAC and len(h.macs) < MAX_MACS and not is_global(ip):  # spoofed MACs: 16 kept
                h.macs.add(mac.upper())
            if r.vlan:
                h.vlans.add(str(r.vlan[0]))
            if server:
                if svc not in h.services and self.budget.take("network", text(svc) + SLOT):
                    h.services.add(svc)
            else:
                ln = h.links.get(r.server_ip)
                if ln is None:
                    if not self.budget.take("network", LINK_BYTES):
                        continue
                    ln = h.links[r.server_ip] = set()
                if svc not in ln and (not ln or self.budget.take("network", text(svc) + SLOT)):
                    ln.add(svc)

    def entries(self, epochs: dict | None = None) -> list[dict]:
        silent = self.cfg.network_silent_after * NS
        out = []
        for ip, h in self.hosts.items():
            e: dict = {"host": ip, "status": "learned"}
            if h.macs:
                e["macs"] = {m: mac_vendor(m) or "unknown vendor" for m in sorted(h.macs)}
            if h.vlans:
                e["vlans"] = sorted(h.vlans)
            if is_global(ip):
                e["internet"] = True
            if h.services:
                e["services"] = sorted(h.services, key=_svc_key)
            if h.links:
                e["links"] = {s: sorted(v, key=_svc_key) for s, v in sorted(h.links.items(), key=lambda x: _ip(x[0]))}
            # watched for silence when its connections end often (a host seen only through a connection that
            # lasts for hours cannot be told silent from busy) and it talked at least 3 times
            if silent and h.n >= 3 and h.longest < silent and not is_global(ip):
                e["silent_after"] = max(self.cfg.network_silent_after, -(-2 * h.gap // NS))
            e.update(first_seen=rfc3339(h.first), last_seen=rfc3339(h.last), connections=h.n)
            out.append(e)
        return out


def _ip(s: str):
    try:
        a = ipaddress.ip_address(s)
        return (a.version, int(a), "")
    except ValueError:
        return (9, 0, s)


def _svc_key(s: str):
    p = parse_service(s)
    if p is None:
        return ("~", 0, s)
    (t, port), proto = p
    return (t, port if port is not None else -1, proto or "")


# ---------------------------------------------------------------------------------------------- enforcing

class _H:
    __slots__ = ("status", "macs", "vlans", "services", "links", "families", "internet", "silent_after", "ot",
                 "label", "reported_silent")


class Enforcer:
    section = "network"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.cfg = cfg
        self.hosts: dict[str, _H] = {}
        entries = b.section("network")
        self.enabled = bool(entries)  # a baseline learned without connection records checks nothing here
        for eid, e in entries.items():
            h = _H()
            h.status = e["status"]
            h.label = f"network host {e['host']}"
            macs = e.get("macs") or {}
            if not isinstance(macs, (dict, list)):
                raise b.error("macs must map MAC addresses to vendors (or list them)", "network", eid, "macs")
            h.macs = frozenset(str(m).upper() for m in macs)
            vlans = e.get("vlans") or []
            if not isinstance(vlans, list):
                raise b.error("vlans must be a list of VLAN ids", "network", eid, "vlans")
            h.vlans = frozenset(str(v) for v in vlans)
            inet = e.get("internet", False)
            if not isinstance(inet, bool):
                raise b.error("internet must be true or false", "network", eid, "internet")
            h.internet = inet or is_global(str(e["host"]))
            sa = e.get("silent_after")
            if sa is not None and (isinstance(sa, bool) or not isinstance(sa, int) or sa < 1):
                raise b.error("silent_after must be a number of seconds (at least 1)", "network", eid, "silent_after")
            h.silent_after = sa * NS if sa else None
            h.services = {}
            h.families = set()
            protos = set()
            raw = e.get("services") or []
            if not isinstance(raw, list):
                raise b.error("services must be a list like [tcp/502 modbus, udp/161]", "network", eid, "services")
            for s in raw:
                p = _parse_or_raise(b, eid, "services", s)
                h.services.setdefault(p[0], set()).add(p[1])
                protos.add(p[1])
                h.families.add(it_family(p[0][0], p[0][1], p[1]))
            h.links = {}
            links = e.get("links") or {}
            if not isinstance(links, dict):
                raise b.error("links must map server addresses to services", "network", eid, "links")
            for srv, svcs in links.items():
                try:
                    ipaddress.ip_address(str(srv))
                except ValueError:
                    raise b.error(f"links: {srv!r} is not an IP address", "network", eid, "links", srv) from None
                if not isinstance(svcs, list):
                    raise b.error("each link lists services like [tcp/502 modbus]", "network", eid, "links", srv)
                d: dict = {}
                for s in svcs:
                    p = _parse_or_raise(b, eid, "links", s, srv)
                    d.setdefault(p[0], set()).add(p[1])
                    protos.add(p[1])
                    h.families.add(it_family(p[0][0], p[0][1], p[1]))
                h.links[str(srv)] = d
            h.families.discard(None)
            h.ot = bool(protos & OT_PROTOCOLS)
            h.reported_silent = False
            if h.status in usable_status:
                self.hosts[str(e["host"])] = h
        self.ot_hosts = {ip for ip, h in self.hosts.items() if h.ot}
        self.seen: dict[str, int] = {}  # watched host -> last time seen
        self.next_sweep = None
        self.windows: dict[tuple, list] = {}  # (rule, pivot) -> [window start, reported]

    # ------------------------------------------------------------------ the detector's hooks
    def check(self, ev, det) -> None:
        """Protocol events keep hosts alive for the silence check (their connections may last for hours)."""
        f = getattr(ev, "flow", None)
        if f is not None and self.seen:
            ts = ev.ts
            for ip in (f.client_ip, f.server_ip):
                if ip in self.seen and ts > self.seen[ip]:
                    self.seen[ip] = ts

    def record(self, r: ConnRecord, det) -> None:
        if not self.enabled or r.client_ip is None:
            return
        seen = self.seen
        if seen:
            for ip in (r.client_ip, r.server_ip):
                if ip in seen and r.ts > seen[ip]:
                    seen[ip] = r.ts
        if not conversation(r):
            return
        c, s = r.client_ip, r.server_ip
        hc, hs = self.hosts.get(c), self.hosts.get(s)
        svc = service(r)
        key = _svc_parse(r)
        what = f"{c} -> {s} {svc}"
        # 1. denied hosts
        for ip, h in ((c, hc), (s, hs)):
            if h is not None and h.status == "denied":
                det.report("otids.baseline.denied", ("network.denied", ip), r, "no traffic (host denied)", what,
                           entry=h.label, ts=r.start, flow=_flow(r), protocol=r.protocol)
                return
        # 2. an internet address talking to an OT device
        for g, o, ho in ((c, s, hs), (s, c, hc)):
            if is_global(g) and not is_global(o) and (o in self.ot_hosts or o in det.assets):
                known = (hc is not None and s in hc.links)
                if not known:
                    det.report("otids.baseline.network.internet_ot", ("network.internet", g, o), r,
                               f"no internet address talking to OT device {o}", what, entry=f"network host {o}",
                               ts=r.start, flow=_flow(r), protocol=r.protocol)
                    return
        # 3. new hosts (folded per peer beyond network_new_hosts per hold window)
        new = [(ip, peer) for ip, peer, h in ((c, s, hc), (s, c, hs)) if h is None]
        if new:
            for ip, peer in new:
                if ("asset", ip) in det.pending or ("asset", ip) in det.alerted:
                    continue  # already reported by the protocol part as a new asset
                role = "client" if ip == c else "server"
                self._folded(det, "otids.baseline.network.new_host", peer, ip, r,
                             f"{len(self.hosts)} known hosts", f"{ip} as {role} ({what})",
                             lambda xs, peer=peer: f"new hosts talking with {peer}: " + _items(xs))
            return
        # 4. moved: another MAC or VLAN (not blocking)
        for ip, mac, h in ((c, r.client_mac, hc), (s, r.server_mac, hs)):
            if mac and mac != NO_MAC and h.macs and not h.internet and mac.upper() not in h.macs:
                det.report("otids.baseline.network.host_moved", ("network.mac", ip, mac.upper()), r,
                           "MAC " + ", ".join(sorted(h.macs)), f"MAC {mac.upper()}", entry=h.label, ts=r.start,
                           flow=_flow(r), protocol=r.protocol)
            if r.vlan and h.vlans and str(r.vlan[0]) not in h.vlans:
                det.report("otids.baseline.network.host_moved", ("network.vlan", ip, str(r.vlan[0])), r,
                           "VLAN " + ", ".join(sorted(h.vlans)), f"VLAN {r.vlan[0]}", entry=h.label, ts=r.start,
                           flow=_flow(r), protocol=r.protocol)
        # 5. an IT remote-access or file-sharing protocol into a host that never used it
        fam = it_family(r.transport, r.server_port, r.protocol)
        if fam is not None and fam not in hs.families:
            det.report("otids.baseline.network.it_protocol", ("network.it", s, fam), r,
                       f"{s} never used {fam} (" + (", ".join(sorted(hs.families)) or "no remote-access or "
                                                    "file-sharing protocol") + ")",
                       f"{fam} from {c} ({what})", entry=hs.label, ts=r.start, flow=_flow(r), protocol=r.protocol,
                       item=c, item_fmt=lambda xs, fam=fam: f"{fam} from " + _items(xs))
            return
        # 6. the generic part already reported this pair or port (protocol events come first)
        if r.protocol and (("talker", c, s, r.protocol) in det.pending or ("talker", c, s, r.protocol) in det.alerted
                           or ("talker.port", c, s, r.protocol, r.server_port) in det.alerted
                           or ("talker.port", c, s, r.protocol, r.server_port) in det.pending):
            return
        link = hc.links.get(s)
        offered = hs.services.get(key)
        if offered is None and key[0] in ("tcp", "udp", "sctp"):
            self._folded(det, "otids.baseline.network.new_service", c, f"{s} {svc}", r,
                         f"{s} offers " + (", ".join(_fmt(hs.services)) or "no service"),
                         f"{svc} on {s} (from {c})", lambda xs, c=c: f"new services used by {c}: " + _items(xs), entry=hs.label, key=("network.service", s, svc.split(" ")[0]))
            return
        if link is None:
            self._folded(det, "otids.baseline.network.new_link", c, f"{s} {svc}", r,
                         f"{c} talks to " + (", ".join(sorted(hc.links, key=_ip)) or "no host"),
                         f"{what}", lambda xs, c=c: f"new links from {c}: " + _items(xs),
                         entry=hc.label, key=("network.link", c, s))
            return
        protos = link.get(key)
        if protos is None:
            det.report("otids.baseline.network.new_port", ("network.port", c, s, svc.split(" ")[0]), r,
                       f"{c} -> {s} " + ", ".join(_fmt(link)), what, entry=hc.label, ts=r.start, flow=_flow(r),
                       protocol=r.protocol)
            return
        if r.protocol and r.protocol not in protos:
            det.report("otids.baseline.network.new_protocol", ("network.proto", c, s, key, r.protocol), r,
                       f"{c} -> {s} {key[0]}/{key[1]} " + (", ".join(sorted(p for p in protos if p)) or
                                                         "(no protocol identified)"),
                       f"{r.protocol}", entry=hc.label, ts=r.start, flow=_flow(r), protocol=r.protocol)

    def _folded(self, det, rule: str, pivot: str, thing: str, r: ConnRecord, expected: str, seen: str, fmt,
                entry: str | None = None, key: tuple | None = None) -> None:
        """One alert per new thing, but at most `network_new_hosts` per pivot (the peer, or the client) and
        hold window: the rest fold into one alert listing them (a flood from 400 spoofed sources is a
        handful of alerts, not 400)."""
        span = max(self.cfg.hold, 1) * NS
        w = self.windows.get((rule, pivot))
        if w is None or r.start - w[0] >= span:
            if len(self.windows) >= self.cfg.max_tracked:
                trim_oldest(self.windows, self.cfg.max_tracked)
            w = self.windows[(rule, pivot)] = [r.start, set()]
        k = key or (rule, thing)
        if k in det.pending or k in det.alerted or len(w[1]) < self.cfg.network_new_hosts or thing in w[1]:
            w[1].add(thing)
            det.report(rule, k, r, expected, seen, entry=entry or f"network {pivot}", ts=r.start, flow=_flow(r),
                       protocol=r.protocol)
            return
        det.report(rule, (rule, "many", pivot, w[0]), r, expected, seen, entry=f"network {pivot}", ts=r.start,
                   flow=_flow(r), protocol=r.protocol, item=thing, item_fmt=fmt)

    def sweep(self, now: int, det) -> None:
        if not self.enabled:
            return
        if self.next_sweep is None:
            self.next_sweep = now
            for ip, h in self.hosts.items():
                if h.silent_after:
                    self.seen[ip] = now  # watched from the start of enforcement
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_NS
        start = det.epoch_start or now
        for ip, last in self.seen.items():
            h = self.hosts[ip]
            silent = now - max(last, start)
            if silent > h.silent_after:
                if not h.reported_silent:
                    h.reported_silent = True
                    det.report("otids.baseline.network.host_silent", ("network.silent", ip, None), None,
                               f"{ip} seen at least every {h.silent_after // NS} s",
                               f"nothing from {ip} for {silent / NS:.0f} s", entry=h.label, ts=now,
                               flow=None, protocol=None)
            elif h.reported_silent and last > start:
                h.reported_silent = False  # back: a later silence is reported again


def _items(xs) -> str:
    from .enforcer import MAX_ITEMS
    return ", ".join(map(str, xs)) + (" ..." if len(xs) >= MAX_ITEMS else "")


def _parse_or_raise(b: Baseline, eid: str, field: str, s, *more):
    p = parse_service(s)
    if p is None:
        raise b.error(f"{field}: {s!r} is not a service like 'tcp/502 modbus', 'udp/161' or 'icmp/8'",
                      "network", eid, field, *more)
    return p


def _svc_parse(r: ConnRecord) -> tuple:
    p = parse_service(service(r))
    return p[0] if p else (r.transport, None)


def _fmt(services: dict) -> list[str]:
    out = []
    for (t, port), protos in sorted(services.items(), key=lambda x: (x[0][0], x[0][1] if x[0][1] is not None else -1)):
        head = f"{t}/{port}" if port is not None else t
        names = sorted(p for p in protos if p)
        out.append(head + (" " + "/".join(names) if names else ""))
    return out


def _flow(r: ConnRecord):
    from ..network.common import flow_of
    return flow_of(r)
