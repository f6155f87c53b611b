"""`otids analyze --registry/--trust-store/--no-auth` and `otids certs` through the command line, on the auth
captures and on the corpus OPC UA captures (every certificate tshark finds there is listed, with verdicts)."""
from __future__ import annotations

import hashlib
import json
import subprocess

from conftest import CORPUS, PCAPS, need, need_tool, read_ndjson, run_cli

from ids import x509

REG = str(PCAPS / "auth-registry.yaml")


def test_analyze_with_registry_writes_auth_alerts(tmp_path):
    out = tmp_path / "a.ndjson"
    run_cli("analyze", "-q", "-o", str(out), "--registry", REG, str(need(PCAPS / "auth-opcua-expired.pcap")))
    auth = [d for d in read_ndjson(out) if d["rule"]["category"] == "auth"]
    assert [d["rule"]["id"] for d in auth] == ["otids.auth.cert.expired"]
    assert auth[0]["otids"]["alert"]["certificate"]["x509"]["subject"]["common_name"] == ["device-expired"]
    run_cli("analyze", "-q", "-o", str(out), "--no-auth", "--registry", REG, str(PCAPS / "auth-opcua-expired.pcap"))
    assert not [d for d in read_ndjson(out) if d["rule"]["category"] == "auth"]


def test_analyze_without_registry_still_checks(tmp_path):
    out = tmp_path / "a.ndjson"
    run_cli("analyze", "-q", "-o", str(out), str(need(PCAPS / "auth-opcua-none.pcap")))
    docs = [d for d in read_ndjson(out) if d["rule"]["category"] == "auth"]
    assert sorted(d["rule"]["id"] for d in docs if d["otids"]["alert"]["severity"] != "info") == [
        "otids.auth.opcua.anonymous_over_none", "otids.auth.opcua.credentials_exposed"]
    # posture without a site policy: low, and said so; a password in clear is a fact, not a posture
    sev = {d["rule"]["id"]: (d["event"]["severity"], d["event"]["reason"]) for d in docs}
    assert sev["otids.auth.opcua.anonymous_over_none"][0] == 21
    assert "no site policy given" in sev["otids.auth.opcua.anonymous_over_none"][1]
    assert sev["otids.auth.opcua.credentials_exposed"][0] == 73
    # the server's certificate (CreateSession response), unverified without a trust store: said, once per client
    assert [d["rule"]["id"] for d in docs if d["otids"]["alert"]["severity"] == "info"] == \
        ["otids.auth.cert.no_trust_store"] * 2
    out2 = tmp_path / "b.ndjson"
    run_cli("analyze", "-q", "-o", str(out2), "--trust-store", str(PCAPS / "auth-pki" / "trust"),
            str(PCAPS / "auth-opcua-untrusted.pcap"))
    assert [d["rule"]["id"] for d in read_ndjson(out2) if d["rule"]["category"] == "auth"] == ["otids.auth.cert.untrusted"]


