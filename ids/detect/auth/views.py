"""What the authentication checks read from events, in one place: the certificates an event carries (OPC UA
secure channels and services, TLS handshakes), an MQTT CONNECT exchange, a TLS handshake's version and
identity visibility. The detector (detector.py) and `otids certs` (ids/commands/auth.py) use nothing else.

OPC UA is read from the typed OpcuaEvent. MQTT and TLS are read from their ECS documents (dataset otids.mqtt:
`mqtt.connect.*`, `mqtt.connack.*`; otids.tls: `tls.*`, `tls.client.x509.*`, `otids.tls.*`), which are the
published contract of those dissectors: these adapters are the one place to point at typed fields later.
Documents are built only for the few events that matter (CONNECT and DISCONNECT exchanges, handshakes).
"""
from __future__ import annotations

from typing import NamedTuple

from ... import x509 as _x509


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
    m = ev.to_doc().get("mqtt") or {}
    c = m.get("connect")
    if not isinstance(c, dict):
        return None
    flags = c.get("flags") or {}
    ack = m.get("connack") or {}
    return MqttConnect(c.get("client_id"), c.get("username"),
                       bool(flags.get("password")) if flags else "password" in c,
                       ack.get("return_code"), ack.get("reason"), c.get("keepalive"),
                       m.get("protocol_version") or c.get("protocol_version"))


# ---------------------------------------------------------------------------------------------- TLS

class TlsHandshake(NamedTuple):
    version: str | None  # "1.2", "1.3" (tls.version)
    identity_observable: bool | None  # otids.tls.client_identity_observable
    established: bool | None
    certificate_requested: bool | None
    application: str | None
    client: list  # [leaf, intermediates...] in describe() shape
    server: list


def _side(doc: dict, side: str, chain: list | None) -> list:
    t = (doc.get("tls") or {}).get(side) or {}
    h = t.get("hash") or {}
    sha = h.get("sha256")
    if not sha:
        return []
    out = []
    der = _x509.der_by_sha256(sha)
    if der is not None:
        out.append(_x509.describe(der))
    else:
        out.append({"hash": {k: str(v).upper() for k, v in h.items()}, "x509": t.get("x509") or {}})
    for c in (chain or [])[1:]:
        if not isinstance(c, dict) or not c.get("sha256"):
            continue
        der = _x509.der_by_sha256(c["sha256"])
        if der is not None:
            out.append(_x509.describe(der))
        else:
            out.append({"hash": {"sha256": str(c["sha256"]).upper()},
                        "x509": {"subject": {"distinguished_name": c.get("subject")},
                                 "issuer": {"distinguished_name": c.get("issuer")}}})
    return out


def tls_handshake(ev) -> TlsHandshake:
    doc = ev.to_doc()
    t = doc.get("tls") or {}
    o = (doc.get("otids") or {}).get("tls") or {}
    return TlsHandshake(t.get("version"), o.get("client_identity_observable"), t.get("established"),
                        o.get("certificate_requested"), o.get("application"),
                        _side(doc, "client", o.get("client_chain")), _side(doc, "server", o.get("server_chain")))


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
