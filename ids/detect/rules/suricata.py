"""Suricata rule import: `.rules` files with `modbus:` and the `mqtt.*` keywords and sticky buffers become
otids rules (same condition trees, same engine), so a SOC can bring the signatures it already has.

Semantics follow Suricata's documentation and detection code (rust/src/modbus/detect.rs,
rust/src/mqtt/detect.rs): Modbus addresses in `access` start at 1 (rule address N is PDU address N-1),
`<>` ranges are exclusive, MQTT keywords hold if any message of the exchange satisfies them, sticky-buffer
content chains must hold on one buffer (one subscribed topic), empty buffers never match. A keyword otids
does not support fails that rule with a message naming it; nothing is silently dropped. A rule keeps its sid
as `rule.id` and its msg as `rule.name`.
"""
from __future__ import annotations

import re

from ...errors import SourceLocation
from .compile import MISSING
from .rule import RuleSet
from .rule import All, Any_, Check, ListRef, Not, Predicate, Rule, Threshold, error

# classtype -> priority (Suricata's classification.config); priority -> severity
CLASSTYPE_PRIORITY = {
    "not-suspicious": 3, "unknown": 3, "bad-unknown": 2, "attempted-recon": 2, "successful-recon-limited": 2,
    "successful-recon-largescale": 2, "attempted-dos": 2, "successful-dos": 2, "attempted-user": 1,
    "unsuccessful-user": 1, "successful-user": 1, "attempted-admin": 1, "successful-admin": 1,
    "rpc-portmap-decode": 2, "shellcode-detect": 1, "string-detect": 3, "suspicious-filename-detect": 2,
    "suspicious-login": 2, "system-call-detect": 2, "tcp-connection": 4, "trojan-activity": 1,
    "unusual-client-port-connection": 2, "network-scan": 3, "denial-of-service": 2, "non-standard-protocol": 2,
    "protocol-command-decode": 3, "web-application-activity": 2, "web-application-attack": 1,
    "misc-activity": 3, "misc-attack": 2, "icmp-event": 3, "inappropriate-content": 1, "policy-violation": 1,
    "default-login-attempt": 2, "targeted-activity": 1, "exploit-kit": 1, "external-ip-check": 2,
    "domain-c2": 1, "pup-activity": 2, "credential-theft": 1, "social-engineering": 2, "coin-mining": 2,
    "command-and-control": 1,
}
PRIORITY_SEVERITY = {1: "high", 2: "medium", 3: "low", 4: "low"}
REFERENCE_PREFIX = {"url": "https://", "cve": "https://www.cve.org/CVERecord?id=CVE-", "bugtraq": None,
                    "md5": None, "nessus": None, "arachnids": None, "mcafee": None}

MQTT_TYPES = ["unassigned", "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
              "subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth"]
#: Fixed-header QoS bits that MQTT fixes for these types (MQTT 3.1.1 section 2.2.2: 0010).
MQTT_FIXED_QOS1 = {"subscribe", "unsubscribe", "pubrel"}

STICKY = {
    "mqtt.connect.clientid": ("mqtt.connect.client_id", "connect"),
    "mqtt.connect.username": ("mqtt.connect.username", "connect"),
    "mqtt.connect.password": ("mqtt.connect.password", "connect"),
    "mqtt.connect.protocol_string": ("mqtt.connect.protocol_string", "connect"),
    "mqtt.connect.willtopic": ("mqtt.connect.will.topic", "connect"),
    "mqtt.connect.willmessage": ("mqtt.connect.will.message", "connect"),
    "mqtt.publish.topic": ("mqtt.publish.topic", "publish"),
    "mqtt.publish.message": ("mqtt.publish.message", "publish"),
    "mqtt.subscribe.topic": ("mqtt.subscribe.topics.topic", "subscribe"),
    "mqtt.unsubscribe.topic": ("mqtt.unsubscribe.topics", "unsubscribe"),
}
#: Accepted and deliberately without effect on what matches (metadata, engine hints).
INERT = {"rev", "gid", "metadata", "target", "fast_pattern", "app-layer-protocol", "noalert"}
CONTENT_MODS = {"nocase", "startswith", "endswith", "depth", "offset", "fast_pattern"}


class SuricataError(Exception):
    def __init__(self, message: str, col: int | None = None):
        super().__init__(message)
        self.message = message
        self.col = col


# ---------------------------------------------------------------------------------------------- lexing

