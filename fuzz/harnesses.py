"""Fuzz harnesses: one function per entry point that hostile bytes reach, each taking one input (bytes)
and raising only on a finding. Plain callables: fuzz/run.py drives them under atheris (coverage-guided),
tests/test_fuzz.py replays the committed seeds and every past crash through them without atheris.

What is a finding: any exception other than the documented ones (CaptureError on a damaged capture,
UserError on a bad user file), a session_error (the flow table's guard catches session exceptions in
production; here it re-raises them, so the fuzzer sees the parser bug behind it), and an event whose
ECS document cannot be rendered to JSON.

Session input format (also what seeds.py writes from real captures), a sequence of records:
  flags:u8  len:u16be  payload[len]  [hole:u16be if flags&2]  [seconds:u16be if flags&8]  [back:u8 if flags&4]
  flags bit 0: server -> client (else client -> server)      bit 1: skip `hole` bytes of sequence space first
  bit 2: send it `back` bytes before the stream's position (overlap / retransmission with other bytes)
  bit 3: capture time jumps `seconds` forward first (timeouts, sweeps)
  bit 4: hold it back and send it after the next record (out of order)        bit 5: FIN after it
The first byte of the input (when its bit 0 is set) skips the handshake: a flow picked up mid-stream.
"""
from __future__ import annotations

import io
import json
import os
import struct
import tempfile

from ids.capture.pcapfile import PCAP_MAGIC, PCAPNG_SHB, PcapngReader, PcapReader
from ids.config import Config
from ids.decode.packet import Packet
from ids.detect.anomaly import AnomalyDetector
from ids.errors import CaptureError, UserError
from ids.events import FlowNotice
from ids.flow import table as _table_mod
from ids.flow.table import FlowTable
from ids.pipeline import Collector, Run
from ids.protocols import DISSECTED as PROTOCOLS

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
CIP, SIP = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
SESSION_PORTS = {"modbus": 502, "mqtt": 1883, "opcua": 4840, "tls": 8883}
_CFG = Config()


def _shared_identifier():
    """One Identifier per process for every table the harnesses build. Each FlowTable builds its own, and
    with it a fresh nDPI dissector (several MB of C memory, never freed) plus the import walk of every
    identified-only package: per execution that made the session harnesses leak ~10 MB and spend half
    their time there (libFuzzer stopped them on its RSS limit after a few hundred runs). The Identifier
    holds no per-flow state (nDPI's flow state lives on the flow), so sharing it changes no result."""
    made: dict = {}
    real = _table_mod.Identifier

    def identifier(ports, use_ndpi=True):
        key = (tuple(sorted(ports.items())), use_ndpi)
        ident = made.get(key)
        if ident is None:
            ident = made[key] = real(ports, use_ndpi=use_ndpi)
        ident.deep = None
        return ident
    return identifier


_table_mod.Identifier = _shared_identifier()


class Finding(Exception):
    """Raised by a harness for what is a bug even though nothing raised (a swallowed session error)."""


class StrictTable(FlowTable):
    """The flow table with its protocol-boundary guard turned into a crash: the fuzzer must see the bug."""

    def session_error(self, flow, ts, where, exc):
        raise exc


def _render(ev) -> None:
    json.dumps(ev.to_doc())


def _strict_emit(detector: AnomalyDetector | None):
    def emit(ev):
        if type(ev) is FlowNotice and ev.action == "session_error":
            raise Finding(f"session_error {ev.details}")
        _render(ev)
        if detector is not None:
            for a in detector.on_event(ev) or ():
                json.dumps(a.to_doc())
    return emit


def records(data: bytes):
    """Decode the session input format above into (flags, payload, hole, seconds, back)."""
    off, n = 0, len(data)
    while off + 3 <= n:
        flags = data[off]
        ln = (data[off + 1] << 8) | data[off + 2]
        off += 3
        payload = data[off:off + ln]
        off += len(payload)
        hole = secs = back = 0
        if flags & 2 and off + 2 <= n:
            hole = (data[off] << 8) | data[off + 1]
            off += 2
        if flags & 8 and off + 2 <= n:
            secs = (data[off] << 8) | data[off + 1]
            off += 2
        if flags & 4 and off + 1 <= n:
            back = data[off]
            off += 1
        yield flags, payload, hole, secs, back


