"""The report's data model, built from ECS documents only: alert documents and event documents (protocol
exchanges, data-path notices, and connection records `otids.conn` when the run wrote them), one at a time.

Documents are the contract: `otids report PCAP...` feeds the documents its run renders, `otids report --from`
the lines of an earlier run's NDJSON files, and both build the same model. Events are aggregated as they
come (a 1M-packet capture never sits in memory); alerts are kept (they are few, and each is evidence).
Everything the model returns is sorted, so the same documents give the same report.
"""
from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from datetime import datetime, timezone

from ..units import capture_datetime

SEVERITIES = (("critical", 99), ("high", 73), ("medium", 47), ("low", 21), ("info", 1))
MAX_TIME_KEYS = 20_000  # distinct time keys kept before the base resolution coarsens
NICE_BINS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
               172800, 604800)
TARGET_BINS = 90
MAX_BLOCKS_PER_DEVICE = 200  # Modbus blocks / OPC UA nodes / MQTT topics listed per device
MAX_PEERS_LISTED = 60
MAX_EVIDENCE = 3  # example alerts shown per finding
NO_MAC = "00-00-00-00-00-00"

#: protocol -> (role of the client, role of the server), as the asset inventory names them
ROLES = {"modbus": ("modbus master", "modbus slave"), "opcua": ("opcua client", "opcua server"),
         "mqtt": ("mqtt client", "mqtt broker"), "tls": ("tls client", "tls server")}


def severity_name(score) -> str:
    for name, s in SEVERITIES:
        if isinstance(score, (int, float)) and score >= s:
            return name
    return "info"