def split_options(body: str, base_col: int) -> list[tuple[str, str | None, int]]:
    """`key: value; key;` -> [(key, value, column)], honouring quotes and backslash escapes."""
    out, i, n = [], 0, len(body)
    while i < n:
        while i < n and body[i] in " \t":
            i += 1
        if i >= n:
            break
        start = i
        buf, inq = [], False
        while i < n:
            c = body[i]
            if c == "\\" and i + 1 < n:
                buf.append(body[i:i + 2])
                i += 2
                continue
            if c == '"':
                inq = not inq
            elif c == ";" and not inq:
                break
            buf.append(c)
            i += 1
        if inq:
            raise SuricataError("unterminated quoted string", base_col + start)
        if i >= n:
            raise SuricataError("option not terminated by ';'", base_col + start)
        text = "".join(buf).strip()
        i += 1
        if not text:
            continue
        if ":" in text:
            k, v = text.split(":", 1)
            out.append((k.strip(), v.strip(), base_col + start))
        else:
            out.append((text, None, base_col + start))
    return out


def unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1]
    return re.sub(r'\\(.)', r'\1', v)


def content_bytes(v: str) -> tuple[bytes, bool]:
    """Suricata content syntax: optional leading !, quotes, |hex| blocks, backslash escapes."""
    v = v.strip()
    neg = v.startswith("!")
    if neg:
        v = v[1:].strip()
    if not (len(v) >= 2 and v[0] == '"' and v[-1] == '"'):
        raise SuricataError(f"content must be quoted: {v!r}")
    v = v[1:-1]
    out = bytearray()
    i = 0
    while i < len(v):
        c = v[i]
        if c == "|":
            j = v.find("|", i + 1)
            if j < 0:
                raise SuricataError("unterminated |hex| in content")
            hx = v[i + 1:j].replace(" ", "")
            try:
                out += bytes.fromhex(hx)
            except ValueError:
                raise SuricataError(f"bad hex in content: |{v[i + 1:j]}|") from None
            i = j + 1
        elif c == "\\" and i + 1 < len(v):
            out += v[i + 1].encode()
            i += 2
        else:
            out += c.encode()
            i += 1
    return bytes(out), neg


def parse_uint(v: str, what: str):
    """Suricata integer keyword syntax -> predicate on an int: N, !N, <N, >N, <=N, >=N, A-B, A<>B."""
    s = v.strip()
    m = re.match(r"^(!)?\s*(<=|>=|<|>|=)?\s*(\d+)$", s)
    if m:
        neg, op, n = m.group(1), m.group(2) or "=", int(m.group(3))
        f = {"=": lambda x: x == n, "<": lambda x: x < n, ">": lambda x: x > n,
             "<=": lambda x: x <= n, ">=": lambda x: x >= n}[op]
        return (lambda x: not f(x)) if neg else f
    m = re.match(r"^(\d+)\s*<>\s*(\d+)$", s)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        return lambda x: a < x < b
    m = re.match(r"^(\d+)\s*-\s*(\d+)$", s)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        return lambda x: a <= x <= b
    raise SuricataError(f"bad {what} value {v!r}")


def _as_bytes(x):
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8", "surrogateescape")
    if isinstance(x, bool):
        return b"true" if x else b"false"
    if isinstance(x, (int, float)):
        return str(x).encode()
    return None


# ---------------------------------------------------------------------------------------------- header

def _addr_items(s: str, col: int) -> tuple[list, list]:
    """Address or port group -> (positives, negatives); nested [..] and ! are flattened."""
    s = s.strip()
    pos, neg = [], []

    def walk(t: str, negated: bool):
        t = t.strip()
        if not t:
            return
        if t.startswith("!"):
            walk(t[1:], not negated)
            return
        if t.startswith("[") and t.endswith("]"):
            depth, cur = 0, ""
            for ch in t[1:-1]:
                if ch == "[":
                    depth += 1
                elif ch == "]":
                    depth -= 1
                if ch == "," and depth == 0:
                    walk(cur, negated)
                    cur = ""
                else:
                    cur += ch
            walk(cur, negated)
            return
        (neg if negated else pos).append(t)

    walk(s, False)
    return pos, neg


def _ref(tok: str, src):
    if tok.startswith("$"):
        return ListRef(tok[1:].lower(), src)
    return tok


def _addr_cond(field: str, spec: str, src) -> list:
    pos, neg = _addr_items(spec, src.col)
    out = []
    pos = [p for p in pos if p.lower() != "any"]
    if any(n.lower() == "any" for n in neg):
        raise SuricataError(f"'!any' in {field} can never match")
    if pos:
        out.append(Check(field, "in", tuple(_ref(p, src) for p in pos), src))
    if neg:
        out.append(Not(Check(field, "in", tuple(_ref(n, src) for n in neg), src), src))
    return out