def encode_record(to_client: bool, payload: bytes) -> bytes:
    """One in-order record (what seeds.py writes for each segment of a real flow)."""
    payload = payload[:0xFFFF]
    return struct.pack("!BH", 1 if to_client else 0, len(payload)) + payload


def run_session(proto: str, data: bytes) -> None:
    """One TCP flow to `proto`'s port, segments as the input says; then every timeout and the flow end."""
    port = SESSION_PORTS[proto]
    det = AnomalyDetector(_CFG.anomaly)
    table = StrictTable(_CFG, PROTOCOLS, _strict_emit(det))
    seq = [1000, 5000]  # next sequence number per direction (0: client)
    ts = T0

    def send(d: int, flags: int, sq: int, payload: bytes = b"") -> None:
        src, dst, sp, dp = (CIP, SIP, 40000, port) if d == 0 else (SIP, CIP, port, 40000)
        table.packet(Packet(ts, 6, src, dst, sp, dp, sq & 0xFFFFFFFF, seq[1 - d] & 0xFFFFFFFF, flags, payload,
                            None, None, None, False))

    if not data or not data[0] & 1:
        send(0, 0x02, seq[0] - 1)
        send(1, 0x12, seq[1] - 1)
        send(0, 0x10, seq[0])
    held = None
    for flags, payload, hole, secs, back in records(data[1:]):
        d = flags & 1
        ts += 1000 + secs * NS
        if flags & 2:
            seq[d] += hole
        sq = seq[d] - back if flags & 4 else seq[d]
        if not flags & 4:
            seq[d] += len(payload)
        seg = (d, 0x18, sq, payload)
        if flags & 16 and held is None:
            held = seg
            continue
        send(*seg)
        if held is not None:
            send(*held)
            held = None
        if flags & 32:
            send(d, 0x11, seq[d])
            seq[d] += 1
    if held is not None:
        send(*held)
    table.sweep(ts + 7200 * NS)  # past every timeout: pending requests and idle flows expire
    table.finish(ts + 7200 * NS)
    for f in det.flush(ts) or ():
        json.dumps(f.to_doc())


def session_modbus(data: bytes) -> None:
    run_session("modbus", data)


def session_mqtt(data: bytes) -> None:
    run_session("mqtt", data)


def session_opcua(data: bytes) -> None:
    run_session("opcua", data)


def session_tls(data: bytes) -> None:
    run_session("tls", data)


# ---------------------------------------------------------------------------------------------- captures
def _reader(data: bytes):
    fh = io.BytesIO(data)
    head = fh.read(4)
    if head in PCAP_MAGIC:
        return PcapReader("<fuzz>", fh, head)
    if head == PCAPNG_SHB:
        return PcapngReader("<fuzz>", fh, head)
    return None


def capture(data: bytes) -> None:
    """The pcap and pcapng readers: CaptureError is the only way to say the file is damaged."""
    try:
        r = _reader(data)
        if r is None:
            return
        for ts, lt, frame in r.packets():
            if not isinstance(ts, int) or not isinstance(frame, bytes):
                raise Finding("reader yielded a bad record")
    except CaptureError:
        pass


def pipeline(data: bytes) -> None:
    """A capture file through everything: decode, flows, sessions, anomaly detection, ECS rendering."""
    col = _RenderingCollector()
    run = Run(_CFG, [AnomalyDetector(_CFG.anomaly)], [col], [col])
    run.table.__class__ = StrictTable
    try:
        r = _reader(data)
        if r is None:
            return
        feed = run.feed
        for ts, lt, frame in r.packets():
            feed(ts, lt, frame)
    except CaptureError:
        pass
    run.finish()


