"""Modbus dissector at the edges: every function code of ids/protocols/modbus/parser.py on hex bytes
(requests, responses, exceptions, largest valid and first invalid values, truncated PDUs), then the session
(MBAP framing, pairing, bounds) on crafted streams fed through the real capture reader, decoder, flow table
and reassembly (tests/mbcraft.py writes the pcap).

Spec references: MODBUS Application Protocol Specification v1.1b3 (sections in comments) and MODBUS
Messaging on TCP/IP Implementation Guide v1.0b (MBAP header).
"""
from __future__ import annotations

import random

import pytest

from ids.config import Config
from ids.protocols.modbus.config import ModbusConfig
from ids.events import FlowNotice
from ids.protocols.modbus.messages import ModbusTransaction
from ids.pipeline import analyze
from ids.protocols.modbus.consts import exception_name, function_class, function_name
from ids.protocols.modbus.parser import parse_request, parse_response
from ids.protocols.modbus.session import probe
from mbcraft import Conversation, adu, write_pcap

CAP = 125
MAL = "malformed_pdu"


def req(fc, hexdata, cap=CAP):
    return parse_request(fc, bytes.fromhex(hexdata), cap)


def resp(fc, hexdata, request=None, cap=CAP):
    return parse_response(fc, bytes.fromhex(hexdata), request, cap)


# ============================================================================================ names

def test_public_function_names():
    assert [function_name(f) for f in (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24)] == [
        "read_coils", "read_discrete_inputs", "read_holding_registers", "read_input_registers",
        "write_single_coil", "write_single_register", "read_exception_status", "diagnostics",
        "get_comm_event_counter", "get_comm_event_log", "write_multiple_coils", "write_multiple_registers",
        "report_server_id", "read_file_record", "write_file_record", "mask_write_register",
        "read_write_multiple_registers", "read_fifo_queue"]
    # 43: named by MEI type (6.19-6.21)
    assert function_name(43) == "encapsulated_interface_transport"
    assert function_name(43, 14) == "read_device_identification"
    assert function_name(43, 13) == "canopen_general_reference"


@pytest.mark.parametrize("fc", [65, 72, 100, 110])
def test_user_defined_codes_at_the_range_edges(fc):
    # 5.1: 65-72 and 100-110 are user defined
    assert function_name(fc) == f"user_defined_{fc}" and function_class(fc) == "user"


@pytest.mark.parametrize("fc", [64, 73, 99, 111, 0, 44])
def test_codes_just_outside_the_user_ranges_are_unknown(fc):
    name = function_name(fc)
    assert name == f"unknown-{fc}" and function_class(fc) == "unassigned"


def test_vendor_and_reserved_codes():
    assert function_name(90) == "schneider_umas"  # Schneider UMAS, recognised by name
    assert function_name(9) == "reserved_9" and function_class(9) == "reserved"
    assert function_name(127) == "reserved_127"


def test_exception_names():
    assert [exception_name(c) for c in (1, 2, 3, 4, 5, 6, 8, 10, 11)] == [
        "illegal_function", "illegal_data_address", "illegal_data_value", "server_device_failure",
        "acknowledge", "server_device_busy", "memory_parity_error", "gateway_path_unavailable",
        "gateway_target_device_failed_to_respond"]
    assert exception_name(9) == "unknown-9" and exception_name(255) == "unknown-255"


# ============================================================================================ reads 1-4

@pytest.mark.parametrize("fc,limit", [(1, 2000), (2, 2000), (3, 125), (4, 125)])
def test_read_quantity_edges(fc, limit):
    r, an = req(fc, f"0000{limit:04x}")
    assert (r.address, r.quantity, an) == (0, limit, ())
    assert req(fc, f"0000{limit + 1:04x}")[1] == ("quantity_out_of_range",)
    assert req(fc, "00000000")[1] == ("quantity_out_of_range",)  # quantity 0 is invalid too
    r, an = req(fc, "ffff0001")
    assert r.address == 65535 and an == ()


@pytest.mark.parametrize("fc", [1, 2, 3, 4])
def test_read_request_truncated_and_overlong(fc):
    assert req(fc, "")[1] == (MAL,)
    r, an = req(fc, "0010")
    assert (r.address, r.quantity, an) == (16, None, (MAL,))
    r, an = req(fc, "0010000100")  # one byte too many: fields still read
    assert (r.address, r.quantity, an) == (16, 1, (MAL,))


def test_read_coils_response_bits_lsb_first_and_count_from_request():
    # 6.1 example: coils 20-38 (19 coils): CD 6B 05
    q, _ = req(1, "00130013")
    r, an = resp(1, "03cd6b05", q)
    assert an == () and r.quantity == 19
    assert r.values == (True, False, True, True, False, False, True, True,  # CD
                        True, True, False, True, False, True, True, False,  # 6B
                        True, False, True)  # 05, padding bits dropped