def _port_cond(field: str, spec: str, src) -> list:
    pos, neg = _addr_items(spec, src.col)
    pos = [p for p in pos if p.lower() != "any"]

    def one(p):
        if p.startswith("$"):
            return Check(field, "in", (ListRef(p[1:].lower(), src),), src)
        m = re.match(r"^(\d*):(\d*)$", p)
        if m:
            lo = int(m.group(1)) if m.group(1) else 0
            hi = int(m.group(2)) if m.group(2) else 65535
            return Check(field, "range", (lo, hi), src)
        if p.isdigit():
            return Check(field, "equals", int(p), src)
        raise SuricataError(f"bad port {p!r}")

    out = []
    if pos:
        cs = [one(p) for p in pos]
        out.append(cs[0] if len(cs) == 1 else Any_(tuple(cs), src))
    for n in neg:
        out.append(Not(one(n), src))
    return out


# ---------------------------------------------------------------------------------------------- modbus

_ACCESS = {  # function code -> (access bits, table) per the Modbus application protocol v1.1b3, section 6
    1: ({"read"}, "coils"), 2: ({"read"}, "discretes"), 3: ({"read"}, "holding"), 4: ({"read"}, "input"),
    5: ({"write"}, "coils"), 6: ({"write"}, "holding"), 15: ({"write"}, "coils"), 16: ({"write"}, "holding"),
    22: ({"write"}, "holding"), 23: ({"read", "write"}, "holding"), 24: ({"read"}, "holding"),
    20: ({"read"}, None), 21: ({"write"}, None),
}
_ACCESS_RE = re.compile(r"^access\s+(read|write)\s*(discretes|coils|input|holding)?"
                        r"(?:\s*,\s*address\s+([<>]?\d+)(?:<>(\d+))?(?:\s*,\s*value\s+([<>]?\d+)(?:<>(\d+))?)?)?$")
_FUNC_RE = re.compile(r"^function\s+(!?[A-Za-z0-9]+)(?:\s*,\s*subfunction\s+(\d+))?$")
_UNIT_RE = re.compile(r"^unit\s+([<>]?\d+)(?:<>(\d+))?(?:\s*,\s*(.*))?$")


def _srange(lo: str, hi: str | None):
    """Suricata's modbus range: N (exact), <N, >N (exclusive), A<>B (exclusive both ends)."""
    if hi:
        a, b = int(lo), int(hi)
        if a > 65535 or b > 65535:
            raise SuricataError("modbus values are 16-bit")
        return ("between", a, b)
    if lo[0] in "<>":
        return (lo[0], int(lo[1:]), None)
    return ("=", int(lo), None)


def _in_srange(r, x: int) -> bool:
    k, a, b = r
    if k == "=":
        return x == a
    if k == "<":
        return x < a
    if k == ">":
        return x > a
    return a < x < b


def _overlaps(r, lo: int, hi: int) -> bool:
    k, a, b = r
    if k == "=":
        return lo <= a <= hi
    if k == "<":
        return a > lo
    if k == ">":
        return a < hi
    return a < hi and lo < b


def modbus_option(value: str, src) -> Predicate:
    v = unquote(value).strip()
    unit = None
    m = _UNIT_RE.match(v)
    if m:
        unit = _srange(m.group(1), m.group(2))
        v = (m.group(3) or "").strip()
    func = access = None
    if v:
        fm, am = _FUNC_RE.match(v), _ACCESS_RE.match(v)
        if fm:
            func = fm
        elif am:
            access = am
        else:
            raise SuricataError(f"unsupported modbus option {value!r} (function, access or unit)")
    from ...protocols.modbus.consts import function_class
    checks = []
    keys: tuple = ()
    if unit is not None:
        checks.append(lambda g, r=unit: _num(g("modbus.unit_id")) and _in_srange(r, g("modbus.unit_id")))
    if func is not None:
        word, sub = func.group(1), func.group(2)
        if word.isdigit():
            code = int(word)
            if not 0 < code < 256:
                raise SuricataError(f"invalid modbus function {code}")
            keys = (code,)
            checks.append(lambda g, c=code: g("modbus.function_code") == c)
            if sub is not None:
                s = int(sub)
                checks.append(lambda g, s=s: g("modbus.request.sub_function") == s)
        else:
            if sub is not None:
                raise SuricataError("subfunction needs a numeric function")
            neg = word.startswith("!")
            w = word[1:] if neg else word
            classes = {"assigned": {"public"}, "unassigned": {"unassigned"}, "public": {"public", "unassigned"},
                       "user": {"user"}, "reserved": {"reserved"},
                       "all": {"public", "unassigned", "user", "reserved"}}.get(w)
            if classes is None:
                raise SuricataError(f"unknown modbus function class {w!r}")

            def cat(g, classes=classes, neg=neg):
                fc = g("modbus.function_code")
                if not _num(fc):
                    return False
                return (function_class(fc) in classes) != neg
            checks.append(cat)
    if access is not None:
        kind, table = access.group(1), access.group(2)
        if kind == "write" and table in ("discretes", "input"):
            raise SuricataError(f"{table} can only be read")
        addr = _srange(access.group(3), access.group(4)) if access.group(3) else None
        val = _srange(access.group(5), access.group(6)) if access.group(5) else None
        if val is not None and (addr is None or addr[0] != "="):
            raise SuricataError("value needs a single address (Suricata: 'conflicting keywords')")
        codes = tuple(c for c, (bits, t) in _ACCESS.items() if kind in bits and (table is None or t == table))
        keys = codes

        def acc(g, codes=codes, kind=kind, addr=addr, val=val):
            fc = g("modbus.function_code")
            if fc not in codes:
                return False
            if addr is None:
                return True
            rng = _access_range(g, fc, kind)
            if rng is None or not _overlaps(addr, rng[0] + 1, rng[1] + 1):  # rule addresses start at 1
                return False
            if val is None:
                return True
            x = _written_value(g, fc, addr[1] - 1)
            return x is not None and _in_srange(val, x)
        checks.append(acc)
    if not checks:
        raise SuricataError("empty modbus option")
    checks.insert(0, lambda g: g("modbus.request") is not MISSING)  # Suricata inspects requests only
    cs = tuple(checks)
    return Predicate("modbus", ("modbus.function_code",), lambda g: all(c(g) for c in cs), src, keys)


