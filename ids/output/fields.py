"""Field definitions: every field an otids document may carry, declared once, as data: each protocol's in its
package (`ids/protocols/<name>/fields.yml`), the shared groups in `ids/data/fields/<group>.yml` (format in
that folder's README.md).

This module loads and merges the group files (a duplicate or conflicting declaration is an error naming
file:line), and answers what the rest derives from them: Elasticsearch/OpenSearch mapping properties
(esgen.py turns them into templates), the field reference (docs/FIELDS.md), the Kibana field checks
(kibana.py) and the document validator used by the tests and by `otids es validate`.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from ..errors import SourceLocation, UserError
from ..protocols import REGISTRY

FIELDS_DIR = Path(__file__).resolve().parents[1] / "data" / "fields"


def group_of(path) -> str:
    """The group a definition file declares: its name, or its protocol folder's for a package's fields.yml."""
    p = Path(path)
    return p.parent.name if p.name == "fields.yml" else p.stem


def field_files() -> list[Path]:
    """Every field definition file: the shared groups in ids/data/fields/ and each protocol's fields.yml, in
    group-name order (the file's name; the protocol's name for the fields.yml of its package)."""
    files = [(p.stem, p) for p in FIELDS_DIR.glob("*.yml")] if FIELDS_DIR.is_dir() else []
    files += [(n, Path(p.fields)) for n, p in REGISTRY.items() if p.fields and Path(p.fields).is_file()]
    return [p for _, p in sorted(files)]

#: Elasticsearch field types a definition may use, with (minimum, maximum) for the integer types.
INTEGER_RANGES = {"byte": (-2 ** 7, 2 ** 7 - 1), "short": (-2 ** 15, 2 ** 15 - 1),
                  "integer": (-2 ** 31, 2 ** 31 - 1), "long": (-2 ** 63, 2 ** 63 - 1),
                  "unsigned_long": (0, 2 ** 64 - 1)}
FLOAT_TYPES = frozenset(("float", "double", "half_float", "scaled_float"))
STRING_TYPES = frozenset(("keyword", "constant_keyword", "wildcard", "text", "match_only_text"))
CONTAINER_TYPES = frozenset(("object", "nested"))
TYPES = frozenset((*INTEGER_RANGES, *FLOAT_TYPES, *STRING_TYPES, *CONTAINER_TYPES,
                   "boolean", "date", "ip", "flattened"))
#: Types Kibana can aggregate on (terms, histograms, cardinality) without extra mapping.
AGGREGATABLE = frozenset((*INTEGER_RANGES, *FLOAT_TYPES, "keyword", "constant_keyword", "wildcard",
                          "boolean", "date", "ip"))

_NAME = re.compile(r"^(@timestamp|[a-z0-9_]+(\.[a-z0-9_]+)*)$")
_FIELD_KEYS = frozenset(("name", "type", "description", "example"))
_GROUP_KEYS = frozenset(("group", "description", "fields"))
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    description: str
    group: str
    where: SourceLocation
    example: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    description: str
    path: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DefinitionError:
    """One problem in a field definition file; compares equal so tests assert whole errors."""

    where: SourceLocation
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class FieldDefinitionError(UserError):
    """The field definitions are invalid; `errors` lists every problem found in one pass."""

    def __init__(self, errors: list[DefinitionError]):
        super().__init__(str(errors[0].message), errors[0].where)
        self.errors = tuple(errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


@dataclass(frozen=True, slots=True, order=True)
class Issue:
    """A document field that does not match the definitions. `path` is the dotted name in the document."""

    path: str
    problem: str  # unknown field | wrong type | out of range | null value
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" + (f" ({self.detail})" if self.detail else "")


class FieldSet:
    """The merged definitions of every group: lookups, the document validator, mapping properties."""

    def __init__(self, groups: dict[str, Group], fields: dict[str, Field]):
        self.groups = groups
        self.fields = fields
        self.parents: set[str] = set()  # implicit objects: every proper prefix of a declared name
        for name in fields:
            parts = name.split(".")
            for i in range(1, len(parts)):
                self.parents.add(".".join(parts[:i]))
        self._flattened = tuple(n + "." for n, f in fields.items() if f.type == "flattened")

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) is not None

    def __len__(self) -> int:
        return len(self.fields)

    def resolve(self, name: str) -> Field | None:
        """The definition that covers `name`: the field itself, or the flattened field it lies inside."""
        f = self.fields.get(name)
        if f is not None:
            return f
        for prefix in self._flattened:
            if name.startswith(prefix):
                return self.fields[prefix[:-1]]
        return None

    def aggregatable(self, name: str) -> bool:
        f = self.resolve(name)
        if f is None:
            return False
        if f.type == "flattened":
            # Elasticsearch could aggregate a key inside a flattened object as a keyword, but Kibana data views
            # do not list such keys and OpenSearch's flat_object cannot aggregate them: not for panels.
            return False
        return f.type in AGGREGATABLE

    # ------------------------------------------------------------------ validation
    def validate(self, doc: dict) -> list[Issue]:
        """Every field of `doc` that is undeclared, of the wrong type or out of range; [] when it is clean."""
        issues: list[Issue] = []
        if not isinstance(doc, dict):
            return [Issue("", "wrong type", f"a document must be an object, got {type(doc).__name__}")]
        self._walk(doc, "", issues)
        return issues

    def _walk(self, obj: dict, prefix: str, issues: list[Issue]) -> None:
        for key, value in obj.items():
            name = prefix + key
            f = self.fields.get(name)
            if f is None or f.type in CONTAINER_TYPES:
                if f is None and name not in self.parents:
                    issues.append(Issue(name, "unknown field", _preview(value)))
                    continue
                for item in (value if isinstance(value, list) else (value,)):
                    if isinstance(item, dict):
                        self._walk(item, name + ".", issues)
                    else:
                        issues.append(Issue(name, "wrong type", f"expected an object, got {_preview(item)}"))
                continue
            if f.type == "flattened":
                for item in (value if isinstance(value, list) else (value,)):
                    if not isinstance(item, dict):
                        issues.append(Issue(name, "wrong type", f"flattened: expected an object, got {_preview(item)}"))
                continue
            first, bad = None, 0
            for item in _leaves(value):
                problem = _check_leaf(f.type, item)
                if problem is not None:
                    bad += 1
                    first = first or problem
            if first is not None:  # one issue per field, however many list elements are wrong
                more = f"; {bad - 1} more element(s)" if bad > 1 else ""
                issues.append(Issue(name, first[0], f"{f.type}: {first[1]}{more}"))

    # ------------------------------------------------------------------ mappings
    def properties(self, flavor: str = "elasticsearch") -> dict:
        """Mapping `properties` for every declared field (`flavor`: elasticsearch or opensearch)."""
        root: dict = {}
        for f in self.fields.values():
            parts = f.name.split(".")
            node = root
            for p in parts[:-1]:
                node = node.setdefault(p, {}).setdefault("properties", {})
            leaf = node.setdefault(parts[-1], {})
            leaf.update(_field_mapping(f.type, flavor))
        return root


def _leaves(value):
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _check_leaf(t: str, v) -> tuple[str, str] | None:
    if v is None:
        return ("null value", "omit the field instead")
    if isinstance(v, dict):
        return ("wrong type", f"expected a value, got an object {_preview(v)}")
    if t in STRING_TYPES:
        return None if isinstance(v, str) else ("wrong type", f"expected a string, got {_preview(v)}")
    if t in INTEGER_RANGES:
        if isinstance(v, bool) or not isinstance(v, int):
            return ("wrong type", f"expected an integer, got {_preview(v)}")
        lo, hi = INTEGER_RANGES[t]
        return None if lo <= v <= hi else ("out of range", f"{v} not in [{lo}, {hi}]")
    if t in FLOAT_TYPES:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return ("wrong type", f"expected a number, got {_preview(v)}")
        return None if math.isfinite(v) else ("out of range", f"{v} is not finite")
    if t == "boolean":
        return None if isinstance(v, bool) else ("wrong type", f"expected true/false, got {_preview(v)}")
    if t == "ip":
        if isinstance(v, str):
            try:
                ipaddress.ip_address(v)
                return None
            except ValueError:
                pass
        return ("wrong type", f"expected an IPv4/IPv6 address, got {_preview(v)}")
    if t == "date":
        if isinstance(v, str) and _RFC3339.match(v):
            try:
                datetime.fromisoformat(v)
                return None
            except ValueError:
                pass
        return ("wrong type", f"expected an RFC 3339 date, got {_preview(v)}")
    return ("wrong type", f"no check for type {t}")  # pragma: no cover - TYPES and this list agree


def _preview(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _field_mapping(t: str, flavor: str) -> dict:
    if t in CONTAINER_TYPES:
        return {"type": t} if t == "nested" else {}  # object is the default; clusters echo it without a type
    if t == "keyword":
        return {"type": "keyword", "ignore_above": 1024}
    if flavor == "opensearch":
        # OpenSearch lacks or only recently gained these Elasticsearch types; map to the nearest it has.
        t = {"flattened": "flat_object", "match_only_text": "text", "wildcard": "keyword",
             "constant_keyword": "keyword"}.get(t, t)
        if t == "keyword":
            return {"type": "keyword", "ignore_above": 1024}
    if t == "scaled_float":
        return {"type": t, "scaling_factor": 1000}
    return {"type": t}


# ---------------------------------------------------------------------------------------------- loading

def load_fields(paths: list[str | os.PathLike] | None = None) -> FieldSet:
    """Load and merge field group files (default: every field_files(), in group-name order).
    Raises FieldDefinitionError listing every problem found."""
    if paths is None:
        paths = field_files()
    errors: list[DefinitionError] = []
    groups: dict[str, Group] = {}
    fields: dict[str, Field] = {}
    for p in paths:
        _load_file(str(p), groups, fields, errors)
    _check_tree(fields, errors)
    if errors:
        raise FieldDefinitionError(errors)
    return FieldSet(groups, fields)


def _load_file(path: str, groups: dict, fields: dict, errors: list) -> None:
    def err(node, msg):
        m = node.start_mark if node is not None else None
        errors.append(DefinitionError(SourceLocation(path, m.line + 1 if m else None, m.column + 1 if m else None), msg))

    try:
        with open(path, encoding="utf-8") as fh:
            root = yaml.compose(fh, Loader=yaml.SafeLoader)
    except OSError as e:
        errors.append(DefinitionError(SourceLocation(path), f"cannot read: {e.strerror}"))
        return
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        errors.append(DefinitionError(SourceLocation(path, mark.line + 1 if mark else None,
                                                     mark.column + 1 if mark else None),
                                      f"invalid YAML: {getattr(e, 'problem', e)}"))
        return
    if not isinstance(root, yaml.MappingNode):
        err(root, "the file must be a mapping with keys group, description, fields")
        return
    top = _mapping(root, err, _GROUP_KEYS)
    stem = group_of(path)
    gname = _scalar(top.get("group"), err, "group")
    if gname is None:
        err(root, "missing 'group'")
        gname = stem
    elif gname != stem:
        err(top["group"][1], f"group '{gname}' must match the file name '{stem}.yml'" if Path(path).name != "fields.yml"
            else f"group '{gname}' must match the protocol folder name '{stem}'")
    gdesc = _scalar(top.get("description"), err, "description") or ""
    if not gdesc:
        err(root, "missing group 'description'")
    if gname in groups:
        err(root, f"group '{gname}' is already defined in {groups[gname].path}")
    fnode = top.get("fields")
    names: list[str] = []
    if fnode is None or not isinstance(fnode[1], yaml.SequenceNode):
        err(fnode[1] if fnode else root, "'fields' must be a list of field definitions")
    else:
        for item in fnode[1].value:
            if not isinstance(item, yaml.MappingNode):
                err(item, "a field definition must be a mapping with name, type, description")
                continue
            kv = _mapping(item, err, _FIELD_KEYS)
            where = SourceLocation(path, item.start_mark.line + 1, item.start_mark.column + 1)
            name = _scalar(kv.get("name"), err, "name")
            ftype = _scalar(kv.get("type"), err, "type")
            desc = _scalar(kv.get("description"), err, "description")
            example = _scalar(kv.get("example"), err, "example") if "example" in kv else None
            if name is None:
                err(item, "field without 'name'")
                continue
            if not _NAME.match(name):
                err(kv["name"][1], f"field name '{name}' must be lower-case dotted words ([a-z0-9_], dots between)")
                continue
            if ftype is None:
                err(item, f"field '{name}' has no 'type'")
                continue
            if ftype not in TYPES:
                err(kv["type"][1], f"field '{name}': unknown type '{ftype}' (known: {', '.join(sorted(TYPES))})")
                continue
            if not desc:
                err(item, f"field '{name}' has no 'description'")
                continue
            if name in fields:
                err(item, f"duplicate field '{name}' (first declared at {fields[name].where})")
                continue
            fields[name] = Field(name, ftype, " ".join(desc.split()), gname, where, example)
            names.append(name)
    groups[gname] = Group(gname, " ".join(gdesc.split()), path, tuple(names))


def _mapping(node, err, allowed) -> dict:
    out = {}
    for k, v in node.value:
        key = k.value if isinstance(k, yaml.ScalarNode) else None
        if key not in allowed:
            err(k, f"unknown key '{key}' (known: {', '.join(sorted(allowed))})")
            continue
        if key in out:
            err(k, f"key '{key}' given twice")
            continue
        out[key] = (k, v)
    return out


def _scalar(kv, err, what) -> str | None:
    if kv is None:
        return None
    node = kv[1]
    if not isinstance(node, yaml.ScalarNode):
        err(node, f"'{what}' must be a single value")
        return None
    return str(node.value)


def _check_tree(fields: dict[str, Field], errors: list) -> None:
    """Leaf fields cannot have sub-fields, and declared objects must have some (open-ended: flattened)."""
    children: dict[str, list[str]] = {}
    for name in fields:
        parts = name.split(".")
        for i in range(1, len(parts)):
            children.setdefault(".".join(parts[:i]), []).append(name)
    for name, f in fields.items():
        below = children.get(name)
        if below and f.type not in CONTAINER_TYPES:
            child = fields[below[0]]
            errors.append(DefinitionError(child.where, f"'{child.name}' is declared below '{name}' ({f.type}, at "
                                                       f"{f.where}); only object and nested fields have sub-fields"))
        elif not below and f.type in CONTAINER_TYPES:
            errors.append(DefinitionError(f.where, f"{f.type} field '{name}' declares no sub-fields; "
                                                   f"use flattened for an object whose keys vary"))
