"""OPC UA Binary decoding (OPC 10000-6): pure functions over bytes for the transport messages (HEL, ACK,
ERR, RHE), the secure-conversation headers (OPN asymmetric, MSG/CLO symmetric, sequence header), the
built-in types of section 5.2 and the bodies of the services otids reports on.

Decoders follow `decode_x(buf, off) -> (value, next_off)` and raise `Bad` on input that cannot be what it
claims (truncated, impossible length, too deep); every array length is checked against the bytes left so
a loop always makes progress, nesting is limited by MAX_DEPTH, and kept values are capped. `parse_*` entry
points catch `Bad` and return what was read plus anomaly names, so nothing here raises on bad input.
Framing, chunk reassembly, channel state and pairing live in session.py.
"""
from __future__ import annotations

import base64
import struct
from datetime import datetime, timezone

from .consts import (APPLICATION_TYPE_NAMES, BUILTIN_NAMES, ENCODINGS, IDENTITY_TOKENS, MAX_POLICY_URI,
                     MAX_URL, SECURITY_MODE_NAMES, SERVICE_FAULT, SERVICE_REQUESTS, SERVICE_RESPONSES,
                     TOKEN_REQUEST_NAMES, USER_TOKEN_TYPE_NAMES, attribute_name, status_name)


class Bad(Exception):
    """The bytes cannot be decoded as the type claimed (anomaly name in args[0])."""


_U8 = struct.Struct("<B").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_I64 = struct.Struct("<q").unpack_from
_F64 = struct.Struct("<d").unpack_from
_BH = struct.Struct("<BH").unpack_from
_HI = struct.Struct("<HI").unpack_from
_IHH = struct.Struct("<IHH").unpack_from
_II = struct.Struct("<II").unpack_from
_5I = struct.Struct("<5I").unpack_from
HEADER = struct.Struct("<3scI")  # message type, chunk type, message size (6.7.2.2 / 7.1.2.2)
_HDR_CH = struct.Struct("<3scII").unpack_from  # ... plus secure channel id
_SEQ = _II  # sequence number, request id (6.7.2.4)

MAX_DEPTH = 8  # nesting of Variant / DataValue / DiagnosticInfo / ExtensionObject bodies
MAX_STRING = 1 << 24  # no single String or ByteString in one message is larger in practice
TEXT_CAP = 1024  # characters of a string value kept in an event

#: Fixed sizes of scalar built-in types (for skipping array elements we do not keep).
_FIXED = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 4, 11: 8, 13: 8, 14: 16, 19: 4}
_SCALAR = {1: struct.Struct("<?"), 2: struct.Struct("<b"), 3: struct.Struct("<B"), 4: struct.Struct("<h"),
           5: struct.Struct("<H"), 6: struct.Struct("<i"), 7: struct.Struct("<I"), 8: struct.Struct("<q"),
           9: struct.Struct("<Q"), 10: struct.Struct("<f"), 11: struct.Struct("<d"), 19: struct.Struct("<I")}

_EPOCH_DELTA = 116444736000000000  # 100 ns intervals between 1601-01-01 and 1970-01-01


# ---------------------------------------------------------------------------------------------- primitives

def _need(buf: bytes, off: int, n: int) -> None:
    if off + n > len(buf):
        raise Bad("truncated")


def u32(buf: bytes, off: int) -> tuple[int, int]:
    _need(buf, off, 4)
    return _U32(buf, off)[0], off + 4


def u8(buf: bytes, off: int) -> tuple[int, int]:
    _need(buf, off, 1)
    return buf[off], off + 1


def boolean(buf: bytes, off: int) -> tuple[bool, int]:
    _need(buf, off, 1)
    return buf[off] != 0, off + 1


def double(buf: bytes, off: int) -> tuple[float, int]:
    _need(buf, off, 8)
    return _F64(buf, off)[0], off + 8


def bytestring(buf: bytes, off: int, limit: int = MAX_STRING) -> tuple[bytes | None, int]:
    """ByteString (5.2.2.7): Int32 length, -1 = null."""
    _need(buf, off, 4)
    n = _I32(buf, off)[0]
    off += 4
    if n < 0:
        if n != -1:
            raise Bad("negative_length")
        return None, off
    if n > limit:
        raise Bad("length_too_large")
    end = off + n
    if end > len(buf):
        raise Bad("truncated")
    return buf[off:end], end


def string(buf: bytes, off: int, limit: int = MAX_STRING) -> tuple[str | None, int]:
    """String (5.2.2.4): UTF-8 ByteString; invalid UTF-8 kept with escapes rather than rejected."""
    raw, off = bytestring(buf, off, limit)
    if raw is None:
        return None, off
    return raw.decode("utf-8", "backslashreplace"), off


def datetime_ns(buf: bytes, off: int) -> tuple[int | None, int]:
    """DateTime (5.2.2.5): Int64 count of 100 ns since 1601; 0 and max mean 'not set'."""
    _need(buf, off, 8)
    v = _I64(buf, off)[0]
    if v <= 0 or v >= 0x7FFFFFFFFFFFFFFF or v < _EPOCH_DELTA:
        return None, off + 8
    return (v - _EPOCH_DELTA) * 100, off + 8


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    sec, rem = divmod(ns, 1_000_000_000)
    try:
        return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1000:06d}Z"
    except (OverflowError, OSError, ValueError):
        return None


def guid(buf: bytes, off: int) -> tuple[str, int]:
    _need(buf, off, 16)
    d1, d2, d3 = _IHH(buf, off)
    d4 = buf[off + 8:off + 16]
    return f"{d1:08x}-{d2:04x}-{d3:04x}-{d4[:2].hex()}-{d4[2:].hex()}", off + 16


