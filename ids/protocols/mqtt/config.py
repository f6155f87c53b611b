"""The `mqtt:` section of the configuration (MQTT dissection bounds and output options). ids/config.py
composes it into `Config` from the protocol registry; otids.example.yaml documents every key.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MqttConfig:
    # Control packets longer than this (remaining length, bytes) are not parsed whole: a PUBLISH keeps its
    # topic, packet id and properties, the rest is skipped and recorded as truncated with its size
    # (Suricata app-layer.protocols.mqtt.max-msg-length). Also bounds the bytes buffered per direction.
    max_message_length: int = 1 << 20
    # Longest PUBLISH payload / will message kept on the event and written, and the bytes of SUBSCRIBE and
    # UNSUBSCRIBE topic filters written per packet, all filters together; longer text ends in
    # "[truncated N additional bytes]" (Suricata eve mqtt string-log-limit).
    string_log_limit: int = 1024
    max_pending: int = 1024  # open exchanges per flow; more ends the oldest (anomaly too_many_transactions)
    exchange_timeout: int = 60  # seconds an exchange waits for its answer before it is written incomplete
    log_passwords: bool = False  # write CONNECT passwords and v5 authentication data to the events output

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for a value the type check cannot catch, or None."""
        if self.max_pending < 1:
            return "max_pending", "must be at least 1"
        return None
