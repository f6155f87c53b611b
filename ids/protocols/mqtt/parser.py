"""MQTT control packet parsers: pure functions from the bytes of one packet (the variable header and payload,
addressed as buf[off:end] so nothing is copied) to a typed ids.events record and a tuple of anomaly names.

They never raise on bad input: a packet that does not fit the specification yields the fields read before
the fault and the anomaly malformed_traffic. Framing (the fixed header), pairing and state are session.py's.
"""
from __future__ import annotations

import struct

from .messages import MqttAck, MqttBare, MqttConnack, MqttConnect, MqttDisconnect, MqttPublish, MqttSuback, MqttSubscribe, MqttUnsuback, MqttUnsubscribe
from .consts import (BIN, BYTE, INVALID_FLAGS, INVALID_QOS_LEVEL, MALFORMED_TRAFFIC, PROP_NAMES, PROP_TYPES,
                     PROTOCOL_NAMES, REQUIRED_FLAGS, STR, TOO_MANY_ENTRIES, TYPE_NAMES, U16, U32, UNKNOWN_PROTOCOL,
                     VARINT)

_U32 = struct.Struct(">I").unpack_from
MALFORMED = (MALFORMED_TRAFFIC,)
TOO_MANY = (TOO_MANY_ENTRIES,)
#: topic filters kept of one SUBSCRIBE or UNSUBSCRIBE, and user properties of one packet: 150,000 one-byte
#: filters in a 750 kB packet were 150,000 tuples held while it awaited its SUBACK (100 such packets, a 79 MB
#: capture: 2 GB); 80,000 user properties of a QoS 1 PUBLISH held 7 MB until its PUBACK (60 of them: 452 MB)
MAX_FILTERS = 1024


class _Bad(Exception):
    """The packet ends (or a length points) before a field does: caught inside this module only."""


