"""The plant's clients, as asyncio tasks in the orchestrator: HMIs polling and writing PLCs (pymodbus),
a SCADA client reading and writing the OPC UA server (asyncua), MQTT sensors and a historian (paho-mqtt).

Every schedule is anchored to absolute times (start + phase + k * period) so that a busy machine adds
jitter but no drift; random values come from generators seeded per device, so a seed fixes every value
sent. Each schedule object is mutable on purpose: injections change its period or its next values.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field


class Setpoint:
    """Values an operator or a controller would send: a slow cycle between `lo` and `hi` (period `cycle`
    seconds, random phase) plus a little noise. Any stretch longer than one cycle covers the whole range,
    so a clean period learned from one recording describes another one."""

    def __init__(self, rng: random.Random, lo: float, hi: float, cycle: float = 30.0, integer: bool = True):
        self.rng, self.lo, self.hi, self.cycle, self.integer = rng, lo, hi, cycle, integer
        self.phase = rng.uniform(0, 2 * math.pi)
        self.t0 = time.monotonic()

    def next(self):
        mid, amp = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2
        t = time.monotonic() - self.t0
        v = mid + amp * math.sin(2 * math.pi * t / self.cycle + self.phase) + self.rng.uniform(-0.02, 0.02) * amp
        v = min(self.hi, max(self.lo, v))
        return int(round(v)) if self.integer else round(v, 2)


@dataclass
class Schedule:
    period: float
    phase: float
    override: list = field(default_factory=list)  # values to send instead of the normal ones (injections)
    sent: list = field(default_factory=list)  # (ts_ns, value) of overridden sends, for labels
    reanchor: bool = False

    async def ticks(self, stop: asyncio.Event, start: float):
        """Yield at start + phase + k * period until `stop`; a period change re-anchors at now."""
        anchor, k = start + self.phase, 0
        period = self.period
        while not stop.is_set():
            if self.period != period:
                period = self.period
                anchor, k = time.monotonic() + period, 0
            due = anchor + k * period
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), min(delay, period))
                    return
                except asyncio.TimeoutError:
                    pass
                if time.monotonic() < due:  # woke early because the period may have changed
                    continue
            k += 1
            yield


# ---------------------------------------------------------------------------------------------- Modbus

async def modbus_client(src_ip: str, plc: dict):
    from pymodbus.client import AsyncModbusTcpClient

    c = AsyncModbusTcpClient(plc["ip"], port=plc.get("port", 502), source_address=(src_ip, 0), timeout=3,
                             retries=0)
    if not await c.connect():
        raise RuntimeError(f"{src_ip} could not connect to {plc['ip']}:{plc.get('port', 502)}")
    return c


async def modbus_read(c, function: int, address: int, count: int, unit: int):
    fn = {1: c.read_coils, 2: c.read_discrete_inputs, 3: c.read_holding_registers, 4: c.read_input_registers}
    return await fn[function](address, count=count, device_id=unit)


async def modbus_write(c, address: int, values: list, unit: int):
    if len(values) == 1:
        return await c.write_register(address, values[0], device_id=unit)
    return await c.write_registers(address, values, device_id=unit)


class Hmi:
    """One HMI: a connection per PLC, identification once, then its polls and writes on schedules."""

    def __init__(self, cfg: dict, plcs: dict, seed: int):
        self.cfg = cfg
        self.plcs = plcs
        self.rng = random.Random(f"{seed}:{cfg['name']}")
        self.clients: dict[str, object] = {}
        self.polls = [Schedule(p["period"], self.rng.uniform(0, p["period"])) for p in cfg.get("polls", [])]
        self.writes = [Schedule(w["period"], self.rng.uniform(0, w["period"])) for w in cfg.get("writes", [])]
        self.errors = 0

    async def connect(self):
        names = {p["plc"] for p in self.cfg.get("polls", []) + self.cfg.get("writes", [])}
        names |= set(self.cfg.get("identify", []))
        for name in sorted(names):
            self.clients[name] = await modbus_client(self.cfg["ip"], self.plcs[name])
        for name in self.cfg.get("identify", []):
            c, unit = self.clients[name], self.plcs[name].get("unit", 1)
            await c.read_device_information(read_code=0x01, object_id=0x00, device_id=unit)
            await c.read_device_information(read_code=0x02, object_id=0x00, device_id=unit)
            await c.report_device_id(device_id=unit)

    async def run(self, stop: asyncio.Event, start: float):
        tasks = [self._poll(p, s, stop, start) for p, s in zip(self.cfg.get("polls", []), self.polls)]
        tasks += [self._write(w, s, stop, start) for w, s in zip(self.cfg.get("writes", []), self.writes)]
        await asyncio.gather(*tasks)

    async def _poll(self, p, sched: Schedule, stop, start):
        c, unit = self.clients[p["plc"]], self.plcs[p["plc"]].get("unit", 1)
        async for _ in sched.ticks(stop, start):
            r = await modbus_read(c, p["function"], p["address"], p["count"], unit)
            self.errors += r.isError()

    async def _write(self, w, sched: Schedule, stop, start):
        c, unit = self.clients[w["plc"]], self.plcs[w["plc"]].get("unit", 1)
        rng = random.Random(f"{self.rng.random()}")
        points = [Setpoint(rng, w["min"], w["max"], w.get("cycle", 30.0)) for _ in range(w.get("count", 1))]
        async for _ in sched.ticks(stop, start):
            values = [p.next() for p in points]
            if sched.override:
                values = [sched.override.pop(0)] * len(values)
                sched.sent.append(time.time_ns())
            r = await modbus_write(c, w["address"], values, unit)
            self.errors += r.isError()

    async def close(self):
        for c in self.clients.values():
            c.close()
        await asyncio.sleep(0.2)  # FIN exchange


# ---------------------------------------------------------------------------------------------- OPC UA

def bind_opcua_client(client, src_ip: str) -> None:
    """asyncua connects from the default address; make this client connect from `src_ip` instead."""
    from asyncua.client.ua_client import UaClientState

    ua = client.uaclient

    async def connect_socket(host: str, port: int) -> None:
        ua._set_state(UaClientState.CONNECTING)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                ua._make_protocol, host, port, local_addr=(src_ip, 0)), ua._timeout)
        except BaseException:
            ua._set_state(UaClientState.DISCONNECTED)
            raise
        ua._set_state(UaClientState.SOCKET_OPEN)

    ua.connect_socket = connect_socket


class OpcuaClient:
    def __init__(self, cfg: dict, server: dict, seed: int):
        from asyncua import Client

        self.cfg = cfg
        self.rng = random.Random(f"{seed}:{cfg['name']}")
        url = f"opc.tcp://{server['ip']}:{server.get('port', 4840)}/plant/"
        self.client = Client(url, timeout=5, watchdog_intervall=30.0)
        self.client.application_uri = cfg.get("application_uri", f"urn:otids:sim:{cfg['name']}")
        self.client.name = cfg["name"]
        bind_opcua_client(self.client, cfg["ip"])
        self.reads = [Schedule(r["period"], self.rng.uniform(0, r["period"])) for r in cfg.get("reads", [])]
        self.writes = [Schedule(w["period"], self.rng.uniform(0, w["period"])) for w in cfg.get("writes", [])]

    def node(self, name: str):
        from asyncua import ua
        return self.client.get_node(ua.NodeId(name, 2))

    async def connect(self):
        await self.client.connect()

    async def write(self, name: str, value):
        from asyncua import ua
        vt = ua.VariantType.Boolean if isinstance(value, bool) else ua.VariantType.Double
        await self.node(name).write_value(ua.DataValue(ua.Variant(value, vt)))

    async def run(self, stop, start):
        tasks = [self._read(r, s, stop, start) for r, s in zip(self.cfg.get("reads", []), self.reads)]
        tasks += [self._write(w, s, stop, start) for w, s in zip(self.cfg.get("writes", []), self.writes)]
        await asyncio.gather(*tasks)

    async def _read(self, r, sched, stop, start):
        nodes = [self.node(n) for n in r["nodes"]]
        async for _ in sched.ticks(stop, start):
            await self.client.read_values(nodes)

    async def _write(self, w, sched, stop, start):
        sp = Setpoint(random.Random(f"{self.rng.random()}"), w["min"], w["max"], w.get("cycle", 30.0), False)
        async for _ in sched.ticks(stop, start):
            await self.write(w["node"], float(sp.next()))

    async def close(self):
        try:
            await self.client.disconnect()
        except Exception:  # noqa: BLE001 - the capture is what matters; a slow close is not an error here
            logging.getLogger("sim").warning("OPC UA client %s: disconnect failed", self.cfg["name"])


# ---------------------------------------------------------------------------------------------- MQTT

def mqtt_client(cfg: dict, broker: dict):
    import paho.mqtt.client as mqtt

    v5 = str(cfg.get("version", "3.1.1")) == "5"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg["client_id"],
                    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if cfg.get("username"):
        c.username_pw_set(cfg["username"], cfg.get("password"))
    connected = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def on_connect(client, userdata, flags, reason, properties):
        loop.call_soon_threadsafe(lambda: connected.done() or connected.set_result(reason))

    c.on_connect = on_connect
    c.connect(broker["ip"], broker.get("port", 1883), keepalive=60, bind_address=cfg["ip"])
    c.loop_start()
    return c, connected


class MqttPublisher:
    def __init__(self, cfg: dict, broker: dict, seed: int):
        self.cfg, self.broker = cfg, broker
        self.rng = random.Random(f"{seed}:{cfg['client_id']}")
        self.topics = [Schedule(t["period"], self.rng.uniform(0, t["period"])) for t in cfg["topics"]]
        self.client = None

    async def connect(self):
        self.client, fut = mqtt_client(self.cfg, self.broker)
        await asyncio.wait_for(fut, 10)

    def publish(self, topic: str, payload: str, qos: int):
        self.client.publish(topic, payload, qos=qos)

    async def run(self, stop, start):
        await asyncio.gather(*[self._pub(t, s, stop, start) for t, s in zip(self.cfg["topics"], self.topics)])

    async def _pub(self, t, sched, stop, start):
        sp = Setpoint(random.Random(f"{self.rng.random()}"), t["min"], t["max"], t.get("cycle", 30.0), False)
        async for _ in sched.ticks(stop, start):
            self.publish(t["topic"], f"{sp.next():.2f}", t.get("qos", 0))

    async def close(self):
        self.client.disconnect()
        await asyncio.sleep(0.2)
        self.client.loop_stop()


class MqttSubscriber:
    def __init__(self, cfg: dict, broker: dict):
        self.cfg, self.broker = cfg, broker
        self.received = 0
        self.client = None

    async def connect(self):
        self.client, fut = mqtt_client(self.cfg, self.broker)
        await asyncio.wait_for(fut, 10)

        def on_message(client, userdata, msg):
            self.received += 1

        self.client.on_message = on_message
        self.client.subscribe([(t["filter"], t.get("qos", 0)) for t in self.cfg["topics"]])

    async def close(self):
        self.client.disconnect()
        await asyncio.sleep(0.2)
        self.client.loop_stop()


# ---------------------------------------------------------------------------------------------- IT side

def route_from(src_ip: str, dst_ip: str) -> None:
    """Make connections to `dst_ip` that bind no address leave from `src_ip` (a /32 local route with a
    preferred source): smbclient and nmap's own stack cannot be told a source address otherwise. Only
    ever run inside the plant's private network namespace."""
    import subprocess
    subprocess.run(["ip", "route", "replace", "local", dst_ip, "dev", "lo", "src", src_ip, "table", "local"],
                   check=True, capture_output=True)


