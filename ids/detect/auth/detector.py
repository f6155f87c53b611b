"""Certificate-based device authentication checks (docs/AUTH.md): every certificate an OPC UA or TLS peer
presents is judged (trust chain, signature, validity, key, signature algorithm, revocation) and matched to
the device registry (ApplicationUri, pinned thumbprints, issuing CA, TLS subjects); OPC UA channels and
sessions are checked for policy None, deprecated policies, modes below what the registry requires,
downgrades against what the server advertises and credentials sent over unsecured channels; MQTT CONNECTs
for cleartext credentials, anonymous access, one client id from several addresses and refusals.

Every alert carries the judged certificate (ECS x509 + hashes) and what was expected versus what was seen
under otids.alert.auth / otids.alert.certificate (ids/data/fields/auth.yml). Findings are states, not
one-off events: the first occurrence per (rule, parties, certificate) alerts at once, repeats within
`policy.realert_after` seconds are counted and reported in one follow-up alert. Every table is bounded.
"""
from __future__ import annotations

import dataclasses
from itertools import islice

from collections import OrderedDict

from ...events import Alert, rfc3339
from ...flow.budget import KeyCap, trim_oldest
from ...protocols.opcua.messages import OpcuaEvent
from ..api import LimitEntry, Limiter, RuleInfo
from ..attack import techniques
from .certs import Finding, TrustStore
from .registry import SECURITY_MODES, AuthPolicy, Registry
from .verdicts import CertJudge, opcua_identity, tls_identity
from .views import SeenCert, mqtt_connect, mqtt_label, opcua_certificates, tls_certificates, tls_handshake
from ...x509 import uris_in
from ..bounds import WindowCount

NS = 1_000_000_000
MAX_KEYS = 50_000
REFUSAL_WINDOW = 60 * NS
#: refusals of one client kept exactly within the window; a faster flood is counted in 60 s / 16 steps
REFUSAL_SLOTS = 16
REFUSAL_ENTRY = 3_600  # a refusals key at its most (2 x REFUSAL_SLOTS + 1 entries, ~3,300; tracemalloc)
PENDING_NONE_ENTRY = 2_400  # a held policy_none finding with its OPC UA event and channel entry (tracemalloc)
MODE_RANK = {m: i for i, m in enumerate(SECURITY_MODES)}  # None < Sign < SignAndEncrypt
DEPRECATED_POLICIES = ("#Basic128Rsa15", "#Basic256")  # OPC 10000-7: deprecated for relying on SHA-1
DISCOVERY = frozenset(("Hello", "OpenSecureChannel", "CloseSecureChannel", "GetEndpoints", "FindServers",
                       "FindServersOnNetwork", "RegisterServer", "RegisterServer2", "Error", "ReverseHello"))


AuthRule = RuleInfo  # the old name