def read_varint(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """Variable byte integer (5.0 section 1.5.5): at most four bytes; -> (value, next offset).
    Raises _Bad when it runs past `end` or a fourth byte still has the continuation bit."""
    value = 0
    shift = 0
    for i in range(off, off + 4):
        if i >= end:
            raise _Bad
        b = buf[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise _Bad


def fixed_header(buf: bytes, off: int, n: int) -> tuple[int, int] | None:
    """-> (remaining length, offset of the variable header), None when more bytes are needed.
    Raises _Bad for a remaining length of more than four bytes (framing is lost)."""
    value = 0
    shift = 0
    for i in range(off + 1, off + 5):
        if i >= n:
            return None
        b = buf[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise _Bad


FramingError = _Bad


def _str(buf: bytes, off: int, end: int) -> tuple[str, int]:
    if off + 2 > end:
        raise _Bad
    p = off + 2 + ((buf[off] << 8) | buf[off + 1])
    if p > end:
        raise _Bad
    return buf[off + 2:p].decode("utf-8", "backslashreplace"), p


def _bin(buf: bytes, off: int, end: int) -> tuple[bytes, int]:
    if off + 2 > end:
        raise _Bad
    p = off + 2 + ((buf[off] << 8) | buf[off + 1])
    if p > end:
        raise _Bad
    return buf[off + 2:p], p


def _u16(buf: bytes, off: int, end: int) -> int:
    if off + 2 > end:
        raise _Bad
    return (buf[off] << 8) | buf[off + 1]


def parse_properties(buf: bytes, off: int, end: int) -> tuple[dict | None, int, bool | None]:
    """A v5 property block (section 2.2.2) -> (properties or None, offset after the block, ok): ok is None
    when the block held more than MAX_FILTERS user properties (the first kept, the rest not read).

    The block's length is known up front, so an unknown identifier or a bad value spoils only the
    properties after it (ok False), not the rest of the packet. Raises _Bad if the length itself does
    not fit."""
    n, off = read_varint(buf, off, end)
    stop = off + n
    if stop > end:
        raise _Bad
    if n == 0:
        return None, stop, True
    props: dict = {}
    users = 0
    try:
        while off < stop:
            pid, off = read_varint(buf, off, stop)
            kind = PROP_TYPES.get(pid)
            if kind is None:
                return props or None, stop, False
            if kind == STR:
                val, off = _str(buf, off, stop)
            elif kind == BYTE:
                if off >= stop:
                    raise _Bad
                val = buf[off]
                off += 1
            elif kind == U16:
                val = _u16(buf, off, stop)
                off += 2
            elif kind == U32:
                if off + 4 > stop:
                    raise _Bad
                val = _U32(buf, off)[0]
                off += 4
            elif kind == VARINT:
                val, off = read_varint(buf, off, stop)
            elif kind == BIN:
                val, off = _bin(buf, off, stop)
            else:  # PAIR: a user property, written under its own key (as Suricata's EVE does)
                if users >= MAX_FILTERS:  # the rest not kept: ~200 bytes held each for 6 on the wire
                    return props, stop, None
                users += 1
                key, off = _str(buf, off, stop)
                val, off = _str(buf, off, stop)
                _put(props, key, val)
                continue
            _put(props, PROP_NAMES[pid], val)
    except _Bad:
        return props or None, stop, False
    return props, stop, True


def _put(props: dict, key: str, val) -> None:
    old = props.get(key)
    if old is None:
        props[key] = val
    elif type(old) is list:
        old.append(val)
    else:
        props[key] = [old, val]


# ---------------------------------------------------------------------------------------------- packets
# Each parser: (buf, off, end, ts, to_server, flags, length, version, ...) -> (record, anomalies).

def flag_anomalies(ptype: int, flags: int) -> tuple:
    """Fixed-header flags the specification does not allow for this type (5.0 section 2.1.3)."""
    if ptype == 3:
        return (INVALID_QOS_LEVEL,) if flags & 6 == 6 else ()
    req = REQUIRED_FLAGS.get(ptype)
    if req is None or flags == req:
        return ()
    # Suricata reads the QoS bits of every type and flags 3 as invalid; other wrong bits are ours to name.
    return (INVALID_QOS_LEVEL, INVALID_FLAGS) if flags & 6 == 6 else (INVALID_FLAGS,)


def parse_connect(buf, off, end, ts, to_server, flags, length, limit):
    """-> (MqttConnect, anomalies, protocol level or 0)."""
    name = level = cflags = keepalive = client_id = username = password = None
    will_topic = will_msg = will_len = will_props = props = None
    an: tuple = ()
    try:
        if off + 2 > end:
            raise _Bad
        p = off + 2 + ((buf[off] << 8) | buf[off + 1])
        if p + 4 > end:
            raise _Bad
        raw_name = buf[off + 2:p]
        name = raw_name.decode("utf-8", "backslashreplace")
        level = buf[p]
        cflags = buf[p + 1]
        keepalive = (buf[p + 2] << 8) | buf[p + 3]
        p += 4
        known = PROTOCOL_NAMES.get(raw_name)
        if known is None or not (level == known or (known == 4 and level == 5)):
            an = (UNKNOWN_PROTOCOL,)
        if cflags & 1:  # reserved bit (3.1.1 section 3.1.2.3): the server must treat it as malformed
            an += (MALFORMED_TRAFFIC,)
        v5 = level == 5
        if v5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an += (MALFORMED_TRAFFIC,) if ok is False else TOO_MANY
        client_id, p = _str(buf, p, end)
        if cflags & 0x04:
            if v5:
                will_props, p, ok = parse_properties(buf, p, end)
                if ok is not True:
                    an += (MALFORMED_TRAFFIC,) if ok is False else TOO_MANY
            will_topic, p = _str(buf, p, end)
            raw, p = _bin(buf, p, end)
            will_len = len(raw)
            will_msg = raw[:limit]
        if cflags & 0x80:
            username, p = _str(buf, p, end)
        if cflags & 0x40:
            password, p = _bin(buf, p, end)
        if p != end:
            an += (MALFORMED_TRAFFIC,)
    except _Bad:
        an += (MALFORMED_TRAFFIC,)
    rec = MqttConnect("connect", ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), length,
                      name, level, cflags, keepalive, client_id, username, password, will_topic, will_msg,
                      will_len, will_props, props)
    return rec, _dedup(an), level if level in (3, 4, 5) else 0


def _dedup(an: tuple) -> tuple:
    return tuple(dict.fromkeys(an)) if len(an) > 1 else an


def parse_connack(buf, off, end, ts, to_server, flags, length, version):
    sp = rc = props = None
    an: tuple = ()
    try:
        if off + 2 > end:
            raise _Bad
        ack = buf[off]
        sp = bool(ack & 1)
        rc = buf[off + 1]
        p = off + 2
        if ack & 0xFE:
            an = (MALFORMED_TRAFFIC,)
        if version == 5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an += (MALFORMED_TRAFFIC,) if ok is False else TOO_MANY
        if p != end:
            an += (MALFORMED_TRAFFIC,)
    except _Bad:
        an += (MALFORMED_TRAFFIC,)
    return MqttConnack("connack", ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), length,
                       sp, rc, props), _dedup(an)


def parse_publish(buf, off, end, msg_end, ts, to_server, flags, length, version, limit):
    """PUBLISH (section 3.3). `end` < `msg_end` when the packet is over the size cap and only its head
    is here: the payload is then neither kept nor required, and running short is not an anomaly."""
    qos = (flags >> 1) & 3
    topic = mid = props = payload = plen = None
    an: tuple = ()
    try:
        if off + 2 > end:
            raise _Bad
        p = off + 2 + ((buf[off] << 8) | buf[off + 1])
        if p > end:
            raise _Bad
        topic = buf[off + 2:p].decode("utf-8", "backslashreplace")
        if qos:
            if p + 2 > end:
                raise _Bad
            mid = (buf[p] << 8) | buf[p + 1]
            p += 2
        if version == 5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an = MALFORMED if ok is False else an or TOO_MANY
        plen = msg_end - p
        if end == msg_end:
            payload = buf[p:p + limit] if plen > limit else buf[p:end]
    except _Bad:
        if end == msg_end:
            an = MALFORMED
    return MqttPublish("publish", ts, to_server, qos, bool(flags & 1), bool(flags & 8), length, topic, mid,
                       payload, plen, props, False, end != msg_end), an


_ACK_NAMES = {4: "puback", 5: "pubrec", 6: "pubrel", 7: "pubcomp"}


def parse_ack(ptype, buf, off, end, ts, to_server, flags, length, version):
    """PUBACK/PUBREC/PUBREL/PUBCOMP (sections 3.4-3.7): packet id; v5 reason code and properties, both
    omitted when the reason is 0 and there are no properties."""
    mid = rc = props = None
    an: tuple = ()
    try:
        mid = _u16(buf, off, end)
        p = off + 2
        if version == 5:
            rc = 0
            if p < end:
                rc = buf[p]
                p += 1
                if p < end:
                    props, p, ok = parse_properties(buf, p, end)
                    if ok is not True:
                        an = MALFORMED if ok is False else an or TOO_MANY
        if p != end:
            an = MALFORMED
    except _Bad:
        an = MALFORMED
    return MqttAck(_ACK_NAMES[ptype], ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), length,
                   mid, rc, props), an


