"""Configuration: frozen dataclasses with documented defaults, loaded from YAML and passed down explicitly.

`otids.example.yaml` at the top of the repository lists every key with its default and meaning; a test
checks that the two agree. Unknown keys and wrong types are errors naming the file and line, never ignored.
"""
from __future__ import annotations

import dataclasses
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import yaml

from .errors import ConfigError, SourceLocation
from .yamlload import SafeLoader as _SafeLoader
from .protocols import DISSECTED, REGISTRY


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
class LimitsConfig:
    """Bounds across flows, in bytes that count what is really held (Python object overhead included), so
    hostile traffic cannot add per-flow bounds up past what the sensor can hold (docs/ROBUSTNESS.md)."""

    flow_table_bytes: int = 104 << 20  # live flows with their sessions (flow.max_flows also holds); at the
    #                                     bound the least recently active tenth is closed (notice + alert)
    stream_buffer_total: int = 64 << 20  # out-of-order TCP segments over all streams; beyond: a gap (alert)
    reassembly_total: int = 64 << 20  # protocol reassembly over all flows (OPC UA chunks); beyond: dropped (alert)
    talkers_bytes: int = 8 << 20  # the talker table of closed flows; beyond: the quietest half is dropped (alert)
    fragment_bytes_total: int = 16 << 20  # IP fragments held over all datagrams; beyond: oldest dropped (alert)
    max_fragments: int = 1024  # fragments of one IP datagram; beyond: the datagram is dropped (alert)
    garbage_alert_bytes: int = 1 << 20  # bytes sent on flows after their protocol was violated, per server
    #                                     address, port and protocol, before a sustained-garbage alert
    pending_total: int = 32 << 20  # requests awaiting answers (Modbus, OPC UA, MQTT) over all flows; beyond: the
    #                                flow's oldest is reported unanswered (alert)
    network_state_bytes: int = 48 << 20  # the network detectors' per-source/target state; beyond: oldest forgotten (alert)
    assets_bytes: int = 32 << 20  # the asset inventory (otids assets, learn); beyond: new addresses not kept (alert)
    learner_bytes: int = 64 << 20  # the baseline learner's per-key state (talkers, every section); beyond: not kept (alert)
    baseline_state_bytes: int = 16 << 20  # deviations held and alerted by the baseline; beyond: oldest forgotten (alert)
    auth_state_bytes: int = 32 << 20  # the auth detector's per-key tables; beyond: oldest forgotten (alert)
    rules_state_bytes: int = 16 << 20  # the rules' threshold groups, shared by the threshold rules; beyond: oldest forgotten (alert)
    memory_total: int = 120 << 20  # what the flow table, the pools and the detectors' tables above hold together;
    #                                beyond: a table over its share gives up state as at its own bound (ids/flow/budget.py)


@dataclass(frozen=True)
class ProtocolsConfig:
    probe: bool = True  # detect protocols by content on ports not in the map
    ndpi: bool = True  # identify unclaimed flows with nDPI too (nfstream's engine), besides probes and ports
    # server port -> protocol; defaults: each dissected protocol's well-known ports (ids/protocols registry)
    ports: dict = field(default_factory=lambda: {n: list(p.ports) for n, p in DISSECTED.items()})


@dataclass(frozen=True)
class AnomalyConfig:
    enabled: bool = True
    exception_flood_count: int = 20  # exceptions from one server to one client ...
    exception_flood_window: int = 10  # ... within this many seconds (tumbling windows) ...
    exception_flood_ratio: float = 0.5  # ... that are at least this share of the pair's transactions
    unanswered_flood_count: int = 20
    unanswered_flood_window: int = 60
    realert_after: int = 300  # seconds before the same flood alert fires again for the same pair


