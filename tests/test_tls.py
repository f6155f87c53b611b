"""TLS handshake metadata: unit tests on crafted records, then captures - the corpus TLS traces
(zeek/Traces/tls/client-certificate.pcap, MQTT-Short-Connect TLS 1.2/1.3) and our mosquitto TLS 1.2/1.3
capture. References: tshark 4.0's own TLS reassembly (certificates, JA3/JA3S) and the certificates the
capture script generated (pcaps/mqtt-tls-certs)."""
from __future__ import annotations

import hashlib
import subprocess
import struct

import pytest
from cryptography import x509

from conftest import CORPUS, PCAPS, need, need_tool
from ids.flow.context import SessionContext
from ids.config import Config
from ids.protocols.tls.config import TlsConfig
from ids.events import FlowContext
from ids.pipeline import analyze
from ids.protocols.tls.parser import parse_certificate, parse_client_hello
from ids.protocols.tls.session import TlsSession, probe

SHORT = CORPUS / "collections" / "MQTT-Short-Connect" / "TLS" / "captures"
ZEEK_TLS = CORPUS / "zeek" / "Traces" / "tls" / "client-certificate.pcap"


def rec(ctype: int, body: bytes, version=0x0303) -> bytes:
    return struct.pack(">BHH", ctype, version, len(body)) + body


def hs(htype: int, body: bytes) -> bytes:
    return bytes([htype]) + len(body).to_bytes(3, "big") + body


def client_hello(ciphers=(0x1301, 0xC02F), exts=b"", version=0x0303) -> bytes:
    cs = b"".join(struct.pack(">H", c) for c in ciphers)
    body = struct.pack(">H", version) + b"\x11" * 32 + b"\x00" + struct.pack(">H", len(cs)) + cs + b"\x01\x00"
    return body + (struct.pack(">H", len(exts)) + exts if exts else b"")


def ext(t: int, data: bytes) -> bytes:
    return struct.pack(">HH", t, len(data)) + data


# ---------------------------------------------------------------------------------------------- unit
def test_ja3_drops_grease_and_reads_sni_alpn_versions():
    sni = ext(0, struct.pack(">HBH", 12, 0, 9) + b"broker.io")
    alpn = ext(16, b"\x00\x05\x04mqtt")
    groups = ext(10, b"\x00\x06\x0a\x0a\x00\x1d\x00\x17")
    points = ext(11, b"\x01\x00")
    versions = ext(43, b"\x04\x3a\x3a\x03\x04")
    grease = ext(0x2A2A, b"")
    ch = parse_client_hello(client_hello((0x4A4A, 0x1301, 0xC02F), grease + sni + alpn + groups + points + versions))
    assert ch.ja3 == "771,4865-49199,0-16-10-11-43,29-23,0"
    assert ch.server_name == "broker.io" and ch.alpn == ("mqtt",) and ch.supported_versions == (0x0304,)


def test_client_hello_edges():
    assert parse_client_hello(client_hello()).ja3 == "771,4865-49199,,,"  # no extensions (allowed <= 1.2)
    assert parse_client_hello(client_hello()[:-1]) is None  # compression list cut short
    assert parse_client_hello(client_hello(exts=ext(0, b"\x00"))[:-1]) is None


def test_certificate_list_edges():
    certs = b"\x00\x00\x02ab" + b"\x00\x00\x01c"
    assert parse_certificate(len(certs).to_bytes(3, "big") + certs) == [b"ab", b"c"]
    assert parse_certificate((len(certs) + 1).to_bytes(3, "big") + certs) is None  # list length one over
    assert parse_certificate(b"\x00\x00\x00") == []  # empty: a client with no certificate


@pytest.mark.parametrize("raw,to_server,want", [
    (rec(22, hs(1, client_hello())), True, 1),
    (rec(22, hs(1, client_hello()))[:4], True, -1),
    (rec(22, hs(2, b"")), True, 0),  # a ServerHello to the server
    (rec(22, hs(2, b"\x03\x03")), False, 1),
    (rec(23, b"x"), True, 0),
    (b"\x16\x03\x05\x00\x10\x01", True, 0),  # record version 3.5
    (b"GET / HTTP/1.1\r\n", True, 0),
    (b"\x10\x2b\x00\x04MQTT", True, 0),
])
def test_probe(raw, to_server, want):
    assert probe(raw, to_server) == want


class _Flow:
    server_port = 8883

    def __init__(self):
        self.context = FlowContext(1, "tcp", "1:x", "10.0.0.1", 40000, None, "10.0.0.2", 8883, None, None, False)


class _Table:
    def __init__(self, **tls):
        self.config = Config().replace(tls=TlsConfig(**tls))
        self.events, self.detached = [], []
        self.emit = self.events.append

    def detach(self, flow, ts, reason):
        self.detached.append(reason)


