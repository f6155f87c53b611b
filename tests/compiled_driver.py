"""Run by tests/test_compiled.py in a subprocess, once with OTIDS_PURE=1 and once without: every capture in
pcaps/ and ../shared/corpus through `analyze` (every event written) and `assets --json`, in this one process.
Prints one JSON object: how each per-packet module ran, and each capture's outputs (hex) by kind."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import golden  # noqa: E402  (the capture list the golden files use)
from ids import _build  # noqa: E402
from ids.cli import main  # noqa: E402


def _run(argv: list[str]) -> int:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def _read(p: str) -> str:
    try:
        return Path(p).read_bytes().hex()
    except FileNotFoundError:
        return "no file"


def outputs(path: Path) -> dict[str, str]:
    os.chdir(ROOT)
    rel = os.path.relpath(path, ROOT)
    with tempfile.TemporaryDirectory() as td:
        a, e, j = (os.path.join(td, n) for n in ("a.ndjson", "e.ndjson", "assets.json"))
        rc = _run(["analyze", rel, "-q", "-o", a, "--events", e])
        res = {"alerts": _read(a), "events": _read(e), "analyze_exit": str(rc)}
        rc = _run(["assets", rel, "--json", "-o", j])
        res["assets"], res["assets_exit"] = _read(j), str(rc)
    return res


if __name__ == "__main__":
    caps = {name: outputs(p) for name, p in golden.captures()}
    json.dump({"modules": dict(_build.status()), "captures": caps}, sys.stdout)
