"""Every capture in ../shared/corpus (all protocols, Zeek's fuzz traces included) goes through the pipeline
with no exception and no hang; damaged captures end in exactly one `otids: error: FILE: byte N: ...` line and
exit code 1, after analysing what came before the damage.

Most files run in this process through ids.pipeline.analyze (fast); a representative subset and the damaged
copies (made in tmp_path, never in the corpus) run through `python -m ids.cli analyze` as a user would.
"""
from __future__ import annotations

import gzip
import json
import random
import re
import signal
import struct
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT, need
from ids.protocols.modbus.messages import ModbusTransaction
from ids.pipeline import analyze

SUFFIXES = (".pcap", ".pcapng", ".cap", ".trace")
PER_FILE_LIMIT = 30  # seconds; the largest corpus file takes well under one


def corpus_captures() -> list[Path]:
    return sorted(p for p in need(CORPUS).rglob("*") if p.is_file() and p.suffix in SUFFIXES)


@contextmanager
def deadline(seconds: int, what: str):
    def fire(signum, frame):
        raise TimeoutError(f"{what}: no result after {seconds} s (hang?)")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_the_glob_finds_every_capture_of_the_manifest():
    manifest = json.loads(need(CORPUS / "MANIFEST-files.json").read_text())
    found = {str(p.relative_to(CORPUS)) for p in corpus_captures()}
    assert found == set(manifest), "MANIFEST-files.json and the files on disk disagree: nothing may be skipped"


def test_every_corpus_capture_runs_through_the_pipeline():
    """In one process: no exception, no hang, no capture error (the corpus files are intact)."""
    seen = 0
    for path in corpus_captures():
        rel = path.relative_to(CORPUS)
        with deadline(PER_FILE_LIMIT, str(rel)):
            run, col = analyze([str(path)])
        assert run.errors == [], f"{rel}: {run.errors}"
        assert run.files_ok == 1 and run.decoder.stats.packets > 0, rel
        seen += 1
    assert seen >= 100


def cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "ids.cli", "analyze", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    return p


#: Through the real command line: each format (pcap LE/BE µs/ns, pcapng with several interfaces), each
#: protocol, the fuzz traces, and the largest files.
CLI_SUBSET = [
    "zeek/Traces/modbus/fuzz-72.pcap",
    "zeek/Traces/modbus/fuzz-1011.pcap",
    "zeek/Traces/modbus/modbus-and-non-modbus-p502.pcap",
    "zeek/Traces/modbus/modbusBig.pcap",
    "collections/ITI-ICS-Security-Tools/pcaps/ModbusTCP/mb2.pcap",
    "icsnpp/icsnpp-opcua-binary/tests/traces/opcua_with-gap_with-handshake.pcap",
    "collections/MQTT-Short-Connect/TLS/captures/TLS_13/mqtt_tls13_ses_est.pcapng",
    "ndpi/pcap/coap_mqtt.pcap",
    "suricata-verify/mqtt-frames-truncated/input.pcap",
]


def test_cli_on_a_representative_subset(tmp_path):
    paths = [str(need(CORPUS / rel)) for rel in CLI_SUBSET]
    p = cli("-q", "-o", str(tmp_path / "a.ndjson"), "--events", str(tmp_path / "e.ndjson"), *paths)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    docs = [json.loads(x) for x in (tmp_path / "e.ndjson").read_text().splitlines()]
    assert any(d["event"]["dataset"] == "otids.modbus" for d in docs)


# ============================================================================================ damaged files

def _records(data: bytes) -> list[int]:
    """Byte offsets of the records of a little-endian microsecond pcap."""
    offs, off = [], 24
    while off + 16 <= len(data):
        offs.append(off)
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    return offs


