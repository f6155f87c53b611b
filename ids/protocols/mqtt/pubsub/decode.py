"""OPC UA PubSub NetworkMessages (placeholder until decoding lands)."""
from __future__ import annotations


def decode_pubsub(topic: str, payload: bytes):
    return None
