"""Agreement with other tools on every Modbus capture in ../shared/corpus, message by message.

References (MANIFEST.md): tshark 4.0 on every capture tshark decodes as Modbus/TCP (T9, T13, T14, C1, C3,
C5, and our own pcaps/modbus-demo.pcap); Zeek's golden modbus.log rows (T9 btests; C2 old-format logs of
Zeek 2.4 for the QuickDraw pcaps and ndpi modbus.pcap), Zeek's event dumps (coil parsing, modbus-eit) and
conn.log/analyzer log (non-Modbus on port 502); CISA ICSNPP's modbus, modbus_detailed, mask-write and
read-write-multiple logs (T13). Licences and sources per MANIFEST.md; the captures stay in the corpus.

Every remaining disagreement is declared below with the reason, checked against the specification
(MODBUS Application Protocol v1.1b3, Messaging on TCP/IP Implementation Guide v1.0b) or TCP semantics;
a new disagreement, or a declared one that disappears, fails the test. `pytest -s` prints the counts.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import CORPUS, ROOT, need, need_tool
from ids.events import FlowNotice
from ids.protocols.modbus.messages import ModbusTransaction
from modbus_reference import (Msg, field_mismatches, match, our_name_ok, ours, tshark, zeek_exception,
                              zeek_function, zeek_log)

# ============================================================================================ the captures

#: Every capture in the corpus that tshark decodes as Modbus/TCP (MANIFEST-files.json proto_pkts).
MODBUS_CAPTURES = [
    "collections/EmreEkin-ICS-Pcaps/LocalPCAP/IllegalFunction.pcap",
    "collections/EmreEkin-ICS-Pcaps/LocalPCAP/ModbusFloat.pcap",
    "collections/EmreEkin-ICS-Pcaps/LocalPCAP/ReadCoil.pcap",
    "collections/EmreEkin-ICS-Pcaps/LocalPCAP/WriteMultipleCoil.pcap",
    "collections/EmreEkin-ICS-Pcaps/LocalPCAP/modbusAnalog.pcap",
    "collections/EmreEkin-ICS-Pcaps/MODBUS/FC1-permit.pcap",
    "collections/EmreEkin-ICS-Pcaps/MODBUS/crash.pcap",
    "collections/EmreEkin-ICS-Pcaps/MODBUS/modbus-encapsulated-transport.pcap",
    "collections/EmreEkin-ICS-Pcaps/MODBUS/modbus-mask-write-register.pcap",
    "collections/EmreEkin-ICS-Pcaps/MODBUS/modbus-read-write-multiple-registers.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/ModbusTCP/Modbus/modbus_test.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/ModbusTCP/mb2.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/modicon/modicon_test.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part1.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part2.pcap",
    "icsnpp/icsnpp-modbus/testing/traces/modbus_example.pcap",
    "ndpi/pcap/modbus.pcap",
    "zeek/Traces/modbus/4SICS-GeekLounge-151022-min.pcap",
    "zeek/Traces/modbus/fuzz-1011.pcap",
    "zeek/Traces/modbus/fuzz-72.pcap",
    "zeek/Traces/modbus/modbus-and-non-modbus-p502.pcap",
    "zeek/Traces/modbus/modbus-eit.pcap",
    "zeek/Traces/modbus/modbusBig.pcap",
    "zeek/Traces/modbus/modbusSmall.pcap",
]


def cap(rel: str) -> str:
    return str(need(CORPUS / rel))


def ts_text(ts: int) -> str:
    return f"{ts // 1_000_000_000}.{ts % 1_000_000_000 // 1000:06d}"


def test_every_modbus_capture_in_the_corpus_is_compared():
    manifest = json.loads(need(CORPUS / "MANIFEST-files.json").read_text())
    found = sorted(k for k, v in manifest.items() if "mbtcp" in v.get("proto_pkts", {}))
    assert found == sorted(MODBUS_CAPTURES), "a Modbus capture was added or removed: declare it here"


# ============================================================================================ tshark

# Reasons, each checked in the capture and against the specification / TCP.
EXTENDED_RETRANSMISSION = (
    "a retransmission that starts at an already-seen sequence number but carries more bytes than the first "
    "copy: the extra bytes are new stream data (RFC 9293: sequence numbers name bytes) holding further "
    "complete MBAP frames, and the peer answers them; tshark marks the whole segment 'TCP Retransmission' "
    "and does not dissect the new bytes")
HELD_BEHIND_HOLE = (
    "the segment arrived after a hole in the stream (tshark: 'previous segment not captured'); reassembly "
    "delivers it once the hole is declared lost (the peer's ACK passed it, or the flow ended), so our "
    "message time is that later packet's; tshark dissects the segment on its own")
SPURIOUS_NOT_DISSECTED = (
    "the only copy of this response, captured after the master's ACK for it (capture reordering); tshark "
    "labels it 'Spurious Retransmission' and does not dissect it, but its bytes appear nowhere else")
RESYNC_AFTER_TRAILING_BYTES = (
    "the previous segment ends with bytes beyond its MBAP length; tshark's stream parse stays misaligned, "
    "we report the broken header (malformed_mbap) and resynchronise on the next valid header, which is this "
    "request (the same bytes as frame 111)")
FUZZ_FC_MISMATCH = (
    "fuzz trace: exception response with transaction id 0 whose function code matches no pending request "
    "(a response repeats the request's function code, spec 4.1): reported alone with function_code_mismatch; "
    "tshark does not dissect these segments (it takes them for retransmissions of its misordered stream)")

#: (who, where, role, transaction id, function code) -> reason. who: "ours" = only we decode it (where: our
#: time); "tshark" = only tshark (where: frame); "time" = both, at different times (where: tshark's frame).
TSHARK_DISAGREE: dict[str, dict[tuple, str]] = {
    "collections/ITI-ICS-Security-Tools/pcaps/ModbusTCP/mb2.pcap": {
        **{("ours", "1352726531.076470", "REQ", tid, 4): EXTENDED_RETRANSMISSION + " (frame 1131)"
           for tid in (22506, 22507, 22508, 22509)},
        ("ours", "1352726550.089649", "RESP", 9824, 4): EXTENDED_RETRANSMISSION + " (frame 13176)",
        ("ours", "1352726550.089649", "RESP", 9825, 2): EXTENDED_RETRANSMISSION + " (frame 13176)",
        **{("time", 3008, "RESP", tid, 4): HELD_BEHIND_HOLE + " (13 bytes missing; delivered at the FIN, frame 3032)"
           for tid in (22506, 22507, 22508, 22509)},
    },
    "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part1.pcap": {
        ("ours", "1093523216.103900", "REQ", 1, 42): RESYNC_AFTER_TRAILING_BYTES + " (frame 113)",
    },
    "zeek/Traces/modbus/modbusBig.pcap": {
        ("ours", "1381967757.836089", "RESP", 50382, 1): SPURIOUS_NOT_DISSECTED + " (frame 3150)",
    },
    "zeek/Traces/modbus/fuzz-1011.pcap": {
        ("time", 5, "REQ", 12993, 4): HELD_BEHIND_HOLE + " (delivered with frame 6)",
    },
    "zeek/Traces/modbus/fuzz-72.pcap": {
        ("ours", "1153491913.013726", "REQ", 0, 34): (
            "frame 6's frame is 2 bytes shorter than its segment; the next frame (frame 7, fc 34) follows those 2 "
            "bytes: we resynchronise on it (malformed_mbap for the stray header), tshark does not dissect it"),
        ("ours", "1153491923.091742", "RESP", 0, 47): FUZZ_FC_MISMATCH,
        ("ours", "1153491923.623460", "RESP", 0, 51): FUZZ_FC_MISMATCH,
        ("ours", "1153491927.019176", "RESP", 0, 58): FUZZ_FC_MISMATCH,
        ("ours", "1153491927.553318", "RESP", 0, 59): FUZZ_FC_MISMATCH,
        **{("time", frame, role, 37 if frame == 28 else 0, fc): HELD_BEHIND_HOLE + " (fuzzed sequence numbers)"
           for frame, role, fc in ((5, "RESP", 32), (6, "REQ", 33), (16, "REQ", 43), (17, "REQ", 46),
                                   (18, "REQ", 47), (20, "REQ", 50), (22, "REQ", 52), (24, "REQ", 54),
                                   (28, "REQ", 71), (29, "REQ", 63), (31, "REQ", 65), (33, "REQ", 71))},
    },
}

#: (capture, tshark frame, field) -> reason, for fields tshark gives that we read otherwise.
TSHARK_FIELD_DISAGREE: dict[tuple, str] = {}

TSHARK_EXTRA = {  # our own capture (pcaps/make_modbus_demo.py): real pymodbus traffic, port 502 and 5020
    "pcaps/modbus-demo.pcap": ("-d", "tcp.port==5020,mbtcp"),
}


def disagreements(c) -> list[tuple]:
    out = [("ours", ts_text(m.ts), m.role, m.tid, m.fc) for m in c.only_ours]
    out += [("tshark", m.ref, m.role, m.tid, m.fc) for m in c.only_theirs]
    out += [("time", t.ref, o.role, o.tid, o.fc) for o, t in c.moved]
    return sorted(out, key=str)


@pytest.mark.parametrize("rel", MODBUS_CAPTURES + list(TSHARK_EXTRA))
def test_tshark_agrees_message_by_message(rel):
    exe = need_tool("tshark")
    path = str(need(ROOT / rel)) if rel in TSHARK_EXTRA else cap(rel)
    server_ports = (502, 5020) if rel in TSHARK_EXTRA else (502,)
    mine, _, _ = ours(path)
    theirs = tshark(path, exe, TSHARK_EXTRA.get(rel, ()), server_ports)
    c = match(mine, theirs)
    got = disagreements(c)
    declared = TSHARK_DISAGREE.get(rel, {})
    print(f"\ntshark {rel}: {len(theirs)} tshark messages, {len(mine)} ours; agree {len(c.matched)}, "
          f"same message at another time {len(c.moved)}, only ours {len(c.only_ours)}, only tshark "
          f"{len(c.only_theirs)}")
    assert got == sorted(declared, key=str), "undeclared or vanished disagreements with tshark"
    # fields tshark gives (addresses, quantities, values, masks, sub-functions, MEI objects) agree
    fm = [(rel, t.ref, k) for o, t, k, _, _ in field_mismatches(c.matched + c.moved)]
    assert sorted(fm) == sorted(k for k in TSHARK_FIELD_DISAGREE if k[0] == rel), \
        [x for x in field_mismatches(c.matched + c.moved)][:5]


# ============================================================================================ Zeek (current)

ZB = "zeek/Baseline/scripts.base.protocols.modbus."

FUZZ72_ZEEK = {
    ("zeek", "RESP", 0, 1, 28, 1): (
        "frame 2: its sequence number lies 436 MB before the server stream's start set by frame 1 (a SYN with "
        "FIN/URG and a bad checksum), so reassembly takes it for an old retransmission; Zeek drops frame 1 for "
        "its checksum and starts the stream at frame 2. tshark does not dissect frame 2 either."),
    ("zeek", "REQ", 0, 0, 38, None): (
        "frame 14: a header announcing 37 bytes of which 6 arrive before a 48-byte hole (tcp_gap): Zeek logs "
        "a message as soon as its header is read (modbus_message precedes the PDU); we emit no transaction for "
        "a frame that never completed"),
    ("ours", "REQ", 0, 1, 34, None): TSHARK_DISAGREE["zeek/Traces/modbus/fuzz-72.pcap"][
        ("ours", "1153491913.013726", "REQ", 0, 34)] + "; Zeek does not resynchronise either",
    **{("ours", "REQ", 0, 1, fc, None): (
        "fuzzed sequence numbers: this request lies behind a hole in the client stream that Zeek never gets "
        "past; we declare the hole lost when the slave's ACK passes it and deliver the request (tshark decodes "
        "it too)") for fc in (43, 46, 47, 50, 52, 70)},
    **{("ours", "RESP", 0, 1, fc, 1): FUZZ_FC_MISMATCH.replace("tshark does not", "Zeek and tshark do not")
       for fc in (58, 59)},
}

ZEEK_CURRENT = {  # baseline -> (trace, declared disagreements)
    "exception_handling": ("zeek/Traces/modbus/fuzz-72.pcap", FUZZ72_ZEEK),
    "register_parsing": ("zeek/Traces/modbus/fuzz-1011.pcap", {
        ("zeek", "RESP", 6714, 255, 4, None): (
            "frame 4: a 'retransmission' whose sequence number lies 1.2 MB before bytes already delivered "
            "(frame 3); the first copy wins, so reassembly drops it as old data. Zeek's fuzz-1011 baseline "
            "logs it; tshark does not dissect it either"),
    }),
    "modbus_and_non_modbus_on_port_502": ("zeek/Traces/modbus/modbus-and-non-modbus-p502.pcap", {}),
}


def _zeek_key(r: dict) -> tuple:
    fc, _ = zeek_function(r["func"])
    return (r["id.orig_h"], int(r["id.orig_p"]), r["pdu_type"], int(r["tid"]), int(r["unit"]), fc,
            zeek_exception(r["exception"]))


def _our_key(m: Msg) -> tuple:
    c = m.ref.flow
    return (c.client_ip, c.client_port, m.role, m.tid, m.unit, m.fc, m.exc)


@pytest.mark.parametrize("baseline", list(ZEEK_CURRENT))
def test_zeek_modbus_log_rows(baseline):
    """Zeek (current script) logs one row per message (pdu_type REQ/RESP); timestamps are masked in the
    btest baselines, so rows are compared on endpoints, tid, unit, function (mapped to ours) and exception."""
    trace, declared = ZEEK_CURRENT[baseline]
    rows = zeek_log(need(CORPUS / f"{ZB}{baseline}" / "modbus.log"))
    mine, _, _ = ours(cap(trace))
    z = Counter(_zeek_key(r) for r in rows)
    o = Counter(_our_key(m) for m in mine)
    only_z = [("zeek",) + k[2:] for k in (z - o).elements()]
    only_o = [("ours",) + k[2:] for k in (o - z).elements()]
    print(f"\nzeek {baseline}: {len(rows)} rows, agree {sum((z & o).values())}, only Zeek {len(only_z)}, "
          f"only ours {len(only_o)}")
    assert sorted(only_z + only_o, key=str) == sorted(declared, key=str)
    names = {_zeek_key(r): r["func"] for r in rows}
    for m in mine:  # function names: ours stands for what Zeek names (REPORT_SLAVE_ID -> report_server_id ...)
        k = _our_key(m)
        if k in names:
            assert our_name_ok(names[k], m.ref.function), (names[k], m.ref.function)


def test_non_modbus_on_port_502_is_a_protocol_violation_without_transactions():
    """Zeek's trace has one Modbus flow and six scanner flows on port 502 (DCE/RPC, RPC, TLS, HTTP, RDP,
    'MGLNDD'): Zeek confirms Modbus only on the first and reports an analyzer violation for five (the HTTP one
    has no handshake and no analyzer verdict)."""
    base = CORPUS / f"{ZB}modbus_and_non_modbus_on_port_502"
    conn = zeek_log(need(base / "conn.log"))
    debug = zeek_log(need(base / "analyzer_debug.log"))
    _, events, _ = ours(cap("zeek/Traces/modbus/modbus-and-non-modbus-p502.pcap"))
    modbus_flows = {(e.flow.client_ip, e.flow.client_port) for e in events if type(e) is ModbusTransaction}
    violations = {(n.flow.client_ip, n.flow.client_port): n.details for n in events
                  if type(n) is FlowNotice and n.action == "protocol_violation"}
    zeek_modbus = {(r["id.orig_h"], int(r["id.orig_p"])) for r in conn if r["service"] == "modbus"}
    zeek_violations = {(r["id.orig_h"], int(r["id.orig_p"])) for r in debug
                       if r["cause"] == "violation" and r["analyzer_name"] == "MODBUS"}
    assert modbus_flows == zeek_modbus == {("10.0.0.9", 3082)}
    assert not modbus_flows & set(violations)
    # Zeek's five, plus the HTTP GET picked up mid-stream (conn history "Dr": data then RST, no handshake;
    # Zeek logs no analyzer verdict for it): 109 bytes without an MBAP frame are no Modbus either.
    assert set(violations) == zeek_violations | {("198.74.56.135", 60293)}
    assert violations[("198.74.56.135", 60293)]["reason"] == "no valid MBAP frame (1 invalid header)"
    assert all(v["protocol"] == "modbus" for v in violations.values())


# ============================================================================================ Zeek 2.4 (old logs)

AUTOMAYT = "collections/automayt-ICS-pcap/MODBUS/"
ZEEK24 = {  # log dir -> (trace, expected counts of the Zeek 2.4 logging rules applied below)
    "digitalbond pcaps/modbus_test_data_part1": (
        "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part1.pcap",
        {"row": 12, "no_exception_code": 0, "second_row_0x81": 0, "unlogged_exception": 4}),
    "MODBUS-TestDataPart1": (
        "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part1.pcap",
        {"row": 12, "no_exception_code": 0, "second_row_0x81": 0, "unlogged_exception": 4}),
    "digitalbond pcaps/modbus_test_data_part2": (
        "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part2.pcap",
        {"row": 141, "no_exception_code": 111, "second_row_0x81": 9, "unlogged_exception": 9}),
    "MODBUS-TestDataPart2": (
        "collections/ITI-ICS-Security-Tools/pcaps/quickdraw/modbus_test_data_part2.pcap",
        {"row": 141, "no_exception_code": 111, "second_row_0x81": 9, "unlogged_exception": 9}),
    "Modbus": ("ndpi/pcap/modbus.pcap", {"row": 51, "no_exception_code": 0, "second_row_0x81": 0,
                                         "unlogged_exception": 0}),
}
#: Exception function codes Zeek 2.4's binpac grammar decodes (modbus-protocol.pac: 0x81-0x87, 0x8F, 0x90,
#: 0x94-0x98); for any other it raises no modbus_exception event.
ZEEK24_EXCEPTION_FCS = frozenset((*range(0x81, 0x88), 0x8F, 0x90, *range(0x94, 0x99)))


def zeek24_rows(m: Msg, tally: Counter) -> list[tuple]:
    """The rows Zeek 2.4's modbus script writes for one of our response messages, with its quirks counted:
    it logs responses only, at the response time; from modbus_message when the code (with the 0x80 bit) is
    <= 0x81 or >= 0x98 (so without the exception code, and 0x81 a second time from modbus_exception); from
    modbus_exception for the codes its grammar decodes; codes 0x88-0x93 outside its grammar not at all."""
    f = m.fc | (0x80 if m.exc is not None else 0)
    c = m.ref.flow
    base = (ts_text(m.ts), c.client_ip, c.client_port, f)
    rows = []
    if f <= 0x81 or f >= 0x98:
        rows.append(base + (None,))
        if m.exc is not None:
            tally["no_exception_code"] += 1
    if m.exc is not None and f in ZEEK24_EXCEPTION_FCS:
        rows.append(base + (m.exc,))
        if f == 0x81:
            tally["second_row_0x81"] += 1
    if not rows:
        tally["unlogged_exception"] += 1
    return rows


@pytest.mark.parametrize("logdir", list(ZEEK24))
def test_zeek24_modbus_log_rows(logdir):
    trace, expected = ZEEK24[logdir]
    rows = zeek_log(need(CORPUS / AUTOMAYT / logdir / "modbus.log"))
    mine, _, _ = ours(cap(trace))
    tally: Counter = Counter()
    o = Counter(r for m in mine if m.role == "RESP" for r in zeek24_rows(m, tally))

    def key(r):
        fc, exc = zeek_function(r["func"])
        return (r["ts"], r["id.orig_h"], int(r["id.orig_p"]), fc | (0x80 if exc else 0), zeek_exception(r["exception"]))
    z = Counter(key(r) for r in rows)
    tally["row"] = len(rows)
    print(f"\nzeek 2.4 {logdir}: {len(rows)} rows, agree {sum((z & o).values())}; "
          f"Zeek 2.4 logging rules applied: {dict(tally)}")
    assert z == o, (sorted((z - o).elements())[:5], sorted((o - z).elements())[:5])
    assert tally == Counter({k: v for k, v in expected.items() if v})


# ============================================================================================ Zeek event dumps

_EVENT = re.compile(r"^(\d+) (\w+), \[orig_h=([^,]+), orig_p=(\d+)/tcp, resp_h=([^,]+), resp_p=(\d+)/tcp, "
                    r"proto=6, ctx=\[\]\], "
                    r"\[tid=(\w+), pid=0, uid=(\d+), function_code=(\w+), len=(\d+)\](?:, (.*))?$")


def zeek_events(path: Path) -> Counter:
    out: Counter = Counter()
    for line in path.read_text().splitlines():
        m = _EVENT.match(line)
        if m:
            out[m.group(2), int(m.group(4)), m.group(7), m.group(8), m.group(11)] += int(m.group(1))
    return out


def _bools(v) -> str:
    return "[" + ", ".join("T" if x else "F" for x in v) + "]"


def our_coil_events(mine: list[Msg]) -> Counter:
    """Our messages written the way Zeek's coil-parsing btest prints its events."""
    out: Counter = Counter()
    for m in mine:
        e, port, tid, unit = m.ref, m.ref.flow.client_port, str(m.tid), str(m.unit)
        out["modbus_message", port, tid, unit, "T" if m.role == "REQ" else "F"] += 1
        f = m.fields
        if m.exc is not None:
            continue
        if m.fc == 1 and m.role == "REQ":
            out["modbus_read_coils_request", port, tid, unit, f"{f['address']}, {f['quantity']}"] += 1
        elif m.fc == 1:
            # Zeek gives every bit of the last byte; the spec pads it with zeros (6.1), so ours + padding
            pad = -len(f["values"]) % 8
            out["modbus_read_coils_response", port, tid, unit, _bools(f["values"] + [False] * pad)] += 1
        elif m.fc == 15 and m.role == "REQ":
            out["modbus_write_multiple_coils_request", port, tid, unit, f"{f['address']}, {_bools(f['values'])}"] += 1
        elif m.fc == 15:
            out["modbus_write_multiple_coils_response", port, tid, unit, f"{f['address']}, {f['quantity']}"] += 1
        elif m.fc == 5:
            name = "modbus_write_single_coil_" + ("request" if m.role == "REQ" else "response")
            out[name, port, tid, unit, f"{f['address']}, {'T' if f['values'][0] else 'F'}"] += 1
    return out


