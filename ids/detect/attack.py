"""MITRE ATT&CK for ICS techniques used by otids's detectors and shipped rules.

Ids and names follow the published ICS matrix (attack.mitre.org/matrices/ics/, ATT&CK v15-v17). Every id a
detector or rule uses must be listed here; the rule loader rejects others.

Checked against attack.mitre.org technique pages (2025): T0814, T0816, T0836, T0855, T0858, T0859, T0861,
T0871 (ids, names, tactics). A technique that serves several tactics lists the further ones after its first
(T0856, T0858, T0859, T0866, T0886); alerts carry every tactic in threat.tactic. ATT&CK v18 (October 2025) regrouped message techniques: T0855
Unauthorized Command Message became T1692.001 Command Message (of T1692 Unauthorized Message); ids here stay
on the v15-v17 numbering until the ECS output moves with it.
"""
from __future__ import annotations

from ..events import Technique

_T = [
    # id, name, tactic id, tactic[, further (tactic id, tactic) pairs]
    ("T0801", "Monitor Process State", "TA0100", "Collection"),
    ("T0802", "Automated Collection", "TA0100", "Collection"),
    ("T0803", "Block Command Message", "TA0107", "Inhibit Response Function"),
    ("T0804", "Block Reporting Message", "TA0107", "Inhibit Response Function"),
    ("T0806", "Brute Force I/O", "TA0106", "Impair Process Control"),
    ("T0812", "Default Credentials", "TA0109", "Lateral Movement"),
    ("T0814", "Denial of Service", "TA0107", "Inhibit Response Function"),
    ("T0816", "Device Restart/Shutdown", "TA0107", "Inhibit Response Function"),
    ("T0822", "External Remote Services", "TA0108", "Initial Access"),
    ("T0830", "Adversary-in-the-Middle", "TA0100", "Collection"),
    ("T0831", "Manipulation of Control", "TA0105", "Impact"),
    ("T0836", "Modify Parameter", "TA0106", "Impair Process Control"),
    ("T0840", "Network Connection Enumeration", "TA0102", "Discovery"),
    ("T0842", "Network Sniffing", "TA0102", "Discovery"),
    ("T0843", "Program Download", "TA0109", "Lateral Movement"),
    ("T0845", "Program Upload", "TA0100", "Collection"),
    ("T0846", "Remote System Discovery", "TA0102", "Discovery"),
    ("T0848", "Rogue Master", "TA0108", "Initial Access"),
    ("T0855", "Unauthorized Command Message", "TA0106", "Impair Process Control"),
    ("T0856", "Spoof Reporting Message", "TA0103", "Evasion", (("TA0106", "Impair Process Control"),)),
    ("T0858", "Change Operating Mode", "TA0103", "Evasion", (("TA0104", "Execution"),)),
    ("T0859", "Valid Accounts", "TA0110", "Persistence", (("TA0109", "Lateral Movement"),)),
    ("T0861", "Point & Tag Identification", "TA0100", "Collection"),
    ("T0864", "Transient Cyber Asset", "TA0108", "Initial Access"),
    ("T0866", "Exploitation of Remote Services", "TA0109", "Lateral Movement", (("TA0108", "Initial Access"),)),
    ("T0867", "Lateral Tool Transfer", "TA0109", "Lateral Movement"),
    ("T0868", "Detect Operating Mode", "TA0100", "Collection"),
    ("T0869", "Standard Application Layer Protocol", "TA0101", "Command and Control"),
    ("T0871", "Execution through API", "TA0104", "Execution"),
    ("T0881", "Service Stop", "TA0107", "Inhibit Response Function"),
    ("T0882", "Theft of Operational Information", "TA0105", "Impact"),
    ("T0883", "Internet Accessible Device", "TA0108", "Initial Access"),
    ("T0886", "Remote Services", "TA0109", "Lateral Movement", (("TA0108", "Initial Access"),)),
    ("T0888", "Remote System Information Discovery", "TA0102", "Discovery"),
]

TECHNIQUES: dict[str, Technique] = {t[0]: Technique(*t) for t in _T}


def techniques(*ids: str) -> tuple[Technique, ...]:
    return tuple(TECHNIQUES[i] for i in ids)
