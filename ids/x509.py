"""X.509 certificates seen on the wire (OPC UA secure channels and services, TLS handshakes) decoded with
`cryptography` into ECS `x509` fields plus SHA-1 and SHA-256 thumbprints; shared by the protocol sessions
and the certificate checks in ids/detect/auth.

Decoding is cached by certificate bytes (a device presents the same certificate on every connection) and
never raises: a certificate that does not parse yields {"error": ...} so the event still says one was
there. Judging certificates (expiry, weak keys, self-signed) belongs to ids/detect/auth.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import warnings
from collections import OrderedDict

from .lazy import lazy

# cryptography loads when a certificate is decoded, not for every run (about 30 ms of start-up)
x509 = lazy("cryptography.x509")
dsa = lazy("cryptography.hazmat.primitives.asymmetric.dsa")
ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")
ed448 = lazy("cryptography.hazmat.primitives.asymmetric.ed448")
ed25519 = lazy("cryptography.hazmat.primitives.asymmetric.ed25519")
rsa = lazy("cryptography.hazmat.primitives.asymmetric.rsa")

MAX_CHAIN = 8
_CACHE: "OrderedDict[bytes, dict]" = OrderedDict()
_CACHE_MAX = 4096  # distinct certificates remembered (and their DER, for chain checks)
_BY_SHA256: dict[str, bytes] = {}

_NAME_KEYS: tuple = ()  # ((NameOID, ECS key), ...), made at the first certificate (_name_keys)


def _name_keys() -> tuple:
    global _NAME_KEYS
    if not _NAME_KEYS:
        n = x509.oid.NameOID
        _NAME_KEYS = ((n.COMMON_NAME, "common_name"), (n.ORGANIZATION_NAME, "organization"),
                      (n.ORGANIZATIONAL_UNIT_NAME, "organizational_unit"), (n.COUNTRY_NAME, "country"),
                      (n.STATE_OR_PROVINCE_NAME, "state_or_province"), (n.LOCALITY_NAME, "locality"))
    return _NAME_KEYS


def split_chain(blob: bytes) -> list[bytes]:
    """A SenderCertificate may be a chain: DER certificates back to back (OPC 10000-6 6.7.2.3). Split on
    the outer SEQUENCE lengths; whatever does not parse as one is returned as one trailing piece."""
    out, off, n = [], 0, len(blob)
    while off < n and len(out) < MAX_CHAIN:
        if blob[off] != 0x30 or off + 2 > n:
            out.append(blob[off:])
            break
        ln = blob[off + 1]
        hdr = 2
        if ln & 0x80:
            k = ln & 0x7F
            if k == 0 or k > 4 or off + 2 + k > n:
                out.append(blob[off:])
                break
            ln = int.from_bytes(blob[off + 2:off + 2 + k], "big")
            hdr = 2 + k
        end = off + hdr + ln
        if end > n:
            out.append(blob[off:])
            break
        out.append(blob[off:end])
        off = end
    return out


def _name(name: x509.Name) -> dict:
    d: dict = {"distinguished_name": name.rfc4514_string()}
    for oid, key in _name_keys():
        vals = [a.value for a in name.get_attributes_for_oid(oid)]
        if vals:
            d[key] = [v if isinstance(v, str) else v.decode("utf-8", "replace") for v in vals]
    return d


def _key(cert: x509.Certificate) -> tuple[str, int | None, dict]:
    try:
        key = cert.public_key()
    except Exception:  # unsupported or broken key: still describe the rest
        return "unknown", None, {}
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, {"public_key_exponent": key.public_numbers().e}
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size, {"public_key_curve": key.curve.name}
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, {}
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, {}
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, {}
    return type(key).__name__, None, {}


#: signature algorithms by OID that the cryptography package calls "Unknown OID" (OIW, RFC 3279)
_OLD_OIDS = {"1.3.14.3.2.29": "SHA1-RSA", "1.3.14.3.2.27": "SHA1-DSA", "1.3.14.3.2.3": "MD5-RSA",
             "1.3.14.3.2.15": "SHA-RSA"}


def _sig_name(cert: x509.Certificate) -> str:
    """ECS writes e.g. SHA256-RSA; map the OID's name (sha256WithRSAEncryption) to that form."""
    try:
        h = cert.signature_hash_algorithm
    except Exception:
        h = None
    dotted = cert.signature_algorithm_oid.dotted_string
    if dotted in _OLD_OIDS:  # OIW-era OIDs the cryptography package does not name
        return _OLD_OIDS[dotted]
    oid_name = getattr(cert.signature_algorithm_oid, "_name", None)
    if not oid_name or oid_name == "Unknown OID":
        oid_name = dotted
    low = oid_name.lower()
    kind = "RSA" if "rsa" in low else "ECDSA" if "ecdsa" in low else "DSA" if "dsa" in low else None
    if h is not None and kind:
        return f"{h.name.upper()}-{kind}"
    return oid_name


