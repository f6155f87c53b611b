"""Decode: ethernet, vlan, sll, ipv4, ipv6, tcp, udp headers -> ids.decode.packet.Packet records."""
from .packet import Decoder, Packet

__all__ = ["Decoder", "Packet"]