def _num(x) -> bool:
    return type(x) is int


def _access_range(g, fc: int, kind: str):
    if fc == 23 and kind == "read":
        a, q = g("modbus.request.read_address"), g("modbus.request.read_quantity")
    else:
        a, q = g("modbus.request.address"), g("modbus.request.quantity")
    if not _num(a):
        return None
    q = q if _num(q) and q > 0 else 1
    return a, a + q - 1


def _written_value(g, fc: int, pdu_addr: int):
    a, vals = g("modbus.request.address"), g("modbus.request.values")
    if not _num(a) or vals is MISSING:
        return None
    vals = vals if type(vals) is list else [vals]
    i = pdu_addr - a
    if not 0 <= i < len(vals):
        return None
    x = vals[i]
    if isinstance(x, bool):  # coils: FC 5 carries 0xFF00 / 0x0000 on the wire, FC 15 one bit each
        return (0xFF00 if x else 0) if fc == 5 else int(x)
    return x if _num(x) else None


# ---------------------------------------------------------------------------------------------- mqtt

def _types(g) -> list:
    t = g("mqtt.types")
    if t is MISSING:
        return []
    return t if type(t) is list else [t]


def _hdr(g, t: str, f: str):
    v = g(f"mqtt.{t}.{f}")
    if v is MISSING:
        if f == "qos":
            return 1 if t in MQTT_FIXED_QOS1 else 0
        return False
    return v


# ---------------------------------------------------------------------------------------------- app-layer-event

#: Suricata's app-layer events (its modbus-events.rules / mqtt-events.rules) -> the otids.anomalies names that
#: mean the same thing. Events otids does not raise are errors for that rule, naming the ones it does.
APP_LAYER_EVENTS = {
    "modbus": {"unsolicited_response": ("unsolicited_response",), "invalid_length": ("bad_length",),
               "invalid_protocol_id": ("bad_protocol_id",), "value_mismatch": ("response_mismatch",),
               "invalid_value": ("quantity_out_of_range", "invalid_coil_value")},
    "mqtt": {n: (n,) for n in ("missing_connect", "missing_publish", "missing_subscribe", "missing_unsubscribe",
                                "double_connect", "unintroduced_message", "invalid_qos_level", "missing_msg_id",
                                "unassigned_msg_type", "too_many_transactions", "malformed_traffic")},
}


def app_layer_event(value: str, protocol: str, src, col) -> Predicate:
    v = value.strip()
    neg = v.startswith("!")
    v = v.lstrip("!").strip()
    proto, _, name = v.partition(".")
    if proto != protocol:
        raise SuricataError(f"app-layer-event {v!r} in a {protocol} rule", col)
    known = APP_LAYER_EVENTS.get(protocol, {})
    names = known.get(name)
    if names is None:
        raise SuricataError(f"app-layer-event {v}: otids does not raise this event (it raises "
                            f"{', '.join(protocol + '.' + k for k in known)})", col)

    def f(g, names=frozenset(names)):
        an = g("otids.anomalies")
        an = () if an is MISSING else (an if type(an) is list else [an])
        hit = any(a in names for a in an)
        return not hit if neg else hit
    return Predicate("app-layer-event", ("otids.anomalies",), f, src)