def test_read_bits_response_byte_count_mismatches():
    q, _ = req(2, "00000010")  # 16 inputs -> 2 bytes
    assert resp(2, "03000000", q)[1] == ("byte_count_mismatch",)  # 3 announced for 16 inputs
    assert resp(2, "0200", q)[1] == ("byte_count_mismatch",)  # 2 announced, 1 present
    assert resp(2, "", q)[1] == (MAL,)
    r, an = resp(2, "01ff")  # unpaired: all bits of the byte
    assert r.values == (True,) * 8 and an == ()


def test_read_registers_response():
    q, _ = req(3, "006b0003")  # 6.3 example
    r, an = resp(3, "06022b00000064", q)
    assert (r.quantity, r.values, an) == (3, (555, 0, 100), ())
    assert resp(3, "05022b000000", q)[1] == ("byte_count_mismatch",)  # odd byte count
    assert resp(3, "04022b0000", q)[1] == ("byte_count_mismatch",)  # 2 registers for 3 asked
    assert resp(4, "06022b", q)[1] == ("byte_count_mismatch",)  # truncated


def test_values_cap_sets_values_truncated():
    q, _ = req(3, "0000007d")  # 125 registers
    data = "fa" + "0001" * 125
    r, an = resp(3, data, q, cap=10)
    assert r.values == (1,) * 10 and r.quantity == 125 and an == ("values_truncated",)
    r, an = resp(3, data, q, cap=125)
    assert len(r.values) == 125 and an == ()
    q, _ = req(1, "000007d0")  # 2000 coils, 250 bytes
    r, an = resp(1, "fa" + "ff" * 250, q, cap=125)
    assert len(r.values) == 125 and an == ("values_truncated",)


# ============================================================================================ writes 5, 6, 15, 16

def test_write_single_coil_values():
    assert req(5, "00acff00")[0].values == (True,)  # 6.5 example
    assert req(5, "00ac0000")[0].values == (False,)
    r, an = req(5, "00ac1234")
    assert r.values == (0x1234,) and an == ("invalid_coil_value",)
    assert req(5, "00ac")[1] == (MAL,)


def test_write_single_echo_responses():
    q, _ = req(6, "00010003")
    assert resp(6, "00010003", q)[1] == ()
    r, an = resp(6, "00010004", q)
    assert r.values == (4,) and an == ("response_mismatch",)
    q, _ = req(5, "00acff00")
    assert resp(5, "00acff00", q)[1] == ()
    assert resp(5, "00ac0000", q)[1] == ("response_mismatch",)


def test_write_multiple_coils_quantity_edges():
    # 6.11: 1..1968 (0x7B0) coils
    r, an = req(15, "0000" + "07b0" + "f6" + "ff" * 246, cap=2000)
    assert an == () and r.quantity == 1968 and len(r.values) == 1968
    r, an = req(15, "0000" + "07b1" + "f7" + "ff" * 247, cap=2000)
    assert an == ("quantity_out_of_range",)
    r, an = req(15, "0013000a02cd01")  # 6.11 example
    assert (r.address, r.quantity, an) == (19, 10, ())
    assert r.values == (True, False, True, True, False, False, True, True, True, False)
    assert req(15, "0013000a03cd0100")[1] == ("byte_count_mismatch",)  # 3 bytes for 10 coils
    assert req(15, "0013000a02cd")[1] == ("byte_count_mismatch",)  # byte missing
    r, an = req(15, "0013")
    assert (r.address, an) == (19, (MAL,))


def test_write_multiple_registers_quantity_edges():
    # 6.12: 1..123 (0x7B) registers
    r, an = req(16, "0000007bf6" + "0002" * 123)
    assert an == () and r.quantity == 123 and r.values == (2,) * 123
    assert req(16, "0000007cf8" + "0002" * 124)[1] == ("quantity_out_of_range",)
    r, an = req(16, "0001000204000a")  # cut after the first register
    assert an == ("byte_count_mismatch",) and r.values == (10,)
    q, _ = req(16, "0001000204000a0102")
    assert q.values == (10, 258)
    assert resp(16, "00010002", q)[1] == ()
    assert resp(16, "00010003", q)[1] == ("response_mismatch",)
    assert resp(15, "0001", None)[1] == (MAL,)


def test_write_values_cap():
    r, an = req(16, "0000007bf6" + "0002" * 123, cap=5)
    assert r.values == (2,) * 5 and an == ("values_truncated",)
    r, an = req(15, "000007b0f6" + "ff" * 246, cap=5)
    assert r.values == (True,) * 5 and an == ("values_truncated",)


# ======================================================================================= serial line 7, 8, 11, 12, 17

def test_read_exception_status():
    r, an = req(7, "")
    assert (r.address, r.quantity, r.values, r.details, an) == (None, None, None, None, ())
    assert req(7, "00")[1] == (MAL,)
    assert resp(7, "6d")[0].values == (0x6D,)
    assert resp(7, "")[1] == (MAL,)


