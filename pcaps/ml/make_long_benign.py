#!/usr/bin/env python3
"""Long benign recordings of the simulated plant (hours of plant time), written in simulated time.

Real peers cannot give hours of traffic here (pcaps/ml/make_ml_captures.py records real pymodbus and
mosquitto peers at 10x real time: 24 hours would take 2.4 hours of recording per capture). So this script
writes the same plant's traffic directly, with a simulated clock, from a schedule:

- the devices, addresses, polls, periods, jitter (3%), register layout and written-value ranges of the
  Modbus plant in make_ml_captures.py (PLCs 127.0.0.11-13, HMIs .2 and .3, engineering station .4,
  historian .5) and of its MQTT plant (broker .31, sensors .51 and .52, historian .61);
- Modbus PDUs built by pymodbus (the library the real peers use) inside MBAP frames, MQTT packets in the
  wire format mosquitto and paho use (sensor-2 MQTT 5, the others 3.1.1; the same client ids, accounts,
  topics, QoS, payload formats and value ranges), each over one TCP connection per client with handshake, coherent
  sequence numbers, delayed ACKs and FIN teardown (dpkt builds Ethernet/IPv4/TCP with checksums);
- response latencies drawn from the latencies measured in the committed real-peer capture
  pcaps/ml/modbus-train.pcap.gz (plant time), so timing statistics match what the real peers showed;
- operators at realistic rates that depend on the shift, and shift changes:

  | shift (UTC plant time) | day 06-14 | evening 14-22 | night 22-06 |
  |---|---|---|---|
  | second screen (HMI 2 reads PLC 2 hr 50-59 every 2 s for 1 min) | 10/h | 8/h | 1/h |
  | set-point written by hand (engineering station, PLC 1 hr 21, 10-20) | 4/h | 3/h | 0.5/h |
  | mode change (HMI 1 writes PLC 1 coil 8 auto/manual) | 0.5/h | 0.5/h | 0.1/h |
  | HMI restart (reconnect, device identification) | 1/h | 1/h | 0.2/h |
  | recipe/batch change (engineering station FC 16, PLC 3 hr 40-47) | once a shift | once a shift | none |
  | engineering-station upload (FC 3 over PLC 1 and PLC 3 hr 0-119) | 0.05/h | none | none |
  | HMI 1 coil poll of PLC 1 (every 10 s) | on | on | off (screen closed) |
  | HMI 2 poll of PLC 2 | every 5 s | every 5 s | every 10 s |

  At each shift boundary both HMIs restart (new operators log in: reconnect, device identification).
  MQTT: sensors publish as in make_ml_captures.py; the historian sends PINGREQ every 60 s; a sensor restarts or publishes its status every 4-9
  minutes by day, every 20-40 minutes at night; at shift boundaries the historian reconnects.

Same arguments, same bytes (seeded; no wall clock). Usage:
    python3 pcaps/ml/make_long_benign.py -o /tmp/long.pcap --protocol modbus --hours 24 --seed 1 \
        [--start 2025-03-10T00:00:00]
Writes OUT (pcap) and OUT.labels.csv (header only: everything is benign). Nothing it writes is committed.
"""
from __future__ import annotations

import argparse
import gzip
import heapq
import math
import random
import struct
import sys
from datetime import datetime, timezone
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
PLCS = {"plc1": ("127.0.0.11", 1), "plc2": ("127.0.0.12", 1), "plc3": ("127.0.0.13", 2)}
HMI1, HMI2, EWS, HIST = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
BROKER = "127.0.0.31"
SENSORS = {"sensor-1": "127.0.0.51", "sensor-2": "127.0.0.52"}
HIST_MQTT = "127.0.0.61"

SHIFTS = ((6, "day"), (14, "evening"), (22, "night"))
RATES = {  # operator actions per hour of plant time, by shift
    "screen": {"day": 10, "evening": 8, "night": 1},
    "setpoint": {"day": 4, "evening": 3, "night": 0.5},
    "mode": {"day": 0.5, "evening": 0.5, "night": 0.1},
    "restart": {"day": 1, "evening": 1, "night": 0.2},
    "upload": {"day": 0.05, "evening": 0, "night": 0},
}


def shift_of(t: float) -> str:
    h = (t % 86400) / 3600
    if 6 <= h < 14:
        return "day"
    if 14 <= h < 22:
        return "evening"
    return "night"


def shift_boundaries(t0: float, t1: float) -> list[float]:
    out = []
    day = math.floor(t0 / 86400) * 86400
    while day < t1:
        for h, _ in SHIFTS:
            b = day + h * 3600
            if t0 < b < t1:
                out.append(b)
        day += 86400
    return out


def play(events: list, t1: float, handlers: dict) -> None:
    """Pop the (time, order, (kind, *args)) heap in time order and call handlers[kind](time, *args) for each
    event before `t1` (handlers may push more)."""
    while events:
        t, _, (kind, *a) = heapq.heappop(events)
        if t < t1:
            handlers[kind](t, *a)


def mac(ip: str) -> bytes:
    return bytes([0x02, 0x00]) + bytes(int(x) for x in ip.split("."))


