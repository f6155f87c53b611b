"""TLS handshake metadata (RFC 5246, RFC 8446): hellos, certificates (TLS <= 1.2), JA3/JA3S; MQTT over TLS
on 8883 and TLS found by probing elsewhere."""
from .session import TLS, TlsSession

__all__ = ["TLS", "TlsSession"]
