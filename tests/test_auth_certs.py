"""Certificate checks on a generated PKI: each check has a certificate that triggers it and one that does not."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "pcaps"))
from certgen import make_pki  # noqa: E402

from ids.detect.auth.certs import CheckPolicy, TrustStore, check_certificate  # noqa: E402
from ids.errors import ConfigError  # noqa: E402
from ids import x509 as x  # noqa: E402


@pytest.fixture(scope="module")
def pki():
    return make_pki()


@pytest.fixture(scope="module")
def store(pki, tmp_path_factory):
    return TrustStore.load(str(pki.write_trust_store(tmp_path_factory.mktemp("trust"))))


def checks(pki, store, name, chain=True, policy=None):
    leaf = pki.leaves[name].cert
    sent = [pki.intermediate.cert] if chain else []
    return {f.check for f in check_certificate(leaf, sent, store, policy or CheckPolicy())}


def test_valid_certificate_passes_everything(pki, store):
    assert checks(pki, store, "valid") == set()


@pytest.mark.parametrize("name,expected", [
    ("expired", {"expired"}), ("not_yet_valid", {"not_yet_valid"}), ("expiring", {"expiring_soon"}),
    ("self_signed", {"self_signed"}), ("weak_key", {"weak_key"}), ("sha1", {"weak_signature"}),
    ("revoked", {"revoked"}), ("untrusted", {"untrusted"}),
])
def test_each_variant_triggers_exactly_its_check(pki, store, name, expected):
    assert checks(pki, store, name) == expected


def test_intermediate_must_be_sent_or_trusted(pki, store):
    assert checks(pki, store, "valid", chain=False) == {"untrusted"}


def test_self_signed_allowed_by_policy_is_info(pki, store):
    f = check_certificate(pki.leaves["self_signed"].cert, [], store, CheckPolicy(require_ca_issued=False))
    assert [(x.check, x.severity) for x in f] == [("self_signed", "info")]


def test_tampered_signature(pki, store):
    from cryptography import x509 as cx
    der = bytearray(pki.leaves["valid"].der)
    der[-5] ^= 0xFF  # flip a bit inside the signature
    cert = cx.load_der_x509_certificate(bytes(der))
    assert {f.check for f in check_certificate(cert, [pki.intermediate.cert], store, CheckPolicy())} == {"bad_signature"}


def test_no_trust_store_is_said_not_passed(pki):
    f = check_certificate(pki.leaves["valid"].cert, [], None, CheckPolicy())
    assert [x.check for x in f] == ["no_trust_store"]


def test_bad_trust_store_file_named(tmp_path):
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="broken.pem"):
        TrustStore.load(str(tmp_path))


def test_x509_fields_and_chain_split(pki):
    der = pki.leaves["valid"].der
    d = x.describe(der)
    f = d["x509"]
    assert f["subject"]["common_name"] == ["device-valid"]
    assert f["issuer"]["common_name"] == ["otids test issuing CA"]
    assert f["public_key_algorithm"] == "RSA" and f["public_key_size"] == 2048
    assert f["signature_algorithm"] == "SHA256-RSA"
    assert f["alternative_names"] == ["urn:otids:test:device-valid", "localhost"]
    assert len(d["hash"]["sha1"]) == 40 and f["serial_number"] == format(pki.leaves["valid"].cert.serial_number, "X")
    assert x.san_uris(pki.leaves["valid"].cert) == ["urn:otids:test:device-valid"]
    chain = der + pki.intermediate.der
    assert x.split_chain(chain) == [der, pki.intermediate.der]
    assert x.describe_chain(chain)["chain"][0]["x509"]["subject"]["common_name"] == ["otids test issuing CA"]
    assert "error" in x.describe(b"\x30\x03abc")
    assert x.split_chain(der + b"\x01\x02") == [der, b"\x01\x02"]
    assert x.describe(pki.leaves["sha1"].der)["x509"]["signature_algorithm"] == "SHA1-RSA"


def test_registry_example_loads_and_looks_up():
    from ids.detect.auth.registry import load_registry
    r = load_registry(str(ROOT / "deploy" / "registry.example.yaml"))
    assert r.policy.opcua_min_security_mode == "Sign" and r.trust_store == "/etc/otids/trust"
    assert r.device_at("10.10.2.1").name == "plc-line3"
    assert r.by_app_uri["urn:plant:hmi-1"].name == "hmi-1" and r.by_client_id["line3-gw"].mqtt.usernames == ("line3",)
    assert r.policy.cert_policy().min_rsa_bits == 2048


@pytest.mark.parametrize("text,where,msg", [
    ("devices:\n  - name: a\n    ipz: [1.2.3.4]\n", ":3:5", "unknown key in device"),
    ("devices:\n  - name: a\n    ips: [1.2.3]\n", ":3:5", "'1.2.3' is not an IP address"),
    ("policy:\n  opcua_min_security_mode: Encrypt\n", ":2:3", "must be one of"),
    ("devices:\n  - name: a\n  - name: a\n", ":3:5", "duplicate device name"),
    ("devices:\n  - name: a\n    opcua:\n      certificate_sha256: [abc]\n", ":4:7", "not a SHA-256"),
    ("policy:\n  min_rsa_bits: lots\n", ":2:3", "must be int"),
])
def test_registry_errors_name_file_line_col(tmp_path, text, where, msg):
    from ids.detect.auth.registry import load_registry
    f = tmp_path / "reg.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_registry(str(f))
    assert str(e.value).startswith(f"{f}{where}: ") and msg in str(e.value)


def test_expired_intermediate_is_ca_expired(pki, store):
    """The sent intermediate was outside its validity when the leaf was presented; the valid chain is not."""
    from certgen import DAY, NOW, issue
    old = issue("otids old issuing CA", pki.root, ca=True, not_before=NOW - 400 * DAY, not_after=NOW - 10 * DAY)
    leaf = issue("device-oldca", old)
    assert {f.check for f in check_certificate(leaf.cert, [old.cert], store, CheckPolicy())} == {"ca_expired"}
    assert checks(pki, store, "valid") == set()


def test_ec_keys_are_named_and_judged(pki, store):
    from cryptography.hazmat.primitives.asymmetric import ec
    from certgen import issue
    small = issue("device-p192", pki.intermediate, key=ec.generate_private_key(ec.SECP192R1()))
    ok = issue("device-p256", pki.intermediate, key=ec.generate_private_key(ec.SECP256R1()))
    sent = [pki.intermediate.cert]
    assert {f.check for f in check_certificate(small.cert, sent, store, CheckPolicy())} == {"weak_key"}
    assert {f.check for f in check_certificate(ok.cert, sent, store, CheckPolicy())} == set()
