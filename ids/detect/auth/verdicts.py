"""Verdicts on one presented certificate or identity: the certificate checks of certs.py run on the bytes
(or on the description when the bytes are gone), cached per certificate and hour of capture time, and the
registry's expectations (ApplicationUri, pinned thumbprints, issuing CA, TLS subjects). Shared by the
detector and `otids certs`, so an alert and the audit table always agree.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict

from ... import x509 as _x509
from ...units import capture_datetime
from .certs import CheckPolicy, Finding, TrustStore, check_certificate, check_description
from .registry import Registry

NS = 1_000_000_000
HOUR = 3600 * NS
_CACHE_MAX = 4096
_POOL_MAX = 256


def ts_datetime(ts_ns: int) -> dt.datetime:
    return capture_datetime(ts_ns)


class CertJudge:
    """Findings for a certificate document (ids.x509.describe_chain shape), judged at the capture time it
    was seen: an OPC UA session recorded last year is judged by last year's validity, not today's."""

    def __init__(self, store: TrustStore | None, policy: CheckPolicy):
        self.store = store
        self.policy = policy
        self._cache: OrderedDict[tuple, list[Finding]] = OrderedDict()
        # CA certificates seen in any chain on the wire: a peer that sends its intermediate with the OPN
        # but only its leaf in CreateSession is judged with it. Safe to pool: a chain still has to verify,
        # signature by signature, up to a trust anchor.
        self._pool: OrderedDict[bytes, object] = OrderedDict()

    def findings(self, doc: dict, ts_ns: int) -> list[Finding]:
        sha = (doc.get("hash") or {}).get("sha256", "")
        chain = doc.get("chain") or []
        key = (sha, tuple((c.get("hash") or {}).get("sha256", "") for c in chain), ts_ns // HOUR)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        out = self._judge(doc, chain, ts_datetime(ts_ns))
        self._cache[key] = out
        if len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)
        return out

    def _judge(self, doc: dict, chain: list, now: dt.datetime) -> list[Finding]:
        if doc.get("error"):
            return [Finding("unparsable", "medium", f"certificate does not parse ({doc['error']})")]
        der = _x509.der_by_sha256((doc.get("hash") or {}).get("sha256", ""))
        cert = _x509.load(der) if der is not None else None
        if cert is None:
            return check_description(doc.get("x509") or {}, self.policy, now, self.store)
        sent = []
        for c in chain:
            d = _x509.der_by_sha256((c.get("hash") or {}).get("sha256", ""))
            ci = _x509.load(d) if d is not None else None
            if ci is not None:
                sent.append(ci)
                if d not in self._pool:
                    self._pool[d] = ci
                    if len(self._pool) > _POOL_MAX:
                        self._pool.popitem(last=False)
        pooled = [c for c in self._pool.values() if c.subject == cert.issuer and c not in sent]
        return check_certificate(cert, sent + pooled, self.store, self.policy, now)


# ---------------------------------------------------------------------------------------------- identities

_SPLIT = re.compile(r"(?<!\\),")


def dn_key(dn: str | None) -> tuple:
    """An RFC 4514 name compared the way people write them: attribute order, case of the attribute types
    and spaces around separators do not matter."""
    if not dn:
        return ()
    parts = []
    for rdn in _SPLIT.split(dn):
        t, _, v = rdn.partition("=")
        parts.append((t.strip().upper(), v.strip()))
    return tuple(sorted(parts))


def opcua_identity(reg: Registry | None, ip: str, role: str, uris: set[str], sha256: str | None = None,
                   issuer_dn: str | None = None) -> tuple[list[Finding], str | None]:
    """Registry verdicts on an OPC UA application at `ip` claiming `uris` (certificate SAN URIs and the
    ApplicationUri it sent) with a certificate (sha256, issuer) when it presented one. Returns the findings
    and the name of the registry device it was matched to."""
    if reg is None or not reg.devices:
        return [], None
    out = []
    by_ip = reg.device_at(ip)
    by_uri = next((reg.by_app_uri[u] for u in sorted(uris) if u in reg.by_app_uri), None)
    dev = by_ip or by_uri
    if dev is None:
        what = f"ApplicationUri {', '.join(sorted(uris))}" if uris else "no ApplicationUri"
        out.append(Finding("unknown_device", "medium", f"OPC UA {role} at {ip} ({what}) is not in the device registry"))
        return out, None
    want = by_ip.opcua.application_uri if by_ip is not None else None
    if want and uris and want not in uris:
        out.append(Finding("identity_mismatch", "high",
                           f"{ip} is registered as {by_ip.name} with ApplicationUri {want}, but presents "
                           f"{', '.join(sorted(uris))}"))
    if by_uri is not None and by_uri.ips and ip not in by_uri.ips:
        out.append(Finding("identity_mismatch", "high",
                           f"ApplicationUri {by_uri.opcua.application_uri} belongs to {by_uri.name} at "
                           f"{', '.join(by_uri.ips)}, but is presented from {ip}"))
    pins = dev.opcua.certificate_sha256
    if sha256 and pins and sha256.lower() not in pins:
        out.append(Finding("certificate_changed", "high",
                           f"{dev.name} presents certificate SHA-256 {sha256.lower()}, not a pinned one "
                           f"({', '.join(p[:16] + '…' for p in pins)})"))
    if sha256 and issuer_dn is not None and dev.opcua.issuer and dn_key(issuer_dn) != dn_key(dev.opcua.issuer):
        out.append(Finding("certificate_changed", "high",
                           f"{dev.name}'s certificate is issued by {issuer_dn}, the registry expects {dev.opcua.issuer}"))
    return out, dev.name


def tls_identity(reg: Registry | None, ip: str, subject_dn: str | None, common_names: list[str]) -> tuple[list[Finding], str | None]:
    """Registry verdicts on a TLS client certificate presented from `ip`: the subject the device at that
    address must present, the address of the device a subject (or a common name used as MQTT client id)
    belongs to."""
    if reg is None or not reg.devices:
        return [], None
    out = []
    key = dn_key(subject_dn)
    by_ip = reg.device_at(ip)
    by_subject = next((d for d in reg.devices if any(dn_key(s) == key for s in d.tls.client_subjects)), None) if key else None
    by_cid = next((reg.by_client_id[c] for c in common_names if c in reg.by_client_id), None)
    if by_ip is not None and by_ip.tls.client_subjects and by_subject is not by_ip:
        out.append(Finding("identity_mismatch", "high",
                           f"{ip} is registered as {by_ip.name}, which presents {', '.join(by_ip.tls.client_subjects)}; "
                           f"this certificate is {subject_dn}"))
    for d, what in ((by_subject, f"subject {subject_dn}"), (by_cid, f"client id {', '.join(common_names)}")):
        if d is not None and d is not by_ip and d.ips and ip not in d.ips:
            out.append(Finding("identity_mismatch", "high",
                               f"{what} belongs to {d.name} at {', '.join(d.ips)}, but is presented from {ip}"))
            break
    dev = by_ip or by_subject or by_cid
    if dev is None:
        out.append(Finding("unknown_client", "medium", f"TLS client certificate {subject_dn} from {ip} matches no "
                                                       "device in the registry"))
    return out, dev.name if dev is not None else None