def parse_subscribe(buf, off, end, ts, to_server, flags, length, version):
    mid = props = None
    topics: list = []
    an: tuple = ()
    try:
        mid = _u16(buf, off, end)
        p = off + 2
        if version == 5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an = MALFORMED if ok is False else an or TOO_MANY
        while p < end:
            if len(topics) >= MAX_FILTERS:  # the rest not kept (each ~115 bytes held for 4 on the wire)
                an = an or TOO_MANY
                break
            t, p = _str(buf, p, end)
            if p >= end:
                raise _Bad
            topics.append((t, buf[p]))
            p += 1
        if not topics:  # at least one filter (section 3.8.3)
            an = MALFORMED
    except _Bad:
        an = MALFORMED
    return MqttSubscribe("subscribe", ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), length,
                         mid, tuple(topics), props), an


def parse_suback(buf, off, end, ts, to_server, flags, length, version):
    mid = props = None
    codes: tuple = ()
    an: tuple = ()
    try:
        mid = _u16(buf, off, end)
        p = off + 2
        if version == 5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an = MALFORMED if ok is False else an or TOO_MANY
        codes = tuple(buf[p:end])
    except _Bad:
        an = MALFORMED
    return MqttSuback("suback", ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), length,
                      mid, codes, props), an


def parse_unsubscribe(buf, off, end, ts, to_server, flags, length, version):
    mid = props = None
    topics: list = []
    an: tuple = ()
    try:
        mid = _u16(buf, off, end)
        p = off + 2
        if version == 5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an = MALFORMED if ok is False else an or TOO_MANY
        while p < end:
            if len(topics) >= MAX_FILTERS:
                an = an or TOO_MANY
                break
            t, p = _str(buf, p, end)
            topics.append(t)
        if not topics:
            an = MALFORMED
    except _Bad:
        an = MALFORMED
    return MqttUnsubscribe("unsubscribe", ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8),
                           length, mid, tuple(topics), props), an


def parse_unsuback(buf, off, end, ts, to_server, flags, length, version):
    mid = props = None
    codes: tuple = ()
    an: tuple = ()
    try:
        mid = _u16(buf, off, end)
        p = off + 2
        if version == 5:
            props, p, ok = parse_properties(buf, p, end)
            if ok is not True:
                an = MALFORMED if ok is False else an or TOO_MANY
            codes = tuple(buf[p:end])
        elif p != end:
            an = MALFORMED
    except _Bad:
        an = MALFORMED
    return MqttUnsuback("unsuback", ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), length,
                        mid, codes, props), an


def parse_disconnect(ptype, buf, off, end, ts, to_server, flags, length, version):
    """DISCONNECT (3.14) and AUTH (3.15): v5 reason code (0 when omitted) and properties."""
    rc = props = None
    an: tuple = ()
    try:
        if version == 5 or ptype == 15:
            rc = 0
            if off < end:
                rc = buf[off]
                p = off + 1
                if p < end:
                    props, p, ok = parse_properties(buf, p, end)
                    if ok is not True:
                        an = MALFORMED if ok is False else an or TOO_MANY
                if p != end:
                    an = MALFORMED
        elif off != end:
            an = MALFORMED
    except _Bad:
        an = MALFORMED
    return MqttDisconnect("disconnect" if ptype == 14 else "auth", ts, to_server, (flags >> 1) & 3,
                          bool(flags & 1), bool(flags & 8), length, rc, props), an


def bare(ptype, ts, to_server, flags, length, truncated=False, name=None):
    """PINGREQ/PINGRESP, an unassigned type, or a packet over the size cap that is not parsed."""
    return MqttBare(name or TYPE_NAMES[ptype], ts, to_server, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8),
                    length, ptype, truncated)