_R = [
    # certificates (OPC UA and TLS alike); `check` names are those of certs.py
    ("cert.untrusted", "Certificate not issued by a trusted CA", "high",
     "The certificate does not chain to a CA of the trust store, even with the intermediates sent along: a "
     "rogue or impersonating device, or a device the PKI does not know.", ("T0830", "T0848")),
    ("cert.bad_signature", "Certificate signature does not verify", "critical",
     "The certificate names a trusted (or sent) issuer, but that issuer's key did not sign it: a forged or "
     "tampered certificate.", ("T0830",)),
    ("cert.expired", "Expired certificate", "high",
     "The certificate was past its notAfter when it was presented. Peers that accept it do not check validity.",
     ("T0830",)),
    ("cert.not_yet_valid", "Certificate not yet valid", "high",
     "The certificate was presented before its notBefore: a wrong device clock or a certificate made for later.",
     ("T0830",)),
    ("cert.expiring_soon", "Certificate expiring soon", "low",
     "The certificate expires within policy.expiry_warning_days: renew it before devices refuse each other."),
    ("cert.self_signed", "Self-signed certificate", "high",
     "A self-signed certificate where the site requires CA-issued ones (policy.require_ca_issued); "
     "informational when the site allows them. Self-signed trust is trust on first use.", ("T0830", "T0848")),
    ("cert.weak_key", "Weak certificate key", "high",
     "RSA key under policy.min_rsa_bits (2048), EC key under 256 bits, or DSA: factorable or forgeable.",
     ("T0830",)),
    ("cert.weak_signature", "Certificate signed with SHA-1 or weaker", "high",
     "SHA-1 (or MD5) signatures can be forged by chosen-prefix collisions.", ("T0830",)),
    ("cert.revoked", "Revoked certificate", "critical",
     "The issuer's CRL in the trust store lists the certificate: a device that was decommissioned or "
     "compromised is still in use.", ("T0830", "T0848")),
    ("cert.crl_stale", "Issuer CRL out of date", "low",
     "The CRL for the certificate's issuer is past its nextUpdate: revocations since then are unknown."),
    ("cert.crl_unverified", "Issuer CRL does not verify", "medium",
     "A CRL in the trust store names the issuer but its signature does not verify with the issuer's key."),
    ("cert.ca_expired", "Issuing CA outside its validity", "high",
     "The trusted or sent CA that signed the certificate was not valid when it was presented."),
    ("cert.unparsable", "Certificate does not parse", "medium",
     "Bytes in a certificate field are not a valid X.509 certificate: a broken stack, or a malformed "
     "certificate aimed at the peer's parser.", ("T0866",)),
    ("cert.no_trust_store", "Certificate chain not verified (no trust store)", "info",
     "No trust store is configured (--trust-store, or trust_store in the registry), so the chain of this "
     "certificate was not verified. Said once per certificate so that silence is never read as a pass."),
    ("cert.unverified", "Certificate not fully verified (bytes not available)", "info",
     "Only the certificate's description reached the checks: validity, key and algorithm were checked, "
     "signature, chain and revocation were not."),
    # OPC UA
    ("opcua.application_uri_mismatch", "OPC UA certificate does not match the ApplicationUri", "high",
     "The ApplicationUri an application sends (CreateSession, endpoint descriptions) is not the URI in its "
     "certificate's subjectAltName (OPC 10000-4 6.1.3): a copied certificate or an impersonation.",
     ("T0830", "T0848")),
    ("opcua.certificate_changed", "OPC UA device certificate changed", "high",
     "A registered device presents a certificate other than the pinned ones, or one from another issuing CA "
     "(high); without pins, a device presents a different certificate than earlier in the capture (medium). "
     "Certificate renewals look the same: update the registry.", ("T0830", "T0848")),
    ("opcua.unknown_device", "Unknown OPC UA device", "medium",
     "An OPC UA client or server whose address and ApplicationUri are both absent from the device registry.",
     ("T0848",)),
    ("opcua.identity_mismatch", "OPC UA identity does not match the registry", "high",
     "The ApplicationUri presented from an address is not the one registered for it, or a registered "
     "ApplicationUri appears from another device's address: a clone or an impersonation.", ("T0848", "T0830")),
    ("opcua.thumbprint_mismatch", "OPC UA receiver thumbprint does not match the peer's certificate", "high",
     "OpenSecureChannel's ReceiverCertificateThumbprint is not the SHA-1 of the certificate the peer "
     "presented (OPC 10000-6 6.7.2.3): a substituted certificate in the middle, or a client configured for "
     "another server.", ("T0830",)),
    ("opcua.policy_none", "OPC UA session over SecurityPolicy None", "medium",
     "A secure channel with SecurityPolicy None carries sessions: messages are neither signed nor encrypted, "
     "so anyone on the path can read and alter them. Not raised where the registry allows mode None.",
     ("T0830", "T0842")),
    ("opcua.deprecated_policy", "Deprecated OPC UA security policy", "medium",
     "The channel uses Basic128Rsa15 or Basic256, deprecated by OPC 10000-7 for SHA-1 and PKCS#1 v1.5.",
     ("T0830",)),
    ("opcua.mode_below_required", "OPC UA security mode weaker than required", "medium",
     "The channel's MessageSecurityMode (Sign) is weaker than the registry requires for the server or client "
     "(min_security_mode, policy.opcua_min_security_mode). Mode None is reported as policy_none.",
     ("T0830", "T0842")),
    ("opcua.credentials_exposed", "OPC UA user credentials over an unsecured channel", "high",
     "ActivateSession sends a UserName (or issued) token on a channel with SecurityPolicy None: the user name "
     "is readable, and the password too unless the token policy encrypts it (then medium).",
     ("T0842", "T0859")),
    ("opcua.anonymous_over_none", "Anonymous OPC UA session over an unsecured channel", "medium",
     "ActivateSession with an anonymous token on a SecurityPolicy None channel: nothing authenticates the "
     "client or protects the session.", ("T0848", "T0830")),
    ("opcua.downgrade", "OPC UA security downgrade", "high",
     "The session's security mode is weaker than every endpoint the server advertises (high: the server "
     "accepts what it does not offer, or the advertisement was altered), or a client uses None although the "
     "server offers secured endpoints (medium).", ("T0830",)),
    # MQTT
    ("mqtt.cleartext_credentials", "MQTT credentials in cleartext", "high",
     "CONNECT with a user name and password outside TLS: anyone on the path can read them (medium when only a "
     "user name is sent).", ("T0842", "T0859")),
    ("mqtt.anonymous", "Anonymous MQTT client accepted", "medium",
     "The broker accepted a CONNECT without user name or password where the site requires authentication "
     "(policy.mqtt_require_auth).", ("T0848",)),
    ("mqtt.cleartext_session", "MQTT session without TLS", "medium",
     "An MQTT session in cleartext where the site requires TLS (policy.mqtt_require_tls).", ("T0842",)),
    ("mqtt.client_id_multiple_ips", "MQTT client id used from several addresses at once", "high",
     "A client id connects from a second address while its session from another address is still alive: "
     "two devices share an identity (cloned credentials), and the broker drops one of them.",
     ("T0848", "T0859")),
    ("mqtt.connect_refused", "MQTT connection refused", "low",
     "The broker refused a CONNECT (bad user name or password, not authorised, ...). Counted per client; "
     "repeated refusals are what the brute-force rules look for.", ("T0859", "T0812")),
    ("mqtt.identity_mismatch", "MQTT identity does not match the registry", "high",
     "A registered client id connects from an address or with a user name that the registry does not list "
     "for it.", ("T0848", "T0859")),
    ("mqtt.unknown_client", "Unknown MQTT client", "medium",
     "A client id and address that the device registry does not know.", ("T0848",)),
    # TLS
    ("tls.client_identity_not_observable", "TLS 1.3 client identity not observable", "info",
     "TLS 1.3 encrypts the certificates: who the client is cannot be checked from the network. Never a pass; "
     "check the broker's own logs or use TLS 1.2 where passive identity checks are required."),
    ("tls.identity_mismatch", "TLS client certificate does not match the registry", "high",
     "The client certificate's subject is not the one registered for that address, or it (or its common name "
     "as MQTT client id) belongs to a device at another address.", ("T0848", "T0830")),
    ("tls.unknown_client", "Unknown TLS client", "medium",
     "A TLS client certificate whose subject and address match no device in the registry.", ("T0848",)),
]
RULES = {f"otids.auth.{r[0]}": AuthRule(f"otids.auth.{r[0]}", *r[1:]) for r in _R}


def certificate_extra(doc: dict | None, role: str | None) -> dict:
    """The judged certificate as written under otids.alert.certificate."""
    if not doc:
        return {}
    out: dict = {}
    if role:
        out["role"] = role
    for k in ("hash", "x509", "self_signed", "error"):
        if k in doc:
            out[k] = doc[k]
    chain = doc.get("chain") or []
    if chain:
        out["chain_sha256"] = [(c.get("hash") or {}).get("sha256") for c in chain]
        out["chain_subject"] = [((c.get("x509") or {}).get("subject") or {}).get("distinguished_name") for c in chain]
    return out


