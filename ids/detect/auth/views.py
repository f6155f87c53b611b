"""What the authentication checks read from events, in one place: the certificates an event carries (OPC UA
secure channels and services, TLS handshakes), an MQTT CONNECT exchange, a TLS handshake's version and
identity visibility. The detector (detector.py) and `otids certs` (ids/commands/auth.py) use nothing else.

Everything is read from the typed records (OpcuaEvent, MqttExchange, TlsHandshake): the record is the
contract between a dissector and the detectors, and no document is built or re-parsed here.
"""
from __future__ import annotations

from typing import NamedTuple

from ... import x509 as _x509
from ...protocols.mqtt.consts import reason_name
from ...protocols.tls.consts import version_text


class SeenCert(NamedTuple):
    """One certificate as presented on the wire, in ids.x509.describe_chain() shape (`hash`, `x509`,
    `self_signed`, `chain`, or `error`)."""

    protocol: str  # opcua | tls
    role: str  # client | server | user | endpoint
    doc: dict
    ip: str  # address of the party presenting it (client or server of the flow)
    port: int
    claimed_uri: str | None = None  # OPC UA ApplicationUri claimed next to it (CreateSession, endpoints)
    application: str | None = None  # what runs inside TLS (mqtt), when known


# ---------------------------------------------------------------------------------------------- OPC UA

def _server_app_uri(resp: dict | None) -> str | None:
    if not resp:
        return None
    eps = resp.get("server_endpoints") or resp.get("endpoints")
    if eps and isinstance(eps[0], dict):
        return (eps[0].get("server") or {}).get("application_uri")
    return None


def opcua_certificates(ev) -> list[SeenCert]:
    certs = ev.certificates
    if not certs:
        return []
    f = ev.flow
    out = []
    client_uri = ev.application_uri if ev.service == "CreateSession" else None
    server_uri = _server_app_uri(ev.response) if ev.service in ("CreateSession", "GetEndpoints") else None
    for role, c in certs.items():
        docs = c if isinstance(c, list) else [c]
        at_client = role in ("client", "user")
        for d in docs:
            out.append(SeenCert("opcua", role, d, f.client_ip if at_client else f.server_ip,
                                f.client_port if at_client else f.server_port,
                                client_uri if role == "client" else server_uri if role == "server" else None))
    return out


# ---------------------------------------------------------------------------------------------- MQTT

class MqttConnect(NamedTuple):
    client_id: str | None
    username: str | None
    password: bool  # the password flag (the password itself is never read)
    return_code: int | None  # CONNACK return/reason code; None when no CONNACK was seen
    reason: str | None
    keepalive: int | None
    protocol_version: int | None


def mqtt_label(ev) -> str | None:
    """The exchange's first message type (connect, publish, disconnect ...) without building a document."""
    return getattr(ev, "label", None)


def mqtt_connect(ev) -> MqttConnect | None:
    """The CONNECT (+CONNACK) of an exchange, or None when the exchange is something else."""
    if mqtt_label(ev) != "connect":
        return None
    c = ev.messages[0]
    v = ev.protocol_version
    ack = next((m for m in ev.messages if m.type == "connack"), None)
    rc = getattr(ack, "return_code", None)
    if c.doc_kind != "connect":  # a CONNECT too large to parse: only its size is known
        return MqttConnect(None, None, False, rc, reason_name(rc, 2, v) if rc is not None else None, None, v or None)
    return MqttConnect(c.client_id, c.username, bool(c.flags & 0x40) if c.flags is not None else False,
                       rc, reason_name(rc, 2, v) if rc is not None else None, c.keepalive,
                       v or c.protocol_version)


# ---------------------------------------------------------------------------------------------- TLS

class TlsHandshake(NamedTuple):
    version: str | None  # "1.2", "1.3" (tls.version)
    identity_observable: bool | None  # otids.tls.client_identity_observable
    established: bool | None
    certificate_requested: bool | None
    application: str | None
    client: list  # [leaf, intermediates...] in describe() shape
    server: list


def _side(certs: tuple) -> list:
    """[leaf, intermediates...] of one side's X509Cert records, in describe() shape (the full description
    when the DER was seen, else what the record says)."""
    if not certs or not certs[0].sha256:
        return []
    leaf = certs[0]
    der = _x509.der_by_sha256(leaf.sha256)
    if der is not None:
        out = [_x509.describe(der)]
    else:
        out = [{"hash": {"sha256": leaf.sha256.upper(), "sha1": leaf.sha1.upper()}, "x509": leaf.to_doc()}]
    for c in certs[1:]:
        if not c.sha256:
            continue
        der = _x509.der_by_sha256(c.sha256)
        if der is not None:
            out.append(_x509.describe(der))
        else:
            out.append({"hash": {"sha256": c.sha256.upper()},
                        "x509": {"subject": {"distinguished_name": (c.subject or {}).get("distinguished_name")},
                                 "issuer": {"distinguished_name": (c.issuer or {}).get("distinguished_name")}}})
    return out


def tls_handshake(ev) -> TlsHandshake:
    v = ev.version_code
    return TlsHandshake(version_text(v)[1] if v is not None else None, ev.identity_observable, ev.established,
                        ev.certificate_requested, ev.application or None,
                        _side(ev.client_certs), _side(ev.server_certs))


def as_chain_doc(chain: list) -> dict | None:
    """[leaf, intermediates...] -> one describe_chain()-shaped document."""
    if not chain:
        return None
    leaf = dict(chain[0])
    if len(chain) > 1:
        leaf["chain"] = list(chain[1:])
    return leaf


def tls_certificates(ev, hs: TlsHandshake | None = None) -> list[SeenCert]:
    hs = hs or tls_handshake(ev)
    f = ev.flow
    out = []
    for role, chain, ip, port in (("client", hs.client, f.client_ip, f.client_port),
                                  ("server", hs.server, f.server_ip, f.server_port)):
        d = as_chain_doc(chain)
        if d is not None:
            out.append(SeenCert("tls", role, d, ip, port, None, hs.application))
    return out


def certificates_of(ev) -> list[SeenCert]:
    ds = getattr(ev, "dataset", None)
    if ds == "otids.opcua":
        return opcua_certificates(ev)
    if ds == "otids.tls":
        return tls_certificates(ev)
    return []
