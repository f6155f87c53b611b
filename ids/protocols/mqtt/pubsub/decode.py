"""OPC UA PubSub NetworkMessages carried by MQTT (OPC 10000-14): JSON (7.2.5: ua-data, ua-metadata, ua-status)
and UADP binary (7.2.2: network message header, group header, payload header, security header, DataSetMessages
with Variant fields where the message is not encrypted). Recognised on the Part 14 topic tree
`opcua/<json|uadp>/...` and, for JSON, by content on any topic.

Pure functions from bytes to a PubSubMessage; Variants are read with otids's OPC UA Binary decoder
(ids.protocols.opcua.parser.variant). Never raises on input: what cannot be read is a `problems` entry.
"""
from __future__ import annotations

import struct
from typing import Any, NamedTuple

import orjson

from ...opcua.parser import Bad, variant
from ...opcua.consts import BUILTIN_NAMES
from ..sparkplug.records import float32

MAX_DATASETS = 256
MAX_FIELDS = 1024


class PubSubDataSet(NamedTuple):
    writer_id: int | None = None
    writer_name: str | None = None
    sequence_number: int | None = None
    message_type: str | None = None  # key_frame | delta_frame | event | keep_alive (JSON: ua-keyframe ...)
    status: int | None = None
    timestamp: str | None = None
    fields: tuple = ()  # (name or index as text, value, built-in type name or None)
    encrypted: bool = False  # the fields could not be read
    named: bool = False  # UADP field positions named from the publisher's ua-metadata


class PubSubMessage(NamedTuple):
    encoding: str  # json | uadp
    message_type: str | None = None  # ua-data | ua-metadata | ua-status | discovery | chunk
    publisher_id: str | None = None
    writer_group_id: int | None = None
    writer_group_name: str | None = None
    group_version: int | None = None
    network_message_number: int | None = None
    sequence_number: int | None = None
    security_mode: str | None = None  # None | Sign | SignAndEncrypt (UADP only; JSON has no message security)
    security_token_id: int | None = None
    dataset_class_id: str | None = None
    datasets: tuple = ()
    metadata_name: str | None = None
    metadata_fields: tuple = ()  # (name, type)
    payload_length: int = 0
    problems: tuple[str, ...] = ()

    doc_key = "pubsub"  # mqtt.publish.pubsub

    def to_doc(self) -> dict:
        from .ecs import pubsub_doc
        return pubsub_doc(self)


def looks_like(topic: str, head: bytes | None) -> bool:
    """Hot path: a PubSub topic, or a JSON payload that names a PubSub message type."""
    if topic.startswith("opcua/"):
        return True
    return bool(head) and head[:1] == b"{" and b'"ua-' in head


def decode_pubsub(topic: str, payload: bytes) -> PubSubMessage | None:
    parts = topic.split("/")
    enc = parts[1] if len(parts) > 1 and parts[0] == "opcua" else None
    if enc == "uadp":
        return decode_uadp(payload)
    if enc == "json" or payload[:1] == b"{":
        msg = decode_json(payload)
        if msg is None and enc == "json":
            return PubSubMessage("json", payload_length=len(payload), problems=("malformed_json",))
        return msg
    return None


# ------------------------------------------------------------------ JSON (7.2.5)
def _jvalue(v):
    """A field value: reversible encoding {"Type"/"UaType": n, "Body"/"Value": v}, or the bare value."""
    if isinstance(v, dict):
        t = v.get("Type", v.get("UaType"))
        if isinstance(t, int) and ("Body" in v or "Value" in v):
            return v.get("Body", v.get("Value")), BUILTIN_NAMES.get(t, f"unknown-{t}")
    return v, None


def _int(v):
    return v if type(v) is int else None


def _str(v):
    return v if isinstance(v, str) else (str(v) if type(v) is int else None)