@pytest.mark.parametrize("test,trace", [("coil_parsing_small", "modbusSmall"), ("coil_parsing_big", "modbusBig")])
def test_zeek_coil_parsing_event_dumps(test, trace):
    z = zeek_events(need(CORPUS / f"{ZB}{test}" / "output"))
    mine, _, _ = ours(cap(f"zeek/Traces/modbus/{trace}.pcap"))
    o = our_coil_events(mine)
    print(f"\nzeek {test}: {sum(z.values())} events, agree {sum((z & o).values())}")
    only_o = o - z
    # modbusBig frame 3150: the response Zeek (like tshark) never parses, see TSHARK_DISAGREE
    expected_only_ours = Counter() if trace == "modbusSmall" else Counter({
        ("modbus_message", 49226, "50382", "255", "F"): 1,
        ("modbus_read_coils_response", 49226, "50382", "255", "[T, F, F, F, F, F, F, F]"): 1})
    assert z - o == Counter() and only_o == expected_only_ours


def test_zeek_events_for_modbus_eit():
    """The `events` btest's output mixes a missing trace with modbus-eit.pcap; its modbus-eit lines (client
    192.168.2.42): FC 43/14 requests (read device id 1, object 0), one response, exception 4 on the other."""
    lines = [x for x in need(CORPUS / f"{ZB}events" / "compressed-output").read_text().splitlines()
             if "orig_h=192.168.2.42" in x]
    _, events, _ = ours(cap("zeek/Traces/modbus/modbus-eit.pcap"))
    txs = [e for e in events if type(e) is ModbusTransaction]
    assert sum("encap_interface_transport_request" in x for x in lines) == 2
    assert all(t.request.details["read_device_id_code"] == 1 and t.request.details["object_id"] == 0 for t in txs)
    assert [x.rsplit(", ", 1)[1] for x in lines if x.startswith("1 modbus_exception")] == ["4"]
    assert [(t.flow.client_port, t.exception_code) for t in txs] == [(54297, None), (54298, 4)]
    assert txs[0].response.details["read_device_id_code"] == 1  # Zeek: response data \x01\x00M\xb7...


