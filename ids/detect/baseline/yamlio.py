"""Deterministic YAML for baseline files, with reviewers' comments that follow their entries across a
re-learn.

Why not a general round-trip library (ruamel.yaml): it keeps comments by position, attached to the token
before them, so when a re-learn adds, removes or re-sorts entries the comments drift onto the wrong
entries. Here every line the emitter writes carries the *semantic path* of what starts on it (section,
entry identity such as `127.0.0.2|127.0.0.11|1`, field); comments read from the old file are keyed by the
same paths, so a comment stays with its entry wherever the entry moves. Comments whose entry is gone are
kept at the end of the file under a marker, never silently dropped. The emitter writes one canonical
layout (key order given by the caller, flow style for short leaf mappings, minimal quoting), so learning
the same traffic twice gives byte-identical files.
"""
from __future__ import annotations

import json
import re
from typing import Callable

import yaml

from ...yamlload import NO_KEY, FastLoader, NotPlain, SafeLoader, load_plain

Path = tuple[str, ...]
#: (path of a sequence, item, index) -> the item's identity within that sequence
ItemId = Callable[[Path, object, int], str]

ORPHAN_MARK = "# -- comments kept from entries no longer in this file:"

#: Never plain: indicators that start a token (first character), ": " and " #" (mapping value, comment),
#: trailing space or colon, and the flow indicators , [ ] { } ? anywhere (inside a flow collection they end
#: a plain scalar, and the emitter writes the same scalar in block and flow context).
_PLAIN_BAD = re.compile(r": |\s#|^[\s\-?:,\[\]{}#&*!|>'\"%@`]|\s$|:$|[,\[\]{}?]")
#: YAML limits implicit keys to 1024 characters on one line (PyYAML enforces it); longer keys are written
#: as explicit keys (`? key` / `: value`), and mappings holding one are never written in flow style.
MAX_IMPLICIT_KEY = 1000
_CACHE_MAX = 100_000
_scalar_cache: dict[str, str] = {}
#: YAML double-quoted escapes (YAML 1.1 5.7; PyYAML reads them all)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\0": "\\0", "\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n",
            "\v": "\\v", "\f": "\\f", "\r": "\\r", "\x1b": "\\e", "\x85": "\\N", "\xa0": "\\_",
            "\u2028": "\\L", "\u2029": "\\P"}


def quote(s: str) -> str:
    """`s` as a one-line YAML double-quoted scalar that reads back as exactly `s`: quotes and backslashes
    escaped, and every character that is not printable (controls, line and paragraph separators, BOM,
    non-ASCII spaces, lone surrogates, unassigned code points) written as an escape, so the file is
    plain printable UTF-8 whatever the traffic carried."""
    if s.isprintable():
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = []
    for c in s:
        e = _ESCAPES.get(c)
        if e is None:
            if c.isprintable():
                e = c
            else:
                o = ord(c)
                e = f"\\x{o:02X}" if o < 0x100 else f"\\u{o:04X}" if o < 0x10000 else f"\\U{o:08X}"
        out.append(e)
    return '"' + "".join(out) + '"'


_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"


def _plain_ok(s: str) -> bool:
    """Whether `s` reads back as itself when written plain. What the regex lets through is one plain scalar
    (no indicator, no ': ' or ' #'), so the resolver alone decides: not a number, bool, null, date, ...
    (yaml.safe_load(s) == s gave the same answers over 300,000 random strings; it took 0.6 ms a string, 41 s
    for a baseline of 64,000 topics, and raised ValueError on '0x_' and '0b_', which the resolver calls
    ints that do not construct: a topic of that name ended `otids learn`). The document end marker is no
    scalar at all."""
    if not s or not s.isprintable() or _PLAIN_BAD.search(s) or s == "<<":  # "<<" as a key is a merge
        return False
    if s[:3] == "..." and (len(s) == 3 or s[3] == " "):
        return False
    return _RESOLVER.resolve(yaml.ScalarNode, s, (True, False)) == _STR