class Wire:
    """Frames of every connection, written in time order at the end."""

    def __init__(self):
        self.frames: list[tuple[float, int, bytes]] = []
        self.n = 0

    def add(self, t: float, src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
            payload: bytes = b"") -> None:
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                           flags=flags, win=64240, data=payload)
        ip = dpkt.ip.IP(src=bytes(int(x) for x in src.split(".")), dst=bytes(int(x) for x in dst.split(".")),
                        p=dpkt.ip.IP_PROTO_TCP, ttl=64, id=self.n & 0xFFFF, data=tcp)
        ip.len = len(ip)
        eth = dpkt.ethernet.Ethernet(src=mac(src), dst=mac(dst), type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.frames.append((t, self.n, bytes(eth)))
        self.n += 1

    def write(self, out: Path, t0: float) -> int:
        self.frames.sort()
        opener = gzip.open if out.suffix == ".gz" else open
        with opener(out, "wb") as f:
            w = dpkt.pcap.Writer(f, nano=False)
            for t, _, frame in self.frames:
                w.writepkt(frame, ts=round((t0 + t) * 1e6) / 1e6)
        return len(self.frames)


class Conn:
    """One TCP connection: handshake, data with piggybacked ACKs, a delayed ACK for the client, FIN."""

    def __init__(self, wire: Wire, rng: random.Random, client: str, server: str, port: int, t: float):
        self.w, self.c, self.s, self.port = wire, client, server, port
        self.cport = rng.randrange(32768, 61000)
        self.cseq, self.sseq = rng.getrandbits(32), rng.getrandbits(32)
        self.last = t
        syn, ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
        self.w.add(t, client, server, self.cport, port, self.cseq, 0, syn)
        self.w.add(t + 5e-5, server, client, port, self.cport, self.sseq, self.cseq + 1, syn | ack)
        self.w.add(t + 1e-4, client, server, self.cport, port, self.cseq + 1, self.sseq + 1, ack)
        self.cseq += 1
        self.sseq += 1
        self.last = t + 1e-4

    def at(self, t: float) -> float:
        t = max(t, self.last + 1e-5)
        self.last = t
        return t

    def send(self, t: float, from_client: bool, payload: bytes) -> None:
        t = self.at(t)
        pa = dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
        if from_client:
            self.w.add(t, self.c, self.s, self.cport, self.port, self.cseq, self.sseq, pa, payload)
            self.cseq += len(payload)
        else:
            self.w.add(t, self.s, self.c, self.port, self.cport, self.sseq, self.cseq, pa, payload)
            self.sseq += len(payload)

    def ack(self, t: float, from_client: bool) -> None:
        t = self.at(t)
        if from_client:
            self.w.add(t, self.c, self.s, self.cport, self.port, self.cseq, self.sseq, dpkt.tcp.TH_ACK)
        else:
            self.w.add(t, self.s, self.c, self.port, self.cport, self.sseq, self.cseq, dpkt.tcp.TH_ACK)

    def close(self, t: float) -> None:
        fa, a = dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK
        t = self.at(t)
        self.w.add(t, self.c, self.s, self.cport, self.port, self.cseq, self.sseq, fa)
        self.w.add(t + 5e-5, self.s, self.c, self.port, self.cport, self.sseq, self.cseq + 1, fa)
        self.w.add(t + 1e-4, self.c, self.s, self.cport, self.port, self.cseq + 1, self.sseq + 1, a)
        self.last = t + 1e-4


def measured_latencies() -> list[float]:
    """Response latencies (plant seconds) of the real peers in the committed Modbus training capture."""
    src = HERE / "modbus-train.pcap.gz"
    pend, out = {}, []
    with gzip.open(src) as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP) or len(tcp.data) < 8:
                continue
            tid = tcp.data[:2]
            if tcp.dport == 502:
                pend[ip.src, ip.dst, tcp.sport, tid] = ts
            else:
                t = pend.pop((ip.dst, ip.src, tcp.dport, tid), None)
                if t is not None:
                    out.append(ts - t)
    if len(out) < 100:
        sys.exit(f"error: {src}: only {len(out)} Modbus responses to take latencies from")
    return sorted(out)


def periodic(rng: random.Random, t0: float, t1: float, period, jitter: float = 0.03):
    """Times from t0 + phase every period(t) (+- jitter) until t1; period(t) None = paused (checked every 10 s)."""
    p0 = period(t0) or 10.0
    t = t0 + rng.uniform(0, p0)
    while t < t1:
        p = period(t)
        if p is None:
            t += 10.0
            continue
        yield t
        t += p * (1 + rng.uniform(-jitter, jitter))


def poisson(rng: random.Random, t0: float, t1: float, kind: str):
    """Times of an operator action whose rate depends on the shift (thinning, max rate 20/h)."""
    t = t0
    while True:
        t += rng.expovariate(20 / 3600)
        if t >= t1:
            return
        if rng.random() < RATES[kind][shift_of(t)] / 20:
            yield t


# ---------------------------------------------------------------------------------------------- Modbus

