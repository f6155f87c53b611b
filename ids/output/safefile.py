"""Output files an engineer cannot lose: every file otids writes goes to a temporary name beside it and is
renamed over the old one only when the run completes, a rewrite keeps the previous version (numbered
backups), and a write error (full disk) is one line naming the file.

Devices and pipes (`/dev/stdout`, `/dev/full`, a FIFO) cannot be renamed over: they are written directly.
What to do with documents that could not be written (spool alerts, count events) is the sink's business.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile

from ..errors import UserError


def is_regular_target(path: str) -> bool:
    """True when `path` is (or will be) a plain file that a rename can replace."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


class OutputFile:
    """A text file written under a temporary name and renamed to `path` by commit(); discard() leaves
    `path` as it was. Write errors are OSError; the caller turns them into one line."""

    def __init__(self, path: str, direct: bool = False):
        self.path = path
        self.tmp: str | None = None
        if direct or not is_regular_target(path):
            self.fh = open(path, "w", encoding="utf-8")
            return
        d = os.path.dirname(path) or "."
        if not os.path.isdir(d):
            raise FileNotFoundError(2, "No such file or directory", d)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=d)
        try:
            os.chmod(self.tmp, _mode_for(path))
        except OSError:
            pass
        self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        self.fh.write(text)

    def flush(self) -> None:
        self.fh.flush()

    def commit(self) -> None:
        """Close and put the file in place. Raises OSError leaving `path` as it was and the temporary file
        for the caller to read or discard()."""
        self.fh.close()
        if self.tmp is not None:
            os.replace(self.tmp, self.path)
            self.tmp = None

    def discard(self) -> None:
        try:
            if not self.fh.closed:
                self.fh.close()
        except OSError:
            pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None

    def keep_as(self, path: str) -> bool:
        """Close and move the temporary file to `path` instead (an interrupted run's partial output)."""
        try:
            self.fh.close()
            if self.tmp is None:
                return False
            os.replace(self.tmp, path)
            self.tmp = None
            return True
        except OSError:
            self.discard()
            return False


def _mode_for(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        um = os.umask(0)
        os.umask(um)
        return 0o666 & ~um


def backup_name(path: str) -> str:
    """`FILE.bak`, or `FILE.bak.N` with the smallest free N: earlier backups are never overwritten."""
    cand = f"{path}.bak"
    n = 0
    while os.path.lexists(cand):
        n += 1
        cand = f"{path}.bak.{n}"
    return cand


def keep_previous(path: str) -> str | None:
    """Copy an existing regular file at `path` to its backup name; returns that name (None: nothing to keep)."""
    if not os.path.isfile(path):
        return None
    bak = backup_name(path)
    try:
        try:
            os.link(path, bak)  # the old inode lives on under the backup name once `path` is replaced
        except OSError:
            shutil.copy2(path, bak)
    except OSError as e:
        raise UserError(f"{path}: cannot keep the previous version as {bak}: {e.strerror}; nothing written") from None
    return bak


def write_text(path: str, text: str, what: str, backup: bool = False) -> str | None:
    """Write `text` to `path` atomically; with backup, the previous file is kept first (returns its name).
    Any failure is a one-line UserError naming the file; `path` is then left as it was."""
    bak = keep_previous(path) if backup else None
    existed = os.path.isfile(path)  # the message below says what became of it: only a file can be "unchanged"
    try:
        d = os.path.dirname(path)
        if d and not os.path.isdir(d):
            os.makedirs(d, exist_ok=True)
        out = OutputFile(path)
        try:
            out.write(text)
            out.commit()
        except BaseException:
            out.discard()
            raise
    except OSError as e:
        if bak is not None:
            try:
                os.unlink(bak)
            except OSError:
                pass
        left = "the previous file is unchanged" if existed else "nothing written"
        raise UserError(f"{path}: cannot write {what}: {e.strerror or e}; {left}") from None
    return bak


def state_dir() -> str:
    """Where otids keeps what it could not deliver: $OTIDS_STATE_DIR, else $XDG_STATE_HOME/otids, else
    ~/.local/state/otids."""
    d = os.environ.get("OTIDS_STATE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "otids")


def spool_lines(lines: list[str], what: str) -> str | None:
    """Write documents that could not reach their file to a new file in the state directory (falling back
    to the temporary directory); returns its path, or None when neither can take them."""
    import time
    name = f"unwritten-{what}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.ndjson"
    for d in (state_dir(), tempfile.gettempdir()):
        p = os.path.join(d, name)
        try:
            os.makedirs(d, exist_ok=True)
            with open(p, "w", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
            return p
        except OSError:
            try:
                os.unlink(p)
            except OSError:
                pass
    return None