def ts_seconds(ts: str) -> float:
    """RFC 3339 UTC (as otids writes it) -> seconds since the epoch."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def rfc3339_s(sec: float) -> str:
    return capture_datetime(int(sec * 1_000_000_000)).strftime("%Y-%m-%dT%H:%M:%SZ")


def subnet_of(ip: str) -> str:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return "other"
    if a.version == 4:
        return str(ipaddress.ip_network(f"{ip}/24", strict=False))
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def ip_key(ip: str):
    try:
        a = ipaddress.ip_address(ip)
        return (a.version, int(a), "")
    except ValueError:
        return (9, 0, ip)


def _get(d: dict, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


class TimeSeries:
    """Counts per (time, series) at the finest resolution memory allows; binned to ~TARGET_BINS at the end."""

    def __init__(self):
        self.res = 1  # seconds per key
        self.data: dict[int, Counter] = defaultdict(Counter)

    def add(self, sec: float, series: str, n: float = 1) -> None:
        k = int(sec // self.res)
        self.data[k][series] += n
        if len(self.data) > MAX_TIME_KEYS:
            self.res *= 10
            old, self.data = self.data, defaultdict(Counter)
            for k0, c in old.items():
                self.data[k0 * (self.res // 10) // self.res].update(c)

    def binned(self, start: float | None, end: float | None, order: list[str]) -> dict:
        if start is None or not self.data:
            return {"bin_s": 0, "labels": [], "series": {s: [] for s in order}}
        span = max(end - start, 1)
        width = next((w for w in NICE_BINS_S if w >= self.res and span / w <= TARGET_BINS), NICE_BINS_S[-1])
        width = max(width, self.res)
        first = int(start // width) * width
        n = int((end - first) // width) + 1
        series = {s: [0] * n for s in order}
        for k, c in self.data.items():
            i = min(max(int((k * self.res - first) // width), 0), n - 1)
            for s, v in c.items():
                if s in series:
                    series[s][i] += v
        labels = [rfc3339_s(first + i * width) for i in range(n)]
        return {"bin_s": width, "labels": labels, "series": series}


class Host:
    __slots__ = ("ip", "macs", "vlans", "roles", "offers", "uses", "peers", "identity", "certs", "events",
                 "first", "last", "bytes", "packets")

    def __init__(self, ip: str):
        self.ip = ip
        self.macs: set[str] = set()
        self.vlans: set[str] = set()
        self.roles: set[str] = set()
        self.offers: set[str] = set()  # protocol/transport/port served
        self.uses: set[str] = set()
        self.peers: dict[str, set[str]] = defaultdict(set)  # peer ip -> protocols
        self.identity: dict[str, set[str]] = defaultdict(set)
        self.certs: dict[str, dict] = {}  # sha256 -> summary
        self.events = 0
        self.first = self.last = None
        self.bytes = 0
        self.packets = 0


class ReportModel:
    """Feed `add_event(doc)` and `add_alert(doc)` in any number, then `build()` -> plain JSON-ready dict."""

    def __init__(self):
        self.hosts: dict[str, Host] = {}
        self.start: float | None = None
        self.end: float | None = None
        self.event_count = 0
        self.datasets: Counter = Counter()
        self.protocol_events: Counter = Counter()
        self.conn_count = 0
        self.conn_packets = 0
        self.conn_bytes = 0
        self.conn_protocols: Counter = Counter()
        self.links_ev: dict[tuple, list] = {}  # (client, server, protocol) -> [exchanges, bytes, packets]
        self.links_conn: dict[tuple, list] = {}
        self.flows_ev: dict[tuple, list] = {}  # (client, server, protocol, transport, port, macs, vlan) -> [n, first, last]
        self.facts: dict[str, Host] = {}  # identity and certificates by address
        self.mix_ev = TimeSeries()
        self.mix_conn = TimeSeries()
        self.notices: Counter = Counter()
        self.modbus: dict[tuple, dict] = defaultdict(dict)  # (slave, unit) -> block key -> stats
        self.opcua: dict[str, dict] = defaultdict(dict)  # server -> (node, service) -> stats
        self.mqtt: dict[str, dict] = defaultdict(dict)  # broker -> topic -> stats
        self.alerts: list[dict] = []
        self._sec_cache: dict[str, float] = {}

    # ------------------------------------------------------------------ input
    def _span(self, sec: float) -> None:
        if self.start is None or sec < self.start:
            self.start = sec
        if self.end is None or sec > self.end:
            self.end = sec

    def _host(self, table: dict, ip: str, sec: float) -> Host:
        h = table.get(ip)
        if h is None:
            h = table[ip] = Host(ip)
            h.first = h.last = sec
        elif sec < h.first:
            h.first = sec
        elif sec > h.last:
            h.last = sec
        return h

    def add_event(self, doc: dict) -> None:
        ev = doc.get("event") or {}
        ds = ev.get("dataset") or "unknown"
        ts = doc.get("@timestamp")
        if not isinstance(ts, str):
            return
        base = self._sec_cache.get(ts[:19])
        if base is None:
            if len(self._sec_cache) > 100_000:
                self._sec_cache.clear()
            base = self._sec_cache[ts[:19]] = ts_seconds(ts[:19] + "Z")
        sec = base + (float(ts[19:-1]) if len(ts) > 21 and ts[19] == "." else 0.0)
        self.event_count += 1
        self.datasets[ds] += 1
        if ds == "otids.conn":
            return self._conn(doc, sec)
        self._span(sec)
        if ds == "otids.flow":
            self.notices[ev.get("action") or "unknown"] += 1
            return
        net = doc.get("network") or {}
        proto = net.get("protocol")
        src, dst = doc.get("source") or {}, doc.get("destination") or {}
        cip, sip = src.get("ip"), dst.get("ip")
        if not proto or not cip or not sip:
            return
        self.protocol_events[proto] += 1
        self.mix_ev.add(sec, proto)
        # per event only a counter on its flow; hosts, roles and services come from the flows in build()
        vlan = net.get("vlan")
        key = (cip, sip, proto, net.get("transport", "?"), dst.get("port"), src.get("mac"), dst.get("mac"),
               vlan.get("id") if isinstance(vlan, dict) else None)
        f = self.flows_ev.get(key)
        if f is None:
            self.flows_ev[key] = [1, sec, sec]
        else:
            f[0] += 1
            if sec < f[1]:
                f[1] = sec
            elif sec > f[2]:
                f[2] = sec
        sub = doc.get(proto)
        if isinstance(sub, dict):
            handler = getattr(self, "_" + proto, None)
            if handler is not None:
                handler(sub, cip, sip, sec)

    def _ident(self, ip: str) -> Host:
        """The host protocol facts (identity, certificates) are recorded on."""
        h = self.facts.get(ip)
        if h is None:
            h = self.facts[ip] = Host(ip)
        return h

    def _hosts_from_flows(self) -> dict[str, Host]:
        hosts: dict[str, Host] = {}
        for (cip, sip, proto, transport, dport, cmac, smac, vlan), (n, first, last) in self.flows_ev.items():
            link = self.links_ev.get((cip, sip, proto))
            if link is None:
                link = self.links_ev[(cip, sip, proto)] = [0, 0, 0]
            link[0] += n
            crole, srole = ROLES.get(proto, (f"{proto} client", f"{proto} server"))
            svc = f"{proto}/{transport}/{dport}"
            for ip, mac, peer, role in ((cip, cmac, sip, crole), (sip, smac, cip, srole)):
                h = hosts.get(ip)
                if h is None:
                    h = hosts[ip] = Host(ip)
                    h.first, h.last = first, last
                else:
                    h.first, h.last = min(h.first, first), max(h.last, last)
                h.events += n
                if mac and mac != NO_MAC:
                    h.macs.add(mac)
                if vlan:
                    h.vlans.add(str(vlan))
                h.peers[peer].add(proto)
                h.roles.add(role)
                (h.offers if ip == sip else h.uses).add(svc)
        for ip, f in self.facts.items():
            h = hosts.get(ip)
            if h is None:
                h = hosts[ip] = Host(ip)
                h.first = h.last = self.start
            for k, v in f.identity.items():
                h.identity[k] |= v
            h.certs.update(f.certs)
        return hosts

    def _conn(self, doc: dict, sec: float) -> None:
        ev = doc.get("event") or {}
        net = doc.get("network") or {}
        src, dst = doc.get("source") or {}, doc.get("destination") or {}
        start, end = ev.get("start"), ev.get("end")
        ssec = ts_seconds(start) if isinstance(start, str) else sec
        if isinstance(end, str):  # @timestamp is when the record was written; the connection ended here
            sec = ts_seconds(end)
        self._span(ssec)
        self._span(sec)
        self.conn_count += 1
        b = int(src.get("bytes") or 0) + int(dst.get("bytes") or 0)
        p = int(src.get("packets") or 0) + int(dst.get("packets") or 0)
        if not b and net.get("bytes"):
            b = int(net["bytes"])
        if not p and net.get("packets"):
            p = int(net["packets"])
        self.conn_bytes += b
        self.conn_packets += p
        transport = net.get("transport") or "?"
        proto = net.get("protocol") or (f"{transport}/{dst.get('port')}" if transport in ("tcp", "udp") else transport)
        self.conn_protocols[proto] += 1
        self.mix_conn.add(ssec, proto, b)
        cip, sip = src.get("ip"), dst.get("ip")
        if not cip or not sip:  # non-IP conversations (ARP, PROFINET...) count in the totals and the mix only
            return
        link = self.links_conn.get((cip, sip, proto))
        if link is None:
            link = self.links_conn[(cip, sip, proto)] = [0, 0, 0]
        link[0] += 1
        link[1] += b
        link[2] += p
        roles = ROLES.get(proto, (f"{proto} client", f"{proto} server")) if net.get("protocol") else (None, None)
        for ip, side, peer, role in ((cip, src, sip, roles[0]), (sip, dst, cip, roles[1])):
            h = self._host(self.hosts, ip, ssec)
            if role:
                h.roles.add(role)
            if sec > h.last:
                h.last = sec
            mac = side.get("mac")
            if mac and mac != NO_MAC:
                h.macs.add(mac)
            vlan = _get(net, "vlan", "id")
            if vlan:
                h.vlans.add(str(vlan))
            h.peers[peer].add(proto)
            h.bytes += b
            h.packets += p

    # protocol-specific activity ---------------------------------------------------------------------
    def _modbus(self, m, cip, sip, sec) -> None:
        unit = m.get("unit_id")
        func = m.get("function") or f"fc{m.get('function_code')}"
        req = m.get("request") or {}
        resp = m.get("response") or {}
        addr = req.get("address")
        key = (func, addr, req.get("quantity"))
        blocks = self.modbus[(sip, unit)]
        st = blocks.get(key)
        if st is None:
            if len(blocks) >= MAX_BLOCKS_PER_DEVICE:
                key = ("(more blocks)", None, None)
                st = blocks.get(key)
            if st is None:
                st = blocks[key] = {"count": 0, "exceptions": 0, "masters": set(), "first": sec, "last": sec,
                                    "values": None}
        st["count"] += 1
        st["last"] = max(st["last"], sec)
        st["masters"].add(cip)
        if m.get("exception"):
            st["exceptions"] += 1
        vals = req.get("values")
        if vals is None:
            vals = resp.get("values")
            if isinstance(vals, list):
                st["values"] = vals[:16]
        elif isinstance(vals, list):  # written values: their range too
            st["values"] = vals[:16]
            nums = [v for v in vals if type(v) is int or type(v) is float]
            if nums:
                lo, hi = min(nums), max(nums)
                st["min"] = lo if st.get("min") is None else min(st["min"], lo)
                st["max"] = hi if st.get("max") is None else max(st["max"], hi)
        idn = resp.get("device_identification")
        if isinstance(idn, dict):
            s = self._ident(sip)
            for k in ("vendor_name", "product_code", "major_minor_revision", "product_name", "model_name"):
                v = idn.get(k)
                if isinstance(v, str) and v.strip():
                    s.identity[f"modbus {k} (unit {unit})"].add(v.strip())
        text = resp.get("server_id_text") or resp.get("additional_data_text")
        if isinstance(text, str) and text.strip():
            self._ident(sip).identity[f"modbus server id (unit {unit})"].add(text.strip())

    def _opcua(self, o, cip, sip, sec) -> None:
        svc = o.get("service") or o.get("message_type") or "?"
        nodes = o.get("nodes") or []
        req = o.get("request") or {}
        written = {}
        for w in req.get("nodes_to_write") or ():
            if isinstance(w, dict) and w.get("node"):
                written[w["node"]] = w.get("value")
        table = self.opcua[sip]
        for node in nodes or (["(no node)"] if svc in ("Call", "Browse") else []):
            key = (node, svc)
            st = table.get(key)
            if st is None:
                if len(table) >= MAX_BLOCKS_PER_DEVICE:
                    continue
                st = table[key] = {"count": 0, "clients": set(), "first": sec, "last": sec, "value": None}
            st["count"] += 1
            st["last"] = max(st["last"], sec)
            st["clients"].add(cip)
            if node in written:
                st["value"] = written[node]
        for side, ip in (("client", cip), ("server", sip)):
            app = req.get("client") if side == "client" else None
            host = None if app is None and o.get(f"{side}_certificate") is None else self._ident(ip)
            if isinstance(app, dict):
                for f in ("application_name", "application_uri", "product_uri"):
                    if app.get(f):
                        host.identity[f"opcua {f}"].add(str(app[f]))
            cert = o.get(f"{side}_certificate")
            if isinstance(cert, dict):
                _cert(host, cert, "opcua")
        for e in _get(o, "response", "server_endpoints") or ():
            app = e.get("server") if isinstance(e, dict) else None
            if isinstance(app, dict):
                for f in ("application_name", "application_uri", "product_uri"):
                    if app.get(f):
                        self._ident(sip).identity[f"opcua {f}"].add(str(app[f]))

    def _mqtt(self, m, cip, sip, sec) -> None:
        con = m.get("connect")
        if isinstance(con, dict):
            for f in ("client_id", "username"):
                if con.get(f):
                    self._ident(cip).identity[f"mqtt {f}"].add(str(con[f]))
        topics = []
        pub = m.get("publish")
        if isinstance(pub, dict) and pub.get("topic"):
            topics.append(("publish", pub["topic"], pub.get("message")))
        for t in _get(m, "subscribe", "topics") or ():
            if isinstance(t, dict) and t.get("topic"):
                topics.append(("subscribe", t["topic"], None))
        table = self.mqtt[sip]
        for kind, topic, msg in topics:
            key = (topic, kind)
            st = table.get(key)
            if st is None:
                if len(table) >= MAX_BLOCKS_PER_DEVICE:
                    continue
                st = table[key] = {"count": 0, "clients": set(), "first": sec, "last": sec, "value": None}
            st["count"] += 1
            st["last"] = max(st["last"], sec)
            st["clients"].add(cip)
            if msg is not None:
                st["value"] = msg

    def _tls(self, t, cip, sip, sec) -> None:
        for side, ip in (("client", cip), ("server", sip)):
            x = _get(t, side, "x509")
            if isinstance(x, dict):
                _cert(self._ident(ip), {"x509": x, "hash": _get(t, side, "hash") or {}}, "tls")
        sni = _get(t, "client", "server_name")
        if sni:
            self._ident(sip).identity["tls server name"].add(str(sni))

    def add_alert(self, doc: dict) -> None:
        ts = doc.get("@timestamp")
        if isinstance(ts, str):
            self._span(ts_seconds(ts))
        self.alerts.append(doc)

    # ------------------------------------------------------------------ output
    def build(self) -> dict:
        conn = self.conn_count > 0
        hosts_ev = self._hosts_from_flows()
        hosts = self.hosts if conn else hosts_ev
        if conn:  # protocol facts (roles, identity, certificates) still come from the protocol events
            for ip, he in hosts_ev.items():
                h = hosts.get(ip)
                if h is None:
                    h = hosts[ip] = he
                    continue
                h.roles |= he.roles
                h.offers |= he.offers
                h.uses |= he.uses
                h.macs |= he.macs
                h.vlans |= he.vlans
                h.events = he.events
                for k, v in he.identity.items():
                    h.identity[k] |= v
                h.certs.update(he.certs)
        alerts = sorted(self.alerts, key=lambda d: (d.get("@timestamp") or "", _get(d, "rule", "id") or "",
                                                    _get(d, "event", "id") or ""))
        sev_counts = Counter(severity_name(_get(a, "event", "severity")) for a in alerts)
        alert_pairs: dict[tuple, set] = defaultdict(set)
        host_alerts: dict[str, Counter] = defaultdict(Counter)
        cert_verdicts: dict[str, list] = defaultdict(list)
        tl = TimeSeries()
        for a in alerts:
            sip, dip = _get(a, "source", "ip"), _get(a, "destination", "ip")
            rid = _get(a, "rule", "id") or "?"
            if sip and dip:
                alert_pairs[tuple(sorted((sip, dip)))].add(rid)
            for ip in {sip, dip} - {None}:
                host_alerts[ip][(rid, _get(a, "rule", "name") or rid, severity_name(_get(a, "event", "severity")))] += 1
            h256 = _get(a, "otids", "alert", "certificate", "hash", "sha256")
            if h256:
                cert_verdicts[h256].append(_get(a, "otids", "alert", "auth", "check") or rid)
            ts = a.get("@timestamp")
            if isinstance(ts, str):
                tl.add(ts_seconds(ts), severity_name(_get(a, "event", "severity")))
        sev_order = [n for n, _ in SEVERITIES]
        protocols = self.conn_protocols if conn else self.protocol_events
        proto_order = [p for p, _ in sorted(protocols.items(), key=lambda x: (-x[1], x[0]))]
        mix = (self.mix_conn if conn else self.mix_ev).binned(self.start, self.end, proto_order)
        links = self.links_conn if conn else self.links_ev
        return {
            "source": "conn" if conn else "events",
            "overview": {
                "start": rfc3339_s(self.start) if self.start is not None else None,
                "end": rfc3339_s(self.end) if self.end is not None else None,
                "duration_s": round(self.end - self.start, 3) if self.start is not None else 0,
                "packets": self.conn_packets if conn else None,
                "bytes": self.conn_bytes if conn else None,
                "connections": self.conn_count if conn else None,
                "hosts": len(hosts),
                "events": self.event_count,
                "datasets": dict(sorted(self.datasets.items())),
                "protocols": {p: protocols[p] for p in proto_order},
                "protocol_events": dict(sorted(self.protocol_events.items())),
                "alerts": len(alerts),
                "alerts_by_severity": {n: sev_counts.get(n, 0) for n in sev_order},
                "notices": dict(sorted(self.notices.items())),
            },
            "timeline": tl.binned(self.start, self.end, sev_order),
            "mix": mix,
            "map": _map(hosts, links, alert_pairs),
            "findings": _findings(alerts),
            "baseline": _baseline(alerts),
            "assets": [_asset(hosts[ip], host_alerts.get(ip, Counter()), cert_verdicts)
                       for ip in sorted(hosts, key=ip_key)],
            "modbus": [{"device": ip, "unit": unit, "blocks": _rows_modbus(b)}
                       for (ip, unit), b in sorted(self.modbus.items(), key=lambda x: (ip_key(x[0][0]), str(x[0][1])))],
            "opcua": [{"device": ip, "nodes": _rows_nodes(t, "clients")}
                      for ip, t in sorted(self.opcua.items(), key=lambda x: ip_key(x[0]))],
            "mqtt": [{"device": ip, "topics": _rows_nodes(t, "clients")}
                     for ip, t in sorted(self.mqtt.items(), key=lambda x: ip_key(x[0]))],
        }


def _none(*_a) -> None:
    return None


def _cert(host: Host, cert: dict, proto: str) -> None:
    x = cert.get("x509") or {}
    h256 = _get(cert, "hash", "sha256")
    key = h256 or str(_get(x, "subject", "distinguished_name"))
    if key in host.certs or len(host.certs) >= 32:
        return

    def cn(n):
        v = _get(x, n, "common_name")
        if isinstance(v, list):
            v = v[0] if v else None
        return v or _get(x, n, "distinguished_name")
    host.certs[key] = {"subject": cn("subject"), "issuer": cn("issuer"), "not_after": x.get("not_after"),
                       "sha256": h256, "protocol": proto, "key": f"{x.get('public_key_algorithm') or ''} "
                                                                   f"{x.get('public_key_size') or ''}".strip()}


def _group(h: Host) -> str:
    vl = ",".join(sorted(h.vlans))
    return f"{subnet_of(h.ip)}" + (f" vlan {vl}" if vl else "")


def _role(h: Host) -> str:
    """The role a map node is drawn with: server roles first (a PLC that is also a client is a PLC)."""
    for r in ("modbus slave", "opcua server", "mqtt broker"):
        if r in h.roles:
            return r
    servers = sorted(r for r in h.roles if r.endswith(("server", "slave", "broker")))
    if servers:
        return servers[0]
    clients = sorted(h.roles)
    return clients[0] if clients else "host"


def _map(hosts: dict[str, Host], links: dict, alert_pairs: dict) -> dict:
    """Nodes with preset positions: one box per subnet (and VLAN), boxes in a grid, hosts inside a box in a
    grid ordered by role then address, so hundreds of hosts stay apart and the picture is the same each time."""
    groups: dict[str, list[Host]] = defaultdict(list)
    for h in hosts.values():
        groups[_group(h)].append(h)
    gnames = sorted(groups, key=lambda g: (ip_key(g.split("/")[0]), g))
    nodes, parents = [], []
    step = 90
    gx = gy = 0
    row_h = 0
    max_row_w = max(1200, int((len(hosts) ** 0.5) * 90 * 1.6))
    for g in gnames:
        members = sorted(groups[g], key=lambda h: (_role(h), ip_key(h.ip)))
        step = max(90, 7 * max(len(h.ip) for h in members) + 20)  # room for the longest label (IPv6)
        cols = max(1, int(len(members) ** 0.5 + 0.999))
        rows = (len(members) + cols - 1) // cols
        w, hgt = cols * step, rows * step
        if gx and gx + w > max_row_w:
            gx, gy, row_h = 0, gy + row_h + 120, 0
        parents.append({"id": "g:" + g, "label": g})
        for i, h in enumerate(members):
            nodes.append({"id": h.ip, "label": h.ip, "parent": "g:" + g, "role": _role(h),
                          "x": gx + (i % cols) * step, "y": gy + (i // cols) * step})
        gx += w + 120
        row_h = max(row_h, hgt)
    agg: dict[tuple, list] = {}
    for (c, s, proto), (n, b, p) in links.items():
        if c not in hosts or s not in hosts:
            continue
        k = (c, s, proto)
        agg[k] = [n, b]
    edges = []
    for (c, s, proto), (n, b) in sorted(agg.items(), key=lambda x: (ip_key(x[0][0]), ip_key(x[0][1]), x[0][2])):
        rules = sorted(alert_pairs.get(tuple(sorted((c, s))), ()))
        edges.append({"source": c, "target": s, "protocol": proto, "count": n, "bytes": b,
                      "alerts": rules[:5], "alerting": bool(rules)})
    return {"groups": parents, "nodes": nodes, "edges": edges}


def exchange_summary(d: dict) -> str:
    """One line saying what the triggering exchange was, from the protocol fields an alert carries."""
    net = d.get("network") or {}
    proto = net.get("protocol")
    src = f"{_get(d, 'source', 'ip')}:{_get(d, 'source', 'port')}"
    dst = f"{_get(d, 'destination', 'ip')}:{_get(d, 'destination', 'port')}"
    head = f"{src} → {dst} {proto or ''}".strip()
    m = d.get(proto) if proto else None
    if not isinstance(m, dict):
        return head if _get(d, "source", "ip") else ""
    parts = []
    if proto == "modbus":
        parts.append(f"unit {m.get('unit_id')} {m.get('function')}")
        req = m.get("request") or {}
        if req.get("address") is not None:
            parts.append(f"address {req['address']}" + (f" ×{req['quantity']}" if req.get("quantity") else ""))
        if req.get("values") is not None:
            parts.append(f"values {_short(req['values'])}")
        if m.get("exception"):
            parts.append(f"exception {m['exception']}")
    elif proto == "opcua":
        parts.append(str(m.get("service") or m.get("message_type")))
        if m.get("nodes"):
            parts.append(_short(m["nodes"]))
        if m.get("security_mode"):
            parts.append(f"security {m['security_mode']}")
    elif proto == "mqtt":
        parts.append("/".join(m.get("types") or []))
        t = _get(m, "publish", "topic")
        if t:
            parts.append(f"topic {t}")
        msg = _get(m, "publish", "message")
        if msg is not None:
            parts.append(f"message {_short(msg)}")
    elif proto == "tls":
        parts.append(str(_get(d, "tls", "version") or ""))
    return f"{head}: " + ", ".join(p for p in parts if p)


def _short(v, n: int = 80) -> str:
    s = v if isinstance(v, str) else str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def _techniques(a: dict) -> list[dict]:
    t = _get(a, "threat", "technique") or {}
    ids, names, refs = t.get("id") or [], t.get("name") or [], t.get("reference") or []
    return [{"id": i, "name": names[k] if k < len(names) else "", "url": refs[k] if k < len(refs) else
             f"https://attack.mitre.org/techniques/{i}/"} for k, i in enumerate(ids)]


def _evidence(a: dict) -> dict:
    al = _get(a, "otids", "alert") or {}
    detail = al.get("baseline") or al.get("auth") or {}
    return {"time": a.get("@timestamp"), "id": _get(a, "event", "id"), "reason": _get(a, "event", "reason"),
            "exchange": exchange_summary(a), "expected": detail.get("expected"), "seen": detail.get("seen"),
            "count": al.get("count", 1)}


def _findings(alerts: list[dict]) -> list[dict]:
    by: dict[str, list[dict]] = defaultdict(list)
    for a in alerts:
        by[_get(a, "rule", "id") or "?"].append(a)
    out = []
    for rid, items in by.items():
        score = max((_get(a, "event", "severity") or 0) for a in items)
        hosts = sorted({ip for a in items for ip in (_get(a, "source", "ip"), _get(a, "destination", "ip")) if ip},
                       key=ip_key)
        first = items[0]
        out.append({"rule": rid, "name": _get(first, "rule", "name") or rid,
                    "description": _get(first, "rule", "description") or "",
                    "detector": _get(first, "otids", "alert", "detector") or "",
                    "severity": severity_name(score), "score": score, "alerts": len(items),
                    "occurrences": sum(int(_get(a, "otids", "alert", "count") or 1) for a in items),
                    "first": items[0].get("@timestamp"), "last": items[-1].get("@timestamp"),
                    "hosts": hosts[:MAX_PEERS_LISTED], "more_hosts": max(0, len(hosts) - MAX_PEERS_LISTED),
                    "techniques": _techniques(first),
                    "evidence": [_evidence(a) for a in items[:MAX_EVIDENCE]]})
    out.sort(key=lambda f: (-f["score"], -f["alerts"], f["rule"]))
    return out


def _baseline(alerts: list[dict]) -> list[dict]:
    out = []
    for a in alerts:
        b = _get(a, "otids", "alert", "baseline")
        if not isinstance(b, dict):
            continue
        out.append({"time": a.get("@timestamp"), "deviation": b.get("deviation") or _get(a, "rule", "id"),
                    "entry": b.get("entry"), "expected": b.get("expected"), "seen": b.get("seen"),
                    "count": _get(a, "otids", "alert", "count") or 1, "first": b.get("first_seen"),
                    "last": b.get("last_seen"), "severity": severity_name(_get(a, "event", "severity"))})
    return out


def _asset(h: Host, alerts: Counter, verdicts: dict) -> dict:
    peers = sorted(h.peers.items(), key=lambda x: ip_key(x[0]))
    certs = []
    for k in sorted(h.certs):
        c = dict(h.certs[k])
        c["verdict"] = sorted(set(verdicts.get(c.get("sha256") or "", []))) or ["no finding"]
        certs.append(c)
    identity = {k: sorted(v) for k, v in sorted(h.identity.items())}
    return {"ip": h.ip, "group": _group(h), "role": _role(h), "macs": sorted(h.macs), "vlans": sorted(h.vlans),
            "summary": identity_summary(identity),
            "roles": sorted(h.roles), "offers": sorted(h.offers), "uses": sorted(h.uses),
            "identity": identity,
            "peers": [{"ip": p, "protocols": sorted(v)} for p, v in peers[:MAX_PEERS_LISTED]],
            "peer_count": len(peers), "certificates": certs,
            "first": rfc3339_s(h.first) if h.first is not None else None,
            "last": rfc3339_s(h.last) if h.last is not None else None,
            "events": h.events, "bytes": h.bytes, "packets": h.packets,
            "alerts": [{"rule": r, "name": n, "severity": s, "count": c}
                       for (r, n, s), c in sorted(alerts.items(), key=lambda x: (-x[1], x[0]))]}


def identity_summary(identity: dict) -> str:
    """One line for tables: vendor, product and revision per Modbus unit (device identification, else the
    server id text), then the OPC UA application name, MQTT client ids and TLS server names."""
    units: dict[str, dict] = defaultdict(dict)
    for k, v in identity.items():
        if k.startswith("modbus ") and "(unit " in k:
            field, unit = k[7:].split(" (unit ", 1)
            units[unit.rstrip(")")][field] = ", ".join(v)
    parts = []
    for unit in sorted(units, key=lambda u: (len(u), u)):
        u = units[unit]
        main = " ".join(u[f] for f in ("vendor_name", "product_code", "major_minor_revision") if u.get(f))
        extra = [u[f] for f in ("product_name", "model_name") if u.get(f)]
        text = (main + (f" ({', '.join(extra)})" if extra else "")) or u.get("server id", "")
        if text:
            parts.append(text if len(units) == 1 else f"unit {unit}: {text}")
    for k in ("opcua application_name", "mqtt client_id", "tls server name"):
        if identity.get(k):
            parts.append(", ".join(identity[k]))
    return "; ".join(parts)


def _rows_modbus(blocks: dict) -> list[dict]:
    rows = []
    for (func, addr, qty), st in blocks.items():
        rows.append({"function": func, "address": addr, "quantity": qty,
                     "last_address": addr + qty - 1 if isinstance(addr, int) and isinstance(qty, int) and qty else addr,
                     "count": st["count"], "exceptions": st["exceptions"],
                     "masters": sorted(st["masters"], key=ip_key), "values": st["values"],
                     "min": st.get("min"), "max": st.get("max"),
                     "first": rfc3339_s(st["first"]), "last": rfc3339_s(st["last"])})
    rows.sort(key=lambda r: (r["address"] if isinstance(r["address"], int) else 1 << 40, r["function"],
                             r["quantity"] or 0))
    return rows


def _rows_nodes(table: dict, who: str) -> list[dict]:
    rows = [{"name": k[0], "kind": k[1], "count": st["count"], who: sorted(st["clients"], key=ip_key),
             "value": st["value"], "first": rfc3339_s(st["first"]), "last": rfc3339_s(st["last"])}
            for k, st in table.items()]
    rows.sort(key=lambda r: (r["name"], r["kind"]))
    return rows
