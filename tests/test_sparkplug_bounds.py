"""The Sparkplug births' alias tables, bounded in bytes (births.BIRTHS_BYTES). Before, 200 NBIRTHs of 15,000
metrics each (a 99 MB capture, `otids bench-hostile sparkplug_births`) held 903 MB: only the number of
tables and of aliases per table was capped, at 4,096 x 65,536, and each metric held ~200 bytes."""
from __future__ import annotations

import gc
import json
import tracemalloc

from ids.protocols.mqtt.sparkplug import births as births_mod
from ids.protocols.mqtt.sparkplug import sparkplug_b_pb2 as pb
from ids.protocols.mqtt.sparkplug.births import Births
from ids.protocols.mqtt.sparkplug.decode import decode_payload, parse_topic
from ids.protocols.mqtt.sparkplug.records import DataType


def _birth(node: int, metrics: int, first: int = 0) -> bytes:
    p = pb.Payload()
    p.seq, p.timestamp = 0, 1
    for i in range(first, first + metrics):
        m = p.metrics.add()
        m.name, m.alias, m.datatype, m.int_value = f"line{node}/cell{i % 50}/m{i}", i, DataType.Int32, i
    return p.SerializeToString()


def _data(alias: int) -> bytes:
    p = pb.Payload()
    p.seq, p.timestamp = 1, 1
    m = p.metrics.add()
    m.alias, m.int_value = alias, 5
    return p.SerializeToString()


def _learn(b: Births, node: int, metrics: int) -> None:
    decode_payload(parse_topic(f"spBv1.0/plant/NBIRTH/edge{node}"), _birth(node, metrics), b)


def test_births_count_what_they_hold():
    """What the pool counts is what tracemalloc sees the tables hold (within a quarter, never much less)."""
    payloads = [_birth(k, 2_000) for k in range(20)]
    gc.collect()
    tracemalloc.start()
    try:
        b = Births()
        b.broker = "10.0.0.1"
        before = tracemalloc.get_traced_memory()[0]
        for k, p in enumerate(payloads):
            decode_payload(parse_topic(f"spBv1.0/plant/NBIRTH/edge{k}"), p, b)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(b.tables) == 20 and b.pool.hits == 0
    assert 0.9 * held <= b.pool.used <= 1.25 * held, (b.pool.used, held)


def test_births_forget_the_least_recently_born_at_the_bound():
    b = Births(limit=1 << 20)
    b.broker = "10.0.0.1"
    for k in range(40):
        _learn(b, k, 1_000)
    assert b.pool.used <= 1 << 20 and b.pool.hits > 0
    kept = [key[2] for key in b.tables]
    assert kept == [f"edge{k}" for k in range(40 - len(kept), 40)] and 1 < len(kept) < 40, kept
    assert not b.tables[("10.0.0.1", "plant", "edge39")].incomplete
    # DATA of a forgotten edge node decodes as before its birth was seen: without a name, not an undefined alias
    nd = decode_payload(parse_topic("spBv1.0/plant/NDATA/edge0"), _data(3), b)
    assert nd.metrics[0].name is None and "unknown_alias" not in nd.problems
    nd = decode_payload(parse_topic("spBv1.0/plant/NDATA/edge39"), _data(3), b)
    assert nd.metrics[0].name == "line39/cell3/m3" and nd.problems == ()


def test_a_birth_larger_than_the_bound_is_kept_in_part_and_says_so():
    """One birth alone past the bound: learned up to it (the other tables forgotten first); its table is
    incomplete, so DATA with an alias it lacks is not an undefined alias (that alert would be false)."""
    b = Births(limit=1 << 20)
    b.broker = "10.0.0.1"
    _learn(b, 1, 500)
    _learn(b, 2, 20_000)
    t = b.tables[("10.0.0.1", "plant", "edge2")]
    assert list(b.tables) == [("10.0.0.1", "plant", "edge2")] and t.incomplete
    assert 1_000 < len(t.names) < 20_000 and b.pool.used <= 1 << 20
    nd = decode_payload(parse_topic("spBv1.0/plant/NDATA/edge2"), _data(19_999), b)
    assert nd.metrics[0].name is None and "unknown_alias" not in nd.problems
    nd = decode_payload(parse_topic("spBv1.0/plant/NDATA/edge2"), _data(0), b)
    assert nd.metrics[0].name == "line2/cell0/m0"
    # its next NBIRTH starts afresh, its bytes given back first
    decode_payload(parse_topic("spBv1.0/plant/NBIRTH/edge2"), _birth(2, 10), b)
    t = b.tables[("10.0.0.1", "plant", "edge2")]
    assert not t.incomplete and len(t.names) == 10 and b.pool.used == t.nbytes