def modbus(wire: Wire, rng: random.Random, t0: float, t1: float) -> None:
    from pymodbus.framer import FramerSocket
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu import bit_message as bm
    from pymodbus.pdu import mei_message as mm
    from pymodbus.pdu import register_message as rm

    freq, fresp = FramerSocket(DecodePDU(False)), FramerSocket(DecodePDU(True))
    lat = measured_latencies()
    hr = {p: [rng.randint(0, 1000) for _ in range(128)] for p in PLCS}
    coils = {p: [bool(rng.getrandbits(1)) for _ in range(64)] for p in PLCS}
    phase = {p: [rng.uniform(0, 6.28) for _ in range(128)] for p in PLCS}
    conns: dict[tuple[str, str], Conn] = {}
    tids: dict[tuple[str, str], int] = {}
    events: list[tuple[float, int, tuple]] = []  # (time, order, action)

    def push(t, *action):
        heapq.heappush(events, (t, len(events) + rng.random(), action))

    def latency() -> float:
        return lat[int(rng.random() * len(lat))]

    def txn(t, src, plc, req, resp_fn):
        key = (src, plc)
        ip, unit = PLCS[plc]
        c = conns.get(key)
        if c is None:
            c = conns[key] = Conn(wire, rng, src, ip, 502, t - 0.01)
        tid = tids[key] = (tids.get(key, 0) % 65535) + 1
        req.dev_id, req.transaction_id = unit, tid
        t = c.at(t)
        c.send(t, True, freq.buildFrame(req))
        resp = resp_fn(t)
        resp.dev_id, resp.transaction_id = unit, tid
        tr = t + latency()
        c.send(tr, False, fresp.buildFrame(resp))
        c.ack(tr + 0.0002 + rng.random() * 0.0004, True)

    def read(t, src, plc, fc, addr, qty):
        if fc == 1:
            txn(t, src, plc, bm.ReadCoilsRequest(address=addr, count=qty),
                lambda _t: bm.ReadCoilsResponse(bits=coils[plc][addr:addr + qty]))
        elif fc == 2:
            txn(t, src, plc, bm.ReadDiscreteInputsRequest(address=addr, count=qty),
                lambda _t: bm.ReadDiscreteInputsResponse(bits=[bool(rng.getrandbits(1)) for _ in range(qty)]))
        elif fc == 3:
            txn(t, src, plc, rm.ReadHoldingRegistersRequest(address=addr, count=qty),
                lambda _t: rm.ReadHoldingRegistersResponse(registers=hr[plc][addr:addr + qty]))
        else:
            def ir(tt):
                return rm.ReadInputRegistersResponse(registers=[
                    int(500 + 300 * math.sin(tt / 200 + phase[plc][i]) + rng.randint(-5, 5)) & 0xFFFF
                    for i in range(addr, addr + qty)])
            txn(t, src, plc, rm.ReadInputRegistersRequest(address=addr, count=qty), ir)

    def write(t, src, plc, addr, vals):
        hr[plc][addr:addr + len(vals)] = vals
        if len(vals) == 1:
            txn(t, src, plc, rm.WriteSingleRegisterRequest(address=addr, registers=vals),
                lambda _t: rm.WriteSingleRegisterResponse(address=addr, registers=vals))
        else:
            txn(t, src, plc, rm.WriteMultipleRegistersRequest(address=addr, registers=vals),
                lambda _t: rm.WriteMultipleRegistersResponse(address=addr, count=len(vals)))

    def identify(t, src, plc):
        info = {0: b"Acme Automation", 1: f"AX-{plc}".encode(), 2: b"2.4"}
        txn(t, src, plc, mm.ReadDeviceInformationRequest(read_code=1, object_id=0),
            lambda _t: mm.ReadDeviceInformationResponse(read_code=1, information=info))

    def restart(t, src, plc):
        c = conns.pop((src, plc), None)
        if c is not None:
            c.close(t)
        push(t + 3.0, "identify", src, plc)

    night_off = lambda t: None if shift_of(t) == "night" else 10.0  # noqa: E731
    hmi2_plc2 = lambda t: 10.0 if shift_of(t) == "night" else 5.0  # noqa: E731
    polls = [
        (HMI1, "plc1", 3, 0, 10, lambda t: 3.0), (HMI1, "plc1", 1, 0, 16, night_off),
        (HMI1, "plc2", 4, 0, 8, lambda t: 5.0), (HMI2, "plc3", 3, 100, 10, lambda t: 3.0),
        (HMI2, "plc3", 2, 0, 8, lambda t: 10.0), (HMI2, "plc2", 3, 0, 20, hmi2_plc2),
        (HIST, "plc1", 3, 0, 10, lambda t: 30.0), (HIST, "plc2", 3, 0, 10, lambda t: 30.0),
        (HIST, "plc3", 3, 100, 10, lambda t: 30.0),
    ]
    for src, plc, fc, addr, qty, period in polls:
        for t in periodic(rng, t0, t1, period):
            push(t, "read", src, plc, fc, addr, qty)
    for t in periodic(rng, t0, t1, lambda t: 10.0):
        push(t, "write", EWS, "plc1", 20, [rng.randint(45, 55)])
    for t in periodic(rng, t0, t1, lambda t: 20.0):
        push(t, "write", EWS, "plc3", 30, [rng.randint(100, 200), rng.randint(100, 200)])
    for t in poisson(rng, t0, t1 - 90, "screen"):
        for i in range(30):
            push(t + 2.0 * i, "read", HMI2, "plc2", 3, 50, 10)
    for t in poisson(rng, t0, t1, "setpoint"):
        push(t, "write", EWS, "plc1", 21, [rng.randint(10, 20)])
    for t in poisson(rng, t0, t1, "mode"):
        on = rng.random() < 0.5
        push(t, "coil", HMI1, "plc1", 8, on)
        push(t + rng.uniform(60, 600), "coil", HMI1, "plc1", 8, not on)
    for t in poisson(rng, t0, t1 - 10, "restart"):
        push(t, "restart", HMI1, "plc1")
    for t in poisson(rng, t0, t1, "upload"):
        for i, (plc, a) in enumerate((p, a) for p in ("plc1", "plc3") for a in range(0, 120, 30)):
            push(t + 0.5 * i, "read", EWS, plc, 3, a, 30)
    for b in shift_boundaries(t0, t1):
        if shift_of(b) != "night":
            push(b + rng.uniform(600, 6 * 3600), "recipe", EWS, "plc3")
        for src, plc in ((HMI1, "plc1"), (HMI1, "plc2"), (HMI2, "plc3"), (HMI2, "plc2")):
            push(b + rng.uniform(0, 120), "restart", src, plc)

    def coil(t, src, plc, addr, on):
        coils[plc][addr] = on
        txn(t, src, plc, bm.WriteSingleCoilRequest(address=addr, bits=[on]),
            lambda _t: bm.WriteSingleCoilResponse(address=addr, bits=[on]))

    def recipe(t, src, plc):
        write(t, EWS, "plc3", 40, [rng.randint(0, 1000) for _ in range(8)])

    play(events, t1, {"read": read, "write": write, "identify": identify, "restart": restart, "coil": coil,
                      "recipe": recipe})
    for c in conns.values():
        c.close(t1)


