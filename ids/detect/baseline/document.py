"""The baseline file: what normal traffic looks like, as entries an engineer reviews (models/README.md).

This module owns the file: its sections and entry identities, loading with `file:line:col` errors,
writing (deterministic, comments kept, see yamlio), carrying review state over a re-learn, and the
semantic diff behind `otids baseline diff`. What an entry *means* on the wire belongs to the protocol
modules (modbus.py, opcua.py, mqtt.py), which validate and compile their own sections.
"""
from __future__ import annotations

import os

import ipaddress
from dataclasses import dataclass, field

import yaml

from ...errors import SourceLocation, UserError
from ...yamlload import FastLoader, SafeLoader, NotPlain, load_plain
from . import yamlio
from .section import SectionSpec

FORMAT_VERSION = 1
STATUSES = ("approved", "denied", "learned")
REVIEWED = ("approved", "denied")

HEADER = [
    "# otids baseline: the traffic this network is expected to carry (format: models/README.md).",
    "# Written by `otids learn`. Review each entry: set `status: approved` or `status: denied`, add a",
    "# `note:` or comments. Re-learning keeps status, notes and comments; approved and denied entries are",
    "# kept as reviewed. Enforce with `otids analyze --baseline FILE`; compare with `otids baseline diff`.",
]


class BaselineError(UserError):
    """The baseline file is invalid; `source` names file:line:col."""


COMMON_HEAD = ("status", "note")
COMMON_SEEN = ("first_seen", "last_seen")

GENERIC_SECTIONS = (
    SectionSpec("assets", ("ip",), ("macs", "vlans", "roles", "identity", "first_seen", "last_seen", "events"),
                "events"),
    SectionSpec("talkers", ("client", "server", "protocol"), ("ports", "first_seen", "last_seen", "events"),
                "events"),
)


def _protocol_sections() -> tuple[SectionSpec, ...]:
    from .protocols import PROTOCOL_MODULES
    return tuple(m.SECTION for m in PROTOCOL_MODULES.values())


def sections() -> dict[str, SectionSpec]:
    return {s.name: s for s in GENERIC_SECTIONS + _protocol_sections()}


#: sections written only when they have entries (network: only captures with connection records fill it)
OPTIONAL_SECTIONS = ("network",)

#: fields of nested lists whose items have an identity (so comments and diffs follow them)
LIST_ITEM_KEYS = {"polls": ("function", "address")}


def item_id(path: tuple, item, index: int) -> str:
    if len(path) == 1 and isinstance(item, dict):
        spec = sections().get(path[0])
        if spec is not None:
            return "|".join(str(item.get(k)) for k in spec.key)
    if path and path[-1] in LIST_ITEM_KEYS and isinstance(item, dict):
        return "|".join(str(item.get(k)) for k in LIST_ITEM_KEYS[path[-1]])
    if isinstance(item, (str, int, float)):
        return str(item)
    return f"#{index}"


def entry_id(spec: SectionSpec, entry: dict) -> str:
    return "|".join(str(entry.get(k)) for k in spec.key)


def entry_label(spec: SectionSpec, entry: dict) -> str:
    """How an entry is named to people: `modbus 127.0.0.2 -> 127.0.0.11 unit 1`."""
    k = spec.key
    if spec.name == "assets":
        return f"asset {entry.get('ip')}"
    if spec.name == "talkers":
        return f"{entry.get('protocol')} talkers {entry.get('client')} -> {entry.get('server')}"
    if spec.name == "modbus":
        return f"modbus {entry.get('master')} -> {entry.get('slave')} unit {entry.get('unit')}"
    return f"{spec.name} " + " -> ".join(str(entry.get(x)) for x in k)


# ---------------------------------------------------------------------------------------------- model

