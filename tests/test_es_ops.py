"""Operations of the Elasticsearch output (issue #17 item 8), over real HTTP(S) on loopback: several URLs
with one node down, Elastic Cloud ids, TLS client certificates and CA fingerprint pinning against a stand-in
that requires them, API-key rotation on SIGHUP (the sinks' reload hook), a spool path per sensor."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ssl
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import PCAPS
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from es_helpers import Recorder, es_config, free_port

from ids.config import Config
from ids.errors import UserError
from ids.commands.es import effective_config
from ids.output.elasticsearch import AlertSink, Shipper
from ids.pipeline import analyze


@pytest.fixture(scope="module")
def alerts():
    run, col = analyze([str(PCAPS / "modbus-alert-storm.pcap")])
    return col.alerts[:20]


def ship(sh: Shipper, alerts) -> dict:
    sink = AlertSink(sh, "default")
    for a in alerts:
        sink.write_alert(a)
    sink.close()
    return sh.counters()


def test_several_urls_one_node_down(tmp_path, alerts):
    rec = Recorder()
    try:
        url = f"http://127.0.0.1:{free_port()},{rec.url}"  # the first node refuses connections
        c = ship(Shipper(url, es_config(tmp_path, retries=3)), alerts)
        assert (c["sent"], c["spooled"], c["rejected"]) == (20, 0, 0)
        assert len(rec.bulk_actions()) == 20
    finally:
        rec.close()


def test_cloud_id_gives_the_urls():
    cid = "plant:" + base64.b64encode(b"eu-west-1.aws.found.io:443$es0123$kb4567").decode()
    cfg = effective_config(Namespace(), replace(Config(), elasticsearch=replace(Config().elasticsearch, cloud_id=cid)))
    assert cfg.url == "https://es0123.eu-west-1.aws.found.io:443"
    assert cfg.kibana_url == "https://kb4567.eu-west-1.aws.found.io:443"
    bad = replace(Config(), elasticsearch=replace(Config().elasticsearch, cloud_id="plant:not-base64!"))
    with pytest.raises(UserError, match="elasticsearch.cloud_id: not an Elastic Cloud id"):
        effective_config(Namespace(), bad)


def test_spool_path_per_sensor(tmp_path, monkeypatch):
    es = replace(Config().elasticsearch, url="http://127.0.0.1:9200", spool_dir=str(tmp_path / "{sensor}" / "spool"),
                 dead_letter=str(tmp_path / "{sensor}" / "dead.ndjson"))
    monkeypatch.setenv("OTIDS_SENSOR_NAME", "host1-eth1")
    cfg = effective_config(Namespace(), replace(Config(), elasticsearch=es))
    assert cfg.spool_dir == str(tmp_path / "host1-eth1" / "spool")
    assert cfg.dead_letter == str(tmp_path / "host1-eth1" / "dead.ndjson")
    cfg2 = effective_config(Namespace(), replace(Config(), elasticsearch=replace(es, sensor_name="cell 3/a")))
    assert cfg2.spool_dir == str(tmp_path / "cell_3_a" / "spool")


def test_api_key_rotated_on_sighup(tmp_path, alerts):
    rec = Recorder()
    key = tmp_path / "api-key"
    key.write_text("a2V5LW9uZQ==\n")
    key.chmod(0o600)
    try:
        cfg = es_config(tmp_path, api_key_file=str(key))
        sh = Shipper(rec.url, cfg)
        sink = AlertSink(sh, "default")
        for a in alerts[:10]:
            sink.write_alert(a)
        assert sh.flush(10)
        key.write_text("a2V5LXR3bw==\n")  # the administrator rotates the key, then: systemctl reload
        sink.reload(replace(Config(), elasticsearch=cfg))
        for a in alerts[10:]:
            sink.write_alert(a)
        sink.close()
        assert sh.counters()["sent"] == 20
        auth = [r["headers"].get("authorization") for r in rec.requests if r["path"].startswith("/_bulk")]
        assert auth[0] == "ApiKey a2V5LW9uZQ==" and auth[-1] == "ApiKey a2V5LXR3bw=="
        # an unchanged file: nothing happens; an unreadable one: a one-line error, the old key kept
        assert sh.reload(cfg) is False
        with pytest.raises(UserError, match="cannot read API key file"):
            sh.reload(replace(cfg, api_key_file=str(tmp_path / "gone")))
    finally:
        rec.close()


# ---------------------------------------------------------------------------------------------- TLS

def _cert(subject: str, key, issuer=None, issuer_key=None, ca=False, san=None):
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
         .not_valid_after(now + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(san))]),
                            critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("otids test CA", ca_key, ca=True)
    out = {"dir": d, "ca_fp": hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()}
    for role in ("server", "client"):
        k = ec.generate_private_key(ec.SECP256R1())
        c = _cert(role, k, ca.subject, ca_key, san="127.0.0.1" if role == "server" else None)
        (d / f"{role}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM) +
                                        ca.public_bytes(serialization.Encoding.PEM))
        (d / f"{role}.key").write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return out


def _tls_recorder(pki) -> Recorder:
    d: Path = pki["dir"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    ctx.load_verify_locations(d / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # client certificates, as an Elasticsearch with PKI realm asks
    return Recorder(tls=ctx)


def test_client_certificate_and_ca_fingerprint(tmp_path, pki, alerts):
    d = pki["dir"]
    rec = _tls_recorder(pki)
    try:
        fp = ":".join(pki["ca_fp"][i:i + 2] for i in range(0, 64, 2)).upper()  # as Elasticsearch prints it
        cfg = es_config(tmp_path / "ok", ca_fingerprint=fp, client_cert=str(d / "client.pem"),
                        client_key=str(d / "client.key"))
        assert cfg.problem() is None
        c = ship(Shipper(rec.url, cfg), alerts)
        assert (c["sent"], c["spooled"]) == (20, 0)
        # no client certificate: the handshake fails, nothing is dead-lettered, exit line says why
        sh = Shipper(rec.url, es_config(tmp_path / "nocert", ca_fingerprint=fp, retries=0, shutdown_timeout=1))
        c = ship(sh, alerts[:2])
        assert (c["sent"], c["rejected"]) == (0, 0) and "did not reach" in sh.failure()
        # a wrong fingerprint: refused as well
        sh = Shipper(rec.url, es_config(tmp_path / "badfp", ca_fingerprint="00" * 32, client_cert=str(d / "client.pem"),
                                        client_key=str(d / "client.key"), retries=0, shutdown_timeout=1))
        c = ship(sh, alerts[:2])
        assert c["sent"] == 0 and "fingerprint" in sh.last_error.lower(), sh.last_error
    finally:
        rec.close()


def test_fingerprint_and_client_key_checks():
    base = Config().elasticsearch
    assert replace(base, ca_fingerprint="ab" * 31).problem()[0] == "ca_fingerprint"
    assert replace(base, client_key="k.pem").problem() == ("client_key", "needs client_cert")


def test_long_replay_says_how_far_it_is(tmp_path, alerts, monkeypatch, caplog):
    from ids.output.elasticsearch import shipper as shipper_mod

    rec = Recorder()
    try:
        rec.bulk_script = [503] * 100
        c = ship(Shipper(rec.url, es_config(tmp_path, retries=0, shutdown_timeout=1)), alerts)
        assert c["spooled"] == 20 and c["sent"] == 0
        rec.bulk_script = []
        monkeypatch.setattr(shipper_mod, "PROGRESS_S", 0.0)  # every chunk, instead of every 10 s
        sh = Shipper(rec.url, es_config(tmp_path, batch_size=5))
        sh.close()
        assert sh.counters()["replayed"] == 20
        lines = [r.getMessage() for r in caplog.records if "replaying the spool" in r.getMessage()]
        assert lines[0].endswith("5 document(s) so far, 20 still in it")
        assert any(x.endswith("20 document(s) so far, 20 still in it") for x in lines)
        assert "otids: elasticsearch: spool replayed (20 document(s))" in [r.getMessage() for r in caplog.records]
    finally:
        rec.close()