# ---------------------------------------------------------------------------------------------- MQTT

def mqtt_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def mqtt_packet(ptype: int, flags: int, body: bytes) -> bytes:
    n, rem = len(body), b""
    while True:
        d, n = n % 128, n // 128
        rem += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    return bytes([(ptype << 4) | flags]) + rem + body


def mqtt(wire: Wire, rng: random.Random, t0: float, t1: float) -> None:
    lat = measured_latencies()
    events: list[tuple[float, float, tuple]] = []
    conns: dict[str, Conn] = {}
    pid: dict[str, int] = {}
    users = {"sensor-1": ("sensors", "s3ns0rs!"), "sensor-2": ("sensors", "s3ns0rs!"), "historian": ("historian", "h1st0rian")}
    v5 = {"sensor-2"}  # paho with MQTTv5, as in make_ml_captures.py
    ips = {**SENSORS, "historian": HIST_MQTT}

    def push(t, *action):
        heapq.heappush(events, (t, len(events) + rng.random(), action))

    def latency() -> float:
        return lat[int(rng.random() * len(lat))]

    def next_pid(name):
        pid[name] = pid.get(name, 0) % 65535 + 1
        return pid[name]

    def connect(t, name):
        c = conns[name] = Conn(wire, rng, ips[name], BROKER, 1883, t)
        flags = 0xC2  # user name, password, clean session
        user, password = users[name]
        props = b"\x00" if name in v5 else b""
        body = mqtt_str("MQTT") + bytes([5 if name in v5 else 4, flags]) + struct.pack(">H", 60) + props + \
            mqtt_str(name) + mqtt_str(user) + mqtt_str(password)
        c.send(t, True, mqtt_packet(1, 0, body))
        c.send(t + latency(), False, mqtt_packet(2, 0, b"\x00\x00" + props))
        c.ack(c.last + 0.0003, True)
        if name == "historian":
            p = next_pid(name)
            c.send(c.last + 0.001, True, mqtt_packet(8, 2, struct.pack(">H", p) + mqtt_str("plant/#") + b"\x01"))
            c.send(c.last + latency(), False, mqtt_packet(9, 0, struct.pack(">H", p) + b"\x01"))
            c.ack(c.last + 0.0003, True)

    def publish(t, name, topic, qos, payload: bytes):
        c = conns.get(name)
        if c is None:
            return
        props = b"\x00" if name in v5 else b""
        if qos:
            p = next_pid(name)
            c.send(t, True, mqtt_packet(3, 2, mqtt_str(topic) + struct.pack(">H", p) + props + payload))
            c.send(t + latency(), False, mqtt_packet(4, 0, struct.pack(">H", p)))
        else:
            c.send(t, True, mqtt_packet(3, 0, mqtt_str(topic) + props + payload))
            c.ack(t + latency(), False)
        h = conns.get("historian")
        if h is not None:  # the broker relays it (subscription QoS 1: the lower of the two)
            td = t + latency()
            if qos:
                p = next_pid("broker")
                h.send(td, False, mqtt_packet(3, 2, mqtt_str(topic) + struct.pack(">H", p) + payload))
                h.send(h.last + latency(), True, mqtt_packet(4, 0, struct.pack(">H", p)))
            else:
                h.send(td, False, mqtt_packet(3, 0, mqtt_str(topic) + payload))
                h.ack(h.last + 0.0003, True)

    def ping(t, name):
        c = conns.get(name)
        if c is not None:
            c.send(t, True, mqtt_packet(12, 0, b""))
            c.send(t + latency(), False, mqtt_packet(13, 0, b""))
            c.ack(c.last + 0.0003, True)

    def disconnect(t, name):
        c = conns.pop(name, None)
        if c is not None:
            c.send(t, True, mqtt_packet(14, 0, b""))
            c.close(c.last + 0.0005)

    for name in ("historian", "sensor-1", "sensor-2"):
        push(t0 + rng.uniform(0, 2), "connect", name)
    streams = [("sensor-1", "plant/line1/temperature", 0, 5.0, lambda: f"{rng.uniform(60, 70):.2f}"),
               ("sensor-1", "plant/line1/vibration", 1, 10.0, lambda: f"{rng.uniform(0.1, 0.9):.2f}"),
               ("sensor-2", "plant/tank/level", 1, 5.0, lambda: f"{rng.uniform(10, 90):.2f}")]
    for name, topic, qos, period, value in streams:
        for t in periodic(rng, t0 + 3, t1, lambda t, p=period: p):
            push(t, "publish", name, topic, qos, value)
    # keepalive: the historian's PINGREQ every 60 s on one schedule across its connections (a first ping up to
    # 120 s after the capture starts). Pings per connection, 60-65 s apart for every client as the real paho
    # peers send them, were tried: no false alert on the real capture, but 15 in a simulated week (docs/ML.md)
    for t in periodic(rng, t0 + 60, t1, lambda t: 60.0):
        push(t, "ping", "historian")
    t = t0 + rng.uniform(120, 300)
    while t < t1 - 60:  # a sensor restarts or publishes its status
        name = rng.choice(("sensor-1", "sensor-2"))
        if rng.random() < 0.5:
            push(t, "restart", name)
        else:
            push(t, "publish", name, f"plant/{name}/status", 1, lambda: "1")
        t += rng.uniform(1200, 2400) if shift_of(t) == "night" else rng.uniform(240, 540)
    for b in shift_boundaries(t0, t1):
        push(b + rng.uniform(0, 120), "restart", "historian")

    def restart(t, name):
        disconnect(t, name)
        push(t + 5.0, "connect", name)

    play(events, t1, {"connect": connect, "ping": ping, "restart": restart,
                      "publish": lambda t, name, topic, qos, value: publish(t, name, topic, qos, value().encode())})
    for name in list(conns):
        disconnect(t1, name)


