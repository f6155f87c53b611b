"""Passive asset inventory: every device seen in protocol events, by IP, with its MACs (and their vendor
from the IEEE registry), VLANs, first and last time seen, roles (Modbus master/slave, OPC UA client/server,
MQTT client/broker), the services it offers and uses, and what the traffic says about it: Modbus device
identification (FC 43/14) and server id (FC 17), OPC UA application descriptions, certificates, MQTT client
ids and usernames.

It reads typed records only (never bytes or documents): any event with a `flow` (FlowContext) and a
`protocol` gives roles (declared by each protocol) and services; each protocol's identity extractor
(ids/protocols/<name>/assets.py: Modbus FC 43/14 and 17, OPC UA application descriptions and certificates,
MQTT CONNECT, TLS certificates) adds the protocol-specific facts. Connection records (ids.flow.conn) add
every host seen whatever it speaks, with the protocols identified on its flows and the asset roles their
packages declare (`roles`); ARP packets add stations that only answer ARP. A global (internet) address is
not listed with a MAC that other addresses share: on the wire that is the gateway's (`own_macs`).
`otids assets` prints it; the baseline learner keeps its `assets` section from it.
"""
from __future__ import annotations

import ipaddress

from ..protocols import REGISTRY
from ..units import rfc3339
from ..protocols.modbus.assets import modbus_identity, printable_runs  # noqa: F401  (re-exported)
from ..protocols.modbus.messages import ModbusTransaction
from ..protocols.opcua.assets import norm_service, opcua_identity  # noqa: F401  (re-exported)
from ..flow.conn import ArpPacket, ConnRecord

#: protocol -> (role of the flow's client, role of its server), as each protocol declares them
ROLES = {n: (p.roles["client"], p.roles["server"]) for n, p in REGISTRY.items()
         if "client" in p.roles and "server" in p.roles}
#: record type -> the protocol's identity extractor: ev -> [(side, fact, value)]
IDENTITY = {t: p.identity for p in REGISTRY.values() if p.identity is not None for t in p.records}
NO_MAC = "00-00-00-00-00-00"  # loopback and some tunnels: no hardware address
MAX_PEERS = 1024  # per asset; beyond it peers are counted, not listed
FLOW_CACHE = 65536
MAX_FACTS = 32  # values per identity fact, and certificates, per asset
#: per asset: MACs, VLAN stacks, services offered and services used (each kept up to its cap; beyond it
#: counted in `not_listed`). An IP claimed by 200,000 spoofed MACs held them all (176 MB, a 19 MB listing).
MAX_MACS, MAX_VLANS, MAX_SERVICES = 16, 16, 1024
# What the inventory holds, for limits.assets_bytes (tracemalloc, tests/test_hostile_state.py): an asset with
# its first peer, service, MAC and protocol, and each further peer.
ASSET_BYTES = 1950
PEER_BYTES = 110

#: Modbus FC 43/14 object names (ids.protocols.modbus.consts) shown first, in this order
MODBUS_ID_ORDER = ("vendor_name", "product_code", "major_minor_revision", "vendor_url", "product_name",
                   "model_name", "user_application_name")


_SPEC_ROLES: dict[str, tuple[str, str]] | None = None


def roles_for(protocol: str) -> tuple[str, str]:
    """(client role, server role): the dissected protocols' table, else the identified package's roles."""
    global _SPEC_ROLES
    r = ROLES.get(protocol)
    if r is not None:
        return r
    if _SPEC_ROLES is None:
        from ..protocols import identified
        _SPEC_ROLES = {n: (s.roles.get("client", f"{n}_client"), s.roles.get("server", f"{n}_server"))
                       for n, s in identified().items()}
    return _SPEC_ROLES.get(protocol, (f"{protocol}_client", f"{protocol}_server"))


_global_cache: dict[str, bool] = {}


def is_global(ip: str) -> bool:
    """An internet address: its MAC on the wire is the gateway's, not its own."""
    g = _global_cache.get(ip)
    if g is None:
        if len(_global_cache) > 65536:
            _global_cache.clear()
        try:
            g = ipaddress.ip_address(ip).is_global
        except ValueError:
            g = False
        _global_cache[ip] = g
    return g