@pytest.mark.parametrize("sub,name", [
    (0, "return_query_data"), (1, "restart_communications_option"), (2, "return_diagnostic_register"),
    (3, "change_ascii_input_delimiter"), (4, "force_listen_only_mode"),
    (10, "clear_counters_and_diagnostic_register"), (11, "return_bus_message_count"),
    (12, "return_bus_communication_error_count"), (13, "return_bus_exception_error_count"),
    (14, "return_server_message_count"), (15, "return_server_no_response_count"),
    (16, "return_server_nak_count"), (17, "return_server_busy_count"),
    (18, "return_bus_character_overrun_count"), (20, "clear_overrun_counter_and_flag"),
    (21, "unknown-21"), (19, "unknown-19"), (0xFFFF, "unknown-65535")])
def test_diagnostics_sub_functions(sub, name):
    r, an = req(8, f"{sub:04x}0000")
    assert (r.sub_function, r.details["sub_function_name"], an) == (sub, name, ())
    out, an = resp(8, f"{sub:04x}0000", r)
    assert out.sub_function == sub and an == ()


def test_diagnostics_echo_data_and_edges():
    r, an = req(8, "0000a537")  # 6.8.1 sub-function 00: return query data
    assert r.values == (0xA537,) and an == ()
    assert resp(8, "0001ff00", r)[1] == ("response_mismatch",)
    r, an = req(8, "0000a5")  # odd data length: named, flagged
    assert r.sub_function == 0 and an == (MAL,)
    assert req(8, "00")[1] == (MAL,)


def test_comm_event_counter_and_log():
    assert req(11, "")[1] == () and req(12, "")[1] == ()
    r, an = resp(11, "ffff0108")  # 6.9 example
    assert r.details == {"status": 0xFFFF, "event_count": 0x108} and an == ()
    assert resp(11, "ffff")[1] == (MAL,)
    r, an = resp(12, "080000010801212000")  # 6.10 example
    assert r.details == {"status": 0, "event_count": 0x108, "message_count": 0x121, "events": [0x20, 0]}
    assert an == ()
    assert resp(12, "09000001080121200000")[1] == ()
    assert resp(12, "0a0000010801212000")[1] == ("byte_count_mismatch",)
    assert resp(12, "0800")[1] == (MAL,)


def test_report_server_id():
    # pymodbus layout: the id string, the run indicator last (6.13 leaves the id's length to the device)
    r, an = resp(17, "064f54494453ff")
    assert r.details == {"server_id": "4f54494453", "server_id_text": "OTIDS", "run_indicator": True}
    assert an == ()
    assert resp(17, "074f54494453ff")[1] == ("byte_count_mismatch",)
    assert resp(17, "")[1] == (MAL,)


@pytest.mark.parametrize("pdu,details", [
    # Wingpath (corpus quickdraw modbus_test_data_part1.pcap) and libmodbus: the spec order, a one-byte id,
    # the run indicator, then additional data. Read with the last byte as the indicator it was "Wingpath Limite".
    ("1200ff57696e6770617468204c696d69746564",
     {"server_id": "00", "server_id_text": ".", "run_indicator": True,
      "additional_data": "57696e6770617468204c696d69746564", "additional_data_text": "Wingpath Limited"}),
    ("04110041ff", {"server_id": "11", "server_id_text": ".", "run_indicator": False,
                    "additional_data": "41ff", "additional_data_text": "A."}),  # OFF; the data may end in 0xff
    ("0211ff", {"server_id": "11", "server_id_text": ".", "run_indicator": True}),  # both layouts agree
    ("024100", {"server_id": "41", "server_id_text": "A", "run_indicator": False}),
    ("0141", {"server_id": "41", "server_id_text": "A"}),  # one byte: no room for an indicator
    ("01ff", {"server_id": "ff", "server_id_text": "."}),
    ("03414243", {"server_id": "414243", "server_id_text": "ABC"}),  # no 0x00/0xff: all of it is the id
    ("00", {"server_id": "", "server_id_text": ""}),
])
def test_report_server_id_layouts(pdu, details):
    r, an = resp(17, pdu)
    assert r.details == details and an == ()


# ============================================================================================ files 20, 21; 22; 23; 24

def test_read_file_record_request_and_response():
    # 6.14 example: two sub-requests (file 4 record 1 length 2; file 3 record 9 length 2)
    r, an = req(20, "0e0600040001000206000300090002")
    assert an == ()
    assert r.details["file_records"] == [
        {"reference_type": 6, "file_number": 4, "record_number": 1, "record_length": 2},
        {"reference_type": 6, "file_number": 3, "record_number": 9, "record_length": 2}]
    out, an = resp(20, "0c05060dfe0020050633cd0040", r)
    assert an == () and [x["values"] for x in out.details["file_records"]] == [[0x0DFE, 0x20], [0x33CD, 0x40]]


def test_read_file_record_edges():
    assert req(20, "0706000400010002")[1] == ()  # byte count 7: one sub-request, the smallest valid
    assert req(20, "00")[1] == (MAL,)  # byte count 0 is below 0x07
    assert req(20, "0705000400010002")[1] == (MAL,)  # reference type must be 6
    assert req(20, "0706000427100002")[1] == (MAL,)  # record number 10000 > 9999
    assert req(20, "08060004000100")[1] == ("byte_count_mismatch", MAL)
    assert req(20, "")[1] == (MAL,)
    assert resp(20, "0c05060dfe00200506")[1][0] == "byte_count_mismatch"
    assert MAL in resp(20, "0400000000")[1]  # sub-response length 0: malformed, and no endless loop