# ---------------------------------------------------------------------------------------------- OPC UA

OPC_SERVER, OPC_PORT = "127.0.0.21", 4840
SCADA, OPC_HIST = "127.0.0.4", "127.0.0.5"
OPC_URL = f"opc.tcp://{OPC_SERVER}:{OPC_PORT}/plant/"
OPC_RATES = {  # SCADA operator actions per hour of plant time, by shift (see the docstring)
    "screen": {"day": 10, "evening": 8, "night": 1},
    "restart": {"day": 1, "evening": 1, "night": 0.2},
    "motor": {"day": 0.5, "evening": 0.5, "night": 0.1},
    "trend": {"day": 2, "evening": 2, "night": 0.5},
    "browse": {"day": 0.5, "evening": 0.3, "night": 0.05},
}


def measured_opcua_latencies() -> list[float]:
    """Response latencies (plant seconds) of the real asyncua peers in pcaps/ml/opcua-train.pcap.gz: MSG
    chunks paired by connection and request id."""
    src = HERE / "opcua-train.pcap.gz"
    pend, out = {}, []
    with gzip.open(src) as f:
        for ts, buf in dpkt.pcap.Reader(f):
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            d = getattr(tcp, "data", b"")
            if not isinstance(tcp, dpkt.tcp.TCP) or len(d) < 24 or d[:3] != b"MSG":
                continue
            rid = d[20:24]
            if tcp.dport == OPC_PORT:
                pend[tcp.sport, rid] = ts
            else:
                t = pend.pop((tcp.dport, rid), None)
                if t is not None:
                    out.append(ts - t)
    if len(out) < 100:
        sys.exit(f"error: {src}: only {len(out)} OPC UA responses to take latencies from")
    return sorted(out)


def _stamp(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None)


