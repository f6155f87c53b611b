"""Shared test helpers. Third-party captures are read from ../shared/corpus (never copied here); a test
that needs something absent fails with the reason instead of skipping (CI has everything)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _corpus() -> Path:
    """../shared/corpus beside the repository; from a git worktree one level deeper (wt/NAME), the one
    beside its parent; OTIDS_CORPUS overrides both."""
    if os.environ.get("OTIDS_CORPUS"):
        return Path(os.environ["OTIDS_CORPUS"])
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared" / "corpus").is_dir():
            return base / "shared" / "corpus"
    return ROOT.parent / "shared" / "corpus"


CORPUS = _corpus()
PCAPS = ROOT / "pcaps"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"required test input missing: {path} (the corpus lives in ../shared/corpus)")
    return path


def need_tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"required tool '{name}' is not installed (.ci/run installs it)")
    return exe


def run_cli(*args: str, check_rc: int | None = 0, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m ids.cli ARGS` (the installed console script's code) and return the result."""
    p = subprocess.run([sys.executable, "-m", "ids.cli", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    assert "Traceback (most recent call last)" not in p.stderr, p.stderr
    if check_rc is not None:
        assert p.returncode == check_rc, f"rc={p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}"
    return p


def cli_peak_rss_kb(*args: str, timeout: int = 300) -> int:
    """Run `python -m ids.cli ARGS` (exit 0 required) and return the peak RSS in KiB of its process tree
    (workers included): measured from a child that runs it, whose RUSAGE_CHILDREN is that run's alone."""
    code = ("import resource, subprocess, sys; p = subprocess.run([sys.executable, '-m', 'ids.cli', *sys.argv[1:]]); "
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                       timeout=timeout)
    rc, kb = map(int, p.stdout.split())
    assert rc == 0, p.stderr
    return kb


def start_driver(driver: Path, pure: bool) -> subprocess.Popen:
    """A pure-vs-compiled identity driver (tests/*compiled_driver.py) in a process of its own: forced pure
    Python (OTIDS_PURE=1) or running the compiled modules; its JSON report comes from finish_driver()."""
    from ids import _build
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop(_build.PURE_ENV, None)
    if pure:
        env[_build.PURE_ENV] = "1"
    return subprocess.Popen([sys.executable, str(driver)], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish_driver(p: subprocess.Popen, what: str) -> dict:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, f"{what} run failed (exit {p.returncode}):\n{err.decode(errors='replace')[-3000:]}"
    return json.loads(out)


def read_ndjson(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture
def corpus() -> Path:
    return need(CORPUS)


def ml_score_batch(nf: int, t: int, clients, server: str = "127.0.0.11"):
    """One batch for the ML Alerter: a far-out row (every feature 1e6, score 1e9) per client of `server` at
    `t`, as the windower hands them over (metas, rows, scores, pair indexes): the alerter's state tests."""
    import numpy as np

    from ids.detect.ml.features import NS, RowMeta
    from ids.events import FlowContext
    metas = [RowMeta(t, t - 60 * NS, c, server, "modbus",
                     FlowContext(i, "tcp", "1:x", c, 40000, None, server, 502, None, None, False))
             for i, c in enumerate(clients)]
    n = len(clients)
    return metas, np.full((n, nf), 1e6), np.full(n, 1e9), np.zeros(n, dtype=np.int64)


def flood_capture(path, gen, n: int):
    """A bench-hostile case's capture (ids.commands.bench_hostile: `gen(out, n)`) written to `path`."""
    from ids.commands.bench_hostile import PcapOut
    out = PcapOut(str(path))
    gen(out, n)
    out.close()
    return path
