"""Helpers of the authentication tests: the recorded captures' registry and trust store, running captures
through the auth detector, and crafted MQTT and TLS records (the typed records their dissectors emit, which
is what the auth checks read)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from conftest import PCAPS, need

from ids.detect.auth.certs import TrustStore
from ids.detect.auth.detector import AuthDetector
from ids.detect.auth.registry import load_registry
from ids.events import FlowContext
from ids.protocols.mqtt.messages import MqttBare, MqttConnack, MqttConnect, MqttDisconnect, MqttExchange, MqttPublish
from ids.protocols.tls.messages import TlsHandshake, TlsServerHello, X509Cert
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


def mqtt_connect(ts, fl, client_id, username=None, password=False, rc=0, keepalive=30) -> MqttExchange:
    """A CONNECT (and its CONNACK unless rc is None) as the MQTT dissector emits it."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password else 0)
    msgs = [MqttConnect("connect", ts, True, 0, False, False, 20, "MQTT", 4, flags, keepalive, client_id, username,
                        b"secret" if password else None)]
    if rc is not None:
        msgs.append(MqttConnack("connack", ts, False, 0, False, False, 4, False, rc))
    return MqttExchange(ts, fl, 4, tuple(msgs), "complete", (), 1024)


def mqtt_simple(ts, fl, kind) -> MqttExchange:
    m = {"publish": MqttPublish("publish", ts, True, 0, False, False, 9, "t", None, b"1", 1),
         "disconnect": MqttDisconnect("disconnect", ts, True, 0, False, False, 2)}.get(kind) \
        or MqttBare(kind, ts, True, 0, False, False, 2)
    return MqttExchange(ts, fl, 4, (m,), "complete", (), 1024)


def _cert(d: dict) -> X509Cert:
    """An ids.x509.describe() document as the TLS dissector's record (hashes in lower case, as it writes them)."""
    x = d["x509"]

    def ns(t):
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()) * NS if t else None
    return X509Cert(d["hash"]["sha256"].lower(), d["hash"]["sha1"].lower(), x.get("version_number"),
                    x.get("serial_number"), x.get("subject"), x.get("issuer"), ns(x.get("not_before")),
                    ns(x.get("not_after")), x.get("signature_algorithm"), x.get("public_key_algorithm"),
                    x.get("public_key_size"), x.get("public_key_curve"), x.get("public_key_exponent"),
                    tuple(x.get("alternative_names", ())))


def tls_handshake(ts, fl, version="1.2", client_chain=(), server_chain=(), application="mqtt") -> TlsHandshake:
    """A TLS handshake as the dissector emits it; chains are ids.x509.describe() documents, leaf first
    (describing them also registers their bytes, as the TLS dissector does through ids.x509)."""
    tls13 = version == "1.3"
    sh = TlsServerHello(0x0303, 0x1301 if tls13 else 0x002F, (), 0x0304 if tls13 else None, None, b"", "")
    certs = {side: () if tls13 else tuple(_cert(c) for c in chain)
             for side, chain in (("client", client_chain), ("server", server_chain))}
    return TlsHandshake(ts, fl, None, sh, certs["server"], certs["client"], None, True, False, None, (), ts,
                        application or None)
