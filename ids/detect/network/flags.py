"""Unusual TCP flag combinations: the producer marks connection records whose segments carried flags no
TCP stack sends in a conversation (notes `tcp_flags_null`, `_xmas`, `_syn_fin`, `_syn_rst`, `_fin_no_ack`);
this detector turns them into one alert per source and `realert_after` seconds, with the probes counted.
nmap's OS detection (-O: T2 no flags, T3 SYN+FIN+PSH+URG, T7 FIN+PSH+URG) and stealth scans (-sN, -sF,
-sX) are what produces them."""
from __future__ import annotations

from ...config import LimitsConfig, NetworkConfig
from ...flow.budget import KeyCap
from ...flow.conn import ConnRecord
from .common import NS, Limiter, cap_alerts, flow_of, listed, make_alert, when

MAX_LISTED_PER_SOURCE = 64  # hosts and ports kept per source until its alert
SOURCE_BYTES = 600 + 100 * MAX_LISTED_PER_SOURCE + 40 * MAX_LISTED_PER_SOURCE  # at most, per source (tracemalloc)
FINDING_BYTES = 1100

FLAG_NOTES = {
    "tcp_flags_null": "no flags (NULL)",
    "tcp_flags_xmas": "FIN+PSH+URG (Xmas)",
    "tcp_flags_syn_fin": "SYN+FIN",
    "tcp_flags_syn_rst": "SYN+RST",
    "tcp_flags_fin_no_ack": "FIN without ACK",
}
RULE = "otids.network.tcp.flag_probe"


class FlagDetector:
    def __init__(self, cfg: NetworkConfig, state_bytes: int = LimitsConfig.network_state_bytes):
        # a fifth of limits.network_state_bytes (scan.py has the rest), in worst-case bytes per source
        self.quiet, self.gate = cfg.realert_after * NS, [None]  # one memory_cap alert per re-alert window
        self.caps = (KeyCap("network.flags.sources", state_bytes * 3 // 20, SOURCE_BYTES, cfg.max_tracked, 0),
                     KeyCap("network.flags.findings", state_bytes // 20, FINDING_BYTES, cfg.max_tracked, 0))
        self.limit = Limiter(cfg.realert_after * NS, cfg.max_tracked, self.caps[1])
        self.seen: dict[str, list] = {}  # source -> [kinds, hosts, ports] since its last alert

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): the `network:` thresholds of the new config; what was counted starts afresh."""
        self.__init__(config.network, config.limits.network_state_bytes)

    def accepts(self, t: type) -> bool:
        return t is ConnRecord

    def on_event(self, r: ConnRecord):
        if not r.notes or r.transport != "tcp":
            return None
        kinds = [n for n in r.notes if n in FLAG_NOTES]
        if not kinds:
            return None
        src = r.client_ip
        s = self.seen.get(src)
        if s is None:
            self.caps[0].make_room(self.seen)
            s = self.seen[src] = [set(), set(), set()]
        s[0].update(kinds)
        if len(s[1]) < MAX_LISTED_PER_SOURCE:
            s[1].add(r.server_ip)
        if len(s[2]) < MAX_LISTED_PER_SOURCE:
            s[2].add(r.server_port)
        key = (src,)
        n = self.limit.fire(key, r.start)
        self.limit.note(key, r)
        out = cap_alerts(self.caps, r.start, self.gate, self.quiet)
        if n:
            out.append(self._alert(r, src, n, r.start, follow=n > 1))
        return out or None

    def _alert(self, r, src, n, ts, follow):
        kinds, hosts, ports = self.seen.pop(src, [set(), set(), set()])
        names = ", ".join(FLAG_NOTES[k] for k in sorted(kinds))
        reason = (f"{src} sent TCP segments with {names} to {', '.join(listed(hosts))} "
                  f"(port(s) {', '.join(map(str, listed(ports)))})")
        if follow:
            reason += f"; {n} such connections since the last alert"
        return make_alert(RULE, ts, reason, n, {"kind": "flags", "flags": sorted(kinds), "hosts": listed(hosts),
                                                "host_count": len(hosts), "ports": listed(ports),
                                                "port_count": len(ports), "last_seen": when(ts),
                                                "follow_up": follow}, flow=flow_of(r))

    def flush(self, ts: int):
        out = cap_alerts(self.caps, ts)
        for (src,), n, last, r in self.limit.leftovers():
            if r is not None:
                out.append(self._alert(r, src, n, last, follow=True))
        return out
