"""`otids bench` runs end to end and prints its figures (no timing is asserted: benchmarks are commands)."""
from __future__ import annotations

import re

from conftest import CORPUS, need, need_tool, run_cli


def test_bench_generates_and_compares_with_tshark(tmp_path):
    need_tool("tshark")
    gen = need(CORPUS.parent / "bench" / "gen_modbus_pcap.py")
    p = run_cli("bench", "--generator", str(gen), "--connections", "3", "--txns", "20", "--mixed", "2,20,4,2",
                "--max-workers", "3", "--site-rules", "40", "--workdir", str(tmp_path))
    out = p.stdout
    for workload in ("reference (Modbus/TCP)", "mixed (Modbus/TCP + OPC UA + MQTT)"):
        assert re.search(re.escape(workload) + r": .*\(\d[\d,]* packets", out), out
    rows = [l.strip() for l in out.splitlines() if l.startswith("  ")]
    for name in ("tshark", "otids 1 process, pure Python", "otids 1 process, as installed",
                 "otids 1 process, + every event", "otids --workers 2", "otids --workers 3"):
        lines = [l for l in rows if l.startswith(name + " ")]
        assert len(lines) == 2, (name, out)  # one per workload
        for line in lines:
            assert re.search(r"\d+\.\d+\s+[\d,]+\s+\d+\.\d+x\s+\d+\.\d+\s+\d+MB$", line), line
    site = [l for l in rows if l.startswith("otids 1 process, + 40 site rules ")]
    assert len(site) == 1, out  # the reference workload only: the rules are Modbus rules
    assert re.search(r"^40 site rules keep \d+% of the no-rules throughput", "\n".join(rows), re.M), out


def test_bench_names_missing_generator(tmp_path):
    p = run_cli("bench", "--generator", str(tmp_path / "nope.py"), check_rc=2)
    assert "gen_modbus_pcap.py" in p.stderr and len(p.stderr.splitlines()) == 1