async def smbclient(server_ip: str, command: str, conf: str) -> int:
    """Debian's smbclient as a guest against //server/share, running `command` (ls, put, get)."""
    p = await asyncio.create_subprocess_exec("smbclient", "-N", f"//{server_ip}/share", "-s", conf, "-c", command,
                                             stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await p.wait()


class Workstation:
    """An IT workstation on the plant network: every `smb_period` seconds it lists the file server's share
    and fetches a file over SMB (its normal traffic)."""

    def __init__(self, it: dict, smb_conf: str):
        self.cfg, self.conf = it, smb_conf
        self.ip, self.server = it["workstation"]["ip"], it["fileserver"]["ip"]
        self.period = it.get("smb_period", 10)
        self.errors = 0

    async def run(self, stop: asyncio.Event, start: float):
        k = 0
        while not stop.is_set():
            delay = start + 1.0 + k * self.period - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except asyncio.TimeoutError:
                    pass
            if await smbclient(self.server, "ls; get setpoints.csv /dev/null", self.conf) != 0:
                self.errors += 1
            k += 1


async def backdoor(ip: str, port: int, client_ip: str, commands: list[str]) -> int:
    """A listener on ip:port (what an intruder's implant opens) and a session to it from `client_ip`:
    each command is answered with some output. Returns the bytes received by the client."""
    async def handle(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(b"ok " + line.strip() + b"\n" + b"x" * 200 + b"\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, ip, port)
    got = 0
    try:
        reader, writer = await asyncio.open_connection(ip, port, local_addr=(client_ip, 0))
        for c in commands:
            writer.write(c.encode() + b"\n")
            await writer.drain()
            got += len(await reader.readline()) + len(await reader.readline())
            await asyncio.sleep(0.5)
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    return got
