"""limits.memory_total (issue #16, docs/ROBUSTNESS.md): one bound that the per-table bounds share
(ids/flow/budget.py: Shared). A flood that fills several tables at once, each within its own bound, held
the sum of their bounds; with the shared bound what tracemalloc measures stays within it, each table is
left about its share, and the alert each table raises when it gives up state says memory_total."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

from ids.config import Config, LimitsConfig
from ids.flow import budget

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile_state import NS, SERVER, T0, Flows, _conn, _held, _ip  # noqa: E402

CAP = "otids.anomaly.sensor.memory_cap"


def _flood(total: int):
    """5,000 half-open Modbus flows (from 2,000 addresses: the summary's host set, in the total too, stays
    small) through a flow table bounded at 1 MiB, and 15,000 spoofed SYN records
    through the scan detector bounded at 512 KiB, interleaved; `total` installed as memory_total (0: none)."""
    from ids.detect.network.scan import ScanDetector
    budget.install(total)
    try:
        t = Flows.__new__(Flows)
        t.events, t.anomalies = [], {}
        cfg = Config().replace(limits=LimitsConfig(flow_table_bytes=1 << 20, talkers_bytes=1 << 20))
        from ids.flow.table import FlowTable
        from ids.protocols import DISSECTED
        t.table = FlowTable(cfg, DISSECTED, t._emit)
        t.port, t.ts = 502, T0
        scan = ScanDetector(Config().network, 512 << 10)
        alerts: list = []

        def fill():
            for i in range(15_000):
                if i % 3 == 0:
                    t.ts = T0 + i * 1000
                    t._pkt(struct.pack("!I", 0x0A000001 + i % 2000), SERVER, 1024 + i % 60000, 502, 1000, 0, 0x02)
                alerts.extend(a for a in scan.on_event(_conn(i, _ip(i), _ip(i % 1250, 172), 502, T0 + i * 1000))
                              or () if a.rule_id == CAP)
        held = _held(fill)
        alerts += [a for a in scan.flush(T0 + 3600 * NS) if a.rule_id == CAP]
        return held, t, alerts, budget.SHARED
    finally:
        budget.install(0)


def test_tables_filled_at_once_share_memory_total():
    alone, t0, _, _ = _flood(0)
    assert alone > 2 * (768 << 10), f"{alone:,}: the tables (flows 1 MiB, talkers, scan 512 KiB) are not filled"
    total = 768 << 10
    held, t, alerts, g = _flood(total)
    assert held <= total * 1.25, f"{held:,} bytes held for memory_total {total:,} ({alone:,} without it)"
    # the flow table (at its own 1 MiB without the total) gave up flows for the others (its share is not the
    # measure here: the summary's host set, in the total now, joins with its own bound of 42 MB)
    assert t.table.flow_bytes < t0.table.flow_bytes / 4, (t.table.flow_bytes, t0.table.flow_bytes)
    assert g.refused.get("flow_table") and any(k.startswith("network.scan.") for k in g.refused)
    full = [e for e in t.events if e.action == "flow_table_full"]
    assert full and all(e.details.get("memory_total") == total for e in full[-1:])
    tables = [x for a in alerts for x in a.extra["sensor"].get("tables", [a.extra["sensor"]])]
    assert any(x.get("memory_total") == total for x in tables), tables


def test_shares_only_matter_when_the_total_is_reached():
    """Below the total every table may grow to its own bound (a flood of one kind is not held to that
    table's share); at the total a table over its share gives up state, one within it is let grow (the
    one over its share gives up when it next grows)."""
    mib = 1 << 20
    g = budget.Shared(10 * mib)
    assert g.hold("a", 6 * mib, 8 * mib)  # alone: all the room there is, up to its own bound
    assert g.hold("b", 2 * mib, 4 * mib)  # shares now a 6.67, b 3.33 MiB
    assert g.hold("a", 8 * mib, 8 * mib)  # 10 MiB together: at the total, not over it
    assert g.hold("b", 3 * mib, 4 * mib)  # over the total, b within its share: grows
    assert not g.hold("a", 8 * mib + 1, 8 * mib)  # over the total and over its share: gives up
    assert g.refused == {"a": 1} and g.share("a") == 8 * mib * 10 // 12
    assert g.hold("a", 6 * mib, 8 * mib) and g.used == 9 * mib  # what it gave up comes off the total


def test_mqtt_clients_under_a_baseline_within_memory_total(tmp_path):
    """bench-hostile mqtt_clients_baseline in small (2,000 MQTT clients, a CONNECT and a PUBLISH each, under
    a baseline of the first 100) through the analyze pipeline with its default detectors: the flood fills
    the flow table, the talkers, the auth tables, the baseline's deviations, the Sparkplug flows and the
    output's occurrence window at once, each within its own bound (scaled down here), and their sum past
    what one process should hold: 339 MB at full size before memory_total. With a total a third of the
    tables' bounds, what the run holds at its peak (tracemalloc) drops by more than the tables gave up
    and memory_cap/table_full alerts say memory_total."""
    import gc
    import json
    import tracemalloc

    from ids.cli import build_parser, build_run, close_outputs
    from ids.commands.bench_hostile import PcapOut, mqtt_clients
    from ids.config import load_config
    from tests.conftest import run_cli
    cap, small = tmp_path / "clients.pcap", tmp_path / "first.pcap"
    for path, n in ((cap, 2_000), (small, 100)):
        o = PcapOut(str(path))
        mqtt_clients(o, n)
        o.close()
    bl = tmp_path / "bl.yaml"
    run_cli("learn", str(small), "-q", "-o", str(bl))
    limits = ("  flow_table_bytes: 2097152\n  talkers_bytes: 262144\n  auth_state_bytes: 1048576\n"
              "  baseline_state_bytes: 524288\n")

    def peak(total: int) -> tuple[int, list]:
        cfg = tmp_path / f"c{total}.yaml"
        cfg.write_text(f"limits:\n{limits}  memory_total: {total}\n")
        out = tmp_path / f"a{total}.ndjson"
        args = build_parser().parse_args(["analyze", str(cap), "-q", "-o", str(out), "-c", str(cfg),
                                          "--baseline", str(bl)])
        config = load_config(str(cfg))
        run = build_run(args, config)
        gc.collect()
        tracemalloc.start()
        try:
            run.analyze_file(str(cap))
            run.finish()
            top = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            budget.install(0)
        close_outputs(run)
        return top, [json.loads(line) for line in out.read_text().splitlines()]
    alone, _ = peak(0)
    total = 1 << 20
    held, alerts = peak(total)
    assert alone - held > 3 << 19, f"peak {held:,} bytes with memory_total {total:,}, {alone:,} without"
    said = [a for a in alerts if a["rule"]["id"] in ("otids.anomaly.sensor.memory_cap", "otids.anomaly.flow.table_full")
            and "memory_total" in json.dumps(a)]
    assert said, "no alert says memory_total"


def test_workers_share_memory_total_with_the_parent(tmp_path):
    """--workers N: the parent and every worker held the whole memory_total each (a fork copies the
    parent's bound), so three processes could hold three totals; tcp_random_flags with two workers held 346 MB
    summed PSS. Each process now holds process_share(total, N): the further processes' own cost off first,
    the rest split evenly; the workers' table_full alerts say that share."""
    import json

    from ids.commands.bench_hostile import PcapOut, tcp_random_flags
    from ids.flow.budget import PROCESS_BYTES, process_share
    from tests.conftest import run_cli
    cap = tmp_path / "flags.pcap"
    o = PcapOut(str(cap))
    tcp_random_flags(o, 20_000)
    o.close()
    total = 2 * PROCESS_BYTES + (3 << 20)
    share = process_share(total, 2)
    assert share == 1 << 20
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"limits:\n  memory_total: {total}\n")
    out = tmp_path / "a.ndjson"
    run_cli("analyze", str(cap), "-q", "-o", str(out), "-c", str(cfg), "--workers", "2")
    said = {json.dumps(a.get("otids", {})) for a in map(json.loads, out.read_text().splitlines())
            if a["rule"]["id"] == "otids.anomaly.flow.table_full"}
    assert said and all(f'"memory_total": {share}' in s for s in said), said


