"""X.509 certificates seen on the wire -> ECS `x509.*` fields, with `cryptography` doing all the work.

Shared by the protocol sessions that carry certificates (OPC UA secure channels and services, TLS
handshakes) and by the certificate checks in ids/detect/auth. Decoding never raises: a certificate that
does not parse yields {"parse_error": "..."} so the event still says one was there.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID


def load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, TypeError):
        return None


def split_chain(blob: bytes) -> list[bytes]:
    """OPC UA sends a chain as concatenated DER certificates (Part 6, 6.2.3): split on the outer SEQUENCE
    lengths. Anything that does not frame as DER ends the walk (the remainder is returned as one item)."""
    out, off, n = [], 0, len(blob)
    while off < n:
        if n - off < 4 or blob[off] != 0x30:
            out.append(blob[off:])
            break
        ln = blob[off + 1]
        if ln < 0x80:
            hl, body = 2, ln
        else:
            k = ln & 0x7F
            if k == 0 or k > 4 or off + 2 + k > n:
                out.append(blob[off:])
                break
            hl, body = 2 + k, int.from_bytes(blob[off + 2:off + 2 + k], "big")
        end = off + hl + body
        if end > n:
            out.append(blob[off:])
            break
        out.append(blob[off:end])
        off = end
    return out


def _cn(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _name_doc(name: x509.Name) -> dict:
    d = {"distinguished_name": name.rfc4514_string()}
    for key, oid in (("common_name", NameOID.COMMON_NAME), ("organization", NameOID.ORGANIZATION_NAME),
                     ("organizational_unit", NameOID.ORGANIZATIONAL_UNIT_NAME), ("country", NameOID.COUNTRY_NAME),
                     ("locality", NameOID.LOCALITY_NAME), ("state_or_province", NameOID.STATE_OR_PROVINCE_NAME)):
        vals = [str(a.value) for a in name.get_attributes_for_oid(oid)]
        if vals:
            d[key] = vals  # ECS: these are arrays
    return d


def key_info(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    """(algorithm, size in bits, curve name)."""
    try:
        k = cert.public_key()
    except (ValueError, TypeError):  # unsupported key type
        return ("unknown", None, None)
    if isinstance(k, rsa.RSAPublicKey):
        return ("RSA", k.key_size, None)
    if isinstance(k, ec.EllipticCurvePublicKey):
        return ("EC", k.curve.key_size, k.curve.name)
    if isinstance(k, dsa.DSAPublicKey):
        return ("DSA", k.key_size, None)
    if isinstance(k, ed25519.Ed25519PublicKey):
        return ("Ed25519", 256, None)
    if isinstance(k, ed448.Ed448PublicKey):
        return ("Ed448", 456, None)
    return (type(k).__name__, None, None)


def signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return getattr(oid, "_name", None) or oid.dotted_string


def alternative_names(cert: x509.Certificate) -> dict[str, list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    except ValueError:
        return {"invalid": ["unparseable subjectAltName"]}
    out: dict[str, list[str]] = {}
    for kind, cls in (("uri", x509.UniformResourceIdentifier), ("dns", x509.DNSName), ("ip", x509.IPAddress),
                      ("email", x509.RFC822Name)):
        vals = [str(v) for v in san.get_values_for_type(cls)]
        if vals:
            out[kind] = vals
    return out


def _ts(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


@lru_cache(maxsize=1024)
def fields(der: bytes) -> dict:
    """ECS x509 fields of one DER certificate (cached: devices resend the same certificate constantly)."""
    h = {"sha1": hashlib.sha1(der).hexdigest(), "sha256": hashlib.sha256(der).hexdigest()}
    cert = load(der)
    if cert is None:
        return {"hash": h, "parse_error": "not a DER X.509 certificate"}
    alg, size, curve = key_info(cert)
    d = {
        "version_number": str(cert.version.value + 1),
        "serial_number": format(cert.serial_number, "X"),
        "subject": _name_doc(cert.subject),
        "issuer": _name_doc(cert.issuer),
        "not_before": _ts(cert.not_valid_before_utc),
        "not_after": _ts(cert.not_valid_after_utc),
        "public_key_algorithm": alg,
        "signature_algorithm": signature_algorithm(cert),
        "hash": h,
    }
    if size is not None:
        d["public_key_size"] = size
    if curve:
        d["public_key_curve"] = curve
    san = alternative_names(cert)
    if san:
        d["alternative_names"] = [v for vals in san.values() for v in vals]
        if "uri" in san:
            d["san_uris"] = san["uri"]  # custom: OPC UA ApplicationUri lives here
    return d


def thumbprint_sha1(der: bytes) -> str:
    """OPC UA thumbprints are SHA-1 of the DER certificate (Part 6, 6.7.2)."""
    return hashlib.sha1(der).hexdigest()