#: When a list: every certificate described is also appended here. A `--workers` worker ships them to the
#: process that runs the certificate checks, which describes them too (der_by_sha256 must find the bytes there).
JOURNAL: list | None = None


def describe(der: bytes) -> dict:
    """One DER certificate -> {"x509": {...ECS...}, "hash": {"sha1", "sha256"}} (or a parse error)."""
    if JOURNAL is not None:
        JOURNAL.append(der)
    hit = _CACHE.get(der)
    if hit is not None:
        _CACHE.move_to_end(der)
        return hit
    doc: dict = {"hash": {"sha1": hashlib.sha1(der).hexdigest().upper(),
                          "sha256": hashlib.sha256(der).hexdigest().upper()}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. negative serial numbers: decoded all the same
            cert = x509.load_der_x509_certificate(der)
            cert.serial_number
        algo, size, extra = _key(cert)
        x: dict = {
            "version_number": str(cert.version.value + 1),
            "serial_number": format(cert.serial_number, "X"),
            "subject": _name(cert.subject),
            "issuer": _name(cert.issuer),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "public_key_algorithm": algo,
            "signature_algorithm": _sig_name(cert),
        }
        if size is not None:
            x["public_key_size"] = size
        x.update(extra)
        try:
            san = cert.extensions.get_extension_for_oid(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
            # ECS lists plain values (no "DNS:" prefixes); URIs carry their scheme (urn:, opc.tcp:)
            names = [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
            names += [str(v) for v in san.get_values_for_type(x509.DNSName)]
            names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
            if names:
                x["alternative_names"] = names
        except x509.ExtensionNotFound:
            pass
        except Exception:
            doc["error"] = "bad_subject_alternative_name"
        doc["x509"] = x
        doc["self_signed"] = cert.subject == cert.issuer
    except Exception as e:  # noqa: BLE001 - any malformed certificate is data, not a crash
        doc["error"] = f"unparsable_certificate: {type(e).__name__}"
    _CACHE[der] = doc
    _BY_SHA256[doc["hash"]["sha256"]] = der
    if len(_CACHE) > _CACHE_MAX:
        old, od = _CACHE.popitem(last=False)
        _BY_SHA256.pop(od["hash"]["sha256"], None)
    return doc


def der_by_sha256(sha256_hex: str) -> bytes | None:
    """The DER of a certificate described recently (events carry descriptions; the checks that verify
    signatures need the bytes). Bounded like the description cache; detectors run right after emission."""
    return _BY_SHA256.get(sha256_hex.upper())


def describe_chain(blob: bytes) -> dict:
    """Leaf described in full; any further certificates of a chain under `chain` (same shape)."""
    parts = split_chain(blob)
    doc = dict(describe(parts[0])) if parts else {"error": "empty"}
    if len(parts) > 1:
        doc["chain"] = [describe(p) for p in parts[1:]]
    return doc


def leaf_sha1(blob: bytes) -> bytes:
    parts = split_chain(blob)
    return hashlib.sha1(parts[0] if parts else blob).digest()


# ---------------------------------------------------------------------------------------------- for checks

def load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - whatever the library raises on hostile DER means "no certificate"
        return None


def key_info(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    """(algorithm, size in bits, curve name) of the certificate's public key."""
    algo, size, extra = _key(cert)
    return algo, size, extra.get("public_key_curve")


def signature_algorithm(cert: x509.Certificate) -> str:
    return _sig_name(cert)


def san_uris(cert: x509.Certificate) -> list[str]:
    """Subject alternative name URIs: where an OPC UA certificate carries its ApplicationUri."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # noqa: BLE001 - absent, duplicated (DuplicateExtension) or undecodable: no URIs
        return []
    return [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def uris_in(alternative_names) -> list[str]:
    """The URIs among a description's plain alternative_names (DNS names hold no ':', IP addresses parse
    as such): where an OPC UA certificate carries its ApplicationUri."""
    out = []
    for a in alternative_names or ():
        if _SCHEME.match(a):
            try:
                ipaddress.ip_address(a)
            except ValueError:
                out.append(a)
    return out


def cert_summary(subject: dict, issuer: dict, not_after, sha256, serial) -> dict:
    """The few facts of a certificate an asset inventory lists: subject and issuer names, expiry, digest."""
    def name(n: dict):
        cn = n.get("common_name")
        if isinstance(cn, list):
            cn = cn[0] if cn else None
        return cn or n.get("distinguished_name")
    return {"subject": name(subject), "issuer": name(issuer), "not_after": not_after, "sha256": sha256,
            "serial": serial}
