"""Terminal summary of a run (rich): what was read, what was seen per protocol and function, top talkers,
alerts by severity and rule, and every note the data path left (checksum offload, caps, errors)."""
from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SEV_ORDER = ("critical", "high", "medium", "low", "info")
SEV_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}
DP_LABEL = {"tcp_gap_bytes": "tcp stream bytes missed",  # otids.conn.missed_bytes, not frame bytes
            "hosts_not_counted": "host addresses not counted (limits.memory_total)"}
TOP = 20  # rows of the events and per-host tables; the rest are counted in one "and N more" row


def suppressed_count(run) -> int:
    """Alerts silenced by site suppressions: by the rules engine (before thresholds) and by the engine's
    filter over every other detector."""
    return getattr(run.engine, "suppressed", 0) + sum(
        getattr(d, "suppressed", 0) for d in run.engine.detectors if isinstance(getattr(d, "suppressed", 0), int))


def print_summary(run, console: Console | None = None) -> None:
    c = console or Console(stderr=True, highlight=False)
    d = run.decoder.stats
    ft = run.table.stats
    damaged, unreadable = getattr(run, "files_damaged", 0), getattr(run, "files_unreadable", 0)
    files = f"{run.files_ok + damaged} file(s)"
    notes = [f"{n} {w}" for n, w in ((damaged, "damaged"), (unreadable, "not readable as a capture")) if n]
    if notes:
        files += f" ({', '.join(notes)})"
    # three kinds of bytes, each named: frames as captured (link headers included) here, payload bytes in
    # the talkers table (as otids.conn's *_payload_bytes), stream bytes never captured in the data path line
    c.print(f"[bold]otids[/bold] read {files}, {d.packets:,} packets, {d.bytes:,} frame bytes "
            f"in {run.elapsed:.2f} s; {ft['flows']:,} flows", soft_wrap=True)  # never broken at 80 columns
    if d.bad_checksum:
        c.print(f"  bad checksums: {d.bad_checksum:,} of {d.checksum_checked:,} packets checked")
        if not run.decoder.checksum_note and d.bad_checksum * 2 > d.checksum_checked:
            c.print("  note: most checksums are bad, as checksum offload leaves them on the capturing host "
                    "(loopback and many span captures); the packets were analysed all the same "
                    "(`decode.checksums: off` stops checking)", soft_wrap=True)
    if run.decoder.checksum_note:
        c.print(f"  note: {run.decoder.checksum_note}", soft_wrap=True)
    if d.not_ip or d.not_tcp_udp:  # still analysed: connection records (otids.conn)
        c.print(f"  other traffic: non-IP frames {d.not_ip:,}, IP other than TCP/UDP {d.not_tcp_udp:,}")
    skipped = {k: v for k, v in (("truncated", d.truncated),
                                 ("malformed", d.malformed), ("unknown link type", d.linktype_unknown)) if v}
    if skipped:
        c.print("  packets not analysed: " + ", ".join(f"{k} {v:,}" for k, v in skipped.items()))
    dp = {k: v for k, v in ft.items() if v and k not in ("flows",)}
    if dp:
        c.print("  data path: " + ", ".join(f"{DP_LABEL.get(k, k.replace('_', ' '))} {v:,}" for k, v in dp.items()))

    ev = run.engine.events
    if ev:
        t = Table(title="Events by protocol and function", title_justify="left")
        t.add_column("dataset")
        t.add_column("function / action")
        t.add_column("count", justify="right")
        rows = sorted(ev.items(), key=lambda x: (-x[1], x[0][0], str(x[0][1])))
        for (ds, fn), n in sorted(rows[:TOP], key=lambda x: (x[0][0], -x[1], str(x[0][1]))):
            t.add_row(ds, str(fn), f"{n:,}")
        if len(rows) > TOP:
            rest = rows[TOP:]
            t.add_row("", f"and {len(rest):,} more", f"{sum(n for _, n in rest):,}")
        c.print(t)

    talkers = run.table.talkers
    if talkers:
        from .talkers import talker_rows
        t = Table(title="Top talkers (by packets)", title_justify="left")
        rows = talker_rows(talkers, 10)
        for col in ("client", "server", "protocol", "service"):
            # addresses and services are what analysts copy: folded onto a second line when narrow, never
            # cut to "fe80::280e:…"
            t.add_column(col, overflow="fold")
        for col in ("flows", "packets", "payload\nbytes"):  # as otids.conn's *_payload_bytes, not IP bytes
            t.add_column(col, justify="right", no_wrap=True)
        for row in rows:
            t.add_row(*row)
        c.print(t)
        from ..flow.table import MAX_HOSTS
        n = len(run.table.hosts)
        more = n >= MAX_HOSTS or ft.get("hosts_not_counted")  # the cap, or limits.memory_total
        c.print(f"  hosts seen: {n:,}{' or more (no more are counted)' if more else ''}")

    al = run.engine.alerts
    sup = suppressed_count(run)
    sup_text = f"; {sup:,} suppressed by the site file's suppressions" if sup else ""
    if al:
        c.print("[bold]Alerts:[/bold] " + ", ".join(
            f"[{SEV_STYLE[s]}]{s} {al[s]:,}[/{SEV_STYLE[s]}]" for s in SEV_ORDER if al.get(s)) + sup_text)
        rules = run.engine.alert_rules
        t = Table(title="Alerts by rule", title_justify="left")
        # rule ids are what analysts grep and suppress: never cut; the name wraps instead
        t.add_column("rule", no_wrap=True, min_width=max(len(r) for r, _ in rules), overflow="ignore")
        t.add_column("name", ratio=1)
        t.add_column("count", justify="right", no_wrap=True)
        for (rid, name), n in sorted(rules.items(), key=lambda x: (-x[1], x[0])):
            t.add_row(rid, name, f"{n:,}")
        c.print(t)
        hosts = getattr(run.engine, "alert_hosts", None)
        if hosts:
            t = Table(title="Alerts by source host", title_justify="left")
            t.add_column("host", no_wrap=True)
            t.add_column("alerts", justify="right")
            rows = sorted(hosts.items(), key=lambda x: (-x[1], x[0]))
            for h, n in rows[:TOP]:
                t.add_row(h, f"{n:,}")
            if len(rows) > TOP:
                t.add_row(f"and {len(rows) - TOP:,} more", f"{sum(n for _, n in rows[TOP:]):,}")
            c.print(t)
    else:
        c.print("[bold]Alerts:[/bold] none" + sup_text)
    for path, n in run.outputs:
        c.print(f"  wrote {n:,} document(s) to {path}")
    for err in run.errors:  # one unwrapped line each, the same as with --quiet: scripts grep for it
        c.print(f"[red]otids: error:[/red] {escape(str(err))}", soft_wrap=True)