def decode_json(payload: bytes) -> PubSubMessage | None:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    mt = obj.get("MessageType")
    n = len(payload)
    if mt == "ua-metadata":
        md = obj.get("MetaData") if isinstance(obj.get("MetaData"), dict) else {}
        flist = md.get("Fields") if isinstance(md.get("Fields"), list) else []
        fields = tuple((str(f.get("Name")), BUILTIN_NAMES.get(f.get("BuiltInType"), _str(f.get("BuiltInType"))))
                       for f in flist[:MAX_FIELDS] if isinstance(f, dict))
        ds = PubSubDataSet(writer_id=_int(obj.get("DataSetWriterId")), writer_name=_str(obj.get("DataSetWriterName")))
        return PubSubMessage("json", mt, _str(obj.get("PublisherId")), datasets=(ds,),
                             writer_group_name=_str(obj.get("WriterGroupName")),
                             metadata_name=_str(md.get("Name")), metadata_fields=fields, payload_length=n)
    if mt == "ua-status":
        return PubSubMessage("json", mt, _str(obj.get("PublisherId")), payload_length=n)
    msgs = obj.get("Messages")
    if mt is None and msgs is None and "Payload" in obj:  # a single DataSetMessage without network header
        msgs = [obj]
    elif mt not in (None, "ua-data") or not isinstance(msgs, list):
        if mt is None or not isinstance(mt, str) or not mt.startswith("ua-"):
            return None
        return PubSubMessage("json", mt, _str(obj.get("PublisherId")), payload_length=n,
                             problems=("malformed_network_message" if mt == "ua-data" else "unknown_message_type",))
    problems = []
    sets = []
    for m in msgs[:MAX_DATASETS]:
        if not isinstance(m, dict):
            problems.append("malformed_dataset_message")
            continue
        pl = m.get("Payload")
        fields = []
        if isinstance(pl, dict):
            for k, v in list(pl.items())[:MAX_FIELDS]:
                val, t = _jvalue(v)
                fields.append((str(k), val, t))
        st = m.get("Status")
        sets.append(PubSubDataSet(_int(m.get("DataSetWriterId")), _str(m.get("DataSetWriterName")),
                                  _int(m.get("SequenceNumber")), _str(m.get("MessageType")) or "ua-keyframe",
                                  st if type(st) is int else (st.get("Code") if isinstance(st, dict) else None),
                                  _str(m.get("Timestamp")), tuple(fields)))
    return PubSubMessage("json", "ua-data", _str(obj.get("PublisherId")),
                         writer_group_name=_str(obj.get("WriterGroupName")),
                         dataset_class_id=_str(obj.get("DataSetClassId")), datasets=tuple(sets), payload_length=n,
                         problems=tuple(problems))


# ------------------------------------------------------------------ UADP (7.2.2)
class _Short(Exception):
    pass


def _u(fmt: str, buf: bytes, off: int):
    size = struct.calcsize(fmt)
    if off + size > len(buf):
        raise _Short
    return struct.unpack_from(fmt, buf, off)[0], off + size


_PUBID = ("<B", "<H", "<I", "<Q")
_DS_TYPES = ("key_frame", "delta_frame", "event", "keep_alive")
_SECURITY = {0: "None", 1: "Sign", 3: "SignAndEncrypt", 2: "Encrypt"}


