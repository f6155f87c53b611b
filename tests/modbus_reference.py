"""Readers for other tools' view of Modbus traffic, and our own events flattened the same way, so
tests/test_modbus_corpus.py can compare message by message.

A *message* is one Modbus/TCP ADU: (ts, source endpoint, transaction id, unit id, function code without
the 0x80 bit, exception code or None). Our transactions (request + response) split into their messages.
"""
from __future__ import annotations

import json
import subprocess
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from ids.protocols.modbus.messages import ModbusTransaction
from ids.pipeline import analyze


class Msg(NamedTuple):
    ts: int
    src: tuple  # (ip, port)
    tid: int
    unit: int
    fc: int  # without the exception bit
    exc: int | None
    role: str  # "REQ" (from the client) or "RESP" (from the server)
    fields: dict  # address / quantity / values / ... as far as the tool says
    ref: object  # our ModbusTransaction, or tshark's frame number

    @property
    def key(self) -> tuple:
        return (self.ts, self.src, self.tid, self.unit, self.fc, self.exc)


# ---------------------------------------------------------------------------------------------- ours

def _mbap_event(e: ModbusTransaction) -> bool:
    """A broken frame reported in sync (header values in details): no message any tool decodes."""
    part = e.request if e.request is not None else e.response
    return part is not None and bool(part.details) and "protocol_id" in part.details


def _fields(part) -> dict:
    if part is None:
        return {}
    d = {k: getattr(part, k) for k in ("address", "quantity", "sub_function") if getattr(part, k) is not None}
    if part.values is not None:
        d["values"] = list(part.values)
    if part.details:
        d.update(part.details)
    return d


@lru_cache(maxsize=None)
def ours(path: str):
    """(messages, events, run) for one capture through the whole pipeline."""
    run, col = analyze([path])
    msgs: list[Msg] = []
    for e in col.events:
        if type(e) is not ModbusTransaction or _mbap_event(e):
            continue
        c = e.flow
        cli, srv = (c.client_ip, c.client_port), (c.server_ip, c.server_port)
        if "exception_in_request" in e.anomalies:  # an exception PDU sent by the client
            msgs.append(Msg(e.ts, cli, e.transaction_id, e.unit_id, e.function_code, e.exception_code, "REQ",
                            {}, e))
            continue
        if e.request is not None:
            msgs.append(Msg(e.ts, cli, e.transaction_id, e.unit_id, e.function_code, None, "REQ",
                            _fields(e.request), e))
        if e.response is not None or e.exception_code is not None:
            msgs.append(Msg(e.response_ts, srv, e.transaction_id, e.unit_id, e.function_code, e.exception_code,
                            "RESP", _fields(e.response), e))
    return msgs, col.events, run


# ---------------------------------------------------------------------------------------------- tshark

def _ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _walk(node, out: dict) -> None:
    """Flatten a tshark JSON layer: field name -> list of values in document order."""
    for k, v in node.items():
        if isinstance(v, dict):
            _walk(v, out)
        elif isinstance(v, list):
            for x in v:
                if isinstance(x, dict):
                    _walk(x, out)
                else:
                    out.setdefault(k, []).append(x)
        else:
            out.setdefault(k, []).append(v)


def _hexbytes(s: str) -> bytes:
    return bytes.fromhex(s.replace(":", "")) if s else b""


def _regs(raw: bytes) -> list:
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw) - 1, 2)]


def _file_groups(body: dict, fc: int, role: str) -> list:
    """tshark's "Group N" subtrees of FC 20/21 in our file_records terms."""
    out = []
    for k, g in body.items():
        if not k.startswith("Group "):
            continue
        rec = {"reference_type": int(g["modbus.reference_type"])}
        if "modbus.reference_num_32" in g:  # file number << 16 | record number
            ref = int(g["modbus.reference_num_32"])
            rec.update(file_number=ref >> 16, record_number=ref & 0xFFFF, record_length=int(g["modbus.word_cnt"]))
        if "modbus.data" in g:
            rec["values"] = _regs(_hexbytes(g["modbus.data"]))
        out.append(rec)
    return out


