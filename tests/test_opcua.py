"""OPC UA unit tests on bytes at the edges (largest valid, first invalid), the session fed directly (chunk
caps, sequence checks, thumbprints, pairing), the 1 GB chunked message under the memory cap, and system
tests on our own asyncua captures (pcaps/make_opcua_captures.py) through the pipeline and the CLI."""
from __future__ import annotations

import struct
import tracemalloc

import pytest

from conftest import PCAPS, need, read_ndjson, run_cli
from ids.flow.context import SessionContext
from ids.config import Config
from ids.protocols.opcua.config import OpcuaConfig
from ids.events import FlowContext
from ids.protocols.opcua.messages import OpcuaEvent
from ids.pipeline import analyze
from ids.protocols import REGISTRY
from ids.protocols.opcua import parser as P
from ids.protocols.opcua.consts import SERVICE_REQUESTS, SERVICE_RESPONSES, STATUS_CODES, service_name, status_name
from ids.protocols.opcua.session import OpcuaSession, probe


# ---------------------------------------------------------------------------------------------- tables

def test_generated_tables_cover_part4():
    assert len(SERVICE_REQUESTS) == 39 and set(SERVICE_REQUESTS.values()) == set(SERVICE_RESPONSES.values())
    assert SERVICE_REQUESTS[631] == "Read" and SERVICE_RESPONSES[634] == "Read"
    assert SERVICE_REQUESTS[12208] == "FindServersOnNetwork" and service_name(397) == "ServiceFault"
    assert service_name(706) == "unknown-706"  # CallMethodRequest is a structure, not a service
    assert STATUS_CODES[0x803B0000] == "BadNotWritable" and status_name(0x80790000) == "BadNoSubscription"
    assert status_name(0x803B0400) == "BadNotWritable"  # info bits do not change the name
    assert status_name(0x81230000) == "Bad-0x81230000"  # unknown sub-code: named by severity
    assert len(STATUS_CODES) > 250


# ---------------------------------------------------------------------------------------------- built-in types

def s(text: bytes) -> bytes:
    return struct.pack("<i", len(text)) + text


def test_nodeid_all_encodings():
    assert P.nodeid(bytes([0, 85]), 0) == ("i=85", 2)
    assert P.nodeid(bytes([1, 2, 0x0F, 0x02]), 0) == ("ns=2;i=527", 4)
    assert P.nodeid(bytes([2]) + struct.pack("<HI", 3, 0xFFFFFFFF), 0) == ("ns=3;i=4294967295", 7)
    assert P.nodeid(bytes([3]) + struct.pack("<H", 2) + s(b"Line3.Speed"), 0) == ("ns=2;s=Line3.Speed", 18)
    g = bytes.fromhex("15161239f346346dfecffcbfbacb4c14")
    assert P.nodeid(bytes([4, 1, 0]) + g, 0)[0] == "ns=1;g=39121615-46f3-6d34-fecf-fcbfbacb4c14"
    assert P.nodeid(bytes([5, 0, 0]) + s(b"\x01\x02"), 0)[0] == "b=AQI="
    with pytest.raises(P.Bad):
        P.nodeid(bytes([6, 0, 0]), 0)  # first invalid encoding
    with pytest.raises(P.Bad):
        P.nodeid(bytes([2, 0, 0, 1, 2, 3]), 0)  # one byte short


def test_expanded_nodeid_flags():
    raw = bytes([0x81, 0, 0x2A, 0]) + s(b"urn:x") + b""
    assert P.expanded_nodeid(raw, 0)[0] == "nsu=urn:x;i=42"
    raw = bytes([0x40, 61]) + struct.pack("<I", 1)
    assert P.expanded_nodeid(raw, 0) == ("svr=1;i=61", 6)


def test_string_lengths_at_the_edge():
    assert P.string(struct.pack("<i", -1), 0) == (None, 4)
    assert P.string(s(b"abc"), 0) == ("abc", 7)
    with pytest.raises(P.Bad):
        P.string(struct.pack("<i", -2), 0)  # only -1 means null
    with pytest.raises(P.Bad):
        P.string(struct.pack("<i", 4) + b"abc", 0)  # one byte missing
    assert P.string(s(b"x" * 255), 0, 255)[0] == "x" * 255
    with pytest.raises(P.Bad):
        P.string(s(b"x" * 256), 0, 255)  # SecurityPolicyUri longer than 255 bytes


