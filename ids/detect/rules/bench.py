"""`otids rules bench`: events/s of the rules engine alone, replaying the Modbus events of a capture
against 0, 10 and 1,000 rules (the shipped Modbus rules, then filled up with rules for other function
codes, OPC UA and MQTT that cannot apply), plus 1,000 rules that all apply, to show what the index saves.
Figures are printed, never asserted.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .detector import RulesDetector, compile_rules
from .loader import load_yaml_file
from .rule import SiteLists

ROOT = Path(__file__).resolve().parents[3]


def _filler(n: int, applicable: bool) -> str:
    """n generated rules; each inapplicable one names a function code the traffic never uses, or another
    protocol. Applicable ones test read requests of every code the traffic uses (wildcards for the index)."""
    out = ["rules:"]
    for i in range(n):
        if applicable:
            out.append(f"""  - id: bench.all.{i}
    title: bench {i}
    description: bench
    severity: low
    protocol: modbus
    match: {{modbus.unit_id: {{gte: 0}}, source.ip: {{not: 192.0.2.{i % 250}}}, modbus.request.address: {{gte: {1000 + i}}}}}""")
            continue
        kind = i % 3
        if kind == 0:
            fc = 30 + (i % 60)  # 30-89: unused by the replayed traffic
            m = f"{{modbus.function_code: {fc}, source.ip: {{not: 192.0.2.{i % 250}}}}}"
            proto = "modbus"
        elif kind == 1:
            m = f"{{opcua.service: Svc{i}, source.ip: 192.0.2.{i % 250}}}"
            proto = "opcua"
        else:
            m = f"{{mqtt.publish.topic: {{startswith: t{i}/}}}}"
            proto = "mqtt"
        out.append(f"""  - id: bench.other.{i}
    title: bench {i}
    description: bench
    severity: low
    protocol: {proto}
    match: {m}""")
    return "\n".join(out) + "\n"


def _ruleset(count: int, applicable: bool = False):
    shipped = load_yaml_file(str(ROOT / "rules" / "modbus.yml"))
    rules = list(shipped.rules)[: min(count, 10)] if count else []
    lists = {}
    for r in shipped.rules:
        lists.update(r.test_lists or {})
    if count > len(rules):
        extra = load_yaml_file("<bench>", _filler(count - len(rules), applicable))
        if extra.errors:
            raise RuntimeError(extra.errors[0])
        rules += extra.rules
    shipped.rules = rules
    c = compile_rules(shipped, SiteLists(lists=lists))
    if c.errors:
        raise RuntimeError(str(c.errors[0]))
    return c


def run_bench(args) -> int:
    from ...pipeline import analyze
    pcap = args.pcap or str(ROOT / "pcaps" / "modbus-demo.pcap")
    if not os.path.isfile(pcap):
        print(f"otids: error: {pcap}: no such capture", file=sys.stderr)
        return 2
    _, col = analyze([pcap], detectors=[])
    base = [e for e in col.events if getattr(e, "dataset", "") == "otids.modbus"]
    if not base:
        print(f"otids: error: {pcap} has no Modbus events", file=sys.stderr)
        return 2
    events = (base * (args.events // len(base) + 1))[: args.events]
    counts = [int(x) for x in args.counts.split(",") if x.strip()]
    print(f"rules engine alone, {len(events):,} Modbus events replayed from {os.path.basename(pcap)} "
          f"({len(base)} distinct), Python {sys.version.split()[0]}")
    print(f"{'rules':>16}  {'indexed for fc':>14}  {'events/s':>12}  {'us/event':>9}  alerts")
    cases = [(n, False) for n in counts] + [(1000, True)]
    for n, applicable in cases:
        c = _ruleset(n, applicable)
        det = RulesDetector(c)
        on = det.on_event
        alerts = 0
        t0 = time.perf_counter()
        for ev in events:
            r = on(ev)
            if r:
                alerts += len(r)
        dt = time.perf_counter() - t0
        pi = c.index.get("otids.modbus")
        per_fc = max((len(v) for v in pi.merged.values()), default=0) if pi else 0
        label = f"{len(c.rules)}" + (" (all apply)" if applicable else "")
        print(f"{label:>16}  {per_fc:>14}  {len(events) / dt:>12,.0f}  {dt / len(events) * 1e6:>9.2f}  {alerts}")
    return 0