# ============================================================================================ ICSNPP

IB = "icsnpp/icsnpp-modbus/testing/baseline/analyzer.basic/"
ICSNPP_TRACE = "icsnpp/icsnpp-modbus/testing/traces/modbus_example.pcap"
ICSNPP_UNPAIRED = {  # ICSNPP logs these as two unmatched rows each; we pair by transaction id (spec 4.1)
    "READ_EXCEPTION_STATUS": "ICSNPP has no handler pairing FC 7 request and response",
    "REPORT_SLAVE_ID": "ICSNPP has no handler pairing FC 17 request and response",
}


def _ints(s: str) -> list | None:
    return None if s == "-" else [int(x) for x in s.split(",")]


def test_icsnpp_modbus_log():
    # the baseline keeps ts uid id.* func exception, response rows only (REQ rows dropped by the btest)
    rows = zeek_log(need(CORPUS / IB / "modbus.log"),
                    ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "func", "exception"])
    mine, _, _ = ours(cap(ICSNPP_TRACE))
    resp = [m for m in mine if m.role == "RESP"]
    z = Counter((r["id.orig_p"], zeek_function(r["func"])[0], zeek_exception(r["exception"])) for r in rows)
    o = Counter((str(m.ref.flow.client_port), m.fc, m.exc) for m in resp)
    print(f"\nicsnpp modbus.log: {len(rows)} rows, agree {sum((z & o).values())}")
    assert z == o and len(rows) == 24
    for r, m in zip(rows, resp):
        assert our_name_ok(r["func"], m.ref.function)