# What one key of each table holds at most (tracemalloc; tests/test_bounds_state.py), and its share of
# limits.auth_state_bytes: the re-alert limiter keeps the latest occurrence of a finding held back (its event
# and certificate), the others small facts per channel, server, client id or flow.
# pending_none holds policy_none findings (each its event) for up to HOLD_NS: a flood of channels within
# those 5 s filled it without bound; at its share the oldest eighth is alerted at once, as if its hold ended.
TABLES = {"limiter": (3_000, 0.55), "learned": (450, 0.1), "channels": (450, 0.05), "advertised": (900, 0.05),
          "mqtt_sessions": (1_500, 0.1), "mqtt_flows": (200, 0.05), "refusals": (REFUSAL_ENTRY, 0.05),
          "pending_none": (PENDING_NONE_ENTRY, 0.05)}


#: findings that hold only against a site policy (security mode, authentication, CA-issued certificates);
#: self-signed certificates get the same treatment in certs.py
POSTURE = frozenset(("otids.auth.opcua.policy_none", "otids.auth.opcua.mode_below_required",
                     "otids.auth.opcua.anonymous_over_none", "otids.auth.mqtt.anonymous",
                     "otids.auth.mqtt.cleartext_session"))
HOLD_NS = 5 * NS  # how long a policy_none finding waits for its session's ActivateSession


def _user(name) -> str:
    """How a CONNECT's user is named in a reason: never "user 'None'" for a CONNECT without one."""
    return f"user '{name}'" if name is not None else "no user name"


