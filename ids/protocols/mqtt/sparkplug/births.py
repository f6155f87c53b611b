"""What the births said, per broker and edge node: metric aliases and datatypes (3.0.0 sections 6.4.6, 7.3),
so that DATA and CMD messages that carry only an alias (and no datatype) decode to a name and a typed value.

One Births per flow table (capture run), shared by every MQTT flow: an edge node's NBIRTH travels on its
own connection while subscribers receive its NDATA on theirs. Aliases are unique across an edge node and
its devices (6.4.6), so there is one table per edge node; an NBIRTH replaces it. Bounded: at most
MAX_EDGE_NODES tables (the least recently born is forgotten) and MAX_ALIASES per table.
"""
from __future__ import annotations

import weakref
from ....flow.budget import trim_oldest

MAX_EDGE_NODES = 4096
MAX_ALIASES = 65536


class AliasTable:
    __slots__ = ("aliases", "names")

    def __init__(self):
        self.aliases: dict[int, tuple[str | None, int | None]] = {}
        self.names: dict[str, int | None] = {}

    def lookup(self, name, alias):
        if alias is not None:
            hit = self.aliases.get(alias)
            if hit is not None:
                return hit
        if name is not None and name in self.names:
            return name, self.names[name]
        return None

    def learn(self, met, device) -> None:
        if met.name is None or len(self.names) >= MAX_ALIASES:
            return
        self.names[met.name] = met.datatype
        if met.alias is not None:
            self.aliases[met.alias] = (met.name, met.datatype)


class Births:
    __slots__ = ("tables", "broker")

    def __init__(self):
        self.tables: dict[tuple, AliasTable] = {}
        self.broker = ""

    def table(self, head, birth: bool) -> AliasTable | None:
        key = (self.broker, head.group_id, head.edge_node_id)
        t = self.tables.get(key)
        if head.message_type == "NBIRTH":  # a new session of the edge node: its old aliases are void
            t = None
        if t is None:
            if not birth:
                return None
            if len(self.tables) >= MAX_EDGE_NODES:
                trim_oldest(self.tables, MAX_EDGE_NODES)
            t = self.tables[key] = AliasTable()
        elif birth:
            self.tables[key] = self.tables.pop(key)  # most recently born last
        return t


_BY_TABLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def births_for(table) -> Births:
    b = _BY_TABLE.get(table)
    if b is None:
        b = _BY_TABLE[table] = Births()
    return b
