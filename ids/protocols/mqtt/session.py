"""MQTT session: fixed-header framing over the reassembled stream (many packets per segment, one packet
over many segments), the protocol version learnt from CONNECT, exchanges paired by packet id, v5 topic
aliases, and every bound a long-lived session needs.

Each exchange becomes one ids.protocols.mqtt.messages.MqttExchange; exchanges whose answer never comes are emitted at
timeout or flow end with status "incomplete", never dropped. The state machine follows Suricata's
(rust/src/mqtt/mqtt.rs) so its anomaly names keep their meaning; where this one pairs more than Suricata
does (packet ids per direction, answers after a refused or unintroduced start) the tests say why.
Packet bodies are parsed in parser.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...flow.budget import Charged
from .messages import MqttExchange
from .consts import (DOUBLE_CONNECT, MALFORMED_TRAFFIC, MESSAGE_TOO_LARGE, MISSING_CONNECT, MISSING_MSG_ID,
                     MISSING_PUBLISH, MISSING_SUBSCRIBE, MISSING_UNSUBSCRIBE, REQUIRED_FLAGS,
                     TOO_MANY_TRANSACTIONS, UNASSIGNED_MSG_TYPE, UNINTRODUCED_MESSAGE, UNKNOWN_TOPIC_ALIAS)
from .parser import (FramingError, bare, fixed_header, flag_anomalies, parse_ack, parse_connack, parse_connect,
                     parse_disconnect, parse_publish, parse_suback, parse_subscribe, parse_unsuback,
                     parse_unsubscribe)
from .sparkplug.hook import annotate as _app_annotate, annotate_will as _app_will, wanted as _app_wanted  # #14

if TYPE_CHECKING:
    from ...flow.context import SessionContext

NS = 1_000_000_000


def _pending_cost(p) -> int:
    """Bytes an open exchange holds (_Pending, its message and the payload head that message keeps, at
    most mqtt.string_log_limit, or a SUBSCRIBE's filters): 620 for a small PUBLISH, 1,700 with a 1 kB head
    (tracemalloc, tests/test_hostile_state.py); a filter ~110 bytes besides its text."""
    m = p.msgs[0]
    head = getattr(m, "payload", None)
    n = 600 + (len(head) if head else 0)
    topics = getattr(m, "topics", None)  # SUBSCRIBE (filter, qos) or UNSUBSCRIBE filter: up to MAX_FILTERS
    if topics:
        for t in topics:
            f = t[0] if type(t) is tuple else t
            n += 110 + (len(f) if f else 0)
    props = getattr(m, "properties", None)  # v5: up to MAX_FILTERS user properties besides the rest
    if props:
        for k, v in props.items():
            n += 150 + len(k)
            if type(v) is str:
                n += len(v)
            elif type(v) is list:  # a user property repeated under one key
                for x in v:
                    n += 60 + (len(x) if type(x) is str else 8)
    return n
#: Topic aliases remembered per direction (the peer may allow up to 65535; more are not stored).
MAX_TOPIC_ALIASES = 4096
#: What one remembered alias holds besides its topic's text (the str object, the dict slot, the int): every
#: alias is charged to limits.reassembly_total, held across packets like a reassembly buffer. Counted by
#: number alone, 4,096 aliases a direction of 30 kB topics held 240 MB for two flows of a 252 MB capture.
ALIAS_BYTES = 120
#: A flow reached by port is declared "not MQTT" when its first bytes cannot be framed.
_CONNECT_KEY = "connect"
#: Mid-stream probing: a packet claiming more than this is not taken as evidence.
PROBE_MAX_PACKET = 1 << 20


def probe(buf: bytes, to_server: bool) -> int:
    """Content probe for MQTT on other ports. A client's first packet is CONNECT with a known protocol name
    ("MQTT" level 4/5, "MQIsdp" level 3); a server's first is a CONNACK. Mid-stream (no CONNECT seen), the
    bytes must frame as a chain of plausible packets that ends exactly where the data ends and holds at
    least one PUBLISH, SUBSCRIBE or UNSUBSCRIBE with a printable topic (PINGREQ/PINGRESP alone are too thin
    to decide on). Returns 1 (yes), 0 (no) or -1 (need more bytes)."""
    n = len(buf)
    if n == 0:
        return -1
    b0 = buf[0]
    if b0 == 0x10 and to_server:
        return _probe_connect(buf, n)
    if b0 == 0x20 and not to_server:
        r = _probe_connack(buf, n)
        if r:
            return r
    return _probe_chain(buf, n)


def _probe_connect(buf: bytes, n: int) -> int:
    try:
        hdr = fixed_header(buf, 0, n)
    except FramingError:
        return 0
    if hdr is None:
        return -1
    rlen, p = hdr
    head = buf[p:p + 9]
    for name, levels in ((b"\x00\x04MQTT", (4, 5)), (b"\x00\x06MQIsdp", (3,))):
        k = len(name)
        if len(head) <= k:
            if name.startswith(head):
                return -1
        elif head[:k] == name:
            return 1 if head[k] in levels and rlen >= k + 4 else 0
    return 0


def _probe_connack(buf: bytes, n: int) -> int:
    if n < 2:
        return -1
    rlen = buf[1]
    if rlen == 2:  # 3.1/3.1.1: ack flags 0/1, return code 0-5
        if n < 4:
            return -1
        return 1 if buf[2] <= 1 and buf[3] <= 5 else 0
    if 3 <= rlen < 128:  # 5.0: ack flags, reason code, property length that fits
        if n < 5:
            return -1
        return 1 if buf[2] <= 1 and (buf[3] == 0 or buf[3] >= 0x80) and buf[4] == rlen - 3 else 0
    return 0


def _printable(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and text.isprintable()


def _probe_chain(buf: bytes, n: int) -> int:
    off = 0
    strong = False
    while off < n:
        b0 = buf[off]
        t = b0 >> 4
        req = REQUIRED_FLAGS.get(t)
        if t == 0 or t == 1 or t == 2 or (req is not None and (b0 & 15) != req) or (t == 3 and b0 & 6 == 6):
            return 0
        try:
            hdr = fixed_header(buf, off, n)
        except FramingError:
            return 0
        if hdr is None:
            return -1
        rlen, p = hdr
        if rlen > PROBE_MAX_PACKET or (t in (12, 13) and rlen) or (4 <= t <= 11 and rlen < 2):
            return 0
        end = p + rlen
        if t in (3, 8, 10) and end <= n:
            q = p if t == 3 else p + 2  # topic first in PUBLISH; after the packet id in (UN)SUBSCRIBE
            if q + 2 > end:
                return 0
            tl = (buf[q] << 8) | buf[q + 1]
            if q + 2 + tl > end or not _printable(buf[q + 2:q + 2 + tl]):
                if t == 3 or q + 2 + tl > end:
                    return 0
            else:
                strong = True
        if end > n:
            return -1
        off = end
    return 1 if strong else -1


class _Pending:
    """An exchange waiting for its next message."""

    __slots__ = ("msgs", "anomalies", "last", "qos")

    def __init__(self, msg, anomalies, qos=0):
        self.msgs = [msg]
        self.anomalies = list(anomalies)
        self.last = msg.ts
        self.qos = qos


class MqttSession:
    __slots__ = ("sc", "emit", "ctx", "buf", "have", "need", "skip", "resync", "version", "connected",
                 "pending", "cap", "limit", "max_pending", "timeout", "aliases", "valid", "dead", "oversized",
                 "alias_bytes", "alias_lost")

    def __init__(self, sc: SessionContext):
        self.sc = sc
        self.emit = sc.emit
        self.ctx = sc.context
        cfg = sc.config.mqtt
        self.cap = cfg.max_message_length
        self.limit = cfg.string_log_limit
        self.max_pending = cfg.max_pending
        self.timeout = cfg.exchange_timeout * NS
        # A packet in progress per direction: its segments, their size, and the size that completes it
        # (at most max_message_length + 5 bytes: over that only the head is waited for).
        self.buf: list = [None, None]
        self.have = [0, 0]
        self.need = [0, 0]
        self.skip = [0, 0]  # bytes still to pass over of a packet over the cap
        self.resync = [False, False]  # after a gap: hunt for the next packet boundary
        self.dead = [False, False]
        self.version = 0  # unknown until CONNECT (or a v5 CONNACK on mid-stream pickup)
        self.connected = False  # a CONNECT/CONNACK pair completed (Suricata's meaning)
        # "connect" | (originator is client, packet id) -> _Pending, counted across flows (limits.pending_total)
        self.pending: Charged = Charged(sc.pending_pool, _pending_cost)  # typed so: compiled code keeps its methods
        self.oversized = False  # an oversized_pdu notice was given for this flow
        self.aliases = [None, None]  # v5 topic alias -> topic, per direction
        self.alias_bytes = 0  # what the aliases hold, charged to the reassembly pool
        self.alias_lost = [False, False]  # per direction: an alias was not kept (the pool was full)
        self.valid = 0

    # ------------------------------------------------------------------ stream input
    def data(self, to_server: bool, data: bytes, ts: int) -> None:
        i = 0 if to_server else 1
        if self.dead[i]:
            return
        skip = self.skip[i]
        if skip:
            if len(data) <= skip:
                self.skip[i] = skip - len(data)
                return
            data = data[skip:]
            self.skip[i] = 0
        parts = self.buf[i]
        if parts is not None:
            # A packet in progress: collect segments until it is whole, joining once (a 1 MB PUBLISH in
            # 1400-byte segments must not be re-copied per segment).
            parts.append(data)
            have = self.have[i] + len(data)
            if have < self.need[i]:
                self.have[i] = have
                return
            data = b"".join(parts)
            self.buf[i] = None
        elif self.resync[i]:
            if not self._boundary(data):
                return
            self.resync[i] = False
        n = len(data)
        off = 0
        cap = self.cap
        message = self._message
        need = 2
        while n - off >= 2:
            b1 = data[off + 1]
            if b1 < 0x80:  # remaining length in one byte: most packets
                rlen = b1
                p = off + 2
            else:
                try:
                    hdr = fixed_header(data, off, n)
                except FramingError:
                    self._framing_error(i, data[off], ts)
                    return
                if hdr is None:
                    need = n - off + 1
                    break
                rlen, p = hdr
            end = p + rlen
            if rlen > cap:
                if not self.oversized:  # said when announced: the packet may never complete
                    self.oversized = True
                    self.sc.oversized(ts, "mqtt", rlen, cap, to_server)
                head = p + cap
                if head > n:
                    need = head - off  # wait for the capped head only
                    break
                self._oversized(data, off, p, head, end, to_server, ts)
                if end > n:
                    self.skip[i] = end - n
                    off = n
                    break
                off = end
                continue
            if end > n:
                need = end - off
                break
            message(data[off], data, p, end, to_server, ts, end - off)
            off = end
        if off < n and not self.dead[i]:
            self.buf[i] = [data[off:]]
            self.have[i] = n - off
            self.need[i] = need

    def _boundary(self, data: bytes) -> bool:
        """After a gap: accept `data` as starting on a packet boundary only if it frames as a chain of
        plausible packets ending exactly at its end."""
        n = len(data)
        off = 0
        while off < n:
            b0 = data[off]
            t = b0 >> 4
            req = REQUIRED_FLAGS.get(t)
            if t == 0 or (req is not None and (b0 & 15) != req) or (t == 3 and b0 & 6 == 6):
                return False
            try:
                hdr = fixed_header(data, off, n)
            except FramingError:
                return False
            if hdr is None or hdr[0] > self.cap:
                return False
            off = hdr[1] + hdr[0]
        return off == n

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None:
        i = 0 if to_server else 1
        skip = self.skip[i]
        if skip >= nbytes:  # the hole is inside a payload we were skipping anyway
            self.skip[i] = skip - nbytes
            return
        self.skip[i] = 0
        self.buf[i] = None
        self.resync[i] = True

    def _framing_error(self, i: int, b0: int, ts: int) -> None:
        if self.valid == 0:
            self.dead = [True, True]
            self.sc.detach(ts, "remaining length longer than four bytes before any valid MQTT packet")
            return
        msg = bare(b0 >> 4, ts, i == 0, b0 & 15, 0)
        self._emit([msg], (MALFORMED_TRAFFIC,), "malformed")
        self.buf[i] = None
        self.resync[i] = True

    # ------------------------------------------------------------------ one packet
    def _message(self, b0: int, data: bytes, p: int, end: int, to_server: bool, ts: int, length: int) -> None:
        ptype = b0 >> 4
        flags = b0 & 15
        self.valid += 1
        if ptype == 3:
            msg, an = parse_publish(data, p, end, end, ts, to_server, flags, length, self.version, self.limit)
            if msg.payload_length is not None and msg.topic and _app_wanted(msg.topic, msg.payload):  # #14
                msg = _app_annotate(self, msg, data[end - msg.payload_length:end])
            if flags & 6 == 6:
                an += flag_anomalies(3, flags)
            self._publish(msg, an, to_server)
        elif 4 <= ptype <= 7:
            msg, an = parse_ack(ptype, data, p, end, ts, to_server, flags, length, self.version)
            if flags != REQUIRED_FLAGS[ptype]:
                an += flag_anomalies(ptype, flags)
            self._ack(ptype, msg, an, to_server)
        elif ptype == 1:
            msg, an, level = parse_connect(data, p, end, ts, to_server, flags, length, self.limit)
            if flags:
                an += flag_anomalies(1, flags)
            if level:
                self.version = level
            if msg.will_topic:  # #14: a Sparkplug NDEATH will
                msg = _app_will(self, msg)
            self._connect(msg, an)
        elif ptype == 2:
            if not self.version and end - p > 2:
                self.version = 5  # mid-stream: only a v5 CONNACK is longer than two bytes
            msg, an = parse_connack(data, p, end, ts, to_server, flags, length, self.version)
            if flags:
                an += flag_anomalies(2, flags)
            self._connack(msg, an)
        elif ptype == 12 or ptype == 13:
            an = flag_anomalies(ptype, flags) if flags or end != p else ()
            if end != p:
                an += (MALFORMED_TRAFFIC,)
            self._alone(bare(ptype, ts, to_server, flags, length), an)
        elif ptype == 8:
            msg, an = parse_subscribe(data, p, end, ts, to_server, flags, length, self.version)
            if flags != 2:
                an += flag_anomalies(8, flags)
            self._request(msg, an)
        elif ptype == 10:
            msg, an = parse_unsubscribe(data, p, end, ts, to_server, flags, length, self.version)
            if flags != 2:
                an += flag_anomalies(10, flags)
            self._request(msg, an)
        elif ptype == 9 or ptype == 11:
            fn = parse_suback if ptype == 9 else parse_unsuback
            msg, an = fn(data, p, end, ts, to_server, flags, length, self.version)
            if flags:
                an += flag_anomalies(ptype, flags)
            self._subscribe_ack(msg, an, ptype)
        elif ptype == 14 or (ptype == 15 and self.version not in (3, 4)):
            msg, an = parse_disconnect(ptype, data, p, end, ts, to_server, flags, length, self.version)
            if flags:
                an += flag_anomalies(ptype, flags)
            if ptype == 15 and _CONNECT_KEY in self.pending:  # v5 enhanced authentication inside CONNECT
                pend = self.pending[_CONNECT_KEY]
                pend.msgs.append(msg)
                pend.anomalies += an
                pend.last = ts
                return
            self._alone(msg, an)
        else:  # 0, or 15 before 5.0: reserved
            self._emit([bare(ptype, ts, to_server, flags, length, name="unassigned")], (UNASSIGNED_MSG_TYPE,),
                       "complete")

    def _oversized(self, data, off, p, head, end, to_server, ts) -> None:
        """A packet over mqtt.max_message_length: a PUBLISH gets its head parsed (topic, packet id,
        properties) and pairs as usual; any other type is recorded by type and size only."""
        b0 = data[off]
        ptype, flags = b0 >> 4, b0 & 15
        self.valid += 1
        length = end - off
        if ptype == 3:
            msg, an = parse_publish(data, p, head, end, ts, to_server, flags, length, self.version, self.limit)
            self._publish(msg, an + (MESSAGE_TOO_LARGE,), to_server)
            return
        msg = bare(ptype, ts, to_server, flags, length, truncated=True)
        if ptype == 1:
            self._connect(msg, (MESSAGE_TOO_LARGE,))
        else:
            an = (MESSAGE_TOO_LARGE,) if self.connected else (MESSAGE_TOO_LARGE, UNINTRODUCED_MESSAGE)
            self._emit([msg], an, "complete")

    # ------------------------------------------------------------------ pairing
    def _emit(self, msgs: list, anomalies, status: str) -> None:
        if anomalies:
            if MALFORMED_TRAFFIC in anomalies:
                status = "malformed"
            anomalies = tuple(dict.fromkeys(anomalies)) if len(anomalies) > 1 else tuple(anomalies)
        else:
            anomalies = ()
        self.emit(MqttExchange(msgs[0].ts, self.ctx, self.version, tuple(msgs), status, anomalies, self.limit))

    def _finish(self, pend: _Pending, status: str = "complete", extra=()) -> None:
        self._emit(pend.msgs, pend.anomalies + list(extra) if extra else pend.anomalies, status)

    def _alone(self, msg, an) -> None:
        if not self.connected:
            an = an + (UNINTRODUCED_MESSAGE,)
        self._emit([msg], an, "complete")

    def _open(self, key, msg, an, qos=0) -> None:
        pending = self.pending
        old = pending.pop(key, None)
        if old is not None:  # the id (or CONNECT) was reused before its exchange ended
            self._finish(old, "incomplete")
        elif len(pending) >= self.max_pending:
            okey = next(iter(pending))
            self._finish(pending.pop(okey), "incomplete", (TOO_MANY_TRANSACTIONS,))
        pending[key] = _Pending(msg, an, qos)
        if pending.take_over():  # limits.pending_total: this flow gives up its oldest
            self._finish(pending.pop(next(iter(pending))), "incomplete", (TOO_MANY_TRANSACTIONS,))
            self.sc.memory_cap(msg.ts, pending.pool)

    def _connect(self, msg, an) -> None:
        if self.connected:
            an = an + (DOUBLE_CONNECT,)
        self._open(_CONNECT_KEY, msg, an)

    def _connack(self, msg, an) -> None:
        pend = self.pending.pop(_CONNECT_KEY, None)
        if pend is None:
            self._emit([msg], an + (MISSING_CONNECT,), "unsolicited")
            return
        pend.msgs.append(msg)
        pend.anomalies += an
        self.connected = True  # as Suricata: whatever the return code
        self._finish(pend)

    def _publish(self, msg, an, to_server: bool) -> None:
        qos = msg.qos
        if qos == 0 and not an and self.connected and msg.properties is None:
            # The hot path (mosquitto forwarding QoS 0 telemetry): one finished exchange, nothing to check.
            self.emit(MqttExchange(msg.ts, self.ctx, self.version, (msg,), "complete", (), self.limit))
            return
        if self.version == 5 and msg.properties and "topic_alias" in msg.properties:
            msg, an = self._alias(msg, an, to_server)
        if not self.connected:
            an = an + (UNINTRODUCED_MESSAGE,)
        if qos == 0 or qos == 3:  # nothing answers QoS 0; QoS 3 does not exist (invalid_qos_level)
            self._emit([msg], an, "complete")
            return
        mid = msg.message_id
        if mid is None:
            self._emit([msg], an + (MISSING_MSG_ID,) if MALFORMED_TRAFFIC not in an else an, "complete")
            return
        self._open((to_server, mid), msg, an, qos)

    def _alias(self, msg, an, to_server: bool):
        alias = msg.properties["topic_alias"]
        if type(alias) is not int:
            return msg, an
        i = 0 if to_server else 1
        table = self.aliases[i]
        if msg.topic:
            if table is None:
                table = self.aliases[i] = {}
            old = table.get(alias)
            if old is None and len(table) >= MAX_TOPIC_ALIASES:
                return msg, an
            pool = self.sc.reassembly_pool
            if pool is not None:
                if old is not None:  # a new topic for the alias: the old one's bytes back first
                    del table[alias]
                    self._give_alias(pool, old)
                cost = ALIAS_BYTES + len(msg.topic)
                if not pool.take(cost):
                    pool.give(cost)
                    self.sc.memory_cap(msg.ts, pool)
                    self.alias_lost[i] = True  # its later uses are not "never defined"
                    return msg, an
                self.alias_bytes += cost
            table[alias] = msg.topic
            return msg, an
        if msg.topic is None:
            return msg, an
        topic = table.get(alias) if table else None
        if topic is None:
            return msg, an if self.alias_lost[i] else an + (UNKNOWN_TOPIC_ALIAS,)
        return msg._replace(topic=topic, topic_from_alias=True), an

    def _give_alias(self, pool, topic: str) -> None:
        cost = ALIAS_BYTES + len(topic)
        self.alias_bytes -= cost
        pool.give(cost)

    def _ack(self, ptype: int, msg, an, to_server: bool) -> None:
        if not self.connected:
            an = an + (UNINTRODUCED_MESSAGE,)
        mid = msg.message_id
        # PUBREL travels with the PUBLISH; PUBACK, PUBREC and PUBCOMP against it.
        key = (to_server if ptype == 6 else not to_server, mid)
        pend = self.pending.get(key) if mid is not None else None
        if pend is None or pend.msgs[0].type != "publish" or pend.qos != (1 if ptype == 4 else 2):
            self._emit([msg], an + (MISSING_PUBLISH,), "unsolicited")
            return
        pend.msgs.append(msg)
        pend.anomalies += an
        pend.last = msg.ts
        # QoS 1 ends with PUBACK, QoS 2 with PUBCOMP, or with a v5 PUBREC that refuses the message.
        if ptype == 4 or ptype == 7 or (ptype == 5 and msg.reason_code is not None and msg.reason_code >= 0x80):
            del self.pending[key]
            self._finish(pend)

    def _request(self, msg, an) -> None:
        if not self.connected:
            an = an + (UNINTRODUCED_MESSAGE,)
        if msg.message_id is None:
            self._emit([msg], an, "complete")
            return
        self._open((msg.to_server, msg.message_id), msg, an)

    def _subscribe_ack(self, msg, an, ptype: int) -> None:
        if not self.connected:
            an = an + (UNINTRODUCED_MESSAGE,)
        want = "subscribe" if ptype == 9 else "unsubscribe"
        key = (not msg.to_server, msg.message_id)
        pend = self.pending.get(key) if msg.message_id is not None else None
        if pend is None or pend.msgs[0].type != want:
            self._emit([msg], an + (MISSING_SUBSCRIBE if ptype == 9 else MISSING_UNSUBSCRIBE,), "unsolicited")
            return
        del self.pending[key]
        pend.msgs.append(msg)
        pend.anomalies += an
        self._finish(pend)

    # ------------------------------------------------------------------ time and end
    def expire(self, now: int) -> None:
        pending = self.pending
        if not pending:
            return
        limit = now - self.timeout
        for key in [k for k, p in pending.items() if p.last < limit]:
            self._finish(pending.pop(key), "incomplete")

    def close(self, ts: int) -> None:
        pending = self.pending
        while pending:
            self._finish(pending.pop(next(iter(pending))), "incomplete")
        if self.alias_bytes:  # the aliases' charge back to the reassembly pool
            pool = self.sc.reassembly_pool
            if pool is not None:
                pool.give(self.alias_bytes)
            self.alias_bytes = 0
            self.aliases = [None, None]
        for i, b in enumerate(self.buf):
            if b is not None:
                self.sc.truncated(ts, "mqtt", self.have[i], i == 0)
        self.buf = [None, None]
