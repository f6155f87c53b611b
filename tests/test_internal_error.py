"""A bug of otids (any exception that is not a UserError) ends a command with one line on stderr naming the
exception and the code place, the traceback kept in a file for the report, and exit 70 (EX_SOFTWARE):
never a traceback on the terminal."""
from __future__ import annotations

import re
from pathlib import Path

from ids import cli


def test_internal_error_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)

    def broken(args):
        return undefined_name  # noqa: F821  (the class of bug the mixed bench found in the auth detector)
    monkeypatch.setattr(cli, "cmd_analyze", broken)
    rc = cli.main(["analyze", "x.pcap"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_INTERNAL == 70
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "NameError: name 'undefined_name' is not defined" in err
    assert re.search(r"at tests/test_internal_error\.py:\d+", err), err
    path = Path(re.search(r"traceback in (\S+)", err).group(1))
    assert path.parent == tmp_path and "Traceback" in path.read_text()


def test_user_errors_keep_their_exit(capsys, tmp_path):
    rc = cli.main(["analyze", str(tmp_path / "absent.pcap")])
    assert rc not in (0, cli.EXIT_INTERNAL)
    assert "Traceback" not in capsys.readouterr().err