def mqtt_type(value: str, src) -> Predicate:
    v = value.strip()
    # Suricata 9's indexed form `mqtt.type:CONNECT,0` (the message at that place of the transaction; `any`
    # and `all` too): otids pairs a transaction's messages in mqtt.types
    idx = None
    if "," in v:
        v, idx = (x.strip() for x in v.split(",", 1))
        if not (idx in ("any", "all") or idx.lstrip("-").isdigit()):
            raise SuricataError(f"mqtt.type index {idx!r}: a number, any or all")
    neg = v.startswith("!")
    w = v[1:].strip() if neg else v
    if w.isdigit():
        if int(w) >= len(MQTT_TYPES):
            raise SuricataError(f"unknown MQTT type {w}")
        name = MQTT_TYPES[int(w)]
    else:
        name = w.lower()
        if name not in MQTT_TYPES:
            raise SuricataError(f"unknown MQTT type {w!r} (known: {', '.join(t.upper() for t in MQTT_TYPES)})")
    if idx not in (None, "any"):
        def at(g, i=idx):
            ts = _types(g)
            if i == "all":
                return bool(ts) and all((t == name) != neg for t in ts)
            k = int(i)
            return -len(ts) <= k < len(ts) and (ts[k] == name) != neg
        return Predicate("mqtt.type", ("mqtt.types",), at, src, () if neg else (name,))
    if neg:
        return Predicate("mqtt.type", ("mqtt.types",), lambda g: any(t != name for t in _types(g)), src)
    return Predicate("mqtt.type", ("mqtt.types",), lambda g: name in _types(g), src, (name,))


def _flag_list(value: str, known: dict, what: str):
    items = [x.strip() for x in value.split(",") if x.strip()]
    if not items:
        raise SuricataError(f"empty {what}")
    out, seen = [], set()
    for it in items:
        neg = it.startswith("!")
        name = it[1:].strip() if neg else it
        if name not in known:
            if name.isdigit():
                raise SuricataError(f"numeric {what} bitmasks are not supported; use flag names ({', '.join(known)})")
            raise SuricataError(f"unknown {what} flag {name!r} (known: {', '.join(known)})")
        if name in seen:
            raise SuricataError(f"repeated flag {name!r} in {what}")
        seen.add(name)
        out.append((known[name], not neg))
    return out


def mqtt_flags(value: str, src) -> Predicate:
    flags = _flag_list(value, {"dup": "dup", "retain": "retain"}, "mqtt.flags")

    def f(g):
        for t in _types(g):
            if all(bool(_hdr(g, t, name)) is want for name, want in flags):
                return True
        return False
    return Predicate("mqtt.flags", ("mqtt.types",), f, src)


def mqtt_qos(value: str, src) -> Predicate:
    v = value.strip()
    if not v.isdigit() or int(v) > 2:
        raise SuricataError(f"mqtt.qos takes 0, 1 or 2 (got {value!r})")
    q = int(v)
    return Predicate("mqtt.qos", ("mqtt.types",), lambda g: any(_hdr(g, t, "qos") == q for t in _types(g)), src)


_RC_FIELDS = {"puback": "reason_code", "pubrel": "reason_code", "pubrec": "reason_code",
              "pubcomp": "reason_code", "auth": "reason_code", "connack": "return_code",
              "disconnect": "reason_code"}


def mqtt_reason_code(value: str, src) -> Predicate:
    test = parse_uint(value, "mqtt.reason_code")

    def f(g):
        types = _types(g)
        for t in types:  # the first message that carries a reason code (Suricata: mqtt_tx_get_reason_code)
            fld = _RC_FIELDS.get(t)
            if fld:
                v = g(f"mqtt.{t}.{fld}")
                if _num(v):
                    if test(v):
                        return True
                    break
        for path in ("mqtt.suback.qos_granted", "mqtt.suback.reason_codes", "mqtt.unsuback.reason_codes"):
            v = g(path)
            if v is not MISSING and any(_num(x) and test(x) for x in (v if type(v) is list else [v])):
                return True
        return False
    return Predicate("mqtt.reason_code", ("mqtt.types",), f, src)


def mqtt_protocol_version(value: str, src) -> Predicate:
    test = parse_uint(value, "mqtt.protocol_version")

    def f(g):
        v = g("mqtt.protocol_version")
        if not _num(v):
            v = g("mqtt.connect.protocol_version")
        return _num(v) and test(v)
    return Predicate("mqtt.protocol_version", ("mqtt.protocol_version",), f, src)


def mqtt_session_present(value: str, src) -> Predicate:
    v = value.strip().lower()
    if v not in ("yes", "true", "no", "false"):
        raise SuricataError("mqtt.connack.session_present takes yes, true, no or false")
    want = v in ("yes", "true")
    return Predicate("mqtt.connack.session_present", ("mqtt.connack.session_present",),
                     lambda g: g("mqtt.connack.session_present") is want, src, ("connack",))


def mqtt_connect_flags(value: str, src) -> Predicate:
    known = {k: k for k in ("username", "password", "will", "will_retain", "clean_session")}
    flags = _flag_list(value, known, "mqtt.connect.flags")

    def f(g):
        if "connect" not in _types(g):
            return False
        return all(bool(_hdr(g, "connect", f"flags.{name}")) is want for name, want in flags)
    return Predicate("mqtt.connect.flags", ("mqtt.connect.flags.username",), f, src, ("connect",))


