"""Protocol identification for flows no dissector claims: content first, port second, on the first packets of
a flow only. The name ends up in the flow's connection record (`network.protocol`, `otids.conn.identified_by`).

Content comes from two sources: nDPI in process (ids.flow.ndpi, the reference classifier) and the content
probes of the identified-only protocol packages (ids/protocols/<name>/, one ProtocolSpec each), written from
the specifications for what nDPI lacks or gets wrong for OT (S7comm-plus apart from S7comm, OPC DA and
PROFINET IO inside DCE/RPC, MELSEC, mDNS/LLMNR apart from DNS). A probe that refines nDPI's answer
(`extra["refines"]`) wins; otherwise nDPI's answer wins over a probe's. Without either, the well-known port
table names the flow (`identified_by: port`). A flow whose content names a protocol on a port that belongs
to another gets the note `port_protocol_mismatch`. Non-IP conversations are named by EtherType (and the
PROFINET frame id).

Cost: nothing for flows a dissector claims by port; otherwise at most IDENT_PACKETS packets per flow.
"""
from __future__ import annotations

from ..protocols import identified

IDENT_PACKETS = 16  # packets per flow nDPI and the probes may look at
#: What one flow under nDPI holds in C (nfstream's meter flow with nDPI's flow struct and what nDPI allocates
#: for it), beyond the Python objects tracemalloc sees: glibc's bytes in use over 10,000 flows with one payload
#: each, 2.9 KB. The flow table counts it against limits.flow_table_bytes (tests/test_hostile_state.py holds
#: it to that measurement).
NDPI_FLOW_BYTES = 2900
PROBE_PAYLOADS = 4  # payload packets the probes look at

#: EtherType -> name for non-IP conversations (IEEE registry; 0x8892 is split by frame id below)
ETHER_NAMES = {
    0x0806: "arp", 0x88CC: "lldp", 0x88B8: "goose", 0x88BA: "sv", 0x88F7: "ptp", 0x8809: "lacp",
    0x888E: "eapol", 0x88E3: "mrp", 0x892F: "hsr", 0x88FB: "prp", 0x88A4: "ethercat", 0x0842: "wol",
    0x9000: "loopback", 0x88E5: "macsec", 0x8863: "pppoe", 0x8864: "pppoe", 0x88B5: "local_experimental",
    0x0000: "llc", 0x8100: "vlan", 0x86DD: "ipv6", 0x0800: "ipv4", 0x8137: "ipx", 0x80F3: "aarp",
    0x22F3: "trill", 0x88AB: "powerlink", 0x88CD: "sercos_iii", 0x8204: "qnx_qnet",
}


