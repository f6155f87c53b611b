"""TLS session: record framing over the reassembled stream, handshake messages reassembled across records,
and one ids.events.TlsHandshake per connection once the handshake is over (both sides encrypting), has
failed (a cleartext alert), or the flow ends or stalls. After that the session only skips records.

What is encrypted is not guessed at: after ChangeCipherSpec (TLS <= 1.2), and after ServerHello in TLS 1.3,
handshake bytes are counted, not parsed. Message bodies are parsed in parser.py, certificates in certificates.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import TlsHandshake
from .consts import (CERTIFICATES_TRUNCATED, HANDSHAKE_TOO_LARGE, MALFORMED_HANDSHAKE, MALFORMED_RECORD,
                     MAX_RECORD)
from .parser import parse_certificate, parse_client_hello, parse_server_hello
from .certificates import decode

if TYPE_CHECKING:
    from ...flow.context import SessionContext

NS = 1_000_000_000
#: What runs inside TLS, by server port or offered ALPN name (tls.next_protocol is the chosen one).
APPLICATIONS_BY_PORT = {8883: "mqtt"}
APPLICATIONS_BY_ALPN = {"mqtt": "mqtt", "x-amzn-mqtt-ca": "mqtt"}


def probe(buf: bytes, to_server: bool) -> int:
    """A handshake record (TLS 1.0-1.3 record version) starting a ClientHello (to the server) or a
    ServerHello (to the client). Returns 1, 0 or -1 (need more bytes)."""
    want = 1 if to_server else 2
    n = len(buf)
    head = b"\x16\x03"
    if n < 6:
        return -1 if buf[:2] == head[:min(n, 2)] and (n < 3 or buf[2] <= 4) else 0
    if buf[:2] != head or buf[2] > 4 or buf[5] != want:
        return 0
    rlen = (buf[3] << 8) | buf[4]
    return 1 if 4 <= rlen <= MAX_RECORD else 0


class TlsSession:
    __slots__ = ("sc", "emit", "rbuf", "hbuf", "skip", "stop", "ch", "sh", "tls13", "server_certs",
                 "client_certs", "cert_req", "ccs", "encrypted", "alert", "anomalies", "first_ts", "last_ts",
                 "done", "records", "max_hs", "max_certs", "timeout", "server_kx", "hmore", "hneed")

    def __init__(self, sc: SessionContext):
        self.sc = sc
        self.emit = sc.emit
        cfg = sc.config.tls
        self.max_hs = cfg.max_handshake_bytes
        self.max_certs = cfg.max_certificates
        self.timeout = cfg.handshake_timeout * NS
        self.rbuf = [b"", b""]  # partial record header/handshake record per direction (<= MAX_RECORD + 5)
        self.hbuf = [b"", b""]  # handshake bytes not yet a whole message (<= max_handshake_bytes + 4)
        # records after hbuf, joined once the message is whole: a message cut into thousands of small records
        # was joined record by record (quadratic: 0.45 GB copied for one 60 KB ClientHello in 4-byte records)
        self.hmore: list[list[bytes]] = [[], []]
        self.hneed = [0, 0]  # bytes hbuf and hmore must reach before the next message can be parsed
        self.skip = [0, 0]  # bytes of a non-handshake record still to pass over
        self.stop = [False, False]  # this direction's handshake is encrypted (or lost): parse no more
        self.ch = None
        self.sh = None
        self.tls13 = False
        self.server_certs: tuple = ()
        self.client_certs: tuple = ()
        self.cert_req = False
        self.server_kx = False
        self.ccs = [False, False]
        self.encrypted = [False, False]  # application_data records seen
        self.alert = None
        self.anomalies: list = []
        self.first_ts = None
        self.last_ts = 0
        self.done = False
        self.records = 0

    # ------------------------------------------------------------------ records
    def data(self, to_server: bool, data: bytes, ts: int) -> None:
        if self.done:
            return
        i = 0 if to_server else 1
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        skip = self.skip[i]
        if skip:
            if len(data) <= skip:
                self.skip[i] = skip - len(data)
                return
            data = data[skip:]
            self.skip[i] = 0
        if self.rbuf[i]:
            data = self.rbuf[i] + data
            self.rbuf[i] = b""
        n = len(data)
        off = 0
        while n - off >= 5:
            ctype = data[off]
            rlen = (data[off + 3] << 8) | data[off + 4]
            if not 20 <= ctype <= 24 or data[off + 1] != 3 or rlen > MAX_RECORD:
                self._bad_record(i, ts)
                return
            end = off + 5 + rlen
            self.records += 1
            if ctype == 22 and not self.stop[i]:
                if end > n:
                    break  # a whole handshake record is buffered (bounded by MAX_RECORD)
                self._handshake(i, data[off + 5:end], ts)
            elif ctype == 20:
                self.ccs[i] = True
                if not self.tls13:
                    self.stop[i] = True  # what follows from this side (Finished) is encrypted
            elif ctype == 23:
                self.encrypted[i] = True
            elif ctype == 21 and not self.stop[i] and end <= n and rlen == 2 and self.alert is None:
                self.alert = (data[off + 5], data[off + 6])
            if self.done or self._check_done(ts):
                return
            if end > n:
                self.skip[i] = end - n
                return
            off = end
        if off < n:
            self.rbuf[i] = data[off:]

    def _bad_record(self, i: int, ts: int) -> None:
        if self.records == 0:
            self.done = True
            self.sc.detach(ts, "first bytes are not a TLS record")
            return
        self.anomalies.append(MALFORMED_RECORD)
        self.stop[i] = True
        self.rbuf[i] = b""
        self.skip[i] = 1 << 62  # framing is lost for this direction
        self._finish(ts)

    def _check_done(self, ts: int) -> bool:
        """Over when both sides encrypt (TLS <= 1.2: both ChangeCipherSpec; 1.3: encrypted records both
        ways) or a fatal alert was seen in clear."""
        if self.alert is not None and self.alert[0] == 2:
            self._finish(ts)
            return True
        if self.sh is None:
            return False
        if (self.tls13 and self.encrypted[0] and self.encrypted[1]) or (not self.tls13 and self.ccs[0] and self.ccs[1]):
            self._finish(ts)
            return True
        return False

    def gap(self, to_server: bool, ts: int, nbytes: int) -> None:
        i = 0 if to_server else 1
        skip = self.skip[i]
        if skip >= nbytes:
            self.skip[i] = skip - nbytes
            return
        # Record framing is lost for this side; what the handshake showed so far still counts.
        self.rbuf[i] = b""
        self.hbuf[i] = b""
        self.hmore[i] = []
        self.stop[i] = True
        self.skip[i] = 1 << 62

    # ------------------------------------------------------------------ handshake messages
    def _handshake(self, i: int, frag: bytes, ts: int) -> None:
        held = self.hbuf[i]
        if held:
            more = self.hmore[i]
            more.append(frag)
            self.hneed[i] -= len(frag)
            if self.hneed[i] > 0:
                return  # the message is not whole yet
            buf = held + b"".join(more)
            self.hmore[i] = []
        else:
            buf = frag
        n = len(buf)
        off = 0
        while n - off >= 4:
            mlen = (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]
            if mlen > self.max_hs:
                self.anomalies.append(HANDSHAKE_TOO_LARGE)
                self.stop[i] = True
                self.hbuf[i] = b""
                return
            end = off + 4 + mlen
            if end > n:
                break
            self._message(i, buf[off], buf[off + 4:end], ts)
            off = end
            if self.stop[i]:
                self.hbuf[i] = b""
                return
        rest = self.hbuf[i] = buf[off:] if off < n else b""
        # rest's header, when whole, passed the max_hs check above
        self.hneed[i] = (4 if len(rest) < 4 else 4 + ((rest[1] << 16) | (rest[2] << 8) | rest[3])) - len(rest)

    def _message(self, i: int, htype: int, body: bytes, ts: int) -> None:
        if i == 0:
            if htype == 1:
                ch = parse_client_hello(body)
                if ch is None:
                    self.anomalies.append(MALFORMED_HANDSHAKE)
                elif self.ch is None:
                    self.ch = ch
                    self.first_ts = ts
            elif htype == 11:
                self.client_certs = self._certs(body)
        else:
            if htype == 2:
                sh, hrr = parse_server_hello(body)
                if sh is None:
                    self.anomalies.append(MALFORMED_HANDSHAKE)
                    return
                if hrr:  # HelloRetryRequest: the real ServerHello follows a second ClientHello
                    return
                self.sh = sh
                v = sh.selected_version or sh.version
                if v >= 0x0304 or v & 0xFF00 == 0x7F00:  # 1.3 (or one of its drafts)
                    self.tls13 = True
                    self.stop = [True, True]  # everything after ServerHello is encrypted in 1.3
            elif htype == 11:
                self.server_certs = self._certs(body)
            elif htype == 12:
                self.server_kx = True
            elif htype == 13:
                self.cert_req = True

    def _certs(self, body: bytes) -> tuple:
        ders = parse_certificate(body)
        if ders is None:
            self.anomalies.append(MALFORMED_HANDSHAKE)
            return ()
        if len(ders) > self.max_certs:
            self.anomalies.append(CERTIFICATES_TRUNCATED)
            ders = ders[:self.max_certs]
        return tuple(decode(d) for d in ders)

    # ------------------------------------------------------------------ the event
    def _finish(self, ts: int) -> None:
        if self.done:
            return
        self.done = True
        self.rbuf = self.hbuf = [b"", b""]
        self.hmore = [[], []]
        if self.ch is None and self.sh is None and not self.anomalies:
            return  # nothing of a handshake was seen (mid-stream pickup of an established session)
        established = self.sh is not None and (
            (self.tls13 and self.encrypted[0] and self.encrypted[1])
            or (not self.tls13 and self.ccs[0] and self.ccs[1]))
        resumed = bool(established and not self.tls13 and not self.server_certs and not self.server_kx)
        app = APPLICATIONS_BY_PORT.get(self.sc.server_port)
        if app is None and self.ch is not None:
            for name in self.ch.alpn:
                app = APPLICATIONS_BY_ALPN.get(name)
                if app:
                    break
        an = tuple(dict.fromkeys(self.anomalies))
        self.emit(TlsHandshake(self.first_ts or ts, self.sc.context, self.ch, self.sh, self.server_certs,
                               self.client_certs, None if self.tls13 else self.cert_req, established, resumed,
                               self.alert, an,
                               max(ts, self.first_ts or ts), app))

    def expire(self, now: int) -> None:
        if not self.done and self.first_ts is not None and now - self.last_ts > self.timeout:
            self._finish(self.last_ts)

    def close(self, ts: int) -> None:
        self._finish(ts)