def _live_syn_flood(tmp_path, total: int, tag: str, *args: str, buffer_mb: int = 2, flows: int = 4_000) -> list[str]:
    """`flows` SYNs over a veth pair into `otids live` with limits.memory_total `total` and live.buffer_mb
    `buffer_mb`; the details of its table_full alerts. Needs root, iproute2 and tcpreplay, like the other live tests."""
    import json
    import os

    import pytest

    from conftest import flood_capture, need_tool
    from ids.commands.bench_hostile import syn_flood
    from ids.live.netns import SensorProcess, VethPair
    if os.geteuid() != 0:
        pytest.fail("the live memory_total tests need root (network namespaces, AF_PACKET)")
    need_tool("ip")
    need_tool("tcpreplay")
    cap = flood_capture(tmp_path / "syn.pcap", syn_flood, flows)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"limits:\n  memory_total: {total}\nlive:\n  buffer_mb: {buffer_mb}\n")
    with VethPair(f"otids-{tag}{os.getpid()}") as v:
        s = SensorProcess(v, tmp_path, "-c", str(cfg), *args, "-q", events=False)
        try:
            s.wait_ready()
            r = v.replay(str(cap), pps=4000)
            s.wait_frames(r["sent"])
            assert s.stop() == 0, s.output
        finally:
            s.kill()
    said = [json.dumps(a.get("otids", {})) for a in map(json.loads, s.alerts.read_text().splitlines())
            if a["rule"]["id"] == "otids.anomaly.flow.table_full"]
    assert said, s.output
    return said


