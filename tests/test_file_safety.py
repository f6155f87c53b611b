"""Issue #20 items 1-3: no run loses the engineer's files. Learning from nothing or from a damaged capture
leaves a baseline alone, a rewrite keeps the previous file, outputs appear only when a run completes, and a
full disk is one line naming the file with the alerts spooled, never a traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import PCAPS, ROOT, read_ndjson

DEMO = str(PCAPS / "modbus-demo.pcap")
SIM_BASELINE = ROOT / "models" / "sim-baseline.yaml"
RULES = ["--rules", str(ROOT / "rules"), "--lists", str(PCAPS / "modbus-demo.lists.yml")]


def otids(*args, rc: int, state=None):
    env = dict(os.environ)
    if state is not None:
        env["OTIDS_STATE_DIR"] = str(state)
    p = subprocess.run([sys.executable, "-m", "ids.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == rc, f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def text_capture(tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_text("these are my notes, not a capture\n")
    return bad


def truncated_capture(tmp_path):
    t = tmp_path / "cut.pcap"
    t.write_bytes(open(DEMO, "rb").read()[:3000])
    return t


# ------------------------------------------------------------------------------------------------ item 1

def test_learn_from_nothing_or_damage_never_touches_the_baseline(tmp_path):
    for src in (text_capture(tmp_path), truncated_capture(tmp_path), tmp_path / "empty.pcap"):
        if not src.exists():
            src.write_bytes(b"")
        b = tmp_path / "baseline.yaml"
        shutil.copy(SIM_BASELINE, b)
        before = b.read_bytes()
        p = otids("learn", src, "-o", b, rc=2)
        assert "left as it was" in p.stderr and str(src.name) in p.stderr
        assert b.read_bytes() == before
        assert not [f for f in os.listdir(tmp_path) if f.endswith((".tmp", ".bak"))]  # no temp, no backup


def test_learn_from_nothing_without_a_baseline_writes_nothing(tmp_path):
    b = tmp_path / "new.yaml"
    otids("learn", text_capture(tmp_path), "-o", b, rc=2)
    assert not b.exists()


def test_relearn_keeps_the_previous_file_and_keeps_entries_without_prune(tmp_path):
    b = tmp_path / "baseline.yaml"
    shutil.copy(SIM_BASELINE, b)
    before = b.read_text()
    p = otids("learn", DEMO, "-o", b, rc=0)
    assert "were not seen again and are kept; re-run with --prune" in p.stderr
    assert (tmp_path / "baseline.yaml.bak").read_text() == before
    new = b.read_text()
    for ip in ("127.0.0.11", "127.0.0.12", "127.0.0.61"):  # sim entries the demo does not show: still there
        assert f"ip: {ip}" in new
    # a second rewrite keeps the first backup and numbers the next one
    p = otids("learn", DEMO, "-o", b, "--prune", rc=0)
    assert (tmp_path / "baseline.yaml.bak").read_text() == before
    assert (tmp_path / "baseline.yaml.bak.1").read_text() == new
    assert "ip: 127.0.0.61" not in b.read_text()
    assert "previous baseline kept as" in p.stderr


# ------------------------------------------------------------------------------------------------ item 2

def test_nothing_analysed_keeps_previous_outputs_exit_2(tmp_path):
    a, e, j = tmp_path / "alerts.ndjson", tmp_path / "events.ndjson", tmp_path / "assets.json"
    for f in (a, e, j):
        f.write_text('{"previous":"run"}\n')
    for src in (text_capture(tmp_path), tmp_path / "zero.pcap"):
        if not src.exists():
            src.write_bytes(b"")
        p = otids("analyze", src, "-q", "-o", a, "--events", e, rc=2)
        assert "nothing analysed" in p.stderr and src.name in p.stderr
        otids("assets", src, "--json", "-o", j, rc=2)
        for f in (a, e, j):
            assert f.read_text() == '{"previous":"run"}\n'
    assert sorted(os.listdir(tmp_path)) == ["alerts.ndjson", "assets.json", "events.ndjson", "notes.pcap", "zero.pcap"]


def test_damaged_capture_still_writes_what_was_analysed_exit_1(tmp_path):
    a = tmp_path / "alerts.ndjson"
    a.write_text("old\n")
    otids("analyze", truncated_capture(tmp_path), "-q", "-o", a, rc=1)
    assert a.read_text() != "old\n"


def test_output_appears_only_under_its_temporary_name_while_running(tmp_path):
    """The sinks' OutputFile writes beside the target under a hidden name and renames at the end: until then
    the old file is intact, and discarding leaves nothing behind."""
    from ids.output.safefile import OutputFile
    f = tmp_path / "out.ndjson"
    f.write_text("old\n")
    o = OutputFile(str(f))
    o.write("new\n")
    o.flush()
    assert f.read_text() == "old\n" and len(os.listdir(tmp_path)) == 2
    o.discard()
    assert f.read_text() == "old\n" and os.listdir(tmp_path) == ["out.ndjson"]
    o = OutputFile(str(f))
    o.write("new\n")
    o.commit()
    assert f.read_text() == "new\n" and os.listdir(tmp_path) == ["out.ndjson"]


# ------------------------------------------------------------------------------------------------ item 3

def test_full_disk_alerts_one_line_exit_2_and_spooled(tmp_path):
    state = tmp_path / "state"
    p = otids("analyze", DEMO, "-q", "-o", "/dev/full", *RULES, rc=2, state=state)
    line = [x for x in p.stderr.splitlines() if "/dev/full" in x]
    assert len(line) == 1 and "No space left on device" in line[0] and "11 alert(s) not written" in line[0]
    spooled = list(state.iterdir())
    assert len(spooled) == 1 and str(spooled[0]) in line[0]
    assert len(read_ndjson(spooled[0])) == 11


def test_full_disk_events_one_line_exit_2_alerts_kept(tmp_path):
    a = tmp_path / "a.ndjson"
    p = otids("analyze", DEMO, "-o", a, "--events", "/dev/full", *RULES, rc=2, state=tmp_path / "s")
    line = [x for x in p.stderr.splitlines() if "/dev/full" in x and "error" in x]
    assert len(line) == 1 and "cannot write events" in line[0] and "30 of 30 event document(s) not written" in line[0]
    assert len(read_ndjson(a)) == 11


def test_full_disk_on_assets_and_baseline_is_one_line(tmp_path):
    for args in (("assets", DEMO, "--json", "-o", "/dev/full"), ("learn", DEMO, "-o", "/dev/full")):
        p = otids(*args, rc=2)
        assert p.stderr.count("\n") == 1 and "/dev/full" in p.stderr and "No space left" in p.stderr
