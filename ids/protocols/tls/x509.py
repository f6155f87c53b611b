"""X.509 certificates from TLS Certificate messages -> ids.events.X509Cert (ECS x509.* fields), decoded with
`cryptography`. A certificate that does not decode yields its hashes and the error, never an exception.

The same certificates come back on every connection of a device, so decoded ones are cached by digest.
"""
from __future__ import annotations

import hashlib
import warnings

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from ...events import X509Cert

_NAME_KEYS = ((NameOID.COMMON_NAME, "common_name"), (NameOID.ORGANIZATION_NAME, "organization"),
              (NameOID.ORGANIZATIONAL_UNIT_NAME, "organizational_unit"), (NameOID.COUNTRY_NAME, "country"),
              (NameOID.LOCALITY_NAME, "locality"), (NameOID.STATE_OR_PROVINCE_NAME, "state_or_province"))
_CACHE: dict[bytes, X509Cert] = {}
CACHE_SIZE = 4096
_EPOCH_NS = 1_000_000_000


def _name(n: x509.Name) -> dict:
    d: dict = {}
    for oid, key in _NAME_KEYS:
        vals = [str(a.value) for a in n.get_attributes_for_oid(oid)]
        if vals:
            d[key] = vals
    d["distinguished_name"] = n.rfc4514_string()
    return d


def decode(der: bytes) -> X509Cert:
    digest = hashlib.sha256(der).digest()
    hit = _CACHE.get(digest)
    if hit is not None:
        return hit
    if len(_CACHE) >= CACHE_SIZE:
        _CACHE.clear()
    cert = _CACHE[digest] = _decode(der, digest.hex())
    return cert


def _decode(der: bytes, sha256: str) -> X509Cert:
    sha1 = hashlib.sha1(der).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. negative serial numbers: decoded, flagged below
            c = x509.load_der_x509_certificate(der)
            serial = c.serial_number
            fields = {
                "version_number": str(c.version.value + 1),
                "serial_number": format(serial, "X") if serial >= 0 else "-" + format(-serial, "X"),
                "subject": _name(c.subject),
                "issuer": _name(c.issuer),
                "not_before": int(c.not_valid_before_utc.timestamp()) * _EPOCH_NS,
                "not_after": int(c.not_valid_after_utc.timestamp()) * _EPOCH_NS,
                "signature_algorithm": getattr(c.signature_algorithm_oid, "_name", None)
                or c.signature_algorithm_oid.dotted_string,
            }
            fields.update(_key(c))
            try:
                san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                fields["alternative_names"] = tuple(str(g.value) for g in san)
            except x509.ExtensionNotFound:
                pass
            try:
                fields["is_ca"] = c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                pass
        return X509Cert(sha256, sha1, **fields)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a property of the input, not a bug
        return X509Cert(sha256, sha1, error=f"{type(e).__name__}: {e}"[:200])


def _key(c: x509.Certificate) -> dict:
    try:
        k = c.public_key()
    except Exception:  # noqa: BLE001 - unsupported key type
        return {"public_key_algorithm": c.public_key_algorithm_oid._name
                if hasattr(c, "public_key_algorithm_oid") else None}
    if isinstance(k, rsa.RSAPublicKey):
        return {"public_key_algorithm": "RSA", "public_key_size": k.key_size,
                "public_key_exponent": k.public_numbers().e}
    if isinstance(k, ec.EllipticCurvePublicKey):
        return {"public_key_algorithm": "EC", "public_key_size": k.key_size, "public_key_curve": k.curve.name}
    if isinstance(k, dsa.DSAPublicKey):
        return {"public_key_algorithm": "DSA", "public_key_size": k.key_size}
    if isinstance(k, ed25519.Ed25519PublicKey):
        return {"public_key_algorithm": "Ed25519", "public_key_size": 256}
    if isinstance(k, ed448.Ed448PublicKey):
        return {"public_key_algorithm": "Ed448", "public_key_size": 456}
    return {"public_key_algorithm": type(k).__name__}
