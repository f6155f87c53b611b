"""pcap and pcapng file readers: bytes on disk -> (timestamp ns, link type, frame bytes).

Reads in fixed-size chunks (never the whole file, never mmap) so memory stays flat in the file's size.
Decoding the frames is left to ids.decode. Damage stops the reader after the last good packet and raises
CaptureError naming the file and the byte offset, so callers analyse what came before it.
"""
from __future__ import annotations

import gzip
import struct
from typing import BinaryIO, Iterator

try:
    import cython  # C types for the compiled path (setup.py); no-ops when this runs as Python
except ImportError:
    from .. import _cy as cython

from ..errors import CaptureError

CHUNK = 1 << 20
#: A record larger than this is treated as corruption rather than a reason to allocate it.
MAX_RECORD = 1 << 20
#: pcapng times are 64-bit: a hostile file can stamp a packet past year 9999, which no datetime (and so no
#: RFC 3339 text) can hold. Such times are clamped to the last nanosecond of 9999 and counted.
MAX_TS = 253_402_300_800 * 1_000_000_000 - 1

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

Packet = tuple  # (ts_ns: int, linktype: int, data: bytes)


def open_capture(path: str) -> "CaptureReader":
    """Open a pcap or pcapng file (optionally gzip-compressed) and return its reader."""
    try:
        fh: BinaryIO = open(path, "rb")
    except OSError as e:
        raise CaptureError(path, 0, f"cannot open: {e.strerror or e}") from None
    head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        fh.close()
        fh = gzip.open(path, "rb")  # type: ignore[assignment]
        try:
            head = fh.read(4)
        except (OSError, EOFError) as e:
            raise CaptureError(path, 0, f"bad gzip stream: {e}") from None
    if head in PCAP_MAGIC:
        return PcapReader(path, fh, head)
    if head == PCAPNG_SHB:
        return PcapngReader(path, fh, head)
    fh.close()
    if len(head) < 4:
        raise CaptureError(path, 0, "file is empty or shorter than a capture header")
    raise CaptureError(path, 0, f"not a pcap or pcapng file (magic {head.hex()})")


def read_chunk(r) -> bytes:
    """Up to CHUNK bytes of reader `r`'s file; b"" at its end. A gzip stream cut short (a capture copied
    while it was still being written) first gives what decompressed before the cut, then the error at the
    offset of the last whole packet: GzipFile.read(CHUNK) dropped the chunk that held the cut."""
    fh, err = r._fh, getattr(r, "_gz_error", None)
    if err is not None:
        raise CaptureError(r.path, r.offset, f"read failed: {err}")
    if not isinstance(fh, gzip.GzipFile):
        try:
            return fh.read(CHUNK)
        except OSError as e:
            raise CaptureError(r.path, r.offset, f"read failed: {e}") from None
    parts, n = [], 0
    try:
        while n < CHUNK:
            b = fh.read1(CHUNK - n)
            if not b:
                break
            parts.append(b)
            n += len(b)
    except (OSError, EOFError) as e:
        if not parts:
            raise CaptureError(r.path, r.offset, f"read failed: {e}") from None
        r._gz_error = e
    return b"".join(parts)


class CaptureReader:
    path: str
    #: byte offset of the next unread record; after an error, where the damage starts
    offset: int = 0
    packets_read: int = 0
    clamped: int = 0  # packets whose timestamp lay past MAX_TS

    def packets(self) -> Iterator[Packet]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()



class PcapReader(CaptureReader):
    def __init__(self, path: str, fh: BinaryIO, magic: bytes):
        self.path, self._fh = path, fh
        self.endian, self.ts_mult = PCAP_MAGIC[magic]
        rest = fh.read(20)
        if len(rest) < 20:
            raise CaptureError(path, len(rest) + 4, "truncated pcap file header")
        _vmaj, _vmin, _zone, _sigfigs, self.snaplen, network = struct.unpack(self.endian + "HHiIII", rest)
        # The upper bits of the link-type field may carry FCS information (pcap spec, LinkType field).
        self.linktype = network & 0x0FFFFFFF
        self.offset = 24

    @cython.locals(buf=bytes, pos=cython.Py_ssize_t, end=cython.Py_ssize_t, nxt=cython.Py_ssize_t,
                   base=cython.Py_ssize_t, b=cython.p_uchar, le=cython.bint, sec=cython.ulonglong,
                   frac=cython.ulonglong, incl=cython.ulonglong, mult=cython.ulonglong)
    def packets(self) -> Iterator[Packet]:
        hdr = struct.Struct(self.endian + "IIII").unpack_from
        le = self.endian == "<"
        linktype, mult, path = self.linktype, self.ts_mult, self.path
        buf, pos, base, eof = b"", 0, self.offset, False
        while True:
            end = len(buf)
            while pos + 16 <= end:
                if cython.compiled and le:  # the same four fields, read from the bytes without a tuple
                    b = buf
                    sec = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16 | cython.cast(cython.uint, b[pos + 3]) << 24
                    frac = b[pos + 4] | b[pos + 5] << 8 | b[pos + 6] << 16 | cython.cast(cython.uint, b[pos + 7]) << 24
                    incl = b[pos + 8] | b[pos + 9] << 8 | b[pos + 10] << 16 | cython.cast(cython.uint, b[pos + 11]) << 24
                else:
                    sec, frac, incl, _orig = hdr(buf, pos)
                if incl > MAX_RECORD:
                    self.offset = base + pos
                    raise CaptureError(path, self.offset, f"corrupt record header (captured length {incl})")
                nxt = pos + 16 + incl
                if nxt > end:
                    break
                self.packets_read += 1
                if cython.compiled:  # the record's bytes made straight from the buffer (in bounds: nxt <= end)
                    b = buf
                    yield (sec * 1_000_000_000 + frac * mult, linktype, b[pos + 16:nxt])
                else:
                    yield (sec * 1_000_000_000 + frac * mult, linktype, buf[pos + 16:nxt])
                pos = nxt
            self.offset = base + pos
            if eof:
                if pos < end:
                    raise CaptureError(path, self.offset, f"truncated record ({end - pos} bytes left at end of file)")
                return
            more = self._read()
            buf, base, pos, eof = buf[pos:] + more, base + pos, 0, not more

    def _read(self) -> bytes:
        return read_chunk(self)