def array_len(buf: bytes, off: int, min_size: int = 1) -> tuple[int, int]:
    """Array length (5.2.5): Int32, -1 = null (returned as 0). Checked against the bytes left so that a
    hostile count cannot make a loop run longer than the message."""
    _need(buf, off, 4)
    n = _I32(buf, off)[0]
    off += 4
    if n < 0:
        if n != -1:
            raise Bad("negative_length")
        return 0, off
    if n * min_size > len(buf) - off:
        raise Bad("array_length_exceeds_message")
    return n, off


# ---------------------------------------------------------------------------------------------- NodeId

def _id_text(ns: int, kind: str, ident) -> str:
    return f"{kind}={ident}" if ns == 0 else f"ns={ns};{kind}={ident}"


def nodeid(buf: bytes, off: int) -> tuple[str, int]:
    """NodeId (5.2.2.9), all six encodings, as the standard string form (ns=2;s=Line3.Speed, i=85)."""
    _need(buf, off, 1)
    enc = buf[off]
    return _nodeid_body(buf, off + 1, enc & 0x3F)


def _nodeid_body(buf: bytes, off: int, enc: int) -> tuple[str, int]:
    if enc == 0:
        _need(buf, off, 1)
        return f"i={buf[off]}", off + 1
    if enc == 1:
        _need(buf, off, 3)
        ns, i = _BH(buf, off)
        return _id_text(ns, "i", i), off + 3
    if enc == 2:
        _need(buf, off, 6)
        ns, i = _HI(buf, off)
        return _id_text(ns, "i", i), off + 6
    _need(buf, off, 2)
    ns = _U16(buf, off)[0]
    off += 2
    if enc == 3:
        s, off = string(buf, off)
        return _id_text(ns, "s", s if s is not None else ""), off
    if enc == 4:
        g, off = guid(buf, off)
        return _id_text(ns, "g", g), off
    if enc == 5:
        b, off = bytestring(buf, off)
        return _id_text(ns, "b", base64.b64encode(b or b"").decode()), off
    raise Bad("bad_nodeid_encoding")


def expanded_nodeid(buf: bytes, off: int) -> tuple[str, int]:
    """ExpandedNodeId (5.2.2.10): NodeId plus optional NamespaceUri (0x80) and ServerIndex (0x40)."""
    _need(buf, off, 1)
    enc = buf[off]
    text, off = _nodeid_body(buf, off + 1, enc & 0x3F)
    if enc & 0x80:
        uri, off = string(buf, off)
        # with a NamespaceUri the namespace index is not used (5.2.2.10): nsu= replaces ns=
        kind = text.split(";")[-1]
        text = f"nsu={uri};{kind}"
    if enc & 0x40:
        srv, off = u32(buf, off)
        text = f"svr={srv};{text}"
    return text, off


def type_id(buf: bytes, off: int) -> tuple[int | None, str, int]:
    """The NodeId that starts a message body: (numeric id when ns=0 numeric, else None; text; next)."""
    text, nxt = nodeid(buf, off)
    if text.startswith("i="):
        return int(text[2:]), text, nxt
    return None, text, nxt


def numeric_ns0(text: str) -> int | None:
    return int(text[2:]) if text.startswith("i=") else None


# ---------------------------------------------------------------------------------------------- structured built-ins

def qualified_name(buf: bytes, off: int) -> tuple[str, int]:
    """QualifiedName (5.2.2.13) as ns:name (ns 0 bare), the form OPC 10000-6 5.3.1.14 uses."""
    _need(buf, off, 2)
    ns = _U16(buf, off)[0]
    name, off = string(buf, off + 2)
    name = name or ""
    return (f"{ns}:{name}" if ns else name), off


def localized_text(buf: bytes, off: int) -> tuple[tuple[str | None, str | None], int]:
    """LocalizedText (5.2.2.14): mask 0x01 locale, 0x02 text."""
    _need(buf, off, 1)
    mask = buf[off]
    off += 1
    locale = text = None
    if mask & 0x01:
        locale, off = string(buf, off)
    if mask & 0x02:
        text, off = string(buf, off)
    return (locale, text), off


def extension_object(buf: bytes, off: int) -> tuple[tuple[str, int | None, bytes | None], int]:
    """ExtensionObject (5.2.2.15): TypeId NodeId, encoding 0 none / 1 ByteString body / 2 XmlElement."""
    tid_text, off = nodeid(buf, off)
    _need(buf, off, 1)
    enc = buf[off]
    off += 1
    body = None
    if enc in (1, 2):
        body, off = bytestring(buf, off)
    elif enc != 0:
        raise Bad("bad_extension_object_encoding")
    return (tid_text, numeric_ns0(tid_text), body), off


