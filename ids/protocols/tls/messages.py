"""TLS typed records: the cleartext part of a handshake, one `TlsHandshake` per handshake (dataset
`otids.tls`), with its hellos and decoded certificates. `to_doc()` hands the ECS rendering to ecs.py.
"""
from __future__ import annotations

from typing import NamedTuple

from ...events import FlowContext
from . import ecs as _ecs

# The cleartext part of a TLS handshake (any port; MQTT over TLS on 8883): hellos, and for TLS <= 1.2 the
# certificates and whether the server asked the client for one. TLS 1.3 encrypts everything after
# ServerHello, certificates included: the event says so (identity not observable) rather than guessing.


class X509Cert(NamedTuple):
    """One decoded certificate (ECS x509.* fields). `error` is set, and the rest mostly None, when the DER
    could not be decoded."""

    sha256: str
    sha1: str
    version_number: str | None = None
    serial_number: str | None = None  # upper-case hex, no separators (ECS)
    subject: dict | None = None  # common_name, organization, ... (lists of str) and distinguished_name
    issuer: dict | None = None
    not_before: int | None = None  # ns since the epoch
    not_after: int | None = None
    signature_algorithm: str | None = None
    public_key_algorithm: str | None = None
    public_key_size: int | None = None
    public_key_curve: str | None = None
    public_key_exponent: int | None = None
    alternative_names: tuple[str, ...] = ()
    is_ca: bool | None = None
    error: str | None = None

    def to_doc(self) -> dict:
        return _ecs.x509_doc(self)


class TlsClientHello(NamedTuple):
    version: int  # legacy_version (0x0303 for 1.2 and 1.3)
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]
    groups: tuple[int, ...]
    point_formats: tuple[int, ...]
    server_name: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    session_id: bytes
    ja3: str  # the JA3 string (GREASE removed); tls.client.ja3 is its MD5


class TlsServerHello(NamedTuple):
    version: int  # legacy_version
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int | None  # supported_versions extension (TLS 1.3)
    alpn: str | None
    session_id: bytes
    ja3s: str


class TlsHandshake(NamedTuple):
    """One TLS handshake (dataset `otids.tls`), emitted when it completes, fails or its flow ends."""

    ts: int  # ClientHello (or the first handshake record seen)
    flow: FlowContext
    client_hello: TlsClientHello | None
    server_hello: TlsServerHello | None
    server_certs: tuple  # X509Cert, leaf first (TLS <= 1.2 only)
    client_certs: tuple
    certificate_requested: bool | None  # CertificateRequest seen (TLS <= 1.2); None when encrypted (1.3)
    established: bool  # both sides switched to encrypted records
    resumed: bool  # abbreviated handshake (TLS <= 1.2 session resumption)
    alert: tuple | None  # (level, description) of a cleartext alert
    anomalies: tuple[str, ...]
    end_ts: int
    application: str | None = None  # what runs inside, when the port or ALPN says so (e.g. "mqtt")

    dataset = "otids.tls"
    protocol = "tls"
    label = "handshake"
    action = "handshake"

    @property
    def version_code(self) -> int | None:
        sh = self.server_hello
        if sh is None:
            return None
        return sh.selected_version or sh.version

    @property
    def identity_observable(self) -> bool | None:
        """Whether certificates travel in clear (TLS <= 1.2); None before a ServerHello decides."""
        v = self.version_code
        return None if v is None else v < 0x0304

    def to_doc(self) -> dict:
        return _ecs.handshake_doc(self)