def test_array_length_checked_against_message():
    buf = struct.pack("<i", 3) + b"\x00" * 12
    assert P.array(buf, 0, P.u32, 10, 4)[1] == 3
    with pytest.raises(P.Bad):
        P.array(struct.pack("<i", 4) + b"\x00" * 12, 0, P.u32, 10, 4)  # claims more than fits
    with pytest.raises(P.Bad):
        P.array(struct.pack("<i", 0x7FFFFFFF), 0, P.u32, 10, 4)


def test_variant_array_capped_and_skipped():
    vals = list(range(100))
    raw = bytes([6 | 0x80]) + struct.pack("<i", 100) + struct.pack("<100i", *vals) + b"TAIL"
    v, off = P.variant(raw, 0, cap=32)
    assert v["value"] == vals[:32] and v["truncated"] and v["array_length"] == 100 and raw[off:] == b"TAIL"
    strs = bytes([12 | 0x80]) + struct.pack("<i", 40) + b"".join(s(b"v%d" % i) for i in range(40))
    v, off = P.variant(strs, 0, cap=32)
    assert len(v["value"]) == 32 and off == len(strs)
    with pytest.raises(P.Bad):
        P.variant(bytes([26]), 0)  # first invalid built-in type


def test_depth_limit_on_nested_variants():
    raw = bytes([24]) * 40 + bytes([1, 1])  # Variant in Variant ... 40 deep
    with pytest.raises(P.Bad) as e:
        P.variant(raw, 0)
    assert e.value.args[0] == "depth_limit"
    ok = bytes([24]) * 3 + bytes([1, 1])
    assert P.variant(ok, 0)[1] == len(ok)


def test_diagnostic_info_and_datavalue():
    di = bytes([0x01 | 0x20 | 0x40]) + struct.pack("<iI", 7, 0x80340000) + bytes([0x20]) + struct.pack("<I", 0x803B0000)
    d, off = P.diagnostic_info(di, 0)
    assert d["symbolic_id"] == 7 and d["inner_status"] == "BadNodeIdUnknown"
    assert d["inner_diagnostic_info"]["inner_status"] == "BadNotWritable" and off == len(di)
    dv = bytes([0x03, 11]) + struct.pack("<d", 47.25) + struct.pack("<I", 0x40000000)
    assert P.data_value(dv, 0)[0] == {"type": "Double", "value": 47.25, "status_code": 0x40000000,
                                      "status": "Uncertain"}


def test_hello_edges():
    good = struct.pack("<5I", 0, 8192, 8192, 0, 0) + s(b"opc.tcp://h:4840")
    d, an = P.parse_hello(good)
    assert d["endpoint_url"] == "opc.tcp://h:4840" and an == ()
    d, an = P.parse_hello(struct.pack("<5I", 0, 8191, 8192, 0, 0) + s(b"x"))
    assert "buffer_size_below_minimum" in an
    assert P.parse_hello(good[:19])[1] == ("malformed_message",)
    assert P.parse_hello(struct.pack("<5I", 0, 8192, 8192, 0, 0) + s(b"u" * 4097))[1] == ("malformed_message",)


def test_probe_edges():
    hel = b"HELF" + struct.pack("<I", 40)
    assert probe(hel, True) == 1 and probe(b"HE", True) == -1 and probe(b"GET / HTTP/1.1\r\n", True) == 0
    assert probe(b"HELF" + struct.pack("<I", 31), True) == 0  # below the smallest HEL
    assert probe(b"ACKF" + struct.pack("<I", 28), False) == 1 and probe(b"ACKF" + struct.pack("<I", 29), False) == 0
    assert probe(b"HELC" + struct.pack("<I", 40), True) == 0
    assert REGISTRY["opcua"].default_ports == (4840,) and Config().port_map()[4840] == "opcua"


# ---------------------------------------------------------------------------------------------- the session fed directly

class Table:
    def __init__(self, cfg: Config | None = None):
        self.config = cfg or Config()
        self.events = []
        self.notices = []

    def emit(self, ev):
        self.events.append(ev)

    def detach(self, flow, ts, reason):
        self.notices.append(("detach", reason))

    def truncated(self, flow, ts, proto, n, to_server):
        self.notices.append(("truncated", n))


class Flow:
    context = FlowContext(1, "tcp", "1:x", "10.0.0.1", 50000, None, "10.0.0.2", 4840, None, None, False)


def chunk(mt: bytes, ct: bytes, cid: int, seq: int, rid: int, body: bytes, token: int = 1) -> bytes:
    payload = struct.pack("<II", cid, token) + struct.pack("<II", seq, rid) + body
    return mt + ct + struct.pack("<I", 8 + len(payload)) + payload