def scalar(v) -> str:
    """One scalar in canonical form, valid in block and flow context alike: strings are plain when YAML
    would read them back unchanged, double-quoted otherwise."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "n" in r) else r + ".0"
    s = str(v)
    out = _scalar_cache.get(s)
    if out is None:
        out = s if _plain_ok(s) else quote(s)
        if len(_scalar_cache) < _CACHE_MAX:
            _scalar_cache[s] = out
    return out


def _short_keys(m: dict) -> bool:
    return all(len(scalar(k)) <= MAX_IMPLICIT_KEY for k in m)


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _flow(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{scalar(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return scalar(v)


def _leafy(v) -> bool:
    """A mapping or list that may be written on one line: scalars and lists of scalars only."""
    if isinstance(v, dict):
        return _short_keys(v) and all(_is_scalar(x) or (isinstance(x, (list, tuple)) and all(_is_scalar(y) for y in x))
                                      for x in v.values())
    return isinstance(v, (list, tuple)) and all(_is_scalar(x) for x in v)


class Line:
    __slots__ = ("text", "paths", "indent")

    def __init__(self, text: str, paths: list, indent: int):
        self.text, self.paths, self.indent = text, paths, indent


class Emitter:
    """Writes nested dicts/lists as block YAML. Mappings at depth >= `flow_depth` (and list items at depth
    >= `flow_depth` - 1) that hold only scalars go on one line when short."""

    def __init__(self, item_id: ItemId, flow_depth: int = 4, width: int = 110):
        self.item_id = item_id
        self.flow_depth = flow_depth
        self.width = width

    def lines(self, doc: dict) -> list[Line]:
        out: list[Line] = []
        self._map(doc, (), 0, out)
        return out

    def _map(self, m: dict, path: Path, ind: int, out: list) -> None:
        pad = " " * ind
        for k, v in m.items():
            kp = path + (str(k),)
            key = scalar(k)
            if len(key) > MAX_IMPLICIT_KEY:  # explicit key: `? key`, then `: value` on the next line
                out.append(Line(f"{pad}? {key}", [kp], ind))
                head = f"{pad}:"
                kp_line: list = []
            else:
                head = f"{pad}{key}:"
                kp_line = [kp]
            if _is_scalar(v):
                out.append(Line(f"{head} {scalar(v)}", kp_line, ind))
            elif not v:
                out.append(Line(f"{head} {'{}' if isinstance(v, dict) else '[]'}", kp_line, ind))
            elif isinstance(v, (list, tuple)) and _leafy(v):
                out.append(Line(f"{head} {_flow(v)}", kp_line, ind))
            elif isinstance(v, dict) and len(kp) >= self.flow_depth and _leafy(v) \
                    and len(head) + len(_flow(v)) < self.width:
                out.append(Line(f"{head} {_flow(v)}", kp_line, ind))
            else:
                out.append(Line(head, kp_line, ind))
                if isinstance(v, dict):
                    self._map(v, kp, ind + 2, out)
                else:
                    self._seq(v, kp, ind + 2, out)

    def _seq(self, s: list, path: Path, ind: int, out: list) -> None:
        pad = " " * ind
        for i, item in enumerate(s):
            ip = path + (self.item_id(path, item, i),)
            if isinstance(item, dict) and item and not (len(ip) >= self.flow_depth and _leafy(item)
                                                        and len(_flow(item)) + ind < self.width):
                sub: list[Line] = []
                self._map(item, ip, ind + 2, sub)
                first = sub[0]
                first.text = f"{pad}- {first.text.lstrip()}"
                first.paths = [ip] + first.paths
                first.indent = ind
                out.extend(sub)
            elif isinstance(item, (list, tuple)) and item and not _leafy(item):
                raise ValueError(f"nested list at {'/'.join(ip)} is not supported")
            else:
                out.append(Line(f"{pad}- {_flow(item)}", [ip], ind))


# ---------------------------------------------------------------------------------------------- comments

class Comments:
    """Comments read from an earlier version of a file, keyed by semantic path."""

    def __init__(self):
        self.before: dict[Path, list[str]] = {}  # full-line comments above the line where `path` starts
        self.trailing: list[tuple[list[Path], str]] = []  # end-of-line comments, with every path on that line
        self.end: list[str] = []  # after the last content line
        self.orphans: list[str] = []  # kept from entries that were gone at an earlier re-learn

    def __bool__(self) -> bool:
        return bool(self.before or self.trailing or self.end or self.orphans)


_CONTENT_TOKENS = (yaml.ScalarToken, yaml.FlowSequenceStartToken, yaml.FlowSequenceEndToken,
                   yaml.FlowMappingStartToken, yaml.FlowMappingEndToken, yaml.FlowEntryToken, yaml.ValueToken,
                   yaml.BlockEntryToken, yaml.AnchorToken, yaml.AliasToken, yaml.TagToken)


def read_comments(text: str, item_id: ItemId, header: list[str] | None = None) -> Comments:
    """Find every comment in `text` (a YAML document) and key it by the path of the content it belongs to:
    a full-line comment to the outermost path starting on the next content line, an end-of-line comment to
    every path starting on its line. Lines equal to the generated `header` are not comments to keep."""
    lines = text.split("\n")
    n = len(lines)
    try:  # libyaml first (a 64,000-topic baseline: 90 s with the pure-Python scanner and parser)
        covered, content_end, starts = _positions(text, lines, item_id, _FAST)
    except yaml.YAMLError:  # what only the pure-Python parser reads back (lone surrogates escaped)
        covered, content_end, starts = _positions(text, lines, item_id, SafeLoader)
    out = Comments()
    pending: list[str] = []
    header_set = set(header or ())
    orphan_mode = False
    at_top = True
    for ln in range(n):
        raw = lines[ln]
        stripped = raw.strip()
        if not covered[ln]:
            if stripped.startswith("#"):
                if at_top and raw.rstrip() in header_set:
                    continue
                if stripped == ORPHAN_MARK:
                    orphan_mode = True
                elif orphan_mode:
                    out.orphans.append(stripped)
                else:
                    pending.append(stripped)
            continue
        at_top = orphan_mode = False
        paths = starts.get(ln)
        if paths and pending:
            out.before.setdefault(paths[0], []).extend(pending)
            pending = []
        rest = raw[content_end[ln]:] if content_end[ln] >= 0 else ""
        i = rest.find("#")
        if i >= 0 and paths and not rest[:i].strip():
            out.trailing.append((paths, rest[i:].strip()))
    out.end = pending
    return out


_FAST = FastLoader


def _positions(text: str, lines: list[str], item_id: ItemId, loader_class) -> tuple[list, list, dict]:
    """Lines holding content, where content ends on each line, and the paths starting on each line."""
    n = len(lines)
    covered = [False] * n
    content_end = [-1] * n
    for tok in yaml.scan(text, Loader=loader_class):
        if not isinstance(tok, _CONTENT_TOKENS):
            continue
        s, e = tok.start_mark, tok.end_mark
        for ln in range(s.line, min(e.line, n - 1) + 1):
            covered[ln] = True
        if e.line < n:
            content_end[e.line] = max(content_end[e.line], e.column)
    try:  # from the parser's events (no node tree: for a 64,000-topic baseline the tree peaked at ~240 MB)
        return covered, content_end, _Starts(item_id).read(text, loader_class)
    except NotPlain:  # anchors, merge keys, duplicate keys, tags: the node tree, as it always read them
        pass
    starts: dict[int, list[Path]] = {}
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _walk(node, loader.construct_document(node), (), starts, item_id)
    finally:
        loader.dispose()
    return covered, content_end, starts


class _Pending:
    """An item's identity in a path before the item is read whole (item_id needs the item)."""

    __slots__ = ("id",)


