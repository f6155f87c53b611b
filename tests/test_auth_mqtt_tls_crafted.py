"""MQTT and TLS authentication checks on crafted events: the MQTT/TLS dissectors are built on another branch,
so these events are the ECS documents those dissectors publish (dataset otids.mqtt: mqtt.connect.*,
mqtt.connack.*; otids.tls: tls.*, tls.client.x509.*, otids.tls.*), which is all the checks read
(ids/detect/auth/views.py). Each check: one event sequence that triggers it, one that does not.
The same checks on the real captures are in test_auth_mqtt_tls.py (they need the dissectors)."""
from __future__ import annotations

from collections import Counter

from authlib import flow, mqtt_connect, mqtt_simple, registry, rules, store, tls_handshake
from conftest import PCAPS, need
from cryptography import x509 as cx
from cryptography.hazmat.primitives import serialization

from ids import x509
from ids.detect.auth.detector import AuthDetector
from ids.detect.auth.registry import AuthPolicy

S = 1_000_000_000


def feed(events, reg=None, st=None, policy=None):
    det = AuthDetector(reg, st, policy)
    out = []
    for ev in events:
        out += det.on_event(ev) or []
    out += det.flush(events[-1].ts) or []
    return out


def _leaf(name):
    p = PCAPS / "auth-pki" / (name if name.endswith(".pem") else f"leaves/{name}.pem")
    return x509.describe(cx.load_pem_x509_certificate(need(p).read_bytes()).public_bytes(serialization.Encoding.DER))


def _t0():
    c = cx.load_pem_x509_certificate(need(PCAPS / "auth-pki" / "leaves" / "valid.pem").read_bytes())
    return int(c.not_valid_before_utc.timestamp() + 86400) * S


# ---------------------------------------------------------------------------------------------- MQTT

def test_cleartext_password_triggers_username_only_is_medium_anonymous_does_not():
    t = _t0()
    a = feed([mqtt_connect(t, flow(), "line3-gw", "line3", password=True)])
    assert [(x.rule_id, x.severity) for x in a] == [("otids.auth.mqtt.cleartext_credentials", "high")]
    d = a[0].to_doc()
    assert d["otids"]["alert"]["auth"] == {"check": "cleartext_credentials", "protocol": "mqtt",
                                           "expected": "MQTT over TLS", "client_id": "line3-gw",
                                           "seen": "cleartext MQTT with user name and password"}
    assert "password" not in d["mqtt"]["connect"]  # the document never carries it
    a = feed([mqtt_connect(t, flow(), "line3-gw", "line3", password=False)])
    assert [(x.rule_id, x.severity) for x in a] == [("otids.auth.mqtt.cleartext_credentials", "medium")]
    assert "cleartext_credentials" not in rules(feed([mqtt_connect(t, flow(), "probe")], policy=AuthPolicy()))


def test_anonymous_accepted_triggers_refused_or_allowed_does_not():
    t = _t0()
    assert rules(feed([mqtt_connect(t, flow(), "probe")])) == Counter({"mqtt.anonymous": 1})
    assert rules(feed([mqtt_connect(t, flow(), "probe", rc=5)])) == Counter({"mqtt.connect_refused": 1})
    assert not feed([mqtt_connect(t, flow(), "probe")], policy=AuthPolicy(mqtt_require_auth=False))
    assert rules(feed([mqtt_connect(t, flow(), "x", "u", True)])) == Counter({"mqtt.cleartext_credentials": 1})


def test_require_tls_flags_every_cleartext_session():
    t = _t0()
    p = AuthPolicy(mqtt_require_tls=True, mqtt_require_auth=False)
    assert rules(feed([mqtt_connect(t, flow(), "probe")], policy=p)) == Counter({"mqtt.cleartext_session": 1})
    assert not feed([mqtt_connect(t, flow(), "probe")], policy=AuthPolicy(mqtt_require_auth=False))


def test_client_id_from_two_addresses_at_once_but_not_when_roaming():
    t = _t0()
    twins = [mqtt_connect(t, flow("10.0.0.73", fid=1), "sensor-07", "sensor", True),
             mqtt_simple(t + S, flow("10.0.0.73", fid=1), "publish"),
             mqtt_connect(t + 2 * S, flow("10.0.0.74", fid=2), "sensor-07", "sensor", True)]
    a = [x for x in feed(twins) if x.rule_id == "otids.auth.mqtt.client_id_multiple_ips"]
    assert len(a) == 1 and a[0].severity == "high"
    auth = a[0].to_doc()["otids"]["alert"]["auth"]
    assert auth["source_ips"] == ["10.0.0.73", "10.0.0.74"] and auth["expected"] == "one address at a time"
    roam = [mqtt_connect(t, flow("10.0.0.75", fid=1), "plant-sub", "op", True),
            mqtt_simple(t + S, flow("10.0.0.75", fid=1), "disconnect"),
            mqtt_connect(t + 2 * S, flow("10.0.0.76", fid=2), "plant-sub", "op", True)]
    assert "mqtt.client_id_multiple_ips" not in rules(feed(roam))
    # a session silent for more than 1.5 keep-alive periods is over (MQTT 3.1.1 3.1.2.10)
    stale = [mqtt_connect(t, flow("10.0.0.75", fid=1), "plant-sub", "op", True, keepalive=10),
             mqtt_connect(t + 16 * S, flow("10.0.0.76", fid=2), "plant-sub", "op", True)]
    assert "mqtt.client_id_multiple_ips" not in rules(feed(stale))
    fresh = [mqtt_connect(t, flow("10.0.0.75", fid=1), "plant-sub", "op", True, keepalive=10),
             mqtt_connect(t + 14 * S, flow("10.0.0.76", fid=2), "plant-sub", "op", True)]
    assert "mqtt.client_id_multiple_ips" in rules(feed(fresh))


