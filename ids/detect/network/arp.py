"""ARP watch (after LBL's arpwatch): reads every ARP frame (ids.flow.conn.ArpPacket) and reports new
stations after a warm-up, an IP address claimed by a second hardware address, one hardware address
claiming many IP addresses, and bursts of gratuitous or unsolicited replies. No baseline needed; the
network baseline (ids/detect/baseline/network.py) keeps the reviewed MAC<->IP bindings.

A station is an (IP, MAC) pair taken from the sender fields of requests and replies; ARP probes (sender
IP 0.0.0.0, RFC 5227) claim nothing. A reply is unsolicited when no request for its sender IP was seen in
the last `UNSOLICITED_NS` that no earlier reply answered; a gratuitous ARP announces the sender's own IP (sender IP = target IP).
"""
from __future__ import annotations

from itertools import islice

from ...config import NetworkConfig
from ...flow import budget
from ...flow.budget import KeyCap, trim_oldest
from ...flow.conn import ArpPacket
from .common import NS, ArpView, Limiter, cap_alerts, listed, make_alert, when

UNSOLICITED_NS = 5 * NS  # a reply this long after the request (or with none) was not asked for
NO_IP = ("0.0.0.0", "", None)
MAX_MACS_PER_IP = 16  # hardware addresses remembered per IP, most recent first (a spoofing flood is one finding)
MAX_IPS_PER_MAC = 64  # IP addresses remembered per hardware address (alerts list 16 and say "64+")
#: What the claims held (an IP's MAC or a MAC's IP, with its share of the key's table and the key itself;
#: tracemalloc, tests/test_hostile_state.py) and the bound on all of them: an ARP spoofing flood (one IP,
#: 200,000 random MACs) kept every MAC and compared each new one with all the others (quadratic: hours).
CLAIM_BYTES = 150
STATE_BYTES = 16 << 20