class UaChannel:
    """One asyncua client's TCP connection, secure channel (security None) and session, as bytes built by
    asyncua's own encoders: HEL/ACK, OPN issue (and renew every 45 minutes, 0.75 of the channel lifetime, as
    asyncua's client does), CreateSession, ActivateSession, then service calls; CloseSession, CLO, FIN."""

    def __init__(self, wire: Wire, rng: random.Random, client: str, t: float, channel_id: int, lat):
        from asyncua import ua
        from asyncua.crypto.security_policies import SecurityPolicyNone
        self.ua, self.policy, self.rng, self.lat = ua, SecurityPolicyNone(), rng, lat
        self.c = Conn(wire, rng, client, OPC_SERVER, OPC_PORT, t)
        self.channel, self.token = channel_id, 13
        self.seq = {True: 0, False: 0}
        self.rid = 0
        self.opened = t
        self.subs: dict[int, list] = {}
        self.auth = ua.NodeId()
        hel = ua.Hello(EndpointUrl=OPC_URL, MaxMessageSize=0, MaxChunkCount=0)
        self.c.send(self.c.last + 0.006, True, self._uacp(ua.MessageType.Hello, hel))
        ack = ua.Acknowledge(ReceiveBufferSize=65535, SendBufferSize=65535, MaxMessageSize=104857600, MaxChunkCount=1601)
        self.c.send(self.c.last + 0.0008, False, self._uacp(ua.MessageType.Acknowledge, ack))
        self.open(self.c.last + 0.001, renew=False)
        p = ua.CreateSessionParameters(
            ClientDescription=ua.ApplicationDescription(
                ApplicationUri="urn:example.org:FreeOpcUa:opcua-asyncio", ProductUri="urn:freeopcua.github.io:client",
                ApplicationName=ua.LocalizedText("Pure Python Async Client"), ApplicationType=ua.ApplicationType.Client),
            EndpointUrl=OPC_URL, SessionName=f"Pure Python Async Client Session{rng.randint(1, 9)}",
            ClientNonce=rng.randbytes(32), RequestedSessionTimeout=3600000, MaxResponseMessageSize=0)
        ep = ua.EndpointDescription(
            EndpointUrl=OPC_URL, Server=ua.ApplicationDescription(
                ApplicationUri="urn:freeopcua:python:server", ProductUri="urn:freeopcua.github.io:python:server",
                ApplicationName=ua.LocalizedText("FreeOpcUa Python Server"), ApplicationType=ua.ApplicationType.Server,
                DiscoveryUrls=[OPC_URL]),
            SecurityMode=ua.MessageSecurityMode.None_, SecurityPolicyUri="http://opcfoundation.org/UA/SecurityPolicy#None",
            UserIdentityTokens=[ua.UserTokenPolicy(PolicyId="anonymous", TokenType=ua.UserTokenType.Anonymous),
                                ua.UserTokenPolicy(PolicyId="username", TokenType=ua.UserTokenType.UserName),
                                ua.UserTokenPolicy(PolicyId="certificate_basic256sha256",
                                                   TokenType=ua.UserTokenType.Certificate)],
            TransportProfileUri="http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary", SecurityLevel=0)
        sid = rng.randint(1, 2**31)
        self.auth = ua.NodeId(rng.randint(1000, 60000), 1)  # the session's token, in every later request header
        r = ua.CreateSessionResult(SessionId=ua.NodeId(sid, 1), AuthenticationToken=self.auth,
                                   RevisedSessionTimeout=3600000, ServerNonce=rng.randbytes(32), ServerEndpoints=[ep])
        self.call(self.c.last + 0.01, ua.CreateSessionRequest(Parameters=p), ua.CreateSessionResponse(Parameters=r))
        p = ua.ActivateSessionParameters(
            ClientSignature=ua.SignatureData(Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
            LocaleIds=["en"], UserIdentityToken=ua.AnonymousIdentityToken(PolicyId="anonymous"))
        self.call(self.c.last + 0.01, ua.ActivateSessionRequest(Parameters=p),
                  ua.ActivateSessionResponse(Parameters=ua.ActivateSessionResult(ServerNonce=rng.randbytes(32))))

    def _uacp(self, mtype, obj) -> bytes:
        from asyncua.ua.ua_binary import header_to_binary, struct_to_binary
        body = struct_to_binary(obj)
        h = self.ua.Header(mtype, self.ua.ChunkType.Single)
        h.body_size = len(body)
        return header_to_binary(h) + body

    def _chunks(self, mtype, obj, rid: int, from_client: bool) -> bytes:
        from asyncua.common.connection import MessageChunk
        from asyncua.ua.ua_binary import struct_to_binary
        out = b""
        for ch in MessageChunk.message_to_chunks(self.policy, struct_to_binary(obj), 65535, mtype,
                                                 self.channel, rid, self.token):
            self.seq[from_client] += 1
            ch.SequenceHeader.SequenceNumber = self.seq[from_client]
            out += ch.to_binary()
        return out

    def _header(self, req, t: float, timeout: int = 5000):
        req.RequestHeader.Timestamp = _stamp(t)  # asyncua stamps the wall clock: plant time here, for same bytes
        req.RequestHeader.RequestHandle = self.rid
        req.RequestHeader.TimeoutHint = timeout
        req.RequestHeader.AuthenticationToken = self.auth
        return req

    def open(self, t: float, renew: bool) -> None:
        ua = self.ua
        self.rid += 1
        p = ua.OpenSecureChannelParameters(
            ClientProtocolVersion=0, SecurityMode=ua.MessageSecurityMode.None_, RequestedLifetime=3600000,
            RequestType=ua.SecurityTokenRequestType.Renew if renew else ua.SecurityTokenRequestType.Issue)
        req = self._header(ua.OpenSecureChannelRequest(Parameters=p), t, 1000)
        if renew:
            self.token += 1
        r = ua.OpenSecureChannelResult(SecurityToken=ua.ChannelSecurityToken(
            ChannelId=self.channel, TokenId=self.token, CreatedAt=_stamp(t), RevisedLifetime=3600000))
        resp = ua.OpenSecureChannelResponse(Parameters=r)
        resp.ResponseHeader.RequestHandle = self.rid
        resp.ResponseHeader.Timestamp = _stamp(t)
        self.c.send(t, True, self._chunks(ua.MessageType.SecureOpen, req, self.rid, True))
        self.c.send(self.c.last + self.lat(), False, self._chunks(ua.MessageType.SecureOpen, resp, self.rid, False))
        self.c.ack(self.c.last + 0.0002 + self.rng.random() * 0.0004, True)
        self.opened = t

    def call(self, t: float, req, resp, latency: float | None = None) -> None:
        if t - self.opened > 2700:  # asyncua renews the channel at 0.75 of its lifetime
            self.open(t - 0.001, renew=True)
        ua = self.ua
        self.rid += 1
        self._header(req, t)
        resp.ResponseHeader.RequestHandle = self.rid
        resp.ResponseHeader.Timestamp = _stamp(t)
        self.c.send(t, True, self._chunks(ua.MessageType.SecureMessage, req, self.rid, True))
        self.c.send(self.c.last + (self.lat() if latency is None else latency), False,
                    self._chunks(ua.MessageType.SecureMessage, resp, self.rid, False))
        self.c.ack(self.c.last + 0.0002 + self.rng.random() * 0.0004, True)

    def close(self, t: float) -> None:
        ua = self.ua
        self.call(t, ua.CloseSessionRequest(DeleteSubscriptions=True), ua.CloseSessionResponse())
        self.rid += 1
        req = self._header(ua.CloseSecureChannelRequest(), t, 1000)
        self.c.send(self.c.last + 0.005, True, self._chunks(ua.MessageType.SecureClose, req, self.rid, True))
        self.c.close(self.c.last + 0.002)


def opcua(wire: Wire, rng: random.Random, t0: float, t1: float) -> None:
    from asyncua import ua
    lats = measured_opcua_latencies()
    ns = 2
    node = {n: ua.NodeId(f"Line1.{n}", ns) for n in ("Speed", "Temperature", "Setpoint", "MotorEnable")}
    state_node = ua.NodeId(2259, 0)  # Server_ServerStatus_State, read by asyncua's keep-alive every 10 s
    setpoint, motor = [60.0], [True]
    events: list[tuple[float, float, tuple]] = []
    chans: dict[str, UaChannel] = {}
    ids = [5]

    def push(t, *action):
        heapq.heappush(events, (t, len(events) + rng.random(), action))

    def lat() -> float:
        return lats[int(rng.random() * len(lats))]

    def connect(t, who):
        ids[0] += 1
        chans[who] = UaChannel(wire, rng, SCADA if who == "scada" else OPC_HIST, t, ids[0], lat)

    def value(name, t):
        if name == "Speed":
            return ua.Variant(1200.0 + 40 * math.sin(t / 300) + rng.uniform(-5, 5), ua.VariantType.Double)
        if name == "Temperature":
            return ua.Variant(round(65 + 4 * math.sin(t / 900) + rng.uniform(-0.5, 0.5), 2), ua.VariantType.Double)
        if name == "Setpoint":
            return ua.Variant(setpoint[0], ua.VariantType.Double)
        if name == "MotorEnable":
            return ua.Variant(motor[0], ua.VariantType.Boolean)
        return ua.Variant(0, ua.VariantType.Int32)  # ServerState Running

    def dv(v, t):
        stamp = datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None)
        return ua.DataValue(v, SourceTimestamp=stamp, ServerTimestamp=stamp)

    def read(t, who, names):
        c = chans.get(who)
        if c is None:
            return
        nids = [node[n] if n != "State" else state_node for n in names]
        p = ua.ReadParameters(MaxAge=0, TimestampsToReturn=ua.TimestampsToReturn.Source,
                              NodesToRead=[ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for n in nids])
        c.call(t, ua.ReadRequest(Parameters=p), ua.ReadResponse(Results=[dv(value(n, t), t) for n in names]))

    def write(t, who, name, v):
        c = chans.get(who)
        if c is None:
            return
        if name == "Setpoint":
            setpoint[0] = v
            var = ua.Variant(v, ua.VariantType.Double)
        else:
            motor[0] = v
            var = ua.Variant(v, ua.VariantType.Boolean)
        p = ua.WriteParameters(NodesToWrite=[ua.WriteValue(NodeId=node[name], AttributeId=ua.AttributeIds.Value,
                                                           Value=ua.DataValue(var))])
        c.call(t, ua.WriteRequest(Parameters=p), ua.WriteResponse(Results=[ua.StatusCode()]))

    def browse(t, who, step):
        """The operator's tag browser: Objects, then Line1, then the browse path of one tag."""
        c = chans.get(who)
        if c is None:
            return
        if step < 2:
            start = ua.NodeId(85, 0) if step == 0 else ua.NodeId("Line1", ns)
            kids = ["Server", "Line1"] if step == 0 else ["Speed", "Temperature", "Setpoint", "MotorEnable", "Stop",
                                                          "ResetCounters"]
            refs = [ua.ReferenceDescription(
                ReferenceTypeId=ua.NodeId(35 if step == 0 else 47, 0), IsForward=True,
                NodeId=ua.ExpandedNodeId(2253, 0) if k == "Server" else ua.ExpandedNodeId(f"Line1.{k}" if step else k, ns),
                BrowseName=ua.QualifiedName(k, 0 if k == "Server" else ns), DisplayName=ua.LocalizedText(k),
                NodeClass=ua.NodeClass.Method if k in ("Stop", "ResetCounters") else
                ua.NodeClass.Object if step == 0 else ua.NodeClass.Variable) for k in kids]
            p = ua.BrowseParameters(RequestedMaxReferencesPerNode=0, NodesToBrowse=[ua.BrowseDescription(
                NodeId=start, BrowseDirection=ua.BrowseDirection.Forward, ReferenceTypeId=ua.NodeId(33, 0),
                IncludeSubtypes=True, NodeClassMask=0, ResultMask=63)])
            c.call(t, ua.BrowseRequest(Parameters=p), ua.BrowseResponse(Results=[ua.BrowseResult(References=refs)]))
        else:
            tag = rng.choice(("Speed", "Temperature", "Setpoint", "MotorEnable"))
            path = ua.BrowsePath(StartingNode=ua.NodeId(85, 0), RelativePath=ua.RelativePath(Elements=[
                ua.RelativePathElement(TargetName=ua.QualifiedName("Line1", ns)),
                ua.RelativePathElement(TargetName=ua.QualifiedName(tag, ns))]))
            res = ua.BrowsePathResult(Targets=[ua.BrowsePathTarget(TargetId=ua.ExpandedNodeId(f"Line1.{tag}", ns),
                                                                   RemainingPathIndex=0xFFFFFFFF)])
            c.call(t, ua.TranslateBrowsePathsToNodeIdsRequest(Parameters=ua.TranslateBrowsePathsToNodeIdsParameters(
                BrowsePaths=[path])), ua.TranslateBrowsePathsToNodeIdsResponse(Results=[res]))

    def trend(t, who, minutes):
        """A trend screen: a subscription on the temperature and speed (1 s publishing), Publish requests
        answered every interval, deleted when the screen closes."""
        c = chans.get(who)
        if c is None:
            return
        sid = rng.randint(1, 2**31)
        p = ua.CreateSubscriptionParameters(RequestedPublishingInterval=1000, RequestedLifetimeCount=10000,
                                            RequestedMaxKeepAliveCount=3000, MaxNotificationsPerPublish=10000,
                                            PublishingEnabled=True, Priority=0)
        c.call(t, ua.CreateSubscriptionRequest(Parameters=p), ua.CreateSubscriptionResponse(
            Parameters=ua.CreateSubscriptionResult(SubscriptionId=sid, RevisedPublishingInterval=1000,
                                                   RevisedLifetimeCount=10000, RevisedMaxKeepAliveCount=3000)))
        items = [ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node[n], AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=ua.MonitoringParameters(
                ClientHandle=200 + i, SamplingInterval=1000, QueueSize=1, DiscardOldest=True))
            for i, n in enumerate(("Temperature", "Speed"))]
        c.call(c.c.last + 0.005, ua.CreateMonitoredItemsRequest(Parameters=ua.CreateMonitoredItemsParameters(
            SubscriptionId=sid, TimestampsToReturn=ua.TimestampsToReturn.Both, ItemsToCreate=items)),
            ua.CreateMonitoredItemsResponse(Results=[ua.MonitoredItemCreateResult(
                MonitoredItemId=i + 1, RevisedSamplingInterval=1000, RevisedQueueSize=1) for i in range(2)]))
        c.subs[sid] = [0, c.c.last + 60 * minutes]
        push(c.c.last + 0.002, "publish", who, sid)

    def publish(t, who, sid):
        c = chans.get(who)
        if c is None or sid not in c.subs:
            return
        seqno, until = c.subs[sid]
        acks = [ua.SubscriptionAcknowledgement(SubscriptionId=sid, SequenceNumber=seqno)] if seqno else []
        wait = 1.0 * (1 + rng.uniform(-0.03, 0.03))
        seqno += 1
        c.subs[sid][0] = seqno
        notif = ua.DataChangeNotification(MonitoredItems=[
            ua.MonitoredItemNotification(ClientHandle=200 + i, Value=dv(value(n, t + wait), t + wait))
            for i, n in enumerate(("Temperature", "Speed"))])
        res = ua.PublishResult(SubscriptionId=sid, AvailableSequenceNumbers=[seqno], NotificationMessage=ua.NotificationMessage(
            SequenceNumber=seqno, PublishTime=datetime.fromtimestamp(t + wait, timezone.utc).replace(tzinfo=None),
            NotificationData=[notif]), Results=[ua.StatusCode()] * len(acks))
        c.call(t, ua.PublishRequest(Parameters=ua.PublishParameters(SubscriptionAcknowledgements=acks)),
               ua.PublishResponse(Parameters=res), latency=wait)
        if c.c.last < until:
            push(c.c.last + 0.001, "publish", who, sid)
        else:
            del c.subs[sid]
            c.call(c.c.last + 0.01, ua.DeleteSubscriptionsRequest(Parameters=ua.DeleteSubscriptionsParameters(
                SubscriptionIds=[sid])), ua.DeleteSubscriptionsResponse(Results=[ua.StatusCode()]))

    def restart(t, who):
        c = chans.pop(who, None)
        if c is not None:
            c.close(t)
        push(t + 5.0, "connect", who)

    push(t0 + rng.uniform(0, 1), "connect", "scada")
    push(t0 + rng.uniform(0, 1), "connect", "hist")
    for t in periodic(rng, t0 + 2, t1, lambda t: 2.0):
        push(t, "read", "scada", ("Speed", "Temperature", "Setpoint"))
    for t in periodic(rng, t0 + 2, t1, lambda t: 30.0):
        push(t, "write", "scada", "Setpoint", round(rng.uniform(55, 65), 1))
    for t in periodic(rng, t0 + 2, t1, lambda t: 10.0):
        push(t, "read", "hist", ("Speed", "Temperature"))
    for who in ("scada", "hist"):
        for t in periodic(rng, t0 + 10, t1, lambda t: 10.0):
            push(t, "read", who, ("State",))
    for kind in OPC_RATES:
        t = t0
        while True:
            t += rng.expovariate(20 / 3600)
            if t >= t1 - 600:
                break
            if rng.random() >= OPC_RATES[kind][shift_of(t)] / 20:
                continue
            if kind == "screen":  # a second screen: motor state and speed every 3 s for a minute
                for i in range(20):
                    push(t + 3.0 * i, "read", "scada", ("MotorEnable", "Speed"))
            elif kind == "restart":
                push(t, "restart", "scada")
            elif kind == "motor":  # switched off and on again 20 s later
                push(t, "write", "scada", "MotorEnable", False)
                push(t + 20.0, "write", "scada", "MotorEnable", True)
            elif kind == "trend":
                push(t, "trend", "scada", rng.uniform(2, 10))
            else:
                for i in range(3):
                    push(t + rng.uniform(1.5, 4.0) * i, "browse", "scada", i)
    for b in shift_boundaries(t0, t1):  # a new operator logs in at the SCADA
        push(b + rng.uniform(0, 120), "restart", "scada")

    play(events, t1, {"connect": connect, "read": read, "write": write, "restart": restart, "trend": trend,
                      "publish": publish, "browse": browse})
    for c in chans.values():
        c.close(t1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", required=True, help="pcap to write (.gz: gzip)")
    ap.add_argument("--protocol", choices=("modbus", "mqtt", "opcua"), default="modbus")
    ap.add_argument("--hours", type=float, default=24.0, help="plant hours (default 24)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", default="2025-03-10T00:00:00",
                    help="plant time of the first packet, UTC (default 2025-03-10T00:00:00)")
    a = ap.parse_args(argv)
    start = datetime.fromisoformat(a.start).replace(tzinfo=timezone.utc).timestamp()
    rng = random.Random(f"{a.protocol}:{a.seed}")
    wire = Wire()
    # absolute plant time so that shifts fall on the hours of the day
    {"modbus": modbus, "mqtt": mqtt, "opcua": opcua}[a.protocol](wire, rng, start, start + a.hours * 3600)
    out = Path(a.out)
    n = wire.write(out, 0.0)
    Path(str(out) + ".labels.csv").write_text("start,end,src,dst,attack,note\n")
    print(f"{out}: {n} packets, {a.hours:g} h of {a.protocol} plant time from {a.start}Z, seed {a.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
