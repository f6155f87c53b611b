"""`--workers N` gives what one process gives, byte for byte: alerts, events (with their ids and line order),
the run summary, the asset inventory and a learned baseline, over every capture in pcaps/ and
../shared/corpus (ids/parallel). Captures go in sets, each set one continuous capture (as `analyze A B C`
reads them), compared for N = 1, 2 and 3. And a worker that dies fails the run loudly, leaving the outputs
as they were."""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import golden  # noqa: E402

from ids.cli import main  # noqa: E402


def _sets() -> dict[str, list[str]]:
    """Captures by folder (pcaps/, pcaps/hostile, corpus/zeek, ...): a set is analysed as one capture."""
    out: dict[str, list[str]] = {}
    for name, path in golden.captures():
        parts = name.split("/")
        key = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
        out.setdefault(key, []).append(str(path))
    return out


SETS = _sets()


def test_every_capture_is_in_a_set():
    assert golden.CORPUS.is_dir(), f"{golden.CORPUS} is missing: the identity test needs ../shared/corpus"
    assert sum(len(v) for v in SETS.values()) == len(golden.captures()) >= 150


def _run(argv: list[str]) -> tuple[int, str]:
    from ids import x509
    # every run as in a fresh process: certificates an earlier run described must not help the checks of the
    # next (the parent of --workers N learns them from its workers: ids.x509.JOURNAL)
    x509._CACHE.clear()
    x509._BY_SHA256.clear()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, re.sub(r" in [0-9.]+ s;", " in - s;", err.getvalue())  # the summary's one timing figure


def _outputs(paths: list[str], n: int, out: Path, analyze_only: bool = False) -> dict[str, object]:
    a, e, j, b = (out / x for x in ("alerts.ndjson", "events.ndjson", "assets.json", "baseline.yaml"))
    for p in (a, e, j, b):
        p.unlink(missing_ok=True)
    res: dict[str, object] = {}
    # without an event sink, workers send only what the parent's detectors need (ids/parallel/offload.py)
    res["analyze, alerts only"] = _run(["analyze", *paths, "-o", str(a), "--rules", "rules",
                                        "--lists", "pcaps/modbus-demo.lists.yml", "--registry",
                                        "pcaps/auth-registry.yaml", "--workers", str(n)])
    res["alerts only"] = a.read_bytes() if a.exists() else None
    res["plain analyze"] = _run(["analyze", *paths, "-o", str(a), "--workers", str(n)])
    res["plain alerts"] = a.read_bytes() if a.exists() else None
    res["analyze"] = _run(["analyze", *paths, "-o", str(a), "--events", str(e), "--rules", "rules",
                           "--lists", "pcaps/modbus-demo.lists.yml", "--registry", "pcaps/auth-registry.yaml",
                           "--workers", str(n)])
    if not analyze_only:
        res["assets"] = _run(["assets", *paths, "--json", "-o", str(j), "--workers", str(n)])
        res["learn"] = _run(["learn", *paths, "-q", "-o", str(b), "--workers", str(n)])
    for p in (a, e) if analyze_only else (a, e, j, b):
        res[p.name] = p.read_bytes() if p.exists() else None
    return res


@pytest.mark.parametrize("name", sorted(SETS))
def test_same_output_for_any_worker_count(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # outputs name rule files by relative path
    paths = [os.path.relpath(p, ROOT) for p in SETS[name]]
    one = _outputs(paths, 1, tmp_path)
    assert one["events.ndjson"], f"{name}: no events at all, nothing compared"
    for n in (2, 3):  # assets and learn are the same data path with other detectors: 2 workers show them
        got = _outputs(paths, n, tmp_path, analyze_only=n == 3)
        for kind, value in got.items():
            assert value == one[kind], f"{name}: {kind} differs between 1 and {n} workers"


# ------------------------------------------------------------------------------------------ failure

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_modbus_pcap.py"


@pytest.fixture(scope="module")
def busy_capture(tmp_path_factory) -> Path:
    """1M Modbus packets: about two seconds of work for two compiled workers, time enough to kill one
    (100k packets took 0.2 s once the per-packet path was compiled, and the run ended before the kill)."""
    assert GENERATOR.is_file(), f"{GENERATOR} is missing: the failure tests need ../shared/bench"
    out = tmp_path_factory.mktemp("busy") / "busy.pcap"
    subprocess.run([sys.executable, str(GENERATOR), str(out), "500", "1000"], check=True, capture_output=True)
    return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _start(capture: Path, out: Path) -> tuple[subprocess.Popen, list[int]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "ids.cli", "analyze", str(capture), "-q", "-o", str(out),
                          "--workers", "2"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while len(kids := _children(p.pid)) < 2:
        assert p.poll() is None and time.monotonic() < deadline, "the workers never started"
        time.sleep(0.02)
    time.sleep(0.1)  # into the capture (a loaded machine once saw a run end within 0.3 s of its workers)
    return p, kids


def test_a_dead_worker_fails_the_run_loudly(busy_capture, tmp_path):
    out = tmp_path / "alerts.ndjson"
    out.write_text("previous run\n")
    p, kids = _start(busy_capture, out)
    os.kill(kids[1], signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    assert err.strip().splitlines() == [f"otids: error: worker 1 (pid {kids[1]}) died (killed by signal 9) before "
                                        "the end of the capture; the run is incomplete"], err
    assert out.read_text() == "previous run\n"  # never a silently partial result
    assert not _children(p.pid)


def test_ctrl_c_stops_every_worker(busy_capture, tmp_path):
    out = tmp_path / "alerts.ndjson"
    p, kids = _start(busy_capture, out)
    os.killpg(p.pid, signal.SIGINT)  # as the terminal does: the whole process group
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "otids: interrupted"
    for k in kids:
        assert not os.path.exists(f"/proc/{k}") or open(f"/proc/{k}/stat").read().split()[2] == "Z"


@pytest.mark.parametrize("n, msg", [("0", "--workers must be at least 1 (got 0)"),
                                    ("256", "--workers must be at most 255 (got 256)")])
def test_a_worker_count_out_of_range_is_one_line(n, msg, tmp_path):
    out = tmp_path / "alerts.ndjson"
    rc, err = _run(["analyze", str(ROOT / "pcaps" / "live-sample.pcap"), "-o", str(out), "--workers", n])
    assert (rc, err) == (2, f"otids: error: {msg}\n")
    assert not out.exists()
