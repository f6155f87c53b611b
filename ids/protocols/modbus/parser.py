"""Modbus PDU parsers: pure functions from PDU bytes (after the function code) to typed request and
response records plus a tuple of anomaly names. They never raise on bad input: a PDU that does not fit
the specification still yields what could be read, with the anomaly that says why.

MBAP framing, pairing and state live in session.py.
"""
from __future__ import annotations

import struct
from itertools import chain

from .messages import ModbusRequest, ModbusResponse
from .consts import (DEVICE_ID_CODES, DEVICE_ID_OBJECTS, MAX_READ_BITS, MAX_READ_REGISTERS,
                     MAX_RW_WRITE_REGISTERS, MAX_WRITE_COILS, MAX_WRITE_REGISTERS, UMAS_FUNCTIONS,
                     diagnostic_name)

_HH = struct.Struct(">HH").unpack_from
_HHB = struct.Struct(">HHB").unpack_from
_HHHHB = struct.Struct(">HHHHB").unpack_from
_HHH = struct.Struct(">HHH").unpack_from
_H = struct.Struct(">H").unpack_from
_chain = chain.from_iterable

#: byte -> its 8 bits, least significant first (coil order, section 6.1)
_BITS = [tuple(bool(b >> i & 1) for i in range(8)) for b in range(256)]

MALFORMED = "malformed_pdu"
try:
    import cython  # compiled: the record builder below is cimported (parser.pxd)
except ImportError:
    from ... import _cy as cython
if not cython.compiled:
    from ..._records import new_record


def _req(address=None, quantity=None, values=None, sub_function=None, details=None) -> ModbusRequest:
    """ModbusRequest(...) without the NamedTuple's generated __new__ (Python code, even when this module
    is compiled): one record per request on the hot path."""
    return new_record(ModbusRequest, (address, quantity, values, sub_function, details))


def _resp(address=None, quantity=None, values=None, sub_function=None, details=None) -> ModbusResponse:
    """ModbusResponse(...), as _req."""
    return new_record(ModbusResponse, (address, quantity, values, sub_function, details))


@cython.locals(b=cython.p_uchar, i=cython.Py_ssize_t, k=cython.Py_ssize_t, o=cython.Py_ssize_t)
def _regs(buf: bytes, off: int, n: int, cap: int) -> tuple:
    if n > cap:
        n = cap
    if cython.compiled and type(buf) is bytes and n >= 0 and off >= 0 and off + 2 * n <= len(buf):
        # Compiled: the big-endian words read from the bytes (no format string built per call); the same
        # values as struct's. Anything else (short buffer, odd arguments) goes to struct as before.
        b, k, o = buf, n, off
        return tuple([b[o + 2 * i] << 8 | b[o + 2 * i + 1] for i in range(k)])
    return struct.unpack_from(f">{n}H", buf, off)


@cython.locals(r=cython.p_uchar, i=cython.Py_ssize_t, k=cython.Py_ssize_t)
def _coils(buf: bytes, off: int, nbytes: int, count: int, cap: int) -> tuple:
    """The first min(count, cap) bits of `nbytes` bytes at `off`; only the bytes needed are expanded."""
    n = min(count, cap)
    raw = buf[off:off + min(nbytes, (n + 7) >> 3)]
    if cython.compiled and type(raw) is bytes and n >= 0:
        # Compiled: each bit read from the bytes, least significant first, as _BITS lists them
        r, k = raw, min(n, 8 * len(raw))
        return tuple([(r[i >> 3] >> (i & 7)) & 1 == 1 for i in range(k)])
    return tuple(_chain(map(_BITS.__getitem__, raw)))[:n]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _words(pdu: bytes, n: int) -> tuple:
    """The first `n` 16-bit words of a PDU that may be short: what is missing is None."""
    k = min(n, len(pdu) >> 1)
    return struct.unpack_from(f">{k}H", pdu) + (None,) * (n - k)


# ---------------------------------------------------------------------------------------------- requests

def parse_request(fc: int, pdu: bytes, cap: int) -> tuple[ModbusRequest, tuple]:
    fn = _REQUEST.get(fc)
    if fn is None:
        return _req(details={"data_length": len(pdu)} if pdu else None), ()
    return fn(pdu, cap)


def _req_read(limit):
    def parse(pdu, cap):
        if len(pdu) == 4:
            addr, qty = _HH(pdu)
            return _req(addr, qty), (() if 1 <= qty <= limit else ("quantity_out_of_range",))
        addr, qty = _words(pdu, 2)
        an = (MALFORMED,) if qty is None or 1 <= qty <= limit else (MALFORMED, "quantity_out_of_range")
        return _req(addr, qty), an
    return parse