def test_write_file_record_request_and_echo():
    # 6.15 example: file 4, record 7, 3 registers
    r, an = req(21, "0d0600040007000306af04be100d")
    assert an == ()
    assert r.details["file_records"] == [{"reference_type": 6, "file_number": 4, "record_number": 7,
                                          "record_length": 3, "values": [0x06AF, 0x04BE, 0x100D]}]
    assert resp(21, "0d0600040007000306af04be100d", r)[1] == ()
    assert req(21, "0d0600040007000306af04be10")[1] == ("byte_count_mismatch",)
    r, an = req(21, "0d0600040007000306af04be100d", cap=2)
    assert r.details["file_records"][0]["values"] == [0x06AF, 0x04BE] and an == ("values_truncated",)


def test_mask_write_register():
    r, an = req(22, "000400f20025")  # 6.16 example
    assert (r.address, r.details, an) == (4, {"and_mask": 0xF2, "or_mask": 0x25}, ())
    assert resp(22, "000400f20025", r)[1] == ()
    assert resp(22, "000400f20026", r)[1] == ("response_mismatch",)
    r, an = req(22, "00040000")  # short: what is there is kept
    assert (r.address, r.details, an) == (4, {"and_mask": 0}, (MAL,))


def test_read_write_multiple_registers_edges():
    # 6.17 example: read 6 from 3, write 3 at 14
    r, an = req(23, "00030006000e00030600ff00ff00ff")
    assert an == () and (r.address, r.quantity, r.values) == (14, 3, (0xFF, 0xFF, 0xFF))
    assert r.details == {"read_address": 3, "read_quantity": 6}
    out, an = resp(23, "0c00fe0acd00010003000d00ff", r)
    assert an == () and out.values == (0xFE, 0xACD, 1, 3, 0xD, 0xFF)
    assert resp(23, "0400fe0acd", r)[1] == ("byte_count_mismatch",)  # 2 registers for 6 asked
    # read quantity 1..125, write quantity 1..121 (0x79)
    ok = "0000007d00000079f2" + "0001" * 121
    assert req(23, ok)[1] == ()
    assert req(23, "0000007e00000079f2" + "0001" * 121)[1] == ("quantity_out_of_range",)
    assert req(23, "0000007d0000007af4" + "0001" * 122)[1] == ("quantity_out_of_range",)
    # byte count says more than the write quantity (Zeek's 4SICS trace): no over-read, flagged
    r, an = req(23, "000000010000000304" + "0001" * 2)
    assert an[0] == "byte_count_mismatch" and r.values == (1, 1)
    r, an = req(23, "00000001")  # truncated: the read half is kept
    assert r.details == {"read_address": 0, "read_quantity": 1} and an == (MAL,)


def test_read_fifo_queue_edges():
    r, an = req(24, "04de")  # 6.18 example
    assert (r.address, an) == (0x4DE, ())
    out, an = resp(24, "00060002 01b8 1284".replace(" ", ""), r)
    assert (out.quantity, out.values, an) == (2, (0x1B8, 0x1284), ())
    full = "0040001f" + "0001" * 31  # 31 registers: the largest queue
    assert resp(24, full)[1] == ()
    assert resp(24, "00420020" + "0001" * 32)[1] == ("byte_count_mismatch",)  # 32 > 31
    assert resp(24, "0006")[1] == (MAL,)
    assert req(24, "04de00")[1] == (MAL,)


# ============================================================================================ 43: MEI

def test_read_device_identification_request_codes():
    for code, name in ((1, "basic"), (2, "regular"), (3, "extended"), (4, "specific")):
        r, an = req(43, f"0e{code:02x}00")
        assert r.details == {"mei_type": 14, "read_device_id_code": code, "read_device_id": name,
                             "object_id": 0} and an == ()
    assert req(43, "0e0000")[1] == ("invalid_device_id_code",)
    assert req(43, "0e0500")[1] == ("invalid_device_id_code",)
    r, an = req(43, "0e030100")  # an extra byte (QuickDraw data): fields kept, flagged
    assert r.details["object_id"] == 1 and an == (MAL,)


def test_read_device_identification_response_objects():
    # 6.21 example shape: basic stream, 3 objects, plus a private object 0x80 and a reserved one 0x07
    objs = [(0, b"Company"), (1, b"PRODUCT"), (2, b"V2.11"), (0x07, b"r"), (0x80, b"p")]
    body = "".join(f"{i:02x}{len(v):02x}{v.hex()}" for i, v in objs)
    r, an = resp(43, f"0e0101000005{body}")
    assert an == ()
    d = r.details
    assert (d["read_device_id_code"], d["conformity_level"], d["more_follows"], d["next_object_id"]) == (1, 1, False, 0)
    assert [(o["id"], o["name"], o["value"]) for o in d["objects"]] == [
        (0, "vendor_name", "Company"), (1, "product_code", "PRODUCT"), (2, "major_minor_revision", "V2.11"),
        (7, "reserved_7", "r"), (128, "private_128", "p")]
    assert d["device_identification"]["vendor_name"] == "Company"
    assert resp(43, "0e0181ff0203")[0].details["more_follows"] is True
    r, an = resp(43, "0e0101000002000743")  # second object missing, first cut short
    assert an == (MAL,) and r.details["objects"][0]["value"] == "C"
    r, an = resp(43, "0e01")  # truncated header: code kept (tshark shows it too)
    assert r.details == {"mei_type": 14, "read_device_id_code": 1} and an == (MAL,)
    assert resp(43, "0e0101000000ff")[1] == ("byte_count_mismatch",)


