"""What a loaded rule is: the condition tree, thresholds, suppressions, test cases, and the issues
(errors and warnings, each with `path:line:col`) that loading and validation report.

Everything here is plain frozen data; compile.py turns conditions into predicates, detector.py runs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import SourceLocation
from ...protocols import REGISTRY

SEVERITIES = ("low", "medium", "high", "critical")
#: Protocols rules can name (a rule keyword table in their package) -> the dataset of their events.
RULE_DATASETS = {n: p.dataset for n, p in REGISTRY.items() if p.rules is not None}


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a rule, list or suppression. Issues compare equal, so tests assert whole issues."""

    severity: str  # error | warning
    code: str  # stable kebab-case name, e.g. unknown-field
    message: str
    source: SourceLocation
    rule_id: str | None = None

    def __str__(self) -> str:
        rid = f" (rule {self.rule_id})" if self.rule_id else ""
        return f"{self.source}: {self.severity}: {self.message}{rid} [{self.code}]"


def error(code: str, message: str, source: SourceLocation, rule_id: str | None = None) -> Issue:
    return Issue("error", code, message, source, rule_id)


def warning(code: str, message: str, source: SourceLocation, rule_id: str | None = None) -> Issue:
    return Issue("warning", code, message, source, rule_id)


# ---------------------------------------------------------------------------------------------- conditions

@dataclass(frozen=True, slots=True)
class ListRef:
    """`$name`: a site list, resolved when rules are bound to a lists file."""

    name: str
    source: SourceLocation


@dataclass(frozen=True, slots=True)
class Check:
    """One operator on one field. `arg` is the operand as written (values may contain ListRef)."""

    field: str
    op: str  # equals in gt gte lt lte range cidr regex exists contains startswith endswith topic bsize
    arg: Any
    source: SourceLocation
    nocase: bool = False
    # Suricata sticky buffers: content chains must hold on the same element of a multi-valued field.
    chain: tuple = ()


@dataclass(frozen=True, slots=True)
class All:
    items: tuple
    source: SourceLocation


@dataclass(frozen=True, slots=True)
class Any_:
    items: tuple
    source: SourceLocation


@dataclass(frozen=True, slots=True)
class Not:
    item: Any
    source: SourceLocation


@dataclass(frozen=True, slots=True)
class Chain:
    """Several tests that must all hold on one element of `field` (Suricata multi-buffer semantics)."""

    field: str
    tests: tuple  # of Check on the same field
    source: SourceLocation


@dataclass(frozen=True, slots=True)
class Predicate:
    """A condition implemented in code (Suricata keywords with semantics no field operator expresses)."""

    name: str
    fields: tuple[str, ...]
    fn: Any  # (get) -> bool
    source: SourceLocation
    keys: tuple = ()  # index keys this predicate implies (e.g. mqtt message types)


# ---------------------------------------------------------------------------------------------- rules

@dataclass(frozen=True, slots=True)
class Threshold:
    count: int
    window_s: float
    group_by: tuple[str, ...]
    type: str = "threshold"  # threshold | limit | both (Suricata's meanings)
    distinct: str | None = None  # count distinct values of this field instead of events
    source: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class RuleCase:
    """A test case shipped with a rule: an inline event document that must / must not match, or a pcap
    with the exact number of alerts it must raise."""

    kind: str  # match | no_match | pcap
    doc: Any = None
    pcap: str | None = None
    alerts: int | None = None
    lists: dict | None = None
    source: SourceLocation | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    description: str
    severity: str
    protocol: str
    match: Any  # condition tree
    source: SourceLocation
    attack: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    threshold: Threshold | None = None
    tests: tuple[RuleCase, ...] = ()
    enabled: bool = True
    origin: str = "yaml"  # yaml | suricata
    test_lists: dict | None = None
    meta: dict = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return RULE_DATASETS[self.protocol]


@dataclass(frozen=True, slots=True)
class Suppression:
    """Silence `rule` (an id, or '*') for events matching `match` until `expires` (event time)."""

    rules: tuple[str, ...]
    match: Any
    expires_ns: int | None
    reason: str
    source: SourceLocation


@dataclass(slots=True)
class SiteLists:
    """The site file: named lists (`$name`) and suppressions, defined once per site."""

    path: str | None = None
    lists: dict = field(default_factory=dict)  # name -> list of values
    positions: dict = field(default_factory=dict)  # name -> SourceLocation
    item_positions: dict = field(default_factory=dict)  # name -> [SourceLocation per item]
    suppressions: list = field(default_factory=list)


def walk(cond):
    """Every node of a condition tree, depth first."""
    yield cond
    if isinstance(cond, (All, Any_)):
        for c in cond.items:
            yield from walk(c)
    elif isinstance(cond, Not):
        yield from walk(cond.item)
    elif isinstance(cond, Chain):
        yield from cond.tests


def fields_of(cond) -> set[str]:
    out = set()
    for n in walk(cond):
        if isinstance(n, (Check, Chain)):
            out.add(n.field)
        elif isinstance(n, Predicate):
            out.update(n.fields)
    return out


@dataclass
class RuleSet:
    """Rules and issues from one or more files, plus which files were read (for reload)."""

    rules: list = field(default_factory=list)
    issues: list = field(default_factory=list)
    files: list = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    def extend(self, other: "RuleSet") -> None:
        self.rules += other.rules
        self.issues += other.issues
        self.files += other.files
