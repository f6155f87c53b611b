"""TLS handshake metadata (RFC 5246, RFC 8446): hellos, certificates (TLS <= 1.2), JA3/JA3S; MQTT over TLS
on 8883 and TLS found by probing elsewhere. Everything otids knows about the protocol lives in this folder,
declared once in `PROTOCOL`."""
from pathlib import Path

from ..spec import ProtocolSpec
from .anomalies import ANOMALIES
from .assets import tls_identity
from .config import TlsConfig
from .messages import TlsHandshake
from .session import TlsSession, probe

PROTOCOL = ProtocolSpec(
    name="tls", transport="tcp", ports=(8883,), probe=probe, session=TlsSession, category="it",
    roles={"client": "tls_client", "server": "tls_server"},
    description="TLS handshakes: versions, ciphers, JA3/JA3S, certificates in clear (TLS <= 1.2)",
    records=(TlsHandshake,), dataset="otids.tls", config=TlsConfig, anomalies=ANOMALIES,
    fields=str(Path(__file__).with_name("fields.yml")), identity=tls_identity,
    # Parts TLS does not have yet, each with the reason (tests/test_protocols.py accepts nothing less):
    extra={"without": {"rules": "rules cannot name TLS documents yet (no keyword table)",
                       "ml": "handshakes are not exchanges the ML windows count",
                       "baseline": "the baseline learns TLS peers through assets and talkers only"}})
TLS = PROTOCOL  # the wave-1 name

__all__ = ["PROTOCOL", "TLS", "TlsSession"]
