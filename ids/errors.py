"""Error types shared by every stage.

Protocol anomalies are never exceptions (they are values on events); these are for "need more bytes"
inside parsers, for bad user input (files, rules, config) that the CLI turns into one-line messages,
and for nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass


class NeedData(Exception):
    """A parser needs `n` more bytes before it can decide; reassembly waits for them (not an error).
    Protocol parsers reach it as ids.protocols.spec.NeedData."""

    def __init__(self, n: int = 1):
        super().__init__(n)
        self.n = n


class MalformedPdu(Exception):
    """The bytes can never form a valid PDU: `reason` becomes an anomaly name on the event and the session
    resynchronises. Protocol parsers reach it as ids.protocols.spec.Malformed."""

    def __init__(self, reason: str = "malformed", offset: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class SourceLocation:
    path: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        s = self.path
        if self.line is not None:
            s += f":{self.line}"
            if self.col is not None:
                s += f":{self.col}"
        return s


class UserError(Exception):
    """Bad input from the user: reported as one line naming the file and the place, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, source: SourceLocation | None = None):
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class CaptureError(UserError):
    """A capture file is unreadable, truncated or corrupt at a byte offset."""

    def __init__(self, path: str, offset: int, message: str):
        super().__init__(f"byte {offset}: {message}", SourceLocation(path))
        self.path = path
        self.offset = offset


class ConfigError(UserError):
    """The configuration file is invalid."""


class RuleError(UserError):
    """A rule file is invalid; `source` names path:line:col."""


def missing_captures(paths: list[str]) -> UserError | None:
    """The error for capture arguments that are not files, naming the first and what it is instead (a
    directory is not "no such capture file"); None when every path is a file."""
    import os
    bad = [p for p in paths if not os.path.isfile(p)]
    if not bad:
        return None
    p = bad[0]
    why = ("is a directory, not a capture file" if os.path.isdir(p) else
           "not a regular file" if os.path.exists(p) else "no such capture file")
    return UserError(f"{p}: {why}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