def test_canopen_mei_13():
    r, an = req(43, "0d0102")
    assert r.details == {"mei_type": 13, "data_length": 2} and an == ()
    assert resp(43, "0d01")[0].details == {"mei_type": 13, "data_length": 1}
    assert req(43, "")[1] == (MAL,)


# ============================================================================================ vendor and unknown

def test_umas_request_and_response():
    r, an = req(90, "0012")  # session 0, UMAS 0x12 keep alive
    assert r.details["umas"] == {"session": 0, "function_code": 0x12, "function": "keep_alive", "data_length": 0}
    r, an = resp(90, "00fe0102")
    assert r.details["umas"]["function"] == "response_ok" and r.details["umas"]["data_length"] == 2
    assert req(90, "00ee")[0].details["umas"]["function"] == "unknown-238"
    assert req(90, "00")[1] == (MAL,)


@pytest.mark.parametrize("fc", [65, 100, 110, 9, 44, 127])
def test_codes_without_a_parser_keep_their_length(fc):
    r, an = req(fc, "01020304")
    assert r.details == {"data_length": 4} and an == ()
    assert resp(fc, "")[0].details is None


def test_no_pdu_makes_any_parser_raise():
    """Every function code 0..255 (request and response, with and without a request), random bodies of
    0..260 bytes: the parsers always return a record and a tuple of anomaly names."""
    rnd = random.Random(2)
    for fc in range(256):
        for n in (0, 1, 2, 3, 4, 5, 6, 7, 9, 250, 260):
            pdu = bytes(rnd.randrange(256) for _ in range(n))
            r, an = parse_request(fc, pdu, CAP)
            assert isinstance(an, tuple)
            for q in (None, r):
                out, an = parse_response(fc, pdu, q, CAP)
                assert isinstance(an, tuple) and all(isinstance(a, str) for a in an)


# ============================================================================================ probe

def test_probe_edges():
    assert probe(adu(1, 1, 3, "00000001"), True) == 1
    assert probe(adu(1, 1, 3, "00000001")[:7], True) == -1  # need the header
    assert probe(adu(1, 1, 3, "00000001")[:10], True) == -1  # need the whole frame
    assert probe(adu(1, 1, 3, "00000001", pid=1), True) == 0
    assert probe(adu(1, 1, 0, "00000001"), True) == 0  # function code 0 does not exist
    assert probe(adu(1, 1, 0x81, "02"), True) == 1  # an exception from the opener is still Modbus
    assert probe(b"GET / HTTP/1.1\r\n", True) == 0
    assert probe(adu(1, 1, 7, length=255), True) == 0  # beyond 254
    assert probe(adu(1, 1, 7) + b"\x00\x02\x12\x34", True) == 0  # followed by junk


# ======================================================================================= sessions on crafted streams

def run(tmp_path, *convs, config=None, name="t.pcap"):
    frames = [f for c in convs for f in c.frames]
    _, col = analyze([str(write_pcap(tmp_path / name, frames))], config or Config())
    txs = [e for e in col.events if type(e) is ModbusTransaction]
    notices = [e for e in col.events if type(e) is FlowNotice]
    return txs, notices


def conv(**kw):
    return Conversation(**kw).handshake()


def test_mbap_length_2_and_254_are_valid(tmp_path):
    c = conv()
    c.send(True, adu(1, 1, 7))  # length 2: unit + function code only
    c.send(False, adu(1, 1, 7, "6d"))
    c.send(True, adu(2, 1, 65, b"\xaa" * 252))  # length 254: the longest PDU (253 bytes)
    c.send(False, adu(2, 1, 65 | 0x80, "01"))
    txs, notices = run(tmp_path, c.close())
    assert [(t.transaction_id, t.function, t.exception, t.anomalies) for t in txs] == [
        (1, "read_exception_status", None, ()), (2, "user_defined_65", "illegal_function", ())]
    assert txs[1].request.details == {"data_length": 252}
    assert not [n for n in notices if n.action == "protocol_violation"]


