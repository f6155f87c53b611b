"""Byte bounds on per-key state that grows with traffic and had a bound per flow or none (issue #16,
docs/ROBUSTNESS.md): requests awaiting answers summed over flows (limits.pending_total), the network
detectors' per-source/target state (limits.network_state_bytes), the asset inventory (limits.assets_bytes)
and the baseline learner (limits.learner_bytes). Each test fills the structure past a small limit, measures
what is really held with tracemalloc, and requires it within the limit (25 % for the measurement), and the
alert naming what was capped. Without the bound each one holds several times its limit."""
from __future__ import annotations

import gc
import struct
import tracemalloc

import pytest

from ids.config import Config, LimitsConfig
from ids.decode.packet import Packet
from ids.events import FlowNotice
from ids.flow.table import FlowTable
from ids.protocols import DISSECTED

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
SERVER = b"\x0a\xff\x00\x01"


class Flows:
    """TCP flows to one server port through a real FlowTable, client data only (nothing answered)."""

    def __init__(self, cfg: Config, port: int, n: int):
        self.events: list = []  # notices only: keeping every event would be measured as held
        self.anomalies: dict = {}
        self.table = FlowTable(cfg, DISSECTED, self._emit)
        self.port, self.ts = port, T0
        self.seq = []
        for f in range(n):
            c = struct.pack("!I", 0x0A000001 + f)
            self._pkt(c, SERVER, 10000 + f, port, 999, 0, 0x02)
            self._pkt(SERVER, c, port, 10000 + f, 4999, 1000, 0x12)
            self._pkt(c, SERVER, 10000 + f, port, 1000, 5000, 0x10)
            self.seq.append([c, 10000 + f, 1000])

    def _emit(self, ev) -> None:
        if type(ev) is FlowNotice:
            self.events.append(ev)
        for a in getattr(ev, "anomalies", None) or ():
            self.anomalies[a] = self.anomalies.get(a, 0) + 1

    def _pkt(self, src, dst, sp, dp, seq, ack, flags, payload=b""):
        self.table.packet(Packet(self.ts, 6, src, dst, sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, payload,
                                 None, None, None, False))

    def send_all(self, payload) -> None:
        for s in self.seq:
            self.ts += 1000
            pl = payload if isinstance(payload, bytes) else payload()
            self._pkt(s[0], SERVER, s[1], self.port, s[2], 5000, 0x18, pl)
            s[2] += len(pl)


def _modbus_read(i: int) -> bytes:
    return struct.pack(">HHHBBHH", i & 0xFFFF, 0, 6, 1, 3, i & 0xFFFF, 10)


def _held(fn) -> int:
    gc.collect()
    tracemalloc.start()
    b0 = tracemalloc.get_traced_memory()[0]
    fn()
    gc.collect()
    b1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return b1 - b0


def _caps(events, pool: str) -> list:
    return [e for e in events if type(e) is FlowNotice and e.action == "memory_cap" and e.details.get("pool") == pool]


# ---------------------------------------------------------------------------------------------- pending requests
def test_pending_requests_bounded_over_flows():
    """200 Modbus flows of 200 unanswered reads each (under modbus.max_pending, 256, per flow): 40,000
    requests, ~10 MB held without a run-wide bound; with limits.pending_total 1 MiB what is held stays
    within it, the oldest requests are reported unanswered, and a memory_cap notice names the pool."""
    limit = 1 << 20
    fl = Flows(Config().replace(limits=LimitsConfig(pending_total=limit)), 502, 200)

    def fill():
        for i in range(200):
            fl.send_all(_modbus_read(i))
    held = _held(fill)
    assert held <= limit * 1.25, f"{held:,} bytes held for a {limit:,}-byte bound"
    assert fl.table.pending_pool.used <= limit + 200 * 1300
    caps = _caps(fl.events, "pending_requests")
    assert caps and caps[0].details["max_bytes"] == limit
    assert fl.anomalies.get("too_many_pending", 0) > 30_000  # what the bound made the flows give up, each said
    fl.table.finish(fl.ts + 3600 * NS)
    assert fl.table.pending_pool.used == 0  # every way out gives back what it was charged


@pytest.mark.parametrize("proto", ["modbus", "mqtt", "opcua"])
def test_pending_cost_matches_tracemalloc(proto):
    """What the pool is charged per pending request is what tracemalloc measures, within 25 %."""
    from ids.commands.bench_hostile import _POLICY_NONE, _mqtt_connect, _ua, _ua_str
    port = {"modbus": 502, "mqtt": 1883, "opcua": 4840}[proto]
    fl = Flows(Config(), port, 10)
    if proto == "mqtt":
        fl.send_all(_mqtt_connect(b"c"))
    if proto == "opcua":
        for s in fl.seq:  # HEL, ACK, OPN
            c, sp = s[0], s[1]
            for to_server, pl in ((True, _ua(b"HEL", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0)
                                              + _ua_str(b"opc.tcp://plc:4840"))),
                                  (False, _ua(b"ACK", b"F", struct.pack("<IIIII", 0, 65536, 65536, 0, 0))),
                                  (True, _ua(b"OPN", b"F", struct.pack("<I", 0) + _ua_str(_POLICY_NONE) + _ua_str(None)
                                             + _ua_str(None) + struct.pack("<II", 1, 1) + bytes(16)))):
                fl.ts += 1000
                if to_server:
                    fl._pkt(c, SERVER, sp, port, s[2], 5000, 0x18, pl)
                    s[2] += len(pl)
                else:
                    fl._pkt(SERVER, c, port, sp, 5000, s[2], 0x18, pl)
    before = fl.table.pending_pool.used
    n = 100
    k = iter(range(1, 10**6))

    def request():
        i = next(k)
        if proto == "modbus":
            return _modbus_read(i)
        if proto == "mqtt":
            topic = b"plant/line1/t%d" % i
            body = struct.pack(">H", len(topic)) + topic + struct.pack(">H", i) + b"x" * 40
            return b"\x32" + bytes([len(body)]) + body
        req = b"\x01\x00" + struct.pack("<H", 631) + b"\x00\x00" + struct.pack("<qII", 0, i, 0) + _ua_str(None) \
            + struct.pack("<I", 0) + b"\x00\x00\x00" + struct.pack("<di", 0, 3) + struct.pack("<i", 1) \
            + b"\x01\x00" + struct.pack("<H", 2258) + struct.pack("<I", 13) + _ua_str(None) + b"\x00\x00" \
            + struct.pack("<i", -1)
        return _ua(b"MSG", b"F", struct.pack("<IIII", 1, 1, 1 + i, i) + req)

    def fill():
        for _ in range(n):
            fl.send_all(request)
    held = _held(fill)
    charged = fl.table.pending_pool.used - before
    pending = sum(len(f.session.pending) for f, _ in fl.table.tcp.values() if f.session is not None)
    assert pending >= n * 10 - 1, pending
    assert 0.75 * held <= charged <= 1.25 * held, (held, charged)
