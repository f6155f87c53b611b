"""PyYAML's safe loaders for the files users edit (config, rules, baseline, registry), with one difference:
a scalar that PyYAML resolves but cannot build is a YAML error at its place, like any other.

PyYAML resolves `2026-02-30` as a timestamp and then raises ValueError from `datetime.date`; a UTC offset of
+99:00, year 0 and an integer of more than 4,300 digits (Python's int-from-text limit) do the same. That
ValueError is not a `yaml.YAMLError`, so every loader's error path missed it and a one-character typo in a
suppression's `expires` date ended `otids` with a traceback (fuzzing, rules_file). Here it becomes a
ConstructorError carrying the value's mark, which the loaders already turn into "file:line:col: ...".
"""
from __future__ import annotations

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

#: the tags whose constructors call int(), float() or datetime on text the resolver only pattern-matched
_GUARDED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _guard(construct):
    def build(loader, node):
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as e:
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            what = str(e).split(";")[0][:120]
            raise ConstructorError(None, None, f"cannot read the value {shown!r}: {what}", node.start_mark) from None
    return build


def harden(cls):
    """Give a SafeConstructor-based loader class the guarded constructors (its own copy of the table)."""
    for tag in _GUARDED:
        cls.add_constructor(tag, _guard(SafeConstructor.yaml_constructors[tag]))
    return cls


@harden
class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader: the pure-Python parser (the reference for errors and for what libyaml refuses)."""


@harden
class FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml.CSafeLoader where PyYAML has libyaml (the same nodes, marks and data), else SafeLoader."""
