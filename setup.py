"""Build of the compiled per-packet path (docs/PERFORMANCE.md, "Compiled path").

Project metadata lives in pyproject.toml; this file only adds the Cython extensions listed in
ids/_build.py, compiled from the unchanged .py sources. Without Cython or a working C compiler the install
goes on as pure Python and `otids version` says so. OTIDS_NO_COMPILE=1 skips compiling on purpose.
"""
import json
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _build_module():
    """ids/_build.py without importing the ids package (which may not import before the build)."""
    ns: dict = {"__name__": "ids_build", "__file__": os.path.join(HERE, "ids", "_build.py")}
    with open(ns["__file__"], encoding="utf-8") as fh:
        exec(compile(fh.read(), ns["__file__"], "exec"), ns)
    return ns


B = _build_module()


def _source(name: str) -> str:
    return os.path.join(*name.split(".")) + ".py"


def _extensions():
    if os.environ.get("OTIDS_NO_COMPILE", "") not in ("", "0"):
        print("otids: OTIDS_NO_COMPILE set: installing the pure-Python modules only", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as e:
        print(f"otids: Cython not available ({e}): installing the pure-Python modules only", file=sys.stderr)
        return []
    exts = [Extension(name, [_source(name)], extra_compile_args=["-O2"]) for name in B["COMPILED"]]
    out = []
    for ext in exts:  # one by one: a module Cython refuses stays pure, the others still compile
        try:
            out += cythonize([ext], language_level=3, quiet=True, compiler_directives=DIRECTIVES)
        except Exception as e:  # noqa: BLE001 - Cython.Compiler.Errors.CompileError and the like
            print(f"otids: Cython cannot compile {ext.name} ({e}); it runs as pure Python", file=sys.stderr)
    return out


DIRECTIVES = {
    # Annotations document; they never change what a value may be (a bytes-annotated argument still
    # accepts what the pure module accepts). C types are declared with the cython.* helpers where the
    # profile says, and are no-ops in CPython.
    "annotation_typing": False,
    "binding": True,
    "always_allow_keywords": True,
}


class BuildExt(build_ext):
    """Compiles what it can; a failing compiler leaves the pure modules in place, and the manifest of
    source digests (ids/_compiled.json) names only what was built, so a stale extension never runs."""

    def run(self):
        if not self.parallel:
            self.parallel = os.cpu_count() or 1  # one gcc per core
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 - no compiler: fall back to pure Python, loudly
            print(f"otids: compiling the per-packet path failed ({e}); pure Python will run", file=sys.stderr)
            return
        built = {}
        for ext in self.extensions:
            out = self.get_ext_fullpath(ext.name)
            if os.path.exists(out) or os.path.exists(os.path.join(HERE, os.path.relpath(out, self.build_lib))):
                built[ext.name] = B["source_digest"](os.path.join(HERE, _source(ext.name)))
        text = json.dumps(built, indent=1, sort_keys=True) + "\n"
        targets = [os.path.join(HERE, "ids", B["MANIFEST"])] if self.inplace or getattr(self, "editable_mode", False) \
            else []
        targets.append(os.path.join(self.build_lib, "ids", B["MANIFEST"]))
        for path in targets:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            print(f"otids: {ext.name} not compiled ({e}); it runs as pure Python", file=sys.stderr)

    def get_outputs(self):
        return super().get_outputs() + [os.path.join(self.build_lib, "ids", B["MANIFEST"])]


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