def test_icsnpp_modbus_detailed_log():
    rows = zeek_log(need(CORPUS / IB / "modbus_detailed.log"))
    _, events, _ = ours(cap(ICSNPP_TRACE))
    txs = {(e.flow.client_port, e.transaction_id): e for e in events if type(e) is ModbusTransaction}
    agree, unpaired = 0, Counter()
    for r in rows:
        t = txs[(int(r["id.orig_p"]), int(r["tid"]))]
        assert (t.unit_id, our_name_ok(r["func"], t.function)) == (int(r["unit"]), True)
        if r["func"] in ICSNPP_UNPAIRED:
            unpaired[r["func"]] += 1
            assert r["matched"] == "-" and t.request is not None and t.response is not None
            continue
        q, p = t.request, t.response
        if r["exception_code"] != "-":
            assert zeek_exception(r["exception_code"]) == t.exception_code
        if r["address"] != "-":
            assert int(r["address"]) == q.address
        if r["quantity"] != "-":
            # FC 20/21: ICSNPP's quantity is the number of file sub-requests (none here); FC 24: the FIFO
            # count of the response
            n = len(q.details["file_records"]) if t.function_code in (20, 21) else \
                p.quantity if t.function_code == 24 else q.quantity
            assert int(r["quantity"]) == n
        if r["request_values"] != "-":
            assert _ints(r["request_values"]) == [int(v) for v in q.values]
        if r["response_values"] != "-":
            assert _ints(r["response_values"]) == [int(v) for v in p.values]
        if r["response_data"] != "-" and t.function_code in (1, 2):
            # the padding bits after the requested coils (spec 6.1: zero); we keep only the coils asked for
            assert set(_ints(r["response_data"])) == {0} and len(p.values) == q.quantity
        if r["request_subfunction_code"] != "-":
            assert q.details["sub_function_name"] == r["request_subfunction_code"].lower().replace(" ", "_")
            assert p.details["sub_function_name"] == r["response_subfunction_code"].lower().replace(" ", "_")
        if r["mei_type"] != "-":
            assert r["mei_type"] == "Read Device Identification" and q.details["mei_type"] == 14
        agree += 1
    print(f"\nicsnpp modbus_detailed.log: {len(rows)} rows, agree {agree}, unpaired by ICSNPP {dict(unpaired)}")
    assert unpaired == Counter({"READ_EXCEPTION_STATUS": 2, "REPORT_SLAVE_ID": 2}) and agree == len(rows) - 4


