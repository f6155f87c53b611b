"""A new user's pass over the CLI (branch polish): bad input gives one line naming the file and the exit code
the README lists (2: nothing done, bad input or usage), the same for every command."""
from __future__ import annotations

from conftest import PCAPS, ROOT, run_cli

DEMO = str(PCAPS / "modbus-demo.pcap")


def test_rules_lint_missing_path_or_lists_is_bad_input(tmp_path):
    """A rule path that does not exist is bad input (2), as for `rules test`, `rules dry-run` and `analyze
    --rules`; a rule with errors is a lint finding (1)."""
    p = run_cli("rules", "lint", str(tmp_path / "nope.yml"), check_rc=2)
    assert f"{tmp_path / 'nope.yml'}: error: no such rule file or directory" in p.stdout
    run_cli("rules", "test", str(tmp_path / "nope.yml"), check_rc=2)
    run_cli("rules", "lint", str(ROOT / "rules"), "--lists", str(tmp_path / "nope.yml"), check_rc=2)
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - id: x\n    title: t\n    match: {nosuchfield: 1}\n")
    run_cli("rules", "lint", str(bad), check_rc=1)


def test_learn_into_a_directory_says_so_before_reading(tmp_path):
    """`learn -o DIR` is refused at once with what -o wants; it said "the previous file is unchanged" of a
    file that never existed, after reading every capture."""
    p = run_cli("learn", "-o", str(tmp_path), DEMO, check_rc=2)
    assert p.stderr.strip() == (f"otids: error: {tmp_path}: is a directory; -o takes the baseline file's name "
                                f"(e.g. {tmp_path / 'baseline.yaml'})")
    assert list(tmp_path.iterdir()) == []


def test_write_failure_says_previous_file_unchanged_only_when_there_was_one(tmp_path):
    p = run_cli("assets", "-o", str(tmp_path), DEMO, check_rc=2)
    assert p.stderr.strip() == f"otids: error: {tmp_path}: cannot write assets: Is a directory; nothing written"


def test_report_of_nothing_is_refused_like_analyze(tmp_path):
    """A capture that cannot be read gives `report` exit 2 and no report, as `analyze` and `assets` do; it
    wrote an empty report and exited 1."""
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    out = tmp_path / "r.html"
    p = run_cli("report", str(empty), "-o", str(out), check_rc=2)
    assert p.stderr.splitlines()[-1] == f"otids: error: nothing analysed (no packet read); {out} not written"
    assert not out.exists()


def test_a_directory_is_not_called_a_missing_capture(tmp_path):
    for cmd in (("certs",), ("report", "-o", str(tmp_path / "r.html"))):
        p = run_cli(*cmd, str(tmp_path), check_rc=2)
        assert p.stderr.strip() == f"otids: error: {tmp_path}: is a directory, not a capture file", cmd


def test_a_capture_given_for_a_text_file_is_one_line_not_a_traceback(tmp_path):
    """A capture where a baseline, NDJSON or events file was wanted (an easy slip on the command line) is
    named with what is wrong; these raised UnicodeDecodeError with a traceback (exit 1)."""
    for cmd in (("baseline", "check", DEMO), ("learn", "-o", DEMO, DEMO),
                ("analyze", "-q", "-o", str(tmp_path / "a.ndjson"), "--baseline", DEMO, DEMO)):
        p = run_cli(*cmd, check_rc=2)
        assert p.stderr.strip() == f"otids: error: {DEMO}: not a baseline: not UTF-8 text (byte 0)", cmd
    nd = tmp_path / "events.ndjson"
    nd.write_bytes((PCAPS / "modbus-demo.pcap").read_bytes())
    p = run_cli("rules", "dry-run", str(ROOT / "rules"), str(nd), check_rc=2)
    assert p.stderr.strip() == f"otids: error: {nd}:1: not JSON (not UTF-8 text)"
    p = run_cli("report", "--from", str(nd), "-o", str(tmp_path / "r.html"), check_rc=2)
    assert p.stderr.strip() == f"otids: error: {nd}:1: not a JSON document (not UTF-8 text, byte 0 of the line)"
    p = run_cli("es", "validate", str(nd), check_rc=1)
    assert p.stdout.startswith(f"{nd}:1: not UTF-8 text (byte 0 of the line)\n")
    nd.write_text('{"event": {"kind": "event"}, "n": ' + "9" * 5000 + "}\n")  # json: ValueError, not JSONDecodeError
    p = run_cli("rules", "dry-run", str(ROOT / "rules"), str(nd), check_rc=2)
    assert p.stderr.startswith(f"otids: error: {nd}:1: not JSON (Exceeds the limit (4300 digits)")


def test_truncated_gzip_capture_gives_its_packets_before_the_cut(tmp_path):
    """A .pcap.gz cut short (copied while still written) is analysed up to the cut, as an uncompressed
    capture is: exit 1 and the byte offset; it gave "nothing analysed" (2), the chunk holding the cut lost."""
    import gzip
    import re
    import struct
    import zlib
    raw = (PCAPS / "modbus-demo.pcap").read_bytes()
    cut = gzip.compress(raw, mtime=0)[:1500]
    data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)  # what can be decompressed before the cut
    off, whole = 24, 0
    while off + 16 <= len(data) and off + 16 + struct.unpack_from("<I", data, off + 8)[0] <= len(data):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
        whole += 1
    assert 0 < whole < 84
    f = tmp_path / "cut.pcap.gz"
    f.write_bytes(cut)
    p = run_cli("analyze", str(f), "-o", str(tmp_path / "a.ndjson"), check_rc=1)
    assert re.match(rf"otids read 1 file\(s\) \(1 damaged\), {whole} packets, ", p.stderr)
    assert f"otids: error: {f}: byte {off}: read failed: Compressed file ended" in p.stderr


def test_binary_lists_or_rule_file_is_one_line_not_a_traceback(tmp_path):
    """A binary file given as --lists (or as a rule file) said UnicodeDecodeError in a traceback; it is one
    line with the place of the first byte that is not UTF-8, and analyze refuses to run (2)."""
    binf = tmp_path / "site.yml"
    binf.write_bytes(b"lists:\n  hmi: [\xd0\xff]\n")
    p = run_cli("analyze", DEMO, "--rules", str(ROOT / "rules"), "--lists", str(binf), "-q",
                "-o", str(tmp_path / "a.ndjson"), check_rc=2)
    assert "Traceback" not in p.stderr
    assert f"{binf}:2:9: error: not UTF-8 text (byte 0xd0 at offset 15)" in p.stderr
    assert not (tmp_path / "a.ndjson").exists()
    rules = tmp_path / "rules.yml"
    rules.write_bytes(b"\x00\x01\xfe")
    p = run_cli("rules", "lint", str(rules), check_rc=1)
    assert "Traceback" not in p.stdout + p.stderr and "not UTF-8 text" in p.stdout + p.stderr
