"""The capture generators' one mosquitto helper (make_mqtt_captures, make_sparkplug_captures): start Debian's
broker on a configuration file and wait until it listens on every port, stop it without leaving it behind."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def start_mosquitto(conf: Path, host: str, ports: list[int], timeout: float = 10) -> subprocess.Popen:
    """mosquitto -c CONF, returned once every port accepts a connection; RuntimeError (with the broker's
    stderr) if it exits or does not listen within `timeout` seconds."""
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {proc.stderr.read()}")
        try:
            for p in ports:
                socket.create_connection((host, p), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    stop_mosquitto(proc)
    raise RuntimeError("mosquitto did not start listening")


def stop_mosquitto(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