def test_bad_registry_and_trust_store_are_one_line_errors(tmp_path):
    bad = tmp_path / "reg.yaml"
    bad.write_text("devices:\n  - name: a\n    opcua:\n      min_security_mode: Encrypt\n")
    p = run_cli("analyze", "-o", str(tmp_path / "x"), "--registry", str(bad), str(PCAPS / "auth-opcua-valid.pcap"),
                check_rc=2)
    assert p.stderr.strip() == f"otids: error: {bad}:4:7: min_security_mode: must be one of None, Sign, SignAndEncrypt"
    p = run_cli("certs", "--trust-store", str(tmp_path / "nope"), str(PCAPS / "auth-opcua-valid.pcap"), check_rc=2)
    assert p.stderr.strip() == f"otids: error: {tmp_path / 'nope'}: trust store is not a directory"
    (tmp_path / "ts").mkdir()
    (tmp_path / "ts" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    p = run_cli("certs", "--trust-store", str(tmp_path / "ts"), str(PCAPS / "auth-opcua-valid.pcap"), check_rc=2)
    assert len(p.stderr.splitlines()) == 1 and "ca.pem" in p.stderr
    p = run_cli("certs", str(tmp_path / "missing.pcap"), check_rc=2)
    assert "missing.pcap: no such capture file" in p.stderr


# client certificate of each capture -> its verdicts (with the captures' registry and trust store)
CLIENT_VERDICTS = {
    "valid": set(), "expired": {"expired"}, "notyetvalid": {"not_yet_valid"}, "expiring": {"expiring_soon"},
    "selfsigned": {"self_signed"}, "weakkey": {"weak_key"}, "sha1": {"weak_signature"},
    "wronguri": {"application_uri_mismatch", "identity_mismatch"}, "revoked": {"revoked"},
    "untrusted": {"untrusted"}, "badsig": {"bad_signature"}, "unknown": {"unknown_device"},
}


def test_certs_json_lists_every_certificate_with_its_verdicts():
    pcaps = sorted(str(p) for p in PCAPS.glob("auth-opcua-*.pcap"))
    doc = json.loads(run_cli("certs", "--json", "--registry", REG, *pcaps).stdout)
    rows = doc["certificates"]
    assert doc["trust_store"].endswith("auth-pki/trust") and doc["truncated"] == 0
    by_cn = {}
    for r in rows:
        by_cn.setdefault((r["role"], r["subject"].split(",")[0].removeprefix("CN=")), []).append(r)
    for name, want in CLIENT_VERDICTS.items():
        cn = {"notyetvalid": "device-future", "unknown": "device-rogue"}.get(name, f"device-{name}")
        got = by_cn[("client", cn)]
        assert {v["check"] for r in got for v in r["verdicts"]} == want, name
        assert all(r["status"] == ("ok" if not want else max((v["severity"] for v in r["verdicts"]),
                                                             key=("low", "medium", "high", "critical").index))
                   for r in got)
    changed = by_cn[("client", "device-changed")]
    assert sorted({v["check"] for v in r["verdicts"]} == {"certificate_changed"} for r in changed) == [False, True]
    server = by_cn[("server", "opcua-server")]
    assert all(not r["verdicts"] and r["device"] == "opcua-server" for r in server)
    # every certificate the pcaps carry (tshark's view of the OPN SenderCertificates) has a row
    want = set()
    for p in pcaps:
        want |= _tshark_opcua_certs(p)
    listed = {r["sha256"] for r in rows} | {c["sha256"] for r in rows for c in r["chain"]}
    assert want <= listed, sorted(want - listed)
    r = by_cn[("client", "device-valid")][0]
    assert r["key"] == {"algorithm": "RSA", "size": 2048, "curve": None} and r["signature_algorithm"] == "SHA256-RSA"
    assert r["chain"][0]["subject"] == "CN=otids test issuing CA,O=otids test plant"
    assert r["connections"] == 2  # auth-opcua-valid and auth-opcua-encrypt


def test_certs_table():
    p = run_cli("certs", "--registry", REG, str(PCAPS / "auth-opcua-expired.pcap"), str(PCAPS / "auth-opcua-valid.pcap"))
    out = p.stdout
    assert "Certificates seen: 4" in out  # two clients, and the server's certificate towards each and "CN=device-expired,O=otids test plant" in out
    assert "expired (high): expired" in out and " ok " in out
    # judged at the capture's time, and said so: "35 days ago" read as 35 days before today
    assert "expired 2026-10-18 (35 days before the capture)" in out and "ago" not in out
    p = run_cli("certs", str(PCAPS / "auth-opcua-valid.pcap"))
    assert "no_trust_store (info)" in p.stdout and "chains were not verified" in p.stdout


def _tshark_opcua_certs(path) -> set[str]:
    """SHA-256 of every certificate tshark shows in OPC UA certificate fields (chains split)."""
    out = subprocess.run([need_tool("tshark"), "-r", str(path), "-d", "tcp.port==12001,opcua", "-Y", "opcua",
                          "-T", "fields", "-E", "separator=,", "-e", "opcua.security.scert",
                          "-e", "opcua.ClientCertificate", "-e", "opcua.ServerCertificate"],
                         capture_output=True, text=True, timeout=120).stdout
    shas = set()
    for line in out.splitlines():
        for h in line.split(","):
            h = h.strip().replace(":", "")
            if len(h) > 100:
                for part in x509.split_chain(bytes.fromhex(h)):
                    shas.add(hashlib.sha256(part).hexdigest().upper())
    return shas


def test_certs_lists_every_certificate_of_the_corpus_opcua_captures():
    """tshark 4.0 finds 6 distinct certificates in the corpus OPC UA captures (OPN SenderCertificates and
    CreateSession/GetEndpoints certificates); `otids certs` lists all of them, each with verdicts (no trust
    store: at least no_trust_store). otids also lists the server certificate of opcua_with-gap.pcap, which
    tshark does not reach: its CreateSession response follows a TCP gap that tshark does not resync over."""
    pcaps = sorted(str(p) for p in need(CORPUS / "icsnpp" / "icsnpp-opcua-binary").rglob("*.pcap")) + [
        str(need(CORPUS / "collections" / "ITI-ICS-Security-Tools" / "pcaps" / "OPC" / "opc-ua-ap-method-wireshark-freeze.pcap")),
        str(need(CORPUS / "collections" / "EmreEkin-ICS-Pcaps" / "OPC-UA" / "opycua_share.pcap")),
        str(need(CORPUS / "ndpi" / "pcap" / "opc-ua.pcap"))]
    want = set()
    for p in pcaps:
        want |= _tshark_opcua_certs(p)
    assert len(want) == 6
    doc = json.loads(run_cli("certs", "--json", *pcaps).stdout)
    rows = doc["certificates"]
    listed = {r["sha256"] for r in rows}
    assert want <= listed, sorted(want - listed)
    assert all(r["verdicts"] and r["status"] for r in rows)
    assert {r["protocol"] for r in rows} == {"opcua"} and {"client", "server"} <= {r["role"] for r in rows}
