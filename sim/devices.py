"""The plant's servers, each in a process of its own (as real devices are): pymodbus PLCs, an asyncua
OPC UA server, and Debian's mosquitto as the MQTT broker.

pymodbus keeps the device identity (FC 43/14) process-wide, so one process per PLC is also what gives
each PLC its own vendor, product and revision.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


# ---------------------------------------------------------------------------------------------- PLC

def run_plc(plc: dict, seed: int, ready, stop) -> None:
    """Process entry: serve one PLC until `stop` is set. Input registers follow a slow process model
    (sinusoid plus noise) so reads return changing values; holding registers keep what is written."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from pymodbus.pdu.device import ModbusDeviceIdentification
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    rng = random.Random(f"{seed}:{plc['name']}")
    t0 = time.monotonic()
    phase = [rng.uniform(0, 6.28) for _ in range(256)]

    async def process(function_code, start_address, address, count, registers, set_values):
        if function_code == 4 and set_values is None:
            t = time.monotonic() - t0
            for i in range(address, address + count):
                j = i - start_address
                if 0 <= j < len(registers):
                    registers[j] = int(500 + 300 * math.sin(t / 20 + phase[i % 256]) + rng.randint(-5, 5)) & 0xFFFF
        return None

    ident = plc.get("identity") or {}
    identity = ModbusDeviceIdentification(info_name={
        "VendorName": ident.get("vendor", ""), "ProductCode": ident.get("product_code", ""),
        "MajorMinorRevision": ident.get("revision", ""), "ProductName": ident.get("product_name", ""),
        "ModelName": ident.get("model", ""), "UserApplicationName": ident.get("application", ""),
    })
    device = SimDevice(
        id=plc.get("unit", 1), action=process,
        simdata=(
            [SimData(0, values=[bool(rng.getrandbits(1)) for _ in range(64)], datatype=DataType.BITS)],
            [SimData(0, values=[bool(rng.getrandbits(1)) for _ in range(64)], datatype=DataType.BITS)],
            [SimData(0, values=[rng.randint(0, 1000) for _ in range(256)], datatype=DataType.REGISTERS)],
            [SimData(0, values=[rng.randint(0, 1000) for _ in range(256)], datatype=DataType.REGISTERS)],
        ))

    async def main():
        server = ModbusTcpServer(device, address=(plc["ip"], plc.get("port", 502)), identity=identity)
        await server.serve_forever(background=True)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.shutdown()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- OPC UA

def run_opcua_server(cfg: dict, seed: int, ready, stop) -> None:
    """Process entry: an asyncua server (SecurityPolicy None, anonymous) with the configured variables
    under ns=2;s=NAME, all writable."""
    for name in ("asyncua", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from asyncua import Server, ua

    srv = cfg["server"]

    async def main():
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{srv['ip']}:{srv.get('port', 4840)}/plant/")
        server.set_server_name("otids plant simulator")
        await server.set_application_uri(srv.get("application_uri", "urn:otids:sim:opcua-server"))
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace("urn:otids:sim:plant")
        assert idx == 2, idx
        objects = server.nodes.objects
        line = await objects.add_object(ua.NodeId("Line1", idx), ua.QualifiedName("Line1", idx))
        for n in cfg.get("nodes", []):
            v = n.get("initial", 0.0)
            var = await line.add_variable(ua.NodeId(n["name"], idx), ua.QualifiedName(n["name"], idx),
                                          v, ua.VariantType.Boolean if isinstance(v, bool) else ua.VariantType.Double)
            await var.set_writable()
        async with server:
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- MQTT

class Mosquitto:
    """Debian's mosquitto on one loopback address, anonymous access, no persistence."""

    def __init__(self, ip: str, port: int):
        self.ip, self.port = ip, port
        self.dir = tempfile.TemporaryDirectory(prefix="otids-sim-mqtt-")
        conf = Path(self.dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {port} {ip}\nallow_anonymous true\npersistence false\n"
                        f"log_dest stderr\nlog_type error\n", encoding="utf-8")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.dir.cleanup()


def listening(ip: str, port: int) -> bool:
    """Is a TCP socket listening on ip:port? Read from /proc so that checking sends no packet."""
    a = ip.split(".")
    want = "".join(f"{int(x):02X}" for x in reversed(a)) + f":{port:04X}"
    try:
        with open("/proc/net/tcp", encoding="ascii") as fh:
            next(fh)
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in fh)
    except OSError:
        return False


def wait_listening(ip: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(ip, port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {ip}:{port} after {timeout:.0f} s (pid {os.getpid()})")


# ---------------------------------------------------------------------------------------------- SMB

class Smbd:
    """Debian's Samba (smbd) with one guest-writable share, in the plant's namespace. It listens on every
    loopback address, so any plant host's address answers SMB on tcp/445 (a Windows-based OT host with
    file sharing on); only the file server's is used in normal traffic."""

    def __init__(self):
        if shutil.which("smbd") is None:
            raise RuntimeError("smbd not found (apt-get install samba)")
        self.dir = tempfile.TemporaryDirectory(prefix="otids-sim-smb-")
        d = Path(self.dir.name)
        (d / "share").mkdir()
        (d / "state").mkdir()
        (d / "share" / "setpoints.csv").write_text("tag,value\nLine1.Setpoint,60\n", encoding="utf-8")
        self.conf = d / "smb.conf"
        st = d / "state"
        self.conf.write_text(
            "[global]\n  workgroup = PLANT\n  server role = standalone server\n  map to guest = Bad User\n"
            "  guest account = nobody\n  disable netbios = yes\n  smb ports = 445\n  load printers = no\n"
            "  printing = bsd\n  printcap name = /dev/null\n"
            + "".join(f"  {k} = {st}\n" for k in ("lock directory", "state directory", "cache directory",
                                                  "pid directory", "private dir"))
            + f"  ncalrpc dir = {st}/ncalrpc\n  log file = {st}/log.%m\n"
            f"[share]\n  path = {d / 'share'}\n  guest ok = yes\n  read only = no\n  force user = root\n",
            encoding="utf-8")
        # without --no-process-group smbd makes its own session: it signals its whole process group when it
        # stops, which must not be ours
        self.proc = subprocess.Popen(["smbd", "--foreground", "-s", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.dir.cleanup()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """smbd binds the wildcard address (IPv4 or IPv6): wait for any listener on tcp/445."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smbd exited with {self.proc.returncode}")
            for table in ("/proc/net/tcp", "/proc/net/tcp6"):
                try:
                    with open(table, encoding="ascii") as fh:
                        next(fh)
                        if any(ln.split()[1].endswith(":01BD") and ln.split()[3] == "0A" for ln in fh):
                            return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"smbd not listening on tcp/445 after {timeout:.0f} s")