class Identifier:
    """Names flows from the identified-only packages (`ids.protocols.identified()`), nDPI and the port
    table. `dissector_ports`: server port -> dissector name (those ports belong to a dissector)."""

    def __init__(self, dissector_ports: dict[int, str], use_ndpi: bool = True):
        self.specs = identified()
        self.ports: dict[str, dict[int, str]] = {"tcp": {}, "udp": {}, "ether": {}}
        for s in self.specs.values():
            for t in s.transport.split("/"):
                for port in s.ports:
                    self.ports[t].setdefault(port, s.name)
        for port, name in dissector_ports.items():
            self.ports["tcp"][port] = name
        self.own_ports = {s.name: set(s.ports) for s in self.specs.values()}
        for port, name in dissector_ports.items():
            self.own_ports.setdefault(name, set()).add(port)
        # refining probes first: they name what a more general one (DCE/RPC, DNS) would also match
        order = sorted(self.specs.values(), key=lambda s: 0 if s.extra.get("refines") else 1)
        self.probes = {t: [(s.name, s.probe) for s in order if t in s.transport.split("/") and s.probe
                           and not s.extra.get("refines") in ("dns",)]
                       for t in ("tcp", "udp")}
        self.refiners: dict[str, list] = {}
        for s in self.specs.values():
            r = s.extra.get("refines")
            if r:
                self.refiners.setdefault(r, []).append(s)
        self.use_ndpi = use_ndpi
        self.c_flows = 0  # flows holding an nDPI C flow now (NDPI_FLOW_BYTES each)
        self.deep = None  # ids.flow.deep.DeepNamer in deep mode (otids analyze --deep)
        self._ndpi = None
        self.ndpi_version: str | None = None

    @property
    def ndpi(self):
        if self._ndpi is None and self.use_ndpi:
            from .ndpi import NdpiEngine
            self._ndpi = NdpiEngine.load()
            self.use_ndpi = self._ndpi is not None
            if self._ndpi is not None:
                self.ndpi_version = self._ndpi.version
        return self._ndpi

    # ------------------------------------------------------------------ flow hooks
    def start(self, flow) -> None:
        """A new flow no dissector holds (yet): look at its next packets."""
        flow.ident = IDENT_PACKETS
        # [nDPI C flow, nDPI's initial sender, probe's name, payload packets probed, nDPI finished, nDPI name]
        flow.istate = [None, None, None, 0, self.ndpi is None, None]

    def packet(self, flow, p, to_server: bool) -> None:
        """One packet of a flow under identification (the table calls this while flow.ident > 0)."""
        st = flow.istate
        flow.ident -= 1
        if not st[4] and (p.payload or st[0] is not None):  # nDPI starts at the first payload: scans cost nothing
            held = st[0] is not None
            if self._ndpi.packet(st, p, not held):
                st[5] = self._ndpi.result(st)
                st[4] = True
            self.c_flows += (st[0] is not None) - held
        payload = p.payload
        if payload and st[2] is None and st[3] < PROBE_PAYLOADS:
            st[3] += 1
            for name, probe in self.probes["tcp" if p.proto == 6 else "udp"]:
                try:
                    r = probe(payload, to_server)
                except Exception:  # noqa: BLE001 - a probe bug must not stop the sensor; the flow stays unnamed
                    r = 0
                if r > 0:
                    st[2] = name
                    break
        if flow.ident <= 0 or (st[4] and (st[2] is not None or st[3] >= PROBE_PAYLOADS)):
            self.finish(flow)

    def data(self, flow, to_server: bool, buf: bytes, ts: int) -> None:
        """Bytes a dissector gave up on (it detached from the flow): the packet that carried them, rebuilt
        from the flow's addresses, goes through identification like any other."""
        if not flow.ident:
            return
        from ..decode.packet import Packet
        src, dst, sp, dp = (flow.client_ip, flow.server_ip, flow.client_port, flow.server_port) if to_server else \
            (flow.server_ip, flow.client_ip, flow.server_port, flow.client_port)
        self.packet(flow, Packet(ts, flow.proto, src, dst, sp, dp, 0, 0, 0x18, buf, None, None, flow.vlan,
                                 False, 0), to_server)

    def cancel(self, flow) -> None:
        """A dissector claimed the flow after all."""
        st = flow.istate
        if st is not None and st[0] is not None:
            self._ndpi.free(st)
            self.c_flows -= 1
        flow.istate = None
        flow.ident = 0

    def finish(self, flow) -> None:
        """Decide: content (a refining probe, nDPI, a probe), then port; say so on the flow."""
        st = flow.istate
        if st is None:
            return
        flow.istate = None
        flow.ident = 0
        ndpi_names = st[5] or ()
        if not st[4] and st[0] is not None:
            ndpi_names = self._ndpi.result(st)
            self.c_flows -= 1
        probe_name = st[2]
        transport = "tcp" if flow.proto == 6 else "udp"
        ndpi_name = None
        for n in ndpi_names:  # NetBIOS.SMBv1 on 138 is netbios, on 445 smb
            if flow.server_port in self.own_ports.get(n, ()) or flow.client_port in self.own_ports.get(n, ()):
                ndpi_name = n
                break
        else:
            ndpi_name = ndpi_names[0] if ndpi_names else None
        name = None
        if probe_name and (ndpi_name is None or self.specs[probe_name].extra.get("refines") == ndpi_name):
            name = probe_name
        elif ndpi_name:
            name = ndpi_name
        port_owner = self.ports[transport].get(flow.server_port)
        if name is not None:
            for s in self.refiners.get(name, ()):
                if flow.server_port in s.ports or flow.client_port in s.ports:
                    name = s.name
                    break
            flow.app = name
            flow.ident_by = "content"
            if port_owner is not None and port_owner != name \
                    and flow.server_port not in self.own_ports.get(name, ()) and not self._related(name, port_owner):
                flow.cnotes.add("port_protocol_mismatch")
        elif self.deep is not None and flow.dissector is None and \
                (name := self._deep(flow, transport)) is not None:
            flow.app = name
            flow.ident_by = "content"
            flow.cnotes.add("named_by_tshark")
        elif flow.dissector is not None:  # its dissector let the flow go: the content contradicts the port
            flow.app = ""
            flow.ident_by = None
            flow.cnotes.add("port_protocol_mismatch")
        elif port_owner is not None:
            flow.app = port_owner
            flow.ident_by = "port"

    def _deep(self, flow, transport: str) -> str | None:
        from ..events import ip_text
        return self.deep.name(transport, ip_text(flow.client_ip), flow.client_port,
                              ip_text(flow.server_ip), flow.server_port)

    def _related(self, a: str, b: str) -> bool:
        """One refines the other (OPC DA inside DCE/RPC on 135, mDNS and DNS): no mismatch."""
        sa, sb = self.specs.get(a), self.specs.get(b)
        return (sa is not None and sa.extra.get("refines") == b) or (sb is not None and sb.extra.get("refines") == a)

    def ether(self, flow, payload: bytes) -> None:
        """Name a non-IP conversation by its EtherType (PROFINET: DCP or RT by frame id)."""
        et = flow.etype
        if et == 0x8892:
            flow.app = "profinet_dcp" if self.specs["profinet_dcp"].probe(payload, True) > 0 else "profinet_rt"
        else:
            flow.app = ETHER_NAMES.get(et, "")  # unknown: the record's ether_type says what it was
        flow.ident_by = "content" if flow.app else None
