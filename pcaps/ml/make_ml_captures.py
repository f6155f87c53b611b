#!/usr/bin/env python3
"""Record the labelled captures of pcaps/ml/: benign plant traffic, and the same plant under attack.

Everything on the wire is real: pymodbus PLCs and HMIs, Debian's mosquitto with paho-mqtt clients, an
asyncua server and clients, each at its own 127.0.0.x address, captured by tcpdump on the loopback of a
private network namespace (so nothing else on the machine shows up). Attack tools are small raw-socket
clients that speak the protocols to the same real servers.

Time compression: the plant runs `--speed` times faster than real time (default 10: an HMI polling every
2 s plant time sends a request every 0.2 s) and the capture's timestamps are then stretched by the same
factor and moved to a fixed start (2025-03-03T08:00:00Z for the first capture). So a 6-minute recording
reads as one hour of plant time, which keeps committed files small while the windows see realistic rates.
Packets and their order are untouched; only timestamps change (response latencies grow by the factor too).

Outputs (gzip, fixed header time), each with a labels CSV (`start,end,src,dst,attack,note`; times RFC 3339
UTC; src/dst an IP or *):
  modbus-train.pcap.gz  45 min benign           modbus-test.pcap.gz  45 min benign + 11 attacks
  mqtt-train.pcap.gz    45 min benign           mqtt-test.pcap.gz    45 min benign + 2 brute forces, 2 floods
  opcua-train.pcap.gz   45 min benign           opcua-test.pcap.gz   45 min benign + 2 rogue writes, 2 rogue calls
Half of the MQTT and OPC UA attacks come from a new host, half from a known client's address (so detection
cannot rest on "new pair" alone).

Usage (root; tcpdump, unshare, mosquitto, mosquitto_passwd):
    python3 pcaps/ml/make_ml_captures.py [--only modbus,mqtt,opcua] [--speed 10] [--seed 7] [--out pcaps/ml]
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import logging
import math
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASES = {  # plant-time start of each capture (UTC)
    "modbus-train": "2025-03-03T08:00:00", "modbus-test": "2025-03-03T12:00:00",
    "mqtt-train": "2025-03-04T08:00:00", "mqtt-test": "2025-03-04T12:00:00",
    "opcua-train": "2025-03-05T08:00:00", "opcua-test": "2025-03-05T12:00:00",
}
ATTACKER, ATTACKER2 = "127.0.0.66", "127.0.0.67"
FAILED: Counter = Counter()


def die(msg: str) -> None:
    print(f"make_ml_captures: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------- time

class Clock:
    """Plant time in seconds since the scenario start, running `speed` times faster than real time."""

    def __init__(self, speed: float):
        self.speed = speed
        self.t0 = time.time()

    def now(self) -> float:
        return (time.time() - self.t0) * self.speed

    async def until(self, t: float) -> None:
        dt = (t - self.now()) / self.speed
        if dt > 0:
            await asyncio.sleep(dt)


class Labels:
    def __init__(self, clock: Clock):
        self.clock = clock
        self.rows: list[tuple] = []

    def add(self, start: float, end: float, src: str, dst: str, attack: str, note: str) -> None:
        self.rows.append((start, end, src, dst, attack, note))


# ---------------------------------------------------------------------------------------------- capture

class Capture:
    def __init__(self, bpf: str):
        self.tmp = tempfile.NamedTemporaryFile(suffix=".pcap", delete=False)
        self.tmp.close()
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-Z", "root", "-w", self.tmp.name, bpf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        seen = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"tcpdump exited: {seen + self.proc.stderr.read()}")
            r, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if r:
                line = self.proc.stderr.readline()
                seen += line
                if "listening on" in line:
                    time.sleep(0.3)
                    return
        die(f"tcpdump not ready: {seen}")

    def stop(self) -> str:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=20)
        return self.tmp.name


def stretch(raw: str, out: Path, t0: float, speed: float, base: float) -> int:
    """Rewrite packet times: base + (t - t0) * speed; write gzip with a fixed header time."""
    data = Path(raw).read_bytes()
    if data[:4] != b"\xd4\xc3\xb2\xa1":
        die(f"{raw}: expected a little-endian microsecond pcap from tcpdump")
    parts = [data[:24]]
    off, n = 24, 0
    rec = struct.Struct("<IIII")
    while off + 16 <= len(data):
        sec, usec, incl, orig = rec.unpack_from(data, off)
        t = sec + usec / 1e6
        us = round((base + (t - t0) * speed) * 1e6)
        parts.append(rec.pack(us // 1_000_000, us % 1_000_000, incl, orig))
        parts.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
        n += 1
    with open(out, "wb") as fh:
        with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(b"".join(parts))
    os.unlink(raw)
    return n


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_labels(path: Path, labels: Labels, base: float) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["start", "end", "src", "dst", "attack", "note"])
        for start, end, src, dst, attack, note in labels.rows:
            w.writerow([iso(base + start), iso(base + end), src, dst, attack, note])


def record(name: str, bpf: str, scenario, args) -> None:
    """Run one scenario coroutine under tcpdump and write NAME.pcap.gz and NAME.labels.csv."""
    cap = Capture(bpf)
    clock = Clock(args.speed)
    labels = Labels(clock)
    try:
        asyncio.run(scenario(clock, labels, random.Random(f"{args.seed}:{name}")))
    except BaseException:
        os.unlink(cap.stop())
        raise
    raw = cap.stop()
    base = datetime.fromisoformat(BASES[name]).replace(tzinfo=timezone.utc).timestamp()
    out = Path(args.out) / f"{name}.pcap.gz"
    n = stretch(raw, out, clock.t0, args.speed, base)
    write_labels(Path(args.out) / f"{name}.labels.csv", labels, base)
    print(f"{out}: {n} packets, {out.stat().st_size} bytes, {len(labels.rows)} labelled attacks")


async def every(clock: Clock, rng: random.Random, period: float, end: float, fn, start: float = 0.0,
                jitter: float = 0.03) -> None:
    """Call fn at start + phase, then every period (+- jitter), until `end` plant seconds."""
    t = start + rng.uniform(0, period)
    while t < end:
        await clock.until(t)
        try:
            await fn()
        except Exception as e:  # a generator keeps going; failures are counted and printed at the end
            FAILED[type(e).__name__] += 1
        t += period * (1 + rng.uniform(-jitter, jitter))


# ---------------------------------------------------------------------------------------------- Modbus

PLCS = {"plc1": ("127.0.0.11", 1), "plc2": ("127.0.0.12", 1), "plc3": ("127.0.0.13", 2)}
HMI1, HMI2, EWS, HIST = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


def modbus_server(name: str, seed: int):
    from pymodbus.pdu.device import ModbusDeviceIdentification
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    ip, unit = PLCS[name]
    rng = random.Random(f"{seed}:{name}")
    t0 = time.monotonic()
    phase = [rng.uniform(0, 6.28) for _ in range(128)]

    async def process(function_code, start_address, address, count, registers, set_values):
        if function_code == 4 and set_values is None:  # input registers follow a slow process
            t = time.monotonic() - t0
            for i in range(address, address + count):
                j = i - start_address
                if 0 <= j < len(registers):
                    registers[j] = int(500 + 300 * math.sin(t / 20 + phase[i % 128]) + rng.randint(-5, 5)) & 0xFFFF
        return None

    ident = ModbusDeviceIdentification(info_name={"VendorName": "Acme Automation", "ProductCode": f"AX-{name}",
                                                  "MajorMinorRevision": "2.4"})
    dev = SimDevice(id=unit, action=process, simdata=(
        [SimData(0, values=[bool(rng.getrandbits(1)) for _ in range(64)], datatype=DataType.BITS)],
        [SimData(0, values=[bool(rng.getrandbits(1)) for _ in range(64)], datatype=DataType.BITS)],
        [SimData(0, values=[rng.randint(0, 1000) for _ in range(128)], datatype=DataType.REGISTERS)],
        [SimData(0, values=[rng.randint(0, 1000) for _ in range(128)], datatype=DataType.REGISTERS)],
    ))
    return ModbusTcpServer(dev, address=(ip, 502), identity=ident)


async def mb_client(src: str, plc: str):
    from pymodbus.client import AsyncModbusTcpClient

    c = AsyncModbusTcpClient(PLCS[plc][0], port=502, source_address=(src, 0), timeout=3, retries=0)
    if not await c.connect():
        raise RuntimeError(f"{src} could not connect to {plc}")
    return c


class RawModbus:
    """A bare Modbus/TCP client for the attack tools: any function code, any unit, short timeouts."""

    def __init__(self, src: str, dst: str):
        self.src, self.dst = src, dst
        self.tid = 0

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.dst, 502, local_addr=(self.src, 0))
        return self

    async def req(self, unit: int, fc: int, data: bytes, timeout: float) -> bytes | None:
        self.tid = (self.tid + 1) & 0xFFFF
        self.w.write(struct.pack(">HHHBB", self.tid, 0, len(data) + 2, unit, fc) + data)
        await self.w.drain()
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                hdr = await asyncio.wait_for(self.r.readexactly(7), left)
                tid, _, length, _ = struct.unpack(">HHHB", hdr)
                body = await asyncio.wait_for(self.r.readexactly(length - 1), 1.0)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                return None
            if tid == self.tid:
                return body

    async def close(self):
        self.w.close()
        try:
            await self.w.wait_closed()
        except (ConnectionError, OSError):
            pass


def read_pdu(addr: int, qty: int) -> bytes:
    return struct.pack(">HH", addr, qty)


async def modbus_scenario(clock: Clock, labels: Labels, rng: random.Random, end: float, attacks: bool, seed: int):
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    servers = [modbus_server(n, seed) for n in PLCS]
    for s in servers:
        await s.serve_forever(background=True)
    await asyncio.sleep(0.3)
    u = {n: PLCS[n][1] for n in PLCS}
    conns = {}
    for src, plcs in ((HMI1, ("plc1", "plc2")), (HMI2, ("plc3", "plc2")), (EWS, ("plc1", "plc3")),
                      (HIST, ("plc1", "plc2", "plc3"))):
        for p in plcs:
            conns[src, p] = await mb_client(src, p)

    def poll(src, plc, fc, addr, qty):
        async def go():
            c = conns[src, plc]
            if fc == 1:
                await c.read_coils(addr, count=qty, device_id=u[plc])
            elif fc == 2:
                await c.read_discrete_inputs(addr, count=qty, device_id=u[plc])
            elif fc == 3:
                await c.read_holding_registers(addr, count=qty, device_id=u[plc])
            else:
                await c.read_input_registers(addr, count=qty, device_id=u[plc])
        return go

    def setpoint(src, plc, addr, lo, hi, n=1):
        async def go():
            vals = [rng.randint(lo, hi) for _ in range(n)]
            if n == 1:
                await conns[src, plc].write_register(addr, vals[0], device_id=u[plc])
            else:
                await conns[src, plc].write_registers(addr, vals, device_id=u[plc])
        return go

    tasks = [
        every(clock, rng, 3.0, end, poll(HMI1, "plc1", 3, 0, 10)),
        every(clock, rng, 10.0, end, poll(HMI1, "plc1", 1, 0, 16)),
        every(clock, rng, 5.0, end, poll(HMI1, "plc2", 4, 0, 8)),
        every(clock, rng, 3.0, end, poll(HMI2, "plc3", 3, 100, 10)),
        every(clock, rng, 10.0, end, poll(HMI2, "plc3", 2, 0, 8)),
        every(clock, rng, 5.0, end, poll(HMI2, "plc2", 3, 0, 20)),
        every(clock, rng, 10.0, end, setpoint(EWS, "plc1", 20, 45, 55)),
        every(clock, rng, 20.0, end, setpoint(EWS, "plc3", 30, 100, 200, 2)),
        every(clock, rng, 30.0, end, poll(HIST, "plc1", 3, 0, 10)),
        every(clock, rng, 30.0, end, poll(HIST, "plc2", 3, 0, 10)),
        every(clock, rng, 30.0, end, poll(HIST, "plc3", 3, 100, 10)),
        benign_irregular(clock, rng, end, conns, u),
    ]
    if attacks:
        tasks.append(modbus_attacks(clock, labels, rng, conns, u))
    await asyncio.gather(*tasks)
    for c in conns.values():
        c.close()
    await asyncio.sleep(0.3)
    for s in servers:
        await s.shutdown()


async def benign_irregular(clock: Clock, rng: random.Random, end: float, conns, u) -> None:
    """What operators do now and then: open a second screen (extra reads for a minute), change another
    setpoint, restart an HMI (new connection and a device identification read)."""
    t = rng.uniform(60, 180)
    while t < end - 90:
        await clock.until(t)
        kind = rng.choice(("screen", "screen", "setpoint", "restart"))
        try:
            if kind == "screen":
                t1 = t + 60
                while clock.now() < t1:
                    await conns[HMI2, "plc2"].read_holding_registers(50, count=10, device_id=u["plc2"])
                    await clock.until(clock.now() + 2.0)
            elif kind == "setpoint":
                await conns[EWS, "plc1"].write_register(21, rng.randint(10, 20), device_id=u["plc1"])
            else:
                c = conns[HMI1, "plc1"]
                c.close()
                await clock.until(clock.now() + 3.0)
                c = conns[HMI1, "plc1"] = await mb_client(HMI1, "plc1")
                await c.read_device_information(read_code=1, object_id=0, device_id=u["plc1"])
        except Exception as e:
            FAILED[type(e).__name__] += 1
        t = clock.now() + rng.uniform(90, 240)


async def modbus_attacks(clock: Clock, labels: Labels, rng: random.Random, conns, u) -> None:
    ip = {n: PLCS[n][0] for n in PLCS}

    async def at(t):
        await clock.until(t)
        return clock.now()

    async def paced(t, n, rate, fn):
        for i in range(n):
            await clock.until(t + i / rate)
            await fn(i)

    # 1. function-code scan of plc2 from a new host: every code 1..127 once
    t = await at(300)
    a = await RawModbus(ATTACKER, ip["plc2"]).open()
    await paced(t, 127, 4.0, lambda i: a.req(1, i + 1, read_pdu(0, 1), 0.05))
    await a.close()
    labels.add(t, clock.now(), ATTACKER, ip["plc2"], "fc_scan", "function codes 1-127 at address 0")

    # 2. unit-id scan of plc3 from a new host: FC 3 to units 0..247
    t = await at(540)
    a = await RawModbus(ATTACKER, ip["plc3"]).open()
    await paced(t, 248, 10.0, lambda i: a.req(i, 3, read_pdu(0, 1), 0.02))
    await a.close()
    labels.add(t, clock.now(), ATTACKER, ip["plc3"], "unit_id_scan", "FC 3 to unit ids 0-247")

    # 3. unauthorised writes: HMI 1 (compromised) writes coils and registers of plc2, which it only reads
    t = await at(780)
    a = await RawModbus(HMI1, ip["plc2"]).open()
    await paced(t, 8, 0.4, lambda i: a.req(1, 5, struct.pack(">HH", i, 0xFF00), 0.5))
    await paced(clock.now(), 5, 0.4, lambda i: a.req(1, 6, struct.pack(">HH", i, 0), 0.5))
    await a.close()
    labels.add(t, clock.now(), HMI1, ip["plc2"], "unauthorised_write", "FC 5 coils 0-7 and FC 6 registers 0-4")

    # 4. process value manipulation: the engineering station's setpoint (register 20, normally 45-55) set to 900+
    t = await at(1020)
    a = await RawModbus(EWS, ip["plc1"]).open()
    await paced(t, 6, 0.1, lambda i: a.req(1, 6, struct.pack(">HH", 20, 900 + 10 * i), 0.5))
    await a.close()
    labels.add(t, clock.now(), EWS, ip["plc1"], "value_manipulation", "register 20 written 900-950 (normal 45-55)")

    # 5. replay: the engineering station's FC 16 to plc3 replayed 30 times in 15 s (values seen before)
    t = await at(1260)
    a = await RawModbus(EWS, ip["plc3"]).open()
    vals = struct.pack(">HHBHH", 30, 2, 4, 150, 160)
    await paced(t, 30, 2.0, lambda i: a.req(2, 16, vals, 0.5))
    await a.close()
    labels.add(t, clock.now(), EWS, ip["plc3"], "replay", "recorded FC 16 (registers 30-31 = 150, 160) replayed 30x")

    # 6. request flood: HMI 2's usual read of plc2 at 40 requests/s for 15 s
    t = await at(1500)
    a = await RawModbus(HMI2, ip["plc2"]).open()
    await paced(t, 600, 40.0, lambda i: a.req(1, 3, read_pdu(0, 20), 0.2))
    await a.close()
    labels.add(t, clock.now(), HMI2, ip["plc2"], "request_flood", "FC 3 address 0 x20 at 40/s for 15 s")

    # 7. unit-id scan of plc1, slower and shorter
    t = await at(1740)
    a = await RawModbus(ATTACKER, ip["plc1"]).open()
    await paced(t, 120, 4.0, lambda i: a.req(i + 1, 17, b"", 0.05))
    await a.close()
    labels.add(t, clock.now(), ATTACKER, ip["plc1"], "unit_id_scan", "FC 17 (report server id) to unit ids 1-120")

    # 8. value manipulation, low side: plc3 registers 30-31 (normally 100-200) set to 0
    t = await at(1980)
    a = await RawModbus(EWS, ip["plc3"]).open()
    await paced(t, 3, 0.05, lambda i: a.req(2, 16, struct.pack(">HHBHH", 30, 2, 4, 0, 0), 0.5))
    await a.close()
    labels.add(t, clock.now(), EWS, ip["plc3"], "value_manipulation", "registers 30-31 written 0 (normal 100-200)")

    # 9. request flood from a new host against plc3
    t = await at(2160)
    a = await RawModbus(ATTACKER, ip["plc3"]).open()
    await paced(t, 375, 25.0, lambda i: a.req(2, 3, read_pdu(100, 10), 0.2))
    await a.close()
    labels.add(t, clock.now(), ATTACKER, ip["plc3"], "request_flood", "FC 3 at 25/s for 15 s")

    # 10. unauthorised write from a rogue master with plausible values (register 20 = 50)
    t = await at(2340)
    a = await RawModbus(ATTACKER2, ip["plc1"]).open()
    await paced(t, 3, 0.2, lambda i: a.req(1, 16, struct.pack(">HHBH", 20, 1, 2, 50), 0.5))
    await a.close()
    labels.add(t, clock.now(), ATTACKER2, ip["plc1"], "unauthorised_write", "rogue master writes register 20 = 50")

    # 11. replay of the setpoint write to plc1, 20 times in 10 s, values in the normal range
    t = await at(2520)
    a = await RawModbus(EWS, ip["plc1"]).open()
    await paced(t, 20, 2.0, lambda i: a.req(1, 6, struct.pack(">HH", 20, 50), 0.5))
    await a.close()
    labels.add(t, clock.now(), EWS, ip["plc1"], "replay", "recorded FC 6 (register 20 = 50) replayed 20x")


# ---------------------------------------------------------------------------------------------- MQTT

BROKER = ("127.0.0.31", 1883)
SENSORS = {"sensor-1": "127.0.0.51", "sensor-2": "127.0.0.52"}
HISTORIAN_MQTT = "127.0.0.61"


class Mosquitto:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="otids-ml-mqtt-")
        pw = Path(self.dir.name) / "passwd"
        pw.write_text("")
        for user, password in (("sensors", "s3ns0rs!"), ("historian", "h1st0rian")):
            subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(self.dir.name, 0o755)  # mosquitto started as root drops to its own user
        os.chmod(pw, 0o644)
        conf = Path(self.dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {BROKER[1]} {BROKER[0]}\nallow_anonymous false\npassword_file {pw}\n"
                        f"persistence false\nlog_dest stderr\nlog_type error\nmax_keepalive 600\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            die(f"mosquitto failed: {self.proc.stderr.read().decode(errors='replace')}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


def paho(client_id: str, ip: str, user: str, password: str, keepalive: int, proto=None):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=proto if proto is not None else mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.connect(BROKER[0], BROKER[1], keepalive=keepalive, bind_address=ip)
    c.loop_start()
    return c


async def mqtt_scenario(clock: Clock, labels: Labels, rng: random.Random, end: float, attacks: bool, speed: float):
    import paho.mqtt.client as mqtt

    broker = Mosquitto()
    ka = max(2, round(60 / speed))  # 60 s of plant time
    try:
        hist = paho("historian", HISTORIAN_MQTT, "historian", "h1st0rian", ka)
        hist.subscribe("plant/#", qos=1)
        clients = {"sensor-1": paho("sensor-1", SENSORS["sensor-1"], "sensors", "s3ns0rs!", ka),
                   "sensor-2": paho("sensor-2", SENSORS["sensor-2"], "sensors", "s3ns0rs!", ka, mqtt.MQTTv5)}
        await asyncio.sleep(0.5)

        def pub(name, topic, qos, lo, hi):
            async def go():
                clients[name].publish(topic, f"{rng.uniform(lo, hi):.2f}", qos=qos)
            return go

        async def restarts():
            """Now and then a sensor restarts (new connection, same account) or publishes its status."""
            t = rng.uniform(120, 300)
            while t < end - 60:
                await clock.until(t)
                name = rng.choice(sorted(clients))
                if rng.random() < 0.5:
                    old = clients[name]
                    old.disconnect()
                    old.loop_stop()
                    await clock.until(clock.now() + 5)
                    clients[name] = paho(name, SENSORS[name], "sensors", "s3ns0rs!", ka,
                                         mqtt.MQTTv5 if name == "sensor-2" else None)
                else:
                    clients[name].publish(f"plant/{name}/status", "1", qos=1)
                t = clock.now() + rng.uniform(240, 540)

        tasks = [every(clock, rng, 5.0, end, pub("sensor-1", "plant/line1/temperature", 0, 60, 70)),
                 every(clock, rng, 10.0, end, pub("sensor-1", "plant/line1/vibration", 1, 0.1, 0.9)),
                 every(clock, rng, 5.0, end, pub("sensor-2", "plant/tank/level", 1, 10, 90)),
                 restarts()]
        if attacks:
            tasks.append(mqtt_attacks(clock, labels, rng))
        await asyncio.gather(*tasks)
        for c in (*clients.values(), hist):
            c.disconnect()
            c.loop_stop()
        await asyncio.sleep(0.5)
    finally:
        broker.stop()


def mqtt_connect_packet(client_id: str, user: str, password: str) -> bytes:
    def s(x: str) -> bytes:
        b = x.encode()
        return struct.pack(">H", len(b)) + b
    var = s("MQTT") + bytes([4, 0xC2]) + struct.pack(">H", 30)
    payload = s(client_id) + s(user) + s(password)
    body = var + payload
    return bytes([0x10, len(body)]) + body


async def mqtt_attacks(clock: Clock, labels: Labels, rng: random.Random) -> None:
    async def brute(src: str, n: int, gap: float, user: str):
        t = clock.now()
        for i in range(n):
            await clock.until(t + i * gap)
            try:
                r, w = await asyncio.open_connection(*BROKER, local_addr=(src, 0))
                w.write(mqtt_connect_packet(f"probe{i}", user, f"guess{i:03d}"))
                await w.drain()
                await asyncio.wait_for(r.read(4), 1.0)
                w.close()
            except (asyncio.TimeoutError, ConnectionError, OSError):
                pass
        return t

    async def flood(src: str, client_id: str, topic: str, n: int, rate: float, proto=None):
        c = paho(client_id, src, "sensors", "s3ns0rs!", 60, proto)
        t = clock.now()
        for i in range(n):
            await clock.until(t + i / rate)
            c.publish(topic, "999.00", qos=0)
        await asyncio.sleep(0.3)
        c.disconnect()
        c.loop_stop()
        return t

    # 1. credential brute force from a new host: 40 CONNECTs with guessed passwords, one connection each
    await clock.until(300)
    t = await brute(ATTACKER, 40, 1.0, "sensors")
    labels.add(t, clock.now(), ATTACKER, BROKER[0], "mqtt_brute_force", "40 CONNECT with wrong passwords")
    # 2. publish flood with stolen sensor credentials from a new host: 25 messages/s for 20 s
    await clock.until(900)
    t = await flood(ATTACKER2, "sensor-9", "plant/line1/temperature", 500, 25)
    labels.add(t, clock.now(), ATTACKER2, BROKER[0], "mqtt_publish_flood", "500 publishes in 20 s, stolen credentials")
    delivered(labels, t, clock.now())
    # 3. slower brute force from a known sensor's address (a compromised sensor), one guess every 3 s
    await clock.until(1500)
    t = await brute(SENSORS["sensor-1"], 20, 3.0, "historian")
    labels.add(t, clock.now(), SENSORS["sensor-1"], BROKER[0], "mqtt_brute_force",
               "20 CONNECT for another account, one per 3 s, from sensor-1's address")
    # 4. flood from a known sensor's address, its own account and topic: 10 messages/s for 30 s
    await clock.until(2100)
    t = await flood(SENSORS["sensor-2"], "sensor-2b", "plant/tank/level", 300, 10)
    labels.add(t, clock.now(), SENSORS["sensor-2"], BROKER[0], "mqtt_publish_flood",
               "300 publishes in 30 s from sensor-2's address and account")
    delivered(labels, t, clock.now())


def delivered(labels: Labels, start: float, end: float) -> None:
    """The broker relays a flood to the historian (subscribed to plant/#): its connection carries the attack
    too, under a type of its own so that the flood's own detection figures stay per flood."""
    labels.add(start, end, HISTORIAN_MQTT, BROKER[0], "mqtt_flood_delivery", "the flood as delivered to the historian")


# ---------------------------------------------------------------------------------------------- OPC UA

OPCUA = ("127.0.0.21", 4840)
SCADA, OPC_HIST = "127.0.0.4", "127.0.0.5"


def bind_opcua(client, src: str) -> None:
    """asyncua has no source-address option: connect the UA client's socket from `src`."""
    ua = client.uaclient

    async def connect_socket(host, port):
        from asyncua.client.ua_client import UaClientState
        ua._set_state(UaClientState.CONNECTING)
        await asyncio.wait_for(asyncio.get_running_loop().create_connection(
            ua._make_protocol, host, port, local_addr=(src, 0)), ua._timeout)
        ua._set_state(UaClientState.SOCKET_OPEN)

    ua.connect_socket = connect_socket


async def opcua_scenario(clock: Clock, labels: Labels, rng: random.Random, end: float, attacks: bool, speed: float):
    for n in ("asyncua", "asyncio"):
        logging.getLogger(n).setLevel(logging.CRITICAL)
    from asyncua import Client, Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://{OPCUA[0]}:{OPCUA[1]}/plant/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:otids:ml:plant")
    line = await server.nodes.objects.add_object(ua.NodeId("Line1", idx), "Line1")
    nodes = {}
    for name, v in (("Speed", 1200.0), ("Temperature", 65.0), ("Setpoint", 60.0), ("MotorEnable", True)):
        var = await line.add_variable(ua.NodeId(f"Line1.{name}", idx), name, v,
                                      ua.VariantType.Boolean if isinstance(v, bool) else ua.VariantType.Double)
        await var.set_writable()
        nodes[name] = var

    async def stop_line(parent):
        return [ua.Variant(True, ua.VariantType.Boolean)]

    await line.add_method(ua.NodeId("Line1.Stop", idx), "Stop", stop_line, [], [ua.VariantType.Boolean])
    await line.add_method(ua.NodeId("Line1.ResetCounters", idx), "ResetCounters", stop_line, [], [ua.VariantType.Boolean])

    async def clients():
        url = f"opc.tcp://{OPCUA[0]}:{OPCUA[1]}/plant/"

        async def connect(src):
            c = Client(url, timeout=5)
            bind_opcua(c, src)
            await c.connect()
            return c

        conns = {"scada": await connect(SCADA), "hist": await connect(OPC_HIST)}

        def node(who, name):
            return conns[who].get_node(ua.NodeId(f"Line1.{name}", idx))

        async def read_s():
            await conns["scada"].read_values([node("scada", n) for n in ("Speed", "Temperature", "Setpoint")])

        async def write_s():
            await node("scada", "Setpoint").write_value(
                ua.DataValue(ua.Variant(round(rng.uniform(55, 65), 1), ua.VariantType.Double)))

        async def read_h():
            await conns["hist"].read_values([node("hist", n) for n in ("Speed", "Temperature")])

        async def operators():
            """Every 1.5-4 minutes, as on the Modbus plant: a second screen (extra reads for a minute), a
            SCADA restart (new session), an operator toggling the motor off and on again."""
            t = rng.uniform(120, 300)
            while t < end - 90:
                await clock.until(t)
                kind = rng.choice(("screen", "restart", "motor"))
                try:
                    if kind == "screen":
                        t1 = t + 60
                        while clock.now() < t1:
                            await conns["scada"].read_values([node("scada", "MotorEnable"), node("scada", "Speed")])
                            await clock.until(clock.now() + 3.0)
                    elif kind == "restart":
                        await conns["scada"].disconnect()
                        await clock.until(clock.now() + 5.0)
                        conns["scada"] = await connect(SCADA)
                    else:
                        for v in (False, True):
                            await node("scada", "MotorEnable").write_value(
                                ua.DataValue(ua.Variant(v, ua.VariantType.Boolean)))
                            await clock.until(clock.now() + 20.0)
                except Exception as e:
                    FAILED[type(e).__name__] += 1
                t = clock.now() + rng.uniform(90, 240)

        tasks = [every(clock, rng, 2.0, end, read_s), every(clock, rng, 30.0, end, write_s),
                 every(clock, rng, 10.0, end, read_h), operators()]
        if attacks:
            tasks.append(opcua_attacks(clock, labels, url, idx))
        await asyncio.gather(*tasks)
        for c in conns.values():
            await c.disconnect()

    async with server:
        await clients()


async def opcua_attacks(clock: Clock, labels: Labels, url: str, idx: int) -> None:
    from asyncua import Client, ua

    async def rogue_write(src: str, values, motor: bool):
        t = clock.now()
        c = Client(url, timeout=5)
        bind_opcua(c, src)
        await c.connect()
        await c.nodes.objects.get_children()
        sp = c.get_node(ua.NodeId("Line1.Setpoint", idx))
        for v in values:
            await sp.write_value(ua.DataValue(ua.Variant(v, ua.VariantType.Double)))
            await clock.until(clock.now() + 5)
        if motor:
            await c.get_node(ua.NodeId("Line1.MotorEnable", idx)).write_value(
                ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
        await c.disconnect()
        return t

    async def rogue_call(src: str, methods, rounds: int):
        t = clock.now()
        c = Client(url, timeout=5)
        bind_opcua(c, src)
        await c.connect()
        line = c.get_node(ua.NodeId("Line1", idx))
        for _ in range(rounds):
            for m in methods:
                await line.call_method(ua.NodeId(f"Line1.{m}", idx))
            await clock.until(clock.now() + 5)
        await c.disconnect()
        return t

    # 1. rogue client writes the setpoint far out of range and switches the motor off
    await clock.until(300)
    t = await rogue_write(ATTACKER, (150.0, 200.0, 250.0), True)
    labels.add(t, clock.now(), ATTACKER, OPCUA[0], "opcua_rogue_write", "Setpoint 150-250 (normal 55-65), MotorEnable false")
    # 2. rogue client calls methods: Stop and ResetCounters
    await clock.until(900)
    t = await rogue_call(ATTACKER, ("Stop", "ResetCounters"), 3)
    labels.add(t, clock.now(), ATTACKER, OPCUA[0], "opcua_rogue_call", "Stop and ResetCounters called 3x each")
    # 3. from the SCADA host's address (an attacker on that host, own session): one subtle out-of-range write
    await clock.until(1500)
    t = await rogue_write(SCADA, (80.0,), False)
    labels.add(t, clock.now(), SCADA, OPCUA[0], "opcua_rogue_write", "Setpoint 80 (normal 55-65) from the SCADA host's address")
    # 4. from the SCADA host's address: one Stop call
    await clock.until(2100)
    t = await rogue_call(SCADA, ("Stop",), 1)
    labels.add(t, clock.now(), SCADA, OPCUA[0], "opcua_rogue_call", "Stop called once from the SCADA host's address")


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="modbus,mqtt,opcua", help="comma list of protocols (modbus, mqtt, opcua) or capture names (modbus-test, ...)")
    ap.add_argument("--speed", type=float, default=10.0, help="plant time per real second (default 10)")
    ap.add_argument("--seed", type=int, default=11, help="default 11 (the committed captures); model settings were chosen on --seed 7 --speed 40")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--short", action="store_true", help="training captures one tenth as long (to try the script)")
    args = ap.parse_args()
    if os.environ.get("OTIDS_NETNS") != "1":  # run again inside a private network namespace
        for tool in ("tcpdump", "unshare", "ip"):
            if shutil.which(tool) is None:
                die(f"{tool} not found")
        if os.geteuid() != 0:
            die("must run as root (tcpdump, network namespace)")
        env = dict(os.environ, OTIDS_NETNS="1")
        sys.exit(subprocess.call(["unshare", "-n", sys.executable, *sys.argv], env=env))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # No TCP timestamp option (many PLC stacks send none): 12 bytes less per packet, and it compresses.
    subprocess.run(["sysctl", "-q", "-w", "net.ipv4.tcp_timestamps=0"], check=True)
    os.makedirs(args.out, exist_ok=True)
    k = 0.1 if args.short else 1.0
    sp, seed = args.speed, args.seed
    captures = {
        "modbus-train": ("tcp port 502", lambda c, l, r: modbus_scenario(c, l, r, 2700 * k, False, seed)),
        "modbus-test": ("tcp port 502", lambda c, l, r: modbus_scenario(c, l, r, 2700, True, seed + 1)),
        "mqtt-train": ("tcp port 1883", lambda c, l, r: mqtt_scenario(c, l, r, 2700 * k, False, sp)),
        "mqtt-test": ("tcp port 1883", lambda c, l, r: mqtt_scenario(c, l, r, 2700, True, sp)),
        "opcua-train": ("tcp port 4840", lambda c, l, r: opcua_scenario(c, l, r, 2700 * k, False, sp)),
        "opcua-test": ("tcp port 4840", lambda c, l, r: opcua_scenario(c, l, r, 2700, True, sp)),
    }
    only = set(args.only.split(","))
    for name, (bpf, scenario) in captures.items():
        if name in only or name.split("-")[0] in only:
            if name.startswith("mqtt") and (shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None):
                die("mosquitto and mosquitto_passwd are needed (apt-get install mosquitto)")
            record(name, bpf, scenario, args)
    if FAILED:
        print(f"requests that failed or timed out: {dict(FAILED)}")

if __name__ == "__main__":
    main()
