"""MQTT 5 topic aliases, charged to limits.reassembly_total. Counted by number alone (4,096 a direction per
flow), two flows of 4,000 aliases of 30 kB topics (a 252 MB capture) held 240 MB; now 104 MB RSS and one
memory_cap alert."""
from __future__ import annotations

import json
import struct

from ids.cli import main
from ids.commands.bench_hostile import Conv, PcapOut, SERVER, T0, _ip, _mqtt_len, _mqtt_str

NS = 1_000_000_000


def _publish(topic: bytes, alias: int) -> bytes:
    props = b"\x23" + struct.pack("!H", alias)
    body = _mqtt_str(topic) + _mqtt_len(len(props)) + props + b"1"
    return b"\x30" + _mqtt_len(len(body)) + body


def _flow(out: PcapOut, k: int, ts: int, define: int, use: int) -> None:
    """A v5 client defining `define` aliases of 30 kB topics, then publishing once by alias `use` alone."""
    c = Conv(out, _ip(k), SERVER, 40000 + k, 1883, ts).handshake()
    body = _mqtt_str(b"MQTT") + b"\x05\x02" + struct.pack("!H", 60) + b"\x00" + _mqtt_str(b"c%d" % k)
    c.send(True, b"\x10" + _mqtt_len(len(body)) + body)
    c.send(False, b"\x20\x03\x00\x00\x00")
    for a in range(1, define + 1):
        msg = _publish((b"plant/%d/%d/" % (k, a)).ljust(30_000, b"x"), a)
        for o in range(0, len(msg), 1400):
            c.send(True, msg[o:o + 1400], dt=1000)
    c.send(True, _publish(b"", use))
    c.close()


def test_topic_aliases_are_charged_to_the_reassembly_bound(tmp_path):
    """Flow 1 defines 60 aliases of 30 kB under a 1 MiB bound: those past it are not kept, one memory_cap
    alert says so, and publishing by one of them is not an alias "never defined". Flow 1 closes and gives
    its bytes back: flow 2, two minutes later, keeps its 20 aliases and resolves the one it uses."""
    path = tmp_path / "aliases.pcap"
    out = PcapOut(str(path))
    _flow(out, 1, T0, 60, 50)
    _flow(out, 2, T0 + 120 * NS, 20, 20)
    out.close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  reassembly_total: 1048576\n")
    alerts, events = tmp_path / "alerts.ndjson", tmp_path / "events.ndjson"
    assert main(["analyze", str(path), "-q", "-c", str(cfg), "--workers", "1", "-o", str(alerts),
                 "--events", str(events)]) == 0
    caps = [d for d in map(json.loads, alerts.read_text().splitlines())
            if d["rule"]["id"] == "otids.anomaly.sensor.memory_cap"]
    assert len(caps) == 1 and "'pool': 'reassembly'" in caps[0]["event"]["reason"], caps
    last = {}  # each flow's last publish: the one by alias alone
    for d in map(json.loads, events.read_text().splitlines()):
        if (d.get("mqtt") or {}).get("publish"):
            last[d["source"]["ip"]] = d
    first, second = last["10.0.0.1"], last["10.0.0.2"]
    assert first["mqtt"]["publish"]["topic"] == "" and first["otids"]["anomalies"] == [], first["otids"]
    assert second["mqtt"]["publish"]["topic"].startswith("plant/2/20/") and second["mqtt"]["publish"]["topic_from_alias"]