def test_mbap_length_255_in_sync_is_framed_and_flagged(tmp_path):
    c = conv()
    c.send(True, adu(1, 1, 3, "00000001"))
    c.send(False, adu(1, 1, 3, "020007"))
    c.send(True, adu(2, 0, 90, b"\x00\x0a" + bytes(251)))  # length 255 (UMAS repeat in the modicon capture)
    c.send(False, adu(2, 0, 90, b"\x00\xfe" + bytes(251)))
    c.send(True, adu(3, 1, 3, "00000001"))
    c.send(False, adu(3, 1, 3, "020008"))
    txs, _ = run(tmp_path, c.close())
    assert [(t.transaction_id, t.function, t.anomalies) for t in txs] == [
        (1, "read_holding_registers", ()),
        (2, "schneider_umas", ("malformed_mbap", "bad_length", "malformed_mbap", "bad_length")),
        (3, "read_holding_registers", ())]
    assert txs[1].request.details["umas"]["function"] == "repeat"


@pytest.mark.parametrize("length,what", [(1, "length 1"), (255, "length 255"), (0, "length 0")])
def test_bad_mbap_length_at_flow_start_is_a_protocol_violation(tmp_path, length, what):
    c = conv()
    c.send(True, adu(1, 1, 7, bytes(max(0, length - 2)), length=length) + bytes(4))
    c.send(True, adu(2, 1, 3, "00000001"))  # a good frame afterwards changes nothing: the flow is handed back
    txs, notices = run(tmp_path, c.close())
    assert txs == []
    v = [n for n in notices if n.action == "protocol_violation"]
    assert len(v) == 1 and what in v[0].details["reason"] and v[0].flow.server_port == 502


def test_bad_protocol_id_at_flow_start_is_a_protocol_violation(tmp_path):
    c = conv()
    c.send(True, b"\x16\x03\x01\x00\x85\x01\x00\x00\x81\x03\x03" + bytes(40))  # a TLS ClientHello on 502
    c.send(False, adu(0x1603, 0, 0x80, "01", pid=0x0100))
    txs, notices = run(tmp_path, c.close())
    assert txs == []
    assert [n.details["reason"] for n in notices if n.action == "protocol_violation"] == [
        "invalid MBAP header (protocol id 0x0100) at the start of the client stream"]


def test_several_pdus_in_one_segment_and_one_pdu_across_segments(tmp_path):
    c = conv()
    c.send(True, adu(1, 1, 3, "00000002") + adu(2, 1, 1, "0000000a") + adu(3, 1, 6, "00050007"))
    c.send_split(False, adu(1, 1, 3, "0400010002"), [1, 1, 1, 1, 1, 1, 1, 1, 1])  # byte by byte
    c.send_split(False, adu(2, 1, 1, "02ff03") + adu(3, 1, 6, "00050007"), [3, 9])  # split mid-header
    txs, notices = run(tmp_path, c.close())
    assert [(t.transaction_id, t.function, t.response.values, t.anomalies) for t in txs] == [
        (1, "read_holding_registers", (1, 2), ()),
        (2, "read_coils", (True,) * 8 + (True, True), ()),
        (3, "write_single_register", (7,), ())]
    assert not notices or all(n.action != "truncated_pdu" for n in notices)


def test_resync_after_garbage_in_a_synchronised_stream(tmp_path):
    c = conv()
    c.send(True, adu(1, 1, 3, "00000001"))
    c.send(False, adu(1, 1, 3, "020001"))
    c.send(True, b"\x01\x02" + adu(2, 1, 3, "00000001"))  # two stray bytes before the next frame
    c.send(False, adu(2, 1, 3, "020002"))
    c.send(True, b"\xde\xad\xbe\xef\x00\x01\x02\x03\x04" + adu(3, 1, 4, "00000001"))
    c.send(False, adu(3, 1, 4, "020003"))
    txs, _ = run(tmp_path, c.close())
    got = [(t.transaction_id, t.function_code, t.anomalies) for t in txs]
    ok = [g for g in got if not g[2]]
    assert [g[0] for g in ok] == [1, 2, 3]
    bad = [t for t in txs if t.anomalies]
    assert len(bad) == 2 and all(t.anomalies[0] == "malformed_mbap" for t in bad)
    assert all("protocol_id" in t.request.details and t.response is None for t in bad)  # from the client


def test_resync_after_a_gap(tmp_path):
    c = conv()
    c.send(True, adu(1, 1, 3, "00000001"))
    c.send(False, adu(1, 1, 3, "020001"))
    frame = adu(2, 1, 16, "000a000204" + "00010002")
    c.send(True, frame[:5])
    c.lose(True, 6)  # the capture lost the middle of the frame
    c.send(True, frame[11:] + adu(3, 1, 3, "00000001"))  # rest of frame 2, then frame 3
    c.ack(False)  # the slave acknowledges everything: the hole is declared
    c.send(False, adu(2, 1, 16, "000a0002"))
    c.send(False, adu(3, 1, 3, "020003"))
    c.send(True, adu(4, 1, 3, "00000001"))
    c.send(False, adu(4, 1, 3, "020004"))
    txs, notices = run(tmp_path, c.close())
    assert [n.details["bytes"] for n in notices if n.action == "tcp_gap"] == [6]
    done = {t.transaction_id: t for t in txs if t.request is not None and t.response is not None}
    assert sorted(done) == [1, 3, 4]
    assert done[3].response.values == (3,)
    # the response to the request that was lost is reported, not invented into a pair
    assert [(t.transaction_id, t.anomalies) for t in txs if t.request is None] == [(2, ("unsolicited_response",))]


