"""Authentication checks on OPC UA: every check has a real capture (pcaps/make_auth_captures.py: asyncua
peers with certificates from the test PKI) that triggers it and one that does not; the few that a capture
cannot show (a CRL signed by the wrong key, an unparsable certificate, a certificate known only by its
description) are shown on crafted inputs. Expectations are exact: the whole multiset of rules per capture."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from authlib import REGISTRY, registry, rules, run, store
from conftest import CORPUS, PCAPS, ROOT, need
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization

from ids.detect.auth.detector import RULES, AuthDetector
from ids.detect.auth.registry import AuthPolicy, load_registry
from ids.pipeline import analyze

# with the captures' registry and trust store: exactly these alerts
EXPECTED = {
    "auth-opcua-valid.pcap": {},
    "auth-opcua-encrypt.pcap": {},
    "auth-opcua-expired.pcap": {"cert.expired": 1},
    "auth-opcua-notyetvalid.pcap": {"cert.not_yet_valid": 1},
    "auth-opcua-expiring.pcap": {"cert.expiring_soon": 1},
    "auth-opcua-selfsigned.pcap": {"cert.self_signed": 1},
    "auth-opcua-weakkey.pcap": {"cert.weak_key": 1},
    "auth-opcua-sha1.pcap": {"cert.weak_signature": 1},
    # the certificate names another application: inconsistent with the CreateSession, and not the registered one
    "auth-opcua-wronguri.pcap": {"opcua.application_uri_mismatch": 1, "opcua.identity_mismatch": 1},
    "auth-opcua-revoked.pcap": {"cert.revoked": 1},
    "auth-opcua-untrusted.pcap": {"cert.untrusted": 1},
    "auth-opcua-badsig.pcap": {"cert.bad_signature": 1},
    "auth-opcua-changed.pcap": {"opcua.certificate_changed": 1},
    "auth-opcua-unknown.pcap": {"opcua.unknown_device": 1},
    "auth-opcua-thumbprint.pcap": {"opcua.thumbprint_mismatch": 1},
    # policy None and the session's anonymous / password token are one finding each (#20 item 9)
    "auth-opcua-none.pcap": {"opcua.anonymous_over_none": 1, "opcua.credentials_exposed": 1},
    "auth-opcua-basic256.pcap": {"opcua.deprecated_policy": 1},
    "auth-opcua-basic128rsa15.pcap": {"opcua.deprecated_policy": 1},
    "auth-opcua-downgrade.pcap": {"opcua.downgrade": 1, "opcua.anonymous_over_none": 1},
}


@pytest.mark.parametrize("pcap", sorted(EXPECTED))
def test_each_capture_raises_exactly_its_alerts(pcap):
    assert rules(run(pcap).alerts) == Counter(EXPECTED[pcap])


def test_every_opcua_check_is_triggered_by_one_capture_and_not_by_another():
    """The table above covers every OPC UA rule; the captures below cover the rest."""
    triggered = {r for e in EXPECTED.values() for r in e}
    opcua = {r.removeprefix("otids.auth.") for r in RULES if r.startswith("otids.auth.opcua.")}
    # mode_below_required needs a stricter registry; policy_none alone needs a session with no anonymous or
    # password token (both below)
    assert opcua - triggered == {"opcua.mode_below_required", "opcua.policy_none"}
    assert not EXPECTED["auth-opcua-valid.pcap"] and not EXPECTED["auth-opcua-encrypt.pcap"]


def _pem(name: str) -> cx.Certificate:
    p = PCAPS / "auth-pki" / (name if name.endswith(".pem") else f"leaves/{name}.pem")
    return cx.load_pem_x509_certificate(need(p).read_bytes())


def _sha256(c) -> str:
    return c.fingerprint(hashes.SHA256()).hex()


def _one(col, rid):
    hits = [a for a in col.alerts if a.rule_id == f"otids.auth.{rid}"]
    assert len(hits) == 1, [a.rule_id for a in col.alerts]
    return hits[0], hits[0].to_doc()


@pytest.mark.parametrize("pcap,rid,leaf", [
    ("auth-opcua-expired.pcap", "cert.expired", "expired"),
    ("auth-opcua-weakkey.pcap", "cert.weak_key", "weak_key"),
    ("auth-opcua-sha1.pcap", "cert.weak_signature", "sha1"),
    ("auth-opcua-revoked.pcap", "cert.revoked", "revoked"),
    ("auth-opcua-untrusted.pcap", "cert.untrusted", "untrusted"),
    ("auth-opcua-badsig.pcap", "cert.bad_signature", "badsig"),
    ("auth-opcua-selfsigned.pcap", "cert.self_signed", "self_signed"),
])
def test_certificate_alerts_carry_the_certificate_and_expected_vs_seen(pcap, rid, leaf):
    a, doc = _one(run(pcap), rid)
    cert = _pem(leaf)
    c = doc["otids"]["alert"]["certificate"]
    assert c["hash"]["sha256"] == _sha256(cert).upper()
    assert c["x509"]["subject"]["distinguished_name"] == cert.subject.rfc4514_string()
    assert c["x509"]["serial_number"] == format(cert.serial_number, "X")
    assert c["role"] == "client" and doc["source"]["ip"].startswith("127.0.0.1")
    auth = doc["otids"]["alert"]["auth"]
    assert auth["check"] == rid.split(".")[1] and auth["expected"] and auth["seen"] and auth["protocol"] == "opcua"
    assert rid.split(".")[1] in auth["findings"]
    assert doc["rule"]["id"] == f"otids.auth.{rid}" and doc["threat"]["technique"]["id"]
    assert doc["event"]["severity"] >= 73 and a.source == "auth"


def test_intermediate_sent_in_the_chain_is_used():
    """The client sends its intermediate CA with the OPN (the trust store holds only the root): the chain
    verifies. The same certificate alone, from a peer that never sent the intermediate, does not."""
    col = run("auth-opcua-valid.pcap")
    opn = [e for e in col.events if e.dataset == "otids.opcua" and e.service == "OpenSecureChannel"][0]
    assert [c["x509"]["subject"]["common_name"] for c in opn.certificates["client"]["chain"]] == [["otids test issuing CA"]]
    assert not col.alerts
    from ids.detect.auth.certs import CheckPolicy, check_certificate
    assert [f.check for f in check_certificate(_pem("valid"), [], store(), CheckPolicy())] == ["untrusted"]


def test_thumbprint_alert_names_both_thumbprints():
    _a, doc = _one(run("auth-opcua-thumbprint.pcap"), "opcua.thumbprint_mismatch")
    auth = doc["otids"]["alert"]["auth"]
    assert auth["seen"] == _pem("valid").fingerprint(hashes.SHA1()).hex().upper()  # what the client named
    assert auth["expected"] == _pem("opcua-server.pem").fingerprint(hashes.SHA1()).hex().upper()
    assert doc["otids"]["alert"]["certificate"]["x509"]["subject"]["common_name"] == ["opcua-server"]


def test_pin_mismatch_names_pinned_and_presented():
    a, doc = _one(run("auth-opcua-changed.pcap"), "opcua.certificate_changed")
    auth = doc["otids"]["alert"]["auth"]
    assert auth["expected"] == _sha256(_pem("changed-a")) and auth["seen"] == _sha256(_pem("changed-b"))
    assert a.severity == "high" and auth["device"] == "hmi-changed"


def test_learned_certificate_change_without_pins_is_medium():
    col = run("auth-opcua-changed.pcap", reg=None)
    a, doc = _one(col, "opcua.certificate_changed")
    assert a.severity == "medium" and doc["otids"]["alert"]["auth"]["expected"] == _sha256(_pem("changed-a"))
    assert rules(col.alerts) == Counter({"opcua.certificate_changed": 1})
    assert not run("auth-opcua-valid.pcap", reg=None).alerts


def test_identity_alerts():
    _a, doc = _one(run("auth-opcua-wronguri.pcap"), "opcua.application_uri_mismatch")
    auth = doc["otids"]["alert"]["auth"]
    assert auth["expected"] == "urn:somewhere:else" and auth["seen"] == "urn:otids:test:device-wronguri"
    _a, doc = _one(run("auth-opcua-unknown.pcap"), "opcua.unknown_device")
    assert "urn:otids:test:rogue" in doc["otids"]["alert"]["auth"]["seen"] and doc["source"]["ip"] == "127.0.0.113"


def test_downgrade_and_policy_details():
    col = run("auth-opcua-downgrade.pcap")
    a, doc = _one(col, "opcua.downgrade")
    auth = doc["otids"]["alert"]["auth"]
    assert a.severity == "high" and auth["seen"] == "None" and auth["expected"] == "SignAndEncrypt (Basic256Sha256)"
    # the policy None fact rides on the session's anonymous-token alert, not a second alert
    a, doc = _one(col, "opcua.anonymous_over_none")
    assert a.reason.endswith("(policy.opcua_min_security_mode: Sign)") and "opcua.policy_none" not in rules(col.alerts)


def test_credentials_exposed_names_the_user_never_the_password():
    col = run("auth-opcua-none.pcap")
    a, doc = _one(col, "opcua.credentials_exposed")
    assert a.severity == "high" and "'operator'" in a.reason and doc["source"]["ip"] == "127.0.0.115"
    text = json.dumps([x.to_doc() for x in col.alerts])
    assert "s3cret-Passw0rd" not in text


def _registry_with(tmp_path, **policy) -> object:
    text = need(REGISTRY).read_text()
    for k, v in policy.items():
        text = text.replace(f"  {k}: ", f"  {k}: {v} # ", 1)
    text = text.replace("trust_store: auth-pki/trust", f"trust_store: {PCAPS / 'auth-pki' / 'trust'}")
    f = tmp_path / "reg.yaml"
    f.write_text(text)
    return load_registry(str(f))


def test_registry_allowing_none_silences_policy_none_but_not_exposed_passwords(tmp_path):
    reg = _registry_with(tmp_path, opcua_min_security_mode="None")
    assert rules(run("auth-opcua-none.pcap", reg=reg).alerts) == Counter({"opcua.credentials_exposed": 1})


def test_mode_below_required_triggered_by_sign_not_by_sign_and_encrypt(tmp_path):
    text = need(REGISTRY).read_text().replace("      application_uri: urn:otids:test:server\n",
                                               "      application_uri: urn:otids:test:server\n"
                                               "      min_security_mode: SignAndEncrypt\n", 1)
    f = tmp_path / "reg.yaml"
    f.write_text(text)
    reg = load_registry(str(f))
    col = run("auth-opcua-valid.pcap", reg=reg)
    assert rules(col.alerts) == Counter({"opcua.mode_below_required": 1})
    _a, doc = _one(col, "opcua.mode_below_required")
    assert doc["otids"]["alert"]["auth"]["expected"] == "SignAndEncrypt (opcua-server.opcua.min_security_mode)"
    assert doc["otids"]["alert"]["auth"]["seen"] == "Sign"
    assert not run("auth-opcua-encrypt.pcap", reg=reg).alerts


def test_stale_crl_triggers_with_the_stale_store_only():
    assert rules(run("auth-opcua-valid.pcap", st=store("trust-stale-crl")).alerts) == Counter({"cert.crl_stale": 1})
    assert rules(run("auth-opcua-revoked.pcap", st=store("trust-stale-crl")).alerts) == \
        Counter({"cert.revoked": 1, "cert.crl_stale": 1})


def test_crl_signed_by_another_key_is_unverified(tmp_path):
    """A CRL that names the intermediate as issuer but is signed by another key (crafted: the intermediate's
    key is not kept) must not be used, and says so."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    import datetime as dt
    inter = _pem("intermediate.pem")
    now = dt.datetime.now(dt.timezone.utc)
    bad = (cx.CertificateRevocationListBuilder().issuer_name(inter.subject).last_update(now - dt.timedelta(days=400))
           .next_update(now + dt.timedelta(days=400)).sign(rsa.generate_private_key(65537, 2048), hashes.SHA256()))
    (tmp_path / "root.pem").write_bytes(_pem("root.pem").public_bytes(serialization.Encoding.PEM))
    (tmp_path / "forged.crl").write_bytes(bad.public_bytes(serialization.Encoding.PEM))
    from ids.detect.auth.certs import TrustStore
    st = TrustStore.load(str(tmp_path))
    assert rules(run("auth-opcua-valid.pcap", st=st).alerts) == Counter({"cert.crl_unverified": 1})
    # revocation cannot be trusted from it either
    assert rules(run("auth-opcua-revoked.pcap", st=st).alerts) == Counter({"cert.crl_unverified": 1})