def decode_uadp(buf: bytes) -> PubSubMessage:
    n = len(buf)
    out: dict[str, Any] = {"payload_length": n}
    problems: list[str] = []
    try:
        b0, off = _u("<B", buf, 0)
        if b0 & 0x0F != 1:
            return PubSubMessage("uadp", payload_length=n, problems=("unknown_uadp_version",))
        f1 = f2 = 0
        if b0 & 0x80:
            f1, off = _u("<B", buf, off)
            if f1 & 0x80:
                f2, off = _u("<B", buf, off)
        kind = (f2 >> 2) & 7
        out["message_type"] = {0: "ua-data", 1: "discovery-request", 2: "discovery-response"}.get(kind, f"unknown-{kind}")
        if f2 & 1:
            out["message_type"] = "chunk"
        if b0 & 0x10:
            t = f1 & 7
            if t == 4:
                ln, off = _u("<i", buf, off)
                if ln < 0 or off + ln > n:
                    raise _Short
                out["publisher_id"] = buf[off:off + ln].decode("utf-8", "backslashreplace")
                off += ln
            elif t < 4:
                v, off = _u(_PUBID[t], buf, off)
                out["publisher_id"] = str(v)
            else:
                problems.append("bad_publisher_id_type")
                raise _Short
        if f1 & 0x08:
            if off + 16 > n:
                raise _Short
            out["dataset_class_id"] = buf[off:off + 16].hex()
            off += 16
        writers: list[int] = []
        if b0 & 0x20:
            gf, off = _u("<B", buf, off)
            if gf & 1:
                out["writer_group_id"], off = _u("<H", buf, off)
            if gf & 2:
                out["group_version"], off = _u("<I", buf, off)
            if gf & 4:
                out["network_message_number"], off = _u("<H", buf, off)
            if gf & 8:
                out["sequence_number"], off = _u("<H", buf, off)
        if b0 & 0x40 and kind == 0 and not f2 & 1:
            count, off = _u("<B", buf, off)
            for _ in range(count):
                w, off = _u("<H", buf, off)
                writers.append(w)
        if f1 & 0x20:
            _, off = _u("<q", buf, off)
        if f1 & 0x40:
            _, off = _u("<H", buf, off)
        if f2 & 2:
            size, off = _u("<H", buf, off)
            off += size
        encrypted = False
        if f1 & 0x10:
            sf, off = _u("<B", buf, off)
            mode = (1 if sf & 1 else 0) | (2 if sf & 2 else 0)
            out["security_mode"] = _SECURITY[mode]
            out["security_token_id"], off = _u("<I", buf, off)
            nl, off = _u("<B", buf, off)
            off += nl
            if sf & 4:
                _, off = _u("<H", buf, off)
            encrypted = bool(sf & 2)
        else:
            out["security_mode"] = "None"
        if out["message_type"] == "ua-data":
            out["datasets"] = _datasets(buf, off, writers, encrypted, problems)
    except _Short:
        problems.append("truncated")
    return PubSubMessage("uadp", **out, problems=tuple(dict.fromkeys(problems)))


def _datasets(buf: bytes, off: int, writers: list[int], encrypted: bool, problems: list) -> tuple:
    n = len(buf)
    count = max(len(writers), 1)
    sizes = []
    if len(writers) > 1:
        for _ in range(len(writers)):
            s, off = _u("<H", buf, off)
            sizes.append(s)
    out = []
    for i in range(min(count, MAX_DATASETS)):
        wid = writers[i] if i < len(writers) else None
        if encrypted:
            out.append(PubSubDataSet(wid, encrypted=True))
            continue
        end = off + sizes[i] if sizes else n
        try:
            out.append(_dataset(buf[:end], off, wid))
        except (_Short, Bad):
            problems.append("malformed_dataset_message")
            out.append(PubSubDataSet(wid))
        off = end
        if off >= n:
            break
    return tuple(out)


def _dataset(buf: bytes, off: int, wid) -> PubSubDataSet:
    d1, off = _u("<B", buf, off)
    d2 = 0
    if d1 & 0x80:
        d2, off = _u("<B", buf, off)
    seq = status = None
    if d1 & 0x08:
        seq, off = _u("<H", buf, off)
    if d2 & 0x10:
        _, off = _u("<q", buf, off)
    if d2 & 0x20:
        _, off = _u("<H", buf, off)
    if d1 & 0x10:
        status, off = _u("<H", buf, off)
    if d1 & 0x20:
        _, off = _u("<I", buf, off)
    if d1 & 0x40:
        _, off = _u("<I", buf, off)
    mtype = _DS_TYPES[d2 & 0x0F] if (d2 & 0x0F) < 4 else f"unknown-{d2 & 0x0F}"
    enc = (d1 >> 1) & 3  # 0 Variant, 1 RawData, 2 DataValue
    fields = []
    if mtype in ("key_frame", "delta_frame") and enc == 0:
        fc, off = _u("<H", buf, off)
        for i in range(min(fc, MAX_FIELDS)):
            idx = i
            if mtype == "delta_frame":
                idx, off = _u("<H", buf, off)
            v, nxt = variant(buf, off)
            if nxt <= off:
                raise _Short
            off = nxt
            val, typ = (None, None) if v is None else (v.get("value"), v.get("type"))
            if typ == "Float":  # the float32 as its shortest decimal, as for Sparkplug
                val = [float32(x) for x in val] if isinstance(val, list) else float32(val)
            fields.append((str(idx), val, typ))
    return PubSubDataSet(wid, None, seq, mtype, status, None, tuple(fields))
