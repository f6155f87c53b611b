"""Flow table: packets -> flows keyed by 5-tuple, client/server roles, protocol detection, TCP reassembly
feeding protocol sessions, idle timeouts and hard caps (each cap hit is a FlowNotice, never silent).

It owns flows and their streams; what the application bytes mean belongs to ids.protocols sessions, and
what is suspicious to ids.detect. Every flow (TCP, UDP, ICMP, other IP protocols, non-IP Ethernet
conversations by MAC pair and EtherType) becomes one ConnRecord when it ends (ids.flow.connlog); ARP frames
are also handed on one by one as ArpPacket (internal records, for detectors).
"""
from __future__ import annotations

from typing import Callable

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython

from ..config import Config
from ..decode.arp import parse_arp
from ..decode.packet import ACK, ETHER, FIN, RST, SYN, Packet
from ..events import FlowContext, FlowNotice, community_id, ip_text, mac_text, TRANSPORT_NAMES
from .context import SessionContext
from . import connlog
from .conn import ArpPacket
from .identify import NDPI_FLOW_BYTES, Identifier
from . import budget
from .budget import Pool, trim_oldest
from .tcp import Stream

NS = 1_000_000_000
SWEEP_EXPIRE, SWEEP_GARBAGE, SWEEP_REMOVE = 0, 1, 2  # FlowTable.sweep's passes, for its sweep_at hook
PROBE_LIMIT = 1024  # bytes per direction looked at before a flow is declared unknown
MAX_HOSTS = 1 << 18  # addresses kept for the summary's host count (spoofed floods stop here: 1M held 70 MB)
#: What one talker-table entry holds (key tuple, two address bytes, counter list, dict slot), tracemalloc
TALKER_ENTRY = 280
MAX_GARBAGE_KEYS = 4096  # server ports watched for sustained garbage
#: What a live flow holds (Flow, its two Streams and counters, both dict entries and keys), and what its
#: protocol session adds when it starts; measured with tracemalloc over 20k half-open flows (CPython 3.11).
#: limits.flow_table_bytes is counted in these.
FLOW_BASE = 1950  # 1,350 before the connection records and identification state of wave 2 (measured again)
SESSION_COST = {"modbus": 300, "opcua": 1600, "mqtt": 1050, "tls": 700}
SESSION_COST_OTHER = 1000
#: the history bit of each (flags & 0x3F) | 64-if-payload value (FlowTable._tcp, connlog.tcp_history)
_HBIT = tuple(1 << i for i in range(128))
#: How far from the next expected byte of its direction a RST or FIN may lie and still end the flow
#: (FlowTable._control_ok): a window's worth of bytes the capture may have missed or that are in flight.
CONTROL_WINDOW = 1 << 16


class Flow:
    __slots__ = ("flow_id", "proto", "client_ip", "server_ip", "client_port", "server_port", "client_mac",
                 "server_mac", "vlan", "first_ts", "last_ts", "to_server", "to_client", "session", "app", "probe",
                 "probing", "midstream", "closed", "fin", "pkts", "bytes", "ctx", "bad_checksums", "established",
                 "notices", "ipb", "hseen", "hist", "cnotes", "etype", "ident", "ident_by", "dissector", "istate")

    def __init__(self, flow_id, proto, client_ip, client_port, server_ip, server_port, client_mac, server_mac,
                 vlan, ts, midstream):
        self.flow_id = flow_id
        self.proto = proto
        self.client_ip, self.client_port = client_ip, client_port
        self.server_ip, self.server_port = server_ip, server_port
        self.client_mac, self.server_mac, self.vlan = client_mac, server_mac, vlan
        self.first_ts = self.last_ts = ts
        self.to_server = Stream()  # client -> server
        self.to_client = Stream()  # server -> client
        self.session = None
        self.app: str | None = None
        self.probe: list[bytes] | None = None  # [client bytes, server bytes] while probing
        self.probing = False
        self.midstream = midstream
        self.closed = False
        self.fin = 0  # bit 1: client FIN, bit 2: server FIN
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.ctx: FlowContext | None = None
        self.bad_checksums = 0
        self.established = False
        self.notices = 0
        self.ipb = [0, 0]  # IP bytes per direction (Zeek's orig_ip_bytes / resp_ip_bytes)
        self.hseen = [0, 0]  # per direction: flag/payload combinations already in the history (bit set)
        self.hist: list[str] = []  # Zeek history letters, in order
        self.cnotes: set[str] = set()  # notes for the connection record (unusual flags, mismatches)
        self.etype: int | None = None  # non-IP: EtherType; ICMP: 1 when the message type is one-way
        self.ident = 0  # payload packets still to show identification (ids.flow.identify)
        self.ident_by: str | None = None  # "content" or "port" once the protocol is known
        self.dissector: str | None = None  # the dissector that claimed the flow
        self.istate: list | None = None  # identification in progress (ids.flow.identify)

    @property
    def context(self) -> FlowContext:
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = FlowContext(
                self.flow_id, TRANSPORT_NAMES.get(self.proto, str(self.proto)),
                community_id(self.proto, self.client_ip, self.server_ip, self.client_port, self.server_port),
                ip_text(self.client_ip), self.client_port, mac_text(self.client_mac),
                ip_text(self.server_ip), self.server_port, mac_text(self.server_mac), self.vlan, self.midstream)
        return ctx