def test_without_trust_store_chains_are_said_unverified():
    col = run("auth-opcua-valid.pcap", st=None)
    assert rules(col.alerts) == Counter({"cert.no_trust_store": 2})  # client and server certificate, once each
    assert {a.severity for a in col.alerts} == {"info"} and {a.to_doc()["event"]["severity"] for a in col.alerts} == {1}
    assert rules(run("auth-opcua-expired.pcap", st=None).alerts) == Counter({"cert.no_trust_store": 2, "cert.expired": 1})


def test_self_signed_allowed_by_policy_is_informational(tmp_path):
    reg = _registry_with(tmp_path, require_ca_issued="false")
    col = run("auth-opcua-selfsigned.pcap", reg=reg)
    assert [(a.rule_id, a.severity) for a in col.alerts] == [("otids.auth.cert.self_signed", "info")]


def test_repeats_on_new_connections_are_counted_not_repeated():
    """Two connections of the same expired client within the re-alert window: one alert at once, the
    second sighting reported at the end with its count; several sightings on one connection count once."""
    p = need(PCAPS / "auth-opcua-expired.pcap")
    det = AuthDetector(registry(), store())
    _r, col = analyze([str(p), str(p)], detectors=[det])
    hits = [a for a in col.alerts if a.rule_id == "otids.auth.cert.expired"]
    assert [a.count for a in hits] == [1, 1] and "1 more time(s)" in hits[1].reason
    det = AuthDetector(registry(), store(), AuthPolicy(realert_after=0))
    _r, col = analyze([str(p), str(p)], detectors=[det])
    assert [a.count for a in col.alerts if a.rule_id == "otids.auth.cert.expired"] == [1, 1]


