"""Scan and flood detection over connection records (ids.flow.conn.ConnRecord): port (vertical) and address
(horizontal) scans over TCP and UDP, ICMP sweeps, SYN floods. No baseline needed.

What counts is the *attempt*: a TCP connection the client opened with a SYN that carried no payload either
way and did not close normally (Zeek states S0, REJ, RSTO..., anything but SF; a connection picked up
midstream, e.g. keep-alive FINs at the start of a capture, is no attempt), a UDP datagram flow nobody answered, an ICMP
echo/timestamp/address-mask request nobody answered. Conversations never count, so hours of polling raise
nothing. The thresholds are Zeek's scan.zeek (15 ports of one host, 25 hosts on one port, in 5 minutes);
the SYN flood is counted per destination host and port whatever the sources, so a spoofed-source flood is
one finding, not one per source. Each finding alerts once per source (or target) and `realert_after`
seconds; repeats are counted into a follow-up. Decoding, states and payload counts belong to the producer.
"""
from __future__ import annotations

from ...config import NetworkConfig
from ...flow.conn import ConnRecord
from .common import NS, Limiter, flow_of, is_unicast, listed, make_alert, when

ICMP_REQUESTS = {"icmp": frozenset((8, 13, 17)), "ipv6-icmp": frozenset((128,))}  # echo, timestamp, mask