def test_icsnpp_mask_write_and_read_write_multiple_logs():
    _, events, _ = ours(cap(ICSNPP_TRACE))
    txs = {e.transaction_id: e for e in events if type(e) is ModbusTransaction and e.flow.client_port == 47785}
    mask = zeek_log(need(CORPUS / IB / "modbus_mask_write_register.log"))
    for r in mask:
        t = txs[int(r["tid"])]
        part = t.request if r["request_response"] == "REQUEST" else t.response
        assert (part.address, part.details["and_mask"], part.details["or_mask"]) == (
            int(r["address"]), int(r["and_mask"]), int(r["or_mask"]))
    rw = zeek_log(need(CORPUS / IB / "modbus_read_write_multiple_registers.log"))
    for r in rw:
        t = txs[int(r["tid"])]
        if r["request_response"] == "REQUEST":
            q = t.request
            assert (q.address, list(q.values), q.details["read_address"], q.details["read_quantity"]) == (
                int(r["write_start_address"]), _ints(r["write_registers"]), int(r["read_start_address"]),
                int(r["read_quantity"]))
        else:
            assert list(t.response.values) == _ints(r["read_registers"])
    print(f"\nicsnpp mask-write {len(mask)} rows, read-write-multiple {len(rw)} rows: all agree")
    assert len(mask) == 4 and len(rw) == 4


