"""What the births said, per broker and edge node: metric aliases and datatypes (3.0.0 sections 6.4.6, 7.3),
so that DATA and CMD messages that carry only an alias (and no datatype) decode to a name and a typed value.

One Births per flow table (capture run), shared by every MQTT flow: an edge node's NBIRTH travels on its
own connection while subscribers receive its NDATA on theirs. Aliases are unique across an edge node and
its devices (6.4.6), so there is one table per edge node; an NBIRTH replaces it. Bounded: at most
MAX_EDGE_NODES tables (the least recently born is forgotten) and MAX_ALIASES per table.
"""
from __future__ import annotations

import weakref
from ....flow.budget import Pool

MAX_EDGE_NODES = 4096
MAX_ALIASES = 65536
#: What the alias tables of one run hold together, in bytes (a Pool: in limits.memory_total too). NBIRTHs of
#: thousands of metrics each came at ~200 bytes a metric held for a few on the wire: 200 births of 15,000
#: metrics (a 99 MB capture) held 903 MB. At the bound the least recently born tables are forgotten (DATA of
#: a forgotten edge node decodes without names, as before its birth was seen), then the birth being read
#: stops being learned (its table is `incomplete`: aliases it lacks are not alerted as undefined), and a
#: memory_cap alert says so (hook.py).
BIRTHS_BYTES = 32 << 20
#: What a table holds (tracemalloc, tests/test_sparkplug_bounds.py): a learned name (its dict slot, besides
#: its text), a learned alias (its slot, the (name, datatype) tuple, the int), an empty table (the object,
#: its two dicts, its key in Births.tables)
NAME_BYTES = 60
ALIAS_BYTES = 100
TABLE_BYTES = 600


def _name_bytes(name: str) -> int:
    return 49 + len(name) if name.isascii() else 80 + 4 * len(name)


class AliasTable:
    __slots__ = ("aliases", "names", "nbytes", "incomplete")

    def __init__(self):
        self.aliases: dict[int, tuple[str | None, int | None]] = {}
        self.names: dict[str, int | None] = {}
        self.nbytes = 0  # what it holds (its part of the Births pool)
        self.incomplete = False  # a birth's metrics not all learned (MAX_ALIASES, BIRTHS_BYTES)

    def lookup(self, name, alias):
        if alias is not None:
            hit = self.aliases.get(alias)
            if hit is not None:
                return hit
        if name is not None and name in self.names:
            return name, self.names[name]
        return None


class Births:
    __slots__ = ("tables", "broker", "pool")

    def __init__(self, limit: int | None = None):
        self.tables: dict[tuple, AliasTable] = {}
        self.broker = ""
        self.pool = Pool("sparkplug.births", BIRTHS_BYTES if limit is None else limit)

    def table(self, head, birth: bool) -> AliasTable | None:
        key = (self.broker, head.group_id, head.edge_node_id)
        t = self.tables.get(key)
        if head.message_type == "NBIRTH" and t is not None:  # a new session of the edge node: its old aliases are void
            self.pool.give(t.nbytes)
            del self.tables[key]
            t = None
        if t is None:
            if not birth:
                return None
            if len(self.tables) >= MAX_EDGE_NODES:
                self._forget(_excess_keys(self.tables, MAX_EDGE_NODES))
            t = self.tables[key] = AliasTable()
            self._charge(t, TABLE_BYTES)
        elif birth:
            self.tables[key] = self.tables.pop(key)  # most recently born last
        return t

    def learn(self, t: AliasTable, met) -> None:
        """Learn a birth's metric into `t` (the table its message's births() gave)."""
        name, alias = met.name, met.alias
        if name is None or t.incomplete:
            return
        n = 0
        if name not in t.names:
            if len(t.names) >= MAX_ALIASES:
                t.incomplete = True
                return
            n = NAME_BYTES + _name_bytes(name)
        if alias is not None and alias not in t.aliases:
            n += ALIAS_BYTES
        if n and not self._charge(t, n):
            t.incomplete = True
            return
        t.names[name] = met.datatype
        if alias is not None:
            t.aliases[alias] = (name, met.datatype)

    def _charge(self, t: AliasTable, n: int) -> bool:
        """Charge `n` bytes of `t`'s to the pool, forgetting the least recently born other tables while it
        refuses; False (nothing charged) when only `t` is left."""
        pool = self.pool
        while not pool.take(n):
            pool.give(n)
            others = [k for k, o in self.tables.items() if o is not t]
            if not others:
                return False
            self._forget(others[:max(1, len(others) // 8)])
        t.nbytes += n
        return True

    def _forget(self, keys: list) -> None:
        for k in keys:
            self.pool.give(self.tables.pop(k).nbytes)


def _excess_keys(d: dict, keep: int) -> list:
    """The oldest keys trim_oldest would forget to keep `keep` less an eighth."""
    n = len(d) - keep + max(1, keep // 8)
    return list(d)[:n] if n > 0 else []


_BY_TABLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def births_for(table) -> Births:
    b = _BY_TABLE.get(table)
    if b is None:
        b = _BY_TABLE[table] = Births()
    return b
