"""Deep mode (`otids analyze --deep`): tshark, where installed, names the flows neither nDPI nor otids' probes
can. It runs over the capture files in its own process, started with the run and read in a thread, so it is
off the hot path; the first flow that needs its opinion waits for it once. Its name for a flow is the deepest
protocol tshark dissects in the flow's packets (the most common one), mapped to otids' names.
"""
from __future__ import annotations

import collections
import shutil
import subprocess
import threading

#: tshark protocol (frame.protocols layer) -> otids name (docs/IDENTIFICATION.md)
TSHARK = {
    "s7comm": "s7comm", "s7comm-plus": "s7comm_plus", "s7comm_plus": "s7comm_plus", "dnp3": "dnp3",
    "104apci": "iec104", "104asdu": "iec104", "iec60870_asdu": "iec104", "iec60870_104": "iec104",
    "enip": "enip", "cip": "enip", "cipcm": "enip", "cipcls": "enip",
    "cipio": "cip_io", "bvlc": "bacnet", "bacnet": "bacnet", "bacapp": "bacnet", "pn_dcp": "profinet_dcp",
    "pn_rt": "profinet_rt", "pn_io": "profinet_io_cm", "omron": "omron_fins", "hart_ip": "hart_ip",
    "mms": "mms", "ams": "ads", "opcua": "opcua", "mbtcp": "modbus", "mbudp": "modbus", "modbus": "modbus",
    "mqtt": "mqtt",
    "tls": "tls", "ssl": "tls", "smb": "smb", "smb2": "smb", "nbss": "netbios", "nbns": "netbios",
    "nbdgm": "netbios", "dcerpc": "dcerpc", "rdp": "rdp", "ssh": "ssh", "telnet": "telnet", "ftp": "ftp",
    "ftp-data": "ftp_data", "tftp": "tftp", "http": "http", "dns": "dns", "mdns": "mdns", "llmnr": "llmnr",
    "dhcp": "dhcp", "bootp": "dhcp", "dhcpv6": "dhcpv6", "ntp": "ntp", "snmp": "snmp", "syslog": "syslog",
    "ldap": "ldap", "cldap": "ldap", "kerberos": "kerberos", "vnc": "vnc", "tds": "tds", "ssdp": "ssdp",
    "quic": "quic", "gquic": "quic", "coap": "coap", "nfs": "nfs", "rpc": "sunrpc", "sip": "sip",
    "db-lsp-disc": "dropbox", "db-lsp": "dropbox", "smtp": "smtp", "pop": "pop3", "imap": "imap",
    "rtsp": "rtsp", "radius": "radius", "dtls": "dtls",
}
#: layers that are framing, not the application
GENERIC = frozenset((
    "eth", "ethertype", "vlan", "ip", "ipv6", "tcp", "udp", "data", "tpkt", "cotp", "ses", "pres", "acse",
    "frame", "sll", "sll2", "null", "loop", "raw", "ipv6.hopopts", "ipv6.routing", "ipv6.fraghdr",
    "ipv6.dstopts", "media", "data-text-lines", "json", "xml", "image-jfif", "image-gif", "png", "tcp.segments",
    "browser", "mailslot", "icmp", "icmpv6", "igmp", "ip.fragments", "llc", "stp", "ieee8021ad", "ieee8021q"))
_SUBLAYERS = ("_ws", "x509", "pkcs", "ber", "gss", "spnego", "ntlmssp", "dcom", "lsarpc", "epm", "srvsvc",
              "wkssvc", "samr", "netlogon", "drsuapi")
FIELDS = ("frame.protocols", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "udp.srcport", "udp.dstport")


def packet_name(protos: list[str]) -> str | None:
    """The deepest application protocol of one frame's `frame.protocols` layers, as an otids name."""
    if "nbdgm" in protos:
        return "netbios"
    for p in reversed(protos):
        if p in TSHARK:
            return TSHARK[p]
        if p not in GENERIC and not p.startswith(_SUBLAYERS):
            return p
    return None


def parse(lines) -> dict:
    """tshark field lines (FIELDS, tab-separated) -> flow key -> Counter of per-packet names. A key is
    (transport, frozenset of the two (address, port) ends)."""
    flows: dict = collections.defaultdict(collections.Counter)
    for line in lines:
        f = line.rstrip("\n").split("\t")
        if len(f) < 9:
            continue
        protos = f[0].split(":")
        src, dst = (f[1] or f[2]).split(",")[0], (f[3] or f[4]).split(",")[0]
        if "tcp" in protos and f[5] and f[6]:
            key = ("tcp", frozenset(((src, int(f[5].split(",")[0])), (dst, int(f[6].split(",")[0])))))
        elif "udp" in protos and f[7] and f[8]:
            key = ("udp", frozenset(((src, int(f[7].split(",")[0])), (dst, int(f[8].split(",")[0])))))
        else:
            continue
        flows[key][packet_name(protos)] += 1
    return flows


def flow_names(flows: dict) -> dict:
    """flow key -> the most common name tshark gives the flow's packets (None when it names none)."""
    out = {}
    for k, c in flows.items():
        named = [(n, x) for n, x in c.most_common() if n]
        out[k] = named[0][0] if named else None
    return out


class DeepNamer:
    """tshark over `paths`, started now, read in a thread; `name(transport, a, ap, b, bp)` waits for it."""

    def __init__(self, paths: list[str], tshark: str):
        self.paths = paths
        self.tshark = tshark
        self.names: dict = {}
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="otids-deep", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, paths: list[str]) -> "DeepNamer | None":
        tshark = shutil.which("tshark")
        return cls(paths, tshark) if tshark else None

    def _run(self) -> None:
        flows: dict = collections.defaultdict(collections.Counter)
        for path in self.paths:
            cmd = [self.tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=\t"]
            for f in FIELDS:
                cmd += ["-e", f]
            try:
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     errors="replace")
            except OSError as e:
                self.error = f"tshark: {e}"
                return
            for k, c in parse(p.stdout).items():
                flows[k].update(c)
            p.wait()
        self.names = flow_names(flows)

    def name(self, transport: str, a: str, ap: int, b: str, bp: int) -> str | None:
        self._thread.join()
        return self.names.get((transport, frozenset(((a, ap), (b, bp)))))
