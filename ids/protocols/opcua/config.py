"""The `opcua:` section of the configuration (OPC UA dissection bounds and output options). ids/config.py
composes it into `Config` from the protocol registry; otids.example.yaml documents every key.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpcuaConfig:
    max_message_size: int = 16 << 20  # reassembled message bytes kept; beyond: anomaly chunk_cap_hit
    max_chunks: int = 4096  # chunks per message before chunk_cap_hit (negotiated limits checked as well)
    max_chunk_size: int = 8 << 20  # one chunk larger than this is skipped unread (chunk_cap_hit)
    max_partial_messages: int = 16  # messages being reassembled at once per direction
    max_pending: int = 1024  # outstanding requests per flow before the oldest is emitted unanswered
    request_timeout: int = 60  # seconds (or the request's timeoutHint if longer) before unanswered
    max_values: int = 32  # array elements (nodes, values, results) kept per list in an event