@dataclass(frozen=True)
class BaselineConfig:
    """Learning and enforcing the baseline (models/README.md)."""

    file: str | None = None  # baseline to enforce in `otids analyze` (the --baseline option overrides it)
    learn_period: int = 0  # seconds: with no baseline file yet, learn this long from the start, write the file, enforce
    require_approved: bool = False  # only `status: approved` entries count as known; `learned` ones alert like new
    hold: int = 30  # seconds a new deviation is watched before its alert is written, to carry a repeat count
    realert_after: int = 3600  # seconds; a deviation still seen this long after its alert is reported again (0: never)
    value_margin_percent: int = 10  # learned value bands are widened by this share of their span on each side
    poll_min_samples: int = 5  # intervals needed before a repeated request counts as periodic
    poll_max_jitter_percent: int = 10  # ... and its median deviation may be at most this share of its period
    poll_window: int = 8  # enforcing: intervals whose median is compared with the learned period
    poll_tolerance_percent: int = 25  # enforcing: how far that median may drift (at least 3 x learned jitter)
    poll_stop_factor: int = 5  # enforcing: silent for this many periods (and at least poll_stop_min s) = stopped
    poll_stop_min: int = 10
    capture_gap: int = 60  # seconds without any event: a capture or sensor gap; periods restart after it
    max_tracked: int = 100_000  # deviations remembered (held and alerted); the oldest are forgotten first
    network_new_hosts: int = 5  # new hosts reported one by one per peer and hold window; more fold into one alert
    max_new_per_pair: int = 10  # new deviations of one kind between one client and server alerted one by one per
    #                             hold window; more fold into one alert listing them (0: no folding)
    network_silent_after: int = 3600  # seconds a baseline host may be silent while others talk before "host silent"


@dataclass(frozen=True)
class NetworkConfig:
    """Always-on network detectors: ARP watch, scans, floods, TCP flag probes (docs/NETWORK.md). Counts are
    of connection attempts (no payload either way) unless said otherwise; windows are capture seconds."""

    enabled: bool = True
    scan_window: int = 300  # seconds over which distinct targets of one source are counted (Zeek scan.zeek: 5 min)
    port_scan_ports: int = 15  # distinct ports of one host tried by one source: port (vertical) scan (Zeek: 15)
    address_scan_hosts: int = 25  # distinct hosts tried on one port by one source: address (horizontal) scan (Zeek: 25)
    icmp_sweep_hosts: int = 25  # distinct hosts sent unanswered ICMP echo/timestamp/mask requests by one source
    syn_flood_attempts: int = 100  # attempts to one host and port (any sources) within syn_flood_window
    syn_flood_window: int = 10
    arp_warmup: int = 300  # seconds of ARP traffic learned before new stations are reported
    arp_mac_ips: int = 8  # distinct IPs claimed by one MAC in ARP (proxy ARP or spoofing)
    arp_gratuitous_burst: int = 10  # gratuitous or unsolicited ARP replies from one MAC within arp_gratuitous_window
    arp_gratuitous_window: int = 10
    arp_alert_limit: int = 5  # new-station (and IP-claimed) alerts per arp_warmup seconds; more fold into one
    realert_after: int = 300  # seconds before the same finding (same rule and source) alerts again; repeats are counted
    max_tracked: int = 50_000  # sources, targets and stations remembered per detector; the oldest are forgotten first


@dataclass(frozen=True)
class MlConfig:
    model: str | None = None  # model directory from `otids train` (analyze --model overrides); none: ML off
    batch: int = 256  # windows scored together in one call
    max_delay: int = 60  # capture seconds a finished window may wait for its batch to fill
    explain: int = 3  # features reported as the drivers of each alert
    realert_after: int = 300  # seconds before the same pair alerts again (windows in between are counted)
    max_pairs: int = 10_000  # (client, server, protocol) pairs tracked at once; idle ones are forgotten first
    max_state_bytes: int = 128 << 20  # windowing state (estimated bytes); when full, an alert and new pairs untracked
    false_alerts_per_day: float = 1.0  # `otids train` sets each pair's threshold so the sensor totals about this
    adapt_every: int = 0  # seconds of traffic between refits on recent quiet windows (0: off; ml/adapt.py)
    adapt_min_windows: int = 1000  # quiet windows a refit needs
    adapt_keep: int = 50_000  # recent quiet windows kept for the next refit
    adapt_dir: str | None = None  # write each refitted model here (model directory)


@dataclass(frozen=True)
class OutputConfig:
    alerts: str = "otids-alerts.ndjson"
    events: str | None = None
    summary: bool = True
    progress: bool = True


