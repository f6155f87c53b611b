"""Terminal summary of a run (rich): what was read, what was seen per protocol and function, top talkers,
alerts by severity and rule, and every note the data path left (checksum offload, caps, errors)."""
from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SEV_ORDER = ("critical", "high", "medium", "low", "info")
SEV_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def print_summary(run, console: Console | None = None) -> None:
    c = console or Console(stderr=True, highlight=False)
    d = run.decoder.stats
    ft = run.table.stats
    c.print(f"[bold]otids[/bold] read {run.files_ok} file(s), {d.packets:,} packets, {d.bytes:,} bytes "
            f"in {run.elapsed:.2f} s; {ft['flows']:,} flows")
    if d.bad_checksum:
        c.print(f"  bad checksums: {d.bad_checksum:,} of {d.checksum_checked:,} checked")
    if run.decoder.checksum_note:
        c.print(f"  note: {run.decoder.checksum_note}")
    if d.not_ip or d.not_tcp_udp:  # still analysed: connection records (otids.conn)
        c.print(f"  other traffic: non-IP frames {d.not_ip:,}, IP other than TCP/UDP {d.not_tcp_udp:,}")
    skipped = {k: v for k, v in (("truncated", d.truncated),
                                 ("malformed", d.malformed), ("unknown link type", d.linktype_unknown)) if v}
    if skipped:
        c.print("  packets not analysed: " + ", ".join(f"{k} {v:,}" for k, v in skipped.items()))
    dp = {k: v for k, v in ft.items() if v and k not in ("flows",)}
    if dp:
        c.print("  data path: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in dp.items()))

    ev = run.engine.events
    if ev:
        t = Table(title="Events by protocol and function", title_justify="left")
        t.add_column("dataset")
        t.add_column("function / action")
        t.add_column("count", justify="right")
        for (ds, fn), n in sorted(ev.items(), key=lambda x: (x[0][0], -x[1], str(x[0][1]))):
            t.add_row(ds, str(fn), f"{n:,}")
        c.print(t)

    talkers = run.table.talkers
    if talkers:
        from .talkers import talker_rows
        t = Table(title="Top talkers (by packets)", title_justify="left")
        for col in ("client", "server", "protocol", "service"):
            t.add_column(col)
        for col in ("flows", "packets", "bytes"):
            t.add_column(col, justify="right")
        for row in talker_rows(talkers, 10):
            t.add_row(*row)
        c.print(t)
        c.print(f"  hosts seen: {len(run.table.hosts):,}")

    al = run.engine.alerts
    if al:
        c.print("[bold]Alerts:[/bold] " + ", ".join(
            f"[{SEV_STYLE[s]}]{s} {al[s]:,}[/{SEV_STYLE[s]}]" for s in SEV_ORDER if al.get(s)))
        t = Table(title="Alerts by rule", title_justify="left")
        t.add_column("rule")
        t.add_column("name")
        t.add_column("count", justify="right")
        for (rid, name), n in sorted(run.engine.alert_rules.items(), key=lambda x: (-x[1], x[0])):
            t.add_row(rid, name, f"{n:,}")
        c.print(t)
    else:
        c.print("[bold]Alerts:[/bold] none")
    for path, n in run.outputs:
        c.print(f"  wrote {n:,} document(s) to {path}")
    for err in run.errors:  # one unwrapped line each, the same as with --quiet: scripts grep for it
        c.print(f"[red]otids: error:[/red] {escape(str(err))}", soft_wrap=True)
