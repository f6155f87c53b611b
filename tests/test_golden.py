"""Every capture in pcaps/ and ../shared/corpus gives byte-identical alerts, events, assets and baseline to the
golden files under tests/golden/ (written by tools/golden.py --update). A change that alters output on purpose
updates those files in the same commit and says why; a move of code (issue #13) must leave them untouched."""
from __future__ import annotations

import difflib
import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import golden  # noqa: E402

CAPTURES = golden.captures()


def test_corpus_present():
    assert golden.CORPUS.is_dir(), f"{golden.CORPUS} is missing: the golden tests need ../shared/corpus"
    assert sum(1 for n, _ in CAPTURES if n.startswith("corpus/")) >= 100


def test_no_orphan_golden_files():
    names = {n for n, _ in CAPTURES}
    orphans = [str(p) for p in golden.GOLDEN.rglob("*.gz")
               if str(p.relative_to(golden.GOLDEN)).rsplit(".", 2)[0] not in names]
    assert not orphans, f"golden files without a capture: {orphans[:5]}"


@pytest.mark.parametrize("name,path", CAPTURES, ids=[n for n, _ in CAPTURES])
def test_golden(name, path):
    got = golden.outputs(path)
    for kind, data in got.items():
        want = golden.read_golden(name, kind)
        assert want is not None, f"no golden {kind} for {name}: run python3 tools/golden.py --update"
        if want != data:
            diff = "\n".join(list(difflib.unified_diff(want.decode(errors="replace").splitlines(),
                                                       data.decode(errors="replace").splitlines(),
                                                       "golden", "now", lineterm="", n=1))[:40])
            pytest.fail(f"{name}: {kind} differs from tests/golden\n{diff}")