def test_duplicate_transaction_id(tmp_path):
    c = conv()
    c.send(True, adu(7, 1, 3, "00000001"))
    c.send(True, adu(7, 1, 4, "00000001"))  # tid 7 again before any answer
    c.send(False, adu(7, 1, 4, "020009"))
    txs, _ = run(tmp_path, c.close())
    assert [(t.transaction_id, t.function_code, t.outcome, t.anomalies) for t in txs] == [
        (7, 3, "unknown", ("unanswered_request", "duplicate_transaction_id")),
        (7, 4, "success", ())]


def test_unsolicited_response_and_function_code_mismatch(tmp_path):
    c = conv()
    c.send(False, adu(9, 1, 3, "020001"))  # nobody asked
    c.send(True, adu(10, 1, 3, "00000001"))
    c.send(False, adu(10, 1, 4, "020001"))  # same tid, other function: not its answer
    c.send(False, adu(10, 1, 3, "020002"))  # the real answer
    txs, _ = run(tmp_path, c.close())
    assert [(t.transaction_id, t.function_code, t.request is None, t.anomalies) for t in txs] == [
        (9, 3, True, ("unsolicited_response",)),
        (10, 4, True, ("function_code_mismatch",)),
        (10, 3, False, ())]
    assert txs[0].ts == txs[0].response_ts  # unsolicited: stamped with the response time


def test_unit_id_mismatch_still_pairs(tmp_path):
    c = conv()
    c.send(True, adu(1, 5, 3, "00000001"))
    c.send(False, adu(1, 6, 3, "020001"))
    txs, _ = run(tmp_path, c.close())
    assert [(t.unit_id, t.anomalies, t.outcome) for t in txs] == [(6, ("unit_id_mismatch",), "failure")]


def test_exception_response_and_exception_in_request(tmp_path):
    c = conv()
    c.send(True, adu(1, 1, 3, "ffff0001"))
    c.send(False, adu(1, 1, 0x83, "02"))
    c.send(True, adu(2, 1, 0x81, "06"))  # the master sends an exception PDU
    c.send(True, adu(3, 1, 3, "00000001"))
    c.send(False, adu(3, 1, 0x83, "0203"))  # exception with an extra byte
    txs, _ = run(tmp_path, c.close())
    t1, t2, t3 = txs
    assert (t1.function_code, t1.exception_code, t1.exception, t1.outcome, t1.anomalies) == (
        3, 2, "illegal_data_address", "failure", ())
    assert (t2.function_code, t2.exception_code, t2.anomalies, t2.response) == (1, 6, ("exception_in_request",), None)
    assert t3.anomalies == (MAL,) and t3.exception_code == 2
    doc = t1.to_doc()
    assert doc["modbus"]["exception_code"] == 2 and doc["modbus"]["exception"] == "illegal_data_address"


def test_unanswered_at_close_and_at_timeout(tmp_path):
    cfg = Config(modbus=ModbusConfig(request_timeout=2))
    c = conv()
    t0 = c.ts
    c.send(True, adu(1, 1, 3, "00000001"))  # never answered: expires after 2 s
    c.send(True, adu(2, 1, 3, "00000001"), ts=t0 + 20_000_000_000)  # 20 s later (sweeps run every 5 s)
    c.send(False, adu(2, 1, 3, "020001"))
    c.send(True, adu(3, 1, 3, "00000001"))  # still pending when the flow closes
    txs, _ = run(tmp_path, c.close(), config=cfg)
    got = {t.transaction_id: t for t in txs}
    assert got[1].outcome == "unknown" and got[1].anomalies == ("unanswered_request",)
    assert txs.index(got[1]) < txs.index(got[2])  # emitted on expiry, before the later exchange
    assert got[3].outcome == "unknown" and got[3].anomalies == ("unanswered_request",)
    assert got[3].to_doc()["event"]["outcome"] == "unknown"


def test_max_pending_bound(tmp_path):
    cfg = Config(modbus=ModbusConfig(max_pending=4))
    c = conv()
    for tid in range(1, 7):
        c.send(True, adu(tid, 1, 3, "00000001"))
    txs, _ = run(tmp_path, c.close(), config=cfg)
    bounded = [t.transaction_id for t in txs if "too_many_pending" in t.anomalies]
    assert bounded == [1, 2]  # the oldest go first, each reported
    assert sorted(t.transaction_id for t in txs) == [1, 2, 3, 4, 5, 6]


def test_values_cap_in_a_session(tmp_path):
    cfg = Config(modbus=ModbusConfig(max_values=8))
    c = conv()
    c.send(True, adu(1, 1, 3, "00000010"))
    c.send(False, adu(1, 1, 3, "20" + "0005" * 16))
    txs, _ = run(tmp_path, c.close(), config=cfg)
    (t,) = txs
    assert t.response.values == (5,) * 8 and t.response.quantity == 16
    assert t.anomalies == ("values_truncated",) and t.outcome == "success"


