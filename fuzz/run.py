#!/usr/bin/env python3
"""Coverage-guided fuzzing of otids with atheris (libFuzzer for Python), independent of otids' CLI.

    python3 fuzz/run.py HARNESS... [--time S] [--runs N] [--from PATH...] [--work DIR] [--artifacts DIR]
    python3 fuzz/run.py all --time 240                 # every harness in turn (one process at a time)
    python3 fuzz/run.py --list

Each harness (fuzz/harnesses.py) runs in its own process with the `ids` package instrumented for
coverage. Its corpus is, in order: a writable working folder (--work, default a temporary one), the
committed seeds (fuzz/seeds/HARNESS), every past crash (fuzz/crashes/HARNESS: kept as regression inputs),
and seeds cut at start from --from captures and folders (pcaps/, ../shared/corpus: read in place).
A crash is written to --artifacts (default fuzz/crashes/HARNESS/) and ends that harness's run with a
non-zero status. One line of figures per harness at the end: executions, coverage (edges), features,
corpus size, crashes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"

# Modules a harness imports lazily: imported inside the instrumentation block so their coverage counts.
_LAZY = ("ids.x509", "ids.protocols.tls.certificates", "ids.detect.auth.certs", "ids.detect.auth.verdicts",
         "ids.detect.auth.registry", "ids.detect.baseline.document", "ids.detect.rules.loader",
         "ids.detect.rules.suricata", "ids.detect.ml.store", "ids.config",
         "ids.output.elasticsearch.answers", "ids.output.elasticsearch.backend", "ids.flow.ndpi", "ids.flow.deep")


def _names() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from fuzz.harnesses import HARNESSES
    return list(HARNESSES)


def _scope(name: str, spec: str) -> list[str]:
    """--instrument's module prefixes for harness `name` ({proto}: the harness's protocol)."""
    proto = name.split("_", 1)[1] if name.startswith(("session_", "probe_")) else name
    return [p.strip().replace("{proto}", proto) for p in spec.split(",") if p.strip()]


def _within(module: str, prefixes: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _modules() -> list[str]:
    """Every module and package of ids and fuzz, from the files (importing them to walk would load them
    before the instrumentation hook)."""
    out = []
    for top in ("ids", "fuzz"):
        for f in (ROOT / top).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append(".".join(parts))
    return out


def child(name: str, fuzzer_args: list[str]) -> None:
    """In the fuzzing process: instrument, then hand the harness to libFuzzer (never returns)."""
    import importlib

    import atheris
    sys.path.insert(0, str(ROOT))
    scope = _scope(name, os.environ.get(SCOPE_ENV, "")) or ["ids", "fuzz"]
    # An editable install of another checkout must not supply modules: atheris's import hook passes over
    # namespace packages (ids.detect has no __init__.py here) and would take that checkout's instead.
    def _name(f) -> str:  # finders are classes or instances
        k = f if isinstance(f, type) else type(f)
        return f"{k.__module__}.{k.__name__}".lower()
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in _name(f)]
    # `ids` first, outside the block: its __init__ puts the finder that picks the pure-Python twins of the
    # compiled modules (ids/_build.py) at the head of sys.meta_path. Imported inside, that finder would come
    # before atheris's and load the hot modules (flow table, Modbus and MQTT sessions and parsers) itself,
    # uninstrumented; imported here, atheris's finder comes first and wraps what that finder returns.
    import ids  # noqa: F401
    before = set(sys.modules)  # ids and its loader (ids._build): not instrumented, nothing to fuzz there
    # atheris includes whole top-level packages and excludes exact module names: with --instrument, every
    # module of ids and fuzz outside the scope is excluded by name (and runs compiled where it is built)
    skip = [] if scope == ["ids", "fuzz"] else [m for m in _modules() if not _within(m, scope)]
    with atheris.instrument_imports(include=["ids", "fuzz"], exclude=skip):
        import fuzz.harnesses as h
        for m in _LAZY:
            importlib.import_module(m)
    fn = h.HARNESSES[name]
    stray = [m.__file__ for n, m in list(sys.modules.items())
             if n.startswith("ids") and getattr(m, "__file__", None) and not m.__file__.startswith(str(ROOT))]
    if stray:
        sys.exit(f"fuzz/run.py: modules from outside {ROOT}: {stray[:3]}")
    blind = [n for n, m in list(sys.modules.items())
             if _within(n, scope) and str(getattr(m, "__file__", "") or "").endswith((".so", ".pyd"))]
    if blind:
        sys.exit(f"fuzz/run.py: compiled modules would run uninstrumented: {blind[:3]} (OTIDS_PURE=1 unset?)")
    plain = [n for n, m in list(sys.modules.items())
             if n.startswith("ids.") and _within(n, scope) and n not in before and getattr(m, "__spec__", None) is not None
             and m.__spec__.origin
             and m.__spec__.origin.endswith(".py") and not type(m.__spec__.loader).__name__.startswith("Atheris")]
    if plain:
        sys.exit(f"fuzz/run.py: modules loaded without atheris's instrumentation: {sorted(plain)[:5]}")
    inst = sorted(n for n, m in list(sys.modules.items()) if n.split(".")[0] in ("ids", "fuzz")
                  and getattr(m, "__spec__", None) is not None and type(m.__spec__.loader).__name__.startswith("Atheris"))
    print(f"fuzz/run.py: {len(inst)} modules instrumented: {' '.join(inst)}", file=sys.stderr, flush=True)
    atheris.Setup([sys.argv[0]] + fuzzer_args, fn)
    atheris.Fuzz()


SCOPE_ENV = "OTIDS_FUZZ_SCOPE"  # --instrument, handed to the child
_STAT = re.compile(r"stat::(\w+):\s*(\d+)")
_WRITTEN = re.compile(r"Test unit written to (\S+)")
_COV = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def run_one(name: str, seconds: int, runs: int, sources: list[str], work: str | None, artifacts: str | None,
            max_len: int, log: Path | None, scope: str = "") -> dict:
    tmp = tempfile.mkdtemp(prefix=f"otids-fuzz-{name}-")
    try:  # the folder (seeds cut from --from, the working corpus without --work) goes with the run: it was
        #   left behind, one per harness per run (1,281 of them, up to 2 MB each, after a week of suites)
        return _run_one(name, seconds, runs, sources, work, artifacts, max_len, log, scope, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_one(name, seconds, runs, sources, work, artifacts, max_len, log, scope, tmp) -> dict:
    sys.path.insert(0, str(ROOT))
    from fuzz import seeds as seedmod
    work_dir = Path(work) / name if work else Path(tmp) / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    art = Path(artifacts) if artifacts else FUZZ / "crashes" / name
    art.mkdir(parents=True, exist_ok=True)
    dirs = [str(work_dir)]
    for d in (FUZZ / "seeds" / name, FUZZ / "crashes" / name):
        if d.is_dir() and any(d.iterdir()):
            dirs.append(str(d))
    if sources:
        extra = Path(tmp) / "from"
        n = seedmod.write(seedmod.build(name, [Path(s) for s in sources], 64, max_len), extra)
        if n:
            dirs.append(str(extra))
    args = [f"-max_total_time={seconds}", f"-max_len={max_len}", "-timeout=20", "-rss_limit_mb=1536",
            "-print_final_stats=1", f"-artifact_prefix={art}/"]
    if runs:
        args.append(f"-runs={runs}")
    t0 = time.time()
    # Pure Python modules even where compiled ones are built in place: atheris instruments Python bytecode,
    # so a compiled parser would run blind (no coverage feedback from the code most exposed to the wire).
    # With --instrument, only the modules in scope must be pure (the child refuses compiled ones there);
    # the rest runs as the product does, compiled where built.
    env = dict(os.environ, OTIDS_PURE="1") if not scope else dict(os.environ, **{SCOPE_ENV: scope})
    if scope:
        env.pop("OTIDS_PURE", None)
    # atheris prints an uncaught exception's traceback on stdout, libFuzzer its report on stderr: one stream,
    # so the log and the failure tail hold the traceback (CI once showed only "fuzz target exited")
    p = subprocess.run([sys.executable, __file__, "--child", name, "--", *args, *dirs], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout
    if log is not None:
        log.write_text(out)
    stats = {k: int(v) for k, v in _STAT.findall(out)}
    cov = _COV.findall(out)
    # the files this run wrote, from libFuzzer's report (harnesses run at once share the artifacts folder)
    crashes = sorted({os.path.basename(m) for m in _WRITTEN.findall(out)})
    return {"harness": name, "rc": p.returncode, "seconds": round(time.time() - t0),
            "execs": stats.get("number_of_executed_units", int(cov[-1][0]) if cov else 0),
            "cov": int(cov[-1][1]) if cov else 0, "ft": int(cov[-1][2]) if cov else 0,
            "corpus": int(cov[-1][3]) if cov else 0, "crashes": crashes,
            "tail": _tail(out) if p.returncode else ""}


def _tail(out: str) -> str:
    """What a failed run shows: the Python exception with its traceback where there is one, and libFuzzer's
    last lines (where the crashing input was written)."""
    lines = out.splitlines()
    at = next((i for i, ln in enumerate(lines) if "Uncaught Python exception" in ln), None)
    head = lines[at:at + 60] if at is not None else []
    return "\n".join(head + ["..."] + lines[-12:] if head else lines[-30:])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        rest = argv[2:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        child(argv[1], rest)
        return 0
    names = _names()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("harness", nargs="*", help=f"'all' or any of: {', '.join(names)}")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--time", type=int, default=60, help="seconds per harness (default 60)")
    ap.add_argument("--runs", type=int, default=0, help="stop a harness after this many executions")
    ap.add_argument("--from", dest="sources", action="append", default=[],
                    help="captures or folders to cut extra seeds from at start (read in place)")
    ap.add_argument("--work", help="keep working corpora here (one folder per harness)")
    ap.add_argument("--artifacts", help="write crashes here instead of fuzz/crashes/HARNESS")
    ap.add_argument("--max-len", type=int, default=16384)
    ap.add_argument("--log", help="folder for each harness's full libFuzzer output")
    ap.add_argument("--instrument", default="",
                    help="instrument only these module prefixes, comma-separated ({proto}: the harness's "
                         "protocol), the rest running compiled where built; default: every ids and fuzz "
                         "module, pure Python. E.g. ids.flow.identify,ids.flow.ndpi,ids.protocols.{proto},fuzz")
    ap.add_argument("--jobs", type=int, default=1,
                    help="harnesses fuzzed at once, one process each (default 1; the test suite's smoke run uses 2)")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(names))
        return 0
    todo = names if a.harness == ["all"] or not a.harness else a.harness
    bad = [h for h in todo if h not in names]
    if bad:
        print(f"fuzz/run.py: unknown harness {', '.join(bad)} (--list shows them)", file=sys.stderr)
        return 2
    status = 0
    print(f"{'harness':22} {'execs':>10} {'cov':>6} {'ft':>7} {'corpus':>6} {'secs':>5}  crashes")
    def one(h: str) -> dict:
        log = Path(a.log) / f"{h}.log" if a.log else None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        return run_one(h, a.time, a.runs, a.sources, a.work, a.artifacts, a.max_len, log, a.instrument)

    from concurrent.futures import ThreadPoolExecutor  # threads only wait: each harness fuzzes in its own process
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        results = pool.map(one, todo)  # in the order given, each as soon as it and those before it are done
        for h, r in zip(todo, results):
            print(f"{h:22} {r['execs']:>10} {r['cov']:>6} {r['ft']:>7} {r['corpus']:>6} {r['seconds']:>5}  "
                  f"{' '.join(r['crashes']) or '-'}", flush=True)
            if r["rc"]:
                status = 1
                print(r["tail"], file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
