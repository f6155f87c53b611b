"""ids/protocols/mqtt/fields.yml and tls/fields.yml declare every field the MQTT and TLS documents carry (the
Elasticsearch mappings are generated from them), in the shared format."""
from __future__ import annotations

from pathlib import Path

import yaml

from conftest import CORPUS, PCAPS, ROOT, need
from ids.config import Config
from ids.protocols.mqtt.config import MqttConfig
from ids.pipeline import analyze

TYPES = {"keyword", "long", "integer", "short", "boolean", "date", "ip", "float", "double", "object", "flattened",
         "text", "match_only_text", "wildcard", "nested"}
OURS = ("mqtt.", "tls.", "otids.tls.", "user.", "related.user")


def _declared() -> dict[str, str]:
    out: dict[str, str] = {}
    for group in ("mqtt", "tls", "ecs"):  # shared ECS fields (user.name) are declared once, in ecs.yml
        path = ROOT / "ids" / "protocols" / group / "fields.yml" if group != "ecs" else ROOT / "ids/data/fields/ecs.yml"
        data = yaml.safe_load(path.read_text())
        assert data["group"] == group and data["description"]
        for f in data["fields"]:
            assert set(f) <= {"name", "type", "description", "example"}, f
            assert f["type"] in TYPES and f["description"].strip(), f
            assert f["name"] not in out, f"declared twice: {f['name']}"
            out[f["name"]] = f["type"]
    return out


def _leaves(doc: dict, prefix: str = "", out: set | None = None) -> set:
    out = set() if out is None else out
    for k, v in doc.items():
        path = prefix + k
        if isinstance(v, dict) and k != "properties":
            _leaves(v, path + ".", out)
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            out.add(path)
            for item in v:
                _leaves(item, path + ".", out)
        else:
            out.add(path)
    return out


def test_every_emitted_field_is_declared():
    declared = _declared()
    paths = [PCAPS / "mqtt-mosquitto.pcap", PCAPS / "mqtt-tls.pcap",
             CORPUS / "zeek" / "Traces" / "tls" / "client-certificate.pcap"]
    paths += sorted((CORPUS / "suricata-verify").glob("mqtt*/*.pcap"))
    paths += sorted((CORPUS / "collections" / "MQTT-Short-Connect").rglob("*.pcapng"))
    seen: set = set()
    for cfg in (Config(), Config().replace(mqtt=MqttConfig(max_message_length=50, string_log_limit=5))):
        for p in paths:
            _, col = analyze([str(need(p))], cfg)
            for e in col.events:
                if e.dataset in ("otids.mqtt", "otids.tls"):
                    _leaves(e.to_doc(include_secrets=True) if e.dataset == "otids.mqtt" else e.to_doc(), "", seen)
    ours = {p for p in seen if p.startswith(OURS)}
    missing = sorted(ours - set(declared))
    assert not missing, f"emitted but not declared: {missing}"
    assert len(ours) > 150
    # the sub-objects mirror Suricata's EVE keys
    for key in ("mqtt.connect.client_id", "mqtt.connect.flags.will_retain", "mqtt.publish.message",
                "mqtt.suback.qos_granted", "mqtt.unsuback.reason_codes", "mqtt.publish.skipped_length",
                "mqtt.connect.password", "tls.client.x509.subject.common_name", "tls.server.x509.not_after"):
        assert key in ours, key
    assert declared["mqtt.publish.properties"] == "flattened" and declared["tls.server.x509.not_after"] == "date"


def test_declared_names_are_well_formed():
    ecs = {f["name"] for f in yaml.safe_load((ROOT / "ids" / "data" / "fields" / "ecs.yml").read_text())["fields"]}
    for name in _declared():
        assert name == name.strip() and " " not in name and not name.endswith(".")
        assert name.startswith(OURS) or name in ecs
    assert Path(ROOT / "ids" / "data" / "fields").is_dir()