class _Starts:
    """The paths starting on each line, as _walk finds them on the node tree, from load_plain's events: a
    key's path when the key is read, an item's when it starts (its identity filled in when it ends), in
    document order, which is _walk's order."""

    def __init__(self, item_id: ItemId):
        self.item_id = item_id
        self.paths: list[Path] = []  # the path of each open collection (holding _Pending for open items)
        self.items: list = []  # per open sequence: the _Pending of its current item
        self.starts: dict[int, list] = {}  # line -> paths, _Pending in them until the whole text is read
        self.key_line = 0

    def read(self, text: str, loader_class) -> dict[int, list[Path]]:
        load_plain(text, loader_class, self)
        for paths in self.starts.values():
            for i, path in enumerate(paths):
                paths[i] = tuple(p.id if type(p) is _Pending else p for p in path)
        return self.starts

    def _slot(self, line: int, path: Path) -> None:
        self.starts.setdefault(line, []).append(path)

    def start(self, ev, top) -> None:
        opens = isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
        if top is None:
            path = ()
        elif type(top[0]) is list:
            pending = _Pending()
            path = self.paths[-1] + (pending,)
            self.items[-1] = pending
            self._slot(ev.start_mark.line, path)
        elif top[1] is NO_KEY:  # a key
            if opens:
                raise NotPlain  # a collection as a key: unhashable, the node tree's error
            self.key_line = ev.start_mark.line
            return
        else:
            path = self.paths[-1] + (str(top[1]),)
        if opens:
            self.paths.append(path)
            self.items.append(None)

    def end(self, value, top) -> None:
        if type(value) is dict or type(value) is list:
            self.paths.pop()
            self.items.pop()
        if top is None:
            return
        c = top[0]
        if type(c) is list:
            self.items[-1].id = self.item_id(self.paths[-1], value, len(c))
        elif top[1] is NO_KEY:
            try:
                twice = value in c
            except TypeError:  # unhashable: the node tree's error
                raise NotPlain from None
            if twice:
                raise NotPlain  # a key twice: _walk pairs nodes with the keys left, as it always did
            self._slot(self.key_line, self.paths[-1] + (str(value),))