MQTT_KEYWORDS = {"mqtt.type": mqtt_type, "mqtt.flags": mqtt_flags, "mqtt.qos": mqtt_qos,
                 "mqtt.reason_code": mqtt_reason_code, "mqtt.connack.return_code": mqtt_reason_code,
                 "mqtt.protocol_version": mqtt_protocol_version,
                 "mqtt.connack.session_present": mqtt_session_present,
                 "mqtt.connect.flags": mqtt_connect_flags}


# ---------------------------------------------------------------------------------------------- buffers

class _Buffer:
    """A sticky buffer and the content/pcre/bsize tests that follow it: all on the same element."""

    def __init__(self, keyword: str, field: str, key: str, src):
        self.keyword, self.field, self.key, self.src = keyword, field, key, src
        self.items: list = []  # [kind, payload, dict of modifiers]

    def add(self, kind, payload, col):
        self.items.append([kind, payload, {}, col])

    def modify(self, mod: str, value, col):
        if not self.items or self.items[-1][0] != "content":
            raise SuricataError(f"'{mod}' must follow a content", col)
        m = self.items[-1][2]
        if mod in m:
            raise SuricataError(f"'{mod}' given twice for one content", col)
        m[mod] = value

    def predicate(self) -> Predicate:
        if not self.items:
            raise SuricataError(f"sticky buffer {self.keyword} has no content, pcre or bsize after it", self.src.col)
        tests = [self._test(*it) for it in self.items]
        path = self.field

        def f(g):
            v = g(path)
            if v is MISSING:
                return False
            for x in (v if type(v) is list else (v,)):
                b = _as_bytes(x)
                if not b:  # Suricata: an empty buffer is no buffer
                    continue
                if all(t(b) for t in tests):
                    return True
            return False
        return Predicate(self.keyword, (path,), f, self.src, (self.key,))

    def _test(self, kind, payload, mods, col):
        if kind == "bsize":
            return lambda b, t=payload: t(len(b))
        if kind == "pcre":
            rx, neg = payload
            return (lambda b: rx.search(b) is None) if neg else (lambda b: rx.search(b) is not None)
        pat, neg = payload
        nocase = "nocase" in mods
        if nocase:
            pat = pat.lower()
        off = mods.get("offset", 0)
        depth = mods.get("depth")
        sw, ew = "startswith" in mods, "endswith" in mods
        if sw and (off or depth is not None):
            raise SuricataError("startswith cannot be combined with offset or depth", col)

        def t(b):
            if nocase:
                b = b.lower()
            if sw and ew:
                hit = b == pat
            elif sw:
                hit = b.startswith(pat)
            elif ew:
                hit = b.endswith(pat) and len(b) - len(pat) >= off
            else:
                end = off + depth if depth is not None else len(b)
                hit = b.find(pat, off, end) >= 0
            return hit != neg
        return t


def _pcre(v: str) -> tuple:
    s = v.strip()
    neg = s.startswith("!")
    if neg:
        s = s[1:].strip()
    s = unquote(s) if s.startswith('"') else s
    m = re.match(r"^/(.*)/([a-zA-Z]*)$", s, re.S)
    if not m:
        raise SuricataError(f"pcre must be \"/regex/flags\" (got {v!r})")
    flags = 0
    for ch in m.group(2):
        if ch == "i":
            flags |= re.I
        elif ch == "s":
            flags |= re.S
        elif ch == "m":
            flags |= re.M
        elif ch == "x":
            flags |= re.X
        else:
            raise SuricataError(f"pcre modifier '{ch}' is not supported (supported: i, s, m, x)")
    try:
        return re.compile(m.group(1).encode("utf-8", "surrogateescape"), flags), neg
    except re.error as e:
        raise SuricataError(f"invalid pcre: {e}") from None


# ---------------------------------------------------------------------------------------------- rules

_HEADER = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+|\[[^\]]*\])\s+(\S+|\[[^\]]*\])\s+(->|<>)\s+"
                     r"(\S+|\[[^\]]*\])\s+(\S+|\[[^\]]*\])\s*\((.*)\)\s*$", re.S)


