"""Always-on network detectors: they read the connection records and ARP frames of ids/flow/conn.py and
need no baseline. arp.py (ARP watch), scan.py (port, address, UDP scans, ICMP sweeps, SYN floods), flags.py
(unusual TCP flag combinations), rules.py (what each finding is, its severity and ATT&CK for ICS
techniques), common.py (alert building and the once-per-finding limiter); the analyze/live plug-in is ids/commands/network.py.
Thresholds are the `network:` config section (docs/NETWORK.md). What is *new* on a network is the
baseline's business (ids/detect/baseline/network.py), not theirs.
"""
from __future__ import annotations

from .arp import ArpWatch
from .flags import FlagDetector
from .scan import ScanDetector


def detectors(cfg, state_bytes: int | None = None) -> list:
    """`state_bytes`: limits.network_state_bytes, shared out between the scan and flag detectors."""
    if state_bytes is None:
        return [ArpWatch(cfg), ScanDetector(cfg), FlagDetector(cfg)]
    return [ArpWatch(cfg), ScanDetector(cfg, state_bytes), FlagDetector(cfg, state_bytes)]


__all__ = ["ArpWatch", "FlagDetector", "ScanDetector", "detectors"]