class ScanDetector:
    def __init__(self, cfg: NetworkConfig):
        self.cfg = cfg
        self.window = cfg.scan_window * NS
        self.flood_window = cfg.syn_flood_window * NS
        self.cap = cfg.max_tracked
        self.vertical: dict[tuple, dict] = {}  # (transport, src, dst) -> {port: start}
        self.horizontal: dict[tuple, dict] = {}  # (transport, src, port) -> {dst: start}
        self.sweep: dict[str, dict] = {}  # src -> {dst: start}
        self.flood: dict[tuple, list] = {}  # (dst, port) -> [window start, attempts, sources]
        self.tries: dict[tuple, int] = {}  # (rule, src) -> attempts not yet reported by an alert
        self.limit = Limiter(cfg.realert_after * NS, cfg.max_tracked)
        self.out: list = []

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): the `network:` thresholds of the new config; what was counted starts afresh."""
        self.__init__(config.network)

    def accepts(self, t: type) -> bool:
        return t is ConnRecord

    def on_event(self, r: ConnRecord):
        t = r.transport
        src, dst = r.client_ip, r.server_ip
        if src is None or dst is None or not is_unicast(dst):
            return None
        if t == "tcp":
            if r.client_payload or r.server_payload or r.state == "SF" or "S" not in r.history:
                return None  # a conversation, or no SYN from the client (midstream: the capture began later)
            self._flood(r)
            self._scan(r, "otids.network.scan.port_scan", "otids.network.scan.address_scan")
        elif t == "udp":
            if r.server_packets:
                return None
            self._scan(r, "otids.network.scan.udp_scan", "otids.network.scan.udp_scan")
        elif t in ICMP_REQUESTS:
            if r.server_packets or r.client_port not in ICMP_REQUESTS[t]:
                return None
            self._sweep(r)
        else:
            return None
        if self.out:
            out, self.out = self.out, []
            return out
        return None

    # ------------------------------------------------------------------ counting
    def _add(self, table: dict, key, target, start: int, threshold: int):
        """Remember `target` under `key`; return the targets when `threshold` distinct ones fall within the
        scan window (and forget them: the next finding starts afresh)."""
        d = table.get(key)
        if d is None:
            if len(table) >= self.cap:
                table.pop(next(iter(table)))
            d = table[key] = {}
        if d.get(target, -1) < start:
            d[target] = start
        if len(d) < threshold:
            return None
        lo = max(d.values()) - self.window
        if min(d.values()) < lo:
            for k in [k for k, v in d.items() if v < lo]:
                del d[k]
            if len(d) < threshold:
                return None
        del table[key]
        return d

    def _try(self, lkey: tuple) -> None:
        n = self.tries.get(lkey)
        if n is None:
            if len(self.tries) >= self.cap:
                self.tries.pop(next(iter(self.tries)))
            n = 0
        self.tries[lkey] = n + 1

    def _scan(self, r: ConnRecord, vertical_rule: str, horizontal_rule: str) -> None:
        t, src, dst, port, ts = r.transport, r.client_ip, r.server_ip, r.server_port, r.start
        name = t.upper()
        for rule, table, key, target, threshold in (
                (vertical_rule, self.vertical, (t, src, dst), port, self.cfg.port_scan_ports),
                (horizontal_rule, self.horizontal, (t, src, port), dst, self.cfg.address_scan_hosts)):
            lkey = (rule, src)
            first_pass = vertical_rule != horizontal_rule or table is self.vertical  # UDP: one rule, count once
            if self.limit.active(lkey, ts):
                if first_pass:
                    self.limit.fire(lkey, ts)
                continue
            if first_pass:
                self._try(lkey)
            hit = self._add(table, key, target, ts, threshold)
            if hit is None:
                continue
            follow = lkey in self.limit.findings
            n = self.limit.fire(lkey, ts, self.tries.pop(lkey, 1))
            self.limit.note(lkey, r)
            if not n:
                continue
            first, last = min(hit.values()), max(hit.values())
            if table is self.vertical:
                what = (f"{src} tried {len(hit)} {name} ports of {dst} without a conversation "
                        f"(ports {', '.join(map(str, listed(hit)))}{' ...' if len(hit) > len(listed(hit)) else ''})")
                details = {"kind": "vertical", "hosts": [dst], "host_count": 1, "ports": listed(hit),
                           "port_count": len(hit)}
            else:
                what = (f"{src} tried {name} port {port} on {len(hit)} hosts without a conversation "
                        f"({', '.join(listed(hit))}{' ...' if len(hit) > len(listed(hit)) else ''})")
                details = {"kind": "horizontal", "hosts": listed(hit), "host_count": len(hit), "ports": [port],
                           "port_count": 1}
            reason = what + f" within {(last - first) / NS:.0f} s"
            if follow:
                reason += f"; {n} attempts since the last alert"
            details.update(first_seen=when(first), last_seen=when(last), follow_up=follow)
            self.out.append(make_alert(rule, ts, reason, n, details, flow=flow_of(r)))

    def _sweep(self, r: ConnRecord) -> None:
        src, ts = r.client_ip, r.start
        rule = "otids.network.scan.icmp_sweep"
        lkey = (rule, src)
        if self.limit.active(lkey, ts):
            self.limit.fire(lkey, ts)
            return
        self._try(lkey)
        hit = self._add(self.sweep, src, r.server_ip, ts, self.cfg.icmp_sweep_hosts)
        if hit is None:
            return
        follow = lkey in self.limit.findings
        n = self.limit.fire(lkey, ts, self.tries.pop(lkey, 1))
        self.limit.note(lkey, r)
        if not n:
            return
        first, last = min(hit.values()), max(hit.values())
        more = " ..." if len(hit) > len(listed(hit)) else ""
        reason = (f"{src} sent unanswered ICMP requests to {len(hit)} hosts within {(last - first) / NS:.0f} s "
                  f"({', '.join(listed(hit))}{more})")
        if follow:
            reason += f"; {n} requests since the last alert"
        self.out.append(make_alert(rule, ts, reason, n, {
            "kind": "sweep", "hosts": listed(hit), "host_count": len(hit), "first_seen": when(first),
            "last_seen": when(last), "follow_up": follow}, flow=flow_of(r)))

    def _flood(self, r: ConnRecord) -> None:
        key = (r.server_ip, r.server_port)
        ts = r.start
        rule = "otids.network.flood.syn_flood"
        lkey = (rule,) + key
        if self.limit.active(lkey, ts):
            self.limit.fire(lkey, ts)
            return
        w = self.flood.get(key)
        if w is None or ts - w[0] > self.flood_window:
            if w is None and len(self.flood) >= self.cap:
                self.flood.pop(next(iter(self.flood)))
            w = self.flood[key] = [ts, 0, set()]
        w[1] += 1
        if len(w[2]) < 4096:
            w[2].add(r.client_ip)
        if w[1] < self.cfg.syn_flood_attempts:
            return
        attempts, sources = w[1], w[2]
        del self.flood[key]
        follow = lkey in self.limit.findings
        n = self.limit.fire(lkey, ts, attempts)
        self.limit.note(lkey, r)
        if not n:
            return
        srcs = f"{len(sources)}{'+' if len(sources) >= 4096 else ''} source(s)"
        reason = (f"{attempts} connection attempts without a conversation to {r.server_ip} port {r.server_port} "
                  f"from {srcs} within {self.cfg.syn_flood_window} s")
        if follow:
            reason += f"; {n} attempts since the last alert"
        self.out.append(make_alert(rule, ts, reason, n, {
            "kind": "flood", "hosts": [r.server_ip], "host_count": 1, "ports": [r.server_port], "port_count": 1,
            "source_count": len(sources), "sources": listed(sources), "first_seen": when(w[0]),
            "last_seen": when(ts), "follow_up": follow}, flow=flow_of(r)))

    # ------------------------------------------------------------------ end
    def flush(self, ts: int):
        """End of input: findings that went on after their alert get one follow-up with the count."""
        out, self.out = self.out, []
        for (rule, *key), n, last, r in self.limit.leftovers():
            if r is None:
                continue
            if rule == "otids.network.flood.syn_flood":
                what = f"{n} more connection attempts to {key[0]} port {key[1]}"
            elif rule == "otids.network.scan.icmp_sweep":
                what = f"{n} more unanswered ICMP requests from {key[0]}"
            else:
                what = f"{n} more attempts from {key[0]}"
            out.append(make_alert(rule, last, f"{what} after the alert (scan or flood went on until {when(last)})",
                                  n, {"kind": "follow_up", "last_seen": when(last), "follow_up": True},
                                  flow=flow_of(r)))
        return out