@dataclass(frozen=True)
class ElasticsearchConfig:
    """Elasticsearch / OpenSearch output (ids/output/elasticsearch/, docs/ELASTICSEARCH.md)."""

    url: str | None = None  # e.g. https://es.example:9200 (several: comma-separated); setting it (or --es) turns the output on
    cloud_id: str | None = None  # Elastic Cloud deployment id, instead of url (and kibana_url)
    flavor: str = "auto"  # auto | elasticsearch | opensearch (auto asks the cluster at connect time)
    mode: str = "auto"  # auto | data_stream | index (auto: data streams on Elasticsearch, indices on OpenSearch)
    namespace: str = "default"  # logs-otids.alert-<namespace>, logs-otids.<protocol>-<namespace>
    sensor_name: str | None = None  # observer.name / host.name in the cluster's documents (default: hostname)
    events: bool = False  # also ship every protocol event, not only alerts
    setup: bool = True  # install policies, pipeline, templates when absent or older; false for least-privilege keys
    username: str | None = None  # basic auth; or OTIDS_ES_USERNAME
    password_file: str | None = None  # file holding the password; or OTIDS_ES_PASSWORD(_FILE)
    api_key_file: str | None = None  # file holding an encoded API key; or OTIDS_ES_API_KEY(_FILE)
    ca_file: str | None = None  # PEM CA bundle to verify the cluster's certificate
    ca_fingerprint: str | None = None  # SHA-256 of a certificate in the cluster's chain (pins it; hex, ':' allowed)
    client_cert: str | None = None  # PEM client certificate (and key, unless client_key) for TLS client auth
    client_key: str | None = None
    verify_certs: bool = True  # false only for tests; says so on every start
    kibana_url: str | None = None  # for `otids es setup` (saved objects import)
    kibana_space: str | None = None
    timeout: int = 30  # seconds per request
    batch_size: int = 500  # documents per bulk request
    flush_interval_ms: int = 1000  # longest a document waits for its batch to fill
    queue_size: int = 10_000  # in-memory queue; when full, documents go to the disk spool
    retries: int = 3  # retries of a failed batch (429, 5xx, connection) before spooling it
    backoff_initial_ms: int = 500  # first retry delay; doubles up to backoff_max_ms
    backoff_max_ms: int = 30_000
    spool_dir: str = "otids-spool"  # documents wait here while the cluster is down
    spool_max_bytes: int = 512 << 20  # cap: events are dropped first, then new alerts (counted)
    dead_letter: str = "otids-dead-letter.ndjson"  # documents the cluster rejected, with the reason
    shutdown_timeout: int = 30  # seconds a shutdown keeps delivering before leaving the rest in the spool
    alert_retention_days: int = 365  # lifecycle delete phase; 0 keeps forever
    event_retention_days: int = 30
    ignore_malformed: bool = False  # true: index a document even when a field has the wrong type

    def problem(self) -> tuple[str, str] | None:
        """(key, message) for the first invalid key, or None (checked here: config never imports output code)."""
        for k in ("url", "kibana_url"):
            for u in (getattr(self, k) or "").split(","):
                p = url_problem(u.strip()) if getattr(self, k) is not None else None
                if p:
                    return (k, p)
        if self.ca_fingerprint is not None and not re.fullmatch(r"[0-9A-Fa-f]{64}", self.ca_fingerprint.replace(":", "")):
            return ("ca_fingerprint", "must be a SHA-256 fingerprint: 64 hex digits, ':' between pairs allowed")
        if self.client_key and not self.client_cert:
            return ("client_key", "needs client_cert")
        if self.flavor not in ("auto", "elasticsearch", "opensearch"):
            return ("flavor", f"must be auto, elasticsearch or opensearch (got {self.flavor!r})")
        if self.mode not in ("auto", "data_stream", "index"):
            return ("mode", f"must be auto, data_stream or index (got {self.mode!r})")
        if not re.match(r"^[a-z0-9_]{1,100}$", self.namespace):
            return ("namespace", "must be 1-100 characters of a-z, 0-9 and _ (no '-': it separates the data "
                                 "stream name's parts)")
        for k in ("timeout", "batch_size", "queue_size", "flush_interval_ms", "backoff_initial_ms",
                  "backoff_max_ms", "spool_max_bytes"):
            if getattr(self, k) < 1:
                return (k, "must be at least 1")
        return None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a cluster or Kibana URL, or None."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"must be an http:// or https:// URL (got {url!r})"
    if u.username or u.password:
        return ("must not contain credentials (they would show in process lists and logs); use "
                "OTIDS_ES_USERNAME/OTIDS_ES_PASSWORD or password_file, or an API key")
    return None