class _RenderingCollector(Collector):
    def write_event(self, ev) -> None:
        if type(ev) is FlowNotice and ev.action == "session_error":
            raise Finding(f"session_error {ev.details}")
        _render(ev)

    def write_alert(self, a) -> None:
        json.dumps(a.to_doc())


# ---------------------------------------------------------------------------------------------- X.509
def x509(data: bytes) -> None:
    """A certificate (or chain) from the wire: description, TLS record, checks, verdicts."""
    from ids import x509 as shared
    from ids.detect.auth.certs import CheckPolicy
    from ids.detect.auth.verdicts import CertJudge
    from ids.protocols.tls.certificates import decode

    doc = shared.describe_chain(data)
    json.dumps(doc)
    decode(data)
    cert = shared.load(data)
    if cert is not None:
        shared.key_info(cert)
        shared.signature_algorithm(cert)
        shared.san_uris(cert)
    shared.uris_in((doc.get("x509") or {}).get("alternative_names"))
    CertJudge(None, CheckPolicy()).findings(doc, T0)


# ---------------------------------------------------------------------------------------------- user files
def _tmpfile(data: bytes, suffix: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="otids-fuzz-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _user_file(data: bytes, suffix: str, load) -> None:
    path = _tmpfile(data, suffix)
    try:
        load(path)
    except UserError:
        pass
    finally:
        os.unlink(path)


def config_file(data: bytes) -> None:
    from ids.config import load_config
    _user_file(data, ".yaml", load_config)


def registry_file(data: bytes) -> None:
    from ids.detect.auth.registry import load_registry
    _user_file(data, ".yaml", load_registry)


def baseline_file(data: bytes) -> None:
    from ids.detect.baseline.document import parse
    try:
        parse(data.decode("utf-8", "replace"), "<fuzz>")
    except UserError:
        pass


def rules_file(data: bytes) -> None:
    """Rule YAML and Suricata rules: both loaders collect issues, they never raise."""
    from ids.detect.rules.loader import load_yaml_file
    from ids.detect.rules.suricata import load_suricata_file
    text = data.decode("utf-8", "replace")
    load_yaml_file("<fuzz>.yaml", text)
    load_suricata_file("<fuzz>.rules", text)


def model_file(data: bytes) -> None:
    """The ML model's model.json (the array file is checked against its hashes, so the JSON comes first)."""
    from ids.detect.ml.store import load
    d = tempfile.mkdtemp(prefix="otids-fuzz-model-")
    try:
        with open(os.path.join(d, "model.json"), "wb") as fh:
            fh.write(data)
        load(d)
    except UserError:
        pass
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


# ---------------------------------------------------------------------------------------------- Elasticsearch
def es_bulk_answer(data: bytes) -> None:
    """A `_bulk` answer from the network (ids/output/elasticsearch/answers.py): the first byte is how many
    documents were sent, the rest the body (as JSON when it parses, else as the client hands over bytes).
    BadAnswer is the only way to refuse it; what comes back must be one small result per document."""
    from ids.output.elasticsearch.answers import MAX_REASON, BadAnswer, bulk_items
    from ids.output.elasticsearch.backend import _error_reason
    n, raw = (data[0] if data else 0), data[1:]
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = raw
    if len(_error_reason(body)) > 600:
        raise Finding("error reason not cut")
    try:
        out = bulk_items(body, n)
    except BadAnswer as e:
        if len(str(e)) > 1000:
            raise Finding("BadAnswer reason not cut") from None
        return
    if len(out) != n:
        raise Finding("wrong number of results")
    for r in out:
        st = r["status"]
        if st is not None and type(st) is not int:
            raise Finding(f"status {st!r}")
        if len(json.dumps(r)) > 4 * MAX_REASON + 300:
            raise Finding("result not bounded")


HARNESSES = {f.__name__: f for f in (session_modbus, session_mqtt, session_opcua, session_tls, capture, pipeline,
                                     x509, config_file, registry_file, baseline_file, rules_file, model_file,
                                     es_bulk_answer)}
