"""TLS handshake metadata (RFC 5246, RFC 8446): hellos, certificates (TLS <= 1.2), JA3/JA3S; MQTT over TLS
on 8883 and TLS found by probing elsewhere. Everything otids knows about the protocol lives in this folder,
declared once in `PROTOCOL`. Rules cannot name TLS yet (no keyword table)."""
from pathlib import Path

from ..spec import ProtocolSpec
from .anomalies import ANOMALIES
from .assets import tls_identity
from .config import TlsConfig
from .messages import TlsHandshake
from .session import TlsSession, probe

# No roles: the inventory names TLS peers tls_client / tls_server (its default for a protocol without roles).
PROTOCOL = ProtocolSpec(
    name="tls", transport="tcp", ports=(8883,), probe=probe, session=TlsSession, category="it",
    description="TLS handshakes: versions, ciphers, JA3/JA3S, certificates in clear (TLS <= 1.2)",
    records=(TlsHandshake,), dataset="otids.tls", config=TlsConfig, anomalies=ANOMALIES,
    fields=str(Path(__file__).with_name("fields.yml")), identity=tls_identity)
TLS = PROTOCOL  # the wave-1 name

__all__ = ["PROTOCOL", "TLS", "TlsSession"]
