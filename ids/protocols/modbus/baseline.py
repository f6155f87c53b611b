"""Modbus part of the baseline: per (master, slave, unit) the function codes used, address ranges read and
written per table, value bands of written holding registers, and the period and jitter of every periodic
request (pair, unit, function, address). Learned from ids.protocols.modbus.messages.ModbusTransaction; enforced on the same.

Requests whose PDU was malformed are neither learned nor checked (their fields cannot be trusted; the
anomaly detector reports them). Exception responses are learned and checked like any other request: the
master *asked*, and asking is the behaviour the baseline describes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import bisect
import math

from ...units import rfc3339
from .messages import ModbusTransaction
from .anomalies import MALFORMED
from ...detect.baseline.periodic import IntervalSample, PeriodTracker, period_seen, seconds
from ...detect.baseline.section import SectionSpec
from ...detect.bounds import SLOT, Budget, text

if TYPE_CHECKING:
    from ...detect.baseline.document import Baseline

SECTION = SectionSpec("modbus", ("master", "slave", "unit"),
                      ("first_seen", "last_seen", "transactions", "functions", "reads", "writes", "values", "polls"),
                      "transactions", "modbus")
ROLES = ("modbus_master", "modbus_slave")
DATASETS = ("otids.modbus",)
EVENT_FIELDS = """ids.protocols.modbus.messages.ModbusTransaction: flow (client = master), unit_id, function_code, function,
request.address/quantity/values, request.details.read_address/read_quantity (FC 23), anomalies."""

TABLES = ("coils", "discrete_inputs", "holding_registers", "input_registers")
#: function code -> (access, table) for the address range in request.address/quantity
ACCESS = {1: ("read", "coils"), 2: ("read", "discrete_inputs"), 3: ("read", "holding_registers"),
          4: ("read", "input_registers"), 5: ("write", "coils"), 6: ("write", "holding_registers"),
          15: ("write", "coils"), 16: ("write", "holding_registers"), 22: ("write", "holding_registers"),
          23: ("write", "holding_registers"), 24: ("read", "holding_registers")}
REGISTER_WRITES = (6, 16, 23)
#: requests (function, start address) per (master, slave, unit) followed for periods while learning; a
#: master polling more distinct blocks of one slave than this gets the rest learned as plain requests
MAX_POLL_KEYS = 256


def usable(ev: ModbusTransaction) -> bool:
    if ev.request is None:
        return False
    an = ev.anomalies
    return not an or not any(a in MALFORMED for a in an)


def accesses(ev: ModbusTransaction) -> list[tuple[str, str, int, int]]:
    """(access, table, first, last address) touched by the request."""
    req = ev.request
    fc = ev.function_code
    at = ACCESS.get(fc)
    if at is None or req.address is None:
        return []
    qty = req.quantity if req.quantity else 1
    out = [(at[0], at[1], req.address, min(0xFFFF, req.address + qty - 1))]
    if fc == 23 and req.details and "read_address" in req.details:
        ra, rq = req.details["read_address"], req.details.get("read_quantity") or 1
        out.append(("read", "holding_registers", ra, min(0xFFFF, ra + rq - 1)))
    return out


def written_registers(ev: ModbusTransaction):
    req = ev.request
    if ev.function_code in REGISTER_WRITES and req.values and req.address is not None:
        a = req.address
        for i, v in enumerate(req.values):
            if isinstance(v, int) and not isinstance(v, bool):
                yield a + i, v


# ---------------------------------------------------------------------------------------------- ranges

class Ranges:
    """Merged, sorted address intervals (adjacent ones merge: 0-9 and 10-19 are 0-19)."""

    __slots__ = ("lo", "hi")

    def __init__(self):
        self.lo: list[int] = []
        self.hi: list[int] = []

    def add(self, a: int, b: int) -> None:
        """Merge [a, b] in: the intervals it touches (overlapping or adjacent) are found by bisection and
        replaced by one, in place. Both lists stay sorted (the intervals are disjoint and not adjacent), so
        a new interval costs two searches and one slice replacement (a memmove of at most 32,768 pointers,
        the most intervals 65,536 addresses hold), not the re-sort of every interval it once cost
        (quadratic in intervals: docs/ROBUSTNESS.md)."""
        lo, hi = self.lo, self.hi
        i = bisect.bisect_left(hi, a - 1)  # the first interval ending at or after a - 1
        j = bisect.bisect_right(lo, b + 1)  # past the last one starting at or before b + 1
        if i < j:
            if lo[i] < a:
                a = lo[i]
            if hi[j - 1] > b:
                b = hi[j - 1]
        lo[i:j] = (a,)
        hi[i:j] = (b,)

    def covers(self, a: int, b: int) -> bool:
        i = bisect.bisect_right(self.lo, a) - 1
        return i >= 0 and self.hi[i] >= b

    def first_outside(self, a: int, b: int) -> int:
        x = a
        while x <= b:
            i = bisect.bisect_right(self.lo, x) - 1
            if i < 0 or self.hi[i] < x:
                return x
            x = self.hi[i] + 1
        return -1

    def text(self) -> list:
        return [lo if lo == hi else f"{lo}-{hi}" for lo, hi in zip(self.lo, self.hi)]

    def human(self) -> str:
        return ", ".join(str(x) for x in self.text()) or "none"


def parse_range(v) -> tuple[int, int] | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (v[0], v[1])
    if isinstance(v, str):
        parts = v.replace(" ", "").split("-")
        try:
            if len(parts) == 1:
                return (int(parts[0]), int(parts[0]))
            if len(parts) == 2:
                return (int(parts[0]), int(parts[1]))
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------- learning

class _Triple:
    __slots__ = ("first", "last", "n", "functions", "reads", "writes", "values", "polls")

    def __init__(self, ts):
        self.first = self.last = ts
        self.n = 0
        self.functions: dict[int, str] = {}
        self.reads: dict[str, Ranges] = {}
        self.writes: dict[str, Ranges] = {}
        self.values: dict[tuple[str, int], list[int]] = {}  # (table, address) -> [min, max, count]
        self.polls: dict[tuple, IntervalSample] = {}


TRIPLE_BYTES = 1_300  # a (master, slave, unit) entry with its empty tables (tracemalloc)
VALUE_BYTES = 260  # a written holding register's value band
POLL_BYTES = 700  # a polled request's interval sample, before it grows (charged as it grows)
RANGE_BYTES = 70  # a further address interval of a read or written table


class Learner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.triples: dict[tuple, _Triple] = {}
        self.budget = Budget("baseline", 1 << 62)  # the learner's shared bound (limits.learner_bytes)
        self.untracked = 0  # requests not followed for periods (MAX_POLL_KEYS reached)

    def learn(self, ev, epoch: int) -> None:
        if type(ev) is not ModbusTransaction or not usable(ev):
            return
        ctx = ev.flow
        key = (ctx.client_ip, ctx.server_ip, ev.unit_id)
        t = self.triples.get(key)
        ts = ev.ts
        take = self.budget.take
        if t is None:
            if not take("modbus", TRIPLE_BYTES):
                return
            t = self.triples[key] = _Triple(ts)
        t.n += 1
        if ts > t.last:
            t.last = ts
        elif ts < t.first:
            t.first = ts
        fc = ev.function_code
        if fc not in t.functions:
            t.functions[fc] = ev.function
        for access, table, a, b in accesses(ev):
            d = t.reads if access == "read" else t.writes
            r = d.get(table)
            if r is None:
                r = d[table] = Ranges()
            if not r.covers(a, b) and (len(r.lo) < 1 or take("modbus", RANGE_BYTES)):
                r.add(a, b)
        if fc in REGISTER_WRITES:
            for addr, v in written_registers(ev):
                band = t.values.get(("holding_registers", addr))
                if band is None:
                    if take("modbus", VALUE_BYTES):
                        t.values[("holding_registers", addr)] = [v, v, 1]
                else:
                    if v < band[0]:
                        band[0] = v
                    elif v > band[1]:
                        band[1] = v
                    band[2] += 1
        pk = (fc, ev.request.address)
        s = t.polls.get(pk)
        if s is None:
            if len(t.polls) >= MAX_POLL_KEYS:
                self.untracked += 1
                return
            if not take("modbus", POLL_BYTES):
                return
            s = t.polls[pk] = IntervalSample(self.cfg.poll_window, self.budget)
        s.add(ts, epoch)

    def entries(self, epochs: dict | None = None) -> list[dict]:
        cfg = self.cfg
        out = []
        for (m, s, u), t in self.triples.items():
            e: dict = {"master": m, "slave": s, "unit": u, "status": "learned",
                       "first_seen": rfc3339(t.first), "last_seen": rfc3339(t.last), "transactions": t.n,
                       "functions": {fc: t.functions[fc] for fc in sorted(t.functions)}}
            for name, d in (("reads", t.reads), ("writes", t.writes)):
                if d:
                    e[name] = {tb: d[tb].text() for tb in TABLES if tb in d}
            if t.values:
                vals: dict = {}
                for (tb, addr) in sorted(t.values):
                    lo, hi, n = t.values[(tb, addr)]
                    margin = (hi - lo) * cfg.value_margin_percent / 100
                    vals.setdefault(tb, {})[addr] = {"band": [max(0, math.floor(lo - margin)),
                                                              min(0xFFFF, math.ceil(hi + margin))],
                                                     "seen": [lo, hi], "count": n}
                e["values"] = vals
            polls = []
            for (fc, addr) in sorted(t.polls, key=lambda k: (k[0], -1 if k[1] is None else k[1])):
                p = t.polls[(fc, addr)].period(cfg, epochs)
                if p is not None:
                    polls.append({"function": fc, "address": addr, "period": seconds(p[0]),
                                  "jitter": seconds(p[1]), "samples": t.polls[(fc, addr)].n})
            if polls:
                e["polls"] = polls
            out.append(e)
        return out


# ---------------------------------------------------------------------------------------------- enforcement

class _Compiled:
    __slots__ = ("label", "eid", "status", "functions", "reads", "writes", "bands", "polls")


def _compile(b: Baseline, eid: str, e: dict, cfg) -> _Compiled:
    c = _Compiled()
    c.eid, c.status = eid, e["status"]
    c.label = f"{e['master']} -> {e['slave']} unit {e['unit']}"
    where = ("modbus", eid)
    fns = e.get("functions") or {}
    if isinstance(fns, list):  # a list of codes; anything unhashable in it fails the check below
        fns = {f: None for f in fns} if all(isinstance(f, int) for f in fns) else None
    if not isinstance(fns, dict) or not all(isinstance(f, int) and 0 <= f < 128 for f in fns):
        raise b.error("functions must map function codes (0-127) to names, e.g. `3: read_holding_registers`",
                      *where, "functions")
    c.functions = frozenset(fns)
    for name in ("reads", "writes"):
        d = e.get(name) or {}
        if not isinstance(d, dict):
            raise b.error(f"{name} must map tables to address ranges", *where, name)
        out = {}
        for tb, rs in d.items():
            if tb not in TABLES:
                raise b.error(f"unknown table '{tb}' (tables: {', '.join(TABLES)})", *where, name, tb)
            r = Ranges()
            for x in rs if isinstance(rs, list) else [rs]:
                pr = parse_range(x)
                if pr is None or not 0 <= pr[0] <= pr[1] <= 0xFFFF:
                    raise b.error(f"bad address range {x!r} (write 10, \"10-19\" or [10, 19]; 0-65535)",
                                  *where, name, tb)
                r.add(*pr)
            out[tb] = r
        setattr(c, name, out)
    c.bands = {}
    vals = e.get("values") or {}
    if not isinstance(vals, dict):
        raise b.error("values must map tables to registers", *where, "values")
    for tb, regs in vals.items():
        if tb != "holding_registers" or not isinstance(regs, dict):
            raise b.error("values holds `holding_registers:` with `ADDRESS: {band: [LOW, HIGH]}` entries",
                          *where, "values", tb)
        for addr, spec in regs.items():
            band = spec.get("band") if isinstance(spec, dict) else None
            if not (isinstance(addr, int) and isinstance(band, list) and len(band) == 2
                    and all(isinstance(x, (int, float)) for x in band) and band[0] <= band[1]):
                raise b.error("each register needs `band: [LOW, HIGH]` with LOW <= HIGH", *where, "values", tb,
                              addr)
            c.bands[addr] = (band[0], band[1])
    c.polls = {}
    polls = e.get("polls") or []
    if not isinstance(polls, list):
        raise b.error("polls must be a list", *where, "polls")
    for p in polls:
        pid = f"{p.get('function')}|{p.get('address')}" if isinstance(p, dict) else "?"
        if not (isinstance(p, dict) and isinstance(p.get("function"), int)
                and (p.get("address") is None or isinstance(p.get("address"), int))
                and isinstance(p.get("period"), (int, float)) and p["period"] > 0
                and isinstance(p.get("jitter", 0), (int, float)) and p.get("jitter", 0) >= 0):
            raise b.error("each poll needs function, address, period > 0 and jitter >= 0 (seconds)",
                          *where, "polls", pid)
        c.polls[(p["function"], p.get("address"))] = PeriodTracker(float(p["period"]), float(p.get("jitter", 0)),
                                                                   cfg.poll_window)
    return c


class Enforcer:
    section = "modbus"

    def __init__(self, b: Baseline, cfg, usable_status):
        self.cfg = cfg
        self.triples: dict[tuple, _Compiled] = {}
        self.pairs: dict[tuple, list[int]] = {}
        for eid, e in b.section("modbus").items():
            c = _compile(b, eid, e, cfg)
            if c.status not in usable_status:
                continue
            self.triples[(str(e["master"]), str(e["slave"]), e["unit"])] = c
            self.pairs.setdefault((str(e["master"]), str(e["slave"])), []).append(e["unit"])

    def check(self, ev, det) -> None:
        if type(ev) is not ModbusTransaction or not usable(ev):
            return
        ctx = ev.flow
        key = (ctx.client_ip, ctx.server_ip, ev.unit_id)
        c = self.triples.get(key)
        fc = ev.function_code
        if c is None:
            units = sorted(self.pairs.get(key[:2], ()))
            det.report("otids.baseline.modbus.new_unit", ("modbus.unit",) + key, ev,
                       f"units {', '.join(map(str, units))}" if units else "no Modbus between them",
                       f"unit {ev.unit_id} ({ev.function})", entry=None)
            return
        if c.status == "denied":
            det.report("otids.baseline.denied", ("modbus.denied",) + key, ev, "no traffic (entry denied)",
                       f"{ev.function}", entry=f"modbus {c.label}")
            return
        label = f"modbus {c.label}"
        if fc not in c.functions:
            det.report("otids.baseline.modbus.new_function", ("modbus.fc",) + key + (fc,), ev,
                       "functions " + ", ".join(str(f) for f in sorted(c.functions)),
                       f"function {fc} ({ev.function})", entry=label)
            return
        for access, table, a, b in accesses(ev):
            r = (c.reads if access == "read" else c.writes).get(table)
            if r is None or not r.covers(a, b):
                x = a if r is None else r.first_outside(a, b)
                det.report("otids.baseline.modbus.address_out_of_range",
                           ("modbus.range",) + key + (access, table, x), ev,
                           f"{access}s of {table} {r.human() if r else 'none'}",
                           f"{access} of {table} {a}" + (f"-{b}" if b != a else ""), entry=label,
                           item=x, item_fmt=lambda xs: "address " + ", ".join(map(str, sorted(xs))),
                           techniques=("T0855", "T0836") if access == "write" else ("T0861", "T0801"))
        if fc in REGISTER_WRITES and c.bands:
            for addr, v in written_registers(ev):
                band = c.bands.get(addr)
                if band is not None and not band[0] <= v <= band[1]:
                    det.report("otids.baseline.modbus.value_out_of_band", ("modbus.value",) + key + (addr,), ev,
                               f"holding register {addr} in {band[0]}..{band[1]}",
                               f"holding register {addr} = {v}", entry=label, item=v,
                               item_fmt=lambda xs, addr=addr: f"holding register {addr} = "
                                                              + ", ".join(map(str, sorted(xs))))
        t = c.polls.get((fc, ev.request.address))
        if t is not None:
            t.ctx = ctx
            m = t.observe(ev.ts, det.epoch, self.cfg.poll_tolerance_percent)
            if m is not None:
                det.report("otids.baseline.modbus.poll_period_changed",
                           ("modbus.period",) + key + (fc, ev.request.address), ev,
                           f"{ev.function} at {ev.request.address} every {t.period / 1e9:g} s "
                           f"(jitter {t.jitter / 1e9:g} s)",
                           f"every {m / 1e9:.3g} s (median of the last {len(t.window)} intervals)", entry=label,
                           item=m, item_fmt=lambda xs, p=t.period: period_seen(xs, p))

    def sweep(self, now: int, det) -> None:
        stop_min = self.cfg.poll_stop_min * 1_000_000_000
        factor = self.cfg.poll_stop_factor
        for key, c in self.triples.items():
            if c.status == "denied":
                continue
            for (fc, addr), t in c.polls.items():
                limit = max(factor * t.period, stop_min)
                silent = t.silent_for(now, det.epoch, det.epoch_start)
                if silent > limit and not t.stopped:
                    t.stopped = True
                    det.report("otids.baseline.modbus.poll_stopped", ("modbus.stopped",) + key + (fc, addr), None,
                               f"function {fc} at {addr} every {t.period / 1e9:g} s",
                               f"none for {silent / 1e9:.0f} s", entry=f"modbus {c.label}", ts=now,
                               flow=t.ctx, protocol="modbus")
