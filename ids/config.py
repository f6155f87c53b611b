"""Configuration: frozen dataclasses with documented defaults, loaded from YAML and passed down explicitly.

`otids.example.yaml` at the top of the repository lists every key with its default and meaning; a test
checks that the two agree. Unknown keys and wrong types are errors naming the file and line, never ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import yaml

from .errors import ConfigError, SourceLocation


@dataclass(frozen=True)
class DecodeConfig:
    checksums: str = "auto"  # auto | on | off
    max_fragmented_datagrams: int = 1024
    fragment_timeout: int = 30  # seconds


@dataclass(frozen=True)
class FlowConfig:
    max_flows: int = 100_000
    tcp_idle_timeout: int = 3600  # seconds without a packet before a TCP flow is closed
    udp_idle_timeout: int = 120
    closed_linger: int = 10  # seconds a closed flow is kept to absorb trailing packets
    max_stream_buffer: int = 1 << 20  # out-of-order bytes buffered per direction before a gap is declared
    sweep_interval: int = 5  # seconds of capture time between timeout sweeps


@dataclass(frozen=True)
class ProtocolsConfig:
    probe: bool = True  # detect protocols by content on ports not in the map
    ports: dict = field(default_factory=lambda: {"modbus": [502]})


@dataclass(frozen=True)
class ModbusConfig:
    max_values: int = 125  # read/written values kept per transaction; more sets anomaly values_truncated
    max_pending: int = 256  # outstanding requests per flow before the oldest is emitted unanswered
    request_timeout: int = 30  # seconds before a request without response is emitted unanswered


@dataclass(frozen=True)
class AnomalyConfig:
    enabled: bool = True
    exception_flood_count: int = 20  # exceptions from one server to one client ...
    exception_flood_window: int = 10  # ... within this many seconds
    unanswered_flood_count: int = 20
    unanswered_flood_window: int = 60
    realert_after: int = 300  # seconds before the same flood alert fires again for the same pair


@dataclass(frozen=True)
class OutputConfig:
    alerts: str = "otids-alerts.ndjson"
    events: str | None = None
    summary: bool = True
    progress: bool = True


@dataclass(frozen=True)
class LiveConfig:
    """`otids live` (docs/LIVE.md). Capture settings take effect at start; SIGHUP re-reads only what
    detectors use (the loss thresholds here, rules, baseline, registry)."""

    interfaces: list = field(default_factory=list)  # used when no -i is given
    bpf: str | None = None  # kernel capture filter (tcpdump syntax); --bpf overrides
    promiscuous: bool = True
    method: str = "ring"  # ring (TPACKET_V3 mmap ring) | socket (recvmsg per frame)
    buffer_mb: int = 64  # kernel buffer per interface: ring size, or socket receive buffer
    snaplen: int = 65535  # longer frames are cut and counted as sensor drops (socket method)
    block_timeout_ms: int = 20  # ring: a partly filled block is handed over after this long
    stats_interval: int = 60  # seconds between stats events (and console lines)
    user: str | None = None  # after opening the capture, drop root and run as this user
    keep_net_raw: bool = True  # keep CAP_NET_RAW after dropping root, to reopen an interface that was removed
    loss_alert_ratio: float = 0.001  # loss (kernel + sensor drops / frames seen) in one interval that alerts
    loss_alert_min: int = 10  # ... and at least this many frames lost in that interval
    evidence_mb: int = 0  # keep the last N MB of frames in memory and write them as pcapng on alert; 0 = off
    evidence_dir: str = "evidence"
    evidence_after: int = 5  # seconds of traffic after the alert included in its evidence file
    evidence_max_files: int = 100  # oldest evidence files are deleted beyond this


@dataclass(frozen=True)
class Config:
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    protocols: ProtocolsConfig = field(default_factory=ProtocolsConfig)
    modbus: ModbusConfig = field(default_factory=ModbusConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    live: LiveConfig = field(default_factory=LiveConfig)

    def port_map(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for name, ports in self.protocols.ports.items():
            for p in ports:
                out[int(p)] = name
        return out

    def replace(self, **sections) -> "Config":
        return dataclasses.replace(self, **sections)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping key stands, for error messages."""