# ============================================================================================ field declarations

def _flat(doc: dict, prefix: str = "") -> set:
    out = set()
    for k, v in doc.items():
        p = prefix + k
        if isinstance(v, dict):
            out |= _flat(v, p + ".")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            out.add(p)
            for x in v:
                out |= _flat(x, p + ".")
        else:
            out.add(p)
    return out


def test_every_modbus_field_emitted_is_declared_and_every_declared_one_emitted(tmp_path):
    """ids/protocols/modbus/fields.yml against the documents of every corpus capture, the every-function-code
    capture and broken MBAP frames from both sides (the only source of protocol_id / length)."""
    from mbcraft import Conversation, adu, write_pcap
    spec = yaml.safe_load((ROOT / "ids" / "protocols" / "modbus" / "fields.yml").read_text())
    declared = {f["name"]: f["type"] for f in spec["fields"]}
    assert spec["group"] == "modbus" and all(f.get("description") for f in spec["fields"])
    flattened = [n for n, t in declared.items() if t == "flattened"]
    c = Conversation().handshake()
    c.send(True, adu(1, 1, 3, "00000001"))
    c.send(False, adu(1, 1, 3, "020001"))
    c.send(True, adu(2, 1, 3, "00000001", pid=7))
    c.send(False, adu(2, 1, 3, "020001", pid=7))
    broken = str(write_pcap(tmp_path / "broken.pcap", c.close().frames))
    paths = [cap(rel) for rel in MODBUS_CAPTURES] + [str(every_function_capture(tmp_path / "every.pcap")), broken]
    emitted = set()
    for path in paths:
        _, events, _ = ours(path)
        for e in events:
            if type(e) is ModbusTransaction:
                emitted |= {k for k in _flat(e.to_doc()) if k.startswith("modbus.")}
    undeclared = {k for k in emitted if k not in declared and not any(k.startswith(f + ".") for f in flattened)}
    assert not undeclared, sorted(undeclared)
    reached = emitted | {f for f in flattened if any(k.startswith(f + ".") for k in emitted)}
    assert set(declared) - reached == set(), "declared but never emitted"


