"""What a rule set needs before it runs, decided once for `rules lint`, `analyze --rules` and reloads alike.

Without a site lists file, rules that name a list cannot know its members: they are disabled (a warning),
not refused, so the shipped rules run out of the box. Which problems stop a run (a missing rule path, a
broken lists file) and which only take their rule out is decided here too.
"""
from __future__ import annotations

import re

from .rule import Issue, SiteLists

NEEDS_LISTS = "needs-lists"
_LIST = re.compile(r"list \$([a-z_][a-z0-9_]*) is not defined")


def disable_without_lists(issues: list) -> list:
    """No --lists given: an undefined list disables its rule (a warning) instead of failing the set."""
    out = []
    for i in issues:
        if i.code == "undefined-list":
            m = _LIST.search(i.message)
            name = m.group(1) if m else "?"
            i = Issue("warning", NEEDS_LISTS, f"list ${name} is not defined (no --lists given): rule disabled",
                      i.source, i.rule_id)
        out.append(i)
    return out


def disabled_rules(issues: list) -> dict[str, list[str]]:
    """Rule id -> the site lists it waits for (from the needs-lists warnings), in file order."""
    out: dict[str, list[str]] = {}
    for i in issues:
        if i.code == NEEDS_LISTS and i.rule_id:
            m = _LIST.search(i.message)
            names = out.setdefault(i.rule_id, [])
            if m and m.group(1) not in names:
                names.append(m.group(1))
    return out


def disabled_line(issues: list) -> str | None:
    """One line naming the rules disabled for want of site lists, the lists, and how to enable them."""
    d = disabled_rules(issues)
    if not d:
        return None
    names = sorted({n for v in d.values() for n in v})
    return (f"{len(d)} rule(s) disabled, no site lists given (they use {', '.join('$' + n for n in names)}): "
            f"{', '.join(d)}; enable them with --lists FILE (template rules/lists.example.yml)")


def fatal(issues: list, lists_path: str | None) -> list:
    """Problems that stop a run: a rule path that does not exist, or a broken site lists file. Every other
    error takes only its rule (or file) out; the rest run."""
    return [i for i in issues if i.severity == "error"
            and (i.code == "no-such-file" or (lists_path is not None and i.source.path == lists_path))]
