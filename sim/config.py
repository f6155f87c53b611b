"""Simulator configuration: read sim/plant.yaml and check it before anything starts, so a typo is one line
naming the place, not a half-recorded capture."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent / "plant.yaml"

#: change kind -> (protocol, rule the baseline is expected to raise for it)
CHANGE_KINDS = {
    "modbus_new_master": ("modbus", "otids.baseline.new_asset"),
    "modbus_write": ("modbus", "otids.baseline.modbus.address_out_of_range"),
    "modbus_value": ("modbus", "otids.baseline.modbus.value_out_of_band"),
    "modbus_poll_period": ("modbus", "otids.baseline.modbus.poll_period_changed"),
    "mqtt_new_topic": ("mqtt", "otids.baseline.mqtt.new_topic"),
    "opcua_write": ("opcua", "otids.baseline.opcua.new_node_written"),
    # IT-side intrusion (the `it:` section: sim/plant-it.yaml); the network detectors and baseline report them
    "it_scan": ("tcp", "otids.network.scan.port_scan"),
    "it_smb": ("smb", "otids.baseline.network.it_protocol"),
    "it_new_port": ("tcp", "otids.baseline.network.new_service"),
}
IT_KINDS = ("it_scan", "it_smb", "it_new_port")


class SimConfigError(Exception):
    pass


def load(path: str | Path | None = None) -> dict:
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SimConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SimConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise SimConfigError(f"{path}: the top level must be a mapping")
    check(cfg, str(path))
    return cfg


def check(cfg: dict, where: str) -> None:
    def fail(msg):
        raise SimConfigError(f"{where}: {msg}")

    ips: dict[str, str] = {}

    def host(name, ip):
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            fail(f"{name}: '{ip}' is not an IP address")
        if not a.is_loopback or str(a) == "127.0.0.1":
            fail(f"{name}: {ip} must be a loopback address other than 127.0.0.1")
        if ip in ips and ips[ip] != name:
            fail(f"{name}: {ip} is already used by {ips[ip]}")
        ips[ip] = name

    mb = cfg.get("modbus") or {}
    plcs = {p["name"]: p for p in mb.get("plcs", [])}
    for p in plcs.values():
        host(p["name"], p["ip"])
    for h in mb.get("hmis", []):
        host(h["name"], h["ip"])
        for item in h.get("polls", []) + h.get("writes", []):
            if item["plc"] not in plcs:
                fail(f"{h['name']}: unknown PLC '{item['plc']}'")
            if item["period"] <= 0:
                fail(f"{h['name']}: period must be positive")
        for p in h.get("identify", []):
            if p not in plcs:
                fail(f"{h['name']}: identify names unknown PLC '{p}'")
    ua = cfg.get("opcua")
    if ua:
        host(ua["server"]["name"], ua["server"]["ip"])
        for c in ua.get("clients", []):
            host(c["name"], c["ip"])
    mq = cfg.get("mqtt")
    if mq:
        host(mq["broker"]["name"], mq["broker"]["ip"])
        for c in mq.get("publishers", []) + mq.get("subscribers", []):
            host(c["client_id"], c["ip"])
    it = cfg.get("it")
    if it:
        for role in ("workstation", "fileserver"):
            if not isinstance(it.get(role), dict) or "ip" not in it[role]:
                fail(f"it: '{role}' with name and ip is required")
            host(it[role].get("name", role), it[role]["ip"])
        if it.get("smb_period", 10) <= 0:
            fail("it: smb_period must be positive")
    for name, ch in (cfg.get("changes") or {}).items():
        if ch.get("kind") in IT_KINDS:
            if not it:
                fail(f"change {name}: kind {ch['kind']} needs the `it:` section (workstation, fileserver)")
            for t in ch.get("targets", [ch.get("target")]):
                if t not in ips:
                    fail(f"change {name}: target {t!r} is not a plant host")
        if ch.get("kind") not in CHANGE_KINDS:
            fail(f"change {name}: unknown kind '{ch.get('kind')}' (known: {', '.join(sorted(CHANGE_KINDS))})")
        if "at" not in ch or ch["at"] < 0:
            fail(f"change {name}: 'at' (seconds after start) is required")
        if ch["kind"] == "modbus_new_master":
            if ch["ip"] in ips:
                fail(f"change {name}: {ch['ip']} is a plant host; a new master needs an address never used")
            if ch["plc"] not in plcs:
                fail(f"change {name}: unknown PLC '{ch['plc']}'")
