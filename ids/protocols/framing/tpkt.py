"""TPKT (RFC 1006) and COTP (ISO 8073 / X.224) headers: what S7comm, S7comm-plus, IEC 61850 MMS and RDP ride
on. Only what the content probes need: where the COTP payload starts, and the TPDU code."""
from __future__ import annotations

COTP_CR, COTP_CC, COTP_DT = 0xE0, 0xD0, 0xF0  # X.224 section 13: connection request / confirm, data


def cotp(buf: bytes) -> tuple[int, int] | None:
    """(TPDU code, offset of the user data) of one TPKT-framed COTP TPDU, or None if `buf` is not one.

    RFC 1006 section 6: version 3, reserved 0, length (including the 4-byte TPKT header) >= 7."""
    if len(buf) < 7 or buf[0] != 3 or buf[1] != 0:
        return None
    tlen = (buf[2] << 8) | buf[3]
    li = buf[4]  # COTP length indicator: header bytes after this one
    if tlen < 7 or li < 2 or 5 + li > tlen:
        return None
    code = buf[5] & 0xF0
    if code not in (COTP_CR, COTP_CC, COTP_DT, 0x80, 0x70, 0x10, 0x20, 0x50, 0x60):
        return None
    return code, 5 + li


def cotp_data(buf: bytes, need: int) -> int:
    """For a probe of a protocol carried in COTP data TPDUs: the offset of the user data when `buf` is a data
    TPDU holding at least `need` bytes of it; -1 need more bytes (a short buffer, or the connection request
    and confirm that S7comm, S7comm-plus and MMS all start with); -2 not this framing at all."""
    c = cotp(buf)
    if c is None:
        return -1 if len(buf) < 7 and buf[:1] in (b"", b"\x03") else -2
    code, off = c
    if code in (COTP_CR, COTP_CC):
        return -1
    if code != COTP_DT:
        return -2
    return off if off + need <= len(buf) else -1