REQ_HDR = bytes([0, 0]) + struct.pack("<qII", 0, 7, 0) + struct.pack("<i", -1) + struct.pack("<I", 0) + bytes([0, 0, 0])
RESP_HDR = struct.pack("<qII", 0, 7, 0) + bytes([0]) + struct.pack("<i", -1) + bytes([0, 0, 0])


def read_request(handle=7) -> bytes:
    hdr = bytearray(REQ_HDR)
    struct.pack_into("<I", hdr, 10, handle)
    return bytes([1, 0]) + struct.pack("<H", 631) + bytes(hdr) + struct.pack("<dI", 0, 0) + struct.pack("<i", 1) + \
        bytes([1, 2]) + struct.pack("<H", 9) + struct.pack("<I", 13) + struct.pack("<i", -1) + struct.pack("<Hi", 0, -1)


def read_response(handle=7, code=0) -> bytes:
    hdr = bytearray(RESP_HDR)
    struct.pack_into("<II", hdr, 8, handle, code)
    return bytes([1, 0]) + struct.pack("<H", 634) + bytes(hdr) + struct.pack("<i", 1) + bytes([0x01, 6]) + \
        struct.pack("<i", 42) + struct.pack("<i", 0)


def test_pairing_sequence_and_unanswered():
    t = Table()
    sess = OpcuaSession(SessionContext(t, Flow()))
    sess.data(True, chunk(b"MSG", b"F", 5, 10, 1, read_request(7)), 1)
    sess.data(False, chunk(b"MSG", b"F", 5, 20, 1, read_response(7)), 2)
    sess.data(True, chunk(b"MSG", b"F", 5, 11, 2, read_request(8)), 3)  # in order
    sess.data(True, chunk(b"MSG", b"F", 5, 11, 3, read_request(9)), 4)  # replayed sequence number
    sess.data(True, chunk(b"MSG", b"F", 5, 14, 4, read_request(10)), 5)  # two missing
    sess.close(9)
    ev = t.events
    first = ev[0]
    assert isinstance(first, OpcuaEvent) and first.service == "Read" and first.nodes == ("ns=2;i=9",)
    assert first.response["results"][0]["value"] == 42 and first.status == "Good" and first.anomalies == ()
    by_handle = {e.request_handle: e for e in ev}
    assert by_handle[8].anomalies == ("unanswered_request",)
    assert "sequence_replay" in by_handle[9].anomalies and "sequence_gap" in by_handle[10].anomalies
    doc = first.to_doc()
    assert doc["event"]["dataset"] == "otids.opcua" and doc["network"]["protocol"] == "opcua"
    assert doc["opcua"]["nodes"] == ["ns=2;i=9"] and doc["event"]["action"] == "read"


def test_sequence_rollover_is_not_a_gap():
    t = Table()
    sess = OpcuaSession(SessionContext(t, Flow()))
    sess.data(True, chunk(b"MSG", b"F", 5, 0xFFFFFFFF - 100, 1, read_request(1)), 1)
    sess.data(True, chunk(b"MSG", b"F", 5, 3, 2, read_request(2)), 2)  # wrapped below 1024 (6.7.2.4)
    sess.close(3)
    assert not any(a.startswith("sequence") for e in t.events for a in e.anomalies)


def test_chunked_message_reassembled_and_abort():
    t = Table()
    sess = OpcuaSession(SessionContext(t, Flow()))
    body = read_request(3)
    pieces = [body[i:i + 10] for i in range(0, len(body), 10)]
    for k, piece in enumerate(pieces):
        sess.data(True, chunk(b"MSG", b"F" if k == len(pieces) - 1 else b"C", 5, 100 + k, 9, piece), k)
    sess.data(True, chunk(b"MSG", b"C", 5, 200, 10, read_request(4)[:12]), 50)
    sess.data(True, chunk(b"MSG", b"A", 5, 201, 10, struct.pack("<I", 0x80AB0000) + s(b"stop")), 51)
    sess.close(60)
    read = [e for e in t.events if e.request_handle == 3][0]
    assert read.request["chunks"] == len(pieces) and read.nodes == ("ns=2;i=9",)
    aborted = [e for e in t.events if "aborted" in e.anomalies][0]
    assert aborted.request["abort"]["reason"] == "stop"


def test_negotiated_chunk_limit_flagged():
    t = Table()
    sess = OpcuaSession(SessionContext(t, Flow()))
    sess.data(True, b"HELF" + struct.pack("<I", 32) + struct.pack("<5I", 0, 8192, 8192, 0, 0) + s(b""), 0)
    sess.data(False, b"ACKF" + struct.pack("<I", 28) + struct.pack("<5I", 0, 8192, 8192, 0, 2), 0)
    body = read_request(3)
    parts = (body[:20], body[20:40], body[40:])
    for k in range(3):
        sess.data(True, chunk(b"MSG", b"F" if k == 2 else b"C", 5, 10 + k, 9, parts[k]), k)
    sess.close(9)
    ev = [e for e in t.events if e.service == "Read"][0]
    assert "chunk_limit_exceeded" in ev.anomalies


