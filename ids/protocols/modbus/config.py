"""The `modbus:` section of the configuration (Modbus/TCP dissection bounds and output options). ids/config.py
composes it into `Config` from the protocol registry; otids.example.yaml documents every key.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModbusConfig:
    max_values: int = 125  # read/written values kept per transaction; more sets anomaly values_truncated
    max_pending: int = 256  # outstanding requests per flow before the oldest is emitted unanswered
    request_timeout: int = 30  # seconds before a request without response is emitted unanswered
