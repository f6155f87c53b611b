"""nDPI, in process: the reference open-source traffic classifier, reached through the cffi engine that the
`nfstream` wheel bundles (nfstream's own `meter_initialize_flow` / `meter_update_flow` / `meter_expire_flow`
over a current nDPI), fed the first packets of each flow no dissector claims.

The flow table keeps no IP header bytes, so each packet is rebuilt from its decoded fields (addresses, ports,
sequence numbers, flags, payload): nDPI reads exactly those. What nDPI calls a flow is mapped to otids'
lower-case names (docs/IDENTIFICATION.md); its guesses by port or by IP address are not content and are
left to otids' own port table. Without nfstream installed, `NdpiEngine.load()` returns None and
identification runs on otids' probes and port table alone.
"""
from __future__ import annotations

import re
import struct

#: nDPI protocol name -> otids name (docs/IDENTIFICATION.md); None: not an application protocol
NDPI_NAMES: dict[str, str | None] = {
    "S7Comm": "s7comm", "S7CommPlus": "s7comm_plus", "DNP3": "dnp3", "IEC60870": "iec104",
    "EthernetIP": "enip", "BACnet": "bacnet", "Modbus": "modbus", "OPC-UA": "opcua", "MQTT": "mqtt",
    "FINS": "omron_fins", "HART-IP": "hart_ip", "ISO9506-1-MMS": "mms", "BeckhoffADS": "ads",
    "SMBv1": "smb", "SMBv23": "smb", "NetBIOS": "netbios", "DCE_RPC": "dcerpc", "RDP": "rdp", "SSH": "ssh",
    "Telnet": "telnet", "FTP_CONTROL": "ftp", "FTP_DATA": "ftp_data", "TFTP": "tftp", "HTTP": "http",
    "TLS": "tls", "DTLS": "dtls", "QUIC": "quic", "DNS": "dns", "MDNS": "mdns", "LLMNR": "llmnr",
    "DHCP": "dhcp", "DHCPV6": "dhcpv6", "NTP": "ntp", "SNMP": "snmp", "Syslog": "syslog", "LDAP": "ldap",
    "Kerberos": "kerberos", "VNC": "vnc", "EthernetGlobalData": "egd", "IEC62056": "iec62056",
    "SSDP": "ssdp", "CoAP": "coap", "MsSQL-TDS": "tds", "TDS": "tds", "Dropbox": "dropbox", "SMTP": "smtp", "POP3": "pop3",
    "IMAP": "imap", "SIP": "sip", "RTSP": "rtsp", "Radius": "radius", "NFS": "nfs", "RPC": "sunrpc",
    "ICMP": None, "ICMPV6": None, "IGMP": None, "Unknown": None,
}

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_CONTENT = frozenset((3, 4, 5, 6, 8))  # DPI partial / partial cache / cache / DPI / aggressive
N_DISSECTIONS = 16  # packets per flow nDPI may look at


def otids_names(ndpi_name: str) -> tuple[str, ...]:
    """'Master.App' as nfstream writes it -> otids names, most specific first (NetBIOS.SMBv1 -> smb,
    netbios); a master nDPI names but otids does not list is lower-cased with other characters as '_'.
    The caller picks the one whose port it is, else the first."""
    out = [NDPI_NAMES[p] for p in reversed(ndpi_name.split(".")) if p in NDPI_NAMES and NDPI_NAMES[p]]
    if not out and ndpi_name.split(".")[0] not in NDPI_NAMES:
        n = re.sub(r"[^a-z0-9]+", "_", ndpi_name.split(".")[0].lower()).strip("_")
        if n:
            out.append(n)
    return tuple(out)


