"""The `tls:` section of the configuration (TLS dissection bounds and output options). ids/config.py
composes it into `Config` from the protocol registry; otids.example.yaml documents every key.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TlsConfig:
    # Handshake bytes buffered per direction (a handshake message in progress, e.g. a certificate chain);
    # a longer message stops the dissection of that direction (anomaly handshake_too_large).
    max_handshake_bytes: int = 1 << 16
    max_certificates: int = 8  # certificates decoded per chain; the rest are counted
    handshake_timeout: int = 60  # seconds without progress before an unfinished handshake is written
