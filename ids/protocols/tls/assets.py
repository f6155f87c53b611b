"""TLS asset facts: the leaf certificates a TLS <= 1.2 handshake carries in clear. Read by ids.assets."""
from __future__ import annotations

from ...units import rfc3339
from ...x509 import cert_summary
from .messages import TlsHandshake


def tls_identity(ev: TlsHandshake) -> list[tuple[str, str, object]]:
    """(side, "certificate", summary) for the leaf certificates a TLS <= 1.2 handshake carries in clear."""
    out: list[tuple[str, str, object]] = []
    for side, certs in (("client", ev.client_certs), ("server", ev.server_certs)):
        if certs:
            c = certs[0]
            out.append((side, "certificate", cert_summary(c.subject or {}, c.issuer or {},
                                                           rfc3339(c.not_after) if c.not_after else None,
                                                           c.sha256, c.serial_number)))
    return out