def _tshark_fields(fc: int, role: str, f: dict, body: dict) -> dict:
    """tshark's modbus.* fields in our terms (address, quantity, values, ...), only those it gives."""
    one = lambda k: int(f[k][0], 0) if k in f else None  # noqa: E731
    d: dict = {}
    if fc in (20, 21):
        return {"file_records": _file_groups(body, fc, role)}
    if fc == 23 and role == "REQ":
        d.update(address=one("modbus.write_reference_num"), quantity=one("modbus.write_word_cnt"),
                 read_address=one("modbus.read_reference_num"), read_quantity=one("modbus.read_word_cnt"))
        if "modbus.data" in f:
            d["values"] = _regs(_hexbytes(f["modbus.data"][0]))
    elif fc in (23, 24) and role == "RESP":
        if "modbus.data" in f:
            d["values"] = _regs(_hexbytes(f["modbus.data"][0]))
        if fc == 24:
            d["quantity"] = one("modbus.word_cnt")
    else:
        if "modbus.reference_num" in f:
            d["address"] = one("modbus.reference_num")
        q = one("modbus.bit_cnt") if "modbus.bit_cnt" in f else one("modbus.word_cnt")
        if q is not None and not (role == "RESP" and fc in (1, 2, 3, 4)):
            d["quantity"] = q
        if "modbus.regval_uint16" in f:
            d["values"] = [int(x) for x in f["modbus.regval_uint16"]]
        elif "modbus.bitval" in f:
            d["values"] = [x == "1" for x in f["modbus.bitval"]]
        elif fc == 5 and "modbus.data" in f:
            v = int.from_bytes(_hexbytes(f["modbus.data"][0]), "big")
            d["values"] = [{0xFF00: True, 0: False}.get(v, v)]
        elif fc == 6 and "modbus.data" in f:
            d["values"] = [int.from_bytes(_hexbytes(f["modbus.data"][0]), "big")]
        elif fc == 15 and role == "REQ" and "modbus.data" in f and q is not None:
            raw = _hexbytes(f["modbus.data"][0])
            d["values"] = [bool(raw[i >> 3] >> (i & 7) & 1) for i in range(min(q, 8 * len(raw)))]
    if fc == 8 and "modbus.diagnostic_code" in f:
        d["sub_function"] = one("modbus.diagnostic_code")
    if fc == 22:
        d.update(and_mask=one("modbus.and_mask"), or_mask=one("modbus.or_mask"))
    if fc == 43:
        d["mei_type"] = one("modbus.mei")
        if "modbus.read_device_id" in f:
            d["read_device_id_code"] = one("modbus.read_device_id")
        if role == "REQ" and "modbus.object_id" in f:
            d["object_id"] = one("modbus.object_id")
        if role == "RESP" and "modbus.object_str_value" in f:
            d["objects"] = list(zip((int(x) for x in f.get("modbus.object_id", [])),
                                    f["modbus.object_str_value"]))
    return {k: v for k, v in d.items() if v is not None}