def _walk(node, data, path: Path, starts: dict, item_id: ItemId) -> None:
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        keys = list(data.keys())
        for (kn, vn), k in zip(node.value, keys):
            kp = path + (str(k),)
            starts.setdefault(kn.start_mark.line, []).append(kp)
            _walk(vn, data[k], kp, starts, item_id)
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for i, (vn, item) in enumerate(zip(node.value, data)):
            ip = path + (item_id(path, item, i),)
            starts.setdefault(vn.start_mark.line, []).append(ip)
            _walk(vn, item, ip, starts, item_id)


# ---------------------------------------------------------------------------------------------- dump

def dump(doc: dict, item_id: ItemId, header: list[str], comments: Comments | None = None,
         flow_depth: int = 4) -> str:
    """The document as YAML text: `header` lines first, then the body with `comments` put back."""
    body = Emitter(item_id, flow_depth).lines(doc)
    out = list(header)
    used_before: set[Path] = set()
    used_trailing: set[int] = set()
    trailing_at: dict[Path, list[int]] = {}
    if comments:
        for idx, (paths, _) in enumerate(comments.trailing):
            for p in paths:
                trailing_at.setdefault(p, []).append(idx)
    for line in body:
        if comments:
            for p in line.paths:
                cs = comments.before.get(p)
                if cs and p not in used_before:
                    used_before.add(p)
                    out.extend(" " * line.indent + c for c in cs)
        text = line.text
        if comments:
            for p in reversed(line.paths):
                got = [i for i in trailing_at.get(p, ()) if i not in used_trailing]
                if got:
                    used_trailing.update(got)
                    text += "  " + " ".join(comments.trailing[i][1] for i in got)
                    break
        out.append(text)
    if comments:
        orphans = list(comments.orphans)
        orphans += [c for p, cs in comments.before.items() if p not in used_before for c in cs]
        orphans += [c for i, (_, c) in enumerate(comments.trailing) if i not in used_trailing]
        if orphans:
            out.append(ORPHAN_MARK)
            out.extend(orphans)
        out.extend(comments.end)
    return "\n".join(out) + "\n"
