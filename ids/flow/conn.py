"""Connection records (Zeek's conn.log, in ECS as dataset `otids.conn`) and link-layer observations: the
records that make every host and conversation on the wire visible, whatever protocol it speaks.

This module is the contract between the data path that produces them (flow table, decoder) and the
detectors that read them (network baseline, ARP watch, scan detection, assets). Fields may be added at the
end; none is renamed or removed without changing both sides.
"""
from __future__ import annotations

from typing import NamedTuple


class ConnRecord(NamedTuple):
    """One connection (TCP, UDP, ICMP, another IP protocol) or non-IP conversation, written when it ends,
    expires, is evicted, or the input ends. Times in ns since the epoch."""

    ts: int  # when the record is written (end of the connection): the document's @timestamp
    start: int  # first packet
    flow_id: int  # per-run sequence number (0 for records that are not flow-table flows)
    transport: str  # tcp, udp, icmp, ipv6-icmp, ip-<number>, or ether (non-IP)
    protocol: str | None  # identified application protocol, lower case (one documented table), or None
    identified_by: str | None  # "content", "port" or None
    client_ip: str | None  # originator (Zeek's orig_h); None for non-IP conversations
    client_port: int | None  # ICMP: type; non-IP: None
    client_mac: str | None
    server_ip: str | None  # responder (Zeek's resp_h)
    server_port: int | None  # ICMP: code; non-IP: None
    server_mac: str | None
    vlan: tuple[int, ...] | None
    community_id: str | None
    client_packets: int
    client_bytes: int  # IP bytes, as Zeek's orig_ip_bytes (non-IP: frame bytes)
    server_packets: int
    server_bytes: int
    client_payload: int  # application bytes (Zeek's orig_bytes)
    server_payload: int
    state: str  # Zeek's conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH
    history: str  # Zeek's history letters (ShADadFfRr...), "" where it does not apply
    missed_bytes: int
    ether_type: int | None = None  # non-IP conversations: the EtherType (0x8892 PROFINET, 0x88cc LLDP, 0x0806 ARP)
    notes: tuple[str, ...] = ()  # e.g. "port_protocol_mismatch", "midstream", "evicted"

    dataset = "otids.conn"


class ArpPacket(NamedTuple):
    """One ARP frame (RFC 826), as seen: the ARP watch reads these; they are summarised per pair into
    ConnRecords with transport "ether" and are not written one by one."""

    ts: int
    op: int  # 1 request, 2 reply
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str
    eth_src: str
    eth_dst: str
    vlan: tuple[int, ...] | None

    dataset = "otids.arp"