@dataclass
class Baseline:
    """A baseline in memory: the `learned` summary and, per section, entries by identity (YAML-shaped
    dicts, in file order). `marks` maps semantic paths to (line, col) when loaded from a file."""

    path: str | None = None
    learned: dict = field(default_factory=dict)
    entries: dict[str, dict[str, dict]] = field(default_factory=dict)
    text: str | None = None
    mark_cache: dict | None = field(default=None, repr=False, compare=False)

    @property
    def marks(self) -> dict[tuple, tuple[int, int]]:
        """Semantic path -> (line, col), worked out from the text when an error first needs one: kept for
        every item of a large baseline it was ~130 MB (64,000 topics: 630,000 paths) that nothing read."""
        if self.mark_cache is None:
            self.mark_cache = {}
            if self.text:
                try:
                    node, data = _node_and_data(self.text)
                except yaml.YAMLError:
                    node = None
                if node is not None:
                    _marks(node, data, (), self.mark_cache)
        return self.mark_cache

    def section(self, name: str) -> dict[str, dict]:
        return self.entries.setdefault(name, {})

    def where(self, *path) -> SourceLocation:
        """File location of `path` (or its nearest ancestor) for error messages."""
        p = tuple(str(x) for x in path)
        while p:
            if p in self.marks:
                line, col = self.marks[p]
                return SourceLocation(self.path or "<baseline>", line, col)
            p = p[:-1]
        return SourceLocation(self.path or "<baseline>")

    def error(self, msg: str, *path) -> BaselineError:
        return BaselineError(msg, self.where(*path))

    def count(self) -> int:
        return sum(len(v) for v in self.entries.values())

    # ------------------------------------------------------------------ writing
    def to_doc(self) -> dict:
        doc: dict = {"version": FORMAT_VERSION, "learned": self.learned}
        for name, spec in sections().items():
            entries = self.entries.get(name)
            if not entries and name in OPTIONAL_SECTIONS:
                continue
            doc[name] = [_ordered(spec, e) for e in _sorted(spec, entries.values())] if entries else []
        return doc

    def dump(self, comments: yamlio.Comments | None = None) -> str:
        return yamlio.dump(self.to_doc(), item_id, HEADER, comments)


def _ordered(spec: SectionSpec, e: dict) -> dict:
    out = {k: e[k] for k in spec.key if k in e}
    for k in COMMON_HEAD:
        if k in e and (k != "note" or e[k] not in (None, "")):
            out[k] = e[k]
    for k in spec.order:
        if k in e:
            out[k] = e[k]
    for k in e:  # fields this version does not know stay, after the known ones
        if k not in out and k != "note":
            out[k] = e[k]
    return out


def _ip_key(v):
    try:
        a = ipaddress.ip_address(str(v))
        return (0, a.version, int(a))
    except ValueError:
        return (1, 0, str(v))


def sort_key(spec: SectionSpec, e: dict):
    return tuple(_ip_key(e.get(k)) if not isinstance(e.get(k), int) else (0, 0, e.get(k)) for k in spec.key)


def _sorted(spec: SectionSpec, entries) -> list:
    return sorted(entries, key=lambda e: sort_key(spec, e))


# ---------------------------------------------------------------------------------------------- loading

_READ: dict = {}  # the last file load(shared=True) read: (path, inode, size, mtime) -> Baseline


def load(path: str, shared: bool = False) -> Baseline:
    """Read and check a baseline file. Errors name file:line:col; the protocol modules check their own
    sections' fields when the enforcer compiles them (compile_sections). `shared`: callers that only read
    it (the baseline enforcer and the Sparkplug plug-in of one `analyze`) get the one Baseline parsed from
    the file as it is now, not a parse each (a 64,000-topic baseline: 5 s and ~150 MB a parse)."""
    if shared:
        try:
            st = os.stat(path)
            key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        if key is not None and key in _READ:
            return _READ[key]
        b = load(path)
        _READ.clear()
        if key is not None:
            _READ[key] = b
        return b
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise BaselineError(f"cannot read baseline: {e.strerror}", SourceLocation(path)) from None
    except UnicodeDecodeError as e:  # a capture or other binary given for a baseline
        raise BaselineError(f"not a baseline: not UTF-8 text (byte {e.start})", SourceLocation(path)) from None
    return parse(text, path)


#: libyaml where PyYAML has it (the same nodes, marks and data): a baseline of 64,000 MQTT topics (4.6 MB)
#: took 40 s and ~800 MB to compose and load with the pure-Python parser, parsed twice (nodes, then data)
_LOADER = FastLoader


