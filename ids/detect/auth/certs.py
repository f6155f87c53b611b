"""Certificate checks: chain to a trusted CA (intermediates sent on the wire included), signatures,
validity, key strength, signature algorithm, self-signed, revocation by CRL. Pure functions over
`cryptography` objects; the detector in this package turns findings into alerts, `otids certs` into a table.

A check that cannot be made (no trust store configured) says so as an `info` finding: never a silent pass.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError, SourceLocation
from ...lazy import lazy
from ...x509 import key_info, signature_algorithm

# cryptography loads when a certificate is checked, not for every run
x509 = lazy("cryptography.x509")
_exceptions = lazy("cryptography.exceptions")
padding = lazy("cryptography.hazmat.primitives.asymmetric.padding")
rsa = lazy("cryptography.hazmat.primitives.asymmetric.rsa")
ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")
dsa = lazy("cryptography.hazmat.primitives.asymmetric.dsa")
_hashes = lazy("cryptography.hazmat.primitives.hashes")

#: Signature hashes considered broken for device authentication (MD5, SHA-1; OPC UA Basic128Rsa15 and
#: Basic256 policies are deprecated for relying on SHA-1: OPC 10000-7).
WEAK_HASHES = {"md5", "sha1", "md2", "md4"}
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256


@dataclass(frozen=True, order=True)
class Finding:
    check: str  # stable name: untrusted, bad_signature, expired, not_yet_valid, expiring_soon, ...
    severity: str  # info | low | medium | high | critical
    message: str


@dataclass
class CheckPolicy:
    expiry_warning_days: int = 30
    require_ca_issued: bool = True
    min_rsa_bits: int = MIN_RSA_BITS
    site: bool = True  # False: no site policy was given, these are defaults (posture findings stay low)


class TrustStore:
    """A directory of CA certificates (PEM or DER: .pem .crt .cer .der) and CRLs (.crl, PEM or DER)."""

    def __init__(self, cas: list[x509.Certificate] | None = None, crls: list[x509.CertificateRevocationList] | None = None,
                 source: str | None = None):
        self.cas = cas or []
        self.crls = crls or []
        self.source = source
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for c in self.cas:
            self._by_subject.setdefault(c.subject.public_bytes(), []).append(c)

    @classmethod
    def load(cls, directory: str) -> "TrustStore":
        d = Path(directory)
        if not d.is_dir():
            raise ConfigError("trust store is not a directory", SourceLocation(directory))
        cas, crls = [], []
        for f in sorted(d.iterdir()):
            suffix = f.suffix.lower()
            if suffix not in (".pem", ".crt", ".cer", ".der", ".crl"):
                continue
            data = f.read_bytes()
            try:
                if suffix == ".crl":
                    crls.append(x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data))
                elif b"-----BEGIN" in data:
                    cas.extend(x509.load_pem_x509_certificates(data))
                else:
                    cas.append(x509.load_der_x509_certificate(data))
            except ValueError as e:
                raise ConfigError(f"not a valid {'CRL' if suffix == '.crl' else 'certificate'}: {e}",
                                  SourceLocation(str(f))) from None
        return cls(cas, crls, directory)

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        return self._by_subject.get(cert.issuer.public_bytes(), [])

    def is_anchor(self, cert: x509.Certificate) -> bool:
        return any(c == cert for c in self._by_subject.get(cert.subject.public_bytes(), []))


def _days(d: dt.timedelta) -> str:
    """Days from the packet's time, at which validity is judged: not from today, as "N days ago" read."""
    return "1 day" if d.days == 1 else f"{d.days} days"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` names and signed `cert` (any key type cryptography supports)."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except _exceptions.InvalidSignature:
        return False
    except ValueError:
        # cryptography refuses legacy algorithms (SHA-1) here; weak signatures are reported by their own
        # check, so verify them directly rather than calling them forged.
        return cert.issuer == issuer.subject and _verify_legacy(cert, issuer)
    except Exception:  # noqa: BLE001 - unsupported algorithms must read as "not verified", never crash
        return False


def _verify_legacy(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:  # hostile certificates: an unsupported hash or an undecodable key reads as "not verified"
        h = cert.signature_hash_algorithm
        if h is None:
            return False
        key = issuer.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), h)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(h))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, h)
        else:
            return False
        return True
    except Exception:  # noqa: BLE001
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and signed_by(cert, cert)


def check_certificate(cert: x509.Certificate, sent_chain: list[x509.Certificate], store: TrustStore | None,
                      policy: CheckPolicy, now: dt.datetime | None = None) -> list[Finding]:
    """Every finding for one end-entity certificate; [] means every check passed. Certificates come from
    the wire: whatever the library raises on one (an unknown signature OID, a key it cannot load) is a
    finding, never an exception (found by fuzz/harnesses.py x509)."""
    try:
        return _check_certificate(cert, sent_chain, store, policy, now)
    except Exception as e:  # noqa: BLE001
        return [Finding("unparsable", "medium", f"certificate checks failed ({type(e).__name__}: {str(e)[:120]})")]


def _check_certificate(cert, sent_chain, store, policy, now) -> list[Finding]:
    now = now or _now()
    out: list[Finding] = []
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < nb:
        out.append(Finding("not_yet_valid", "high", f"not valid before {nb:%Y-%m-%d}"))
    elif now > na:
        out.append(Finding("expired", "high", f"expired {na:%Y-%m-%d} ({_days(now - na)} before the capture)"))
    elif (na - now).days < policy.expiry_warning_days:
        out.append(Finding("expiring_soon", "low", f"expires {na:%Y-%m-%d} ({_days(na - now)} after the capture)"))

    alg, size, _curve = key_info(cert)
    if alg == "RSA" and size is not None and size < policy.min_rsa_bits:
        out.append(Finding("weak_key", "high", f"RSA key of {size} bits (< {policy.min_rsa_bits})"))
    elif alg == "EC" and size is not None and size < MIN_EC_BITS:
        out.append(Finding("weak_key", "high", f"EC key of {size} bits (< {MIN_EC_BITS})"))
    elif alg == "DSA":
        out.append(Finding("weak_key", "medium", "DSA key"))

    try:
        h = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - an unknown signature algorithm is judged by the rest
        h = None
    if h is not None and h.name in WEAK_HASHES:
        out.append(Finding("weak_signature", "high", f"signed with {signature_algorithm(cert)}"))

    self_signed = is_self_signed(cert)
    if self_signed:
        if store is not None and store.is_anchor(cert):
            pass  # explicitly trusted (pinned) self-signed certificate
        elif policy.require_ca_issued and not policy.site:
            out.append(Finding("self_signed", "low", "self-signed (usual in OPC UA); no site policy given, so "
                                                     "whether CA-issued certificates are required is not known"))
        elif policy.require_ca_issued:
            out.append(Finding("self_signed", "high", "self-signed, but the site requires CA-issued certificates"))
        else:
            out.append(Finding("self_signed", "info", "self-signed"))
    elif cert.issuer == cert.subject:
        out.append(Finding("bad_signature", "critical", "claims to be self-signed but its signature does not verify"))

    if store is None or not store.cas:
        out.append(Finding("no_trust_store", "info", "no trust store configured: chain not verified"))
        return sorted(out)
    if not self_signed:
        out.extend(_chain(cert, sent_chain, store, now))
    out.extend(_revocation(cert, sent_chain, store, now))
    return sorted(out)


def _parse_time(s) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    except ValueError:
        return None


def check_description(x: dict, policy: CheckPolicy, now: dt.datetime, store: TrustStore | None = None) -> list[Finding]:
    """The checks that an ECS x509 description allows when the certificate's bytes are not at hand (a
    dissector that kept only the description): validity, key, signature algorithm, self-signed by name.
    Signatures, chain and revocation cannot be checked and an `unverified` finding says so."""
    out = [Finding("unverified", "info", "certificate bytes not available: signature, chain and revocation not checked")]
    nb, na = _parse_time(x.get("not_before")), _parse_time(x.get("not_after"))
    if nb is not None and now < nb:
        out.append(Finding("not_yet_valid", "high", f"not valid before {nb:%Y-%m-%d}"))
    elif na is not None and now > na:
        out.append(Finding("expired", "high", f"expired {na:%Y-%m-%d} ({_days(now - na)} before the capture)"))
    elif na is not None and (na - now).days < policy.expiry_warning_days:
        out.append(Finding("expiring_soon", "low", f"expires {na:%Y-%m-%d} ({_days(na - now)} after the capture)"))
    alg, size = str(x.get("public_key_algorithm") or ""), x.get("public_key_size")
    if alg.upper() == "RSA" and isinstance(size, int) and size < policy.min_rsa_bits:
        out.append(Finding("weak_key", "high", f"RSA key of {size} bits (< {policy.min_rsa_bits})"))
    elif alg.upper() in ("EC", "ECDSA") and isinstance(size, int) and size < MIN_EC_BITS:
        out.append(Finding("weak_key", "high", f"EC key of {size} bits (< {MIN_EC_BITS})"))
    elif alg.upper() == "DSA":
        out.append(Finding("weak_key", "medium", "DSA key"))
    sig = str(x.get("signature_algorithm") or "").lower().replace("-", "")
    if any(h in sig for h in WEAK_HASHES):
        out.append(Finding("weak_signature", "high", f"signed with {x.get('signature_algorithm')}"))
    subj = (x.get("subject") or {}).get("distinguished_name")
    if subj and subj == (x.get("issuer") or {}).get("distinguished_name"):
        if store is not None and any(c.subject.rfc4514_string() == subj for c in store.cas):
            pass
        elif policy.require_ca_issued and not policy.site:
            out.append(Finding("self_signed", "low", "self-signed (by its names); no site policy given, so whether "
                                                     "CA-issued certificates are required is not known"))
        elif policy.require_ca_issued:
            out.append(Finding("self_signed", "high", "self-signed (by its names), but the site requires CA-issued certificates"))
        else:
            out.append(Finding("self_signed", "info", "self-signed (by its names)"))
    if store is None or not store.cas:
        out.append(Finding("no_trust_store", "info", "no trust store configured: chain not verified"))
    return sorted(out)


def _chain(cert, sent, store: TrustStore, now) -> list[Finding]:
    """Walk issuer by issuer through the certificates sent on the wire to a trust anchor."""
    out: list[Finding] = []
    cur = cert
    seen = {cert.fingerprint(_sha256())}
    for _ in range(8):  # path length bound
        anchors = store.issuers_of(cur)
        for a in anchors:
            if signed_by(cur, a):
                if not (a.not_valid_before_utc <= now <= a.not_valid_after_utc):
                    out.append(Finding("ca_expired", "high", f"trusted CA {a.subject.rfc4514_string()} is outside its validity"))
                return out
        if anchors:
            return out + [Finding("bad_signature", "critical",
                                  f"signature does not verify with the trusted CA {anchors[0].subject.rfc4514_string()}")]
        nxt = [c for c in sent if c.subject == cur.issuer and c.fingerprint(_sha256()) not in seen]
        if not nxt:
            return out + [Finding("untrusted", "high",
                                  f"issuer {cur.issuer.rfc4514_string()} is not a trusted CA and was not sent in the chain")]
        inter = nxt[0]
        if not signed_by(cur, inter):
            return out + [Finding("bad_signature", "critical",
                                  f"signature does not verify with the sent issuer {inter.subject.rfc4514_string()}")]
        if not (inter.not_valid_before_utc <= now <= inter.not_valid_after_utc):
            out.append(Finding("ca_expired", "high", f"intermediate {inter.subject.rfc4514_string()} is outside its validity"))
        seen.add(inter.fingerprint(_sha256()))
        cur = inter
    return out + [Finding("untrusted", "high", "chain longer than 8 certificates")]


def _revocation(cert, sent, store: TrustStore, now) -> list[Finding]:
    out = []
    issuers = store.issuers_of(cert) + [c for c in sent if c.subject == cert.issuer]
    if not issuers:  # no issuer certificate to verify a CRL with; "untrusted" already says so
        return out
    for crl in store.crls:
        if crl.issuer != cert.issuer:
            continue
        if not any(_crl_signed_by(crl, i) for i in issuers):
            out.append(Finding("crl_unverified", "medium", "a CRL for this issuer does not verify with its certificate"))
            continue
        r = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if r is not None:
            out.append(Finding("revoked", "critical", f"revoked on {r.revocation_date_utc:%Y-%m-%d}"))
        nu = crl.next_update_utc
        if nu is not None and nu < now:
            out.append(Finding("crl_stale", "low", f"the issuer's CRL expired {nu:%Y-%m-%d}"))
    return out


def _crl_signed_by(crl, issuer) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())
    except Exception:  # noqa: BLE001 - unsupported key types read as unverified
        return False


def _sha256():
    return _hashes.SHA256()