def damaged(tmp: Path) -> dict[str, tuple[Path, int | None]]:
    """name -> (file, byte offset the error must name, None where any offset will do)."""
    src = need(CORPUS / "ndpi/pcap/modbus.pcap").read_bytes()  # 102 Modbus packets, classic LE pcap
    recs = _records(src)
    ng = need(CORPUS / "ndpi/pcap/mqtt.pcap").read_bytes()  # pcapng
    out: dict[str, tuple[bytes, int | None]] = {}
    cut = recs[50] + 30  # inside the 51st record's data
    out["cut-mid-record.pcap"] = (src[:cut], recs[50])
    out["cut-mid-record-header.pcap"] = (src[:recs[60] + 7], recs[60])
    out["garbage-header.pcap"] = (b"\x00\x11\x22\x33" + src[4:], 0)
    out["zero-length.pcap"] = (b"", 0)
    rnd = random.Random(7)
    out["random-bytes.pcap"] = (bytes(rnd.randrange(256) for _ in range(4096)), 0)
    huge = bytearray(src)
    struct.pack_into("<I", huge, recs[20] + 8, 0x7FFFFFFF)  # captured length of record 21
    out["huge-caplen.pcap"] = (bytes(huge), recs[20])
    out["cut-mid-block.pcapng"] = (ng[:len(ng) - 100], None)
    out["cut.pcap.gz"] = (gzip.compress(src)[:1500], None)
    files = {}
    for name, (data, off) in out.items():
        (tmp / name).write_bytes(data)
        files[name] = (tmp / name, off)
    return files


ERROR_LINE = re.compile(r"^otids: error: (.+): byte (\d+): \S.*$")


@pytest.mark.parametrize("name", ["cut-mid-record.pcap", "cut-mid-record-header.pcap", "garbage-header.pcap",
                                  "zero-length.pcap", "random-bytes.pcap", "huge-caplen.pcap",
                                  "cut-mid-block.pcapng", "cut.pcap.gz"])
def test_damaged_capture_gives_one_error_line(tmp_path, name):
    path, offset = damaged(tmp_path)[name]
    run, _ = analyze([str(path)])
    want = 1 if run.decoder.stats.packets else 2  # nothing analysed is exit 2 (#20 item 2)
    for quiet in (("-q",), ()):  # with and without the terminal summary
        p = cli(*quiet, "-o", str(tmp_path / "a.ndjson"), "--events", str(tmp_path / "e.ndjson"), str(path),
                timeout=60)
        assert p.returncode == want, (quiet, p.stderr)
        errors = [line for line in p.stderr.splitlines() if "error" in line]
        assert len(errors) == 1, p.stderr
        m = ERROR_LINE.match(errors[0])
        assert m and m.group(1) == str(path), errors[0]
        if offset is not None:
            assert int(m.group(2)) == offset, errors[0]


def test_packets_before_the_damage_are_analysed(tmp_path):
    files = damaged(tmp_path)
    good = need(CORPUS / "ndpi/pcap/modbus.pcap")
    _, whole = analyze([str(good)])
    run, col = analyze([str(files["cut-mid-record.pcap"][0])])
    assert len(run.errors) == 1 and run.errors[0].startswith(f"{files['cut-mid-record.pcap'][0]}: byte ")
    assert run.decoder.stats.packets == 50
    n_cut = sum(type(e) is ModbusTransaction and e.response is not None for e in col.events)
    n_all = sum(type(e) is ModbusTransaction and e.response is not None for e in whole.events)
    assert 20 <= n_cut < n_all  # the first 50 packets' exchanges, and no more


def test_damaged_file_among_good_ones(tmp_path):
    """Several files are one capture: the damaged one is reported, the others are still analysed."""
    bad, _ = damaged(tmp_path)["garbage-header.pcap"]
    good = str(need(CORPUS / "zeek/Traces/modbus/modbusSmall.pcap"))
    p = cli("-q", "-o", str(tmp_path / "a.ndjson"), "--events", str(tmp_path / "e.ndjson"), good, str(bad), good)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and str(bad) in p.stderr
    docs = [json.loads(x) for x in (tmp_path / "e.ndjson").read_text().splitlines()]
    assert sum(d["event"]["dataset"] == "otids.modbus" for d in docs) >= 32