class ArpWatch:
    def __init__(self, cfg: NetworkConfig):
        self.cfg = cfg
        self.cap = cfg.max_tracked
        self.warmup = cfg.arp_warmup * NS
        self.start: int | None = None
        self.ip_macs: dict[str, dict[str, int]] = {}  # IP -> {MAC: last seen}
        self.mac_ips: dict[str, set] = {}  # MAC -> IPs it claimed
        self.asked: dict[str, int] = {}  # IP asked for -> when
        self.burst: dict[str, list] = {}  # MAC -> [window start, count]
        self.limit = Limiter(cfg.realert_after * NS, cfg.max_tracked)
        self.windows: dict[str, list] = {}  # rule -> [window start, alerts in it, last frame, folded (IP, MAC)]
        self.out: list = []
        self.claims = 0  # entries of ip_macs' dicts and mac_ips' sets, against STATE_BYTES
        self.cap_state = KeyCap("network.arp.claims", STATE_BYTES, CLAIM_BYTES)
        self.gate: list = [None]

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): the `network:` thresholds of the new config; what was counted starts afresh."""
        self.__init__(config.network)

    def accepts(self, t: type) -> bool:
        return t is ArpPacket

    def on_event(self, p: ArpPacket):
        ts = p.ts
        if self.start is None:
            self.start = ts
        mac = (p.sender_mac or "").upper()
        ip = p.sender_ip
        if p.op == 1 and p.target_ip not in NO_IP and p.target_ip != ip:
            if len(self.asked) >= self.cap:
                trim_oldest(self.asked, self.cap)
            self.asked[p.target_ip] = ts
        if ip not in NO_IP and mac:
            self._burst(p, mac, ip, ts)
            self._claim(p, mac, ip, ts)
            held = self.claims * CLAIM_BYTES
            g = budget.SHARED  # limits.memory_total, shared with the other bounded tables
            if held > STATE_BYTES or (g is not None and held > (1 << 20) and
                                      not g.hold("network.arp.claims", held, STATE_BYTES)):
                self._forget_claims(ts)
        if self.out:
            out, self.out = self.out, []
            return out
        return None

    # ------------------------------------------------------------------ checks
    def _burst(self, p: ArpPacket, mac: str, ip: str, ts: int) -> None:
        gratuitous = ip == p.target_ip
        if p.op == 2 and not gratuitous:
            t = self.asked.pop(ip, None)  # the first reply answers the request; later ones were not asked for
            gratuitous = t is None or ts - t > UNSOLICITED_NS
        if not gratuitous:
            return
        w = self.burst.get(mac)
        if w is None or ts - w[0] > self.cfg.arp_gratuitous_window * NS:
            if w is None and len(self.burst) >= self.cap:
                trim_oldest(self.burst, self.cap)
            w = self.burst[mac] = [ts, 0]
        w[1] += 1
        if w[1] < self.cfg.arp_gratuitous_burst:
            return
        count = w[1]
        del self.burst[mac]
        self._fire("otids.network.arp.gratuitous_burst", (mac,), p, count,
                   f"{mac} sent {count} gratuitous or unsolicited ARP replies within "
                   f"{self.cfg.arp_gratuitous_window} s (last: {ip} is-at {mac} to {p.target_ip})",
                   {"kind": "arp_burst", "macs": [mac], "ips": [ip]})

    def _forget_claims(self, ts: int) -> None:
        """The claims reached STATE_BYTES: forget the oldest eighth of the IPs and of the MACs (their
        claims with them), and say so in a memory_cap alert (once a minute at most)."""
        n = trim_oldest(self.ip_macs, len(self.ip_macs)) + trim_oldest(self.mac_ips, len(self.mac_ips))
        self.claims = sum(map(len, self.ip_macs.values())) + sum(map(len, self.mac_ips.values()))
        self.cap_state.hits += n
        self.out += cap_alerts((self.cap_state,), ts, self.gate, 60 * NS)

    def _claim(self, p: ArpPacket, mac: str, ip: str, ts: int) -> None:
        macs = self.ip_macs.get(ip)
        if macs is None:
            if len(self.ip_macs) >= self.cap:
                self._drop(self.ip_macs)
            macs = self.ip_macs[ip] = {}
        new_pair = mac not in macs
        if new_pair:
            if len(macs) >= MAX_MACS_PER_IP:  # the least recently seen go
                self.claims -= trim_oldest(macs, MAX_MACS_PER_IP)
            self.claims += 1
        else:
            del macs[mac]  # kept in order of last sight
        others = list(macs)
        macs[mac] = ts
        ips = self.mac_ips.get(mac)
        new_mac = ips is None
        if ips is None:
            if len(self.mac_ips) >= self.cap:
                self._drop(self.mac_ips)
            ips = self.mac_ips[mac] = set()
        if ip not in ips and len(ips) < MAX_IPS_PER_MAC:
            ips.add(ip)
            self.claims += 1
            if len(ips) >= self.cfg.arp_mac_ips:
                def text():  # only for an alert that goes out: sorting the addresses is the costly part
                    many, shown = f"{len(ips)}{'+' if len(ips) >= MAX_IPS_PER_MAC else ''}", listed(ips)
                    return (f"{mac} claimed {many} IP addresses in ARP ({', '.join(shown)}"
                            f"{' ...' if len(ips) > 16 else ''})",
                            {"kind": "arp_many_ips", "macs": [mac], "ips": shown, "ip_count": len(ips)})
                self._fire("otids.network.arp.mac_many_ips", (mac,), p, 1, text)
                return
        if new_pair and others:
            if self.limit.active(("otids.network.arp.mac_many_ips", mac), ts):
                return  # already reported as claiming many addresses
            self._budget("otids.network.arp.ip_claimed", (ip, mac), p, ip, mac,
                       f"{ip} is-at {mac} in ARP, but {ip} was at {', '.join(sorted(others))} "
                       f"(last seen {when(max(macs[m] for m in others))})",
                       {"kind": "arp_ip_claimed", "macs": sorted([mac] + others), "ips": [ip]})
            return
        if new_mac and ts - self.start >= self.warmup:
            self._new_station(p, mac, ip, ts)

    def _drop(self, table: dict) -> None:
        """The count cap (network.max_tracked keys): forget the oldest eighth, and their claims."""
        n = len(table) - self.cap + max(1, self.cap // 8)
        for k in list(islice(table, max(0, n))):
            self.claims -= len(table.pop(k))

    def _new_station(self, p: ArpPacket, mac: str, ip: str, ts: int) -> None:
        self._budget("otids.network.arp.new_station", (mac,), p, ip, mac,
                     f"new station {ip} at {mac} after {(ts - self.start) / NS:.0f} s of ARP traffic",
                     {"kind": "arp_new_station", "macs": [mac], "ips": [ip]})

    def _budget(self, rule: str, key: tuple, p: ArpPacket, ip: str, mac: str, reason: str, details: dict) -> None:
        """At most `arp_alert_limit` alerts of `rule` per `arp_warmup` seconds (a flood of random MACs is a
        handful of alerts): the rest are folded into one alert when the window ends."""
        w = self.windows.get(rule)
        if w is None or p.ts - w[0] >= max(self.warmup, NS):
            if w is not None:
                self._fold(rule)
            w = self.windows[rule] = [p.ts, 0, None, [], 0]
        if w[1] >= self.cfg.arp_alert_limit:
            w[2] = p
            w[4] += 1  # every finding counted, the first 4,096 listed
            if len(w[3]) < 4096:
                w[3].append((ip, mac))
            return
        w[1] += 1
        self._fire(rule, key, p, 1, reason, details)

    def _fold(self, rule: str) -> None:
        """Findings beyond the limit of a window: one alert for all of them."""
        w = self.windows.get(rule)
        if w is None or not w[3] or w[2] is None:
            return
        folded, p, count = w[3], w[2], w[4]
        w[3], w[2], w[4] = [], None, 0
        what = "new stations" if rule.endswith("new_station") else "IP addresses claimed by another MAC"
        self.out.append(make_alert(
            rule, p.ts, f"{count} more {what} in ARP beyond {self.cfg.arp_alert_limit} per "
                        f"{self.cfg.arp_warmup} s ({', '.join(f'{i} at {m}' for i, m in folded[:16])}"
                        f"{' ...' if count > 16 else ''})", count,
            {"kind": "folded", "macs": sorted({m for _, m in folded})[:16], "ips": listed({i for i, _ in folded}),
             "ip_count": len({i for i, _ in folded}), "follow_up": False}, event=ArpView(p)))

    def _fire(self, rule: str, key: tuple, p: ArpPacket, n: int, reason, details: dict | None = None) -> None:
        """`reason` is the text, or a function giving (text, details) when the alert does go out."""
        lkey = (rule,) + key
        got = self.limit.fire(lkey, p.ts, n)
        self.limit.note(lkey, p)
        if not got:
            return
        if callable(reason):
            reason, details = reason()
        if got > n:
            reason += f"; {got} times since the last alert"
        details["follow_up"] = got > n
        self.out.append(make_alert(rule, p.ts, reason, got, details, event=ArpView(p)))

    def flush(self, ts: int):
        for rule in list(self.windows):
            self._fold(rule)
        out, self.out = self.out + cap_alerts((self.cap_state,), ts), []
        for (rule, *key), n, last, p in self.limit.leftovers():
            if p is None:
                continue
            out.append(make_alert(rule, last, f"{' '.join(key)}: {n} more time(s) after the alert, until "
                                              f"{when(last)}", n,
                                  {"kind": "follow_up", "follow_up": True}, event=ArpView(p)))
        return out