def test_midstream_pickup_mid_frame(tmp_path):
    c = Conversation()  # no handshake: the capture starts inside a frame
    c.send(True, adu(1, 1, 3, "00000001")[5:] + adu(2, 1, 3, "00000001"))
    c.send(False, adu(2, 1, 3, "020002"))
    txs, notices = run(tmp_path, c)
    assert [(t.transaction_id, t.anomalies) for t in txs] == [(2, ())]
    assert not [n for n in notices if n.action == "protocol_violation"]


def test_midstream_non_modbus_is_a_violation_at_flow_end(tmp_path):
    c = Conversation()
    c.send(True, b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    txs, notices = run(tmp_path, c)
    assert txs == []
    assert [n.details["reason"] for n in notices if n.action == "protocol_violation"] == [
        "no valid MBAP frame (1 invalid header)"]


def test_modbus_on_another_port_is_found_by_content(tmp_path):
    c = conv(server=("10.0.0.2", 5020))
    c.send(True, adu(1, 1, 3, "00000001"))
    c.send(False, adu(1, 1, 3, "020001"))
    txs, _ = run(tmp_path, c.close())
    assert [(t.function, t.flow.server_port, t.anomalies) for t in txs] == [("read_holding_registers", 5020, ())]


def test_document_contract_fields(tmp_path):
    c = conv()
    c.send(True, adu(0x1234, 17, 16, "000a000204000b000c"))
    c.send(False, adu(0x1234, 17, 16, "000a0002"))
    txs, _ = run(tmp_path, c.close())
    doc = txs[0].to_doc()
    assert doc["event"]["kind"] == "event" and doc["event"]["dataset"] == "otids.modbus"
    assert doc["event"]["outcome"] == "success" and doc["network"]["protocol"] == "modbus"
    assert doc["network"]["transport"] == "tcp" and doc["network"]["community_id"].startswith("1:")
    assert (doc["source"]["ip"], doc["source"]["port"], doc["destination"]["port"]) == ("10.0.0.1", 40000, 502)
    assert doc["source"]["mac"] == "02-00-00-00-00-01"
    m = doc["modbus"]
    assert (m["transaction_id"], m["unit_id"], m["function_code"], m["function"]) == (
        0x1234, 17, 16, "write_multiple_registers")
    assert m["request"] == {"address": 10, "quantity": 2, "last_address": 11, "values": [11, 12]}
    assert m["response"] == {"address": 10, "quantity": 2}
    assert "exception_code" not in m and doc["otids"]["anomalies"] == []
    assert doc["@timestamp"].endswith("Z") and len(doc["@timestamp"]) == 27


def test_resync_ignores_header_lookalikes_inside_register_values(tmp_path):
    """After a gap the stream resumes inside a frame whose register values read like an MBAP header
    (tid 5, protocol 0, length 6, unit 1, fc 3): not taken, since what follows that "frame" is no header."""
    c = conv()
    c.send(True, adu(1, 1, 3, "00000001"))
    c.send(False, adu(1, 1, 3, "020001"))
    regs = "0005" "0000" "0006" "0103" "1234" "5678" "9999" "8888"
    frame = adu(2, 1, 16, "00000008" "10" + regs)
    c.lose(True, 13)  # the header, address, quantity and byte count never captured
    c.send(True, frame[13:])
    c.ack(False)
    c.send(False, adu(2, 1, 16, "00000008"))
    c.send(True, adu(3, 1, 4, "00000001"))
    c.send(False, adu(3, 1, 4, "020003"))
    txs, _ = run(tmp_path, c.close())
    assert [(t.transaction_id, t.function_code, t.anomalies) for t in txs] == [
        (1, 3, ()), (2, 16, ("unsolicited_response",)), (3, 4, ())]


def test_last_address_edges(tmp_path):
    """last_address = address + quantity - 1, capped at 65535; FC 23 carries read_last_address for its read
    half; the rules fast path gives what the document holds."""
    from ids.detect.rules.compile import MISSING
    from ids.detect.rules.fastpath import MODBUS
    c = conv()
    c.send(True, adu(1, 1, 3, "ffff0001"))            # largest start address, one register
    c.send(False, adu(1, 1, 3, "020001"))
    c.send(True, adu(2, 1, 3, "fff00020"))            # block running past 65535: capped, anomaly elsewhere
    c.send(False, adu(2, 1, 3, "40" + "0000" * 32))
    c.send(True, adu(3, 1, 6, "00140037"))            # FC 6: one register
    c.send(False, adu(3, 1, 6, "00140037"))
    c.send(True, adu(4, 1, 23, "0064000a001e000104002a"))  # FC 23: read 100+10, write 30+1
    c.send(False, adu(4, 1, 23, "14" + "0000" * 10))
    txs, _ = run(tmp_path, c.close())
    got = []
    for t in txs:
        r = t.to_doc()["modbus"]["request"]
        got.append((r.get("last_address"), r.get("read_last_address")))
        fast = tuple(MODBUS[f](t) for f in ("modbus.request.last_address", "modbus.request.read_last_address"))
        assert fast == tuple(MISSING if x is None else x for x in got[-1])
    assert got == [(65535, None), (65535, None), (20, None), (30, 109)]
