"""Record one period of the plant: start the capture, the servers and the clients, inject the chosen changes
at their times, stop everything cleanly, and write the labels and run description next to the capture.

Outputs for OUT.pcap: OUT.labels.csv (one row per injected change: time range, hosts, protocol, the rule a
baseline is expected to raise; a header only for a clean period) and OUT.run.yaml (seed, duration,
injections, every plant host with its role), which ML evaluation reads to tell benign from injected.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import multiprocessing as mp
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import clients, devices
from .config import CHANGE_KINDS

LABEL_FIELDS = ["change", "kind", "protocol", "start", "end", "start_ns", "end_ns", "src", "dst",
                "expected_rule", "detail"]


def rfc3339(ns: int) -> str:
    t = time.gmtime(ns // 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ns % 1_000_000_000 // 1000:06d}Z"


# ---------------------------------------------------------------------------------------------- capture

def in_private_netns() -> bool:
    return os.environ.get("OTIDS_SIM_NETNS") == "1"


def reexec_in_netns(argv: list[str]) -> int:
    """Run this command again inside a new network namespace (unshare -n) with lo up: the plant gets a
    loopback of its own, so other traffic on the machine never enters the capture and ports never clash."""
    if shutil.which("unshare") is None:
        raise RuntimeError("unshare (util-linux) not found: cannot create a private network namespace")
    cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, "-m", "sim", *argv]
    env = dict(os.environ, OTIDS_SIM_NETNS="1")
    return subprocess.call(cmd, env=env)


class Tcpdump:
    def __init__(self, out: Path):
        if shutil.which("tcpdump") is None:
            raise RuntimeError("tcpdump not found (apt-get install tcpdump)")
        self.proc = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-Z", "root", "-w", str(out),
                                      "tcp and not host 127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline, seen = time.monotonic() + 10, ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {(seen + self.proc.stderr.read()).strip()}")
            if select.select([self.proc.stderr], [], [], 0.2)[0]:
                line = self.proc.stderr.readline()
                seen += line
                if "listening on" in line:
                    time.sleep(0.3)
                    return
        self.proc.kill()
        raise RuntimeError(f"tcpdump not ready after 10 s: {seen.strip()}")

    def stop(self) -> str:
        time.sleep(0.5)  # last FIN/ACKs
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


# ---------------------------------------------------------------------------------------------- injections

class Injector:
    """Runs the chosen changes at their times and records what was actually sent, and when."""

    def __init__(self, cfg: dict, names: list[str], plant: "Plant"):
        self.cfg, self.names, self.plant = cfg, names, plant
        self.rows: list[dict] = []

    def _row(self, name, ch, start_ns, end_ns, src, dst, detail):
        proto, rule = CHANGE_KINDS[ch["kind"]]
        self.rows.append({"change": name, "kind": ch["kind"], "protocol": proto, "start": rfc3339(start_ns),
                          "end": rfc3339(end_ns), "start_ns": start_ns, "end_ns": end_ns, "src": src, "dst": dst,
                          "expected_rule": rule, "detail": detail})

    async def run(self, start: float, stop: asyncio.Event):
        await asyncio.gather(*[self._one(n, self.cfg["changes"][n], start, stop) for n in self.names])

    async def _at(self, start, at, stop) -> bool:
        delay = start + at - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return False
            except asyncio.TimeoutError:
                pass
        return not stop.is_set()

    async def _one(self, name, ch, start, stop):
        if not await self._at(start, ch["at"], stop):
            return
        kind, p = ch["kind"], self.plant
        if kind == "modbus_new_master":
            plc = p.plcs[ch["plc"]]
            c = await clients.modbus_client(ch["ip"], plc)
            t0 = time.time_ns()
            end = time.monotonic() + ch["for"]
            n = 0
            while time.monotonic() < end and not stop.is_set():
                await clients.modbus_read(c, ch["function"], ch["address"], ch["count"], plc.get("unit", 1))
                n += 1
                await asyncio.sleep(ch["period"])
            c.close()
            self._row(name, ch, t0, time.time_ns(), ch["ip"], plc["ip"],
                      f"{n} x FC {ch['function']} {ch['address']}+{ch['count']} unit {plc.get('unit', 1)}")
        elif kind == "modbus_write":
            hmi = p.hmis[ch["hmi"]]
            c, plc = hmi.clients[ch["plc"]], p.plcs[ch["plc"]]
            t0 = time.time_ns()
            for i in range(ch.get("repeat", 1)):
                await clients.modbus_write(c, ch["address"], list(ch["values"]), plc.get("unit", 1))
                if i + 1 < ch.get("repeat", 1):
                    await asyncio.sleep(ch.get("every", 1.0))
            self._row(name, ch, t0, time.time_ns(), hmi.cfg["ip"], plc["ip"],
                      f"{ch.get('repeat', 1)} x write {ch['values']} to holding register {ch['address']}")
        elif kind == "modbus_value":
            hmi = p.hmis[ch["hmi"]]
            w = hmi.cfg["writes"][ch["write"]]
            sched = hmi.writes[ch["write"]]
            sched.override.extend([ch["value"]] * ch.get("repeat", 1))
            while len(sched.sent) < ch.get("repeat", 1) and not stop.is_set():
                await asyncio.sleep(0.05)
            if sched.sent:
                self._row(name, ch, sched.sent[0], sched.sent[-1], hmi.cfg["ip"], p.plcs[w["plc"]]["ip"],
                          f"{len(sched.sent)} x value {ch['value']} to holding register {w['address']} "
                          f"(normal {w['min']}..{w['max']})")
        elif kind == "modbus_poll_period":
            hmi = p.hmis[ch["hmi"]]
            poll, sched = hmi.cfg["polls"][ch["poll"]], hmi.polls[ch["poll"]]
            old = sched.period
            t0 = time.time_ns()
            sched.period = ch["period"]
            await self._at(time.monotonic(), ch["for"], stop)
            sched.period = old
            self._row(name, ch, t0, time.time_ns(), hmi.cfg["ip"], p.plcs[poll["plc"]]["ip"],
                      f"FC {poll['function']} at {poll['address']} every {ch['period']} s instead of {old} s")
        elif kind == "mqtt_new_topic":
            pub = p.publishers[ch["publisher"]]
            t0 = time.time_ns()
            for i in range(ch.get("repeat", 1)):
                pub.publish(ch["topic"], "debug", ch.get("qos", 0))
                if i + 1 < ch.get("repeat", 1):
                    await asyncio.sleep(ch.get("every", 1.0))
            self._row(name, ch, t0, time.time_ns(), pub.cfg["ip"], p.cfg["mqtt"]["broker"]["ip"],
                      f"{ch.get('repeat', 1)} x PUBLISH {ch['topic']} qos {ch.get('qos', 0)}")
        elif kind == "it_scan":
            ws = p.cfg["it"]["workstation"]["ip"]
            cmd = ["nmap", "-sS", "-Pn", "-n", "-S", ws, "-e", "lo", "-p", str(ch.get("ports", "1-100")),
                   "--max-retries", "0", *ch["targets"]]
            t0 = time.time_ns()
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            text = (await proc.communicate())[0].decode(errors="replace")
            opened = sorted({ln.split("/")[0] for ln in text.splitlines() if "/tcp" in ln and " open " in ln})
            self._row(name, ch, t0, time.time_ns(), ws, " ".join(ch["targets"]),
                      f"nmap -sS -p {ch.get('ports', '1-100')} (open: {', '.join(opened) or 'none'})")
        elif kind == "it_smb":
            ws = p.cfg["it"]["workstation"]["ip"]
            clients.route_from(ws, ch["target"])
            tool = Path(p.smbd.dir.name) / "tool.exe"
            tool.write_bytes(b"MZ" + bytes(range(256)) * 64)
            t0 = time.time_ns()
            rc = await clients.smbclient(ch["target"], f"put {tool} {ch.get('file', 'tool.exe')}; ls", str(p.smbd.conf))
            self._row(name, ch, t0, time.time_ns(), ws, ch["target"],
                      f"smbclient put {ch.get('file', 'tool.exe')} to //{ch['target']}/share (exit {rc})")
        elif kind == "it_new_port":
            ws = p.cfg["it"]["workstation"]["ip"]
            t0 = time.time_ns()
            got = await clients.backdoor(ch["target"], ch["port"], ws, list(ch.get("commands", ["id", "uname -a"])))
            self._row(name, ch, t0, time.time_ns(), ws, ch["target"],
                      f"session to a listener on tcp/{ch['port']} ({got} bytes back)")
        elif kind == "opcua_write":
            cl = p.opcua_clients[ch["client"]]
            t0 = time.time_ns()
            for _ in range(ch.get("repeat", 1)):
                await cl.write(ch["node"], ch["value"])
            self._row(name, ch, t0, time.time_ns(), cl.cfg["ip"], p.cfg["opcua"]["server"]["ip"],
                      f"Write ns=2;s={ch['node']} = {ch['value']}")


# ---------------------------------------------------------------------------------------------- the plant

class Plant:
    def __init__(self, cfg: dict, seed: int):
        self.cfg, self.seed = cfg, seed
        mb = cfg.get("modbus") or {}
        self.plcs = {p["name"]: p for p in mb.get("plcs", [])}
        self.hmis = {h["name"]: clients.Hmi(h, self.plcs, seed) for h in mb.get("hmis", [])}
        self.procs: list[mp.Process] = []
        self.stop_servers = mp.Event()
        self.broker = None
        self.opcua_clients: dict = {}
        self.publishers: dict = {}
        self.subscribers: list = []
        self.smbd = None
        self.workstation = None

    def start_servers(self):
        ctx = mp.get_context("fork")
        readies = []
        for plc in self.plcs.values():
            ev = ctx.Event()
            self.procs.append(ctx.Process(target=devices.run_plc, args=(plc, self.seed, ev, self.stop_servers),
                                          name=plc["name"], daemon=True))
            readies.append((plc["name"], ev))
        ua = self.cfg.get("opcua")
        if ua:
            ev = ctx.Event()
            self.procs.append(ctx.Process(target=devices.run_opcua_server, args=(ua, self.seed, ev, self.stop_servers),
                                          name="opcua-server", daemon=True))
            readies.append(("opcua-server", ev))
        for pr in self.procs:
            pr.start()
        mq = self.cfg.get("mqtt")
        if mq:
            if shutil.which("mosquitto") is None:
                raise RuntimeError("mosquitto not found (apt-get install mosquitto)")
            b = mq["broker"]
            self.broker = devices.Mosquitto(b["ip"], b.get("port", 1883))
            devices.wait_listening(b["ip"], b.get("port", 1883))
        it = self.cfg.get("it")
        if it:
            if not in_private_netns():
                raise RuntimeError("the IT scenario changes routes: run it in the private namespace (no --no-netns)")
            self.smbd = devices.Smbd()
            self.smbd.wait_ready()
            clients.route_from(it["workstation"]["ip"], it["fileserver"]["ip"])
            self.workstation = clients.Workstation(it, str(self.smbd.conf))
        for name, ev in readies:
            if not ev.wait(30):
                raise RuntimeError(f"{name} did not start within 30 s")

    async def start_clients(self):
        for h in self.hmis.values():
            await h.connect()
        ua = self.cfg.get("opcua")
        if ua:
            for c in ua.get("clients", []):
                cl = self.opcua_clients[c["name"]] = clients.OpcuaClient(c, ua["server"], self.seed)
                await cl.connect()
        mq = self.cfg.get("mqtt")
        if mq:
            for s in mq.get("subscribers", []):
                sub = clients.MqttSubscriber(s, mq["broker"])
                await sub.connect()
                self.subscribers.append(sub)
            for pcfg in mq.get("publishers", []):
                pub = self.publishers[pcfg["client_id"]] = clients.MqttPublisher(pcfg, mq["broker"], self.seed)
                await pub.connect()

    async def run(self, duration: float, inject: list[str]) -> tuple[list[dict], int, int]:
        await self.start_clients()
        stop = asyncio.Event()
        start = time.monotonic()
        t_start = time.time_ns()
        injector = Injector(self.cfg, inject, self)
        tasks = [asyncio.create_task(h.run(stop, start)) for h in self.hmis.values()]
        tasks += [asyncio.create_task(c.run(stop, start)) for c in self.opcua_clients.values()]
        tasks += [asyncio.create_task(p.run(stop, start)) for p in self.publishers.values()]
        if self.workstation is not None:
            tasks.append(asyncio.create_task(self.workstation.run(stop, start)))
        tasks.append(asyncio.create_task(injector.run(start, stop)))
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks)
        t_end = time.time_ns()
        for h in self.hmis.values():
            await h.close()
        for c in self.opcua_clients.values():
            await c.close()
        for x in [*self.publishers.values(), *self.subscribers]:
            await x.close()
        return injector.rows, t_start, t_end

    def stop(self):
        self.stop_servers.set()
        for pr in self.procs:
            pr.join(10)
            if pr.is_alive():
                pr.kill()
        if self.broker is not None:
            self.broker.stop()
        if self.smbd is not None:
            self.smbd.stop()

    def hosts(self) -> list[dict]:
        out = [{"ip": p["ip"], "name": p["name"], "role": "modbus_slave"} for p in self.plcs.values()]
        out += [{"ip": h["ip"], "name": h["name"], "role": "modbus_master"} for h in
                (self.cfg.get("modbus") or {}).get("hmis", [])]
        ua = self.cfg.get("opcua")
        if ua:
            out.append({"ip": ua["server"]["ip"], "name": ua["server"]["name"], "role": "opcua_server"})
            out += [{"ip": c["ip"], "name": c["name"], "role": "opcua_client"} for c in ua.get("clients", [])]
        mq = self.cfg.get("mqtt")
        if mq:
            out.append({"ip": mq["broker"]["ip"], "name": mq["broker"]["name"], "role": "mqtt_broker"})
            out += [{"ip": c["ip"], "name": c["client_id"], "role": "mqtt_client"}
                    for c in mq.get("publishers", []) + mq.get("subscribers", [])]
        it = self.cfg.get("it")
        if it:
            out.append({"ip": it["workstation"]["ip"], "name": it["workstation"].get("name", "workstation"),
                        "role": "it_workstation"})
            out.append({"ip": it["fileserver"]["ip"], "name": it["fileserver"].get("name", "fileserver"),
                        "role": "smb_server"})
        return sorted(out, key=lambda h: tuple(int(x) for x in h["ip"].split(".")))


def record(cfg: dict, config_path: str, out: Path, duration: float, seed: int, inject: list[str]) -> dict:
    """Record one period into `out`; returns the run description also written to OUT.run.yaml."""
    import logging
    for name in ("pymodbus", "asyncua", "asyncio", "sim"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    out.parent.mkdir(parents=True, exist_ok=True)
    plant = Plant(cfg, seed)
    cap = Tcpdump(out)
    try:
        plant.start_servers()
        rows, t_start, t_end = asyncio.run(plant.run(duration, inject))
    finally:
        plant.stop()
        err = cap.stop()
    dropped = next((ln.strip() for ln in err.splitlines() if "dropped by kernel" in ln), "")
    errors = sum(h.errors for h in plant.hmis.values())
    rows.sort(key=lambda r: (r["start_ns"], r["change"]))
    labels = out.with_suffix(".labels.csv")
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, LABEL_FIELDS)
        w.writeheader()
        w.writerows(rows)
    run = {
        "pcap": out.name,
        "config": os.path.relpath(config_path, out.parent),
        "config_sha256": hashlib.sha256(Path(config_path).read_bytes()).hexdigest(),
        "seed": seed,
        "duration": duration,
        "injected": list(inject),
        "traffic_start": rfc3339(t_start),
        "traffic_end": rfc3339(t_end),
        "modbus_errors": errors,
        **({"smb_errors": plant.workstation.errors} if plant.workstation is not None else {}),
        "tcpdump": dropped,
        "labels": labels.name,
        "hosts": plant.hosts(),
    }
    out.with_suffix(".run.yaml").write_text(
        "# Written by `python -m sim record`; labels of injected changes are in the .labels.csv file.\n"
        + yaml.safe_dump(run, sort_keys=False), encoding="utf-8")
    return run
