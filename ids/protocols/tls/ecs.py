"""ECS documents of TLS handshakes (dataset `otids.tls`) and of X.509 certificates (ECS `x509.*`).

Rendering only: it reads the records of messages.py and touches no bytes.
"""
from __future__ import annotations

import hashlib
from typing import Any

from ...units import rfc3339
from .consts import alert_name, cipher_name, version_text


def x509_doc(t) -> dict:
    d: dict[str, Any] = {}
    for k in ("version_number", "serial_number", "signature_algorithm", "public_key_algorithm",
              "public_key_size", "public_key_curve", "public_key_exponent"):
        val = getattr(t, k)
        if val is not None:
            d[k] = val
    if t.subject:
        d["subject"] = dict(t.subject)
    if t.issuer:
        d["issuer"] = dict(t.issuer)
    if t.not_before is not None:
        d["not_before"] = rfc3339(t.not_before)
    if t.not_after is not None:
        d["not_after"] = rfc3339(t.not_after)
    if t.alternative_names:
        d["alternative_names"] = list(t.alternative_names)
    return d


def handshake_doc(hs) -> dict:
    t: dict[str, Any] = {"established": hs.established}
    o: dict[str, Any] = {}
    ch, sh = hs.client_hello, hs.server_hello
    v = hs.version_code
    if v is not None:
        proto, ver = version_text(v)
        t["version_protocol"] = proto
        t["version"] = ver
    if sh is not None:
        t["cipher"] = cipher_name(sh.cipher)
        if sh.alpn:
            t["next_protocol"] = sh.alpn
        t["server"] = {"ja3s": hashlib.md5(sh.ja3s.encode()).hexdigest()}
        if v is not None and v < 0x0304:
            t["resumed"] = hs.resumed
    client: dict[str, Any] = {}
    if ch is not None:
        client["ja3"] = hashlib.md5(ch.ja3.encode()).hexdigest()
        if ch.server_name:
            client["server_name"] = ch.server_name
        client["supported_ciphers"] = [cipher_name(c) for c in ch.ciphers]
        if ch.alpn:
            o["client_alpn"] = list(ch.alpn)
        if ch.supported_versions:
            o["client_versions"] = [version_text(x)[1] for x in ch.supported_versions]
    for side, certs, dst in (("client", hs.client_certs, client),
                             ("server", hs.server_certs, t.setdefault("server", {}))):
        if not certs:
            continue
        leaf = certs[0]
        dst["x509"] = leaf.to_doc()
        dst["hash"] = {"sha256": leaf.sha256, "sha1": leaf.sha1}
        if leaf.subject:
            dst["subject"] = leaf.subject.get("distinguished_name")
        if leaf.issuer:
            dst["issuer"] = leaf.issuer.get("distinguished_name")
        if leaf.not_before is not None:
            dst["not_before"] = rfc3339(leaf.not_before)
        if leaf.not_after is not None:
            dst["not_after"] = rfc3339(leaf.not_after)
        o[f"{side}_chain"] = [{"subject": (c.subject or {}).get("distinguished_name"),
                               "issuer": (c.issuer or {}).get("distinguished_name"), "sha256": c.sha256}
                              for c in certs]
        bad = [c.error for c in certs if c.error]
        if bad:
            o[f"{side}_certificate_errors"] = bad
    if not t.get("server"):
        t.pop("server", None)
    if client:
        t["client"] = client
    obs = hs.identity_observable
    if obs is not None:
        o["client_identity_observable"] = obs
        o["server_identity_observable"] = obs
    if hs.certificate_requested is not None:
        o["certificate_requested"] = hs.certificate_requested
    if hs.alert is not None:
        lvl, desc = hs.alert
        o["alert"] = {"level": "fatal" if lvl == 2 else "warning" if lvl == 1 else f"unknown-{lvl}",
                      "description": alert_name(desc), "code": desc}
    if hs.application:
        o["application"] = hs.application
    ev: dict[str, Any] = {"kind": "event", "category": ["network"], "type": ["protocol"],
                          "dataset": hs.dataset, "action": "handshake",
                          "outcome": "success" if hs.established else
                          "failure" if hs.alert is not None else "unknown",
                          "duration": hs.end_ts - hs.ts}
    doc: dict[str, Any] = {"@timestamp": rfc3339(hs.ts), "event": ev}
    doc.update(hs.flow.network_doc("tls"))
    doc["tls"] = t
    doc["otids"] = {"anomalies": list(hs.anomalies), "tls": o}
    return doc