def test_one_gigabyte_chunked_message_stays_within_the_cap():
    """A 1 GiB message in 65536-byte chunks, generated lazily and fed to the session (no disk, no
    TCP): the session keeps at most max_message_size of it, reports chunk_cap_hit once and still names the
    service from the first chunk. Peak traced memory stays far below the message size."""
    cfg = Config().replace(opcua=OpcuaConfig(max_message_size=4 << 20))
    t = Table(cfg)
    sess = OpcuaSession(SessionContext(t, Flow()))
    first = read_request(77)
    filler = b"\xAB" * (65536 - 24)
    total = 1 << 30
    n = total // 65536
    tracemalloc.start()
    sent = 0
    for k in range(n):
        sess.data(True, chunk(b"MSG", b"F" if k == n - 1 else b"C", 5, k + 1, 42, first if k == 0 else filler), k)
        sent += 65536
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    sess.close(n)
    print(f"fed {sent >> 20} MiB in {n} chunks; peak traced memory {peak / (1 << 20):.1f} MiB")
    assert sent >= 1 << 30
    assert peak < 16 << 20
    ev = [e for e in t.events if e.anomalies and "chunk_cap_hit" in e.anomalies]
    assert len(ev) == 1 and ev[0].service == "Read" and ev[0].request["chunks"] == n


def test_oversized_chunk_is_skipped_unread():
    cfg = Config().replace(opcua=OpcuaConfig(max_chunk_size=1 << 16))
    t = Table(cfg)
    sess = OpcuaSession(SessionContext(t, Flow()))
    big = chunk(b"MSG", b"F", 5, 1, 1, b"\0" * (1 << 17))
    for i in range(0, len(big), 1460):
        sess.data(True, big[i:i + 1460], i)
    sess.data(True, chunk(b"MSG", b"F", 5, 2, 2, read_request(5)), 99)  # framing still in step
    sess.close(100)
    assert any("chunk_cap_hit" in e.anomalies for e in t.events)
    assert any(e.service == "Read" and e.request_handle == 5 for e in t.events)


def test_garbage_detaches_a_flow_that_never_was_opcua():
    t = Table()
    sess = OpcuaSession(SessionContext(t, Flow()))
    for k in range(3):
        sess.data(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", k)
    assert t.notices and t.notices[0][0] == "detach"


def test_thumbprint_mismatch_flagged():
    from ids.x509 import leaf_sha1
    srv = need(PCAPS / "opcua-certs" / "server.der").read_bytes()
    cli = need(PCAPS / "opcua-certs" / "client.der").read_bytes()
    t = Table()
    sess = OpcuaSession(SessionContext(t, Flow()))
    uri = b"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"

    def opn(cert, thumb, cid):
        payload = struct.pack("<I", cid) + s(uri) + s(cert) + s(thumb) + b"\x99" * 64  # ciphertext
        return b"OPNF" + struct.pack("<I", 8 + len(payload)) + payload

    sess.data(True, opn(cli, b"\x00" * 20, 0), 1)  # wrong thumbprint for the server's certificate
    sess.data(False, opn(srv, leaf_sha1(cli), 9), 2)
    sess.close(3)
    ev = t.events[0]
    assert ev.encrypted and ev.service == "OpenSecureChannel" and "thumbprint_mismatch" in ev.anomalies
    assert ev.certificates["server"]["hash"]["sha1"] == leaf_sha1(srv).hex().upper()


# ---------------------------------------------------------------------------------------------- system tests

def test_own_captures_through_pipeline_and_alerts():
    run, col = analyze([str(need(PCAPS / "opcua-none-username.pcap"))])
    ev = [e for e in col.events if e.dataset == "otids.opcua"]
    assert ev[0].flow.server_port == 48401  # found by the HEL/ACK probe, not by port
    act = [e for e in ev if e.service == "ActivateSession"][0]
    assert act.user_token_type == "UserName" and act.request["identity"]["user_name"] == "operator"
    doc = act.to_doc()
    assert "s3cret" not in str(doc) and doc["user"]["name"] == "operator"
    w = [e for e in ev if e.service == "Write" and e.nodes == ("ns=2;s=Line3.Label",)][0]
    assert w.response["operation_status"] == ["BadUserAccessDenied"]
    anon = [e for e in analyze([str(need(PCAPS / "opcua-none-anonymous.pcap"))])[1].events
            if e.dataset == "otids.opcua"]
    fault = [e for e in anon if e.response and e.response.get("service_fault")]
    assert fault and fault[0].status.startswith("BadSession")
    err = [e for e in analyze([str(need(PCAPS / "opcua-err.pcap"))])[1].events if e.dataset == "otids.opcua"]
    e = [x for x in err if x.message_type == "ERR"][0]
    assert e.status == "BadRequestTooLarge" and e.status_code == 0x80B80000


def test_cli_writes_opcua_events_and_alerts(tmp_path):
    from ids.x509 import describe  # noqa: F401  (import check: certs decode without asyncua)
    out, evf = tmp_path / "alerts.ndjson", tmp_path / "events.ndjson"
    run_cli("analyze", "-q", "-o", str(out), "--events", str(evf), str(need(PCAPS / "opcua-sign.pcap")),
            str(need(PCAPS / "opcua-chunked.pcap")))
    docs = [d for d in read_ndjson(evf) if d["event"]["dataset"] == "otids.opcua"]
    assert any(d["opcua"].get("client_certificate", {}).get("x509", {}).get("subject") for d in docs)
    assert any(d["opcua"]["service"] == "Write" and d["opcua"]["request"]["chunks"] == 8 for d in docs)
    assert all(d["network"]["protocol"] == "opcua" for d in docs)


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, path + ".")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            yield path  # array of objects: must sit under a flattened field
        else:
            yield path