# ---------------------------------------------------------------------------------------------- crafted edges

def _opcua_event(certs: dict, service="OpenSecureChannel", **kw):
    from authlib import flow
    from ids.protocols.opcua.messages import OpcuaEvent
    base = dict(ts=int(_pem("valid").not_valid_before_utc.timestamp() + 86400) * 1_000_000_000, flow=flow(sport=4840), message_type="OPN", service=service,
                secure_channel_id=1, token_id=None, request_id=None, request_handle=None,
                security_policy_uri="http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256", security_mode=None,
                encrypted=True, status_code=None, status=None, nodes=(), endpoint_url=None, application_uri=None,
                user_token_type=None, request={}, response=None, certificates=certs, anomalies=(), response_ts=None)
    base.update(kw)
    return OpcuaEvent(**base)


def test_unparsable_certificate():
    from ids import x509
    bad = _opcua_event({"client": x509.describe_chain(b"\x30\x05\x02\x01\x01\x05\x00")})
    out = AuthDetector(None, store()).on_event(bad)
    assert [(a.rule_id, a.severity) for a in out] == [("otids.auth.cert.unparsable", "medium")]
    assert out[0].to_doc()["otids"]["alert"]["certificate"]["error"].startswith("unparsable_certificate")
    good = _opcua_event({"client": x509.describe_chain(_pem("valid").public_bytes(serialization.Encoding.DER)
                                                         + _pem("intermediate.pem").public_bytes(serialization.Encoding.DER))})
    assert AuthDetector(None, store()).on_event(good) is None


