"""Device registry: which devices exist and how each must prove who it is (OPC UA ApplicationUri, pinned
certificate thumbprints or issuing CA, MQTT client ids and usernames, TLS client certificate subjects), plus
the site's authentication policy. YAML (example: deploy/registry.example.yaml); every error names
file:line:col.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import yaml

from ...errors import ConfigError, SourceLocation
from ...yamlload import SafeLoader as _SafeLoader
from .certs import CheckPolicy

SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")


@dataclass(frozen=True)
class OpcuaIdentity:
    application_uri: str | None = None
    certificate_sha256: tuple[str, ...] = ()  # pinned certificates (lower-case hex)
    issuer: str | None = None  # expected issuing CA, RFC 4514 distinguished name
    min_security_mode: str | None = None


@dataclass(frozen=True)
class MqttIdentity:
    client_ids: tuple[str, ...] = ()
    usernames: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsIdentity:
    client_subjects: tuple[str, ...] = ()  # RFC 4514 distinguished names


@dataclass(frozen=True)
class Device:
    name: str
    ips: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    opcua: OpcuaIdentity = field(default_factory=OpcuaIdentity)
    mqtt: MqttIdentity = field(default_factory=MqttIdentity)
    tls: TlsIdentity = field(default_factory=TlsIdentity)


@dataclass(frozen=True)
class AuthPolicy:
    require_ca_issued: bool = True
    expiry_warning_days: int = 30
    min_rsa_bits: int = 2048
    opcua_min_security_mode: str = "Sign"
    mqtt_require_auth: bool = True
    mqtt_require_tls: bool = False
    realert_after: int = 3600  # seconds before the same finding alerts again (repeats are counted)

    def cert_policy(self) -> CheckPolicy:
        return CheckPolicy(self.expiry_warning_days, self.require_ca_issued, self.min_rsa_bits)


@dataclass
class Registry:
    policy: AuthPolicy = field(default_factory=AuthPolicy)
    devices: list[Device] = field(default_factory=list)
    trust_store: str | None = None
    source: str | None = None

    def __post_init__(self):
        self.by_ip = {ip: d for d in self.devices for ip in d.ips}
        self.by_mac = {m: d for d in self.devices for m in d.macs}
        self.by_app_uri = {d.opcua.application_uri: d for d in self.devices if d.opcua.application_uri}
        self.by_client_id = {c: d for d in self.devices for c in d.mqtt.client_ids}

    def device_at(self, ip: str | None, mac: str | None = None) -> Device | None:
        return self.by_ip.get(ip) if ip in self.by_ip else self.by_mac.get(mac) if mac else None


# ---------------------------------------------------------------------------------------------- loading

class _Loader(_SafeLoader):
    pass


def _mapping(loader, node):
    m = _Pos(yaml.SafeLoader.construct_mapping(loader, node, deep=True))
    m.mark = (node.start_mark.line + 1, node.start_mark.column + 1)
    m.keys_at = {loader.construct_object(k): (k.start_mark.line + 1, k.start_mark.column + 1) for k, _ in node.value}
    return m


class _Pos(dict):
    mark: tuple
    keys_at: dict


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_registry(path: str) -> Registry:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=_Loader)
    except OSError as e:
        raise ConfigError(f"cannot read registry: {e.strerror}", SourceLocation(path)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", SourceLocation(path)) from None
    except yaml.YAMLError as e:
        m = getattr(e, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', e)}",
                          SourceLocation(path, m.line + 1 if m else None, m.column + 1 if m else None)) from None
    if raw is None:
        return Registry(source=path)
    p = _Parser(path)
    p.keys(raw, {"policy", "devices", "trust_store"}, "registry")
    policy = p.section(raw, "policy", AuthPolicy)
    if policy.opcua_min_security_mode not in SECURITY_MODES:
        p.fail(raw["policy"], "opcua_min_security_mode", f"must be one of {', '.join(SECURITY_MODES)}")
    devices = []
    names: set[str] = set()
    for d in p.list(raw, "devices"):
        dev = p.device(d)
        if dev.name in names:
            p.fail(d, "name", f"duplicate device name '{dev.name}'")
        names.add(dev.name)
        devices.append(dev)
    ts = raw.get("trust_store")
    if ts is not None and not isinstance(ts, str):
        p.fail(raw, "trust_store", "must be a directory path")
    return Registry(policy, devices, ts, path)


class _Parser:
    def __init__(self, path):
        self.path = path

    def where(self, node, key=None) -> SourceLocation:
        if isinstance(node, _Pos):
            line, col = node.keys_at.get(key, node.mark) if key is not None else node.mark
            return SourceLocation(self.path, line, col)
        return SourceLocation(self.path)

    def fail(self, node, key, msg):
        raise ConfigError(f"{key}: {msg}" if key else msg, self.where(node, key))

    def keys(self, node, allowed, what):
        if not isinstance(node, dict):
            raise ConfigError(f"{what} must be a mapping", self.where(node))
        for k in node:
            if k not in allowed:
                self.fail(node, k, f"unknown key in {what} (known: {', '.join(sorted(allowed))})")

    def section(self, raw, key, cls):
        node = raw.get(key)
        if node is None:
            return cls()
        fields_ = cls.__dataclass_fields__
        self.keys(node, set(fields_), key)
        kw = {}
        for k, v in node.items():
            want = type(getattr(cls(), k))
            if want is bool and not isinstance(v, bool) or want is int and (not isinstance(v, int) or isinstance(v, bool)) \
                    or want is str and not isinstance(v, str):
                self.fail(node, k, f"must be {want.__name__}")
            kw[k] = v
        return cls(**kw)

    def list(self, raw, key):
        v = raw.get(key) or []
        if not isinstance(v, list):
            self.fail(raw, key, "must be a list")
        return v

    def strs(self, node, key) -> tuple[str, ...]:
        v = node.get(key) or []
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.fail(node, key, "must be a list of strings")
        return tuple(v)

    def device(self, d) -> Device:
        self.keys(d, {"name", "ips", "macs", "roles", "opcua", "mqtt", "tls"}, "device")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError("device needs a name", self.where(d))
        ips = self.strs(d, "ips")
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                self.fail(d, "ips", f"'{ip}' is not an IP address")
        macs = tuple(m.upper().replace(":", "-") for m in self.strs(d, "macs"))
        op = d.get("opcua") or {}
        self.keys(op, {"application_uri", "certificate_sha256", "issuer", "min_security_mode"}, "opcua")
        if op.get("min_security_mode") not in (None, *SECURITY_MODES):
            self.fail(op, "min_security_mode", f"must be one of {', '.join(SECURITY_MODES)}")
        for k in ("application_uri", "issuer"):  # compared with what the wire carries, and a lookup key
            if op.get(k) is not None and not isinstance(op[k], str):
                self.fail(op, k, "must be a string")
        pins = tuple(x.lower().replace(":", "") for x in self.strs(op, "certificate_sha256"))
        for pin in pins:
            if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
                self.fail(op, "certificate_sha256", f"'{pin}' is not a SHA-256 hex digest")
        mq = d.get("mqtt") or {}
        self.keys(mq, {"client_ids", "usernames"}, "mqtt")
        tl = d.get("tls") or {}
        self.keys(tl, {"client_subjects"}, "tls")
        return Device(name, ips, macs, self.strs(d, "roles"),
                      OpcuaIdentity(op.get("application_uri"), pins, op.get("issuer"), op.get("min_security_mode")),
                      MqttIdentity(self.strs(mq, "client_ids"), self.strs(mq, "usernames")),
                      TlsIdentity(self.strs(tl, "client_subjects")))