def test_session_records_split_anywhere_and_fatal_alert_ends_it():
    t = _Table()
    s = TlsSession(SessionContext(t, _Flow()))
    data = rec(22, hs(1, client_hello(exts=ext(16, b"\x00\x05\x04mqtt"))))
    for i in range(len(data)):  # one byte per segment
        s.data(True, data[i:i + 1], i)
    sh = struct.pack(">H", 0x0303) + b"\x22" * 32 + b"\x00" + b"\xc0\x2f\x00"
    s.data(False, rec(22, hs(2, sh) + hs(13, b"\x01\x01\x00\x00\x00\x00")), 100)
    assert not t.events
    s.data(True, rec(21, b"\x02\x74"), 101)  # fatal certificate_required
    (ev,) = t.events
    d = ev.to_doc()
    assert d["otids"]["tls"]["alert"] == {"level": "fatal", "description": "certificate_required", "code": 116}
    assert d["tls"]["established"] is False and d["event"]["outcome"] == "failure"
    assert d["otids"]["tls"]["certificate_requested"] is True and d["otids"]["tls"]["application"] == "mqtt"
    assert d["tls"]["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_session_not_tls_detaches_and_bounds_hold():
    t = _Table()
    TlsSession(SessionContext(t, _Flow())).data(True, b"\x10\x2b\x00\x04MQTT\x04\xc2\x00\x3c", 1)
    assert t.detached and not t.events
    t = _Table(max_handshake_bytes=100)
    s = TlsSession(SessionContext(t, _Flow()))
    s.data(True, rec(22, hs(1, client_hello())), 1)
    s.data(False, rec(22, hs(11, b"\x00" * 200)), 2)  # a certificate message over the bound
    s.close(3)
    assert t.events[0].anomalies == ("handshake_too_large",)
    t = _Table(max_certificates=1)
    s = TlsSession(SessionContext(t, _Flow()))
    certs = b"\x00\x00\x01a" * 3
    s.data(False, rec(22, hs(11, len(certs).to_bytes(3, "big") + certs)), 1)
    s.close(2)
    ev = t.events[0]
    assert ev.anomalies == ("certificates_truncated",) and len(ev.server_certs) == 1
    assert ev.server_certs[0].error and ev.to_doc()["otids"]["tls"]["server_certificate_errors"]


def test_handshake_message_in_thousands_of_records_is_joined_once():
    """A 60 KB ClientHello cut into 4-byte handshake records (legal TLS): the session joined the held bytes
    with every record, 0.45 GB copied for one message (bench-hostile tls_small_records); now the records wait
    in a list until the message is whole, and the message parses as if it had come in one record."""
    t = _Table()
    s = TlsSession(SessionContext(t, _Flow()))
    body = client_hello(exts=ext(16, b"\x00\x05\x04mqtt") + ext(0xFFCE, b"\x00" * 60_000))
    msg = hs(1, body)
    recs = [rec(22, msg[i:i + 4]) for i in range(0, len(msg), 4)]
    for k, r in enumerate(recs[:-1]):
        s.data(True, r, k)
        assert len(s.hbuf[0]) <= 4, k  # held bytes never grow by concatenation while the message is open
    s.data(True, recs[-1], len(recs))
    assert s.ch is not None and s.ch.alpn == ("mqtt",) and not s.hbuf[0] and not s.hmore[0]


# ---------------------------------------------------------------------------------------------- captures
def _tshark(path, fields, extra=()):
    need_tool("tshark")
    out = subprocess.run(["tshark", "-r", str(path), *extra, "-T", "fields", *sum((["-e", f] for f in fields), [])],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def _tshark_certs(path, extra=()) -> dict[int, list[bytes]]:
    """Certificates per sending port, from tshark's own TLS reassembly."""
    out: dict[int, list[bytes]] = {}
    for port, certs in _tshark(path, ["tcp.srcport", "tls.handshake.certificate"],
                               ["-Y", "tls.handshake.type==11", *extra]):
        out.setdefault(int(port), []).extend(bytes.fromhex(c) for c in certs.split(",") if c)
    return out


def _check_cert(ours, der: bytes):
    ref = x509.load_der_x509_certificate(der)
    assert ours.sha256 == hashlib.sha256(der).hexdigest().upper() and ours.error is None
    assert ours.serial_number == format(ref.serial_number, "X")
    assert ours.subject["distinguished_name"] == ref.subject.rfc4514_string()
    assert ours.issuer["distinguished_name"] == ref.issuer.rfc4514_string()
    assert ours.not_after // 10**9 == int(ref.not_valid_after_utc.timestamp())


def test_zeek_client_certificate_trace_both_chains_decoded():
    path = need(ZEEK_TLS)
    _, col = analyze([str(path)])
    (ev,) = [e for e in col.events if e.dataset == "otids.tls"]
    ref = _tshark_certs(path)
    assert [c.sha256 for c in ev.server_certs] == [hashlib.sha256(d).hexdigest().upper() for d in ref[443]]
    for ours, der in zip(ev.server_certs + ev.client_certs, ref[443] + ref[ev.flow.client_port]):
        _check_cert(ours, der)
    d = ev.to_doc()
    assert d["tls"]["version"] == "1.2" and d["tls"]["established"] is True
    assert d["tls"]["client"]["x509"]["subject"]["common_name"] == ["johanna@corelight.com"]
    assert d["tls"]["server"]["x509"]["subject"]["common_name"] == ["certauth.idrix.fr"]
    assert d["tls"]["server"]["x509"]["alternative_names"] == ["certauth.idrix.fr"]
    assert d["otids"]["tls"]["certificate_requested"] is True
    assert d["otids"]["tls"]["client_identity_observable"] is True
    (ja3,), (ja3s,) = [r for r in _tshark(path, ["tls.handshake.ja3"], ["-Y", "tls.handshake.type==1"])], \
        [r for r in _tshark(path, ["tls.handshake.ja3s"], ["-Y", "tls.handshake.type==2"])]
    assert d["tls"]["client"]["ja3"] == ja3[0] and d["tls"]["server"]["ja3s"] == ja3s[0]


@pytest.mark.parametrize("name", ["mqtt_tls12_ses_est.pcapng", "mqtt_short_con_tls12_ses_est.pcapng"])
def test_mqtt_short_connect_tls12_server_certificate(name):
    path = need(SHORT / "TLS_12" / name)
    _, col = analyze([str(path)])
    (ev,) = [e for e in col.events if e.dataset == "otids.tls"]
    ref = _tshark_certs(path)[8883]
    assert len(ev.server_certs) == len(ref) >= 1
    for ours, der in zip(ev.server_certs, ref):
        _check_cert(ours, der)
    d = ev.to_doc()
    assert d["tls"]["version"] == "1.2" and d["otids"]["tls"]["application"] == "mqtt"
    assert d["otids"]["tls"]["certificate_requested"] is False and "client_chain" not in d["otids"]["tls"]


@pytest.mark.parametrize("name", ["mqtt_tls13_ses_est.pcapng", "mqtt_short_con_tls13_ses_est.pcapng",
                                  "mqtt_tls13_ses_res.pcapng"])
def test_mqtt_short_connect_tls13_identity_not_observable(name):
    _, col = analyze([str(need(SHORT / "TLS_13" / name))])
    (ev,) = [e for e in col.events if e.dataset == "otids.tls"]
    d = ev.to_doc()
    assert d["tls"]["version"] == "1.3" and not ev.server_certs and not ev.client_certs
    assert d["otids"]["tls"]["client_identity_observable"] is False
    assert d["otids"]["tls"]["server_identity_observable"] is False
    assert "certificate_requested" not in d["otids"]["tls"]  # encrypted in 1.3: not guessed
    assert "x509" not in d["tls"].get("server", {}) and "x509" not in d["tls"].get("client", {})


def _our_certs() -> dict[str, x509.Certificate]:
    return {n: x509.load_pem_x509_certificate(need(PCAPS / "mqtt-tls-certs" / f"{n}.pem").read_bytes())
            for n in ("ca", "broker", "device-01")}


def test_our_mosquitto_tls12_client_certificates_decoded():
    from cryptography.hazmat.primitives.serialization import Encoding
    _, col = analyze([str(need(PCAPS / "mqtt-tls.pcap"))])
    evs = [e for e in col.events if e.dataset == "otids.tls"]
    assert len(evs) == 3
    ok12, ok13, refused = sorted(evs, key=lambda e: e.ts)
    certs = _our_certs()
    for ours, name in ((ok12.server_certs[0], "broker"), (ok12.client_certs[0], "device-01"),
                       (refused.server_certs[0], "broker")):
        _check_cert(ours, certs[name].public_bytes(Encoding.DER))
    d = ok12.to_doc()
    assert d["tls"]["version"] == "1.2" and d["tls"]["established"] is True
    assert d["tls"]["client"]["x509"]["subject"]["common_name"] == ["device-01"]
    assert d["tls"]["client"]["x509"]["public_key_algorithm"] == "EC"
    assert d["tls"]["client"]["x509"]["public_key_curve"] == "secp256r1"
    assert d["tls"]["server"]["x509"]["alternative_names"] == ["broker.otids.test", "127.0.0.5"]
    assert d["otids"]["tls"]["certificate_requested"] is True and d["otids"]["tls"]["application"] == "mqtt"
    # TLS 1.3 listener on 8884, an unmapped port: found by the probe, identity not observable.
    d13 = ok13.to_doc()
    assert ok13.flow.server_port == 8884 and d13["tls"]["version"] == "1.3" and d13["tls"]["established"]
    assert d13["otids"]["tls"]["client_identity_observable"] is False and not ok13.client_certs
    # The client without certificate: the broker's fatal alert in clear, no client chain.
    dr = refused.to_doc()
    assert dr["tls"]["established"] is False and not refused.client_certs
    assert dr["otids"]["tls"]["alert"]["level"] == "fatal"


def test_our_capture_ja3_agrees_with_tshark():
    path = need(PCAPS / "mqtt-tls.pcap")
    _, col = analyze([str(path)])
    ours = sorted((e.flow.client_port, e.to_doc()["tls"]["client"]["ja3"]) for e in col.events
                  if e.dataset == "otids.tls")
    ref = sorted((int(p), j) for p, j in _tshark(path, ["tcp.srcport", "tls.handshake.ja3"],
                                                  ["-d", "tcp.port==8884,tls", "-Y", "tls.handshake.type==1"]))
    assert ours == ref and len(ours) == 3