# ============================================================================================ every function code

#: Request and response of every function code, from the specification's examples (sections 6.1-6.21),
#: plus user-defined, vendor and exception cases: the corpus lacks several of them (11, 12, 20, 21, 24).
EVERY_FUNCTION = [
    (1, "00130013", "03cd6b05"), (2, "00c40016", "03acdb35"), (3, "006b0003", "06022b00000064"),
    (4, "00080001", "02000a"), (5, "00acff00", "00acff00"), (6, "00010003", "00010003"), (7, "", "6d"),
    (8, "0000a537", "0000a537"), (8, "00020000", "00020123"), (8, "000a0000", "000a0000"), (11, "", "ffff0108"),
    (12, "", "080000010801212000"), (15, "0013000a02cd01", "0013000a"), (16, "0001000204000a0102", "00010002"),
    (17, "", "064f54494453ff"), (20, "0e0600040001000206000300090002", "0c05060dfe0020050633cd0040"),
    (21, "0d0600040007000306af04be100d", "0d0600040007000306af04be100d"), (22, "000400f20025", "000400f20025"),
    (23, "00030006000e00030600ff00ff00ff", "0c00fe0acd00010003000d00ff"), (24, "04de", "0006000201b81284"),
    (43, "0e0100", "0e0101000003" + "0007" + b"Company".hex() + "0107" + b"PRODUCT".hex() + "0205" + b"V2.11".hex()),
    (43, "0e0402", "0e0481000001" + "0205" + b"V2.11".hex()), (65, "0102", "0102"), (90, "0012", "00fe"),
]


