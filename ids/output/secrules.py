"""Elastic Security detection rules that promote otids alerts into Security alerts, as NDJSON for the
detection engine's import API (`POST /api/detection_engine/rules/_import`, Stack Management -> Rules ->
Import). `otids es generate` writes deploy/elastic-security/otids-rules.ndjson; `otids es setup --kibana`
imports it.

One query rule per ATT&CK for ICS tactic (the techniques whose first tactic it is), plus one for alerts
without a technique, so that every otids alert is promoted once and the Security app's MITRE ATT&CK
coverage shows what otids watches. Each promoted alert takes its severity from otids.alert.severity, its
risk score from event.severity (21/47/73/99, Elastic's convention), its title from rule.name, and the
rules look back on event.ingested (set by the otids@ingest pipeline), so alerts that reach the cluster
late -- after an outage, or loaded from a capture of last month -- are still promoted.
"""
from __future__ import annotations

import json

from ..detect.attack import TECHNIQUES
from .streams import ALERT_STREAM_PREFIX

RULE_VERSION = 1
BASE_QUERY = "event.kind:alert and event.module:otids"
SEVERITIES = ("low", "medium", "high", "critical")


def _technique(t) -> dict:
    return {"id": t.id, "name": t.name, "reference": t.reference, "subtechnique": []}


def _rule(rule_id: str, name: str, description: str, query: str, threat: list) -> dict:
    return {
        "rule_id": rule_id, "name": name, "description": description, "type": "query", "language": "kuery",
        "query": query, "index": [ALERT_STREAM_PREFIX + "-*"], "enabled": False,
        "interval": "5m", "from": "now-6m", "max_signals": 1000,
        "timestamp_override": "event.ingested", "timestamp_override_fallback_disabled": False,
        "rule_name_override": "rule.name",
        "severity": "medium", "risk_score": 47,
        # info findings (facts, not threats) are promoted as low
        "severity_mapping": [{"field": "otids.alert.severity", "operator": "equals", "value": s, "severity": s}
                             for s in SEVERITIES] + [{"field": "otids.alert.severity", "operator": "equals",
                                                      "value": "info", "severity": "low"}],
        "risk_score_mapping": [{"field": "event.severity", "operator": "equals", "value": ""}],
        "threat": threat, "author": ["otids"], "license": "Apache-2.0", "version": RULE_VERSION,
        "tags": ["otids", "OT", "ICS", "Network", "Domain: Network", "Data Source: otids"],
        "references": ["https://attack.mitre.org/matrices/ics/"], "false_positives": [],
        "note": "Promotes alerts written by the otids passive OT intrusion detection sensor. The alert's own "
                "fields (rule.*, otids.alert.*, source.*, destination.*, the protocol fields) say what happened; "
                "observer.name says which sensor saw it.",
    }


def detection_rules() -> list[dict]:
    by_tactic: dict[tuple[str, str], list] = {}
    for t in TECHNIQUES.values():
        by_tactic.setdefault((t.tactic_id, t.tactic), []).append(t)
    rules = []
    for (tid, tname), techs in sorted(by_tactic.items()):
        ids = " or ".join(f'"{t.id}"' for t in techs)
        threat = [{"framework": "MITRE ATT&CK",
                   "tactic": {"id": tid, "name": tname, "reference": f"https://attack.mitre.org/tactics/{tid}/"},
                   "technique": [_technique(t) for t in techs]}]
        rules.append(_rule(f"otids-ics-{tid.lower()}", f"otids: {tname} (ATT&CK for ICS {tid})",
                           f"otids alerts mapped to ATT&CK for ICS techniques of the {tname} tactic "
                           f"({', '.join(t.id for t in techs)}).",
                           f"{BASE_QUERY} and threat.technique.id:({ids})", threat))
    rules.append(_rule("otids-unmapped", "otids: alert without ATT&CK mapping",
                       "otids alerts that name no ATT&CK for ICS technique (protocol anomalies, baseline "
                       "deviations, certificate findings and others).",
                       f"{BASE_QUERY} and not threat.technique.id:*", []))
    return rules


def ndjson(rules: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rules)
