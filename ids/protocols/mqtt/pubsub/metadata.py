"""Field names for UADP DataSetMessages from the publisher's DataSetMetaData (a JSON ua-metadata message, Part 14
7.2.5.5): UADP carries fields by position only, the metadata names them. One table per flow table (capture
run), keyed by broker, PublisherId and DataSetWriterId; bounded like the Sparkplug births."""
from __future__ import annotations

import weakref
from ....flow.budget import Pool

MAX_WRITERS = 4096
#: what the names of all writers hold together (a Pool, in limits.memory_total too): 4,096 writers of 1,024
#: one-letter names each come in ~120 MB of metadata messages and held ~245 MB under the count cap alone.
#: At the bound the least recently described writers are forgotten (their UADP fields stay numbered, as
#: before their metadata was seen) and a memory_cap alert names `pubsub.metadata` (hook.py).
METADATA_BYTES = 16 << 20
WRITER_BYTES = 200  # a writer's key, its slot and the tuple (tracemalloc, tests/test_sparkplug_bounds.py)


def _names_bytes(names: tuple) -> int:
    return WRITER_BYTES + sum(60 + len(n) if n.isascii() else 90 + 4 * len(n) for n in names)


class MetaTable:
    __slots__ = ("names", "sizes", "pool")

    def __init__(self, limit: int | None = None):
        self.names: dict[tuple, tuple[str, ...]] = {}
        self.sizes: dict[tuple, int] = {}  # writer -> bytes its names hold
        self.pool = Pool("pubsub.metadata", METADATA_BYTES if limit is None else limit)

    def apply(self, broker: str, msg):
        """Learn from a ua-metadata message; name the fields of a UADP ua-data message. Returns the message."""
        if msg.message_type == "ua-metadata":
            for d in msg.datasets:
                if d.writer_id is not None and msg.metadata_fields:
                    self._learn((broker, msg.publisher_id, d.writer_id), tuple(n for n, _ in msg.metadata_fields))
            return msg
        if msg.encoding != "uadp" or not msg.datasets or not self.names:
            return msg
        out = []
        changed = False
        for d in msg.datasets:
            names = self.names.get((broker, msg.publisher_id, d.writer_id))
            if names and d.fields:
                fields = tuple((names[int(i)] if i.isdigit() and int(i) < len(names) else i, v, t)
                               for i, v, t in d.fields)
                d = d._replace(fields=fields, named=True)
                changed = True
            out.append(d)
        return msg._replace(datasets=tuple(out)) if changed else msg

    def _learn(self, key: tuple, names: tuple) -> None:
        old = self.sizes.pop(key, None)
        if old is not None:
            del self.names[key]
            self.pool.give(old)
        elif len(self.names) >= MAX_WRITERS:
            self._forget(len(self.names) - MAX_WRITERS + max(1, MAX_WRITERS // 8))
        n = _names_bytes(names)
        while not self.pool.take(n):
            self.pool.give(n)
            if not self.names:
                return  # one writer's names past the whole bound: not kept (its fields stay numbered)
            self._forget(max(1, len(self.names) // 8))
        self.names[key] = names
        self.sizes[key] = n

    def _forget(self, count: int) -> None:
        for k in list(self.names)[:count]:
            del self.names[k]
            self.pool.give(self.sizes.pop(k))


_BY_TABLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def table_for(table) -> MetaTable:
    t = _BY_TABLE.get(table)
    if t is None:
        t = _BY_TABLE[table] = MetaTable()
    return t
