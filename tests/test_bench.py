"""`otids bench` runs end to end and prints its figures (no timing is asserted: benchmarks are commands)."""
from __future__ import annotations

import re

from conftest import CORPUS, need, need_tool, run_cli


def test_bench_generates_and_compares_with_tshark(tmp_path):
    need_tool("tshark")
    gen = need(CORPUS.parent / "bench" / "gen_modbus_pcap.py")
    p = run_cli("bench", "--generator", str(gen), "--connections", "3", "--txns", "20",
                "--workdir", str(tmp_path))
    out = p.stdout
    assert re.search(r"capture: .*\(\d[\d,]* packets", out)
    for name in ("otids analyze (alerts)", "otids analyze (alerts + all events)", "tshark -Y modbus -T fields"):
        line = next(l for l in out.splitlines() if l.startswith(name))
        assert re.search(r"\d+\.\d+\s+[\d,]+\s+\d+\.\d+x\s+\d+MB$", line), line


def test_bench_names_missing_generator(tmp_path):
    p = run_cli("bench", "--generator", str(tmp_path / "nope.py"), check_rc=2)
    assert "gen_modbus_pcap.py" in p.stderr and len(p.stderr.splitlines()) == 1
