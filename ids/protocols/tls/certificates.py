"""X.509 certificates from TLS Certificate messages -> ids.events.X509Cert, through the shared decoder in
ids/x509.py so TLS and OPC UA write the same ECS values (signature algorithm, key, names) for the same
certificate. A certificate that does not decode yields its hashes and the error, never an exception.
"""
from __future__ import annotations

from ...lazy import lazy

from ... import x509 as shared
from .messages import X509Cert

cx = lazy("cryptography.x509")  # loaded with the first certificate, not for every run

_NS = 1_000_000_000


def decode(der: bytes) -> X509Cert:
    d = shared.describe(der)  # cached by the shared decoder
    h = d["hash"]
    if "x509" not in d:
        return X509Cert(h["sha256"], h["sha1"], error=d.get("error", "unparsable certificate"))
    x = d["x509"]
    cert = shared.load(der)
    is_ca = before = after = None
    error = d.get("error")
    if cert is not None:
        try:
            is_ca = cert.extensions.get_extension_for_class(cx.BasicConstraints).value.ca
        except cx.ExtensionNotFound:
            pass
        except Exception as e:  # noqa: BLE001 - e.g. DuplicateExtension: the certificate is still described
            error = error or f"bad_extensions: {type(e).__name__}"
        try:
            before = int(cert.not_valid_before_utc.timestamp()) * _NS
            after = int(cert.not_valid_after_utc.timestamp()) * _NS
        except Exception:  # noqa: BLE001
            pass
    return X509Cert(
        h["sha256"], h["sha1"], x.get("version_number"), x.get("serial_number"), x.get("subject"), x.get("issuer"),
        before, after,
        x.get("signature_algorithm"), x.get("public_key_algorithm"), x.get("public_key_size"),
        x.get("public_key_curve"), x.get("public_key_exponent"), tuple(x.get("alternative_names", ())), is_ca,
        error)
