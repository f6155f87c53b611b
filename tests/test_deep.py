"""Deep mode (`otids analyze --deep`): tshark names what neither nDPI nor otids' probes can. Modbus/UDP from
a real UDP peer on loopback (pcaps/make_network_captures.py): nDPI and the probes leave it unnamed, tshark
dissects it as mbudp."""
from __future__ import annotations

from pathlib import Path

from conftest import need_tool, read_ndjson, run_cli

CAP = Path(__file__).resolve().parent.parent / "pcaps" / "modbus-udp.pcap"


def _conn(tmp_path, *extra):
    ev = tmp_path / "e.ndjson"
    run_cli("analyze", str(CAP), "-q", "-o", str(tmp_path / "a.ndjson"), "--events", str(ev), *extra)
    (d,) = [d for d in read_ndjson(ev) if d["event"]["dataset"] == "otids.conn"]
    return d


def test_without_deep_nobody_names_it(tmp_path):
    d = _conn(tmp_path)
    assert "protocol" not in d["network"] and d["destination"]["port"] == 502 and d["network"]["packets"] == 6


def test_deep_mode_asks_tshark(tmp_path):
    need_tool("tshark")
    d = _conn(tmp_path, "--deep")
    assert d["network"]["protocol"] == "modbus" and d["otids"]["conn"]["identified_by"] == "content"
    assert d["otids"]["conn"]["notes"] == ["named_by_tshark"]
