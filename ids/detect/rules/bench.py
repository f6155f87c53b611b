"""`otids rules bench`: events/s of the rules engine alone, replaying the Modbus events of a capture
against 0, 10 and 1,000 rules (the shipped Modbus rules, then filled up with rules for other function
codes, OPC UA and MQTT that cannot apply), plus 1,000 rules that all apply, to show what the index saves;
--site: 10 to 50,000 rules of the shape a site writes, engine alone and (--pipeline) in the whole pipeline,
beside tshark. Figures are printed, never asserted.
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from .detector import RulesDetector, compile_rules
from ...errors import SourceLocation
from .loader import load_yaml_file
from .rule import All, Check, Rule, RuleSet, SiteLists

ROOT = Path(__file__).resolve().parents[3]


def _filler(n: int, applicable: bool) -> str:
    """n generated rules; each inapplicable one names a function code the traffic never uses, or another
    protocol. Applicable ones test read requests of every code the traffic uses (wildcards for the index)."""
    out = ["rules:"]
    for i in range(n):
        if applicable:
            out.append(f"""  - id: bench.all.{i}
    title: bench {i}
    description: bench
    severity: low
    protocol: modbus
    match: {{modbus.unit_id: {{gte: 0}}, source.ip: {{not: 192.0.2.{i % 250}}}, modbus.request.address: {{gte: {1000 + i}}}}}""")
            continue
        kind = i % 3
        if kind == 0:
            fc = 30 + (i % 60)  # 30-89: unused by the replayed traffic
            m = f"{{modbus.function_code: {fc}, source.ip: {{not: 192.0.2.{i % 250}}}}}"
            proto = "modbus"
        elif kind == 1:
            m = f"{{opcua.service: Svc{i}, source.ip: 192.0.2.{i % 250}}}"
            proto = "opcua"
        else:
            m = f"{{mqtt.publish.topic: {{startswith: t{i}/}}}}"
            proto = "mqtt"
        out.append(f"""  - id: bench.other.{i}
    title: bench {i}
    description: bench
    severity: low
    protocol: {proto}
    match: {m}""")
    return "\n".join(out) + "\n"


def _ruleset(count: int, applicable: bool = False):
    shipped = load_yaml_file(str(ROOT / "rules" / "modbus.yml"))
    rules = list(shipped.rules)[: min(count, 10)] if count else []
    lists = {}
    for r in shipped.rules:
        lists.update(r.test_lists or {})
    if count > len(rules):
        extra = load_yaml_file("<bench>", _filler(count - len(rules), applicable))
        if extra.errors:
            raise RuntimeError(extra.errors[0])
        rules += extra.rules
    shipped.rules = rules
    c = compile_rules(shipped, SiteLists(lists=lists))
    if c.errors:
        raise RuntimeError(str(c.errors[0]))
    return c


def run_bench(args) -> int:
    from ...pipeline import analyze
    pcap = args.pcap or str(ROOT / "pcaps" / "modbus-demo.pcap")
    if not os.path.isfile(pcap):
        print(f"otids: error: {pcap}: no such capture", file=sys.stderr)
        return 2
    if getattr(args, "pipeline", False):
        # a sample of the exchanges is enough to draw rules from; holding all of them would be counted in the
        # process's RSS as if the rules or the pipeline used it
        base = _sample(pcap)
        if not base:
            print(f"otids: error: {pcap} has no Modbus events", file=sys.stderr)
            return 2
        return run_pipeline(args, pcap, base)
    _, col = analyze([pcap], detectors=[])
    base = [e for e in col.events if getattr(e, "dataset", "") == "otids.modbus"]
    if not base:
        print(f"otids: error: {pcap} has no Modbus events", file=sys.stderr)
        return 2
    events = (base * (args.events // len(base) + 1))[: args.events]
    if getattr(args, "site", False):
        return run_site(args, pcap, base, events)
    counts = [int(x) for x in (args.counts or "0,10,1000").split(",") if x.strip()]
    print(f"rules engine alone, {len(events):,} Modbus events replayed from {os.path.basename(pcap)} "
          f"({len(base)} distinct), Python {sys.version.split()[0]}")
    print(f"{'rules':>16}  {'largest entry':>14}  {'events/s':>12}  {'us/event':>9}  alerts")
    cases = [(n, False) for n in counts] + [(1000, True)]
    for n, applicable in cases:
        c = _ruleset(n, applicable)
        det = RulesDetector(c)
        on = det.on_event
        alerts = 0
        t0 = time.perf_counter()
        for ev in events:
            r = on(ev)
            if r:
                alerts += len(r)
        dt = time.perf_counter() - t0
        pi = c.index.get("otids.modbus")
        per_fc = pi.stats()["largest"] if pi else 0
        label = f"{len(c.rules)}" + (" (all apply)" if applicable else "")
        print(f"{label:>16}  {per_fc:>14}  {len(events) / dt:>12,.0f}  {dt / len(events) * 1e6:>9.2f}  {alerts}")
    return 0


# ---------------------------------------------------------------------------------------------- site-shaped

FCS = (1, 2, 3, 4, 5, 6, 15, 16)


def site_matches(n: int, events: list, seed: int = 1) -> list[dict]:
    """n rule conditions of the shape an exported baseline or a large site writes: one function code (or
    two), one register address or a short block, one host (or a pair, or a /30) each, in four shapes.
    The site has max(64, n/8) hosts (the replayed traffic's among them) and 65,536 registers per table, one
    rule in eight in the address range the traffic uses; two rules copy a replayed exchange, so some alerts fire."""
    rnd = random.Random(seed)
    real = sorted({ip for ev in events for ip in (ev.flow.client_ip, ev.flow.server_ip)})
    hosts = real + [f"10.10.{i // 250}.{i % 250 + 1}" for i in range(max(64, n // 8))]
    hot = max([ev.request.address for ev in events if ev.request is not None and ev.request.address is not None] + [99])
    copy = {0, n // 2} if events else set()
    out = []
    for i in range(n):
        if i in copy:
            ev = events[rnd.randrange(len(events))]
            r = ev.request
            fc, addr = ev.function_code, (r.address if r is not None and r.address is not None else 0)
            src, dst, unit = ev.flow.client_ip, ev.flow.server_ip, ev.unit_id
        else:
            fc = rnd.choice(FCS)
            addr = rnd.randrange(0, hot + 1) if rnd.random() < 0.125 else rnd.randrange(0, 65536 - 100)
            src, dst = rnd.choice(hosts), rnd.choice(hosts)
            unit = rnd.randrange(1, 248)
        shape = i % 4
        if shape == 0:
            m = {"modbus.function_code": fc, "modbus.request.address": addr, "source.ip": src}
        elif shape == 1:
            fc2 = FCS[(FCS.index(fc) + 1) % len(FCS)] if fc in FCS else fc
            m = {"modbus.function_code": [fc, fc2], "modbus.request.address": {"range": [addr, addr + 9]},
                 "destination.ip": dst, "modbus.unit_id": unit}
        elif shape == 2:  # as `otids baseline export-rules` writes: a pair, a unit, an address block
            m = {"source.ip": src, "destination.ip": dst, "modbus.unit_id": unit, "modbus.function_code": fc,
                 "modbus.request.address": {"range": [max(0, addr - 99), addr]},
                 "modbus.request.last_address": {"lte": addr + 99}}
        else:
            a, b = src.rsplit(".", 1)
            m = {"source.ip": {"cidr": [f"{a}.{int(b) & ~3}/30"]}, "modbus.function_code": fc,
                 "modbus.request.address": {"gte": addr, "lte": addr}}
        out.append(m)
    return out


def site_yaml(matches: list[dict]) -> str:
    """The rules as a user would write them (`--write FILE` saves them for `otids analyze --rules`)."""
    import yaml
    rules = [{"id": f"site.{i}", "title": f"site rule {i}", "description": "generated", "severity": "low",
              "protocol": "modbus", "match": m} for i, m in enumerate(matches)]
    return yaml.safe_dump({"rules": rules}, sort_keys=False, default_flow_style=None, width=200)


def _cond(m: dict, src):
    """A match mapping as the loader turns it into conditions (the subset site_matches writes; a test holds
    the two equal), without the YAML parse that dominates loading 50,000 rules."""
    items = []
    for f, v in m.items():
        if isinstance(v, dict):
            ts = [Check(f, op, tuple(a) if op in ("range", "cidr") else a, src) for op, a in v.items()]
            items.append(ts[0] if len(ts) == 1 else All(tuple(ts), src))
        elif isinstance(v, list):
            items.append(Check(f, "in", tuple(v), src))
        else:
            items.append(Check(f, "equals", v, src))
    return All(tuple(items), src)


def site_ruleset(matches: list[dict]):
    src = SourceLocation("<site bench>", 1, 1)
    rules = [Rule(f"site.{i}", f"site rule {i}", "generated", "low", "modbus", _cond(m, src), src)
             for i, m in enumerate(matches)]
    return RuleSet(rules=rules)


def run_site(args, pcap: str, base: list, events: list) -> int:
    """The table of docs/RULES.md: site-shaped rule sets from 10 to 50,000 rules, indexed and (up to
    --plain-max rules) as a plain loop over every rule, which must raise the same alerts."""
    from .index import plain
    counts = [int(x) for x in (args.counts or "0,10,100,1000,5000,10000").split(",") if x.strip()]
    print(f"rules engine alone, {len(events):,} Modbus events replayed from {os.path.basename(pcap)} "
          f"(of {len(base):,} in the capture), site-shaped rules (seed {args.seed}), Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPU(s) shared with other work: compare ratios, not absolute figures")
    print(f"{'rules':>7}  {'compile s':>9}  {'groups':>6}  {'grouped':>7}  {'cands/ev':>8}  {'largest':>7}  "
          f"{'events/s':>10}  {'us/event':>8}  {'vs 10':>6}  {'plain loop ev/s':>15}  {'alerts':>7}")
    ref = None
    for n in counts:
        t0 = time.process_time()
        c = compile_rules(site_ruleset(site_matches(n, base, args.seed)), SiteLists())
        tc = time.process_time() - t0
        if c.errors:
            raise RuntimeError(str(c.errors[0]))
        pi = c.index.get("otids.modbus")
        st = pi.stats() if pi is not None else {"groups": 0, "grouped": 0, "largest": 0}
        rate, alerts, seen = _time(RulesDetector(c), events, pi)
        if ref is None and n >= 10:
            ref = rate
        prate = "-"
        if args.plain_max and 0 < n <= args.plain_max:
            m = min(len(events), max(200, args.events * 10 // max(n, 1)))
            p_rate, p_alerts, _ = _time(RulesDetector(plain(c)), events[:m], None)
            _, i_alerts, _ = _time(RulesDetector(c), events[:m], None)
            if p_alerts != i_alerts:
                print(f"otids: error: {n} rules: indexed engine raised {i_alerts} alerts, plain loop {p_alerts}",
                      file=sys.stderr)
                return 1
            prate = f"{p_rate:,.0f}"
        print(f"{n:>7,}  {tc:>9.1f}  {st['groups']:>6}  {st['grouped']:>7,}  {seen:>8.3f}  {st['largest']:>7}  "
              f"{rate:>10,.0f}  {1e6 / rate:>8.2f}  {(rate / ref if ref else 1):>6.2f}  {prate:>15}  {alerts:>7}")
    return 0


def _time(det, events, pi):
    """(events/s, alerts, mean candidate rules per event)."""
    on = det.on_event
    alerts = 0
    t0 = time.process_time()  # CPU time: the machine's cores are shared
    for ev in events:
        r = on(ev)
        if r:
            alerts += len(r)
    dt = max(time.process_time() - t0, 1e-9)
    seen = 0.0
    if pi is not None:
        k = events[: min(len(events), 2000)]
        seen = sum(len(det.candidates(ev)) for ev in k) / max(1, len(k))
    return len(events) / dt, alerts, seen


def _sample(pcap: str, keep: int = 5000) -> list:
    """Modbus exchanges of the capture spread over all of it, at most 2 * keep (every one until then, then
    every other one of those kept, and so on): what site_matches draws hosts and addresses from."""
    from ...config import Config
    from ...pipeline import Run

    class Sample:
        def __init__(self):
            self.kept, self.stride, self.n = [], 1, 0

        def write_event(self, ev):
            if getattr(ev, "dataset", "") != "otids.modbus":
                return
            if self.n % self.stride == 0:
                self.kept.append(ev)
                if len(self.kept) >= 2 * keep:
                    self.kept = self.kept[::2]
                    self.stride *= 2
            self.n += 1

        def write_alert(self, a):
            pass

        def close(self):
            pass
    s = Sample()
    run = Run(Config(), [], [s], [s])
    run.analyze_file(pcap)
    run.finish()
    return s.kept


def _rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pipeline(args, pcap: str, base: list) -> int:
    """The whole pipeline on one capture, in this process, without rules and with each count of site-shaped
    rules (drawn from the capture's own hosts and addresses, written as YAML and loaded as `--rules` would;
    loading is timed apart), then tshark on the same capture: packets/s and ratios from one run."""
    import shutil
    import subprocess
    import tempfile
    from ...capture import open_capture
    from ...config import Config
    from ...pipeline import Collector, Run
    from ..anomaly import AnomalyDetector
    from .detector import load_ruleset

    with open_capture(pcap) as r:
        npk = sum(1 for _ in r.packets())
    cfg = Config()

    def once(extra):
        col = Collector()
        run = Run(cfg, [AnomalyDetector(cfg.anomaly)] + extra, [col], [])
        t0 = time.process_time()
        run.analyze_file(pcap)
        run.finish()
        return time.process_time() - t0, len(col.alerts)

    counts = [int(x) for x in (args.counts or "0,10,100,1000,5000").split(",") if x.strip()]
    print(f"\nwhole pipeline (otids analyze in this process, anomaly detector on), {os.path.basename(pcap)}: "
          f"{npk:,} packets; fastest of {max(1, args.runs)} run(s) each, runs without rules between the others; "
          f"CPU seconds (user+sys of the process: {os.cpu_count()} CPU(s) shared with other work, so wall time "
          f"would measure the others too); compare the ratios")
    print(f"{'rules':>7}  {'load s':>7}  {'CPU s':>8}  {'packets/s':>10}  {'vs no rules':>11}  {'vs tshark':>9}  "
          f"{'RSS MB':>6}  alerts")
    runs = max(1, args.runs)
    rows = []
    nones = [once([]) for _ in range(runs)]
    rss0 = _rss_mb()
    tmp = tempfile.mkdtemp(prefix="otids-rules-bench-")
    try:
        for n in counts:
            if n == 0:
                continue
            path = os.path.join(tmp, f"site-{n}.yml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(site_yaml(site_matches(n, base, args.seed)))
            t0 = time.process_time()
            c = load_ruleset([path], None)
            tl = time.process_time() - t0
            if c.errors:
                raise RuntimeError(str(c.errors[0]))
            got = []
            for _ in range(runs):  # each with a fresh detector, each beside a run without rules
                got.append(once([RulesDetector(c)]))
                nones.append(once([]))
            rows.append((f"{n:,}", tl, min(t for t, _ in got), got[0][1], _rss_mb()))
            del c
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tshark = shutil.which("tshark")
    t_ts = None
    if tshark:
        p = subprocess.Popen([tshark, "-r", pcap, "-Y", "modbus", "-T", "fields", "-e", "modbus.func_code"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, ru = os.wait4(p.pid, 0)
        t_ts = ru.ru_utime + ru.ru_stime
    t_none = min(t for t, _ in nones)
    rows.insert(0, ("none", 0.0, t_none, nones[0][1], rss0))
    for label, tl, dt, al, rss in rows:
        vs_ts = f"{t_ts / dt:8.2f}x" if t_ts else "        -"
        print(f"{label:>7}  {tl:>7.1f}  {dt:>8.2f}  {npk / dt:>10,.0f}  {t_none / dt:>10.2f}x  {vs_ts}  {rss:>6,.0f}  {al}")
    if t_ts:
        print(f"{'tshark':>7}  {'':>7}  {t_ts:>8.2f}  {npk / t_ts:>10,.0f}  (tshark -r CAPTURE -Y modbus -T fields)")
    else:
        print("tshark is not installed (apt-get install tshark): no tshark row")
    import resource
    print(f"RSS MB: the process's resident memory with that rule set loaded, after its runs; peak of the whole "
          f"bench {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    return 0
