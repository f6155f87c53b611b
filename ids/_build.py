"""The compiled per-packet path: which modules setup.py compiles with Cython, and which of them this process
runs compiled or as pure Python (and why), for `otids version` and the pure-vs-compiled test.

The .py files are the one source and the reference. Cython compiles them unchanged (pure-Python mode); a
build records each source's SHA-256 in `_compiled.json` beside this file. At import, a meta-path finder
(installed by ids/__init__.py) loads the .py instead of the extension when env OTIDS_PURE=1, or when the
source changed since the build (a stale extension never runs edited code). Neither this module nor the
finder needs Cython: an install without it simply runs pure Python.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys

#: Modules on the per-packet path (profile of the reference capture, docs/PERFORMANCE.md "Compiled path").
COMPILED = (
    "ids.capture.pcapfile",
    "ids.decode.packet",
    "ids.decode.frag",
    "ids.flow.tcp",
    "ids.flow.table",
    "ids.flow.connlog",
    "ids.flow.budget",
    "ids.protocols.modbus.session",
    "ids.protocols.modbus.parser",
    "ids.protocols.modbus.anomalies",
    "ids.protocols.mqtt.session",
    "ids.protocols.mqtt.parser",
    "ids.detect.engine",
    "ids.detect.anomaly",
    "ids.pipeline",
    "ids.parallel.shard",
    "ids.parallel.runner",
    "ids.detect.ml.features",  # the ML windowing (docs/ML.md "Throughput"): extension types in features.pxd
    "ids.protocols.modbus.ml",  # the Modbus feature view of the ML detector
)
MANIFEST = "_compiled.json"
PURE_ENV = "OTIDS_PURE"
HERE = os.path.dirname(os.path.abspath(__file__))

#: module name -> "compiled" or "pure (reason)", filled as modules are imported
STATE: dict[str, str] = {}


def forced_pure() -> bool:
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def source_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _manifest() -> dict:
    try:
        with open(os.path.join(HERE, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class PureFinder:
    """Meta-path finder for the modules in COMPILED: hands the import system the .py file when the
    extension must not run (OTIDS_PURE=1, no extension, or an extension built from other source), and
    otherwise steps aside so the ordinary path finder loads the extension."""

    def __init__(self):
        self.pure = forced_pure()
        self.names = set(COMPILED)
        self._built: dict | None = None

    def find_spec(self, name, path, target=None):
        if name not in self.names or not path:
            return None
        leaf = name.rpartition(".")[2]
        for d in path:
            src = os.path.join(d, leaf + ".py")
            if os.path.isfile(src):
                break
        else:
            return None
        ext = next((os.path.join(d, leaf + s) for s in importlib.machinery.EXTENSION_SUFFIXES
                    if os.path.isfile(os.path.join(d, leaf + s))), None)
        if self.pure:
            why = f"pure ({PURE_ENV}=1)"
        elif ext is None:
            why = "pure (not built: no compiled extension beside the source)"
        else:
            if self._built is None:
                self._built = _manifest()
            want = self._built.get(name)
            if want is None:
                why = f"pure (extension not in {MANIFEST}: rebuild)"
            elif want != source_digest(src):
                why = "pure (source changed since the build: rebuild with python3 setup.py build_ext --inplace)"
            else:
                STATE[name] = "compiled"
                return None  # the path finder takes it: extensions come before sources
        STATE[name] = why
        return importlib.util.spec_from_file_location(name, src)


def install() -> None:
    if not any(isinstance(f, PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PureFinder())


def is_compiled(module) -> bool:
    return not (getattr(module, "__file__", "") or "").endswith((".py", ".pyc"))


def status() -> list[tuple[str, str]]:
    """(module, "compiled" | "pure (reason)") for every module in COMPILED, importing each."""
    out = []
    for name in COMPILED:
        try:
            mod = importlib.import_module(name)
        except ImportError as e:  # a broken extension: say so rather than hide it
            out.append((name, f"failed to import: {e}"))
            continue
        state = STATE.get(name) or ("compiled" if is_compiled(mod) else "pure")
        if state == "compiled" and not is_compiled(mod):
            state = "pure"
        out.append((name, state))
    return out


def report() -> str:
    """What `otids version` prints: the summary line, then each module and how it runs."""
    st = status()
    width = max(len(n) for n, _ in st)
    return "\n".join([summary(st)] + [f"  {n:<{width}}  {s}" for n, s in st])


def summary(st: list[tuple[str, str]] | None = None) -> str:
    """One line: how many per-packet modules run compiled."""
    st = st if st is not None else status()
    n = sum(1 for _, s in st if s == "compiled")
    if n == len(st):
        return f"compiled per-packet path: all {n} modules compiled (Cython)"
    reasons = sorted({s for _, s in st if s != "compiled"})
    return f"compiled per-packet path: {n} of {len(st)} modules compiled; the rest {'; '.join(reasons)}"