class PcapngReader(CaptureReader):
    """pcapng (draft-ietf-opsawg-pcapng): sections, several interfaces with their own link types and
    timestamp resolutions; EPB, SPB and the obsolete Packet Block carry packets, other blocks are skipped."""

    def __init__(self, path: str, fh: BinaryIO, magic: bytes):
        self.path, self._fh = path, fh
        self._first = magic
        self.offset = 0

    def packets(self) -> Iterator[Packet]:
        path = self.path
        buf = self._first + self._read()
        pos = 0
        base = 0
        endian = "<"
        ifaces: list[tuple[int, int, int]] = []  # (linktype, numerator, denominator) for ts -> ns
        u32 = struct.Struct("<I").unpack_from
        blk = struct.Struct("<II").unpack_from
        epb = struct.Struct("<IIIII").unpack_from
        eof = False
        while True:
            if pos + 12 > len(buf) and not eof:
                buf, pos, base, eof = self._refill(buf, pos, base)
                continue
            if pos >= len(buf):
                return
            self.offset = base + pos
            if pos + 12 > len(buf):
                raise CaptureError(path, self.offset, f"truncated block header ({len(buf) - pos} bytes left)")
            btype = u32(buf, pos)[0]
            if btype == 0x0A0D0D0A:
                bom = buf[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    raise CaptureError(path, self.offset, f"bad section byte-order magic {bom.hex()}")
                u32 = struct.Struct(endian + "I").unpack_from
                blk = struct.Struct(endian + "II").unpack_from
                epb = struct.Struct(endian + "IIIII").unpack_from
                ifaces = []
            btype, blen = blk(buf, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                raise CaptureError(path, self.offset, f"corrupt block length {blen}")
            while pos + blen > len(buf) and not eof:
                buf, pos, base, eof = self._refill(buf, pos, base)
            if pos + blen > len(buf):
                raise CaptureError(path, self.offset, f"truncated block ({len(buf) - pos} of {blen} bytes)")
            if u32(buf, pos + blen - 4)[0] != blen:
                raise CaptureError(path, self.offset, "block trailing length does not match its header")
            body = pos + 8
            if btype == 6:  # Enhanced Packet Block
                iid, hi, lo, cap, _orig = epb(buf, body)
                if iid >= len(ifaces):
                    raise CaptureError(path, self.offset, f"packet names undeclared interface {iid}")
                if 20 + cap > blen - 12:
                    raise CaptureError(path, self.offset, f"captured length {cap} exceeds its block")
                lt, num, den = ifaces[iid]
                self.packets_read += 1
                ts = ((hi << 32) | lo) * num // den
                if ts > MAX_TS:
                    ts = MAX_TS
                    self.clamped += 1
                yield (ts, lt, buf[body + 20:body + 20 + cap])
            elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
                if not ifaces:
                    raise CaptureError(path, self.offset, "simple packet block before any interface")
                orig = u32(buf, body)[0]
                cap = min(orig, blen - 16)
                self.packets_read += 1
                yield (0, ifaces[0][0], buf[body + 4:body + 4 + cap])
            elif btype == 2:  # obsolete Packet Block
                iid = struct.unpack_from(endian + "H", buf, body)[0]
                _, hi, lo, cap, _orig = epb(buf, body)
                if iid >= len(ifaces) or 20 + cap > blen - 12:
                    raise CaptureError(path, self.offset, "corrupt packet block")
                lt, num, den = ifaces[iid]
                self.packets_read += 1
                ts = ((hi << 32) | lo) * num // den
                if ts > MAX_TS:
                    ts = MAX_TS
                    self.clamped += 1
                yield (ts, lt, buf[body + 20:body + 20 + cap])
            elif btype == 1:  # Interface Description Block
                lt = struct.unpack_from(endian + "H", buf, body)[0]
                num, den = 1000, 1  # default resolution 10^-6 s
                opt, oend = body + 8, pos + blen - 4
                while opt + 4 <= oend:
                    code, olen = struct.unpack_from(endian + "HH", buf, opt)
                    if code == 0:
                        break
                    if code == 9 and olen >= 1:  # if_tsresol
                        r = buf[opt + 4]
                        if r & 0x80:
                            num, den = 1_000_000_000, 1 << (r & 0x7F)
                        else:
                            e = r & 0x7F
                            num, den = (10 ** (9 - e), 1) if e <= 9 else (1, 10 ** (e - 9))
                    opt += 4 + ((olen + 3) & ~3)
                ifaces.append((lt, num, den))
            pos += blen

    def _read(self) -> bytes:
        return read_chunk(self)

    def _refill(self, buf: bytes, pos: int, base: int):
        more = self._read()
        return buf[pos:] + more, 0, base + pos, not more