def _req_write_coil(pdu, cap):
    addr, val = _HH(pdu) if len(pdu) == 4 else _words(pdu, 2)
    an = () if len(pdu) == 4 else (MALFORMED,)
    if val is None:
        return _req(addr), an
    if val == 0xFF00:
        return _req(addr, 1, (True,)), an
    if val == 0:
        return _req(addr, 1, (False,)), an
    return _req(addr, 1, (val,)), an + ("invalid_coil_value",)


def _req_write_register(pdu, cap):
    addr, val = _HH(pdu) if len(pdu) == 4 else _words(pdu, 2)
    an = () if len(pdu) == 4 else (MALFORMED,)
    return _req(addr, None if val is None else 1, None if val is None else (val,)), an


def _req_empty(pdu, cap):
    return _req(), (() if not pdu else (MALFORMED,))


def _req_diagnostics(pdu, cap):
    # Sub-function (2 bytes) and data of N x 2 bytes (6.8); an odd length is malformed but still named.
    if len(pdu) < 2:
        return _req(), (MALFORMED,)
    sub = _H(pdu)[0]
    n = (len(pdu) - 2) // 2
    an = () if not len(pdu) & 1 else (MALFORMED,)
    if n > cap:
        an += ("values_truncated",)
    return _req(sub_function=sub, values=_regs(pdu, 2, n, cap),
                         details={"sub_function_name": diagnostic_name(sub)}), an


def _req_write_coils(pdu, cap):
    if len(pdu) < 5:
        addr, qty = _words(pdu, 2)
        return _req(addr, qty), (MALFORMED,)
    addr, qty, nb = _HHB(pdu)
    an = ()
    if nb != (qty + 7) // 8 or len(pdu) != 5 + nb:
        an = ("byte_count_mismatch",)
    if not 1 <= qty <= MAX_WRITE_COILS:
        an += ("quantity_out_of_range",)
    vals = _coils(pdu, 5, min(nb, len(pdu) - 5), qty, cap)
    if qty > cap:
        an += ("values_truncated",)
    return _req(addr, qty, vals), an


