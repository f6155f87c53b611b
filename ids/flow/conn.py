"""Connection records (Zeek's conn.log, in ECS as dataset `otids.conn`) and link-layer observations: the
records that make every host and conversation on the wire visible, whatever protocol it speaks.

This module is the contract between the data path that produces them (flow table, decoder) and the
detectors that read them (network baseline, ARP watch, scan detection, assets). Fields may be added at the
end; none is renamed or removed without changing both sides.
"""
from __future__ import annotations

from typing import Any, NamedTuple


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
    # -- appended by the data path (netdata); never renamed
    end: int | None = None  # last packet (event.end); duration = end - start
    ip_version: int | None = None  # 4 or 6; None for non-IP conversations
    ip_proto: int | None = None  # IANA protocol number; None for non-IP conversations
    flow_protocol: str | None = None  # what the flow table knew before identification (a dissector's name)

    dataset = "otids.conn"
    label = property(lambda self: self.protocol or self.transport)  # what the run summary counts by

    @property
    def duration(self) -> int:
        return (self.end if self.end is not None else self.ts) - self.start

    def to_doc(self) -> dict:
        """ECS connection document: event.type [connection, end], per-side bytes/packets, community id,
        Zeek's state and history under otids.conn."""
        from ..events import rfc3339
        src: dict[str, Any] = {}
        dst: dict[str, Any] = {}
        if self.client_ip is not None:
            src["ip"] = self.client_ip
            dst["ip"] = self.server_ip
        if self.client_port is not None:
            src["port"] = self.client_port
            dst["port"] = self.server_port
        if self.client_mac:
            src["mac"] = self.client_mac
        if self.server_mac:
            dst["mac"] = self.server_mac
        src["bytes"], src["packets"] = self.client_bytes, self.client_packets
        dst["bytes"], dst["packets"] = self.server_bytes, self.server_packets
        net: dict[str, Any] = {"transport": self.transport,
                               "bytes": self.client_bytes + self.server_bytes,
                               "packets": self.client_packets + self.server_packets}
        if self.ip_version:
            net["type"] = f"ipv{self.ip_version}"
        if self.ip_proto is not None:
            net["iana_number"] = str(self.ip_proto)
        if self.protocol:
            net["protocol"] = self.protocol
        if self.community_id:
            net["community_id"] = self.community_id
        if self.vlan:
            net["vlan"] = {"id": str(self.vlan[0])}
            if len(self.vlan) > 1:
                net["inner"] = {"vlan": {"id": str(self.vlan[1])}}
        conn: dict[str, Any] = {"state": self.state, "history": self.history, "missed_bytes": self.missed_bytes,
                                "source_payload_bytes": self.client_payload,
                                "destination_payload_bytes": self.server_payload}
        if self.identified_by:
            conn["identified_by"] = self.identified_by
        if self.ether_type is not None:
            conn["ether_type"] = f"0x{self.ether_type:04x}"
        if self.notes:
            conn["notes"] = list(self.notes)
        end = self.end if self.end is not None else self.ts
        doc: dict[str, Any] = {"@timestamp": rfc3339(self.ts),
                               "event": {"kind": "event", "category": ["network"], "type": ["connection", "end"],
                                         "dataset": self.dataset, "start": rfc3339(self.start),
                                         "end": rfc3339(end), "duration": end - self.start},
                               "source": src, "destination": dst, "network": net, "otids": {"conn": conn}}
        if self.client_ip is not None:
            doc["related"] = {"ip": sorted({self.client_ip, self.server_ip})}
        return doc


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
    internal = True  # routed to detectors only, never written by event sinks (Engine.on_event)
    label = property(lambda self: "request" if self.op == 1 else "reply" if self.op == 2 else f"op-{self.op}")
