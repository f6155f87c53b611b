"""Fuzzing in the test suite: every committed seed and every past crash (fuzz/crashes: kept as regression
inputs) replayed through its harness in-process, then a short coverage-guided run of each harness under
atheris (seconds each) through fuzz/run.py, the runner the long runs use (docs/ROBUSTNESS.md)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))
from fuzz.harnesses import HARNESSES, run_session  # noqa: E402
from ids.protocols import DISSECTED, REGISTRY  # noqa: E402

FUZZ = ROOT / "fuzz"


def _inputs(kind: str):
    out = []
    for h in sorted(HARNESSES):
        d = FUZZ / kind / h
        if d.is_dir():
            out += [pytest.param(h, p, id=f"{h}/{p.name[:16]}") for p in sorted(d.iterdir()) if p.is_file()]
    return out


def test_every_harness_has_committed_seeds():
    missing = [h for h in HARNESSES if not any((FUZZ / "seeds" / h).glob("*"))]
    assert not missing, f"no seeds for {missing}: run python3 fuzz/seeds.py fuzz/seeds --max-seeds 8 --max-len 4096"


def test_every_protocol_has_a_session_harness():
    """Every protocol the sensor dissects, and every one it only identifies, has its session harness."""
    missing = [n for n in REGISTRY if f"session_{n}" not in HARNESSES]
    assert not missing, f"no session harness for {missing}"
    assert {f"session_{n}" for n in DISSECTED} <= set(HARNESSES)
    assert not [h for h in HARNESSES if h.startswith("session_") and h[8:] not in REGISTRY], "a stale harness"


#: Protocols whose committed seeds are named otherwise, and why (an identification matter, not the harness's)
NAMED_OTHERWISE: dict[str, str] = {}


@pytest.mark.parametrize("proto", sorted(REGISTRY))
def test_session_seeds_reach_their_protocol(proto):
    """A harness whose seeds never reach the protocol would fuzz the flow table only: at least one committed
    seed of each session harness makes a connection record that names its protocol."""
    seeds = sorted((FUZZ / "seeds" / f"session_{proto}").iterdir())
    named = set().union(*(run_session(proto, p.read_bytes()) for p in seeds))
    assert NAMED_OTHERWISE.get(proto, proto) in named, f"session_{proto} seeds are named {sorted(named)}"


@pytest.mark.parametrize("harness,path", _inputs("crashes"))
def test_past_crashes_stay_fixed(harness, path):
    HARNESSES[harness](path.read_bytes())


def test_importing_the_harnesses_leaves_the_product_alone():
    """The harnesses share one strict Identifier among the tables they build, only while a harness runs.
    They used to patch ids.flow.table at import: the suite imports them at collection, so every in-process
    test after that ran with strict probes and one Identifier shared by all tables, not the product."""
    from fuzz import harnesses as hs
    from ids.flow import identify, table
    assert table.Identifier is identify.Identifier
    hs.session_modbus(b"\x00" + hs.encode_record(False, b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01"))
    assert table.Identifier is identify.Identifier


def test_seeds_run_clean():
    for h, fn in sorted(HARNESSES.items()):
        for p in sorted((FUZZ / "seeds" / h).iterdir()):
            fn(p.read_bytes())


def test_harness_finds_a_session_exception():
    """The harness must see what the flow table's guard hides in production: a raising session."""
    import dataclasses

    from fuzz import harnesses as hs
    from ids.protocols.modbus import session as mb

    class Boom(mb.ModbusSession):  # planted through the registry: the compiled class's methods are read-only
        def data(self, *a):
            raise IndexError("planted")
    orig = hs.PROTOCOLS["modbus"]
    hs.PROTOCOLS["modbus"] = dataclasses.replace(orig, session=Boom)
    try:
        with pytest.raises(IndexError, match="planted"):
            hs.session_modbus(b"\x00" + hs.encode_record(False, b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01"))
    finally:
        hs.PROTOCOLS["modbus"] = orig


def test_probe_harnesses_cover_every_probe_and_its_contract():
    """Every protocol with a content probe has a probe_<name> harness, and a probe answering outside its
    contract (1, 0, -1) or raising is a finding there, not the identifier's silent "not this protocol"."""
    from fuzz import harnesses as hs
    assert {f"probe_{n}" for n, s in REGISTRY.items() if s.probe} == {h for h in HARNESSES if h.startswith("probe_")}
    spec = REGISTRY["dnp3"]
    orig = spec.probe
    try:
        object.__setattr__(spec, "probe", lambda buf, to_server: 2)
        with pytest.raises(hs.Finding, match="returned 2"):
            hs.probe_dnp3(b"\x01\x05\x64")
        object.__setattr__(spec, "probe", lambda buf, to_server: buf[99])
        with pytest.raises(IndexError):
            hs.probe_dnp3(b"\x01\x05\x64")
    finally:
        object.__setattr__(spec, "probe", orig)
    hs.probe_dnp3(b"\x01\x05\x64\x05\xc0\x01\x00\x00\x04\xe9\x21")


def test_probe_exception_is_a_finding():
    """The identifier turns a probe's exception into "not this protocol"; the harness must still see it."""
    from fuzz import harnesses as hs
    spec = REGISTRY["dnp3"]
    orig = spec.probe

    def boom(buf, to_server):
        raise IndexError("planted")
    object.__setattr__(spec, "probe", boom)  # a frozen spec: only a test plants a probe
    try:
        with pytest.raises(IndexError, match="planted"):
            hs.session_dnp3(b"\x02" + hs.encode_record(False, b"\x05\x64\x05\xc0\x01\x00\x00\x04\xe9\x21"))
    finally:
        object.__setattr__(spec, "probe", orig)
    hs.session_dnp3(b"\x02" + hs.encode_record(False, b"\x05\x64\x05\xc0\x01\x00\x00\x04\xe9\x21"))


#: The atheris smoke run: every harness but the identified-only sessions, of which one per driver (TCP or
#: UDP by the head byte, non-IP frames): they share the driver and differ in a probe, which the seed replay
#: above covers; one process each would add minutes to the suite. Of the probe harnesses (one function
#: call each) one, for the same reason.
SMOKE = [h for h in HARNESSES if not h.startswith(("session_", "probe_")) or h[8:] in DISSECTED] + \
    ["session_dnp3", "session_profinet_dcp", "probe_dnp3"]


def _found(d) -> str:
    """The inputs a failed smoke run wrote, in the failure message: CI's temporary folder is gone after the
    run, and the base64 here is what to put in fuzz/crashes/HARNESS to reproduce and keep the case."""
    import base64
    files = sorted(d.iterdir()) if d.is_dir() else []
    return "".join(f"\n{f.name} ({f.stat().st_size} bytes), base64:\n{base64.b64encode(f.read_bytes()[:8192]).decode()}"
                   for f in files[:3])


def test_atheris_smoke_run_of_every_harness(tmp_path):
    import atheris  # noqa: F401  - a test dependency (pyproject.toml): missing, this fails
    p = subprocess.run([sys.executable, str(FUZZ / "run.py"), *SMOKE, "--time", "2", "--runs", "300", "--jobs", "2",
                        "--work", str(tmp_path / "work"), "--artifacts", str(tmp_path / "crashes")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr[-6000:] + _found(tmp_path / "crashes")
    lines = p.stdout.splitlines()[1:]
    assert len(lines) == len(SMOKE)
    for line in lines:
        name, execs, cov = line.split()[:3]
        assert int(execs) > 0 and int(cov) > 0, line
    assert not list((tmp_path / "crashes").iterdir())


def test_instrument_scope_fuzzes_only_the_named_modules(tmp_path):
    """--instrument (the identified-only session runs, docs/ROBUSTNESS.md): exactly the modules in scope are
    instrumented ({proto} naming the harness's protocol), the rest runs as the product does."""
    import atheris  # noqa: F401
    tmp = tmp_path / "tmp"  # the runner's own temporary folder goes with the run (one was left per run)
    tmp.mkdir()
    p = subprocess.run([sys.executable, str(FUZZ / "run.py"), "session_dnp3", "--time", "2", "--runs", "300",
                        "--instrument", "ids.flow.identify,ids.flow.ndpi,ids.protocols.{proto},fuzz",
                        "--from", "pcaps", "--work", str(tmp_path / "work"), "--artifacts", str(tmp_path / "crashes"),
                        "--log", str(tmp_path / "log")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TMPDIR=str(tmp)))
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert not list(tmp.iterdir()), list(tmp.iterdir())
    name, execs, cov = p.stdout.splitlines()[1].split()[:3]
    assert name == "session_dnp3" and int(execs) > 0 and int(cov) > 0, p.stdout
    log = (tmp_path / "log" / "session_dnp3.log").read_text()
    listed = [ln for ln in log.splitlines() if "modules instrumented:" in ln]
    assert listed, log[-2000:]
    assert set(listed[0].split(": ", 2)[2].split()) == {
        "fuzz", "fuzz.harnesses", "ids.flow.identify", "ids.flow.ndpi", "ids.protocols.dnp3"}, listed[0]


def test_a_failed_run_shows_the_python_traceback():
    """atheris writes the uncaught exception on stdout and libFuzzer its report on stderr: the runner keeps
    one stream, and its failure tail leads with the exception (CI once showed only "fuzz target exited")."""
    from fuzz.run import _tail
    out = "\n".join(["INFO: Instrumenting ids.x"] * 50 + [" === Uncaught Python exception: ===", "ValueError: day is out",
                    "Traceback (most recent call last):", '  File "ids/detect/rules/yamlsrc.py", line 77'] +
                    [f"#{i} NEW cov: 1" for i in range(40)] + ["==1== ERROR: libFuzzer: fuzz target exited",
                                                                  "Test unit written to /tmp/crash-1"])
    t = _tail(out)
    assert "ValueError: day is out" in t and "yamlsrc.py" in t and "Test unit written to /tmp/crash-1" in t
    assert "Instrumenting" not in t