def is_station(ip: str) -> bool:
    """An address a device can own: not multicast, broadcast, unspecified or link-local-broadcast."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if a.is_multicast or a.is_unspecified:
        return False
    return not (a.version == 4 and (a == ipaddress.IPv4Address("255.255.255.255") or ip.endswith(".255")))


def ip_sort_key(ip: str):
    try:
        a = ipaddress.ip_address(ip)
        return (a.version, int(a))
    except ValueError:
        return (9, ip)


# ---------------------------------------------------------------------------------------------- identity

def identity_facts(ev) -> list[tuple[str, str, object]]:
    """Identity facts of a typed record, from its protocol's extractor (ids/protocols/<name>/assets.py); []
    for records whose protocol declares none."""
    fn = IDENTITY.get(type(ev))
    return fn(ev) if fn is not None else []


# ---------------------------------------------------------------------------------------------- inventory

class Asset:
    __slots__ = ("ip", "macs", "vlans", "first_seen", "last_seen", "events", "roles", "services", "uses",
                 "peers", "peer_overflow", "identity", "certificates", "protocols", "not_listed")

    def __init__(self, ip: str, ts: int):
        self.ip = ip
        self.macs: set[str] = set()
        self.vlans: set[str] = set()
        self.first_seen = self.last_seen = ts
        self.events = 0
        self.roles: set[str] = set()
        self.services: set[tuple] = set()  # (protocol, transport, port) offered
        self.uses: set[tuple] = set()  # (protocol, transport, server port) used as client
        self.peers: set[str] = set()
        self.peer_overflow = 0
        self.identity: dict = {}  # see Inventory.identity_doc
        self.certificates: dict[str, dict] = {}
        self.protocols: set[str] = set()  # application protocols of its flows (either side)
        self.not_listed = 0  # MACs, VLANs and services beyond their caps (or the byte bound)


def _default_assets_bytes() -> int:
    from ..config import LimitsConfig
    return LimitsConfig.assets_bytes


class Inventory:
    """Builds assets from events. Call `observe(ev)` for every event (it ignores what it cannot use)."""

    def __init__(self, max_bytes: int | None = None):
        self.assets: dict[str, Asset] = {}
        self._flows: dict[int, tuple[Asset, Asset]] = {}
        # limits.assets_bytes: beyond it new addresses are not kept (counted in `dropped`) and known assets
        # take no new peers (counted in their peer_overflow); `capped()` says what was refused
        self.max_bytes = max_bytes if max_bytes is not None else _default_assets_bytes()
        self.used = 0
        self.dropped = 0
        self.peers_refused = 0
        self.facts_refused = 0

    def _new(self, ip: str, ts: int) -> Asset:
        a = Asset(ip, ts)
        if self.used + ASSET_BYTES > self.max_bytes:
            self.dropped += 1
            return a  # used for this event only, not kept
        self.used += ASSET_BYTES
        self.assets[ip] = a
        return a

    def _peer(self, a: Asset, peer: str) -> None:
        if peer in a.peers:
            return
        if len(a.peers) >= MAX_PEERS or self.used + PEER_BYTES > self.max_bytes:
            a.peer_overflow += 1
            if len(a.peers) < MAX_PEERS:
                self.peers_refused += 1
            return
        if a.ip in self.assets:
            self.used += PEER_BYTES
        a.peers.add(peer)

    def _fact(self, a: Asset, s: set, value, cap: int) -> None:
        """Add a MAC, VLAN stack or service to one of `a`'s sets, within its cap and the byte bound (the first
        of each is in ASSET_BYTES, each further one is charged as a peer is)."""
        if value in s:
            return
        if s:
            if len(s) >= cap or self.used + PEER_BYTES > self.max_bytes:
                a.not_listed += 1
                if len(s) < cap:
                    self.facts_refused += 1
                return
            if a.ip in self.assets:
                self.used += PEER_BYTES
        s.add(value)

    def capped(self) -> dict | None:
        """The first time the bound refused something: what and how much (a memory_cap alert's details)."""
        if not (self.dropped or self.peers_refused or self.facts_refused):
            return None
        d = {"pool": "assets", "max_bytes": self.max_bytes, "addresses_not_kept": self.dropped,
             "peers_not_kept": self.peers_refused}
        if self.facts_refused:
            d["facts_not_kept"] = self.facts_refused
        return d

    def _asset(self, ip: str, ts: int) -> Asset:
        a = self.assets.get(ip)
        if a is None:
            a = self._new(ip, ts)
        return a

    def observe(self, ev) -> None:
        t = type(ev)
        if t is ConnRecord:
            return self._conn(ev)
        if t is ArpPacket:
            return self._arp(ev)
        ctx = getattr(ev, "flow", None)
        proto = getattr(ev, "protocol", None)
        if ctx is None or not isinstance(proto, str):
            return
        ts = ev.ts
        pair = self._flows.get(ctx.flow_id)
        if pair is None:
            pair = self._new_flow(ctx, proto, ts)
        c, s = pair
        for a in pair:
            a.events += 1
            if ts > a.last_seen:
                a.last_seen = ts
            elif ts < a.first_seen:
                a.first_seen = ts
        if type(ev) is ModbusTransaction:
            if ev.function_code in (43, 17):
                got = modbus_identity(ev)
                if got:
                    kind, facts = got
                    units = s.identity.setdefault(kind, {})
                    if kind == "modbus_server_id":
                        units[ev.unit_id] = facts["text"]
                    else:
                        units.setdefault(ev.unit_id, {}).update(facts)
        else:
            for side, fact, value in identity_facts(ev):
                a = c if side == "client" else s
                if fact == "certificate":
                    key = str(value.get("sha256") or value.get("subject") or "?")
                    if key in a.certificates or len(a.certificates) < MAX_FACTS:
                        a.certificates[key] = value
                else:
                    vals = a.identity.setdefault(fact, [])
                    if value not in vals and len(vals) < MAX_FACTS:
                        vals.append(value)

    def _new_flow(self, ctx, proto: str, ts: int) -> tuple[Asset, Asset]:
        if len(self._flows) >= FLOW_CACHE:
            self._flows.clear()
        c, s = self._asset(ctx.client_ip, ts), self._asset(ctx.server_ip, ts)
        crole, srole = roles_for(proto)
        c.roles.add(crole)
        s.roles.add(srole)
        svc = (proto, ctx.transport, ctx.server_port)
        self._fact(s, s.services, svc, MAX_SERVICES)
        self._fact(c, c.uses, svc, MAX_SERVICES)
        for a, mac, peer in ((c, ctx.client_mac, s.ip), (s, ctx.server_mac, c.ip)):
            if mac and mac != NO_MAC:
                self._fact(a, a.macs, mac, MAX_MACS)
            if ctx.vlan:
                self._fact(a, a.vlans, "/".join(str(v) for v in ctx.vlan), MAX_VLANS)
            self._peer(a, peer)
        pair = (c, s)
        if c.ip in self.assets and s.ip in self.assets:  # an asset not kept is not cached either
            self._flows[ctx.flow_id] = pair
        return pair

    def _seen(self, ip: str, first: int, last: int) -> Asset:
        a = self.assets.get(ip)
        if a is None:
            a = self._new(ip, first)
        if first < a.first_seen:
            a.first_seen = first
        if last > a.last_seen:
            a.last_seen = last
        a.events += 1
        return a

    def _conn(self, ev: ConnRecord) -> None:
        """A connection record: both hosts (stations only), their protocol, and roles and the service when
        the server answered."""
        if ev.client_ip is None:
            return
        end = ev.end if ev.end is not None else ev.ts
        proto = ev.protocol
        answered = ev.server_packets > 0 and ev.state not in ("REJ", "RSTRH", "RSTOS0", "SH")
        sides = []
        for ip, mac in ((ev.client_ip, ev.client_mac), (ev.server_ip, ev.server_mac)):
            if not is_station(ip):
                sides.append(None)
                continue
            a = self._seen(ip, ev.start, end)
            if mac and mac != NO_MAC:
                self._fact(a, a.macs, mac, MAX_MACS)
            if ev.vlan:
                self._fact(a, a.vlans, "/".join(str(v) for v in ev.vlan), MAX_VLANS)
            if proto:
                a.protocols.add(proto)
            sides.append(a)
        c, s = sides
        if c is not None and s is not None:
            for a, peer in ((c, s.ip), (s, c.ip)):
                self._peer(a, peer)
        if proto and answered:
            crole, srole = roles_for(proto)
            svc = (proto, ev.transport, ev.server_port)
            if s is not None:
                s.roles.add(srole)
                self._fact(s, s.services, svc, MAX_SERVICES)
            if c is not None:
                c.roles.add(crole)
                self._fact(c, c.uses, svc, MAX_SERVICES)

    def _arp(self, ev: ArpPacket) -> None:
        """A station that speaks ARP (gratuitous or answering) is a host, even if it says nothing else."""
        if ev.sender_ip and ev.sender_ip != "0.0.0.0" and is_station(ev.sender_ip):
            a = self._seen(ev.sender_ip, ev.ts, ev.ts)
            if ev.sender_mac and ev.sender_mac != NO_MAC:
                self._fact(a, a.macs, ev.sender_mac, MAX_MACS)

    # ------------------------------------------------------------------ views
    def sorted(self) -> list[Asset]:
        return sorted(self.assets.values(), key=lambda a: ip_sort_key(a.ip))

    @staticmethod
    def identity_doc(a: Asset) -> dict:
        """The asset's identity facts as plain, deterministic data (baseline `identity`, JSON)."""
        out: dict = {}
        mb = a.identity.get("modbus")
        if mb:
            out["modbus"] = {u: {k: mb[u][k] for k in sorted(mb[u], key=_id_order)} for u in sorted(mb)}
        sid = a.identity.get("modbus_server_id")
        if sid:
            out["modbus_server_id"] = {u: sid[u] for u in sorted(sid)}
        for k in sorted(a.identity):
            if k not in ("modbus", "modbus_server_id"):
                out[k] = sorted(a.identity[k])
        return out

    def own_macs(self) -> dict[str, list[str]]:
        """ip -> the MACs that are its own: for a global (internet) address, not one that several addresses
        share (the gateway's, which every internet host is seen behind)."""
        share: dict[str, int] = {}
        for a in self.assets.values():
            for m in a.macs:
                share[m] = share.get(m, 0) + 1
        return {a.ip: sorted(m for m in a.macs if not (is_global(a.ip) and share[m] > 1))
                for a in self.assets.values()}

    def records(self, oui=None) -> list[dict]:
        """JSON-ready inventory, sorted by IP."""
        from .oui import mac_vendor
        lookup = oui.lookup if oui is not None else mac_vendor
        own = self.own_macs()
        out = []
        for a in self.sorted():
            r: dict = {"ip": a.ip,
                       "macs": [{"mac": m, "vendor": lookup(m)} for m in own[a.ip]],
                       "vlans": sorted(a.vlans), "roles": sorted(a.roles),
                       "protocols": sorted(a.protocols),
                       "services": [_svc(x) for x in sorted(a.services)],
                       "uses": [_svc(x) for x in sorted(a.uses)],
                       "identity": self.identity_doc(a),
                       "certificates": [a.certificates[k] for k in sorted(a.certificates)],
                       "peers": len(a.peers) + a.peer_overflow,
                       **({"not_listed": a.not_listed} if a.not_listed else {}),
                       "first_seen": rfc3339(a.first_seen), "last_seen": rfc3339(a.last_seen),
                       "events": a.events}
            r["summary"] = summary(r)
            out.append(r)
        return out


def _id_order(k: str):
    return (MODBUS_ID_ORDER.index(k) if k in MODBUS_ID_ORDER else len(MODBUS_ID_ORDER), k)


def _svc(t: tuple) -> str:
    proto, transport, port = t
    return f"{proto}/{transport}/{port}"


def summary(r: dict) -> str:
    """One line of vendor / product / revision for tables: Modbus identification first, then FC 17 text,
    then OPC UA application (name, URI, product URI), then MQTT client ids."""
    idn = r.get("identity") or {}
    parts: list[str] = []
    for unit, objs in (idn.get("modbus") or {}).items():
        vals = [objs[k] for k in ("vendor_name", "product_code", "major_minor_revision") if objs.get(k)]
        extra = [objs[k] for k in ("product_name", "model_name") if objs.get(k)]
        s = " ".join(vals) + (f" ({', '.join(extra)})" if extra else "")
        if s:
            parts.append(s if len(idn["modbus"]) == 1 else f"unit {unit}: {s}")
    if not parts:
        for unit, text in (idn.get("modbus_server_id") or {}).items():
            parts.append(text if len(idn["modbus_server_id"]) == 1 else f"unit {unit}: {text}")
    for k in ("opcua_application_name", "opcua_application_uri", "opcua_product_uri", "mqtt_client_id"):
        if idn.get(k):
            parts.append(", ".join(idn[k]))
    return "; ".join(parts)
