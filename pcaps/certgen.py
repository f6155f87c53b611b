"""Test PKI for otids's captures and tests: a root CA, an intermediate, and device certificates in the
variants the certificate checks must tell apart (valid, expired, not yet valid, self-signed, weak RSA key,
SHA-1 signature, wrong OPC UA ApplicationUri, revoked), all made with `cryptography`.

Used by the capture scripts in pcaps/ (asyncua, mosquitto) and by tests. Deterministic names and serials;
keys are fresh each run (and small where the variant allows) because key generation cannot be seeded.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        c, k = directory / f"{stem}.pem", directory / f"{stem}.key"
        c.write_bytes(self.pem)
        k.write_bytes(self.key_pem)
        return c, k


def _name(cn: str, org: str = "otids test plant") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_serial = [1000]


def _next_serial() -> int:
    _serial[0] += 1
    return _serial[0]


def issue(cn: str, issuer: Issued | None, *, ca: bool = False, key_size: int = 2048, hash_alg=hashes.SHA256(),
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          uris: tuple[str, ...] = (), dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
          client: bool = True, server: bool = True, key: rsa.RSAPrivateKey | None = None) -> Issued:
    """Issue a certificate signed by `issuer` (self-signed when None)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    subject = _name(cn)
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key()).serial_number(_next_serial())
         .not_valid_before(not_before or NOW - DAY).not_valid_after(not_after or NOW + 365 * DAY)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                          data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        eku = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    san: list = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if ips:
        import ipaddress
        san += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    signer = issuer.key if issuer else key
    if isinstance(hash_alg, hashes.SHA1):
        return Issued(_resign_sha1(b.sign(signer, hashes.SHA256()), signer), key)
    return Issued(b.sign(signer, hash_alg), key)


_ALG_SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSAEncryption, NULL params
_ALG_SHA1_RSA = bytes.fromhex("300d06092a864886f70d0101050500")  # sha1WithRSAEncryption, same length


def _resign_sha1(cert: x509.Certificate, signer: rsa.RSAPrivateKey) -> x509.Certificate:
    """cryptography no longer signs certificates with SHA-1, but field devices still present them: swap the
    algorithm identifier (same length) in the TBS and the outer structure and sign the TBS with SHA-1."""
    from cryptography.hazmat.primitives.asymmetric import padding
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    new_tbs = tbs.replace(_ALG_SHA256_RSA, _ALG_SHA1_RSA, 1)
    sig = signer.sign(new_tbs, padding.PKCS1v15(), hashes.SHA1())
    new = der.replace(tbs, new_tbs).replace(_ALG_SHA256_RSA, _ALG_SHA1_RSA).replace(cert.signature, sig)
    return x509.load_der_x509_certificate(new)


def crl(issuer: Issued, revoked: list[Issued], next_update: dt.datetime | None = None,
        last_update: dt.datetime | None = None) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
         .last_update(last_update or NOW - DAY).next_update(next_update or NOW + 30 * DAY))
    for r in revoked:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(r.cert.serial_number)
                                      .revocation_date(NOW - DAY).build())
    return b.sign(issuer.key, hashes.SHA256())


@dataclass
class Pki:
    root: Issued
    intermediate: Issued
    leaves: dict[str, Issued]
    revocations: x509.CertificateRevocationList

    def write_trust_store(self, directory: Path) -> Path:
        """Root CA and CRL into a trust-store directory (the intermediate is sent in chains, not trusted)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "root-ca.pem").write_bytes(self.root.pem)
        (directory / "intermediate.crl").write_bytes(self.revocations.public_bytes(serialization.Encoding.PEM))
        return directory


def make_pki(app_uri_base: str = "urn:otids:test") -> Pki:
    """Root -> intermediate -> devices. Leaf names say what is (deliberately) wrong with each."""
    root = issue("otids test root CA", None, ca=True, not_after=NOW + 3650 * DAY)
    inter = issue("otids test issuing CA", root, ca=True, not_after=NOW + 1825 * DAY)
    other_root = issue("someone else's CA", None, ca=True)
    leaves = {
        "valid": issue("device-valid", inter, uris=(f"{app_uri_base}:device-valid",), dns=("localhost",)),
        "expired": issue("device-expired", inter, uris=(f"{app_uri_base}:device-expired",),
                         not_before=NOW - 400 * DAY, not_after=NOW - 35 * DAY),
        "not_yet_valid": issue("device-future", inter, uris=(f"{app_uri_base}:device-future",),
                               not_before=NOW + 10 * DAY, not_after=NOW + 400 * DAY),
        "expiring": issue("device-expiring", inter, uris=(f"{app_uri_base}:device-expiring",),
                          not_after=NOW + 5 * DAY),
        "self_signed": issue("device-selfsigned", None, uris=(f"{app_uri_base}:device-selfsigned",)),
        "weak_key": issue("device-weakkey", inter, key_size=1024, uris=(f"{app_uri_base}:device-weakkey",)),
        "sha1": issue("device-sha1", inter, hash_alg=hashes.SHA1(), uris=(f"{app_uri_base}:device-sha1",)),
        "wrong_uri": issue("device-wronguri", inter, uris=("urn:somewhere:else",)),
        "revoked": issue("device-revoked", inter, uris=(f"{app_uri_base}:device-revoked",)),
        "untrusted": issue("device-untrusted", other_root, uris=(f"{app_uri_base}:device-untrusted",)),
    }
    return Pki(root, inter, leaves, crl(inter, [leaves["revoked"]]))
