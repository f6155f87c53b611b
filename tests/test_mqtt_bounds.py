"""What an MQTT session holds beyond one packet, bounded in bytes (docs/ROBUSTNESS.md F27, F28): MQTT 5 topic
aliases, charged to limits.reassembly_total (counted by number alone, two flows of 4,000 aliases of 30 kB
topics, a 252 MB capture, held 240 MB); the topic filters of one SUBSCRIBE (150,000 one-byte filters in a
750 kB packet, 100 of them unanswered: 2 GB)."""
from __future__ import annotations

import json
import struct

from ids.cli import main
from ids.commands.bench_hostile import PcapOut, T0, _mqtt_len, _mqtt_str, _send_whole, mqtt_client

NS = 1_000_000_000


def _publish(topic: bytes, alias: int) -> bytes:
    props = b"\x23" + struct.pack("!H", alias)
    body = _mqtt_str(topic) + _mqtt_len(len(props)) + props + b"1"
    return b"\x30" + _mqtt_len(len(body)) + body


def _flow(out: PcapOut, k: int, ts: int, define: int, use: int) -> None:
    """A v5 client defining `define` aliases of 30 kB topics, then publishing once by alias `use` alone."""
    c = mqtt_client(out, b"c%d" % k, k, 40000 + k, ts, v5=True)
    for a in range(1, define + 1):
        _send_whole(c, _publish((b"plant/%d/%d/" % (k, a)).ljust(30_000, b"x"), a))
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


def _subscribe_body(mid: int, filters: list[bytes]) -> bytes:
    return struct.pack("!H", mid) + b"".join(_mqtt_str(f) + b"\x00" for f in filters)


def _subscribe(mid: int, filters: list[bytes]) -> bytes:
    body = _subscribe_body(mid, filters)
    return b"\x82" + _mqtt_len(len(body)) + body


def test_a_subscribe_keeps_at_most_1024_filters_and_says_so():
    from ids.protocols.mqtt import parser as P
    raw = _subscribe_body(7, [b"a/%d" % i for i in range(3000)])
    m, an = P.parse_subscribe(raw, 0, len(raw), 1, True, 2, len(raw), 4)
    assert len(m.topics) == 1024 and m.topics[-1] == ("a/1023", 0) and an == ("too_many_entries",)
    body = struct.pack("!H", 7) + b"".join(_mqtt_str(b"u/%d" % i) for i in range(2000))
    m, an = P.parse_unsubscribe(body, 0, len(body), 1, True, 2, len(body), 4)
    assert len(m.topics) == 1024 and an == ("too_many_entries",)
    raw = _subscribe_body(7, [b"a/%d" % i for i in range(1024)])
    assert P.parse_subscribe(raw, 0, len(raw), 1, True, 2, len(raw), 4)[1] == ()


def test_unanswered_subscribes_of_many_filters_stay_small(tmp_path):
    """20 SUBSCRIBEs of 50,000 one-byte filters (the first `#`), never answered: each was 50,000 tuples
    held until its exchange timed out (and the Sparkplug detector held the whole exchange 10 s for its
    wildcard alert). Peak RSS of the run, in a child process."""
    from conftest import cli_peak_rss_kb
    from ids.commands.bench_hostile import _send_whole, mqtt_client
    path = tmp_path / "subs.pcap"
    out = PcapOut(str(path))
    c = mqtt_client(out, b"sub")
    for k in range(20):
        _send_whole(c, _subscribe(k + 1, [b"#"] + [b"%d" % (i % 10) for i in range(49_999)]))
    c.close()
    out.close()
    alerts = tmp_path / "a.ndjson"
    kb = cli_peak_rss_kb("analyze", str(path), "-q", "--workers", "1", "-o", str(alerts))
    rules = [json.loads(x)["rule"]["id"] for x in alerts.read_text().splitlines()]
    assert "otids.anomaly.mqtt.too_many_entries" in rules and "otids.sparkplug.wildcard_subscription" in rules
    assert kb < 70_000, f"peak RSS {kb / 1024:.0f} MB"  # 108 MB before, 40 MB now


def test_user_properties_are_kept_up_to_1024_and_charged():
    """80,000 user properties of a QoS 1 PUBLISH were a dict held until its PUBACK (60 such packets, a 60 MB
    capture: 452 MB, 12 s, no alert). The first 1,024 are kept (too_many_entries), and the open exchange is
    charged what its properties hold (limits.pending_total)."""
    from ids.protocols.mqtt import parser as P
    from ids.protocols.mqtt.session import _Pending, _pending_cost
    props = b"".join(b"\x26" + _mqtt_str(b"k%d" % i) + _mqtt_str(b"v") for i in range(5000))
    body = _mqtt_str(b"t/x") + struct.pack("!H", 1) + _mqtt_len(len(props)) + props + b"1"
    m, an = P.parse_publish(body, 0, len(body), len(body), 1, True, 2, len(body), 5, 256)
    assert len(m.properties) == 1024 and m.properties["k1023"] == "v" and an == ("too_many_entries",), an
    small = _mqtt_str(b"t/x") + struct.pack("!H", 1) + b"\x00" + b"1"
    m0, _ = P.parse_publish(small, 0, len(small), len(small), 1, True, 2, len(small), 5, 256)
    assert _pending_cost(_Pending(m, (), 1)) > _pending_cost(_Pending(m0, (), 1)) + 1024 * 150