def test_refusals_are_counted_per_client():
    t = _t0()
    evs = [mqtt_connect(t + i * S, flow("10.0.0.72", fid=i), "intruder", "line3", True, rc=5) for i in range(6)]
    a = [x for x in feed(evs) if x.rule_id == "otids.auth.mqtt.connect_refused"]
    # first at once, the five others counted in one follow-up alert
    assert [x.count for x in a] == [1, 5] and a[0].severity == "low"
    assert a[0].to_doc()["otids"]["alert"]["auth"]["refusals"] == 1
    assert a[1].to_doc()["otids"]["alert"]["auth"]["refusals"] == 6
    assert a[0].to_doc()["otids"]["alert"]["auth"]["seen"] == "5 not_authorized"
    assert "mqtt.connect_refused" not in rules(feed([mqtt_connect(t, flow(), "ok", "u", True)]))


def test_registry_identity_of_mqtt_clients():
    reg = registry()
    t = _t0()
    ok = mqtt_connect(t, flow("127.0.0.71"), "line3-gw", "line3", True)
    assert rules(feed([ok], reg=reg)) == Counter({"mqtt.cleartext_credentials": 1})
    moved = mqtt_connect(t, flow("127.0.0.99"), "line3-gw", "line3", True)
    a = [x for x in feed([moved], reg=reg) if x.rule_id == "otids.auth.mqtt.identity_mismatch"]
    assert len(a) == 1 and a[0].to_doc()["otids"]["alert"]["auth"]["expected"] == "address 127.0.0.71"
    other_user = mqtt_connect(t, flow("127.0.0.71"), "line3-gw", "admin", True)
    a = [x for x in feed([other_user], reg=reg) if x.rule_id == "otids.auth.mqtt.identity_mismatch"]
    assert a and a[0].to_doc()["otids"]["alert"]["auth"]["seen"] == "user admin"
    stranger = mqtt_connect(t, flow("127.0.0.98"), "who-am-i", "line3", True)
    assert "mqtt.unknown_client" in rules(feed([stranger], reg=reg))
    assert "mqtt.unknown_client" not in rules(feed([ok], reg=reg))


# ---------------------------------------------------------------------------------------------- TLS

def _tls(name, version="1.2", client="127.0.0.61", chain=True):
    leaf = _leaf(name)
    cc = [leaf, _leaf("intermediate.pem")] if chain else [leaf]
    return tls_handshake(_t0(), flow(client, "127.0.0.50", sport=8883), version, cc, [_leaf("broker.pem")])


def test_tls13_client_identity_is_info_never_a_pass():
    a = feed([_tls("valid", version="1.3")], registry(), store())
    assert [(x.rule_id, x.severity) for x in a] == [("otids.auth.tls.client_identity_not_observable", "info")]
    assert a[0].to_doc()["event"]["severity"] == 1
    assert not feed([_tls("valid")], registry(), store())  # TLS 1.2 with a good certificate: nothing


def test_tls12_client_certificates_are_judged_like_opcua_ones():
    reg, st = registry(), store()
    cases = {"expired": ("127.0.0.62", True, {"cert.expired"}), "self_signed": ("127.0.0.63", False, {"cert.self_signed"}),
             "weak_key": ("127.0.0.64", True, {"cert.weak_key"}), "sha1": ("127.0.0.65", True, {"cert.weak_signature"}),
             "untrusted": ("127.0.0.66", False, {"cert.untrusted"}), "revoked": ("127.0.0.67", True, {"cert.revoked"}),
             "valid": ("127.0.0.61", True, set())}
    for name, (ip, chain, want) in cases.items():
        got = feed([_tls(name, client=ip, chain=chain)], reg, st)
        assert set(rules(got)) == want, name
        for x in got:
            d = x.to_doc()
            assert d["otids"]["alert"]["auth"]["protocol"] == "tls" and d["otids"]["alert"]["certificate"]["role"] == "client"


def test_tls_identity_impostor_and_unknown_client():
    reg, st = registry(), store()
    a = feed([_tls("impostor", client="127.0.0.68")], reg, st)
    assert rules(a) == Counter({"tls.identity_mismatch": 1})
    assert "belongs to tls-device-valid at 127.0.0.61" in a[0].reason
    a = feed([_tls("rogue", client="127.0.0.88")], reg, st)
    assert rules(a) == Counter({"tls.unknown_client": 1})
    assert not feed([_tls("valid", client="127.0.0.61")], reg, st)


def test_tls_certificate_known_only_by_description_is_unverified():
    """If the TLS dissector keeps no certificate bytes (ids.x509 has none for the digest), the description
    is judged and the alert says what was not verified."""
    ev = _tls("sha1", client="127.0.0.65")
    ev = ev._replace(client_certs=(ev.client_certs[0]._replace(sha256="ab" * 32),) + ev.client_certs[1:])
    got = rules(feed([ev], registry(), store()))
    assert got == Counter({"cert.unverified": 1, "cert.weak_signature": 1})
