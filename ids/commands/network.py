"""The network detectors as an `analyze`/`live` plug-in (ids/cli.py ANALYZE_PLUGINS): on unless
`network.enabled: false` or --no-network-detectors."""
from __future__ import annotations


def add_arguments(parser) -> None:
    g = parser.add_argument_group("network detectors")
    g.add_argument("--no-network-detectors", action="store_true",
                   help="no ARP watch, scan, flood and TCP flag detection (config: network.enabled)")


def build(args, config):
    if getattr(args, "no_network_detectors", False) or not config.network.enabled:
        return [], [], []
    from ..detect.network import detectors
    return detectors(config.network, config.limits.network_state_bytes), [], []