def _req_write_registers(pdu, cap):
    if len(pdu) < 5:
        addr, qty = _words(pdu, 2)
        return _req(addr, qty), (MALFORMED,)
    addr, qty, nb = _HHB(pdu)
    an = ()
    if nb != 2 * qty or len(pdu) != 5 + nb:
        an = ("byte_count_mismatch",)
    if not 1 <= qty <= MAX_WRITE_REGISTERS:
        an += ("quantity_out_of_range",)
    n = min(qty, (len(pdu) - 5) // 2)
    vals = _regs(pdu, 5, n, cap)
    if n > cap:
        an += ("values_truncated",)
    return _req(addr, qty, vals), an


def _req_mask_write(pdu, cap):
    if len(pdu) == 6:
        addr, and_m, or_m = _HHH(pdu)
        return _req(addr, 1, details={"and_mask": and_m, "or_mask": or_m}), ()
    addr, and_m, or_m = _words(pdu, 3)
    det = {k: v for k, v in (("and_mask", and_m), ("or_mask", or_m)) if v is not None}
    return _req(addr, None if addr is None else 1, details=det or None), (MALFORMED,)


def _req_read_write(pdu, cap):
    if len(pdu) < 9:
        raddr, rqty, waddr, wqty = _words(pdu, 4)
        det = {k: v for k, v in (("read_address", raddr), ("read_quantity", rqty)) if v is not None}
        return _req(waddr, wqty, details=det or None), (MALFORMED,)
    raddr, rqty, waddr, wqty, nb = _HHHHB(pdu)
    an = ()
    if nb != 2 * wqty or len(pdu) != 9 + nb:
        an = ("byte_count_mismatch",)
    if not (1 <= rqty <= MAX_READ_REGISTERS and 1 <= wqty <= MAX_RW_WRITE_REGISTERS):
        an += ("quantity_out_of_range",)
    n = min(wqty, (len(pdu) - 9) // 2)
    vals = _regs(pdu, 9, n, cap)
    if n > cap:
        an += ("values_truncated",)
    # address/quantity describe the write; the read half is in details (docs/EVENTS.md)
    return _req(waddr, wqty, vals, details={"read_address": raddr, "read_quantity": rqty}), an


def _req_fifo(pdu, cap):
    return _req(address=_words(pdu, 1)[0]), (() if len(pdu) == 2 else (MALFORMED,))


def _file_records(pdu: bytes, write: bool, cap: int) -> tuple[list, tuple]:
    """Sub-requests of FC 20 (6.14: byte count 7..245; reference type 6, file number, record number
    0..9999, record length) and FC 21 (6.15: byte count 9..251; the same plus the record data)."""
    if not pdu:
        return [], (MALFORMED,)
    nb = pdu[0]
    end = min(1 + nb, len(pdu))
    an = [] if len(pdu) == 1 + nb else ["byte_count_mismatch"]
    if not ((9 if write else 7) <= nb <= (251 if write else 245)):
        an.append(MALFORMED)
    recs, off = [], 1
    while off + 7 <= end:
        ref = pdu[off]
        fnum, rnum, rlen = _HHH(pdu, off + 1)
        rec = {"reference_type": ref, "file_number": fnum, "record_number": rnum, "record_length": rlen}
        off += 7
        if write:
            k = min(rlen, (end - off) // 2)
            rec["values"] = list(_regs(pdu, off, k, cap))
            if k > cap:
                an.append("values_truncated")
            off += 2 * rlen
        if ref != 6 or rnum > 9999:
            an.append(MALFORMED)
        recs.append(rec)
    if off != 1 + nb:
        an.append(MALFORMED)
    return recs, tuple(dict.fromkeys(an))


def _req_file(write):
    def parse(pdu, cap):
        recs, an = _file_records(pdu, write, cap)
        return _req(details={"file_records": recs}), an
    return parse


def _req_mei(pdu, cap):
    if not pdu:
        return _req(), (MALFORMED,)
    mei = pdu[0]
    if mei == 14:  # Read Device Identification (6.21): read device id code, object id
        det: dict = {"mei_type": 14}
        an = () if len(pdu) == 3 else (MALFORMED,)
        if len(pdu) > 1:
            code = pdu[1]
            det["read_device_id_code"] = code
            det["read_device_id"] = DEVICE_ID_CODES.get(code, f"unknown-{code}")
            if not 1 <= code <= 4:
                an += ("invalid_device_id_code",)
        if len(pdu) > 2:
            det["object_id"] = pdu[2]
        return _req(details=det), an
    return _req(details={"mei_type": mei, "data_length": len(pdu) - 1}), ()


def _req_umas(pdu, cap):
    if len(pdu) < 2:
        return _req(), (MALFORMED,)
    code = pdu[1]
    return _req(details={"umas": {"session": pdu[0], "function_code": code,
                                           "function": UMAS_FUNCTIONS.get(code, f"unknown-{code}"),
                                           "data_length": len(pdu) - 2}}), ()


_REQUEST = {
    1: _req_read(MAX_READ_BITS), 2: _req_read(MAX_READ_BITS),
    3: _req_read(MAX_READ_REGISTERS), 4: _req_read(MAX_READ_REGISTERS),
    5: _req_write_coil, 6: _req_write_register, 7: _req_empty, 8: _req_diagnostics,
    11: _req_empty, 12: _req_empty, 15: _req_write_coils, 16: _req_write_registers, 17: _req_empty,
    20: _req_file(False), 21: _req_file(True), 22: _req_mask_write, 23: _req_read_write, 24: _req_fifo,
    43: _req_mei, 90: _req_umas,
}


# ---------------------------------------------------------------------------------------------- responses

def parse_response(fc: int, pdu: bytes, req: ModbusRequest | None, cap: int) -> tuple[ModbusResponse, tuple]:
    fn = _RESPONSE.get(fc)
    if fn is None:
        return _resp(details={"data_length": len(pdu)} if pdu else None), ()
    return fn(pdu, req, cap)


def _resp_bits(pdu, req, cap):
    if not pdu:
        return _resp(), (MALFORMED,)
    nb = pdu[0]
    an = () if len(pdu) == 1 + nb else ("byte_count_mismatch",)
    count = req.quantity if req is not None and req.quantity else nb * 8
    if req is not None and req.quantity and nb != (req.quantity + 7) // 8:
        an += ("byte_count_mismatch",) if not an else ()
    vals = _coils(pdu, 1, min(nb, len(pdu) - 1), count, cap)
    if count > cap:
        an += ("values_truncated",)
    return _resp(quantity=count, values=vals), an


def _resp_regs(pdu, req, cap):
    if not pdu:
        return _resp(), (MALFORMED,)
    nb = pdu[0]
    an = () if len(pdu) == 1 + nb and not nb & 1 else ("byte_count_mismatch",)
    if req is not None and not an:
        q = req.details["read_quantity"] if req.details and "read_quantity" in req.details else req.quantity
        if q is not None and nb != 2 * q:
            an = ("byte_count_mismatch",)
    n = min(nb, len(pdu) - 1) // 2
    if n > cap:
        an += ("values_truncated",)
    return _resp(quantity=n, values=_regs(pdu, 1, n, cap)), an


def _resp_echo_coil(pdu, req, cap):
    r, an = _req_write_coil(pdu, cap)
    return _resp(r.address, r.quantity, r.values), an + _echo_check(r, req)


def _resp_echo_register(pdu, req, cap):
    r, an = _req_write_register(pdu, cap)
    return _resp(r.address, r.quantity, r.values), an + _echo_check(r, req)


def _echo_check(r, req) -> tuple:
    if req is not None and req.address is not None and (r.address, r.values) != (req.address, req.values):
        return ("response_mismatch",)
    return ()


def _resp_write_multiple(pdu, req, cap):
    addr, qty = _HH(pdu) if len(pdu) == 4 else _words(pdu, 2)
    if len(pdu) != 4:
        return _resp(addr, qty), (MALFORMED,)
    an = ()
    if req is not None and req.address is not None and (addr, qty) != (req.address, req.quantity):
        an = ("response_mismatch",)
    return _resp(addr, qty), an


def _resp_exception_status(pdu, req, cap):
    return _resp(values=(pdu[0],) if pdu else None), (() if len(pdu) == 1 else (MALFORMED,))


def _resp_diagnostics(pdu, req, cap):
    r, an = _req_diagnostics(pdu, cap)
    out = _resp(sub_function=r.sub_function, values=r.values, details=r.details)
    if req is not None and req.sub_function is not None and r.sub_function != req.sub_function:
        an += ("response_mismatch",)
    return out, an


def _resp_event_counter(pdu, req, cap):
    status, count = _words(pdu, 2)
    det = {k: v for k, v in (("status", status), ("event_count", count)) if v is not None}
    return _resp(details=det or None), (() if len(pdu) == 4 else (MALFORMED,))


def _resp_event_log(pdu, req, cap):
    if len(pdu) < 7:
        return _resp(), (MALFORMED,)
    nb = pdu[0]
    status, evc, msgc = _HHH(pdu, 1)
    ev = list(pdu[7:1 + nb][:64])
    return _resp(details={"status": status, "event_count": evc, "message_count": msgc,
                                   "events": ev}), (() if len(pdu) == 1 + nb else ("byte_count_mismatch",))


def _resp_server_id(pdu, req, cap):
    if not pdu:
        return _resp(), (MALFORMED,)
    nb = pdu[0]
    data = pdu[1:1 + nb]
    sid, run, extra = server_id_parts(data)
    det = {"server_id": sid.hex(), "server_id_text": _printable(sid)}
    if run is not None:
        det["run_indicator"] = run
    if extra:
        det["additional_data"] = extra.hex()
        det["additional_data_text"] = _printable(extra)
    return _resp(details=det), (() if len(pdu) == 1 + nb else ("byte_count_mismatch",))


def server_id_parts(data: bytes) -> tuple[bytes, bool | None, bytes]:
    """FC 17 payload -> (server id, run indicator ON/OFF or None, additional data).

    The spec (6.13) orders it server id (device specific length), run indicator status (0x00 OFF, 0xFF ON),
    additional data (device specific), so the split is a guess; two layouts are common in practice:
    - a one-byte id, the run indicator, then text: libmodbus and Wingpath (`00 ff "Wingpath Limited"`), taken
      when the second byte is 0x00 or 0xFF;
    - an id string with the run indicator last and no additional data: pymodbus (`"Zeek ... 1.2.3.6" ff`),
      taken when the last byte is 0x00 or 0xFF.
    Anything else is all server id, with no run indicator. Both layouts agree on two-byte payloads."""
    n = len(data)
    if n >= 2 and data[1] in (0, 0xFF):
        return data[:1], data[1] == 0xFF, data[2:]
    if n >= 2 and data[-1] in (0, 0xFF):
        return data[:-1], data[-1] == 0xFF, b""
    return data, None, b""


def _printable(raw: bytes) -> str:
    return "".join(chr(c) if 32 <= c < 127 else "." for c in raw)


def _resp_file(write):
    def parse(pdu, req, cap):
        if write:  # an echo of the request (6.15)
            recs, an = _file_records(pdu, True, cap)
            return _resp(details={"file_records": recs}), an
        # 6.14: response data length 7..245, then per sub-request: file response length (1 + 2N),
        # reference type 6, N registers.
        if not pdu:
            return _resp(), (MALFORMED,)
        nb = pdu[0]
        end = min(1 + nb, len(pdu))
        an = [] if len(pdu) == 1 + nb else ["byte_count_mismatch"]
        if not 7 <= nb <= 245:
            an.append(MALFORMED)
        off, recs = 1, []
        while off + 2 <= end:
            flen, ref = pdu[off], pdu[off + 1]
            if flen == 0 or not flen & 1 or ref != 6:
                an.append(MALFORMED)
            k = min((flen - 1) // 2 if flen else 0, (end - off - 2) // 2)
            recs.append({"reference_type": ref, "values": list(_regs(pdu, off + 2, k, cap))})
            if k > cap:
                an.append("values_truncated")
            if flen == 0:
                break
            off += 1 + flen
        if off != 1 + nb:
            an.append(MALFORMED)
        return _resp(details={"file_records": recs}), tuple(dict.fromkeys(an))
    return parse


def _resp_mask_write(pdu, req, cap):
    r, an = _req_mask_write(pdu, cap)
    if req is not None and req.details and r.details and (r.address, r.details) != (req.address, req.details):
        an += ("response_mismatch",)
    return _resp(r.address, r.quantity, details=r.details), an


def _resp_fifo(pdu, req, cap):
    if len(pdu) < 4:
        return _resp(quantity=_words(pdu, 2)[1]), (MALFORMED,)
    nb, cnt = _HH(pdu)
    an = () if len(pdu) == 2 + nb and nb == 2 + 2 * cnt and cnt <= 31 else ("byte_count_mismatch",)
    n = min(cnt, (len(pdu) - 4) // 2)
    return _resp(quantity=cnt, values=_regs(pdu, 4, n, cap)), an


def _resp_mei(pdu, req, cap):
    if not pdu:
        return _resp(), (MALFORMED,)
    mei = pdu[0]
    if mei != 14:
        return _resp(details={"mei_type": mei, "data_length": len(pdu) - 1}), ()
    if len(pdu) < 6:
        det = {"mei_type": 14}
        if len(pdu) > 1:
            det["read_device_id_code"] = pdu[1]
        if len(pdu) > 2:
            det["conformity_level"] = pdu[2]
        return _resp(details=det), (MALFORMED,)
    code, conformity, more, nxt, nobj = pdu[1], pdu[2], pdu[3], pdu[4], pdu[5]
    off, objects, ident = 6, [], {}
    an = ()
    for _ in range(nobj):
        if off + 2 > len(pdu):
            an = (MALFORMED,)
            break
        oid, olen = pdu[off], pdu[off + 1]
        raw = pdu[off + 2:off + 2 + olen]
        if len(raw) < olen:
            an = (MALFORMED,)
        val = _text(raw)
        name = DEVICE_ID_OBJECTS.get(oid, f"private_{oid}" if oid >= 0x80 else f"reserved_{oid}")
        objects.append({"id": oid, "name": name, "value": val})
        ident[name] = val
        off += 2 + olen
    if off != len(pdu) and not an:
        an = ("byte_count_mismatch",)
    det = {"mei_type": 14, "read_device_id_code": code, "conformity_level": conformity,
           "more_follows": more == 0xFF, "next_object_id": nxt, "objects": objects,
           "device_identification": ident}
    return _resp(details=det), an


def _resp_umas(pdu, req, cap):
    if len(pdu) < 2:
        return _resp(), (MALFORMED,)
    code = pdu[1]
    return _resp(details={"umas": {"session": pdu[0], "function_code": code,
                                            "function": UMAS_FUNCTIONS.get(code, f"unknown-{code}"),
                                            "data_length": len(pdu) - 2}}), ()


_RESPONSE = {
    1: _resp_bits, 2: _resp_bits, 3: _resp_regs, 4: _resp_regs, 5: _resp_echo_coil, 6: _resp_echo_register,
    7: _resp_exception_status, 8: _resp_diagnostics, 11: _resp_event_counter, 12: _resp_event_log,
    15: _resp_write_multiple, 16: _resp_write_multiple, 17: _resp_server_id, 20: _resp_file(False),
    21: _resp_file(True), 22: _resp_mask_write, 23: _resp_regs, 24: _resp_fifo, 43: _resp_mei, 90: _resp_umas,
}