def test_description_only_certificate_is_unverified_but_still_judged():
    """A certificate whose bytes are gone (only its ECS description is known) gets the checks a description
    allows, and an `unverified` finding instead of a silent pass."""
    from ids import x509
    d = x509.describe(_pem("sha1").public_bytes(serialization.Encoding.DER))
    doc = {"hash": {"sha256": "00" * 32}, "x509": d["x509"]}  # a digest nobody registered: no bytes
    out = AuthDetector(None, store()).on_event(_opcua_event({"client": doc}))
    assert sorted(a.rule_id for a in out) == ["otids.auth.cert.unverified", "otids.auth.cert.weak_signature"]


def test_every_alert_field_is_declared():
    spec = yaml.safe_load((ROOT / "ids" / "data" / "fields" / "auth.yml").read_text())
    declared = {f["name"]: f["type"] for f in spec["fields"]}
    flat = [n for n, t in declared.items() if t == "flattened"]
    seen = set()

    def leaves(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    for pcap in EXPECTED:
        for a in run(pcap).alerts:
            seen.update(leaves(a.to_doc()["otids"]["alert"], "otids.alert."))
    from authlib import flow, mqtt_connect
    det = AuthDetector(registry(), store())
    for i in range(3):
        for a in det.on_event(mqtt_connect(i * 1_000_000_000, flow("10.0.0.9", fid=i), "x", rc=5)) or ():
            seen.update(leaves(a.to_doc()["otids"]["alert"], "otids.alert."))
    ours = {s for s in seen if s.startswith(("otids.alert.auth.", "otids.alert.certificate."))}
    missing = {s for s in ours if s not in declared and not any(s.startswith(f + ".") for f in flat)}
    assert not missing, sorted(missing)
    assert len(ours) > 25


def test_every_rule_has_valid_attack_ids_and_severity():
    from ids.detect.attack import TECHNIQUES
    from ids.events import SEVERITY_SCORE
    for r in RULES.values():
        assert r.severity in SEVERITY_SCORE and all(t in TECHNIQUES for t in r.attack), r.id
        assert r.description and r.name


def test_docs_list_every_rule():
    text = need(ROOT / "docs" / "AUTH.md").read_text()
    missing = [r for r in RULES if f"`{r}`" not in text]
    assert not missing, missing


def test_opcua_corpus_runs_clean():
    """Third-party OPC UA captures (ICSNPP, ITI, EmreEkin, nDPI): no crash, every alert well formed. The
    ICSNPP captures run sessions over SecurityPolicy None with anonymous tokens: both are reported."""
    pcaps = sorted(need(CORPUS / "icsnpp" / "icsnpp-opcua-binary").rglob("*.pcap")) + \
        [need(CORPUS / "ndpi" / "pcap" / "opc-ua.pcap"),
         need(CORPUS / "collections" / "ITI-ICS-Security-Tools" / "pcaps" / "OPC" / "opc-ua-ap-method-wireshark-freeze.pcap"),
         need(CORPUS / "collections" / "EmreEkin-ICS-Pcaps" / "OPC-UA" / "opycua_share.pcap")]
    total = Counter()
    for p in pcaps:
        _r, col = analyze([str(p)], detectors=[AuthDetector(None, None)])
        for a in col.alerts:
            d = a.to_doc()
            assert d["rule"]["id"] in RULES and d["otids"]["alert"]["auth"]["check"]
        total += rules(col.alerts)
    print(dict(total))
    assert total["opcua.policy_none"] > 0 and total["opcua.anonymous_over_none"] > 0
    assert total["cert.no_trust_store"] >= 6  # the corpus's certificates (see test_auth_cli: 6 distinct, by tshark)
