"""PyYAML's safe loaders for the files users edit (config, rules, baseline, registry), with one difference:
a scalar that PyYAML resolves but cannot build is a YAML error at its place, like any other.

PyYAML resolves `2026-02-30` as a timestamp and then raises ValueError from `datetime.date`; a UTC offset of
+99:00, year 0 and an integer of more than 4,300 digits (Python's int-from-text limit) do the same. That
ValueError is not a `yaml.YAMLError`, so every loader's error path missed it and a one-character typo in a
suppression's `expires` date ended `otids` with a traceback (fuzzing, rules_file). Here it becomes a
ConstructorError carrying the value's mark, which the loaders already turn into "file:line:col: ...".
"""
from __future__ import annotations

import re

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import MarkedYAMLError

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


#: collections nested deeper than this are an error at the first one past it. Every file otids reads nests
#: under 15 levels. libyaml's composer recurses in C without a check: 50,000 `[` (50 KB) ended the process
#: with SIGSEGV, no message; PyYAML's Python composer and the loaders' own walks raised RecursionError.
MAX_DEPTH = 100

_EVENTS = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # an event stream: a state machine, no recursion
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


_DEEP_BLOCK = re.compile(r"^[ \t?:-]{%d}" % (MAX_DEPTH // 4 - 1), re.M)


def _shallow(text: str) -> bool:
    """True when `text` surely nests under MAX_DEPTH, found at C speed; False: maybe not (events decide).
    Flow nesting needs a `[` or `{` per level; block nesting needs indentation (a mapping and the sequence
    under it may share a column): under MAX_DEPTH/4 columns of leading blanks and `- ? :` on every line, it
    is under MAX_DEPTH/2 levels. A bound that ignored brackets in quotes and comments could be fooled."""
    return text.count("[") + text.count("{") < MAX_DEPTH // 2 and not _DEEP_BLOCK.search(text)


#: nodes that aliases may add beyond those written: each `*name` stands for the whole tree its anchor names,
#: and twelve lines of ten aliases each stand for 10^12 nodes ("billion laughs"), which the loaders' walks
#: (rules, baseline) followed for ever
MAX_ALIAS_NODES = 1_000_000


def check_depth(text) -> None:
    """Raise a MarkedYAMLError at the first collection of `text` nested deeper than MAX_DEPTH, or at the
    alias that makes aliases stand for more than MAX_ALIAS_NODES nodes. A syntax error is left to the loader,
    which words and places it as before. A small file without anchors that surely nests less is let through
    at once; otherwise one parse of events decides (~10 % of a libyaml load: 0.4 of 4.2 CPU s for `baseline
    check` of a 4 MB baseline of 64,000 MQTT topics, measured with /usr/bin/time)."""
    if isinstance(text, str) and "&" not in text and _shallow(text):
        return
    for events in (_EVENTS, yaml.SafeLoader):  # what libyaml refuses, PyYAML's own parser may read
        try:
            _walk_events(yaml.parse(text, Loader=events))
            return
        except TooDeep:
            raise
        except yaml.YAMLError:
            continue


def _walk_events(events) -> None:
    stack: list[list] = [[None, 0]]  # per open collection: its anchor, the nodes it stands for
    sizes: dict = {}  # anchor -> nodes its tree stands for
    extra = 0  # nodes aliases add
    for ev in events:
        if isinstance(ev, _OPEN):
            if len(stack) > MAX_DEPTH:
                raise TooDeep(None, None, f"nested deeper than {MAX_DEPTH} levels", ev.start_mark)
            stack.append([ev.anchor, 1])
        elif isinstance(ev, _CLOSE):
            anchor, n = stack.pop()
            if anchor is not None:
                sizes[anchor] = n
            stack[-1][1] += n
        elif isinstance(ev, yaml.ScalarEvent):
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
            stack[-1][1] += 1
        elif isinstance(ev, yaml.AliasEvent):
            n = sizes.get(ev.anchor, 1)
            extra += n - 1
            if extra > MAX_ALIAS_NODES:
                raise TooDeep(None, None, f"aliases stand for more than {MAX_ALIAS_NODES:,} nodes", ev.start_mark)
            stack[-1][1] += n


class TooDeep(MarkedYAMLError):
    """Collections nested deeper than MAX_DEPTH, or aliases standing for too many nodes (a YAML error at
    the first event past the limit)."""


def harden(cls):
    """Give a SafeConstructor-based loader class the guarded constructors (its own copy of the table), and
    check the nesting depth of what it is given before its composer sees it."""
    for tag in _GUARDED:
        cls.add_constructor(tag, _guard(SafeConstructor.yaml_constructors[tag]))
    base_init = cls.__init__

    def __init__(self, stream):
        if hasattr(stream, "read"):  # a file: read whole (the reader would read it all anyway) and checked
            stream = stream.read()
        check_depth(stream)
        base_init(self, stream)
    cls.__init__ = __init__
    return cls


class NotPlain(Exception):
    """The document uses what only the node tree builds (anchors, aliases, merge keys, tagged collections,
    several documents, an unhashable key): load it the usual way."""


_MAP_TAG, _SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def load_plain(text: str, loader_class, watch=None):
    """The data of a one-document YAML text as `loader_class(text).get_single_data()` builds it, built from
    the parser's events without composing the node tree first. PyYAML composes every node (each with two
    marks) before it constructs anything: a 4.4 MB baseline of 64,000 MQTT topics peaked at 243 MB (traced)
    to hold 36 MB of data, and glibc kept the peak as the process's RSS for the rest of the run. Each scalar
    still goes through the loader's resolver and constructors (the guarded ones included), so values and
    errors are the same; a document using anything else (NotPlain) is left to the node tree.

    `watch` (optional) sees where each value starts and what it is: `watch.start(ev, top)` at a value's first
    event and `watch.end(value, top)` when it is built, before it is placed; `top` is its collection's
    [container, key being read or NO_KEY (a mapping's next value is a key)], None for the root."""
    loader = loader_class(text)
    constructors = loader.yaml_constructors
    ScalarNode = yaml.ScalarNode
    try:
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        stack: list = []  # open collections: [container, pending key or NO_KEY]
        root = None
        while True:
            ev = loader.get_event()
            cls = type(ev)
            if watch is not None and cls is not yaml.MappingEndEvent and cls is not yaml.SequenceEndEvent:
                watch.start(ev, stack[-1] if stack else None)
            if cls is yaml.ScalarEvent:
                if ev.anchor is not None:
                    raise NotPlain
                tag = ev.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(ScalarNode, ev.value, ev.implicit)
                if tag == "tag:yaml.org,2002:merge":
                    raise NotPlain
                build = constructors.get(tag) or constructors[None]
                value = build(loader, ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, style=ev.style))
            elif cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
                if ev.anchor is not None or ev.tag not in (None, "!", _MAP_TAG if cls is yaml.MappingStartEvent
                                                           else _SEQ_TAG):
                    raise NotPlain
                stack.append([{} if cls is yaml.MappingStartEvent else [], NO_KEY])
                continue
            elif cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
                value = stack.pop()[0]
            else:  # an alias
                raise NotPlain
            if watch is not None:
                watch.end(value, stack[-1] if stack else None)
            if not stack:
                root = value
                break
            top = stack[-1]
            c = top[0]
            if type(c) is list:
                c.append(value)
            elif top[1] is NO_KEY:
                try:
                    hash(value)
                except TypeError:
                    raise NotPlain from None
                top[1] = value
            else:
                c[top[1]] = value
                top[1] = NO_KEY
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            raise NotPlain  # several documents: the node tree's error says so
        return root
    finally:
        loader.dispose()


NO_KEY = object()  # (a mapping whose next value is a key)


@harden
class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader: the pure-Python parser (the reference for errors and for what libyaml refuses)."""


@harden
class FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml.CSafeLoader where PyYAML has libyaml (the same nodes, marks and data), else SafeLoader."""
