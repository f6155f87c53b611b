"""TLS handshake message parsers: pure functions from one handshake message body to typed records
(ids.protocols.tls.messages.TlsClientHello / TlsServerHello) or the DER certificates of a Certificate message.

They never raise on bad input: a body that does not parse returns None (the session records the anomaly).
Records, fragments and state are session.py's; certificate decoding is certificates.py's.
"""
from __future__ import annotations

from .messages import TlsClientHello, TlsServerHello
from .consts import GREASE, HRR_RANDOM


class _Bad(Exception):
    pass


def _u8v(b: bytes, off: int, end: int) -> tuple[bytes, int]:
    if off >= end:
        raise _Bad
    p = off + 1 + b[off]
    if p > end:
        raise _Bad
    return b[off + 1:p], p


def _u16v(b: bytes, off: int, end: int) -> tuple[bytes, int]:
    if off + 2 > end:
        raise _Bad
    p = off + 2 + ((b[off] << 8) | b[off + 1])
    if p > end:
        raise _Bad
    return b[off + 2:p], p


def _u16s(raw: bytes) -> tuple[int, ...]:
    return tuple((raw[i] << 8) | raw[i + 1] for i in range(0, len(raw) - 1, 2))


def _extensions(b: bytes, off: int, end: int) -> list[tuple[int, bytes]]:
    out = []
    if off >= end:  # extensions are optional before TLS 1.3
        return out
    raw, p = _u16v(b, off, end)
    q, e = 0, len(raw)
    while q < e:
        if q + 4 > e:
            raise _Bad
        t = (raw[q] << 8) | raw[q + 1]
        data, q = _u16v(raw, q + 2, e)
        out.append((t, data))
    return out


def _alpn(data: bytes) -> tuple[str, ...]:
    raw, _ = _u16v(data, 0, len(data))
    out, q = [], 0
    while q < len(raw):
        name, q = _u8v(raw, q, len(raw))
        out.append(name.decode("ascii", "backslashreplace"))
    return tuple(out)


def _sni(data: bytes) -> str | None:
    raw, _ = _u16v(data, 0, len(data))
    q = 0
    while q + 3 <= len(raw):
        kind = raw[q]
        name, q = _u16v(raw, q + 1, len(raw))
        if kind == 0:  # host_name
            return name.decode("ascii", "backslashreplace")
    return None


def _j(vals) -> str:
    return "-".join(str(v) for v in vals if v not in GREASE)


def parse_client_hello(b: bytes) -> TlsClientHello | None:
    """ClientHello (RFC 8446 4.1.2) -> record with the JA3 string
    (version,ciphers,extensions,groups,point formats; decimal, '-'-joined, GREASE removed)."""
    try:
        end = len(b)
        if end < 34:
            raise _Bad
        version = (b[0] << 8) | b[1]
        sid, p = _u8v(b, 34, end)
        ciphers_raw, p = _u16v(b, p, end)
        _, p = _u8v(b, p, end)  # compression methods
        exts = _extensions(b, p, end)
        ciphers = _u16s(ciphers_raw)
        groups: tuple = ()
        points: tuple = ()
        sni = None
        alpn: tuple = ()
        versions: tuple = ()
        for t, data in exts:
            if t == 10:
                groups = _u16s(_u16v(data, 0, len(data))[0])
            elif t == 11:
                points = tuple(_u8v(data, 0, len(data))[0])
            elif t == 0 and data:
                sni = _sni(data)
            elif t == 16:
                alpn = _alpn(data)
            elif t == 43:
                versions = tuple(v for v in _u16s(_u8v(data, 0, len(data))[0]) if v not in GREASE)
        ext_types = tuple(t for t, _ in exts)
        ja3 = ",".join((str(version), _j(ciphers), _j(ext_types), _j(groups), _j(points)))
        return TlsClientHello(version, ciphers, ext_types, groups, points, sni, alpn, versions, sid, ja3)
    except (_Bad, IndexError):
        return None


def parse_server_hello(b: bytes) -> tuple[TlsServerHello | None, bool]:
    """ServerHello (RFC 8446 4.1.3) -> (record, is a HelloRetryRequest)."""
    try:
        end = len(b)
        if end < 34:
            raise _Bad
        version = (b[0] << 8) | b[1]
        hrr = b[2:34] == HRR_RANDOM
        sid, p = _u8v(b, 34, end)
        if p + 3 > end:
            raise _Bad
        cipher = (b[p] << 8) | b[p + 1]
        p += 3  # cipher suite, compression method
        exts = _extensions(b, p, end)
        selected = None
        alpn = None
        for t, data in exts:
            if t == 43 and len(data) >= 2:
                selected = (data[0] << 8) | data[1]
            elif t == 16:
                names = _alpn(data)
                alpn = names[0] if names else None
        ext_types = tuple(t for t, _ in exts)
        ja3s = ",".join((str(version), str(cipher), _j(ext_types)))
        return TlsServerHello(version, cipher, ext_types, selected, alpn, sid, ja3s), hrr
    except (_Bad, IndexError):
        return None, False


def parse_certificate(b: bytes) -> list[bytes] | None:
    """Certificate message of TLS <= 1.2 (RFC 5246 7.4.2): a 24-bit-length list of 24-bit-length DER
    certificates, leaf first."""
    end = len(b)
    if end < 3:
        return None
    total = (b[0] << 16) | (b[1] << 8) | b[2]
    if 3 + total != end:
        return None
    out, p = [], 3
    while p < end:
        if p + 3 > end:
            return None
        n = (b[p] << 16) | (b[p + 1] << 8) | b[p + 2]
        p += 3
        if p + n > end:
            return None
        out.append(b[p:p + n])
        p += n
    return out
