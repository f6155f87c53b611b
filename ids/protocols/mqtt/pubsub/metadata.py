"""Field names for UADP DataSetMessages from the publisher's DataSetMetaData (a JSON ua-metadata message, Part 14
7.2.5.5): UADP carries fields by position only, the metadata names them. One table per flow table (capture
run), keyed by broker, PublisherId and DataSetWriterId; bounded like the Sparkplug births."""
from __future__ import annotations

import weakref
from ....flow.budget import trim_oldest

MAX_WRITERS = 4096


class MetaTable:
    __slots__ = ("names",)

    def __init__(self):
        self.names: dict[tuple, tuple[str, ...]] = {}

    def apply(self, broker: str, msg):
        """Learn from a ua-metadata message; name the fields of a UADP ua-data message. Returns the message."""
        if msg.message_type == "ua-metadata":
            for d in msg.datasets:
                if d.writer_id is not None and msg.metadata_fields:
                    if len(self.names) >= MAX_WRITERS:
                        trim_oldest(self.names, MAX_WRITERS)
                    self.names[(broker, msg.publisher_id, d.writer_id)] = tuple(n for n, _ in msg.metadata_fields)
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


_BY_TABLE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def table_for(table) -> MetaTable:
    t = _BY_TABLE.get(table)
    if t is None:
        t = _BY_TABLE[table] = MetaTable()
    return t