def test_live_workers_share_memory_total_with_the_sensor(tmp_path):
    """`otids live --workers N`: the sensor set each worker's flow bounds to 1/N but left limits.memory_total
    whole in every process (the fork copied it), so N processes could hold N totals. Each of the N capturing
    processes now holds split_total(total, N), less its capture ring (budget.live_share); a SYN flood over the
    veth pair fills the flow tables past that share, and their table_full alerts say it. (Without the share,
    4,000 flows are far within the total: no table_full at all.)"""
    from ids.flow.budget import PROCESS_BYTES, live_share, split_total
    total = PROCESS_BYTES + (10 << 20)
    share = split_total(total, 2) - (2 << 20)  # less each process's 2 MiB capture ring
    assert share == 3 << 20 == live_share(total, 2, 2 << 20)
    assert live_share(120 << 20, 2, 64 << 20) == split_total(120 << 20, 2) // 2  # rings past the total: half
    said = _live_syn_flood(tmp_path, total, "m", "--workers", "2")
    assert all(f'"memory_total": {share}' in x for x in said), said


def test_live_workers_split_the_capture_buffer(tmp_path):
    """live.buffer_mb is the sensor's buffer per interface: with --workers N each of the N processes in the
    fanout group (which gets about 1/N of the frames) maps 1/N of it. Each mapped the whole before, so the
    processes' rings together were N times the buffer (2 x 64 MiB by default, more than the tables' 120 MiB
    total) and each process's tables kept only the floor, half its part. Here 8 MiB over two processes: 4 MiB
    each, so each table share is its part less 4 MiB (before: the floor, half its part)."""
    from ids.flow.budget import PROCESS_BYTES, live_share, split_total
    total = PROCESS_BYTES + (24 << 20)
    share = split_total(total, 2) - (4 << 20)
    assert share == live_share(total, 2, 4 << 20) != live_share(total, 2, 8 << 20)
    said = _live_syn_flood(tmp_path, total, "b", "--workers", "2", buffer_mb=8, flows=8_000)
    assert all(f'"memory_total": {share}' in x for x in said), said


def test_live_sensor_counts_its_capture_ring_in_memory_total(tmp_path):
    """`otids live` maps its capture ring (live.buffer_mb, 64 MiB by default) whole into its RSS: under the live
    floods 81 MiB of its 277 MiB were mapped (ring and libraries), on top of the tables' 120 MiB total. The
    sensor's tables now hold memory_total less its ring (budget.live_share): a SYN flood fills the flow table
    past that, and its table_full alerts say it. (Without it, they said the whole total.)"""
    said = _live_syn_flood(tmp_path, 6 << 20, "r", "--method", "ring")
    assert all(f'"memory_total": {4 << 20}' in x for x in said), said  # 6 MiB less 2