class FlowTable:
    """Owns every live flow. `emit` receives events (FlowNotice here; sessions emit their own)."""

    def __init__(self, config: Config, protocols: dict, emit: Callable, verify_checksums: bool = False):
        self.config = config  # sessions read their own section (config.modbus, ...)
        self.cfg = config.flow
        self.protocols = protocols  # name -> Protocol
        self.port_map = {p: n for p, n in config.port_map().items() if n in protocols}  # server port -> name
        self.probe_order = [p for p in protocols.values() if getattr(p, "probe", None)] \
            if config.protocols.probe else []
        self.emit = emit
        self.ident = Identifier(self.port_map, use_ndpi=getattr(config.protocols, "ndpi", True))
        self.tcp: dict[tuple, tuple[Flow, bool]] = {}
        self.udp: dict[tuple, tuple[Flow, bool]] = {}
        self.other: dict[tuple, tuple[Flow, bool]] = {}  # ICMP, other IP protocols, non-IP Ethernet
        self.nflows = 0
        self.live = 0
        self.next_sweep = -1  # capture time of the next timeout sweep; -1 until the first packet
        self.sweep_at = None  # sweep_at(pass, flow) before each flow's part of a sweep (SWEEP_*), if set
        self.report_checksums = verify_checksums
        self.talkers: dict[tuple, list[int]] = {}
        self.hosts: set[bytes] = set()  # unicast IP addresses seen in any flow (summary), up to MAX_HOSTS
        lim = self.limits = config.limits
        self.max_talkers = max(16, lim.talkers_bytes // TALKER_ENTRY)
        self.stream_pool = Pool("stream_buffer", lim.stream_buffer_total)
        self.reassembly_pool = Pool("reassembly", lim.reassembly_total)  # sessions charge their buffers here
        self.pending_pool = Pool("pending_requests", lim.pending_total)  # requests awaiting answers, all flows
        self.violated: dict = {}  # flow -> bytes it had carried when its protocol was violated
        self.flow_bytes = 0  # what live flows hold, in FLOW_BASE and SESSION_COST units
        self.garbage: dict[tuple, int] = {}  # (server ip, port, protocol) -> bytes sent after violations
        self.stats = {"flows": 0, "flows_evicted": 0, "flows_timed_out": 0, "tcp_gaps": 0, "tcp_gap_bytes": 0,
                      "stream_cap_hits": 0, "retransmissions": 0, "packets_no_flow": 0, "session_errors": 0,
                      "talkers_dropped": 0, "tcp_overlap_conflicts": 0, "tcp_control_ignored": 0}

    def share(self, n: int) -> None:
        """This table is one of `n` (workers dividing the traffic by host pair): it holds 1/n of the bounds on
        flows and what they buffer, so that together they hold what one process would. Each had the whole
        bound before: a flood of short flows with two workers held 658 MB where one process held 230 MB."""
        if n <= 1:
            return
        from dataclasses import replace
        lim = self.limits = replace(self.limits, **{k: max(1 << 16, getattr(self.limits, k) // n) for k in (
            "flow_table_bytes", "stream_buffer_total", "reassembly_total", "pending_total", "talkers_bytes")})
        self.cfg = replace(self.cfg, max_flows=max(16, self.cfg.max_flows // n))
        self.max_talkers = max(16, lim.talkers_bytes // TALKER_ENTRY)
        self.stream_pool.limit = lim.stream_buffer_total
        self.reassembly_pool.limit = lim.reassembly_total
        self.pending_pool.limit = lim.pending_total

    # ------------------------------------------------------------------ packets
    def packet(self, p: Packet) -> None:
        ts = p.ts
        if ts >= self.next_sweep:
            self.sweep_or_start(ts)
        if p.proto == 6:
            self._tcp(p, ts)
        elif p.proto == 17:
            self._udp(p, ts)
        else:
            self._other(p, ts)

    def sweep_or_start(self, ts: int) -> None:
        """Time for a sweep; or, at the first packet, the clock starts (next_sweep begins at -1)."""
        if self.next_sweep < 0:
            self.next_sweep = ts + self.cfg.sweep_interval * NS
        else:
            self.sweep(ts)

    @cython.locals(flow=Flow, stream=Stream, other=Stream, d=cython.Py_ssize_t, n=cython.Py_ssize_t)
    def _tcp(self, p: Packet, ts: int) -> None:
        # One unpack, not ten reads; compiled, by index as the tuple a Packet is (no iterator)
        if cython.compiled:
            _, _, src, dst, sport, dport, pseq, pack, flags, payload, _, _, vlan, bad, iplen = cython.cast(tuple, p)
        else:
            _, _, src, dst, sport, dport, pseq, pack, flags, payload, _, _, vlan, bad, iplen = p
        key = (src, dst, sport, dport, vlan)
        hit = self.tcp.get(key)
        if hit is None or (hit[0].closed and flags & SYN and not flags & ACK):
            if hit is not None:
                self._remove(hit[0], ts, "reused")
            if flags & RST and not flags & SYN:
                self.stats["packets_no_flow"] += 1
                return
            flow, to_server = self._new_tcp(p, key, ts)
        else:
            flow, to_server = hit
        flow.last_ts = ts
        d = 0 if to_server else 1
        flow.pkts[d] += 1
        n = len(payload)
        flow.bytes[d] += n
        flow.ipb[d] += iplen
        bit = _HBIT[(flags & 0x3F) | (64 if n else 0)]  # 1 << that, without making the big integer per packet
        if not flow.hseen[d] & bit:  # a flag combination new for this direction: history letters, notes
            connlog.tcp_history(flow, d, flags, n > 0, bit)
        if flow.ident:  # the first packets of a flow no dissector holds: identification
            self.ident.packet(flow, p, to_server)
        if bad:
            if not flow.bad_checksums and self.report_checksums:  # offloaded checksums are no finding
                flow.hist.append("C" if to_server else "c")
            flow.bad_checksums += 1
            if self.report_checksums and flow.bad_checksums == 1:
                self._notice(flow, ts, "bad_checksum", {"direction": "to_server" if to_server else "to_client"})
        if flow.closed:
            return
        if to_server:
            stream, other = flow.to_server, flow.to_client
        else:
            stream, other = flow.to_client, flow.to_server
        if n and flow.cnotes:
            self._after_ignored(flow, ts, to_server)
        if flags & SYN and stream.next_seq is not None and ((pseq + 1) & 0xFFFFFFFF) != stream.next_seq \
                and (stream.bytes or stream.gaps or stream.segs):
            self._ignored(flow, ts, "syn", to_server, pseq, stream.next_seq)
            return
        if flags & SYN:
            stream.renumber((pseq + 1) & 0xFFFFFFFF)
            if flags & ACK:
                flow.established = True
            if not payload:
                return
            seq = (pseq + 1) & 0xFFFFFFFF
        else:
            seq = pseq
        sess = flow.session
        if other.segs and flags & ACK and (sess is not None or flow.probing) and other.ack_past(pack):
            out: list = []
            other.skip_gap(out, pack)
            self._deliver(flow, not to_server, out, ts)
        if payload and sess is not None and stream.next_seq == seq and not stream.segs:
            # In order with nothing waiting (nearly every packet): straight to the session.
            stream.next_seq = (seq + len(payload)) & 0xFFFFFFFF
            stream.bytes += len(payload)
            stream.last_at, stream.last_end = seq, stream.next_seq  # a retransmission of it with other
            stream.last_sum = hash(payload)  # bytes: Stream.add says so
            try:
                sess.data(to_server, payload, ts)
            except Exception as e:  # noqa: BLE001 - hostile bytes never end the run (see session_error)
                self.session_error(flow, ts, "data", e)
            else:
                if flow.session is None:  # the session let go of the flow on these bytes: identify them
                    self.ident.data(flow, to_server, payload, ts)
        elif payload and (sess is not None or flow.probing):
            out = []
            ov = stream.overlaps
            st = stream.add(seq, payload, self.cfg.max_stream_buffer, out)
            if stream.overlaps != ov:
                self._overlap(flow, ts, to_server)
            if st == 1:
                self.stats["stream_cap_hits"] += 1
                self._notice(flow, ts, "stream_buffer_cap", {"max_bytes": self.cfg.max_stream_buffer,
                                                             "direction": "to_server" if to_server else "to_client"})
            elif st:
                self.stats["stream_cap_hits"] += 1
                self.memory_cap(flow, ts, self.stream_pool)
            if out:
                self._deliver(flow, to_server, out, ts)
        if flags & (FIN | RST):
            nxt = stream.next_seq
            if nxt is not None and (flow.established or flow.bytes[0] + flow.bytes[1]) and \
                    ((pseq - nxt + CONTROL_WINDOW) & 0xFFFFFFFF) > 2 * CONTROL_WINDOW:
                self._ignored(flow, ts, "rst" if flags & RST else "fin", to_server, pseq, nxt)
                return
            if flags & RST:
                flow.fin = 3
            else:
                flow.fin |= 1 if to_server else 2
            if flow.fin == 3:
                self._close(flow, ts)

    def _ignored(self, flow: Flow, ts: int, kind: str, to_server: bool, seq: int, expected: int) -> None:
        """A SYN, RST or FIN inside a connection that no receiver would take: not honoured. A forged one must
        not change what the sensor sees (Ptacek and Newsham's TCB teardown): one RST, or a FIN each way, at
        any sequence number closed the flow and nothing after it was dissected; a SYN renumbered a direction
        that had carried data, so the real bytes after it were dropped as retransmissions. A RST or FIN
        counts only within CONTROL_WINDOW of the next byte of its direction (a receiver drops it outside its
        window, RFC 793 and RFC 5961; the payload it carries is still delivered); a SYN renumbers a direction
        only before it carried data or with the number it had (a retransmitted SYN). A SYN not honoured is
        said at once (`tcp_control_ignored`; it is dropped with its payload). A RST or FIN is only noted on
        the connection record: a capture that lost bytes before a real one looks the same, so it is said
        when payload follows it (after a FIN: in its own direction), which no real one allows."""
        st = self.stats
        st["tcp_control_ignored"] += 1
        note = f"{kind}_ignored" if kind != "fin" else ("fin_ignored_client" if to_server else "fin_ignored_server")
        notes = flow.cnotes
        if kind == "syn" and note not in notes:
            self._notice(flow, ts, "tcp_control_ignored", {
                "flag": "SYN", "direction": "to_server" if to_server else "to_client", "seq": seq,
                "expected_seq": expected})
        notes.add(note)

    def _after_ignored(self, flow: Flow, ts: int, to_server: bool) -> None:
        """Payload after a RST (either way) or a FIN (its own way) that was not honoured: say so once."""
        notes = flow.cnotes
        if "data_after_ignored_control" in notes:
            return
        kind = "RST" if "rst_ignored" in notes else \
            "FIN" if ("fin_ignored_client" if to_server else "fin_ignored_server") in notes else None
        if kind is not None:
            notes.add("data_after_ignored_control")
            self._notice(flow, ts, "tcp_control_ignored", {
                "flag": kind, "direction": "to_server" if to_server else "to_client",
                "then": "payload followed it"})

    def _overlap(self, flow: Flow, ts: int, to_server: bool) -> None:
        """Two copies of the same stream bytes disagreed (the first was kept, as for IP fragments): which copy
        the receiver keeps depends on its stack, so an attacker can show the sensor one command and the
        device another (Ptacek and Newsham). Counted in Stream.overlaps before and said nowhere; now noted on
        the connection record and said once per flow (`tcp_overlap_conflict`), counted when the flow ends."""
        if "overlap_conflict" not in flow.cnotes:
            flow.cnotes.add("overlap_conflict")
            self._notice(flow, ts, "tcp_overlap_conflict", {"direction": "to_server" if to_server else "to_client"})

    def _new_tcp(self, p: Packet, key: tuple, ts: int) -> tuple[Flow, bool]:
        flags = p.flags
        if flags & SYN and flags & (FIN | RST):
            # SYN+FIN/RST is no handshake (fuzzers, scans): decide roles as on mid-stream pickup, by port.
            # (A bad checksum alone proves nothing: captures on the sending host, loopback above all, carry
            # offloaded checksums on every packet.)
            client_is_src, mid = self._guess_client(p.sport, p.dport), True
        elif flags & SYN and not flags & ACK:
            client_is_src, mid = True, False
        elif flags & SYN:  # SYN-ACK without the SYN
            client_is_src, mid = False, False
        else:
            client_is_src, mid = self._guess_client(p.sport, p.dport), True
        f = self._make_flow(p, ts, client_is_src, mid, self.tcp)
        if not client_is_src:
            f.hist.append("^")  # Zeek: the first packet came from the responder
        self._assign(f)
        if f.session is None:
            self.ident.start(f)
        return f, client_is_src

    def _room(self, ts: int) -> None:
        """Before a new flow (of any transport): evict at the flow cap, the byte bound or the run's share of
        limits.memory_total (shared with the other bounded tables, ids/flow/budget.py)."""
        held = self.flow_bytes + self.ident.c_flows * NDPI_FLOW_BYTES
        g = budget.SHARED
        if self.live >= self.cfg.max_flows or held >= self.limits.flow_table_bytes or \
                (g is not None and not g.hold("flow_table", held, self.limits.flow_table_bytes)):
            self._evict(ts)

    def _make_flow(self, p: Packet, ts: int, client_is_src: bool, mid: bool, table: dict) -> Flow:
        """A new flow in `table` under both directions' keys, after making room under the flow cap."""
        self._room(ts)
        self.flow_bytes += FLOW_BASE
        self.nflows += 1
        self.live += 1
        self.stats["flows"] += 1
        if client_is_src:
            f = Flow(self.nflows, p.proto, p.src, p.sport, p.dst, p.dport, p.src_mac, p.dst_mac, p.vlan, ts, mid)
        else:
            f = Flow(self.nflows, p.proto, p.dst, p.dport, p.src, p.sport, p.dst_mac, p.src_mac, p.vlan, ts, mid)
        f.to_server.pool = f.to_client.pool = self.stream_pool
        table[(f.client_ip, f.server_ip, f.client_port, f.server_port, p.vlan)] = (f, True)
        table[(f.server_ip, f.client_ip, f.server_port, f.client_port, p.vlan)] = (f, False)
        return f

    def _guess_client(self, sport: int, dport: int) -> bool:
        """Mid-stream: is the sender the client? Well-known protocol port first, then the lower port."""
        pm = self.port_map
        if dport in pm and sport not in pm:
            return True
        if sport in pm and dport not in pm:
            return False
        im = self.ident.ports["tcp"]  # then the identified protocols' well-known ports
        if dport in im and sport not in im:
            return True
        if sport in im and dport not in im:
            return False
        return sport > dport or sport == dport

    def _guess_udp_client(self, p: Packet) -> bool:
        """UDP has no handshake: a multicast or broadcast destination is never the client; then the
        identified protocols' well-known ports; then the lower port is the server's."""
        if not connlog.is_host(p.dst):
            return True
        if not connlog.is_host(p.src):
            return False
        pm = self.ident.ports["udp"]
        if p.dport in pm and p.sport not in pm:
            return True
        if p.sport in pm and p.dport not in pm:
            return False
        return p.sport > p.dport or p.sport == p.dport

    def _assign(self, f: Flow) -> None:
        name = self.port_map.get(f.server_port)
        if name is not None and name in self.protocols:
            f.app = f.dissector = name
            f.ident_by = "port"
            self.flow_bytes += SESSION_COST.get(name, SESSION_COST_OTHER)
            try:
                f.session = self.protocols[name].session(SessionContext(self, f))
            except Exception as e:  # noqa: BLE001
                self.session_error(f, f.first_ts, "start", e)
        elif self.probe_order:
            f.probing = True
            f.probe = [b"", b""]
        else:
            f.app = ""

    def _udp(self, p: Packet, ts: int) -> None:
        key = (p.src, p.dst, p.sport, p.dport, p.vlan)
        hit = self.udp.get(key)
        if hit is None:
            client_is_src = self._guess_udp_client(p)
            f = self._make_flow(p, ts, client_is_src, False, self.udp)
            f.app = ""  # no UDP protocol dissectors yet: flows are identified, tracked and counted
            self.ident.start(f)
            hit = (f, client_is_src)
        f, to_server = hit
        f.last_ts = ts
        d = 0 if to_server else 1
        f.pkts[d] += 1
        n = len(p.payload)
        f.bytes[d] += n
        f.ipb[d] += p.iplen
        if n and not f.hseen[d]:
            f.hseen[d] = 1
            connlog.simple_history(f, d, True)
        if f.ident:
            self.ident.packet(f, p, to_server)

    def _other(self, p: Packet, ts: int) -> None:
        """ICMP (request and reply in one flow), other IP protocols (one flow per address pair and protocol)
        and non-IP Ethernet (one conversation per MAC pair and EtherType; ARP frames also go out one by one)."""
        proto = p.proto
        src, dst = p.src, p.dst
        one_way = False
        if proto == ETHER:
            x = p.sport
            if x == 0x0806:  # ARP: one conversation per pair of protocol addresses, whoever broadcasts
                arp = self._arp(p, ts)
                if arp is not None:
                    src, dst = arp
            client_is_src = True
            y = 0
        elif proto == 1 or proto == 58:
            t = p.sport
            pairs = connlog.ICMP6_PAIRS if proto == 58 else connlog.ICMP4_PAIRS
            other = pairs.get(t)
            if other is None:  # one-way message (unreachable, time exceeded, ...): type and code
                x, y, client_is_src, one_way = t, p.dport, True, True
            else:
                reqs = connlog.ICMP6_REQUESTS if proto == 58 else connlog.ICMP4_REQUESTS
                client_is_src = t in reqs
                x, y = (t, other) if client_is_src else (other, t)
        else:
            x = y = 0
            client_is_src = True
        key = (proto, x, src, dst, p.vlan)
        hit = self.other.get(key)
        if hit is None:
            hit = self.other.get((proto, x, dst, src, p.vlan))
            if hit is not None:
                hit = (hit[0], not hit[1])
        if hit is None:
            # the same bounds as a TCP or UDP flow, in count and in bytes: ARP, ICMP and other-protocol flows
            # used to be left out of the byte count, while removing one took FLOW_BASE back, so an ARP flood
            # drove the count down (100,000 ARP flows held 150 MB against the 104 MiB bound)
            self._room(ts)
            self.flow_bytes += FLOW_BASE
            self.nflows += 1
            self.live += 1
            self.stats["flows"] += 1
            a, b = (src, dst) if client_is_src else (dst, src)
            am, bm = (p.src_mac, p.dst_mac) if client_is_src else (p.dst_mac, p.src_mac)
            f = Flow(self.nflows, proto, a, x, b, y, am, bm, p.vlan, ts, False)
            f.app = ""
            f.etype = x if proto == ETHER else (1 if one_way else None)
            if proto == ETHER:
                self.ident.ether(f, p.payload)
            self.other[(proto, x, a, b, p.vlan)] = (f, True)
            hit = (f, client_is_src)
        f, to_server = hit
        f.last_ts = ts
        d = 0 if to_server else 1
        f.pkts[d] += 1
        f.bytes[d] += len(p.payload)
        f.ipb[d] += p.iplen
        if not to_server and f.server_mac != p.src_mac:  # ARP pair: the answering station's own MAC
            f.server_mac = p.src_mac

    def _arp(self, p: Packet, ts: int) -> tuple[bytes, bytes] | None:
        """Hand the ARP frame on as an ArpPacket; (sender IP, target IP) for its conversation key."""
        a = parse_arp(p.payload)
        if a is None:
            return None
        op, sha, spa, tha, tpa = a
        self.emit(ArpPacket(ts, op, mac_text(sha), ip_text(spa), mac_text(tha), ip_text(tpa), mac_text(p.src),
                            mac_text(p.dst), p.vlan))
        return spa, tpa

    # ------------------------------------------------------------------ delivery to sessions
    def _deliver(self, flow: Flow, to_server: bool, chunks: list, ts: int) -> None:
        for c in chunks:
            if flow.probing:
                if type(c) is int:
                    flow.probe[0 if to_server else 1] = b""  # bytes around a gap are no start to probe
                    continue
                c = self._probe(flow, to_server, c, ts)
                if c is None:
                    continue
            sess = flow.session
            if sess is None:
                return
            try:
                if type(c) is int:
                    g = "G" if to_server else "g"
                    if g not in flow.hist:
                        flow.hist.append(g)
                    self.stats["tcp_gaps"] += 1
                    self.stats["tcp_gap_bytes"] += c
                    self._notice(flow, ts, "tcp_gap", {"bytes": c, "direction": "to_server" if to_server else "to_client"})
                    sess.gap(to_server, ts, c)
                else:
                    sess.data(to_server, c, ts)
            except Exception as e:  # noqa: BLE001 - hostile bytes never end the run (see session_error)
                self.session_error(flow, ts, "gap" if type(c) is int else "data", e)
                return
            if type(c) is not int and flow.session is None:
                self.ident.data(flow, to_server, c, ts)

    def _probe(self, flow: Flow, to_server: bool, data: bytes, ts: int) -> bytes | None:
        """Accumulate the first bytes of each direction until a protocol claims the flow or none can.

        Returns the buffered bytes for the session when the flow is claimed (so nothing seen is lost)."""
        i = 0 if to_server else 1
        buf = flow.probe[i] + data
        flow.probe[i] = buf
        undecided = False
        for proto in self.probe_order:
            try:
                r = proto.probe(buf, to_server)
            except Exception as e:  # noqa: BLE001 - a probe that cannot decide says no
                self._notice(flow, ts, "session_error", {"protocol": proto.name, "where": "probe",
                                                         "error": type(e).__name__})
                self.stats["session_errors"] += 1
                r = 0
            if r > 0:
                flow.probing = False
                flow.app = flow.dissector = proto.name
                flow.ident_by = "content"
                if flow.istate is not None:
                    self.ident.cancel(flow)
                self.flow_bytes += SESSION_COST.get(proto.name, SESSION_COST_OTHER)
                other = flow.probe[1 - i]
                flow.probe = None
                try:
                    flow.session = proto.session(SessionContext(self, flow))
                    if other:  # the other direction's bytes came first: hand them over in order
                        flow.session.data(not to_server, other, ts)
                except Exception as e:  # noqa: BLE001
                    self.session_error(flow, ts, "data", e)
                    return None
                return buf
            if r < 0:
                undecided = True
        if not undecided or len(buf) >= PROBE_LIMIT:
            if not undecided or all(len(b) >= PROBE_LIMIT for b in flow.probe):
                flow.probing = False
                flow.probe = None
                if flow.app is None:  # identification may have named it already
                    flow.app = ""
        return None

    # ------------------------------------------------------------------ notices, closing, expiry
    def _notice(self, flow: Flow | None, ts: int, action: str, details: dict) -> None:
        if flow is not None:
            flow.notices += 1
        self.emit(FlowNotice(ts, action, flow.context if flow is not None else None,
                             flow.app or None if flow is not None else None, details))

    def detach(self, flow: Flow, ts: int, reason: str) -> None:
        """A session gave up on its flow (not its protocol after all): stop dissecting, say so. What the
        flow carries from here on is counted towards its server port's sustained-garbage alert."""
        self._notice(flow, ts, "protocol_violation", {"protocol": flow.app, "reason": reason})
        flow.session = None
        self.ident.start(flow)  # not what its port says: name it by what follows
        if flow.app and flow not in self.violated:
            self.violated[flow] = flow.bytes[0] + flow.bytes[1]

    def session_error(self, flow: Flow, ts: int, where: str, exc: BaseException) -> None:
        """A session raised: a parser bug that hostile bytes found. The run goes on; the flow is no longer
        dissected, and the exception becomes a notice (and an alert: crafted input reached a parser)."""
        self.stats["session_errors"] += 1
        sess, flow.session = flow.session, None
        self._notice(flow, ts, "session_error", {"protocol": flow.app, "where": where, "error": type(exc).__name__,
                                                 "message": str(exc)[:200]})
        if sess is not None and where != "close":
            try:
                sess.close(ts)  # emit what it held, if it still can
            except Exception:  # noqa: BLE001
                pass

    def memory_cap(self, flow: Flow | None, ts: int, pool: Pool) -> None:
        """A global pool refused a charge: say so (once per quiet period, however hard the flood)."""
        d = pool.report(ts)
        if d is not None:
            self._notice(flow, ts, "memory_cap", d)

    def _garbage(self, flow: Flow, ts: int) -> None:
        """Bytes a violated flow carried since the violation, added up per server address, port and
        protocol; crossing limits.garbage_alert_bytes is a `sustained_garbage` notice (and alert)."""
        start = self.violated.get(flow)
        if start is None:
            return
        now = flow.bytes[0] + flow.bytes[1]
        if now == start:
            return
        self.violated[flow] = now
        key = (flow.server_ip, flow.server_port, flow.app)
        old = self.garbage.get(key)
        if old is None and len(self.garbage) >= MAX_GARBAGE_KEYS:
            trim_oldest(self.garbage, MAX_GARBAGE_KEYS)
        total = self.garbage[key] = (old or 0) + now - start
        limit = self.limits.garbage_alert_bytes
        if (old or 0) // limit < total // limit:  # every further limit's worth is reported again
            self._notice(flow, ts, "sustained_garbage", {"protocol": flow.app, "bytes": total,
                                                         "threshold": limit})

    def truncated(self, flow: Flow, ts: int, protocol: str, nbytes: int, to_server: bool) -> None:
        """A session ended holding part of a PDU that never completed."""
        self._notice(flow, ts, "truncated_pdu", {"protocol": protocol, "bytes": nbytes,
                                                 "direction": "to_server" if to_server else "to_client"})

    def _close(self, flow: Flow, ts: int) -> None:
        if flow.closed:
            return
        flow.closed = True
        if flow.istate is not None:
            self.ident.finish(flow)
        for stream, to_server in ((flow.to_server, True), (flow.to_client, False)):
            if stream.segs:  # data still waiting behind a hole: the hole will never fill now
                out: list = []
                while stream.segs:
                    stream.skip_gap(out)
                self._deliver(flow, to_server, out, ts)
        if flow.probing:
            flow.probing = False
        if flow.session is not None:
            try:
                flow.session.close(ts)
            except Exception as e:  # noqa: BLE001
                self.session_error(flow, ts, "close", e)
        if flow in self.violated:
            self._garbage(flow, ts)
            del self.violated[flow]
        self.stats["retransmissions"] += flow.to_server.retrans + flow.to_client.retrans
        ov = flow.to_server.overlaps + flow.to_client.overlaps
        if ov:  # conflicts the last drains found (a hole given up on at the end, an acknowledged gap)
            self.stats["tcp_overlap_conflicts"] += ov
            self._overlap(flow, ts, bool(flow.to_server.overlaps))
        proto = flow.proto
        if proto != ETHER:
            hosts = self.hosts
            if len(hosts) < MAX_HOSTS:
                for ip in (flow.client_ip, flow.server_ip):
                    if ip not in hosts and connlog.is_host(ip):
                        if budget.room("summary.hosts", len(hosts), budget.HOST_BYTES, MAX_HOSTS * budget.HOST_BYTES):
                            hosts.add(ip)
                        else:  # limits.memory_total reached: counted no more ("or more" in the summary), said once
                            n = self.stats["hosts_not_counted"] = self.stats.get("hosts_not_counted", 0) + 1
                            if n == 1:
                                self._notice(flow, ts, "memory_cap", budget.room_refused("summary.hosts"))

    def _trim_talkers(self, ts: int) -> None:
        """The talker table reached limits.talkers_bytes: keep the busier half (by packets), say so."""
        keep = sorted(self.talkers.items(), key=lambda kv: -kv[1][1])[:len(self.talkers) // 2]
        dropped = len(self.talkers) - len(keep)
        self.talkers = dict(keep)
        self.stats["talkers_dropped"] += dropped
        d = {"max_bytes": self.limits.talkers_bytes, "dropped": dropped}
        if budget.SHARED is not None and "talkers" in budget.SHARED.refused:
            d["memory_total"] = budget.SHARED.limit
        self._notice(None, ts, "talker_table_full", d)

    def _remove(self, flow: Flow, ts: int, why: str) -> None:
        self._close(flow, ts)
        # Counted here, not at the FIN/RST close: the last ACK after the FINs belongs to the flow too, and
        # the talker table then agrees with the connection record's packets and bytes.
        proto = flow.proto
        k = (flow.client_ip, flow.server_ip, flow.app or "", proto,
             flow.etype if proto == ETHER else flow.client_port if proto in (1, 58) else flow.server_port)
        t = self.talkers.get(k)
        if t is None:
            g = budget.SHARED
            if len(self.talkers) >= self.max_talkers or (g is not None and len(self.talkers) >= 16 and not g.hold(
                    "talkers", (len(self.talkers) + 1) * TALKER_ENTRY, self.limits.talkers_bytes)):
                self._trim_talkers(ts)
            t = self.talkers[k] = [0, 0, 0]
        t[0] += 1
        t[1] += flow.pkts[0] + flow.pkts[1]
        t[2] += flow.bytes[0] + flow.bytes[1]
        flow.session = None  # break the flow <-> session cycle: freed now, not at the next full collection
        # a session's cost was charged when a dissector claimed the flow; a name from identification alone
        # charged nothing (taking SESSION_COST_OTHER back for those let the count drift down with every
        # identified flow, until the byte bound no longer held: 41k live flows counted as 33 MB)
        self.flow_bytes -= FLOW_BASE + (SESSION_COST.get(flow.dissector, SESSION_COST_OTHER) if flow.dissector
                                        else 0)
        proto = flow.proto
        if proto == 6 or proto == 17:
            table = self.tcp if proto == 6 else self.udp
            for key in ((flow.client_ip, flow.server_ip, flow.client_port, flow.server_port, flow.vlan),
                        (flow.server_ip, flow.client_ip, flow.server_port, flow.client_port, flow.vlan)):
                table.pop(key, None)
        else:
            self.other.pop((proto, flow.client_port, flow.client_ip, flow.server_ip, flow.vlan), None)
        self.live -= 1
        # A record is timed by the flow's own last packet, not by when the sweep, an eviction or the end of
        # the input wrote it: the same traffic gives the same document (and event.id) in any run.
        self.emit(connlog.record(flow, flow.last_ts, why))

    def sweep(self, now: int) -> None:
        """Expire idle and closed flows, and let live sessions expire their pending transactions."""
        cfg = self.cfg
        self.next_sweep = now + cfg.sweep_interval * NS
        idle_tcp, idle_udp, linger = cfg.tcp_idle_timeout * NS, cfg.udp_idle_timeout * NS, cfg.closed_linger * NS
        dead = []
        at = self.sweep_at  # None in one process; ids.parallel.shard keys each flow's emissions by it
        for table in (self.tcp, self.udp, self.other):
            for key, (f, is_c) in table.items():
                if not is_c:
                    continue
                age = now - f.last_ts
                if f.closed:
                    if age > linger:
                        dead.append(f)
                elif age > (idle_tcp if f.proto == 6 else idle_udp):
                    dead.append(f)
                elif f.session is not None:
                    if at is not None:
                        at(SWEEP_EXPIRE, f)
                    try:
                        f.session.expire(now)
                    except Exception as e:  # noqa: BLE001
                        self.session_error(f, now, "expire", e)
        if self.violated:
            for f in list(self.violated):
                if at is not None:
                    at(SWEEP_GARBAGE, f)
                self._garbage(f, now)
        for f in dead:
            if at is not None:
                at(SWEEP_REMOVE, f)
            if not f.closed:
                self.stats["flows_timed_out"] += 1
            self._remove(f, now, "timeout")

    def _evict(self, ts: int) -> None:
        """The flow table is full: close the least recently active tenth (at least one) and say so."""
        flows = sorted((f for table in (self.tcp, self.udp, self.other) for f, is_c in table.values() if is_c),
                       key=lambda f: (f.last_ts, f.flow_id))
        n = max(1, len(flows) // 10)
        for f in flows[:n]:
            self._remove(f, ts, "evicted")
        self.stats["flows_evicted"] += n
        d = {"max_flows": self.cfg.max_flows, "evicted": n, "max_bytes": self.limits.flow_table_bytes}
        if budget.SHARED is not None and "flow_table" in budget.SHARED.refused:
            d["memory_total"] = budget.SHARED.limit
        self._notice(None, ts, "flow_table_full", d)

    def finish(self, ts: int) -> None:
        """End of input: close every flow so every pending exchange is emitted with its status."""
        flows = sorted({id(f): f for table in (self.tcp, self.udp, self.other) for f, _ in table.values()}.values(),
                       key=lambda f: f.flow_id)
        for f in flows:
            self._remove(f, ts, "end")