def test_every_emitted_opcua_field_is_declared():
    """ids/protocols/opcua/fields.yml declares every opcua.* field the documents carry (leaves under a
    `flattened` field are covered by it)."""
    import yaml
    from conftest import CORPUS, ROOT
    from ids.output.fields import load_fields
    fs = load_fields()  # every group: user.name is a shared ECS field declared in ecs.yml
    declared = {n: f.type for n, f in fs.fields.items()}
    flat = [n for n, t in declared.items() if t == "flattened"]
    pcaps = sorted(PCAPS.glob("opcua-*.pcap")) + sorted((CORPUS / "icsnpp" / "icsnpp-opcua-binary").rglob("*.pcap"))
    seen = set()
    for p in pcaps:
        for e in analyze([str(p)])[1].events:
            if e.dataset != "otids.opcua":
                continue
            doc = e.to_doc()
            for leaf in _leaves({"opcua": doc["opcua"], **({"user": doc["user"]} if "user" in doc else {})}):
                seen.add(leaf)
    missing = {s for s in seen if s not in declared and not any(s.startswith(f + ".") or s == f for f in flat)}
    assert not missing, f"undeclared fields: {sorted(missing)}"
    assert len(seen) > 40


def test_fuzzed_streams_never_raise_and_stay_bounded():
    """Seeded mutations (byte flips, truncations, inserted garbage) of real message streams: the session
    never raises, never hangs, and holds no more than the configured buffers."""
    import random
    from ids.capture import open_capture
    from ids.decode import Decoder
    from ids.decode.frag import FragmentReassembler

    streams = []
    for name in ("opcua-none-anonymous.pcap", "opcua-sign.pcap", "opcua-chunked.pcap"):
        dec = Decoder("off", FragmentReassembler(16))
        r = open_capture(str(need(PCAPS / name)))
        segs = []
        for ts, lt, frame in r.packets():
            p = dec.decode(ts, lt, frame)
            if p is not None and p.payload:
                segs.append((p.dport in (4840, 48401), bytes(p.payload)))
        r.close()
        streams.append(segs)
    rnd = random.Random(1234)
    for it in range(300):
        segs = streams[it % len(streams)]
        t = Table()
        sess = OpcuaSession(SessionContext(t, Flow()))
        for k, (to_server, data) in enumerate(segs):
            b = bytearray(data)
            op = rnd.random()
            if op < 0.3 and b:
                for _ in range(rnd.randint(1, 8)):
                    b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif op < 0.4:
                b = b[:rnd.randrange(len(b) + 1)]
            elif op < 0.45:
                b = bytearray(rnd.randbytes(rnd.randint(1, 64))) + b
            elif op < 0.5:
                sess.gap(to_server, k, rnd.randint(1, 5000))
            sess.data(to_server, bytes(b), k)
            for d in sess.dirs:
                assert d.have <= sess.cfg.max_chunk_size + 8
        sess.expire(10**12)
        sess.close(10**12)
        assert len(sess.pending) == 0
