"""Helpers of the authentication tests: the recorded captures' registry and trust store, running captures
through the auth detector, and crafted events for datasets whose dissectors live on other branches
(otids.mqtt, otids.tls) built as the documents those dissectors publish."""
from __future__ import annotations

from collections import Counter

from conftest import PCAPS, need

from ids.detect.auth.certs import TrustStore
from ids.detect.auth.detector import AuthDetector
from ids.detect.auth.registry import load_registry
from ids.events import FlowContext, rfc3339
from ids.pipeline import analyze

REGISTRY = PCAPS / "auth-registry.yaml"
TRUST = PCAPS / "auth-pki" / "trust"
NS = 1_000_000_000


def registry():
    return load_registry(str(need(REGISTRY)))


def store(name: str = "trust"):
    return TrustStore.load(str(need(PCAPS / "auth-pki" / name)))


def run(pcap: str, reg=..., st=..., policy=None):
    """Alerts of the auth detector alone on a capture (registry and trust store of the captures unless
    given; None for none)."""
    reg = registry() if reg is ... else reg
    st = store() if st is ... else st
    det = AuthDetector(reg, st, policy)
    _run, col = analyze([str(need(PCAPS / pcap))], detectors=[det])
    return col


def rules(alerts) -> Counter:
    return Counter(a.rule_id.removeprefix("otids.auth.") for a in alerts)


# ---------------------------------------------------------------------------------------------- crafted events

def flow(client="10.10.3.5", server="10.10.5.1", cport=50000, sport=1883, fid=1) -> FlowContext:
    return FlowContext(fid, "tcp", "1:crafted", client, cport, None, server, sport, None, None, False)


class DocEvent:
    """An event of another branch's dataset as its ECS document: the auth checks read MQTT and TLS through
    these documents (ids/detect/auth/views.py), so a crafted document is what they see."""

    __slots__ = ("ts", "flow", "dataset", "label", "protocol", "_doc")

    def __init__(self, ts: int, fl: FlowContext, dataset: str, label: str, doc: dict):
        self.ts, self.flow, self.dataset, self.label, self._doc = ts, fl, dataset, label, doc
        self.protocol = dataset.split(".", 1)[1]

    def to_doc(self) -> dict:
        d = {"@timestamp": rfc3339(self.ts),
             "event": {"kind": "event", "category": ["network"], "type": ["protocol"], "dataset": self.dataset,
                       "action": self.label}}
        d.update(self.flow.network_doc(self.protocol))
        d.update(self._doc)
        return d


def mqtt_connect(ts, fl, client_id, username=None, password=False, rc=0, keepalive=30):
    c = {"protocol_string": "MQTT", "protocol_version": 4, "client_id": client_id, "keepalive": keepalive,
         "flags": {"username": username is not None, "password": password, "will": False, "will_retain": False,
                   "clean_session": True}}
    if username is not None:
        c["username"] = username
    m = {"connect": c, "types": ["connect"], "protocol_version": 4, "status": "complete"}
    if rc is not None:
        m["connack"] = {"session_present": False, "return_code": rc,
                        "reason": {0: "accepted", 4: "bad_username_or_password", 5: "not_authorized"}.get(rc, str(rc))}
        m["types"].append("connack")
    return DocEvent(ts, fl, "otids.mqtt", "connect", {"mqtt": m})


def mqtt_simple(ts, fl, kind):
    return DocEvent(ts, fl, "otids.mqtt", kind, {"mqtt": {kind: {}, "types": [kind], "status": "complete"}})


def tls_handshake(ts, fl, version="1.2", client_chain=(), server_chain=(), application="mqtt"):
    """A TLS handshake document; chains are ids.x509.describe() documents, leaf first (describing them also
    registers their bytes, as the TLS dissector does through ids.x509)."""
    t = {"established": True, "version_protocol": "tls", "version": version}
    o: dict = {"client_identity_observable": version != "1.3", "server_identity_observable": version != "1.3"}
    if application:
        o["application"] = application
    for side, chain in (("client", client_chain), ("server", server_chain)):
        if not chain or version == "1.3":
            continue
        leaf = chain[0]
        t[side] = {"x509": leaf["x509"], "hash": {k: v.lower() for k, v in leaf["hash"].items()},
                   "subject": leaf["x509"]["subject"]["distinguished_name"],
                   "issuer": leaf["x509"]["issuer"]["distinguished_name"]}
        o[f"{side}_chain"] = [{"subject": c["x509"]["subject"]["distinguished_name"],
                               "issuer": c["x509"]["issuer"]["distinguished_name"],
                               "sha256": c["hash"]["sha256"].lower()} for c in chain]
    return DocEvent(ts, fl, "otids.tls", "handshake", {"tls": t, "otids": {"anomalies": [], "tls": o}})