def test_analyze_says_when_births_were_forgotten(tmp_path, monkeypatch):
    """A run whose births pass the bound raises one memory_cap alert naming sparkplug.births."""
    from ids.cli import main
    from ids.commands.bench_hostile import PcapOut, _mqtt_len, _mqtt_str, _send_whole, mqtt_client
    monkeypatch.setattr(births_mod, "BIRTHS_BYTES", 1 << 20)
    path = tmp_path / "births.pcap"
    out = PcapOut(str(path))
    c = mqtt_client(out, b"edge")
    for k in range(12):
        body = _mqtt_str(b"spBv1.0/plant/NBIRTH/edge%d" % k) + _birth(k, 1_000)
        _send_whole(c, b"\x30" + _mqtt_len(len(body)) + body)
    c.close()
    out.close()
    alerts = tmp_path / "alerts.ndjson"
    assert main(["analyze", str(path), "-q", "--workers", "1", "-o", str(alerts)]) == 0  # in this process: the
    #                                                                                    bound patched above
    caps = [d for d in map(json.loads, alerts.read_text().splitlines())
            if d["rule"]["id"] == "otids.anomaly.sensor.memory_cap"]
    assert len(caps) == 1 and "sparkplug.births" in caps[0]["event"]["reason"], caps


def test_workers_send_large_events_in_small_batches(tmp_path):
    """With --workers, a worker sent its events every 8,192 packets or 2,048 events: 8,192 packets of births
    are some 23 events of 15,000 metrics, ~100 MB as objects, held by the worker while it pickled them and by
    the parent that unpickled them (200 births: 271 and 344 MB). It now also sends after each MiB of its
    own packets (runner.BATCH_BYTES): 78 and 71 MB. Peak RSS of the process tree, 30 births here."""
    from conftest import cli_peak_rss_kb
    from ids.commands.bench_hostile import PcapOut, sparkplug_births
    path = tmp_path / "births.pcap"
    out = PcapOut(str(path))
    sparkplug_births(out, 30)
    out.close()
    kb = cli_peak_rss_kb("analyze", str(path), "-q", "--workers", "2", "-o", str(tmp_path / "a.ndjson"))
    assert kb < 130_000, f"peak RSS {kb / 1024:.0f} MB"  # 257 MB before, 80 MB now


# ------------------------------------------------------------------ OPC UA PubSub metadata (the same class)
def _meta(writer: int, names: int):
    from ids.protocols.mqtt.pubsub.decode import PubSubDataSet, PubSubMessage
    return PubSubMessage("json", "ua-metadata", "pub1", datasets=(PubSubDataSet(writer_id=writer),),
                         metadata_fields=tuple((f"f{writer}.{i}", "Int32") for i in range(names)))


def _uadp(writer: int):
    from ids.protocols.mqtt.pubsub.decode import PubSubDataSet, PubSubMessage
    return PubSubMessage("uadp", "ua-data", "pub1",
                         datasets=(PubSubDataSet(writer_id=writer, fields=(("0", 1, "Int32"),)),))


def test_pubsub_metadata_counts_what_it_holds_and_is_bounded():
    """The writers' field names (UADP fields are named from ua-metadata): counted as tracemalloc sees them,
    bounded in bytes (before: 4,096 writers by count only, ~245 MB of one-letter names), the least recently
    described forgotten first (their fields stay numbered), and the pool says it refused."""
    from ids.protocols.mqtt.pubsub.metadata import MetaTable
    gc.collect()
    tracemalloc.start()
    try:
        t = MetaTable()
        before = tracemalloc.get_traced_memory()[0]
        for w in range(40):  # each message made and dropped as the session does: the names live on in t
            t.apply("10.0.0.1", _meta(w, 500))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(t.names) == 40 and 0.9 * held <= t.pool.used <= 1.3 * held, (t.pool.used, held)
    small = MetaTable(limit=256 << 10)
    for w in range(40):
        small.apply("10.0.0.1", _meta(w, 500))
    assert small.pool.used <= 256 << 10 and small.pool.hits > 0 and 1 < len(small.names) < 40
    assert list(small.names)[-1] == ("10.0.0.1", "pub1", 39)
    named = small.apply("10.0.0.1", _uadp(39)).datasets[0]
    assert named.named and named.fields[0][0] == "f39.0"
    assert not small.apply("10.0.0.1", _uadp(0)).datasets[0].named  # forgotten: numbered, as before its metadata