def diagnostic_info(buf: bytes, off: int, depth: int = 0) -> tuple[dict | None, int]:
    """DiagnosticInfo (5.2.2.12), inner DiagnosticInfo recursive up to MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise Bad("depth_limit")
    _need(buf, off, 1)
    mask = buf[off]
    off += 1
    if not mask:
        return None, off
    d: dict = {}
    for bit, key in ((0x01, "symbolic_id"), (0x02, "namespace_uri"), (0x04, "localized_text"), (0x08, "locale")):
        if mask & bit:
            _need(buf, off, 4)
            d[key] = _I32(buf, off)[0]
            off += 4
    if mask & 0x10:
        d["additional_info"], off = string(buf, off)
    if mask & 0x20:
        code, off = u32(buf, off)
        d["inner_status_code"] = code
        d["inner_status"] = status_name(code)
    if mask & 0x40:
        d["inner_diagnostic_info"], off = diagnostic_info(buf, off, depth + 1)
    return d, off


def _text_cap(s: str | None) -> str | None:
    return s if s is None or len(s) <= TEXT_CAP else s[:TEXT_CAP]


def _scalar(buf: bytes, off: int, t: int, depth: int, keep: bool):
    """One Variant element of built-in type t. Returns (value or None when not kept, next offset)."""
    st = _SCALAR.get(t)
    if st is not None:
        _need(buf, off, st.size)
        if not keep:
            return None, off + st.size
        v = st.unpack_from(buf, off)[0]
        if t == 10 and v != v:  # NaN has no JSON form
            v = "NaN"
        return v, off + st.size
    if t == 12:
        s, off = string(buf, off)
        return _text_cap(s), off
    if t == 13:
        ns, off = datetime_ns(buf, off)
        return iso(ns), off
    if t == 14:
        return guid(buf, off)
    if t in (15, 16):
        b, off = bytestring(buf, off)
        return (None if b is None else b[:64].hex()), off
    if t == 17:
        return nodeid(buf, off)
    if t == 18:
        return expanded_nodeid(buf, off)
    if t == 20:
        return qualified_name(buf, off)
    if t == 21:
        (loc, text), off = localized_text(buf, off)
        return text, off
    if t == 22:
        if depth >= MAX_DEPTH:
            raise Bad("depth_limit")
        (tid, num, body), off = extension_object(buf, off)
        return {"type_id": tid, "type": ENCODINGS.get(num, tid) if num is not None else tid,
                "length": len(body) if body is not None else 0}, off
    if t == 23:
        return data_value(buf, off, depth + 1)
    if t == 24:
        return variant(buf, off, depth + 1)
    if t == 25:
        return diagnostic_info(buf, off, depth + 1)
    raise Bad("bad_variant_type")


def variant(buf: bytes, off: int, depth: int = 0, cap: int = 32) -> tuple[dict | None, int]:
    """Variant (5.2.2.16): mask = built-in type | 0x80 array | 0x40 dimensions. Array elements beyond `cap`
    are skipped (their bytes still checked) and the result says `truncated`."""
    if depth > MAX_DEPTH:
        raise Bad("depth_limit")
    _need(buf, off, 1)
    mask = buf[off]
    off += 1
    t = mask & 0x3F
    if t == 0:
        return None, off
    if t > 25:
        raise Bad("bad_variant_type")
    out: dict = {"type": BUILTIN_NAMES[t]}
    if mask & 0x80:
        n, off = array_len(buf, off, _FIXED.get(t, 1))
        fixed = _FIXED.get(t)
        keep = min(n, cap)
        vals = []
        for _ in range(keep):
            v, off = _scalar(buf, off, t, depth, True)
            vals.append(v)
        if n > keep:
            if fixed is not None:
                _need(buf, off, fixed * (n - keep))
                off += fixed * (n - keep)
            else:
                for _ in range(n - keep):
                    nxt = _scalar(buf, off, t, depth, False)[1]
                    if nxt <= off:
                        raise Bad("no_progress")
                    off = nxt
            out["truncated"] = True
        out["value"] = vals
        out["array_length"] = n
        if mask & 0x40:
            nd, off = array_len(buf, off, 4)
            _need(buf, off, 4 * nd)
            out["dimensions"] = list(struct.unpack_from(f"<{min(nd, 8)}i", buf, off))
            off += 4 * nd
    else:
        out["value"], off = _scalar(buf, off, t, depth, True)
    return out, off


def data_value(buf: bytes, off: int, depth: int = 0) -> tuple[dict, int]:
    """DataValue (5.2.2.17): mask 0x01 value, 0x02 status, 0x04/0x08 source/server time, 0x10/0x20 picos."""
    if depth > MAX_DEPTH:
        raise Bad("depth_limit")
    _need(buf, off, 1)
    mask = buf[off]
    off += 1
    d: dict = {}
    if mask & 0x01:
        v, off = variant(buf, off, depth + 1)
        if v is not None:
            d["type"] = v["type"]
            d["value"] = v.get("value")
            if v.get("truncated"):
                d["truncated"] = True
            if "array_length" in v:
                d["array_length"] = v["array_length"]
    if mask & 0x02:
        code, off = u32(buf, off)
        d["status_code"] = code
        d["status"] = status_name(code)
    if mask & 0x04:
        ts, off = datetime_ns(buf, off)
        d["source_timestamp"] = iso(ts)
    if mask & 0x10:
        _need(buf, off, 2)
        off += 2
    if mask & 0x08:
        ts, off = datetime_ns(buf, off)
        d["server_timestamp"] = iso(ts)
    if mask & 0x20:
        _need(buf, off, 2)
        off += 2
    return d, off


def array(buf: bytes, off: int, fn, cap: int, min_size: int = 1) -> tuple[list, int, int]:
    """Array of elements decoded by fn(buf, off) -> (v, off); keeps at most `cap` of them but decodes all
    (the message must stay in step). Returns (kept, total count, next offset)."""
    n, off = array_len(buf, off, min_size)
    out = []
    for i in range(n):
        v, nxt = fn(buf, off)
        if nxt <= off:
            raise Bad("no_progress")
        off = nxt
        if i < cap:
            out.append(v)
    return out, n, off


# ---------------------------------------------------------------------------------------------- transport messages

def parse_hello(buf: bytes) -> tuple[dict, tuple]:
    """HEL (7.1.2.3) after the 8-byte header: version, receive/send buffer, max message, max chunks, URL."""
    if len(buf) < 20:
        return {}, ("malformed_message",)
    ver, rbs, sbs, mms, mcc = _5I(buf, 0)
    d = {"protocol_version": ver, "receive_buffer_size": rbs, "send_buffer_size": sbs,
         "max_message_size": mms, "max_chunk_count": mcc}
    an: tuple = ()
    try:
        url, off = string(buf, 20, MAX_URL)
        d["endpoint_url"] = url
        if off != len(buf):
            an = ("malformed_message",)
    except Bad:
        an = ("malformed_message",)
    if rbs < 8192 or sbs < 8192:
        an += ("buffer_size_below_minimum",)
    return d, an


def parse_ack(buf: bytes) -> tuple[dict, tuple]:
    """ACK (7.1.2.4): version, receive/send buffer, max message, max chunks."""
    if len(buf) != 20:
        if len(buf) < 20:
            return {}, ("malformed_message",)
    ver, rbs, sbs, mms, mcc = _5I(buf, 0)
    d = {"protocol_version": ver, "receive_buffer_size": rbs, "send_buffer_size": sbs,
         "max_message_size": mms, "max_chunk_count": mcc}
    an: tuple = () if len(buf) == 20 else ("malformed_message",)
    if rbs < 8192 or sbs < 8192:
        an += ("buffer_size_below_minimum",)
    return d, an


def parse_error(buf: bytes) -> tuple[dict, tuple]:
    """ERR (7.1.2.5) and the body of an abort chunk (6.7.3): StatusCode error, String reason."""
    if len(buf) < 4:
        return {}, ("malformed_message",)
    code = _U32(buf, 0)[0]
    d = {"status_code": code, "status": status_name(code)}
    try:
        reason, off = string(buf, 4, MAX_URL)
        d["reason"] = reason
        return d, (() if off == len(buf) else ("malformed_message",))
    except Bad:
        return d, ("malformed_message",)


def parse_reverse_hello(buf: bytes) -> tuple[dict, tuple]:
    """RHE (7.1.2.6): ServerUri, EndpointUrl."""
    try:
        suri, off = string(buf, 0, MAX_URL)
        url, off = string(buf, off, MAX_URL)
        return {"server_uri": suri, "endpoint_url": url}, (() if off == len(buf) else ("malformed_message",))
    except Bad:
        return {}, ("malformed_message",)


def parse_asymmetric_header(buf: bytes, off: int) -> tuple[tuple[str | None, bytes | None, bytes | None], int]:
    """OPN asymmetric algorithm security header (6.7.2.3), in clear on every channel: SecurityPolicyUri,
    SenderCertificate (DER, possibly a chain), ReceiverCertificateThumbprint (SHA-1, 20 bytes)."""
    uri, off = string(buf, off, MAX_POLICY_URI)
    cert, off = bytestring(buf, off)
    thumb, off = bytestring(buf, off, 64)
    return (uri, cert, thumb), off


# ---------------------------------------------------------------------------------------------- service bodies

def request_header(buf: bytes, off: int) -> tuple[dict, int]:
    """RequestHeader (OPC 10000-4 7.33)."""
    tok, off = nodeid(buf, off)
    ts, off = datetime_ns(buf, off)
    _need(buf, off, 8)
    handle, diag = _II(buf, off)
    off += 8
    audit, off = string(buf, off)
    hint, off = u32(buf, off)
    (ah, _, _), off = extension_object(buf, off)
    h = {"request_handle": handle, "authentication_token_type": tok.split(";")[-1][:1], "timeout_hint": hint,
         "return_diagnostics": diag}
    if ts is not None:
        h["timestamp"] = iso(ts)
    if audit:
        h["audit_entry_id"] = _text_cap(audit)
    return h, off


def response_header(buf: bytes, off: int) -> tuple[dict, int]:
    """ResponseHeader (OPC 10000-4 7.34)."""
    ts, off = datetime_ns(buf, off)
    _need(buf, off, 8)
    handle, code = _II(buf, off)
    off += 8
    diag, off = diagnostic_info(buf, off)
    strings, n, off = array(buf, off, string, 16, 4)
    (ah, _, _), off = extension_object(buf, off)
    h = {"request_handle": handle, "status_code": code, "status": status_name(code)}
    if ts is not None:
        h["timestamp"] = iso(ts)
    if diag:
        h["diagnostic_info"] = diag
    if strings:
        h["string_table"] = strings
    return h, off


def _app_description(buf, off):
    uri, off = string(buf, off)
    prod, off = string(buf, off)
    (loc, name), off = localized_text(buf, off)
    atype, off = u32(buf, off)
    gw, off = string(buf, off)
    disc, off = string(buf, off)
    urls, n, off = array(buf, off, string, 16, 4)
    d = {"application_uri": uri, "product_uri": prod, "application_name": name,
         "application_type": APPLICATION_TYPE_NAMES.get(atype, f"unknown-{atype}")}
    if gw:
        d["gateway_server_uri"] = gw
    if disc:
        d["discovery_profile_uri"] = disc
    if urls:
        d["discovery_urls"] = urls
    return d, off


def _user_token_policy(buf, off):
    pid, off = string(buf, off)
    ttype, off = u32(buf, off)
    itt, off = string(buf, off)
    iep, off = string(buf, off)
    spu, off = string(buf, off)
    d = {"policy_id": pid, "token_type": USER_TOKEN_TYPE_NAMES.get(ttype, f"unknown-{ttype}")}
    if itt:
        d["issued_token_type"] = itt
    if iep:
        d["issuer_endpoint_url"] = iep
    if spu:
        d["security_policy_uri"] = spu
    return d, off


def _endpoint(buf, off):
    url, off = string(buf, off)
    server, off = _app_description(buf, off)
    cert, off = bytestring(buf, off)
    mode, off = u32(buf, off)
    spu, off = string(buf, off)
    tokens, n, off = array(buf, off, _user_token_policy, 16, 20)
    tprof, off = string(buf, off)
    level, off = u8(buf, off)
    d = {"endpoint_url": url, "server": server, "security_mode": SECURITY_MODE_NAMES.get(mode, f"unknown-{mode}"),
         "security_policy_uri": spu, "user_token_policies": tokens, "transport_profile_uri": tprof,
         "security_level": level}
    return (d, cert), off


def _signature(buf, off):
    alg, off = string(buf, off)
    sig, off = bytestring(buf, off)
    return alg, off


def _software_cert(buf, off):
    data, off = bytestring(buf, off)
    sig, off = bytestring(buf, off)
    return len(data or b""), off


def _read_value_id(buf, off):
    node, off = nodeid(buf, off)
    aid, off = u32(buf, off)
    rng, off = string(buf, off)
    enc, off = qualified_name(buf, off)
    d = {"node": node, "attribute": attribute_name(aid)}
    if rng:
        d["index_range"] = rng
    if enc:
        d["data_encoding"] = enc
    return d, off


def _status(buf, off):
    code, off = u32(buf, off)
    return code, off


def _diag(buf, off):
    return diagnostic_info(buf, off)


class Body:
    """What one decoded service message yields for the session and the event."""

    __slots__ = ("kind", "service", "type_id", "header", "details", "nodes", "certs", "anomalies",
                 "identity", "token_type")

    def __init__(self, kind: str, service: str, type_id: int | None):
        self.kind = kind  # request | response | fault | unknown
        self.service = service
        self.type_id = type_id
        self.header: dict | None = None
        self.details: dict = {}
        self.nodes: list[str] = []
        self.certs: list[tuple[str, bytes]] = []  # (role, DER or chain)
        self.anomalies: tuple = ()
        self.identity: dict | None = None


def parse_body(buf: bytes, cap: int = 32) -> Body:
    """A whole (reassembled) message body: TypeId NodeId, then request/response header and the service
    parameters. Never raises: what could not be decoded is an anomaly on the result."""
    try:
        tid, text, off = type_id(buf, 0)
    except Bad:
        b = Body("unknown", "unknown", None)
        b.anomalies = ("malformed_body",)
        return b
    if tid in SERVICE_REQUESTS:
        b = Body("request", SERVICE_REQUESTS[tid], tid)
        hdr = request_header
        fn = _REQUESTS.get(b.service)
    elif tid in SERVICE_RESPONSES:
        b = Body("response", SERVICE_RESPONSES[tid], tid)
        hdr = response_header
        fn = _RESPONSES.get(b.service)
    elif tid == SERVICE_FAULT:
        b = Body("fault", "ServiceFault", tid)
        hdr = response_header
        fn = None
    else:
        b = Body("unknown", f"unknown-{text}", tid)
        b.anomalies = ("unknown_service",)
        return b
    try:
        b.header, off = hdr(buf, off)
        if fn is not None:
            off = fn(buf, off, b, cap)
            if off != len(buf):
                b.anomalies += ("trailing_bytes",)
    except Bad as e:
        b.anomalies += ("malformed_body",) + ((e.args[0],) if e.args and e.args[0] == "depth_limit" else ())
    except (struct.error, IndexError, ValueError, KeyError):  # belt and braces: a decoder bug is not a crash
        b.anomalies += ("malformed_body",)
    return b


# Each service decoder: fn(buf, off, body, cap) -> next offset; fills body.details / nodes / certs as it
# goes so a body cut short still reports what came before the cut.

def _q_open_secure_channel(buf, off, b, cap):
    d = b.details
    _need(buf, off, 12)
    ver, rtype, mode = struct.unpack_from("<III", buf, off)
    off += 12
    d["client_protocol_version"] = ver
    d["request_type"] = TOKEN_REQUEST_NAMES.get(rtype, f"unknown-{rtype}")
    d["security_mode"] = SECURITY_MODE_NAMES.get(mode, f"unknown-{mode}")
    nonce, off = bytestring(buf, off)
    d["client_nonce_length"] = len(nonce or b"")
    d["requested_lifetime"], off = u32(buf, off)
    return off


def _r_open_secure_channel(buf, off, b, cap):
    d = b.details
    d["server_protocol_version"], off = u32(buf, off)
    _need(buf, off, 8)
    d["secure_channel_id"], d["token_id"] = _II(buf, off)
    created, off = datetime_ns(buf, off + 8)
    d["token_created_at"] = iso(created)
    d["revised_lifetime"], off = u32(buf, off)
    nonce, off = bytestring(buf, off)
    d["server_nonce_length"] = len(nonce or b"")
    return off


def _q_get_endpoints(buf, off, b, cap):
    d = b.details
    d["endpoint_url"], off = string(buf, off)
    locales, n, off = array(buf, off, string, cap, 4)
    if locales:
        d["locale_ids"] = locales
    profiles, n, off = array(buf, off, string, cap, 4)
    if profiles:
        d["profile_uris"] = profiles
    return off


def _r_get_endpoints(buf, off, b, cap):
    eps, n, off = array(buf, off, _endpoint, cap, 30)
    out = []
    for e, cert in eps:
        if cert:
            b.certs.append(("server", cert))
            e["server_certificate_length"] = len(cert)
        out.append(e)
    b.details["endpoints"] = out
    b.details["endpoint_count"] = n
    return off


def _q_find_servers(buf, off, b, cap):
    d = b.details
    d["endpoint_url"], off = string(buf, off)
    locales, n, off = array(buf, off, string, cap, 4)
    uris, n, off = array(buf, off, string, cap, 4)
    if uris:
        d["server_uris"] = uris
    return off


def _r_find_servers(buf, off, b, cap):
    servers, n, off = array(buf, off, _app_description, cap, 20)
    b.details["servers"] = servers
    return off


def _q_create_session(buf, off, b, cap):
    d = b.details
    d["client"], off = _app_description(buf, off)
    d["server_uri"], off = string(buf, off)
    d["endpoint_url"], off = string(buf, off)
    d["session_name"], off = string(buf, off)
    nonce, off = bytestring(buf, off)
    cert, off = bytestring(buf, off)
    if cert:
        b.certs.append(("client", cert))
    d["requested_session_timeout"], off = double(buf, off)
    d["max_response_message_size"], off = u32(buf, off)
    return off


def _r_create_session(buf, off, b, cap):
    d = b.details
    d["session_id"], off = nodeid(buf, off)
    tok, off = nodeid(buf, off)  # authenticationToken: a secret bearer token, never reported
    d["revised_session_timeout"], off = double(buf, off)
    nonce, off = bytestring(buf, off)
    cert, off = bytestring(buf, off)
    if cert:
        b.certs.append(("server", cert))
    eps, n, off = array(buf, off, _endpoint, cap, 30)
    for e, ecert in eps:
        if ecert and ecert != cert:
            b.certs.append(("server", ecert))
    d["server_endpoints"] = [e for e, _ in eps]
    sw, n, off = array(buf, off, _software_cert, cap, 8)
    alg, off = _signature(buf, off)
    if alg:
        d["server_signature_algorithm"] = alg
    d["max_request_message_size"], off = u32(buf, off)
    return off


def _identity_token(eo, b):
    tid_text, num, body = eo
    name = IDENTITY_TOKENS.get(num)
    ident: dict = {"token_type": name or f"unknown-{tid_text}"}
    b.identity = ident
    if body is None or name is None:
        return
    try:
        pid, off = string(body, 0)
        ident["policy_id"] = pid
        if name == "UserName":
            ident["user_name"], off = string(body, off)
            pw, off = bytestring(body, off)  # the password (or its ciphertext): never reported
            ident["password_length"] = len(pw or b"")
            alg, off = string(body, off)
            if alg:
                ident["encryption_algorithm"] = alg
        elif name == "X509":
            cert, off = bytestring(body, off)
            if cert:
                b.certs.append(("user", cert))
        elif name == "Issued":
            data, off = bytestring(body, off)  # the token itself is a secret
            ident["token_data_length"] = len(data or b"")
            alg, off = string(body, off)
            if alg:
                ident["encryption_algorithm"] = alg
    except Bad:
        b.anomalies += ("malformed_identity_token",)


def _q_activate_session(buf, off, b, cap):
    d = b.details
    alg, off = _signature(buf, off)
    if alg:
        d["client_signature_algorithm"] = alg
    sw, n, off = array(buf, off, _software_cert, cap, 8)
    locales, n, off = array(buf, off, string, cap, 4)
    if locales:
        d["locale_ids"] = locales
    eo, off = extension_object(buf, off)
    _identity_token(eo, b)
    alg, off = _signature(buf, off)
    if alg:
        d["user_token_signature_algorithm"] = alg
    return off


def _results_and_diag(buf, off, b, cap):
    codes, n, off = array(buf, off, _status, cap, 4)
    b.details["results"] = [{"status_code": c, "status": status_name(c)} for c in codes]
    b.details["result_count"] = n
    diags, n, off = array(buf, off, _diag, cap)
    if any(diags):
        b.details["diagnostic_infos"] = [x for x in diags if x]
    return off


def _r_activate_session(buf, off, b, cap):
    nonce, off = bytestring(buf, off)
    return _results_and_diag(buf, off, b, cap)


def _q_close_session(buf, off, b, cap):
    b.details["delete_subscriptions"], off = boolean(buf, off)
    return off


def _q_read(buf, off, b, cap):
    d = b.details
    d["max_age"], off = double(buf, off)
    tsr, off = u32(buf, off)
    d["timestamps_to_return"] = {0: "Source", 1: "Server", 2: "Both", 3: "Neither"}.get(tsr, f"unknown-{tsr}")
    items, n, off = array(buf, off, _read_value_id, cap, 11)
    d["nodes_to_read"] = items
    d["node_count"] = n
    b.nodes = [i["node"] for i in items]
    return off


def _r_read(buf, off, b, cap):
    vals, n, off = array(buf, off, lambda bb, oo: data_value(bb, oo, 0), cap)
    b.details["results"] = vals
    b.details["result_count"] = n
    diags, n, off = array(buf, off, _diag, cap)
    if any(diags):
        b.details["diagnostic_infos"] = [x for x in diags if x]
    return off


def _write_value(buf, off):
    node, off = nodeid(buf, off)
    aid, off = u32(buf, off)
    rng, off = string(buf, off)
    dv, off = data_value(buf, off)
    d = {"node": node, "attribute": attribute_name(aid)}
    if rng:
        d["index_range"] = rng
    d.update(dv)
    return d, off


def _q_write(buf, off, b, cap):
    items, n, off = array(buf, off, _write_value, cap, 11)
    b.details["nodes_to_write"] = items
    b.details["node_count"] = n
    b.nodes = [i["node"] for i in items]
    return off


def _call_method(buf, off):
    obj, off = nodeid(buf, off)
    meth, off = nodeid(buf, off)
    args, n, off = array(buf, off, lambda bb, oo: variant(bb, oo, 1), 16)
    return {"object": obj, "method": meth, "argument_count": n,
            "arguments": [a for a in args if a is not None]}, off


def _q_call(buf, off, b, cap):
    items, n, off = array(buf, off, _call_method, cap, 7)
    b.details["methods_to_call"] = items
    b.details["method_count"] = n
    b.nodes = [i["method"] for i in items]
    return off


def _call_result(buf, off):
    code, off = u32(buf, off)
    codes, n, off = array(buf, off, _status, 16, 4)
    diags, n, off = array(buf, off, _diag, 16)
    outs, n, off = array(buf, off, lambda bb, oo: variant(bb, oo, 1), 16)
    return {"status_code": code, "status": status_name(code), "output_argument_count": n,
            "output_arguments": [o for o in outs if o is not None]}, off


def _r_call(buf, off, b, cap):
    items, n, off = array(buf, off, _call_result, cap, 16)
    b.details["results"] = items
    b.details["result_count"] = n
    diags, n, off = array(buf, off, _diag, cap)
    return off


def _browse_description(buf, off):
    node, off = nodeid(buf, off)
    direction, off = u32(buf, off)
    ref, off = nodeid(buf, off)
    sub, off = boolean(buf, off)
    _need(buf, off, 8)
    ncm, rm = _II(buf, off)
    return {"node": node, "browse_direction": {0: "Forward", 1: "Inverse", 2: "Both"}.get(direction, f"unknown-{direction}"),
            "reference_type": ref, "include_subtypes": sub, "node_class_mask": ncm, "result_mask": rm}, off + 8


def _q_browse(buf, off, b, cap):
    d = b.details
    view, off = nodeid(buf, off)
    ts, off = datetime_ns(buf, off)
    vv, off = u32(buf, off)
    if view != "i=0":
        d["view"] = view
    d["requested_max_references_per_node"], off = u32(buf, off)
    items, n, off = array(buf, off, _browse_description, cap, 17)
    d["nodes_to_browse"] = items
    d["node_count"] = n
    b.nodes = [i["node"] for i in items]
    return off


def _reference(buf, off):
    ref, off = nodeid(buf, off)
    fwd, off = boolean(buf, off)
    node, off = expanded_nodeid(buf, off)
    bname, off = qualified_name(buf, off)
    (loc, dname), off = localized_text(buf, off)
    ncls, off = u32(buf, off)
    tdef, off = expanded_nodeid(buf, off)
    return {"reference_type": ref, "is_forward": fwd, "node": node, "browse_name": bname,
            "display_name": dname, "node_class": ncls, "type_definition": tdef}, off


def _browse_result(buf, off):
    code, off = u32(buf, off)
    cp, off = bytestring(buf, off)
    refs, n, off = array(buf, off, _reference, 64, 12)
    d = {"status_code": code, "status": status_name(code), "reference_count": n, "references": refs}
    if cp:
        d["continuation_point_length"] = len(cp)
    return d, off


def _r_browse(buf, off, b, cap):
    items, n, off = array(buf, off, _browse_result, cap, 12)
    b.details["results"] = items
    b.details["result_count"] = n
    diags, n, off = array(buf, off, _diag, cap)
    return off


def _q_browse_next(buf, off, b, cap):
    b.details["release_continuation_points"], off = boolean(buf, off)
    cps, n, off = array(buf, off, bytestring, cap, 4)
    b.details["continuation_point_count"] = n
    return off


def _rel_element(buf, off):
    ref, off = nodeid(buf, off)
    inv, off = boolean(buf, off)
    sub, off = boolean(buf, off)
    name, off = qualified_name(buf, off)
    return {"reference_type": ref, "is_inverse": inv, "include_subtypes": sub, "target_name": name}, off


def _browse_path(buf, off):
    start, off = nodeid(buf, off)
    elems, n, off = array(buf, off, _rel_element, 16, 9)
    return {"starting_node": start, "path": "/".join(e["target_name"] for e in elems), "elements": elems}, off


def _q_translate(buf, off, b, cap):
    items, n, off = array(buf, off, _browse_path, cap, 6)
    b.details["browse_paths"] = items
    b.details["path_count"] = n
    b.nodes = [i["starting_node"] for i in items]
    return off


def _path_target(buf, off):
    tgt, off = expanded_nodeid(buf, off)
    rpi, off = u32(buf, off)
    return {"target": tgt, "remaining_path_index": rpi}, off


def _path_result(buf, off):
    code, off = u32(buf, off)
    tgts, n, off = array(buf, off, _path_target, 16, 6)
    return {"status_code": code, "status": status_name(code), "targets": tgts}, off


def _r_translate(buf, off, b, cap):
    items, n, off = array(buf, off, _path_result, cap, 8)
    b.details["results"] = items
    b.details["result_count"] = n
    diags, n, off = array(buf, off, _diag, cap)
    return off


def _q_create_subscription(buf, off, b, cap):
    d = b.details
    d["requested_publishing_interval"], off = double(buf, off)
    _need(buf, off, 12)
    d["requested_lifetime_count"], d["requested_max_keep_alive_count"], d["max_notifications_per_publish"] = \
        struct.unpack_from("<III", buf, off)
    off += 12
    d["publishing_enabled"], off = boolean(buf, off)
    d["priority"], off = u8(buf, off)
    return off


def _r_create_subscription(buf, off, b, cap):
    d = b.details
    d["subscription_id"], off = u32(buf, off)
    d["revised_publishing_interval"], off = double(buf, off)
    _need(buf, off, 8)
    d["revised_lifetime_count"], d["revised_max_keep_alive_count"] = _II(buf, off)
    return off + 8


def _monitored_item_create(buf, off):
    item, off = _read_value_id(buf, off)
    mode, off = u32(buf, off)
    handle, off = u32(buf, off)
    si, off = double(buf, off)
    (ftid, fnum, fbody), off = extension_object(buf, off)
    qs, off = u32(buf, off)
    disc, off = boolean(buf, off)
    item.update({"monitoring_mode": {0: "Disabled", 1: "Sampling", 2: "Reporting"}.get(mode, f"unknown-{mode}"),
                 "client_handle": handle, "sampling_interval": si, "queue_size": qs, "discard_oldest": disc})
    if fnum or (ftid != "i=0"):
        item["filter"] = ENCODINGS.get(fnum, ftid) if fnum is not None else ftid
    return item, off


def _q_create_monitored_items(buf, off, b, cap):
    d = b.details
    d["subscription_id"], off = u32(buf, off)
    tsr, off = u32(buf, off)
    items, n, off = array(buf, off, _monitored_item_create, cap, 30)
    d["items_to_create"] = items
    d["item_count"] = n
    b.nodes = [i["node"] for i in items]
    return off


def _monitored_item_result(buf, off):
    code, off = u32(buf, off)
    mid, off = u32(buf, off)
    si, off = double(buf, off)
    qs, off = u32(buf, off)
    (ftid, fnum, fbody), off = extension_object(buf, off)
    return {"status_code": code, "status": status_name(code), "monitored_item_id": mid,
            "revised_sampling_interval": si, "revised_queue_size": qs}, off


def _r_create_monitored_items(buf, off, b, cap):
    items, n, off = array(buf, off, _monitored_item_result, cap, 23)
    b.details["results"] = items
    b.details["result_count"] = n
    diags, n, off = array(buf, off, _diag, cap)
    return off


def _ack(buf, off):
    _need(buf, off, 8)
    s, n = _II(buf, off)
    return {"subscription_id": s, "sequence_number": n}, off + 8


def _q_publish(buf, off, b, cap):
    acks, n, off = array(buf, off, _ack, cap, 8)
    b.details["subscription_acknowledgements"] = acks
    return off


def _notification(buf, off):
    (tid, num, body), off = extension_object(buf, off)
    return (ENCODINGS.get(num, tid) if num is not None else tid), off


def _r_publish(buf, off, b, cap):
    d = b.details
    d["subscription_id"], off = u32(buf, off)
    avail, n, off = array(buf, off, _status, cap, 4)
    d["available_sequence_numbers"] = avail
    d["more_notifications"], off = boolean(buf, off)
    d["notification_sequence_number"], off = u32(buf, off)
    pt, off = datetime_ns(buf, off)
    d["publish_time"] = iso(pt)
    notes, n, off = array(buf, off, _notification, cap, 2)
    d["notification_data"] = notes
    return _results_and_diag(buf, off, b, cap)


def _q_register_nodes(buf, off, b, cap):
    nodes, n, off = array(buf, off, nodeid, cap, 2)
    b.details["node_count"] = n
    b.nodes = nodes
    return off


def _r_register_nodes(buf, off, b, cap):
    nodes, n, off = array(buf, off, nodeid, cap, 2)
    b.details["registered_node_ids"] = nodes
    return off


def _r_write(buf, off, b, cap):
    return _results_and_diag(buf, off, b, cap)


def _header_only(buf, off, b, cap):
    return off


_REQUESTS = {
    "OpenSecureChannel": _q_open_secure_channel, "CloseSecureChannel": _header_only,
    "GetEndpoints": _q_get_endpoints, "FindServers": _q_find_servers, "CreateSession": _q_create_session,
    "ActivateSession": _q_activate_session, "CloseSession": _q_close_session, "Read": _q_read,
    "Write": _q_write, "Call": _q_call, "Browse": _q_browse, "BrowseNext": _q_browse_next,
    "TranslateBrowsePathsToNodeIds": _q_translate, "CreateSubscription": _q_create_subscription,
    "CreateMonitoredItems": _q_create_monitored_items, "Publish": _q_publish,
    "RegisterNodes": _q_register_nodes, "UnregisterNodes": _q_register_nodes,
}
_RESPONSES = {
    "OpenSecureChannel": _r_open_secure_channel, "GetEndpoints": _r_get_endpoints,
    "FindServers": _r_find_servers, "CreateSession": _r_create_session, "ActivateSession": _r_activate_session,
    "CloseSession": _header_only, "Read": _r_read, "Write": _r_write, "Call": _r_call, "Browse": _r_browse,
    "BrowseNext": _r_browse, "TranslateBrowsePathsToNodeIds": _r_translate,
    "CreateSubscription": _r_create_subscription, "CreateMonitoredItems": _r_create_monitored_items,
    "Publish": _r_publish, "RegisterNodes": _r_register_nodes, "UnregisterNodes": _header_only,
}


def is_service_start(buf: bytes, off: int, msg_type: bytes) -> bool:
    """Does a chunk body start with the TypeId of a message this message type can carry? (Clear-text
    test for signed-only channels: ciphertext matches with probability ~1e-7.)"""
    if len(buf) < off + 4 or buf[off] != 1 or buf[off + 1] != 0:
        return False
    tid = _U16(buf, off + 2)[0]
    if msg_type == b"MSG":
        return tid in SERVICE_REQUESTS or tid in SERVICE_RESPONSES or tid == SERVICE_FAULT
    if msg_type == b"OPN":
        return tid in (446, 449) or tid == SERVICE_FAULT
    return tid == 452  # CLO