class AuthDetector:
    def __init__(self, registry: Registry | None = None, store: TrustStore | None = None,
                 policy: AuthPolicy | None = None, limits=None):
        self.registry = registry if registry is not None and registry.devices else None
        self.policy = policy or (registry.policy if registry is not None else AuthPolicy())
        # without a registry (its policy) the site's wishes are not known: posture findings stay low
        self.site_policy = registry is not None or policy is not None
        self.judge = CertJudge(store, dataclasses.replace(self.policy.cert_policy(), site=self.site_policy))
        self.realert = self.policy.realert_after * NS
        from ...config import LimitsConfig
        max_bytes = (limits or LimitsConfig()).auth_state_bytes
        self.caps = {t: KeyCap(f"auth.{t}", int(max_bytes * share), entry, MAX_KEYS)
                     for t, (entry, share) in TABLES.items()}
        self.limiter = Limiter(self.realert, self.caps["limiter"].max_keys, lru=True)
        self.gate = [None]
        self.learned: dict[tuple, tuple[str, int]] = {}  # (ip, role, uri) -> (sha256, first ts)
        self.channels: dict[tuple, set] = {}  # (flow id, channel id) -> rule ids already decided
        self.advertised: dict[tuple, set] = {}  # (server ip, port) -> {(mode, policy uri)}
        self.mqtt_sessions: dict[str, dict] = {}  # client id -> ip -> [flow id, last ts, lifetime, ended]
        self.mqtt_flows: dict[int, str] = {}  # flow id -> client id
        self.refusals: dict[tuple, WindowCount] = {}  # (client ip, client id) -> refusals in REFUSAL_WINDOW
        # flow id -> policy_none finding held for its session's token, oldest first (an OrderedDict: its front
        # is found without walking the slots released findings emptied)
        self.pending_none: OrderedDict[int, tuple] = OrderedDict()

    def reload(self, config) -> None:
        """SIGHUP (`otids live`): re-read the registry and trust store. A broken file raises (ConfigError)
        before anything changes; what was learned and alerted so far is kept."""
        args = getattr(self, "context_args", None)
        if args is None:
            return
        from .context import load_context
        reg, store = load_context(args)
        self.registry = reg if reg is not None and reg.devices else None
        self.policy = reg.policy if reg is not None else AuthPolicy()
        self.site_policy = reg is not None
        self.judge = CertJudge(store, dataclasses.replace(self.policy.cert_policy(), site=self.site_policy))
        self.realert = self.limiter.window = self.policy.realert_after * NS

    # ------------------------------------------------------------------ dispatch
    _DATASETS = frozenset(("otids.opcua", "otids.mqtt", "otids.tls"))

    def accepts(self, event_type: type) -> bool:
        """Only OPC UA, MQTT and TLS events carry identities (the engine routes nothing else here)."""
        return getattr(event_type, "dataset", None) in self._DATASETS

    def on_event(self, ev):
        if type(ev) is OpcuaEvent:
            out = self._opcua(ev)
        else:
            ds = getattr(ev, "dataset", None)
            if ds == "otids.mqtt":
                out = self._mqtt(ev)
            elif ds == "otids.tls":
                out = self._tls(ev)
            else:
                return None
        caps = self.caps.values()
        if any(c.hits != c.reported for c in caps):
            more = _cap_alerts(caps, ev.ts, self.gate)
            if more:
                out = (out or []) + more
        return out

    # ------------------------------------------------------------------ certificates (OPC UA and TLS)
    def _certs(self, ev, seen: list[SeenCert], out: list) -> None:
        f = ev.flow
        for sc in seen:
            doc = sc.doc
            sha = (doc.get("hash") or {}).get("sha256", "")
            x = doc.get("x509") or {}
            for fi in self.judge.findings(doc, ev.ts):
                rid = f"otids.auth.cert.{fi.check}"
                if rid not in RULES:
                    continue
                self._fire(out, rid, ev, ev.ts, f"{sc.protocol} {sc.role} certificate {self._name(x, sha)} "
                                                 f"at {sc.ip}: {fi.message}",
                           key=(rid, sha, f.client_ip, f.server_ip), severity=fi.severity, cert=doc, role=sc.role,
                           protocol=sc.protocol, expected=_EXPECTED.get(fi.check), seen=fi.message)
            if sc.protocol == "opcua" and sc.role in ("client", "server"):
                self._opcua_identity(ev, out, sc)
            elif sc.protocol == "tls" and sc.role == "client":
                subj = (x.get("subject") or {})
                fs, dev = tls_identity(self.registry, sc.ip, subj.get("distinguished_name"),
                                       list(subj.get("common_name") or ()))
                for fi in _merge(fs):
                    rid = f"otids.auth.tls.{fi.check}"
                    self._fire(out, rid, ev, ev.ts, fi.message, key=(rid, sc.ip, sha), severity=fi.severity,
                               cert=doc, role=sc.role, protocol="tls", device=dev, seen=subj.get("distinguished_name"),
                               expected=self._tls_expected(sc.ip))

    @staticmethod
    def _name(x: dict, sha: str) -> str:
        cn = (x.get("subject") or {}).get("common_name")
        return f"'{cn[0]}'" if cn else sha[:16]

    def _tls_expected(self, ip: str) -> str | None:
        d = self.registry.device_at(ip) if self.registry else None
        if d is not None and d.tls.client_subjects:
            return "; ".join(d.tls.client_subjects)
        return f"a registered device at {ip}" if d is None else f"{d.name}'s certificate"

    # ------------------------------------------------------------------ OPC UA
    def _release_none(self, flow_id: int, out: list) -> None:
        p = self.pending_none.pop(flow_id, None)
        if p is not None:
            rid, ev, ts, reason, kw = p
            self._fire(out, rid, ev, ts, reason, **kw)

    def _hold_room(self, out: list) -> None:
        """pending_none at its share of limits.auth_state_bytes: its oldest eighth alerted at once (said as it
        was, without waiting for a token), counted in the memory_cap alert as alerted early."""
        cap = self.caps["pending_none"]
        n = len(self.pending_none) - cap.max_keys + max(1, cap.max_keys // 8)
        if len(self.pending_none) < cap.max_keys or n <= 0:
            return
        cap.hits += n
        for fid in list(islice(self.pending_none, n)):
            self._release_none(fid, out)

    def _opcua(self, ev: OpcuaEvent):
        out: list = []
        if self.pending_none:
            if ev.service != "ActivateSession":
                self._release_none(ev.flow.flow_id, out)
            late = []
            for k, v in self.pending_none.items():  # oldest first: stop at the first still in its hold
                if ev.ts - v[2] <= HOLD_NS:
                    break
                late.append(k)
            for fid in late:
                self._release_none(fid, out)  # no session followed in time: said as it was (live sensors)
        if ev.certificates:
            seen = opcua_certificates(ev)
            self._certs(ev, seen, out)
            self._learn_certificates(ev, seen, out)
        if ev.anomalies and "thumbprint_mismatch" in ev.anomalies:
            self._thumbprint(ev, out)
        svc = ev.service
        if svc in ("GetEndpoints", "CreateSession") and ev.response:
            self._learn_endpoints(ev)
        uri = ev.security_policy_uri
        if uri is not None and ev.secure_channel_id is not None:
            ch = self.channels.get((ev.flow.flow_id, ev.secure_channel_id))
            if ch is None:
                ch = set()
                self._put("channels", self.channels, (ev.flow.flow_id, ev.secure_channel_id), ch)
            if "deprecated" not in ch:
                ch.add("deprecated")
                if uri.endswith(DEPRECATED_POLICIES):
                    self._fire(out, "otids.auth.opcua.deprecated_policy", ev, ev.ts,
                               f"OPC UA channel {ev.secure_channel_id} from {ev.flow.client_ip} to {ev.flow.server_ip} "
                               f"uses the deprecated policy {uri.rsplit('#', 1)[-1]}",
                               key=("otids.auth.opcua.deprecated_policy", ev.flow.client_ip, ev.flow.server_ip, uri),
                               expected="Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss",
                               seen=uri, protocol="opcua")
            if svc not in DISCOVERY and ev.message_type == "MSG" and "session" not in ch and ev.security_mode:
                ch.add("session")
                self._channel_session(ev, out)
        if svc == "CreateSession" and ev.request is not None and not (ev.certificates or {}).get("client"):
            # no client certificate (policy None): the ApplicationUri alone identifies the client
            self._opcua_identity(ev, out, None)
        if svc == "ActivateSession" and ev.request is not None and ev.user_token_type:
            self._token(ev, out)
        if self.pending_none and svc == "ActivateSession":
            self._release_none(ev.flow.flow_id, out)  # the token did not take the finding over
        return out or None

    def _opcua_identity(self, ev, out: list, sc: SeenCert | None) -> None:
        f = ev.flow
        if sc is None:
            role, ip, uris, sha, issuer = "client", f.client_ip, {ev.application_uri} - {None}, None, None
        else:
            role, ip = sc.role, sc.ip
            x = sc.doc.get("x509") or {}
            san = set(uris_in(x.get("alternative_names")))
            uris = san | ({sc.claimed_uri} if sc.claimed_uri else set())
            sha = (sc.doc.get("hash") or {}).get("sha256")
            issuer = (x.get("issuer") or {}).get("distinguished_name")
            if sc.claimed_uri and san and sc.claimed_uri not in san:
                rid = "otids.auth.opcua.application_uri_mismatch"
                self._fire(out, rid, ev, ev.ts,
                           f"OPC UA {role} at {ip} claims ApplicationUri {sc.claimed_uri}, its certificate "
                           f"{self._name(x, sha or '')} says {', '.join(sorted(san))}",
                           key=(rid, ip, sha, sc.claimed_uri), cert=sc.doc, role=role, protocol="opcua",
                           expected=", ".join(sorted(san)), seen=sc.claimed_uri)
        fs, dev = opcua_identity(self.registry, ip, role, uris, sha, issuer)
        for fi in _merge(fs):
            rid = f"otids.auth.opcua.{fi.check}"
            d = self.registry.device_at(ip) if self.registry else None
            expected = None
            if fi.check == "certificate_changed" and dev is not None:
                rd = next(x for x in self.registry.devices if x.name == dev)
                expected = ", ".join(rd.opcua.certificate_sha256) or rd.opcua.issuer
            elif fi.check == "identity_mismatch":
                expected = (d.opcua.application_uri if d is not None else None) or f"{dev}'s address"
            elif fi.check == "unknown_device":
                expected = "a device in the registry"
            self._fire(out, rid, ev, ev.ts, fi.message, key=(rid, ip, role, sha or ",".join(sorted(uris))),
                       severity=fi.severity, cert=sc.doc if sc else None, role=role, protocol="opcua", device=dev,
                       expected=expected, seen=sha.lower() if fi.check == "certificate_changed" and sha
                       else ", ".join(sorted(uris)) or ip)

    def _learn_certificates(self, ev, seen: list[SeenCert], out: list) -> None:
        """Without pins, a device's certificate is the first one seen this run; a different one later is a
        change (medium). Devices with pins in the registry are judged by the pins instead."""
        for sc in seen:
            if sc.role not in ("client", "server") or sc.doc.get("error"):
                continue
            x = sc.doc.get("x509") or {}
            san = sorted(uris_in(x.get("alternative_names")))
            uri = san[0] if san else sc.claimed_uri
            sha = (sc.doc.get("hash") or {}).get("sha256", "")
            key = (sc.ip, sc.role, uri)
            old = self.learned.get(key)
            if old is None:
                self._put("learned", self.learned, key, (sha, ev.ts))
                continue
            if old[0] == sha:
                continue
            dev = self.registry.device_at(sc.ip) if self.registry else None
            if dev is not None and dev.opcua.certificate_sha256:
                continue  # the pins decide (opcua_identity)
            rid = "otids.auth.opcua.certificate_changed"
            self._fire(out, rid, ev, ev.ts,
                       f"OPC UA {sc.role} at {sc.ip} ({uri or 'no ApplicationUri'}) presents certificate "
                       f"{sha[:16]}…, earlier in this capture {old[0][:16]}…", key=(rid, sc.ip, sc.role, sha),
                       severity="medium", cert=sc.doc, role=sc.role, protocol="opcua", expected=old[0].lower(),
                       seen=sha.lower())
            self._put("learned", self.learned, key, (sha, ev.ts))

    def _thumbprint(self, ev, out: list) -> None:
        req, resp = ev.request or {}, ev.response or {}
        certs = ev.certificates or {}
        cert = role = expected = seen = None
        srv, cli = certs.get("server"), certs.get("client")
        if req.get("receiver_thumbprint") and srv and srv.get("hash", {}).get("sha1") != req["receiver_thumbprint"]:
            cert, role, expected, seen = srv, "server", srv["hash"]["sha1"], req["receiver_thumbprint"]
            what = f"client {ev.flow.client_ip} names server certificate {seen}, the server presented {expected}"
        elif resp.get("receiver_thumbprint") and cli and cli.get("hash", {}).get("sha1") != resp["receiver_thumbprint"]:
            cert, role, expected, seen = cli, "client", cli["hash"]["sha1"], resp["receiver_thumbprint"]
            what = f"server {ev.flow.server_ip} names client certificate {seen}, the client presented {expected}"
        else:
            seen = req.get("receiver_thumbprint") or resp.get("receiver_thumbprint")
            expected = "SHA-1 of the certificate the peer presented earlier on this connection"
            what = f"receiver thumbprint {seen} matches no certificate the peer presented"
        rid = "otids.auth.opcua.thumbprint_mismatch"
        self._fire(out, rid, ev, ev.ts, f"OPC UA OpenSecureChannel {ev.flow.client_ip} -> {ev.flow.server_ip}: {what}",
                   key=(rid, ev.flow.client_ip, ev.flow.server_ip, seen), cert=cert, role=role, protocol="opcua",
                   expected=expected, seen=seen)

    def _learn_endpoints(self, ev) -> None:
        resp = ev.response
        eps = resp.get("server_endpoints") or resp.get("endpoints") or []
        modes = {(e.get("security_mode"), e.get("security_policy_uri")) for e in eps
                 if isinstance(e, dict) and e.get("security_mode") in MODE_RANK}
        if modes:
            self._put("advertised", self.advertised, (ev.flow.server_ip, ev.flow.server_port), modes)

    def _required_mode(self, ev) -> tuple[str, str]:
        """The mode the registry requires: the strictest min_security_mode of the two parties' devices where
        either sets one (a device may also relax it, e.g. a legacy PLC allowed None), else the policy's."""
        req, who = None, None
        if self.registry is not None:
            for ip in (ev.flow.server_ip, ev.flow.client_ip):
                d = self.registry.device_at(ip)
                m = d.opcua.min_security_mode if d is not None else None
                if m and (req is None or MODE_RANK[m] > MODE_RANK[req]):
                    req, who = m, f"{d.name}.opcua.min_security_mode"
        if req is None:
            req, who = self.policy.opcua_min_security_mode, "policy.opcua_min_security_mode"
        return req, who

    def _channel_session(self, ev, out: list) -> None:
        """Once per channel, on its first session message: policy None, mode below the registry, downgrade."""
        f = ev.flow
        mode = ev.security_mode
        if mode not in MODE_RANK:
            return
        pair = f"{f.client_ip} -> {f.server_ip}:{f.server_port}"
        required, who = self._required_mode(ev)
        if mode == "None" and MODE_RANK[required] > 0:
            rid = "otids.auth.opcua.policy_none"
            # Held until the session's ActivateSession: an anonymous or password token over None is then one
            # alert naming this fact too (one fact, one alert); anything else releases it as it was.
            if self.pending_none.pop(f.flow_id, None) is None:  # re-held at the end: the table stays in time order
                self._hold_room(out)
            self.pending_none[f.flow_id] = (rid, ev, ev.ts, f"OPC UA session over SecurityPolicy None, {pair} "
                                                           f"({who}: {required})",
                                            dict(key=(rid, f.client_ip, f.server_ip, f.server_port),
                                                 protocol="opcua", expected=f"{required} or stronger ({who})",
                                                 seen="None"))
        elif MODE_RANK[mode] < MODE_RANK[required]:
            rid = "otids.auth.opcua.mode_below_required"
            self._fire(out, rid, ev, ev.ts, f"OPC UA session with security mode {mode}, {pair}; {who} requires {required}",
                       key=(rid, f.client_ip, f.server_ip, f.server_port), protocol="opcua",
                       expected=f"{required} ({who})", seen=mode)
        adv = self.advertised.get((f.server_ip, f.server_port))
        if not adv:
            return
        ranks = sorted({MODE_RANK[m] for m, _ in adv})
        offered = ", ".join(sorted({f"{m} ({(p or '').rsplit('#', 1)[-1]})" for m, p in adv}))
        rid = "otids.auth.opcua.downgrade"
        if MODE_RANK[mode] < ranks[0]:
            self._fire(out, rid, ev, ev.ts, f"OPC UA session with mode {mode} although the server advertises only "
                                            f"{offered}, {pair}", key=(rid, f.client_ip, f.server_ip, f.server_port),
                       protocol="opcua", expected=offered, seen=mode)
        elif mode == "None" and ranks[-1] > 0:
            secured = ", ".join(sorted({f"{m} ({(p or '').rsplit('#', 1)[-1]})" for m, p in adv if MODE_RANK[m] > 0}))
            self._fire(out, rid, ev, ev.ts, f"OPC UA client chose mode None although the server also offers "
                                            f"{secured}, {pair}",
                       key=(rid, f.client_ip, f.server_ip, f.server_port), severity="medium", protocol="opcua",
                       expected=secured, seen=mode)

    def _token(self, ev, out: list) -> None:
        uri = ev.security_policy_uri or ""
        if not (ev.security_mode == "None" or uri.endswith("#None")):
            return
        f = ev.flow
        ident = (ev.request or {}).get("identity") or {}
        tok = ev.user_token_type
        pair = f"{f.client_ip} -> {f.server_ip}:{f.server_port}"
        held = self.pending_none.get(f.flow_id)
        why = ""
        if held is not None and tok in ("UserName", "Issued", "IssuedToken", "Anonymous"):
            # this alert takes over the held policy_none finding: its fact (the policy that asks for more)
            # is named here, in the reason, instead of a second alert
            del self.pending_none[f.flow_id]
            policy_reason = held[3]
            why = policy_reason[policy_reason.rfind(" ("):] if policy_reason.endswith(")") else ""
        if tok in ("UserName", "Issued", "IssuedToken"):
            clear = not ident.get("encryption_algorithm")
            user = ident.get("user_name")
            rid = "otids.auth.opcua.credentials_exposed"
            what = f"user name '{user}' and password in clear" if clear and user else \
                "user name in clear, password encrypted by the token policy" if user else "issued token"
            self._fire(out, rid, ev, ev.ts, f"OPC UA {tok} token over SecurityPolicy None, {pair}: {what}{why}",
                       key=(rid, f.client_ip, f.server_ip, user), severity="high" if clear else "medium",
                       protocol="opcua", expected="a signed and encrypted channel (Sign or SignAndEncrypt)",
                       seen=f"{tok} token on SecurityPolicy None" + (", password not encrypted" if clear else ""))
        elif tok == "Anonymous":
            required, _who = self._required_mode(ev)
            if MODE_RANK[required] == 0:
                return  # the site allows unsecured channels: anonymous reads are its choice
            rid = "otids.auth.opcua.anonymous_over_none"
            self._fire(out, rid, ev, ev.ts, f"anonymous OPC UA session over SecurityPolicy None, {pair}{why}",
                       key=(rid, f.client_ip, f.server_ip, f.server_port), protocol="opcua",
                       expected="an authenticated user on a secured channel", seen="Anonymous on SecurityPolicy None")

    # ------------------------------------------------------------------ MQTT
    def _mqtt(self, ev):
        f = ev.flow
        label = mqtt_label(ev)
        cid = self.mqtt_flows.get(f.flow_id)
        if cid is not None:  # activity keeps the session alive; DISCONNECT ends it
            s = self.mqtt_sessions.get(cid, {}).get(f.client_ip)
            if s is not None and s[0] == f.flow_id:
                s[1] = ev.ts
                if label == "disconnect":
                    s[3] = True
        if label != "connect":
            return None
        c = mqtt_connect(ev)
        if c is None:
            return None
        out: list = []
        pol = self.policy
        pair = f"{f.client_ip} -> {f.server_ip}:{f.server_port}"
        who = f"client id '{c.client_id}'" if c.client_id else "empty client id"
        accepted = c.return_code in (None, 0)
        if (c.username is not None or c.password) and accepted:  # a refused CONNECT says it in its own alert
            rid = "otids.auth.mqtt.cleartext_credentials"
            self._fire(out, rid, ev, ev.ts, f"MQTT CONNECT ({who}, {_user(c.username)}) with "
                                            f"{'a password' if c.password else 'a user name'} in cleartext, {pair}",
                       key=(rid, f.client_ip, f.server_ip, c.username, c.client_id),
                       severity="high" if c.password else "medium",
                       protocol="mqtt", expected="MQTT over TLS", seen="cleartext MQTT with " +
                       ("user name and password" if c.password else "user name"), client_id=c.client_id)
        if pol.mqtt_require_tls:
            rid = "otids.auth.mqtt.cleartext_session"
            self._fire(out, rid, ev, ev.ts, f"MQTT session without TLS ({who}), {pair}",
                       key=(rid, f.client_ip, f.server_ip, c.client_id), protocol="mqtt", expected="MQTT over TLS",
                       seen="cleartext MQTT", client_id=c.client_id)
        if accepted and c.username is None and not c.password and pol.mqtt_require_auth:
            rid = "otids.auth.mqtt.anonymous"
            self._fire(out, rid, ev, ev.ts, f"MQTT broker {f.server_ip} accepted an anonymous CONNECT ({who}) from "
                                            f"{f.client_ip}", key=(rid, f.client_ip, f.server_ip, c.client_id),
                       protocol="mqtt",
                       expected="user name and password, or a client certificate (policy.mqtt_require_auth)",
                       seen="no user name, no password", client_id=c.client_id)
        if not accepted:
            self._refused(ev, c, out)
        self._mqtt_identity(ev, c, out)
        if accepted and c.client_id:
            self._mqtt_session(ev, c, out)
        return out or None

    def _refused(self, ev, c, out: list) -> None:
        f = ev.flow
        key = (f.client_ip, c.client_id)
        q = self.refusals.get(key)
        if q is None:
            q = WindowCount(REFUSAL_WINDOW, REFUSAL_SLOTS)
            self._put("refusals", self.refusals, key, q)
        q.add(ev.ts, ev.ts - REFUSAL_WINDOW)
        rid = "otids.auth.mqtt.connect_refused"
        self._fire(out, rid, ev, ev.ts, f"MQTT CONNECT of client id '{c.client_id}' ({_user(c.username)}) from "
                                        f"{f.client_ip} refused by {f.server_ip}: {c.reason or c.return_code} "
                                        f"({len(q)} refusal(s) in {REFUSAL_WINDOW // NS} s)"
                                        + ("; its password went in cleartext" if c.password else
                                           "; its user name went in cleartext" if c.username is not None else ""),
                   key=(rid, f.client_ip, f.server_ip, c.client_id), protocol="mqtt", expected="return code 0",
                   seen=f"{c.return_code} {c.reason or ''}".strip(), client_id=c.client_id,
                   extra={"refusals": len(q)})

    def _mqtt_identity(self, ev, c, out: list) -> None:
        reg = self.registry
        if reg is None:
            return
        f = ev.flow
        dev = reg.by_client_id.get(c.client_id) if c.client_id else None
        if dev is not None:
            bad = []
            if dev.ips and f.client_ip not in dev.ips:
                bad.append((f"address {', '.join(dev.ips)}", f.client_ip))
            if dev.mqtt.usernames and c.username not in dev.mqtt.usernames:
                bad.append((f"user {', '.join(dev.mqtt.usernames)}",
                            f"user {c.username}" if c.username is not None else "no user name"))
            if bad:
                rid = "otids.auth.mqtt.identity_mismatch"
                self._fire(out, rid, ev, ev.ts, f"MQTT client id '{c.client_id}' of {dev.name} connects with "
                                                + "; ".join(f"{s} (registry: {e})" for e, s in bad),
                           key=(rid, f.client_ip, c.client_id, c.username), protocol="mqtt", device=dev.name,
                           expected="; ".join(e for e, _ in bad), seen="; ".join(s for _, s in bad),
                           client_id=c.client_id)
            return
        if reg.device_at(f.client_ip) is None and any(d.mqtt.client_ids for d in reg.devices):
            rid = "otids.auth.mqtt.unknown_client"
            self._fire(out, rid, ev, ev.ts, f"MQTT client id '{c.client_id}' from {f.client_ip} is not in the registry",
                       key=(rid, f.client_ip, c.client_id), protocol="mqtt", expected="a registered client id",
                       seen=c.client_id, client_id=c.client_id)

    def _mqtt_session(self, ev, c, out: list) -> None:
        f = ev.flow
        cid = c.client_id
        # MQTT 3.1.1 3.1.2.10: the broker drops a client silent for 1.5 keep-alive periods
        life = int(c.keepalive * 1.5 * NS) if c.keepalive else 3600 * NS
        sess = self.mqtt_sessions.get(cid)
        if sess is None:
            sess = {}
            self._put("mqtt_sessions", self.mqtt_sessions, cid, sess)
        live = sorted(ip for ip, s in sess.items() if ip != f.client_ip and not s[3] and ev.ts - s[1] <= s[2])
        if live:
            rid = "otids.auth.mqtt.client_id_multiple_ips"
            dev = self.registry.by_client_id.get(cid) if self.registry else None
            self._fire(out, rid, ev, ev.ts, f"MQTT client id '{cid}' connects from {f.client_ip} while its session from "
                                            f"{', '.join(live)} is alive (broker {f.server_ip})",
                       key=(rid, cid, f.server_ip), protocol="mqtt", device=dev.name if dev else None,
                       expected=", ".join(dev.ips) if dev and dev.ips else "one address at a time",
                       seen=", ".join(sorted({f.client_ip, *live})), client_id=cid,
                       extra={"source_ips": sorted({f.client_ip, *live})})
        if len(sess) >= 64 and f.client_ip not in sess:
            trim_oldest(sess, 64)
        sess[f.client_ip] = [f.flow_id, ev.ts, life, False]
        self._put("mqtt_flows", self.mqtt_flows, f.flow_id, cid)

    # ------------------------------------------------------------------ TLS
    def _put(self, table: str, d: dict, key, value) -> None:
        """d[key] = value within the table's share of limits.auth_state_bytes: a full table forgets its
        oldest eighth at once (trim_oldest), said in a memory_cap alert."""
        if key not in d:
            self.caps[table].make_room(d)
        d[key] = value

    def _tls(self, ev):
        hs = tls_handshake(ev)
        out: list = []
        f = ev.flow
        if hs.identity_observable is False:
            rid = "otids.auth.tls.client_identity_not_observable"
            self._fire(out, rid, ev, ev.ts, f"TLS {hs.version or '1.3'} from {f.client_ip} to {f.server_ip}:{f.server_port}"
                                            f"{' (' + hs.application + ')' if hs.application else ''}: certificates are "
                                            "encrypted, the client's identity cannot be checked",
                       key=(rid, f.client_ip, f.server_ip, f.server_port), protocol="tls",
                       expected="a client certificate observable on the wire (TLS 1.2)", seen=f"TLS {hs.version or '1.3'}")
        self._certs(ev, tls_certificates(ev, hs), out)
        return out or None

    # ------------------------------------------------------------------ alerting
    def _fire(self, out: list, rid: str, ev, ts: int, reason: str, *, key: tuple, severity: str | None = None,
              cert: dict | None = None, role: str | None = None, protocol: str | None = None,
              device: str | None = None, expected=None, seen=None, client_id: str | None = None,
              extra: dict | None = None) -> None:
        if not self.site_policy and rid in POSTURE:
            severity = "low"  # judged against defaults, not against anything the site said
            reason += "; no site policy given (defaults applied; a registry's policy: section states the site's)"
        args = (rid, ev, ts, reason, severity, cert, role, protocol, device, expected, seen, client_id, extra)
        lim = self.limiter.get(key)
        flow = ev.flow.flow_id
        if lim is None:
            entries, cap = self.limiter.entries, self.caps["limiter"]
            if len(entries) >= self.limiter.max_keys:
                cap.hits += 1  # its oldest key goes (its held-back count in a follow-up)
            elif cap.full(entries):  # limits.memory_total reached, the limiter over its share (it reports here)
                for _ in range(max(1, len(entries) // 8)):  # its oldest eighth goes, held-back counts said
                    e = entries.popitem(last=False)[1]
                    cap.hits += 1
                    if e.suppressed:
                        out.append(self._repeat(e, ts))
        if lim is not None and (flow == lim.tag or (severity or RULES[rid].severity) == "info"):
            return  # the same connection is the same sighting; facts (info) are said once per key
        due = self.limiter.hit(key, ts, args, tag=flow)
        if due is None:
            return
        for k, e in due:
            if k == key:
                # the sightings of the last window ride on this alert: one alert per window, not a follow-up
                # and an alert side by side
                n = e.suppressed
                args = (rid, ev, ts, f"{reason} (also {n} time(s) in the {self.realert // NS} s before)", *args[4:])
                out.append(self._alert(*args, count=n + 1))
                return
            out.append(self._repeat(e, ts))
        out.append(self._alert(*args))

    def _alert(self, rid, ev, ts, reason, severity, cert, role, protocol, device, expected, seen, client_id, extra,
               count: int = 1) -> Alert:
        r = RULES[rid]
        auth: dict = {"check": rid.rsplit(".", 1)[-1]}
        if protocol:
            auth["protocol"] = protocol
        if role:
            auth["role"] = role
        if device:
            auth["device"] = device
        if expected is not None:
            auth["expected"] = str(expected)
        if seen is not None:
            auth["seen"] = str(seen)
        if client_id is not None:
            auth["client_id"] = client_id
        if extra:
            auth.update(extra)
        x: dict = {"auth": auth}
        if cert:
            x["certificate"] = certificate_extra(cert, role)
            auth["findings"] = [fi.check for fi in self.judge.findings(cert, ts)]
        evp = getattr(ev, "protocol", None)
        return Alert(ts=ts, rule_id=r.id, rule_name=r.name, description=r.description,
                     severity=severity or r.severity, reason=reason, source="auth",
                     techniques=techniques(*r.attack), event=ev,
                     protocol=evp if isinstance(evp, str) else protocol, count=count, extra=x)

    def _repeat(self, lim: LimitEntry, ts: int) -> Alert:
        rid, ev, _ts, reason, *rest = lim.last
        n = lim.suppressed
        lim.suppressed = 0
        return self._alert(rid, ev, ts, f"{reason} (seen {n} more time(s) within {self.realert // NS} s of its alert; "
                                        f"last at {rfc3339(lim.last[2])})",
                           *rest, count=n)

    def flush(self, ts: int):
        out = []
        for fid in list(self.pending_none):
            self._release_none(fid, out)
        out.extend(self._repeat(lim, ts) for _, lim in self.limiter.pending())
        out.extend(_cap_alerts(self.caps.values(), ts, None))
        return out


_EXPECTED = {
    "untrusted": "a chain to a CA in the trust store", "bad_signature": "a signature by the named issuer",
    "expired": "within its validity", "not_yet_valid": "within its validity",
    "expiring_soon": "valid beyond the warning period", "self_signed": "issued by a trusted CA",
    "weak_key": "RSA >= 2048 bits or EC >= 256 bits", "weak_signature": "SHA-256 or stronger",
    "revoked": "not on the issuer's CRL", "crl_stale": "a current CRL", "crl_unverified": "a CRL signed by the issuer",
    "ca_expired": "a CA within its validity", "unparsable": "a valid X.509 certificate",
    "no_trust_store": "verification against a trust store", "unverified": "the certificate's bytes",
}


def _cap_alerts(caps, ts: int, gate: list | None) -> list:
    """One memory_cap alert naming the tables that forgot keys since the last one, at most one a minute."""
    from ..bounds import memory_cap_alert
    if gate is not None:
        if gate[0] is not None and ts - gate[0] < 60 * NS:
            return []
        gate[0] = ts
    due = []
    for c in caps:
        if c.hits != c.reported:
            c.last_notice = None
            d = c.report(ts)
            if d is not None:
                if c.name == "auth.pending_none":  # released, not dropped: every finding still alerts
                    d["alerted_early"] = d.pop("forgotten")
                due.append(d)
    return [memory_cap_alert(ts, due, "auth", "shares of limits.auth_state_bytes")] if due else []


def _merge(fs: list[Finding]) -> list[Finding]:
    """One finding per check (messages joined), strongest severity kept."""
    order = ("info", "low", "medium", "high", "critical")
    by: dict[str, Finding] = {}
    for f in fs:
        o = by.get(f.check)
        if o is None:
            by[f.check] = f
        else:
            sev = max(o.severity, f.severity, key=order.index)
            by[f.check] = Finding(f.check, sev, f"{o.message}; {f.message}")
    return list(by.values())
