"""The compiled per-packet path (Cython, setup.py) gives byte-identical output to the pure-Python modules it
is compiled from: every capture in pcaps/ and ../shared/corpus through `analyze` (alerts and every event)
and `assets --json`, once in a process forced pure (OTIDS_PURE=1) and once in a process running compiled.

The compiled modules must be built (CI builds them in .ci/install: `pip install -e .` compiles them);
when they are not, this test fails and says how to build them, rather than compare pure with pure."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ids import _build  # noqa: E402
from conftest import finish_driver, start_driver  # noqa: E402

DRIVER = ROOT / "tests" / "compiled_driver.py"
BUILD_HINT = ("build them with `python3 setup.py build_ext --inplace` (needs Cython and a C compiler; "
              "`pip install -e .` does it too)")


def _env(pure: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(_build.PURE_ENV, None)
    if pure:
        env[_build.PURE_ENV] = "1"
    return env


def test_compiled_matches_pure_on_every_capture():
    corpus = ROOT.parent / "shared" / "corpus"
    assert corpus.is_dir(), f"{corpus} is missing: this test runs the corpus both ways"
    pure_p, comp_p = start_driver(DRIVER, True), start_driver(DRIVER, False)  # side by side: two cores, half the wait
    pure, comp = finish_driver(pure_p, "pure (OTIDS_PURE=1)"), finish_driver(comp_p, "compiled")

    assert set(pure["modules"]) == set(_build.COMPILED)
    assert all(s == f"pure ({_build.PURE_ENV}=1)" for s in pure["modules"].values()), pure["modules"]
    not_compiled = {m: s for m, s in comp["modules"].items() if s != "compiled"}
    assert not not_compiled, f"compiled modules not in use, {BUILD_HINT}: {not_compiled}"

    caps = pure["captures"]
    assert sum(1 for n in caps if n.startswith("corpus/")) >= 100 and sum(1 for n in caps if n.startswith("pcaps/")) >= 40
    assert caps.keys() == comp["captures"].keys()
    differ = [(name, kind) for name, outs in caps.items() for kind, data in outs.items()
              if comp["captures"][name][kind] != data]
    assert not differ, f"compiled output differs from pure Python on {len(differ)} outputs: {differ[:10]}"
    assert any(outs["events"] not in ("", "no file") for outs in caps.values())


def test_pure_env_loads_sources():
    """OTIDS_PURE=1 loads every listed module from its .py source, whatever is built beside it."""
    code = ("import importlib, json; from ids import _build\n"
            "print(json.dumps({m: importlib.import_module(m).__file__ for m in _build.COMPILED}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(True), capture_output=True, check=True)
    files = json.loads(out.stdout)
    assert all(f.endswith(".py") for f in files.values()), files


def test_stale_extension_is_not_used(tmp_path):
    """An extension built from other source (the .py edited since the build) never runs: the finder loads the
    source and says why. Checked on a copy of the package so the worktree is untouched."""
    import shutil
    pkg = tmp_path / "ids"
    shutil.copytree(ROOT / "ids", pkg, ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.html"))
    manifest = pkg / _build.MANIFEST
    manifest.write_text(json.dumps({m: "0" * 64 for m in _build.COMPILED}))
    code = ("import json, ids.flow.tcp as t; from ids import _build\n"
            "print(json.dumps([t.__file__, _build.STATE['ids.flow.tcp']]))")
    env = dict(_env(False), PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, check=True)
    path, state = json.loads(out.stdout)
    assert path.endswith("tcp.py") and state.startswith("pure (source changed since the build"), (path, state)


def test_version_says_how_modules_run():
    out = subprocess.run([sys.executable, "-m", "ids.cli", "version"], cwd=ROOT, env=_env(True),
                         capture_output=True, text=True, check=True).stdout
    assert "0 of" in out and "ids.flow.table" in out and f"pure ({_build.PURE_ENV}=1)" in out, out


def test_checksum_sum_matches_big_integer_path():
    """The compiled decoder's word sum is the pure path's `int.from_bytes(...) % 0xFFFF` (odd lengths padded
    with a zero byte), at the edges: empty, one byte, odd and even lengths, all-ones words."""
    import random
    from ids.decode.packet import _sum_mod
    rnd = random.Random(7)
    bufs = [b"", b"\x01", b"\xff" * 2, b"\xff" * 3, b"\xff\xff" * 40000] + [
        bytes(rnd.randrange(256) for _ in range(n)) for n in range(1, 70)]
    for data in bufs:
        for start in (0, 1, 3):
            if start > len(data):
                continue
            v = int.from_bytes(data[start:], "big")
            if (len(data) - start) & 1:
                v <<= 8
            assert _sum_mod(data, start, len(data)) == v % 0xFFFF, (data[:8], start)


def test_modbus_value_readers_match_the_pure_definitions_at_the_edges():
    """The compiled parser reads registers and coils from the bytes (ids/protocols/modbus/parser.py); the
    pure path uses struct and the bit table. Same values and value types, same errors (short buffers, odd
    counts and offsets), over random small buffers and arguments at and past the edges."""
    import random
    import struct
    from itertools import chain

    from ids.protocols.modbus import parser as P
    bits = [tuple(bool(b >> i & 1) for i in range(8)) for b in range(256)]

    def regs(buf, off, n, cap):
        return struct.unpack_from(f">{min(n, cap)}H", buf, off)

    def coils(buf, off, nbytes, count, cap):
        n = min(count, cap)
        return tuple(chain.from_iterable(map(bits.__getitem__, buf[off:off + min(nbytes, (n + 7) >> 3)])))[:n]

    def outcome(f, *a):
        try:
            v = f(*a)
        except Exception as e:  # noqa: BLE001 - the error's type is what is compared
            return "error", type(e)
        return "ok", v, tuple(type(x) for x in v)
    rnd = random.Random(3)
    for _ in range(20000):
        buf = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 12)))
        a = (buf, rnd.randrange(-2, 8), rnd.randrange(-2, 8), rnd.randrange(0, 8))
        assert outcome(P._regs, *a) == outcome(regs, *a), a
        a = (buf, rnd.randrange(-2, 8), rnd.randrange(-2, 14), rnd.randrange(-3, 70), rnd.randrange(1, 70))
        assert outcome(P._coils, *a) == outcome(coils, *a), a


def test_charged_table_counts_every_way_in_and_out():
    """Charged (ids/flow/budget.py) reaches its dict through the C API when compiled: the pool's count is
    the sum of what the table holds after replacing, deleting and popping, and a refused charge says so."""
    from ids.flow.budget import Charged, Pool
    pool = Pool("t", 100)
    t = Charged(pool, len)
    t[1] = "aaaa"
    t[2] = "bb"
    t[1] = "c"  # replaced: the old value's bytes given back
    assert dict(t) == {1: "c", 2: "bb"} and pool.used == 3 and not t.take_over()
    del t[2]
    assert t.pop(1) == "c" and t.pop(9, None) is None and pool.used == 0 and not t
    with pytest.raises(KeyError):
        t.pop(9)
    with pytest.raises(KeyError):
        del t[9]
    t[3] = "x" * 101
    assert t.take_over() and not t.take_over() and pool.hits == 1 and pool.used == 101
    free = Charged(None, len)
    free[1] = "abc"
    del free[1]
    assert not free and pool.used == 101


def test_runs_without_cython_installed(tmp_path):
    """Without Cython importable, the modules fall back to ids/_cy.py and give the same output."""
    outs = []
    for block in (False, True):
        out = tmp_path / f"alerts-{block}.ndjson"
        code = ("import sys\n"
                + ("sys.modules['cython'] = None\n" if block else "")
                + "from ids.cli import main\n"
                f"rc = main(['analyze', 'pcaps/modbus-alert-storm.pcap', '-q', '-o', {str(out)!r}])\n"
                "import ids.flow.table as t\n"
                "print(rc, t.cython.__name__)")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(True), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        rc, shim = r.stdout.split()
        assert rc == "0" and (shim == "ids._cy") == block, r.stdout
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") > 0