@lru_cache(maxsize=None)
def tshark(path: str, tshark_exe: str = "tshark", extra: tuple = (), server_ports: tuple = (502,)) -> list[Msg]:
    """Every Modbus/TCP ADU tshark dissects (default preferences: port 502; `extra` e.g. decode-as options),
    one Msg each; messages to a server port are requests.

    JSON rather than `-T fields`: a frame may carry several ADUs, and `-T fields` neither says which
    exception code belongs to which ADU nor shows the exception bit (modbus.func_code is masked to 7 bits).
    """
    out = subprocess.run([tshark_exe, "-r", path, *extra, "-Y", "mbtcp", "-T", "json", "--no-duplicate-keys",
                          "-J", "frame ip ipv6 tcp mbtcp modbus"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    msgs: list[Msg] = []
    for pkt in json.loads(out):
        lay = pkt["_source"]["layers"]
        frame = lay["frame"]
        ts = _ns(frame["frame.time_epoch"])
        ip = lay.get("ip") or lay.get("ipv6")
        src = (ip.get("ip.src") or ip.get("ipv6.src"), int(lay["tcp"]["tcp.srcport"]))
        dport = int(lay["tcp"]["tcp.dstport"])
        heads = lay.get("mbtcp", [])
        heads = heads if isinstance(heads, list) else [heads]
        bodies = lay.get("modbus", [])
        bodies = bodies if isinstance(bodies, list) else [bodies]
        for i, h in enumerate(heads):
            f: dict = {}
            if i < len(bodies):
                _walk(bodies[i], f)
            fc = int(f["modbus.func_code"][0]) if "modbus.func_code" in f else None
            exc = int(f["modbus.exception_code"][0]) if "modbus.exception_code" in f else None
            role = "REQ" if dport in server_ports else "RESP"
            msgs.append(Msg(ts, src, int(h["mbtcp.trans_id"]), int(h["mbtcp.unit_id"]), fc, exc, role,
                            _tshark_fields(fc, role, f, bodies[i]) if fc is not None and exc is None else {},
                            int(frame["frame.number"])))
    return msgs


# ---------------------------------------------------------------------------------------------- matching

class Comparison(NamedTuple):
    matched: list  # (ours, theirs) pairs with equal keys
    moved: list  # (ours, theirs): the same message, at another time
    only_ours: list
    only_theirs: list


def match(ours_: list[Msg], theirs: list[Msg]) -> Comparison:
    """Pair messages with equal keys (ts, source, tid, unit, fc, exception), in order of appearance;
    then pair what is left ignoring the timestamp (same message, delivered at another time)."""
    def pair(a: list, b: list, key):
        pool: dict = {}
        for m in b:
            pool.setdefault(key(m), []).append(m)
        pairs, rest_a = [], []
        for m in a:
            cands = pool.get(key(m))
            if cands:
                pairs.append((m, cands.pop(0)))
            else:
                rest_a.append(m)
        rest_b = [m for ms in pool.values() for m in ms]
        return pairs, rest_a, sorted(rest_b, key=lambda m: m.ts)

    matched, ra, rb = pair(ours_, theirs, lambda m: m.key)
    moved, ra, rb = pair(ra, rb, lambda m: m.key[1:])
    return Comparison(matched, moved, ra, rb)


def field_mismatches(pairs: list, cap: int = 125) -> list:
    """(ours, theirs, field, our value, their value) for every field the other tool gives that differs.
    Values beyond our cap are compared up to the cap (the rest is flagged values_truncated)."""
    out = []
    for o, t in pairs:
        for k, tv in t.fields.items():
            ov = o.fields.get(k)
            if k == "values" and ov is not None and len(tv) > cap:
                tv = tv[:cap]
            if k == "objects" and ov is not None:
                ov = [(x["id"], x["value"]) for x in ov]
            if k == "file_records" and ov is not None:  # only the keys tshark gives
                ov = [{kk: r.get(kk) for kk in t_r} for r, t_r in zip(ov, tv)] + ov[len(tv):]
            if ov != tv:
                out.append((o, t, k, ov, tv))
    return out


def counts(c: Comparison) -> Counter:
    return Counter(matched=len(c.matched), moved=len(c.moved), only_ours=len(c.only_ours),
                   only_theirs=len(c.only_theirs))


def rel(path: Path, corpus: Path) -> str:
    return str(path.relative_to(corpus))


# ---------------------------------------------------------------------------------------------- Zeek

#: Zeek's function names (scripts/base/protocols/modbus/consts.zeek, old and new) -> function code, and
#: the name we give the same code (MB Application Protocol v1.1b3 wording: "slave" became "server").
ZEEK_FUNCTIONS = {
    "READ_COILS": (1, "read_coils"), "READ_DISCRETE_INPUTS": (2, "read_discrete_inputs"),
    "READ_HOLDING_REGISTERS": (3, "read_holding_registers"), "READ_INPUT_REGISTERS": (4, "read_input_registers"),
    "WRITE_SINGLE_COIL": (5, "write_single_coil"), "WRITE_SINGLE_REGISTER": (6, "write_single_register"),
    "READ_EXCEPTION_STATUS": (7, "read_exception_status"), "DIAGNOSTICS": (8, "diagnostics"),
    "GET_COMM_EVENT_COUNTER": (11, "get_comm_event_counter"), "GET_COMM_EVENT_LOG": (12, "get_comm_event_log"),
    "WRITE_MULTIPLE_COILS": (15, "write_multiple_coils"), "WRITE_MULTIPLE_REGISTERS": (16, "write_multiple_registers"),
    "REPORT_SLAVE_ID": (17, "report_server_id"), "READ_FILE_RECORD": (20, "read_file_record"),
    "WRITE_FILE_RECORD": (21, "write_file_record"), "MASK_WRITE_REGISTER": (22, "mask_write_register"),
    "READ_WRITE_MULTIPLE_REGISTERS": (23, "read_write_multiple_registers"), "READ_FIFO_QUEUE": (24, "read_fifo_queue"),
    # Zeek does not look at the MEI type; we name MEI 14 / 13 (6.19-6.21)
    "ENCAP_INTERFACE_TRANSPORT": (43, ("encapsulated_interface_transport", "read_device_identification",
                                       "canopen_general_reference")),
    # legacy Modicon codes: reserved in v1.1b3 Annex A; 90 is Schneider's UMAS
    "PROGRAM_484": (9, "reserved_9"), "POLL_484": (10, "reserved_10"), "PROGRAM_584_984": (13, "reserved_13"),
    "POLL_584_984": (14, "reserved_14"), "PROGRAM_884_U84": (18, "unknown-18"),
    "RESET_COMM_LINK_884_U84": (19, "unknown-19"), "PROGRAM_CONCEPT": (40, "unknown-40"),
    "MULTIPLE_FUNCTION_CODES": (41, "reserved_41"), "PROGRAM_UNITY": (90, "schneider_umas"),
    "OBJECT_MESSAGING": (91, "reserved_91"), "FIRMWARE_REPLACEMENT": (125, "reserved_125"),
    "PROGRAM_584_984_2": (126, "reserved_126"), "REPORT_LOCAL_ADDRESS": (127, "reserved_127"),
}
ZEEK_EXCEPTIONS = {"ILLEGAL_FUNCTION": 1, "ILLEGAL_DATA_ADDRESS": 2, "ILLEGAL_DATA_VALUE": 3,
                   "SLAVE_DEVICE_FAILURE": 4, "ACKNOWLEDGE": 5, "SLAVE_DEVICE_BUSY": 6, "MEMORY_PARITY_ERROR": 8,
                   "GATEWAY_PATH_UNAVAILABLE": 10, "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND": 11}


def zeek_function(name: str) -> tuple[int, bool]:
    """Zeek func column -> (function code without the exception bit, exception bit set)."""
    if name.startswith("unknown-"):
        code = int(name[8:])
        return code & 0x7F, bool(code & 0x80)
    exc = name.endswith("_EXCEPTION")
    return ZEEK_FUNCTIONS[name[:-10] if exc else name][0], exc


def our_name_ok(zeek_name: str, ours_: str) -> bool:
    """Does our function name stand for what Zeek names? (unknown-N: ours is unknown-N or a class name)."""
    base = zeek_name[:-10] if zeek_name.endswith("_EXCEPTION") else zeek_name
    if base.startswith("unknown-"):
        n = int(base[8:]) & 0x7F
        return ours_ in (f"unknown-{n}", f"user_defined_{n}", f"reserved_{n}")
    want = ZEEK_FUNCTIONS[base][1]
    return ours_ in want if isinstance(want, tuple) else ours_ == want


def zeek_exception(name: str) -> int | None:
    if name == "-":
        return None
    return int(name[8:]) if name.startswith("unknown-") else ZEEK_EXCEPTIONS[name]


def zeek_log(path: Path, fields: list[str] | None = None) -> list[dict]:
    """Rows of a Zeek TSV log as dicts. `fields` for baselines whose header was cut away."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                fields = line.split("\t")[1:]
            if not line or line.startswith("#"):
                continue
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows
