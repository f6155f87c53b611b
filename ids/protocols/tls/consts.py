"""TLS constants (RFC 5246 TLS 1.2, RFC 8446 TLS 1.3, IANA TLS parameters registry), each with its source.
Unknown values are named `unknown-N` (cipher suites `unknown-0xNNNN`), never dropped."""
from __future__ import annotations

from enum import IntEnum

from .ciphers import CIPHER_SUITES


class ContentType(IntEnum):
    """TLSPlaintext.type (RFC 8446 section 5.1)."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24  # RFC 6520


class HandshakeType(IntEnum):
    """RFC 8446 section 4 (and RFC 5246 section 7.4 for the TLS 1.2-only types)."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    CERTIFICATE_STATUS = 22  # RFC 6066
    KEY_UPDATE = 24


class Extension(IntEnum):
    """Extension types used here (IANA "TLS ExtensionType Values")."""

    SERVER_NAME = 0  # RFC 6066
    SUPPORTED_GROUPS = 10  # RFC 8422 / 7919
    EC_POINT_FORMATS = 11  # RFC 8422
    ALPN = 16  # RFC 7301
    SUPPORTED_VERSIONS = 43  # RFC 8446 4.2.1


#: RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

#: GREASE values (RFC 8701): 0x0A0A, 0x1A1A ... 0xFAFA; left out of JA3 fingerprints.
GREASE = frozenset((b << 8) | b for b in range(0x0A, 0x100, 0x10))

#: Largest TLSCiphertext fragment (RFC 5246 6.2.3: 2^14 + 2048); a longer record is not TLS.
MAX_RECORD = (1 << 14) + 2048

#: Alert descriptions (RFC 8446 section 6, RFC 5246 7.2).
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
          22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
          42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
          45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
          49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction",
          70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
          86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
          110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
          113: "bad_certificate_status_response", 114: "bad_certificate_hash_value", 115: "unknown_psk_identity",
          116: "certificate_required", 120: "no_application_protocol"}


def alert_name(code: int) -> str:
    return ALERTS.get(code, f"unknown-{code}")


def cipher_name(code: int) -> str:
    return CIPHER_SUITES.get(code) or f"unknown-0x{code:04X}"


def version_text(v: int) -> tuple[str, str]:
    """Protocol version -> (ECS tls.version_protocol, tls.version): 0x0303 -> ("tls", "1.2")."""
    if v == 0x0300:
        return "ssl", "3.0"
    if 0x0301 <= v <= 0x0304:
        return "tls", f"1.{v - 0x0301}"
    if v & 0xFF00 == 0x7F00:  # TLS 1.3 drafts
        return "tls", f"1.3-draft-{v & 0xFF}"
    return "unknown", f"0x{v:04x}"


# Anomaly names (ours; Suricata's TLS events are a different, larger set).
MALFORMED_RECORD = "malformed_record"  # a record header that is not TLS, or a record longer than MAX_RECORD
MALFORMED_HANDSHAKE = "malformed_handshake"  # a hello or certificate message that does not parse
HANDSHAKE_TOO_LARGE = "handshake_too_large"  # over tls.max_handshake_bytes: dissection of that side stops
CERTIFICATES_TRUNCATED = "certificates_truncated"  # more certificates than tls.max_certificates