class NdpiEngine:
    """One nDPI detection module; flows are C structs owned by the caller's per-flow state."""

    def __init__(self, ffi, lib, dissector):
        self.ffi, self.lib, self.dissector = ffi, lib, dissector
        self.version = ffi.string(lib.engine_lib_ndpi_version()).decode()

    @classmethod
    def load(cls) -> "NdpiEngine | None":
        try:
            from _lib_engine import ffi, lib  # the nfstream wheel's engine
        except ImportError:
            return None
        checker = ffi.new("struct dissector_checker *")
        checker.flow_size = ffi.sizeof("struct ndpi_flow_struct")
        checker.flow_tcp_size = ffi.sizeof("struct ndpi_flow_tcp_struct")
        checker.flow_udp_size = ffi.sizeof("struct ndpi_flow_udp_struct")
        dissector = lib.dissector_init(checker)
        if dissector == ffi.NULL:
            return None
        lib.dissector_configure(dissector)
        return cls(ffi, lib, dissector)

    def packet(self, state, p, first: bool) -> bool:
        """Feed one packet (ids.decode.Packet) to the flow in `state` (a list: [C flow or None, initial
        sender, ...]); True when nDPI has finished with the flow."""
        ffi, lib = self.ffi, self.lib
        proto, src, dst = p.proto, p.src, p.dst
        payload = p.payload
        if proto == 6:
            l4 = _TCP.pack(p.sport, p.dport, p.seq, p.ack, 0x50, p.flags, 65535, 0, 0) + payload
        elif proto == 17:
            l4 = _UDP.pack(p.sport, p.dport, 8 + len(payload), 0) + payload
        else:
            return True
        if len(src) == 4:
            ip = _IP4.pack(0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst) + l4
        else:
            ip = _IP6.pack(0x60000000, len(l4), proto, 64, src, dst) + l4
        if len(ip) > 65535:
            ip = ip[:65535]
        pk = ffi.new("struct nf_packet *")
        buf = ffi.from_buffer(ip)
        if state[0] is None:
            state[1] = src
        pk.direction = 0 if src == state[1] else 1
        pk.time = p.ts // 1_000_000
        pk.ip_version = 4 if len(src) == 4 else 6
        pk.protocol = proto
        pk.src_port, pk.dst_port = p.sport, p.dport
        if len(src) == 4:
            pk.src_ip[0] = int.from_bytes(src, "little")
            pk.dst_ip[0] = int.from_bytes(dst, "little")
        else:
            pk.src_ip[0], pk.src_ip[1] = int.from_bytes(src[:8], "little"), int.from_bytes(src[8:], "little")
            pk.dst_ip[0], pk.dst_ip[1] = int.from_bytes(dst[:8], "little"), int.from_bytes(dst[8:], "little")
        f = p.flags
        pk.fin, pk.syn, pk.rst, pk.psh, pk.ack, pk.urg = f & 1, (f >> 1) & 1, (f >> 2) & 1, (f >> 3) & 1, \
            (f >> 4) & 1, (f >> 5) & 1
        pk.raw_size = pk.ip_size = len(ip)
        pk.transport_size = len(l4)
        pk.payload_size = len(payload)
        pk.ip_content = buf
        pk.ip_content_len = len(ip)
        if state[0] is None:
            c = lib.meter_initialize_flow(pk, 0, 0, 0, N_DISSECTIONS, self.dissector, 1)
            if c == ffi.NULL:
                return True
            state[0] = c
        else:
            lib.meter_update_flow(state[0], pk, 1 << 62, 1 << 62, 0, 0, 0, N_DISSECTIONS, self.dissector, 1)
        return bool(state[0].detection_completed)

    def result(self, state) -> tuple[str, ...]:
        """What nDPI found by content, most specific name first (empty: nothing, or only a guess); frees
        the C flow."""
        c = state[0]
        if c is None:
            return ()
        ffi, lib = self.ffi, self.lib
        if not c.detection_completed:
            lib.meter_expire_flow(c, N_DISSECTIONS, self.dissector)
        name = ffi.string(c.application_name).decode("utf-8", "replace")
        content = not c.guessed and c.confidence in _CONTENT
        lib.meter_free_flow(c, N_DISSECTIONS, 0, 1)
        state[0] = None
        return otids_names(name) if content and name else ()

    def free(self, state) -> None:
        if state[0] is not None:
            self.lib.meter_free_flow(state[0], N_DISSECTIONS, 0, 1)
            state[0] = None