def _construct_mapping(loader, node, deep=False):
    m = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    lines = {}
    for k, v in node.value:
        lines[loader.construct_object(k)] = (k.start_mark.line + 1, k.start_mark.column + 1)
    m = _Located(m)
    m.lines = lines
    return m


class _Located(dict):
    lines: dict


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | None) -> Config:
    if path is None:
        return Config()
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=_LineLoader)
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", SourceLocation(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', e)}",
                          SourceLocation(path, mark.line + 1 if mark else None,
                                         mark.column + 1 if mark else None)) from None
    if raw is None:
        return Config()
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of sections", SourceLocation(path, 1))
    return _build(Config, raw, path, "")


def _build(cls, raw: dict, path: str, prefix: str):
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    lines = getattr(raw, "lines", {})
    for key, value in raw.items():
        line, col = lines.get(key, (None, None))
        where = SourceLocation(path, line, col)
        if key not in names:
            raise ConfigError(f"unknown key '{prefix}{key}' (known: {', '.join(sorted(names))})", where)
        t = hints[key]
        if dataclasses.is_dataclass(t):
            if not isinstance(value, dict):
                raise ConfigError(f"'{prefix}{key}' must be a mapping", where)
            kwargs[key] = _build(t, value, path, f"{prefix}{key}.")
            continue
        kwargs[key] = _check(t, value, f"{prefix}{key}", where)
    obj = cls(**kwargs)
    _validate(obj, path, prefix, lines)
    return obj


def _check(t, value, name, where):
    ts = str(t)
    if ts in ("int", "<class 'int'>"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif ts in ("bool", "<class 'bool'>"):
        ok = isinstance(value, bool)
    elif ts in ("str", "<class 'str'>"):
        ok = isinstance(value, str)
    elif "str | None" in ts or "Optional[str]" in ts:
        ok = value is None or isinstance(value, str)
    elif ts in ("dict", "<class 'dict'>"):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"'{name}' has the wrong type ({type(value).__name__}; expected {ts.replace('<class ', '').strip('>')})", where)
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"'{name}' must not be negative", where)
    return value


def _validate(obj, path, prefix, lines):
    def where(k):
        ln = lines.get(k, (None, None))
        return SourceLocation(path, *ln)

    if isinstance(obj, DecodeConfig) and obj.checksums not in ("auto", "on", "off"):
        raise ConfigError(f"'{prefix}checksums' must be auto, on or off (got {obj.checksums!r})", where("checksums"))
    if isinstance(obj, ProtocolsConfig):
        from .protocols import PROTOCOLS
        seen: dict[int, str] = {}
        for name, ports in obj.ports.items():
            if name not in PROTOCOLS:
                raise ConfigError(f"'{prefix}ports' names unknown protocol '{name}' (known: {', '.join(sorted(PROTOCOLS))})", where("ports"))
            if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
                raise ConfigError(f"'{prefix}ports.{name}' must be a list of port numbers 1-65535", where("ports"))
            for p in ports:
                if p in seen and seen[p] != name:
                    raise ConfigError(f"port {p} is mapped to both {seen[p]} and {name}", where("ports"))
                seen[p] = name
    if isinstance(obj, LiveConfig):
        if obj.method not in ("ring", "socket"):
            raise ConfigError(f"'{prefix}method' must be ring or socket (got {obj.method!r})", where("method"))
        r = obj.loss_alert_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise ConfigError(f"'{prefix}loss_alert_ratio' must be a number above 0 and at most 1", where("loss_alert_ratio"))
        if not isinstance(obj.interfaces, list) or not all(isinstance(i, str) and i for i in obj.interfaces):
            raise ConfigError(f"'{prefix}interfaces' must be a list of interface names", where("interfaces"))
        for k in ("buffer_mb", "stats_interval", "snaplen"):
            if getattr(obj, k) < 1:
                raise ConfigError(f"'{prefix}{k}' must be at least 1", where(k))
    if isinstance(obj, FlowConfig):
        for k in ("max_flows", "sweep_interval", "max_stream_buffer"):
            if getattr(obj, k) < 1:
                raise ConfigError(f"'{prefix}{k}' must be at least 1", where(k))
