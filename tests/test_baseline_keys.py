"""Issue #20 item 4: a misspelt key inside a baseline entry is an error with file:line:col and the valid
choices, in `otids baseline check` and wherever the baseline is loaded (analyze --baseline, learn onto it),
instead of silently changing what is enforced."""
from __future__ import annotations

import pytest

from conftest import PCAPS, ROOT, run_cli

SIM = (ROOT / "models" / "sim-baseline.yaml").read_text()


def _line_col(text: str, needle: str) -> tuple[int, int]:
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i, ln.index(needle) + 1
    raise AssertionError(needle)


@pytest.mark.parametrize("good,bad,valid", [
    ("    functions:", "    funtions:", "did you mean 'functions'?"),
    ("    reads:", "    raeds:", "did you mean 'reads'?"),
    ("    status: learned", "    satus: learned", "did you mean 'status'?"),
    ("jitter: 0.0003, samples", "jiter: 0.0003, samples", "did you mean 'jitter'?"),
    ("{band: [44, 56]", "{bnad: [44, 56]", "did you mean 'band'?"),
    ("{qos: [1], messages: 45", "{qso: [1], messages: 45", "did you mean 'qos'?"),
])
def test_misspelt_entry_key_is_an_error_everywhere(tmp_path, good, bad, valid):
    i = SIM.index(good)
    text = SIM[:i] + bad + SIM[i + len(good):]
    f = tmp_path / "b.yaml"
    f.write_text(text)
    line, col = _line_col(text, bad.strip().lstrip("{"))
    key = bad.strip().lstrip("{").split(":")[0]
    want = f"{f}:{line}:{col}: unknown key '{key}'"
    p = run_cli("baseline", "check", str(f), check_rc=2)
    assert want in p.stderr and valid in p.stderr and "valid: " in p.stderr, p.stderr
    p = run_cli("analyze", str(PCAPS / "modbus-demo.pcap"), "-q", "-o", str(tmp_path / "a.ndjson"),
                "--baseline", str(f), check_rc=2)
    assert want in p.stderr
    before = f.read_bytes()
    run_cli("learn", str(PCAPS / "modbus-demo.pcap"), "-o", str(f), check_rc=2)
    assert f.read_bytes() == before
