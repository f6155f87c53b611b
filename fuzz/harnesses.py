"""Fuzz harnesses: one function per entry point that hostile bytes reach, each taking one input (bytes)
and raising only on a finding. Plain callables: fuzz/run.py drives them under atheris (coverage-guided),
tests/test_fuzz.py replays the committed seeds and every past crash through them without atheris.

What is a finding: any exception other than the documented ones (CaptureError on a damaged capture,
UserError on a bad user file), a session_error (the flow table's guard catches session exceptions in
production; here it re-raises them, so the fuzzer sees the parser bug behind it), and an event whose
ECS document cannot be rendered to JSON; also an exception from an identified-only protocol's content
probe (the identifier swallows it in production: the flow stays unnamed, and nobody would know).

Session harnesses: `session_<name>` for every protocol of the registry (ids.protocols.REGISTRY: dissected
and identified-only alike), derived from it, one flow to the protocol's port over its transport.
Session input format (also what seeds.py writes from real captures), a head byte, then records:
  head bit 0: TCP picked up mid-stream (no handshake)    bit 1: UDP (a "tcp/udp" protocol; UDP-only ones
  always)    bits 2-4: which of the spec's ports is the server's
  record: flags:u8  len:u16be  payload[len]  [hole:u16be if flags&2]  [seconds:u16be if flags&8]  [back:u8 if flags&4]
TCP (one segment per record):
  flags bit 0: server -> client (else client -> server)      bit 1: skip `hole` bytes of sequence space first
  bit 2: send it `back` bytes before the stream's position (overlap / retransmission with other bytes)
  bit 3: capture time jumps `seconds` forward first (timeouts, sweeps)
  bit 4: hold it back and send it after the next record (out of order)        bit 5: FIN after it
  bit 6: a SYN first that renumbers this direction by (hole << 16) (a SYN's new numbering while segments
  wait: a random-flags capture found two reassembly bugs there that no record could express before)
UDP (one datagram per record, as Ethernet/IPv4 frames through the decoder): bits 0, 3, 4 as for TCP;
  bit 1: cut into IPv4 fragments of ((hole & 0xFF) + 1) * 8 bytes; bit 2: fragments last first, plus one
  overlapping fragment with other bytes; bit 5: from a second client port.
Non-IP Ethernet (PROFINET DCP and RT): one frame of the spec's EtherType per record, bits 0 and 3 only.
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
from ids.flow.conn import ConnRecord
from ids.protocols import DISSECTED as PROTOCOLS
from ids.protocols import REGISTRY

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
CIP, SIP = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
CMAC, SMAC = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
DYNAMIC_PORT = 49152  # a protocol without a well-known port (OPC DA): its content alone names it
#: Every protocol of the registry gets a session harness: server ports and transport come from its spec.
SESSION_PORTS = {n: (s.ports[0] if s.ports else DYNAMIC_PORT) for n, s in REGISTRY.items()}
_CFG = Config()
_probe_errors: list = []  # exceptions the identifier's probes raised (it swallows them: the flow stays unnamed)
_seen_protocols: set = set()  # network.protocol of every connection record of the last session run


def _strict_probe(name: str):
    spec = REGISTRY[name]  # the probe is looked up per call, so a test can plant a raising one

    def checked(buf, to_server):
        try:
            return spec.probe(buf, to_server)
        except Exception as e:
            _probe_errors.append(e)
            raise
    return checked


def _shared_identifier():
    """One Identifier per process for every table the harnesses build. Each FlowTable builds its own, and
    with it a fresh nDPI dissector (several MB of C memory, never freed) plus the import walk of every
    identified-only package: per execution that made the session harnesses leak ~10 MB and spend half
    their time there (libFuzzer stopped them on its RSS limit after a few hundred runs). The Identifier
    holds no per-flow state (nDPI's flow state lives on the flow), so sharing it changes no result.
    Its content probes are wrapped so that an exception they raise (production turns it into "not this
    protocol") still reaches the fuzzer."""
    made: dict = {}
    real = _table_mod.Identifier

    def identifier(ports, use_ndpi=True):
        key = (tuple(sorted(ports.items())), use_ndpi)
        ident = made.get(key)
        if ident is None:
            ident = made[key] = real(ports, use_ndpi=use_ndpi)
            ident.probes = {t: [(n, _strict_probe(n)) for n, _ in lst] for t, lst in ident.probes.items()}
        ident.deep = None
        return ident
    return identifier


_SHARED_IDENTIFIER = _shared_identifier()


def _scoped(fn):
    """Run `fn` with every FlowTable it builds taking the shared, strict Identifier, and put the real one
    back after. The module used to patch ids.flow.table at import: the test suite imports it at collection,
    so every in-process test after that ran with strict probes and one shared Identifier, not the product."""
    import functools

    @functools.wraps(fn)
    def scoped(*a, **k):
        saved = _table_mod.Identifier
        _table_mod.Identifier = _SHARED_IDENTIFIER
        try:
            return fn(*a, **k)
        finally:
            _table_mod.Identifier = saved
    return scoped


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
        t = type(ev)
        if t is FlowNotice and ev.action == "session_error":
            raise Finding(f"session_error {ev.details}")
        if t is ConnRecord and ev.protocol:
            _seen_protocols.add(ev.protocol)
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


def session_head(proto: str, transport: str, midstream: bool = False, port: int | None = None) -> int:
    """The first byte of a session input: mid-stream (TCP), UDP (for a "tcp/udp" protocol), which port."""
    ports = REGISTRY[proto].ports
    sel = ports.index(port) if port in ports else 0
    return (1 if midstream else 0) | (2 if transport == "udp" else 0) | (sel & 7) << 2


@_scoped
def run_session(proto: str, data: bytes) -> set:
    """One flow of `proto` (its spec's transport and ports), records as the input says; then every timeout
    and the flow end. Returns the protocols the connection records named (for the tests)."""
    spec = REGISTRY[proto]
    transports = spec.transport.split("/")
    head = data[0] if data else 0
    _probe_errors.clear()
    _seen_protocols.clear()
    if "ether" in transports:
        _run_frames(spec, data)
    elif "udp" in transports and ("tcp" not in transports or head & 2):
        _run_datagrams(spec, data)
    else:
        _run_tcp(spec, data)
    if _probe_errors:
        e = _probe_errors[0]
        _probe_errors.clear()
        raise e
    return set(_seen_protocols)


def _server_port(spec, head: int) -> int:
    ports = spec.ports or (DYNAMIC_PORT,)
    return ports[(head >> 2 & 7) % len(ports)]


def _end(table, det, ts: int, decoder=None) -> None:
    end = ts + 7200 * NS  # past every timeout: pending requests, idle flows and fragments expire
    table.sweep(end)
    if decoder is not None:
        decoder.frag.expire(end, decoder.notices)
        _decoder_notices(decoder, table, end)
    table.finish(end)
    for f in det.flush(ts) or ():
        json.dumps(f.to_doc())


def _run_tcp(spec, data: bytes) -> None:
    port = _server_port(spec, data[0] if data else 0)
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
        if flags & 64:
            seq[d] = (seq[d] + (hole << 16)) & 0xFFFFFFFF
            send(d, 0x02 if d == 0 else 0x12, seq[d] - 1)
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
    _end(table, det, ts)


_ETH_IP4 = b"\x08\x00"
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


def _decoder_notices(decoder, table, ts: int) -> None:
    for nts, action, details in decoder.notices:
        table.emit(FlowNotice(nts or ts, action, None, None, details))
    decoder.notices.clear()


def _ip4_frames(d: int, sport: int, dport: int, ipid: int, payload: bytes, piece: int, reverse: bool,
                overlap: int) -> list[bytes]:
    """One UDP datagram as Ethernet/IPv4 frames: whole, or cut into `piece`-byte fragments (reversed, and
    with one more fragment `overlap` pieces in whose bytes differ from the first copy's, on request)."""
    src, dst, smac, dmac = (CIP, SIP, CMAC, SMAC) if d == 0 else (SIP, CIP, SMAC, CMAC)
    l4 = _UDP.pack(sport, dport, 8 + len(payload) & 0xFFFF, 0) + payload

    def frame(off: int, more: bool, body: bytes) -> bytes:
        ip = _IP4.pack(0x45, 0, 20 + len(body) & 0xFFFF, ipid, (0x2000 if more else 0) | off >> 3, 64, 17, 0,
                       src, dst)
        return dmac + smac + _ETH_IP4 + ip + body

    if not piece or len(l4) <= piece or len(l4) > 0xFFFF - 20:
        return [frame(0, False, l4)]
    frames = [frame(o, o + piece < len(l4), l4[o:o + piece]) for o in range(0, len(l4), piece)]
    if reverse:
        frames.reverse()
    if overlap:
        o = min(overlap % len(frames), len(frames) - 1) * piece
        frames.insert(1, frame(o, o + piece < len(l4), bytes(b ^ 0xFF for b in l4[o:o + piece])))
    return frames


def _run_datagrams(spec, data: bytes) -> None:
    """The datagram variant of the session format: each record one UDP datagram, both directions.
    Record flags: bit 0 server -> client; bit 1 cut into IPv4 fragments of ((hole & 0xFF) + 1) * 8 bytes;
    bit 2 those fragments last first, plus one overlapping fragment with other bytes (`back` picks which);
    bit 3 capture time jumps `seconds` forward first; bit 4 held back, sent after the next record;
    bit 5 from a second client port (a second flow to the same server)."""
    from ids.decode.packet import Decoder
    port = _server_port(spec, data[0] if data else 0)
    det = AnomalyDetector(_CFG.anomaly)
    table = StrictTable(_CFG, PROTOCOLS, _strict_emit(det))
    dec = Decoder("off")
    ts = T0
    ipid = 1
    held = None

    def send(frames: list[bytes]) -> None:
        for fr in frames:
            p = dec.decode(ts, 1, fr)
            if p is not None:
                table.packet(p)
            if dec.notices:
                _decoder_notices(dec, table, ts)

    for flags, payload, hole, secs, back in records(data[1:]):
        d = flags & 1
        ts += 1000 + secs * NS
        cport = 40001 if flags & 32 else 40000
        sp, dp = (cport, port) if d == 0 else (port, cport)
        ipid = ipid + 1 & 0xFFFF
        frames = _ip4_frames(d, sp, dp, ipid, payload[:0xFFFF - 28], ((hole & 0xFF) + 1) * 8 if flags & 2 else 0,
                             bool(flags & 4), back if flags & 4 else 0)
        if flags & 16 and held is None:
            held = frames
            continue
        send(frames)
        if held is not None:
            send(held)
            held = None
    if held is not None:
        send(held)
    _end(table, det, ts, dec)


def _run_frames(spec, data: bytes) -> None:
    """Non-IP Ethernet (PROFINET by EtherType): each record one frame of the spec's EtherType, both
    directions (by MAC), time jumps; the other flags have no meaning on a frame."""
    from ids.decode.packet import Decoder
    etype = struct.pack("!H", spec.ports[0])
    det = AnomalyDetector(_CFG.anomaly)
    table = StrictTable(_CFG, PROTOCOLS, _strict_emit(det))
    dec = Decoder("off")
    ts = T0
    for flags, payload, hole, secs, back in records(data[1:]):
        ts += 1000 + secs * NS
        src, dst = (SMAC, CMAC) if flags & 1 else (CMAC, SMAC)
        p = dec.decode(ts, 1, dst + src + etype + payload)
        if p is not None:
            table.packet(p)
    _end(table, det, ts, dec)


def _session_harness(proto: str):
    def harness(data: bytes) -> None:
        run_session(proto, data)
    harness.__name__ = harness.__qualname__ = f"session_{proto}"
    harness.__doc__ = f"One {proto} flow ({REGISTRY[proto].transport}): flow table, identification, detection."
    return harness


#: session_<name> for every protocol of the registry, dissected or identified (derived: never a hand list)
SESSION_HARNESSES = {f"session_{n}": _session_harness(n) for n in REGISTRY}
globals().update(SESSION_HARNESSES)  # fuzz.harnesses.session_modbus and friends, as before


def _probe_harness(proto: str):
    """`proto`'s content probe alone, at the rate of a function call: what an identified-only protocol adds
    to the sensor is that probe (its flows' TCP/UDP paths are the shared machinery the session harnesses
    and `pipeline` fuzz), so a million executions of it cost a minute, not an hour of flow set-up."""
    def harness(data: bytes) -> None:
        if not data:
            return
        spec = REGISTRY[proto]  # looked up per call, as the identifier's wrapper does
        r = spec.probe(data[1:], bool(data[0] & 1))
        if r not in (-1, 0, 1):
            raise Finding(f"{proto} probe returned {r!r} (the contract: 1, 0 or -1)")
    harness.__name__ = harness.__qualname__ = f"probe_{proto}"
    harness.__doc__ = f"{proto}'s content probe on one payload (first byte: bit 0 = to the server)."
    return harness


#: probe_<name> for every protocol of the registry that has a content probe (derived, as the sessions are)
PROBE_HARNESSES = {f"probe_{n}": _probe_harness(n) for n, s in REGISTRY.items() if s.probe is not None}
globals().update(PROBE_HARNESSES)


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


HARNESSES = {**SESSION_HARNESSES, **PROBE_HARNESSES,
             **{f.__name__: _scoped(f) for f in (capture, pipeline, x509, config_file, registry_file,
                                                 baseline_file, rules_file, model_file, es_bulk_answer)}}
