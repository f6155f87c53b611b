"""Unusual TCP flag combinations: the producer marks connection records whose segments carried flags no
TCP stack sends in a conversation (notes `tcp_flags_null`, `_xmas`, `_syn_fin`, `_syn_rst`, `_fin_no_ack`);
this detector turns them into one alert per source and `realert_after` seconds, with the probes counted.
nmap's OS detection (-O: T2 no flags, T3 SYN+FIN+PSH+URG, T7 FIN+PSH+URG) and stealth scans (-sN, -sF,
-sX) are what produces them."""
from __future__ import annotations

from ...config import NetworkConfig
from ...flow.conn import ConnRecord
from .common import NS, Limiter, flow_of, listed, make_alert, when

FLAG_NOTES = {
    "tcp_flags_null": "no flags (NULL)",
    "tcp_flags_xmas": "FIN+PSH+URG (Xmas)",
    "tcp_flags_syn_fin": "SYN+FIN",
    "tcp_flags_syn_rst": "SYN+RST",
    "tcp_flags_fin_no_ack": "FIN without ACK",
}
RULE = "otids.network.tcp.flag_probe"


class FlagDetector:
    def __init__(self, cfg: NetworkConfig):
        self.limit = Limiter(cfg.realert_after * NS, cfg.max_tracked)
        self.seen: dict[str, list] = {}  # source -> [kinds, hosts, ports] since its last alert

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): the `network:` thresholds of the new config; what was counted starts afresh."""
        self.__init__(config.network)

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
            if len(self.seen) >= self.limit.cap:
                self.seen.pop(next(iter(self.seen)))
            s = self.seen[src] = [set(), set(), set()]
        s[0].update(kinds)
        if len(s[1]) < 64:
            s[1].add(r.server_ip)
        if len(s[2]) < 64:
            s[2].add(r.server_port)
        key = (src,)
        n = self.limit.fire(key, r.start)
        self.limit.note(key, r)
        if not n:
            return None
        return [self._alert(r, src, n, r.start, follow=n > 1)]

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
        out = []
        for (src,), n, last, r in self.limit.leftovers():
            if r is not None:
                out.append(self._alert(r, src, n, last, follow=True))
        return out
