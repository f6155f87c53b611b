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

from ...config import LimitsConfig, NetworkConfig
from ...flow import budget
from ...flow.budget import KeyCap
from ...flow.conn import ConnRecord
from .common import NS, Limiter, cap_alerts, flow_of, is_unicast, listed, make_alert, when

# Bytes one key holds at most (tracemalloc, tests/test_hostile_state.py), with `t` targets, sources or ports
# under it (each table forgets a key's targets when their threshold is reached, so t < the threshold).
KEY_BYTES = {"vertical": (240, 110), "horizontal": (240, 130), "sweep": (240, 130), "flood": (520, 145)}
TRY_BYTES = 160
FINDING_BYTES = 1100  # the limiter's entry with the connection record it keeps for the follow-up alert
# shares of limits.network_state_bytes (the flag detector has the last fifth)
SHARES = {"vertical": 0.1, "horizontal": 0.2, "sweep": 0.05, "flood": 0.35, "tries": 0.05, "findings": 0.05}

ICMP_REQUESTS = {"icmp": frozenset((8, 13, 17)), "ipv6-icmp": frozenset((128,))}  # echo, timestamp, mask


class ScanDetector:
    def __init__(self, cfg: NetworkConfig, state_bytes: int = LimitsConfig.network_state_bytes):
        self.cfg = cfg
        self.window = cfg.scan_window * NS
        self.flood_window = cfg.syn_flood_window * NS
        self.cap = cfg.max_tracked
        self.vertical: dict[tuple, dict | tuple] = {}  # (transport, src, dst) -> {port: start}, or (port, start)
        self.horizontal: dict[tuple, dict | tuple] = {}  # (transport, src, port) -> {dst: start}, or (dst, start)
        self.sweep: dict[str, dict | tuple] = {}  # src -> {dst: start}, or (dst, start) while there is one
        self.flood: dict[tuple, list] = {}  # (dst, port) -> [window start, attempts, sources]
        self.flood_bytes = 0  # what `flood` holds (KEY_BYTES: a key, and each source kept under it)
        self.tries: dict[tuple, int] = {}  # (rule, src) -> attempts not yet reported by an alert
        # limits.network_state_bytes, shared out: each table holds at most its share (worst case per key)
        most = {"vertical": cfg.port_scan_ports, "horizontal": cfg.address_scan_hosts, "sweep": cfg.icmp_sweep_hosts,
                "flood": min(cfg.syn_flood_attempts, 4096)}
        self.quiet, self.gate = cfg.realert_after * NS, [None]  # one memory_cap alert per re-alert window
        quiet = 0
        self.caps = {name: KeyCap(f"network.scan.{name}", int(state_bytes * SHARES[name]), base + per * most[name],
                                  cfg.max_tracked, quiet) for name, (base, per) in KEY_BYTES.items()}
        self.caps["tries"] = KeyCap("network.scan.tries", int(state_bytes * SHARES["tries"]), TRY_BYTES,
                                    cfg.max_tracked, quiet)
        self.caps["findings"] = KeyCap("network.scan.findings", int(state_bytes * SHARES["findings"]), FINDING_BYTES,
                                       cfg.max_tracked, quiet)
        self.limit = Limiter(cfg.realert_after * NS, cfg.max_tracked, self.caps["findings"])
        self.out: list = []

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): the `network:` thresholds of the new config; what was counted starts afresh."""
        self.__init__(config.network, config.limits.network_state_bytes)

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
        f = self.caps["findings"]
        if f.hits != f.reported:
            self.out += cap_alerts(self.caps.values(), r.start, self.gate, self.quiet)
        if self.out:
            out, self.out = self.out, []
            return out
        return None

    def _forget_floods(self, ts: int) -> None:
        """The flood table is at its share of limits.network_state_bytes, counted as it holds (each key and
        its sources): forget the oldest keys down to seven eighths, in one pass, and say so."""
        cap = self.caps["flood"]
        base, per = KEY_BYTES["flood"]
        # below its own bounds when over its share of limits.memory_total: seven eighths of what it holds
        goal, keep = min(cap.max_bytes, self.flood_bytes) * 7 // 8, min(self.cap, len(self.flood)) * 7 // 8
        drop, freed = [], 0
        for k, w in self.flood.items():
            if self.flood_bytes - freed <= goal and len(self.flood) - len(drop) <= keep:
                break
            drop.append(k)
            freed += base + per * len(w[2])
        for k in drop:
            del self.flood[k]
        self.flood_bytes -= freed
        cap.hits += len(drop)
        self.out += cap_alerts(self.caps.values(), ts, self.gate, self.quiet)

    def _room(self, name: str, table: dict, ts: int) -> None:
        """`table` is full: forget its oldest keys, and say so (one memory_cap alert per quiet period)."""
        cap = self.caps[name]
        cap.make_room(table, checked=True)
        self.out += cap_alerts(self.caps.values(), ts, self.gate, self.quiet)

    # ------------------------------------------------------------------ counting
    def _add(self, table: dict, key, target, start: int, threshold: int):
        """Remember `target` under `key`; return the targets when `threshold` distinct ones fall within the
        scan window (and forget them: the next finding starts afresh)."""
        d = table.get(key)
        if d is None:
            name = "vertical" if table is self.vertical else "horizontal" if table is self.horizontal else "sweep"
            if self.caps[name].full(table):
                self._room(name, table, start)
            if threshold > 1:
                # one target so far: a pair, not a dict (each source of a spoofed flood tries once; the dict
                # per key was most of this detector's time under one)
                table[key] = (target, start)
                return None
            d = table[key] = {}
        elif type(d) is tuple:
            d = table[key] = {d[0]: d[1]}  # the key keeps its place in the table (eviction order)
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

    def _try(self, lkey: tuple, ts: int) -> None:
        n = self.tries.get(lkey)
        if n is None:
            if self.caps["tries"].full(self.tries):
                self._room("tries", self.tries, ts)
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
                self._try(lkey, ts)
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
        self._try(lkey, ts)
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
        base, per = KEY_BYTES["flood"]
        if w is None or ts - w[0] > self.flood_window:
            if w is not None:
                self.flood_bytes -= base + per * len(w[2])
            elif self.flood_bytes + base > self.caps["flood"].max_bytes or len(self.flood) >= self.cap or \
                    (budget.SHARED is not None and len(self.flood) >= 16 and
                     not budget.SHARED.hold("network.scan.flood", self.flood_bytes + base, self.caps["flood"].max_bytes)):
                self._forget_floods(ts)
            w = self.flood[key] = [ts, 0, set()]
            self.flood_bytes += base
        else:  # a target under attack stays among the newest: what the bound forgets is cold
            self.flood[key] = self.flood.pop(key)
        w[1] += 1
        if len(w[2]) < 4096 and r.client_ip not in w[2]:
            w[2].add(r.client_ip)
            self.flood_bytes += per
        if w[1] < self.cfg.syn_flood_attempts:
            return
        attempts, sources = w[1], w[2]
        del self.flood[key]
        self.flood_bytes -= base + per * len(sources)
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
        out, self.out = self.out + cap_alerts(self.caps.values(), ts), []  # at the end: whatever is left
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