def _node_and_data(text: str, loader_class=_LOADER):
    """Parse once: the node tree (for the marks errors name) and the data constructed from it. What
    libyaml refuses goes to the pure-Python parser, the reference: the writer escapes strings (lone
    surrogates as \\ud800) that only it reads back, and its error is the one reported."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.YAMLError:
        if loader_class is SafeLoader:
            raise
    finally:
        loader.dispose()
    return _node_and_data(text, SafeLoader)


def _data(text: str):
    """The data of a baseline text: built from libyaml's events (yamlload.load_plain: no node tree, a
    fifth of the peak for a large baseline); a text that needs the node tree, or has an error (whose report
    is then the node tree's, the same as before), as _node_and_data builds it."""
    try:
        return load_plain(text, _LOADER)
    except (NotPlain, yaml.YAMLError):  # an error: the node tree's (it parses all before it builds anything)
        return _node_and_data(text)[1]


def parse(text: str, path: str = "<baseline>") -> Baseline:
    try:
        data = _data(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise BaselineError(f"invalid YAML: {getattr(e, 'problem', None) or e}",
                            SourceLocation(path, mark.line + 1 if mark else None,
                                           mark.column + 1 if mark else None)) from None
    b = Baseline(path=path, text=text)
    if data is None:
        return b
    if not isinstance(data, dict):
        raise b.error("the top level must be a mapping (version, learned, and the sections)")
    specs = sections()
    known = {"version", "learned", *specs}
    for k in data:
        if k not in known:
            raise b.error(f"unknown top-level key '{k}' (known: {', '.join(sorted(known))})", k)
    v = data.get("version", FORMAT_VERSION)
    if v != FORMAT_VERSION:
        raise b.error(f"unsupported format version {v!r} (this otids reads version {FORMAT_VERSION})", "version")
    learned = data.get("learned") or {}
    if not isinstance(learned, dict):
        raise b.error("'learned' must be a mapping", "learned")
    b.learned = learned
    for name, spec in specs.items():
        raw = data.get(name)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise b.error(f"'{name}' must be a list of entries", name)
        sec = b.section(name)
        for i, e in enumerate(raw):
            eid = item_id((name,), e, i)
            if not isinstance(e, dict):
                raise b.error(f"each {name} entry must be a mapping", name, eid)
            for k in spec.key:
                if e.get(k) is None:
                    raise b.error(f"{name} entry lacks its identity field '{k}' "
                                  f"(identity: {', '.join(spec.key)})", name, eid)
            _check_keys(b, spec, e, eid)
            _check_identity(b, spec, e, eid)
            st = e.get("status")
            if st not in STATUSES:
                raise b.error(f"status must be one of {', '.join(STATUSES)} (got {st!r})", name, eid,
                              "status" if "status" in e else "")
            if "note" in e and e["note"] is not None and not isinstance(e["note"], str):
                raise b.error("note must be text", name, eid, "note")
            if eid in sec:
                raise b.error(f"duplicate {name} entry {eid}", name, eid)
            sec[eid] = e
    return b


#: keys inside an entry's nested parts: (section, field) -> (how the field holds its items, valid keys).
#: "list": a list of mappings; "map": a mapping of names to mappings; "map2": two levels of names.
NESTED_KEYS = {
    ("modbus", "polls"): ("list", ("function", "address", "period", "jitter", "samples")),
    ("modbus", "values"): ("map2", ("band", "seen", "count")),
    ("mqtt", "publishes"): ("map", ("qos", "messages", "period", "jitter")),
    ("mqtt", "subscribes"): ("map", ("qos", "messages")),
}


def _unknown_key(b: Baseline, what: str, k, valid, *path) -> BaselineError:
    import difflib
    close = difflib.get_close_matches(str(k), [str(v) for v in valid], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return b.error(f"unknown key '{k}' in {what} ({hint}valid: {', '.join(valid)})", *path)


def _check_keys(b: Baseline, spec: SectionSpec, e: dict, eid: str) -> None:
    """Entry keys are checked as strictly as otids.yaml: a misspelt key would silently change enforcement
    (a `funtions:` entry enforces an empty function list)."""
    valid = spec.key + COMMON_HEAD + spec.order
    for k in e:
        if k not in valid:
            raise _unknown_key(b, f"{spec.name} entry", k, valid, spec.name, eid, k)
    for (sec, fld), (shape, keys) in NESTED_KEYS.items():
        if sec != spec.name or not e.get(fld):
            continue
        v = e[fld]
        items: list = []
        if shape == "list" and isinstance(v, list):
            items = [((item_id((spec.name, eid, fld), x, i),), x) for i, x in enumerate(v)]
        elif shape == "map" and isinstance(v, dict):
            items = [((n,), x) for n, x in v.items()]
        elif shape == "map2" and isinstance(v, dict):
            items = [((n, m), x) for n, inner in v.items() if isinstance(inner, dict) for m, x in inner.items()]
        for where, x in items:
            if not isinstance(x, dict):
                continue
            for k in x:
                if k not in keys:
                    raise _unknown_key(b, f"{spec.name} {fld}", k, keys, spec.name, eid, fld, *where, k)


def _check_identity(b: Baseline, spec: SectionSpec, e: dict, eid: str) -> None:
    for k in spec.key:
        v = e[k]
        if k in ("ip", "client", "server", "master", "slave", "broker", "host"):
            try:
                ipaddress.ip_address(str(v))
            except ValueError:
                raise b.error(f"'{k}' must be an IP address (got {v!r})", spec.name, eid, k) from None
        elif k == "unit" and not (isinstance(v, int) and 0 <= v <= 255):
            raise b.error(f"'unit' must be a Modbus unit id 0-255 (got {v!r})", spec.name, eid, k)


def _marks(node, data, path, marks) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for (kn, vn), k in zip(node.value, list(data.keys())):
            kp = path + (str(k),)
            marks[kp] = (kn.start_mark.line + 1, kn.start_mark.column + 1)
            _marks(vn, data[k], kp, marks)
            marks[kp] = (kn.start_mark.line + 1, kn.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for i, (vn, item) in enumerate(zip(node.value, data)):
            _marks(vn, item, path + (item_id(path, item, i),), marks)


# ---------------------------------------------------------------------------------------------- re-learn

@dataclass
class MergeReport:
    kept_reviewed: int = 0  # approved/denied entries kept unchanged
    carried_status: int = 0  # entries whose status/note came over from the old file
    dropped_learned: list = field(default_factory=list)  # labels of learned entries not seen again
    reviewed_with_new: list = field(default_factory=list)  # (label, what the new traffic added)
    comments: int = 0


def merge_review(new: Baseline, old: Baseline, prune: bool = True) -> MergeReport:
    """Carry review state from `old` into freshly learned `new` (in place): approved and denied entries
    stay exactly as reviewed; status and note of other matching entries come over; learned entries the
    new traffic no longer shows are listed in the report and dropped with `prune`, kept as they were
    without it."""
    rep = MergeReport()
    for name, spec in sections().items():
        olds = old.entries.get(name, {})
        news = new.section(name)
        for eid, oe in olds.items():
            ne = news.get(eid)
            if oe.get("status") in REVIEWED:
                if ne is not None:
                    added = _added_facts(ne, oe)
                    if added:
                        rep.reviewed_with_new.append((entry_label(spec, oe), added))
                news[eid] = oe
                rep.kept_reviewed += 1
            elif ne is not None:
                if oe.get("note"):
                    ne["note"] = oe["note"]
                ne["status"] = oe.get("status", "learned")
                rep.carried_status += 1
            else:
                rep.dropped_learned.append(entry_label(spec, oe))
                if not prune:
                    news[eid] = oe
    return rep


_VOLATILE = {"first_seen", "last_seen", "events", "transactions", "messages", "samples", "count", "status",
             "note", "seen", "jitter", "period"}


def _added_facts(new, old, path="") -> list[str]:
    """Facts present in `new` but not in `old` (ignoring counts and times): what a re-learn would add to a
    reviewed entry."""
    out: list[str] = []
    if isinstance(new, dict) and isinstance(old, dict):
        for k, v in new.items():
            if k in _VOLATILE:
                continue
            p = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(p)
            else:
                out += _added_facts(v, old[k], p)
    elif isinstance(new, list) and isinstance(old, list):
        olds = {yaml.safe_dump(x, sort_keys=True) for x in old}
        for x in new:
            if yaml.safe_dump(x, sort_keys=True) not in olds:
                out.append(f"{path} {yamlio._flow(x)}")
    return out


def read_comments(text: str) -> yamlio.Comments:
    return yamlio.read_comments(text, item_id, HEADER)


# ---------------------------------------------------------------------------------------------- diff

@dataclass(frozen=True)
class Change:
    section: str
    entry: str  # identity
    label: str
    op: str  # added | removed | changed
    details: tuple[str, ...] = ()


def diff(old: Baseline, new: Baseline) -> list[Change]:
    """Entry-by-entry differences, by identity (so re-ordering is no difference); within an entry, field
    paths with old -> new values. Times and counts are compared too: they say how an entry was learned."""
    out: list[Change] = []
    for name, spec in sections().items():
        o, n = old.entries.get(name, {}), new.entries.get(name, {})
        for eid in sorted(set(o) | set(n), key=lambda i: sort_key(spec, (o.get(i) or n.get(i)))):
            if eid not in o:
                out.append(Change(name, eid, entry_label(spec, n[eid]), "added", _summary(spec, n[eid])))
            elif eid not in n:
                out.append(Change(name, eid, entry_label(spec, o[eid]), "removed", _summary(spec, o[eid])))
            else:
                d = _field_diff(o[eid], n[eid], "")
                if d:
                    out.append(Change(name, eid, entry_label(spec, n[eid]), "changed", tuple(d)))
    return out


def _summary(spec: SectionSpec, e: dict) -> tuple[str, ...]:
    parts = [f"status {e.get('status')}"]
    if spec.count_field in e:
        parts.append(f"{e[spec.count_field]} {spec.count_field}")
    return tuple(parts)


def _field_diff(a, b, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            p = f"{path}.{k}" if path else str(k)
            if k not in b:
                out.append(f"{p}: removed (was {yamlio._flow(a[k])})")
            elif k not in a:
                out.append(f"{p}: added {yamlio._flow(b[k])}")
            else:
                out += _field_diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and a != b:
        pair = len(a) == len(b) == 2 and all(isinstance(x, (int, float)) for x in a + b)  # a band: [low, high]
        if not pair and all(yamlio._is_scalar(x) for x in a + b):
            sa, sb = [yamlio._flow(x) for x in a], [yamlio._flow(x) for x in b]
            plus = [x for x in sb if x not in sa]
            minus = [x for x in sa if x not in sb]
            if plus or minus:
                return [f"{path}: " + " ".join([f"+{x}" for x in plus] + [f"-{x}" for x in minus])]
        return [f"{path}: {yamlio._flow(a)} -> {yamlio._flow(b)}"]
    if a != b:
        return [f"{path}: {yamlio._flow(a)} -> {yamlio._flow(b)}"]
    return []


def write_atomic(path: str, text: str, what: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so a reader never sees half a file;
    a failure is a one-line UserError naming the path and `what` was being written."""
    import os

    from ...output.safefile import OutputFile
    try:
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        out = OutputFile(path)  # a device or pipe is written directly, never renamed over
        try:
            out.write(text)
            out.commit()
        except BaseException:
            out.discard()
            raise
    except OSError as e:
        raise UserError(f"{path}: cannot write {what}: {e.strerror}") from None


def write_baseline(b: "Baseline", path: str, old_text: str | None = None) -> str | None:
    """Write atomically, keeping the comments of the file it replaces (`old_text`); an existing file is kept
    first as FILE.bak (or FILE.bak.N). Returns the backup's name, None when nothing was kept (no previous
    file, or the text is unchanged and nothing was written)."""
    import os

    from ...output.safefile import write_text
    comments = read_comments(old_text) if old_text else None
    text = b.dump(comments)
    if old_text is not None and text == old_text and os.path.isfile(path):
        return None
    return write_text(path, text, "baseline", backup=True)