@dataclass(frozen=True)
class LiveConfig:
    """`otids live` (docs/LIVE.md). Capture settings take effect at start; SIGHUP re-reads only what
    detectors use (the loss thresholds here, rules, baseline, registry)."""

    interfaces: list = field(default_factory=list)  # used when no -i is given
    bpf: str | None = None  # kernel capture filter (tcpdump syntax); --bpf overrides
    promiscuous: bool = True
    method: str = "ring"  # ring (TPACKET_V3 mmap ring) | socket (recvmsg per frame)
    buffer_mb: int = 64  # kernel buffer per interface: ring size, or socket receive buffer (--workers N: 1/N each)
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


def _port_map(self) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, ports in self.protocols.ports.items():
        for p in ports:
            out[int(p)] = name
    return out


def _replace(self, **sections) -> "Config":
    return dataclasses.replace(self, **sections)


def _section(name: str, cls) -> tuple:
    return (name, cls, field(default_factory=cls))


# The whole configuration: the data-path sections, then one section per protocol that declares a config class
# (ids/protocols/<name>/config.py, named after the protocol), then detection and output.
Config = dataclasses.make_dataclass(
    "Config",
    [_section("decode", DecodeConfig), _section("flow", FlowConfig), _section("limits", LimitsConfig),
     _section("protocols", ProtocolsConfig),
     *(_section(n, p.config) for n, p in REGISTRY.items() if p.config is not None),
     _section("anomaly", AnomalyConfig), _section("baseline", BaselineConfig), _section("network", NetworkConfig),
     _section("ml", MlConfig),
     _section("live", LiveConfig), _section("output", OutputConfig), _section("elasticsearch", ElasticsearchConfig)],
    namespace={"port_map": _port_map, "replace": _replace,
               "__doc__": "Every section of the configuration, each a frozen dataclass with documented defaults."},
    frozen=True)
Config.__module__ = __name__


class _LineLoader(_SafeLoader):
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
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", SourceLocation(path)) from None
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
    if ts in ("float", "<class 'float'>"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif ts in ("int", "<class 'int'>"):
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
        seen: dict[int, str] = {}
        for name, ports in obj.ports.items():
            if name not in REGISTRY:
                raise ConfigError(f"'{prefix}ports' names unknown protocol '{name}' (known: {', '.join(sorted(REGISTRY))})", where("ports"))
            if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
                raise ConfigError(f"'{prefix}ports.{name}' must be a list of port numbers 1-65535", where("ports"))
            for p in ports:
                if p in seen and seen[p] != name:
                    raise ConfigError(f"port {p} is mapped to both {seen[p]} and {name}", where("ports"))
                seen[p] = name
    check = getattr(obj, "problem", None)  # a protocol's section checks itself: (key, message) or None
    if check is not None:
        problem = check()
        if problem:
            raise ConfigError(f"'{prefix}{problem[0]}' {problem[1]}", where(problem[0]))
    if isinstance(obj, ElasticsearchConfig):
        problem = obj.problem()
        if problem:
            raise ConfigError(f"'{prefix}{problem[0]}' {problem[1]}", where(problem[0]))
    if isinstance(obj, BaselineConfig):
        for k in ("poll_window", "poll_min_samples", "poll_stop_factor"):
            if getattr(obj, k) < 2:
                raise ConfigError(f"'{prefix}{k}' must be at least 2", where(k))
    if isinstance(obj, NetworkConfig):
        for f in dataclasses.fields(obj):
            if f.name not in ("enabled", "arp_warmup") and getattr(obj, f.name) < 1:
                raise ConfigError(f"'{prefix}{f.name}' must be at least 1", where(f.name))
    if isinstance(obj, MlConfig):
        for k in ("batch", "max_pairs", "max_state_bytes"):
            if getattr(obj, k) < 1:
                raise ConfigError(f"'{prefix}{k}' must be at least 1", where(k))
        for k in ("adapt_every",):
            if getattr(obj, k) < 0:
                raise ConfigError(f"'{prefix}{k}' must be 0 (off) or more", where(k))
        for k in ("adapt_min_windows", "adapt_keep"):
            if getattr(obj, k) < 1:
                raise ConfigError(f"'{prefix}{k}' must be at least 1", where(k))
        if not obj.false_alerts_per_day > 0:
            raise ConfigError(f"'{prefix}false_alerts_per_day' must be above 0", where("false_alerts_per_day"))
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