def parse_rule_text(text: str, path: str, line: int) -> Rule:
    m = _HEADER.match(text)
    if not m:
        raise SuricataError("not a rule: expected 'action proto src sport -> dst dport (options)'", 1)
    action, proto, src_a, src_p, direction, dst_a, dst_p, body = m.groups()
    loc = lambda col: SourceLocation(path, line, col)  # noqa: E731
    if action not in ("alert", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"):
        raise SuricataError(f"action '{action}' is not supported (otids raises alerts: alert, drop, reject)", 1)
    opts = split_options(body, m.start(8) + 1)
    keys = [k for k, _, _ in opts]
    if proto not in ("mqtt", "modbus", "tcp", "tcp-pkt", "tcp-stream", "ip"):
        raise SuricataError(f"protocol '{proto}' is not supported (otids imports mqtt and modbus rules)",
                            m.start(2) + 1)
    if proto == "mqtt" or any(k.startswith("mqtt.") for k in keys):
        protocol = "mqtt"
    elif proto == "modbus" or "modbus" in keys:
        protocol = "modbus"
    else:
        raise SuricataError(f"'{proto}' rule without modbus: or mqtt.* keywords has nothing otids can match",
                            m.start(2) + 1)
    state = {"msg": None, "sid": None, "rev": None, "classtype": None, "priority": None, "refs": [],
             "meta": {}, "swap": False, "thr": None}
    conds: list = []
    buf: _Buffer | None = None
    bufs: list[_Buffer] = []
    for key, val, col in opts:
        try:
            buf = _option(key, val, col, loc, protocol, state, conds, bufs, buf)
        except SuricataError as e:
            raise SuricataError(e.message, e.col or col) from None
    msg, sid, rev, classtype, priority = (state[k] for k in ("msg", "sid", "rev", "classtype", "priority"))
    refs, meta, swap, thr_spec = state["refs"], state["meta"], state["swap"], state["thr"]
    return _finish(m, path, line, loc, protocol, msg, sid, rev, classtype, priority, refs, meta, swap,
                   thr_spec, conds, bufs, src_a, src_p, direction, dst_a, dst_p)


def _option(key, val, col, loc, protocol, state, conds, bufs, buf):
    """Apply one rule option; returns the current sticky buffer."""
    if True:
        src = loc(col)
        if key == "msg":
            state["msg"] = unquote(val or "")
        elif key == "sid":
            if not (val or "").isdigit():
                raise SuricataError("sid must be a number", col)
            state["sid"] = val
        elif key == "rev":
            state["rev"] = val
        elif key == "classtype":
            state["classtype"] = classtype = (val or "").strip()
            if classtype not in CLASSTYPE_PRIORITY:
                raise SuricataError(f"unknown classtype '{classtype}'", col)
        elif key == "priority":
            if not (val or "").strip().isdigit():
                raise SuricataError("priority must be a number", col)
            state["priority"] = int(val)
        elif key == "reference":
            kind, _, ref = (val or "").partition(",")
            pre = REFERENCE_PREFIX.get(kind.strip(), "")
            state["refs"].append((pre + ref.strip()) if pre else f"{kind.strip()},{ref.strip()}")
        elif key in INERT:
            if key == "metadata":
                state["meta"]["metadata"] = val
            if key == "fast_pattern" and buf is not None and buf.items:
                pass  # a matching hint only
        elif key == "flow":
            for f in (val or "").split(","):
                f = f.strip()
                if f in ("to_client", "from_server"):
                    state["swap"] = True
                elif f in ("to_server", "from_client", "established", "stateless", ""):
                    continue
                else:
                    raise SuricataError(f"flow option '{f}' is not supported (to_server, to_client, "
                                        "from_server, from_client, established)", col)
        elif key == "threshold":
            state["thr"] = (val or "", col)
        elif key == "app-layer-event":
            conds.append(app_layer_event(val or "", protocol, src, col))
        elif key == "modbus":
            if protocol != "modbus":
                raise SuricataError("modbus: in a non-modbus rule", col)
            conds.append(modbus_option(val or "", src))
        elif key in MQTT_KEYWORDS:
            if val is None:
                raise SuricataError(f"{key} needs a value", col)
            conds.append(MQTT_KEYWORDS[key](val, src))
        elif key in STICKY:
            if val is not None:
                raise SuricataError(f"{key} is a sticky buffer and takes no value", col)
            fld, k = STICKY[key]
            buf = _Buffer(key, fld, k, src)
            bufs.append(buf)
        elif key in ("content", "pcre", "bsize") or key in CONTENT_MODS or key in ("distance", "within"):
            if buf is None:
                raise SuricataError(f"'{key}' outside a sticky buffer: otids matches fields, not raw payload "
                                    "(put it after e.g. mqtt.publish.topic;)", col)
            try:
                if key == "content":
                    buf.add("content", content_bytes(val or ""), col)
                elif key == "pcre":
                    buf.add("pcre", _pcre(val or ""), col)
                elif key == "bsize":
                    buf.add("bsize", parse_uint(val or "", "bsize"), col)
                elif key in ("nocase", "startswith", "endswith"):
                    buf.modify(key, True, col)
                elif key in ("depth", "offset"):
                    if not (val or "").strip().isdigit():
                        raise SuricataError(f"{key} needs a number", col)
                    buf.modify(key, int(val), col)
                else:
                    raise SuricataError(f"relative modifier '{key}' is not supported", col)
            except SuricataError as e:
                raise SuricataError(e.message, e.col or col) from None
        else:
            raise SuricataError(f"keyword '{key}' is not supported by the otids importer", col)
    return buf


def _finish(m, path, line, loc, protocol, msg, sid, rev, classtype, priority, refs, meta, swap, thr_spec,
            conds, bufs, src_a, src_p, direction, dst_a, dst_p) -> Rule:
    if sid is None:
        raise SuricataError("rule has no sid", 1)
    if msg is None:
        raise SuricataError("rule has no msg", 1)
    for b in bufs:
        try:
            conds.append(b.predicate())
        except SuricataError as e:
            raise SuricataError(e.message, e.col) from None
    hsrc = loc(m.start(3) + 1)
    s_ip, d_ip = ("destination.ip", "source.ip") if swap else ("source.ip", "destination.ip")
    s_pt, d_pt = ("destination.port", "source.port") if swap else ("source.port", "destination.port")
    fwd = _addr_cond(s_ip, src_a, hsrc) + _port_cond(s_pt, src_p, hsrc) + \
        _addr_cond(d_ip, dst_a, hsrc) + _port_cond(d_pt, dst_p, hsrc)
    if direction == "<>" and fwd:
        rev_c = _addr_cond(d_ip, src_a, hsrc) + _port_cond(d_pt, src_p, hsrc) + \
            _addr_cond(s_ip, dst_a, hsrc) + _port_cond(s_pt, dst_p, hsrc)
        conds.append(Any_((All(tuple(fwd), hsrc), All(tuple(rev_c), hsrc)), hsrc))
    else:
        conds += fwd
    if not conds:
        raise SuricataError("rule has no condition otids can evaluate", 1)
    threshold = None
    if thr_spec is not None:
        threshold = _threshold(thr_spec[0], thr_spec[1], swap, loc(thr_spec[1]))
    pr = priority or CLASSTYPE_PRIORITY.get(classtype or "", 3)
    severity = PRIORITY_SEVERITY.get(pr, "low" if pr > 3 else "high")
    desc = f"Imported Suricata rule sid {sid}" + (f" rev {rev}" if rev else "") + \
        (f" ({classtype})" if classtype else "") + f": {msg}"
    return Rule(id=sid, title=msg, description=desc, severity=severity, protocol=protocol,
                match=All(tuple(conds), loc(1)), source=loc(1), references=tuple(refs), threshold=threshold,
                origin="suricata", meta={"sid": int(sid), "rev": int(rev) if rev and rev.isdigit() else None,
                                         "classtype": classtype, **meta})


def _threshold(v: str, col: int, swap: bool, src) -> Threshold:
    parts = {}
    for p in v.split(","):
        kv = p.strip().split(None, 1)
        if len(kv) != 2:
            raise SuricataError(f"bad threshold part {p.strip()!r}", col)
        parts[kv[0]] = kv[1].strip()
    try:
        t, track, count, secs = parts["type"], parts["track"], int(parts["count"]), int(parts["seconds"])
    except (KeyError, ValueError):
        raise SuricataError("threshold needs type, track, count and seconds", col) from None
    if t not in ("threshold", "limit", "both"):
        raise SuricataError(f"threshold type '{t}' is not supported (threshold, limit, both)", col)
    src_f, dst_f = ("destination.ip", "source.ip") if swap else ("source.ip", "destination.ip")
    groups = {"by_src": (src_f,), "by_dst": (dst_f,), "by_both": (src_f, dst_f), "by_rule": (),
              "by_flow": ("network.community_id",)}.get(track)
    if groups is None:
        raise SuricataError(f"threshold track '{track}' is not supported", col)
    if count < 1 or secs < 1:
        raise SuricataError("threshold count and seconds must be at least 1", col)
    return Threshold(count, float(secs), groups, t, None, src)


def load_suricata_file(path: str, text: str | None = None) -> RuleSet:
    rs = RuleSet(files=[path])
    try:
        if text is None:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                text = fh.read()
    except OSError as e:
        rs.issues.append(error("unreadable", f"cannot read rule file: {e.strerror}", SourceLocation(path)))
        return rs
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not pending:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            start = n
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        full = pending + line
        pending = ""
        try:
            rs.rules.append(parse_rule_text(full, path, start))
        except SuricataError as e:
            sid = re.search(r"\bsid\s*:\s*(\d+)", full)
            rs.issues.append(error("suricata", e.message, SourceLocation(path, start, e.col),
                                   sid.group(1) if sid else None))
    if pending:
        rs.issues.append(error("suricata", "file ends inside a continued rule", SourceLocation(path, start)))
    return rs
