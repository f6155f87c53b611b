"""YAML with positions: every mapping key, mapping value and list item keeps its `line:col`, so rule
errors can name the exact place (pySigma style). Built on PyYAML's composer, whose nodes carry marks.

Only plain data comes out (dict/list/str/int/float/bool/None, no tags beyond the YAML 1.1 core): rules are
data, never code.
"""
from __future__ import annotations

import yaml

from ...errors import SourceLocation
from ...yamlload import FastLoader, SafeLoader


class LMap(dict):
    """A mapping that remembers where its keys and values stand."""

    __slots__ = ("pos", "kpos", "vpos")

    def key_at(self, key) -> SourceLocation:
        return self.kpos.get(key, self.pos)

    def value_at(self, key) -> SourceLocation:
        return self.vpos.get(key, self.pos)


class LList(list):
    __slots__ = ("pos", "ipos")

    def item_at(self, i: int) -> SourceLocation:
        return self.ipos[i] if 0 <= i < len(self.ipos) else self.pos


class YamlProblem(Exception):
    def __init__(self, message: str, source: SourceLocation):
        super().__init__(message)
        self.message = message
        self.source = source


def _loc(path: str, node) -> SourceLocation:
    m = node.start_mark
    return SourceLocation(path, m.line + 1, m.column + 1)


_FAST_LOADER = FastLoader  # libyaml where PyYAML has it; both loaders check the nesting depth first
_ctor = SafeLoader(""); _ctor.dispose()  # scalar resolution (ints, bools, dates) as SafeLoader does
_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"


def _convert(path: str, node):
    if isinstance(node, yaml.MappingNode):
        out = LMap()
        out.pos, out.kpos, out.vpos = _loc(path, node), {}, {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem("YAML merge keys (<<) are not supported in rule files", _loc(path, knode))
            key = _convert(path, knode)
            if isinstance(key, (dict, list)):
                raise YamlProblem("a mapping key must be a plain value", _loc(path, knode))
            if key in out:
                raise YamlProblem(f"duplicate key '{key}' (first at line {out.kpos[key].line})", _loc(path, knode))
            out[key] = _convert(path, vnode)
            out.kpos[key] = _loc(path, knode)
            out.vpos[key] = _loc(path, vnode)
        return out
    if isinstance(node, yaml.SequenceNode):
        out = LList(_convert(path, n) for n in node.value)
        out.pos = _loc(path, node)
        out.ipos = [_loc(path, n) for n in node.value]
        return out
    tag, v = node.tag, node.value
    if tag == _STR:  # most values: the resolver's answer is the text itself
        return v
    if tag == _INT and v.isdigit() and (v[0] != "0" or len(v) == 1) and len(v) < 100:  # plain decimal (YAML 1.1:
        # 010 is octal; longer ones go to the guarded constructor: int() refuses more than 4,300 digits)
        return int(v)
    try:
        return _ctor.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        raise YamlProblem(f"invalid value: {getattr(e, 'problem', e)}", _loc(path, node)) from None
    finally:  # the constructor remembers every node it built (for anchors): never across values
        _ctor.constructed_objects.clear()


def load_documents(path: str, text: str | None = None) -> list:
    """Every YAML document in `path` as located data. Raises YamlProblem (with line:col) or OSError."""
    if text is None:
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:  # a binary file, or another encoding: say where, as for bad YAML
            line = raw.count(b"\n", 0, e.start) + 1
            col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            raise YamlProblem(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); a YAML file is "
                              f"UTF-8", SourceLocation(path, line, col)) from None
    try:
        try:  # libyaml's parser where PyYAML has it (half the time on 50,000 rules; same nodes and marks)
            nodes = list(yaml.compose_all(text, Loader=_FAST_LOADER))
        except yaml.YAMLError:  # the error as the Python parser words and places it
            nodes = list(yaml.compose_all(text, Loader=SafeLoader))
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        raise YamlProblem(f"invalid YAML: {e.problem or e.context}",
                          SourceLocation(path, m.line + 1 if m else None, m.column + 1 if m else None)) from None
    except yaml.YAMLError as e:
        raise YamlProblem(f"invalid YAML: {e}", SourceLocation(path)) from None
    return [_convert(path, n) for n in nodes if n is not None]
