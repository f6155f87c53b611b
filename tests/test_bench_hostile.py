"""`otids bench-hostile --scale 0.01`: every flood case runs end to end at a hundredth of its size, within
the memory goal, and raises the alert that names what it hit (figures are docs/ROBUSTNESS.md's; no time
is asserted here)."""
from __future__ import annotations

import json

from tests.conftest import run_cli


def test_every_case_runs_small_and_says_what_it_hit(tmp_path):
    out = tmp_path / "rows.json"
    p = run_cli("bench-hostile", "--scale", "0.01", "--no-tshark", "--workdir", str(tmp_path / "w"),
                "--json", str(out))
    from ids.commands.bench_hostile import CASES
    rows = {r["case"]: r for r in json.loads(out.read_text())}
    assert set(rows) == set(CASES), p.stdout
    for name, r in rows.items():
        assert r["rss_mb"] <= 250, (name, r["rss_mb"])
    for port in (502, 4840, 8883):
        assert "anomaly.flow.sustained_garbage" in rows[f"garbage_{port}"]["alerts"], rows[f"garbage_{port}"]
    assert "anomaly.ip.fragment_flood" in rows["fragment_flood"]["alerts"]
    assert "anomaly.flow.stream_buffer_cap" in rows["ooo_segments"]["alerts"]
    assert "anomaly.modbus.unanswered_flood" in rows["modbus_unanswered"]["alerts"]
    assert "auth.opcua.policy_none" in rows["opcua_auth_none"]["alerts"]
    assert rows["mqtt_topics_baseline"]["alerts"]["baseline.mqtt.new_topic"] > 9_000
    assert rows["mqtt_topics_learn"]["alerts"]["learned mqtt topics"] == 10_000  # within the bound at this size
    assert rows["modbus_ranges_learn"]["alerts"]["learned modbus intervals"] == 327
    assert rows["mqtt_refusals"]["alerts"]["auth.mqtt.connect_refused"] == 500
    assert rows["rule_threshold_both"]["alerts"]["bench.mqtt.publish_flood"] >= 10
    assert rows["mqtt_clients_baseline"]["alerts"]["baseline.new_asset"] >= 900
    assert rows["tcp_random_flags"]["alerts"], rows["tcp_random_flags"]  # the flags alone are findings
    assert not list((tmp_path / "w").glob("*.pcap"))  # captures are removed once measured