def every_function_capture(path: Path) -> Path:
    from mbcraft import Conversation, adu, write_pcap
    c = Conversation().handshake()
    for tid, (fc, q, r) in enumerate(EVERY_FUNCTION, 1):
        c.send(True, adu(tid, 1, fc, q))
        c.send(False, adu(tid, 1, fc, r))
    bodies = {fc: q for fc, q, _ in EVERY_FUNCTION} | {100: ""}
    for tid, (fc, code) in enumerate(((1, 1), (3, 2), (8, 3), (16, 4), (23, 5), (43, 6), (65, 10), (100, 11)), 100):
        c.send(True, adu(tid, 1, fc, bodies[fc]))  # exceptions: every code of section 7 once
        c.send(False, adu(tid, 1, fc | 0x80, f"{code:02x}"))
    return write_pcap(path, c.close().frames)


def test_every_function_code_against_tshark(tmp_path):
    exe = need_tool("tshark")
    path = str(every_function_capture(tmp_path / "every.pcap"))
    mine, events, _ = ours(path)
    theirs = tshark(path, exe)
    c = match(mine, theirs)
    print(f"\ntshark every function code: {len(theirs)} messages, agree {len(c.matched)}")
    assert disagreements(c) == [] and len(c.matched) == 2 * (len(EVERY_FUNCTION) + 8)
    # FC 20 response, spec 6.14 example: sub-responses of file response length 5 (reference type + 2
    # registers) each. tshark 4.0 gives the first group's data as the whole rest of the PDU (both groups),
    # ignoring that length; the second group it reads right. We follow the length: 0x0DFE, 0x0020.
    assert [(t.ref, k, ov, tv) for o, t, k, ov, tv in field_mismatches(c.matched)] == [
        (35, "file_records",
         [{"reference_type": 6, "values": [0x0DFE, 0x20]}, {"reference_type": 6, "values": [0x33CD, 0x40]}],
         [{"reference_type": 6, "values": [0x0DFE, 0x20, 0x0506, 0x33CD, 0x40]},
          {"reference_type": 6, "values": [0x33CD, 0x40]}])]
    txs = [e for e in events if type(e) is ModbusTransaction]
    assert [t.anomalies for t in txs] == [()] * len(txs)
    assert [t.function for t in txs[:len(EVERY_FUNCTION)]][-4:] == [
        "read_device_identification", "read_device_identification", "user_defined_65", "schneider_umas"]
