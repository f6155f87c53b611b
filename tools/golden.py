"""Golden outputs: what otids writes for every capture in pcaps/ and ../shared/corpus, kept as regression files.

For each capture it runs, in this process, `analyze` (shipped rules, the auth registry, every event written),
`assets --json` and `learn`, and stores the outputs gzip-compressed (mtime 0, so the files are byte-stable)
under tests/golden/. `python3 tools/golden.py` checks; `--update` rewrites; `--only SUBSTR` narrows.
A change that alters output on purpose updates the files in the same commit and says why.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: this checkout's ids, not an installed copy of another
    sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus"
GOLDEN = ROOT / "tests" / "golden"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def captures() -> list[tuple[str, Path]]:
    """(golden name, path) for every capture, sorted; names are relative to pcaps/ or prefixed corpus/."""
    out = []
    for base, prefix in ((ROOT / "pcaps", "pcaps/"), (CORPUS, "corpus/")):
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.name.lower().endswith(CAPTURE_SUFFIXES):
                out.append((prefix + str(p.relative_to(base)), p))
    return out


def _run(argv: list[str]) -> int:
    from ids.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        return main(argv)


def outputs(path: Path) -> dict[str, bytes]:
    """Every output otids writes for one capture, by kind."""
    res: dict[str, bytes] = {}
    os.chdir(ROOT)  # relative paths only: outputs name rule files, and must not depend on the checkout's place
    path = Path(os.path.relpath(path, ROOT))
    with tempfile.TemporaryDirectory() as td:
        a, e, j, b = (os.path.join(td, n) for n in ("a.ndjson", "e.ndjson", "assets.json", "baseline.yaml"))
        rc = _run(["analyze", str(path), "-q", "-o", a, "--events", e, "--rules", "rules",
                   "--lists", "pcaps/modbus-demo.lists.yml",
                   "--registry", "pcaps/auth-registry.yaml"])
        res["alerts"] = _read(a) + f"# exit {rc}\n".encode()
        res["events"] = _read(e)
        rc = _run(["assets", str(path), "--json", "-o", j])
        res["assets"] = _read(j) + f"# exit {rc}\n".encode()
        rc = _run(["learn", str(path), "-q", "-o", b])
        res["baseline"] = _read(b) + f"# exit {rc}\n".encode()
    return res


def _read(p: str) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b"# no file\n"


def golden_path(name: str, kind: str) -> Path:
    return GOLDEN / f"{name}.{kind}.gz"


def compress(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(data)
    return buf.getvalue()


def read_golden(name: str, kind: str) -> bytes | None:
    p = golden_path(name, kind)
    if not p.exists():
        return None
    return gzip.decompress(p.read_bytes())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="rewrite the golden files")
    ap.add_argument("--only", help="captures whose name contains this")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    bad = 0
    for name, path in captures():
        if args.only and args.only not in name:
            continue
        for kind, data in outputs(path).items():
            if args.update:
                gp = golden_path(name, kind)
                gp.parent.mkdir(parents=True, exist_ok=True)
                z = compress(data)
                if not gp.exists() or gp.read_bytes() != z:
                    gp.write_bytes(z)
                continue
            want = read_golden(name, kind)
            if want != data:
                bad += 1
                print(f"DIFFERS {name} {kind}: golden sha256 "
                      f"{hashlib.sha256(want or b'').hexdigest()[:12]} now {hashlib.sha256(data).hexdigest()[:12]}")
    if not args.update:
        print("golden: all identical" if not bad else f"golden: {bad} outputs differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
