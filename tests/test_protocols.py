"""The protocol registry (ids/protocols): every dissected protocol has every part docs/PROTOCOLS.md lists (or
says why not, in `extra["without"]`), every framework tolerates an identified-only protocol, and the anomaly
detector alerts on an anomaly name no catalogue knows."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import PCAPS, ROOT, need

from ids.config import AnomalyConfig, Config
from ids.detect.anomaly import AnomalyDetector
from ids.events import FlowContext
from ids.protocols import DISSECTED, REGISTRY
from ids.protocols.modbus.messages import ModbusTransaction
from ids.protocols.spec import AnomalyCatalogue, ProtocolSpec, RuleTable

#: Files every dissected protocol's folder holds (docs/PROTOCOLS.md "The parts").
FILES = ("__init__.py", "consts.py", "messages.py", "parser.py", "session.py", "config.py", "anomalies.py",
         "ecs.py", "fields.yml", "assets.py")
#: Parts a dissected protocol may lack only with a reason in extra["without"].
OPTIONAL = ("rules", "identity", "ml", "baseline")


def _lacks(spec: ProtocolSpec) -> list[str]:
    """Every part a dissected protocol is missing, unless it says why in extra['without']."""
    without = spec.extra.get("without", {})
    missing = []
    for part in ("ports", "probe", "records", "dataset", "config", "anomalies", "fields", "roles", "description"):
        if not getattr(spec, part):
            missing.append(part)
    if spec.roles and set(spec.roles) != {"client", "server"}:
        missing.append("roles (client and server)")
    present = {"rules": spec.rules is not None, "identity": spec.identity is not None,
               "ml": "ml" in spec.extra, "baseline": "baseline" in spec.extra}
    for part in OPTIONAL:
        if not present[part] and not (isinstance(without.get(part), str) and without[part].strip()):
            missing.append(f"{part} (or extra['without'][{part!r}] saying why not)")
        if present[part] and part in without:
            missing.append(f"{part} is both present and declared missing")
    folder = ROOT / "ids" / "protocols" / spec.name
    missing += [f"{folder.name}/{f}" for f in FILES if not (folder / f).is_file()]
    if spec.fields and Path(spec.fields).resolve() != (folder / "fields.yml").resolve():
        missing.append("fields must be the package's fields.yml")
    for t in spec.records:
        if getattr(t, "protocol", None) != spec.name or getattr(t, "dataset", None) != spec.dataset \
                or not callable(getattr(t, "to_doc", None)):
            missing.append(f"record {t.__name__} needs protocol={spec.name!r}, dataset={spec.dataset!r}, to_doc()")
    if spec.anomalies is not None:
        ids = {r.id for r in spec.anomalies.rules}
        if not spec.anomalies.known or not set(spec.anomalies.named.values()) <= ids:
            missing.append("anomalies: known names, and a rule for every named one")
    return missing


def test_every_dissected_protocol_has_every_part():
    assert set(DISSECTED) >= {"modbus", "opcua", "mqtt", "tls"}
    problems = {n: _lacks(p) for n, p in DISSECTED.items()}
    assert {n: m for n, m in problems.items() if m} == {}


def test_the_completeness_check_can_fail():
    bare = ProtocolSpec(name="modbus", ports=(502,), probe=lambda b, s: 0, session=object)
    got = _lacks(bare)
    assert "config" in got and "anomalies" in got and any(g.startswith("rules") for g in got)
    half = ProtocolSpec(name="nosuch", ports=(1,), probe=lambda b, s: 0, session=object, records=(ModbusTransaction,),
                        dataset="otids.nosuch", config=AnomalyConfig, fields="x.yml", roles={"client": "a"},
                        description="d", anomalies=AnomalyCatalogue("X", named={"n": "r"}, known=frozenset("n")),
                        rules=RuleTable("x.y"), extra={"without": {"identity": " ", "ml": "why", "baseline": "why"}})
    got = _lacks(half)
    assert "roles (client and server)" in got and "nosuch/session.py" in got
    assert any(g.startswith("identity") for g in got) and any(g.startswith("record ModbusTransaction") for g in got)
    assert "anomalies: known names, and a rule for every named one" in got


def test_registry_names_match_their_packages_and_dissected_is_a_filter():
    for name, spec in REGISTRY.items():
        assert spec.name == name and (ROOT / "ids" / "protocols" / name / "__init__.py").is_file()
    assert DISSECTED == {n: p for n, p in REGISTRY.items() if p.session is not None}


_IDENTIFIED_ONLY = r"""
import sys
from ids.protocols import REGISTRY
from ids.protocols.spec import ProtocolSpec
REGISTRY["s7comm"] = ProtocolSpec(name="s7comm", transport="tcp", ports=(102,), probe=lambda b, s: 0,
                                  session=None, roles={"client": "s7_client", "server": "plc"}, category="ics")
from ids.cli import main
rc = main(sys.argv[1:])
from ids.config import Config
from ids.detect.anomaly import AnomalyDetector
from ids.detect.rules.fields import catalog
from ids.output.fields import load_fields
from ids.detect.baseline.protocols import PROTOCOL_MODULES
from ids.assets import ROLES
AnomalyDetector(Config().anomaly)
assert "s7comm" not in PROTOCOL_MODULES and ROLES["s7comm"] == ("s7_client", "plc") and catalog("modbus")
load_fields()
sys.exit(rc)
"""


def test_every_framework_tolerates_an_identified_only_protocol(tmp_path):
    """A spec with only the identification fields (what the identified-only protocols declare) goes through
    config, analyze with the rules, baseline learning and ML plug-ins, the anomaly detector, assets and the
    field definitions without an error."""
    pcap = need(PCAPS / "modbus-demo.pcap")
    out = tmp_path / "alerts.ndjson"
    p = subprocess.run([sys.executable, "-c", _IDENTIFIED_ONLY, "analyze", "-q", "-o", str(out),
                        "--events", str(tmp_path / "events.ndjson"), str(pcap)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert out.is_file() and (tmp_path / "events.ndjson").stat().st_size > 0


def _txn(anomalies: tuple) -> ModbusTransaction:
    fl = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 502, None, None, False)
    return ModbusTransaction(1_000_000_000, fl, 1, 1, 3, "read_holding_registers", None, None, None, None,
                             anomalies, None)


def test_an_anomaly_name_no_catalogue_knows_still_alerts_low():
    det = AnomalyDetector(Config().anomaly)
    got = det.on_event(_txn(("brand_new_oddity",)))
    assert [(a.rule_id, a.severity) for a in got] == [("otids.anomaly.modbus.unknown", "low")]
    assert "brand_new_oddity" in got[0].reason
    # known names that are facts, not findings, stay silent
    assert det.on_event(_txn(("values_truncated",))) is None
