"""The report model -> one self-contained HTML file: text and tables rendered here (readable without
scripts and on paper), charts and the map drawn in the page by the vendored Chart.js and Cytoscape.js from
the model's JSON, inlined with the style sheet. Nothing in the file refers to anything outside it but the
links to ATT&CK technique pages, which a reader follows by choice.

The output depends only on the model, except the one `<p id="generated">` line (time, version, inputs).
"""
from __future__ import annotations

import hashlib
import json
import re
from html import escape
from importlib import resources

#: fixed colours for the protocols otids dissects; others get one from PALETTE by the hash of their name
PROTOCOL_COLORS = {"modbus": "#1f77b4", "opcua": "#2ca02c", "mqtt": "#9467bd", "tls": "#8c564b",
                   "dns": "#17becf", "http": "#e377c2", "icmp": "#7f7f7f", "arp": "#bcbd22"}
PALETTE = ("#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#aec7e8", "#98df8a", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#dbdb8d", "#9edae5", "#ffbb78", "#ff9896")
ROLE_COLORS = {"modbus slave": "#0b4f8a", "modbus master": "#6baed6", "opcua server": "#1b7a1b",
               "opcua client": "#8fd18f", "mqtt broker": "#5e3c99", "mqtt client": "#b9a3dd",
               "tls server": "#7a4a3a", "tls client": "#c9a394", "host": "#8a94a6"}
VENDOR = ("chart.js", "cytoscape")
MAX_ROWS = 2000  # baseline deviations listed (each is an alert document; the alerts file keeps them all)
SECTIONS = (("overview", "Overview"), ("timeline", "Alert timeline"), ("map", "Communication map"),
            ("mix", "Protocol mix"), ("findings", "Findings"), ("baseline", "Baseline deviations"),
            ("assets", "Assets"), ("activity", "Device activity"), ("notices", "Data path"))


def color_for(proto: str) -> str:
    if proto in PROTOCOL_COLORS:
        return PROTOCOL_COLORS[proto]
    return PALETTE[int(hashlib.sha256(proto.encode()).hexdigest()[:8], 16) % len(PALETTE)]


def protocol_colors(protos: list[str]) -> dict[str, str]:
    """Fixed colours for known protocols; the others take the palette in order, so none share one (until
    the palette runs out; then by hash)."""
    out, free = {}, [c for c in PALETTE if c not in PROTOCOL_COLORS.values()]
    for p in protos:
        out[p] = PROTOCOL_COLORS.get(p) or (free.pop(0) if free else color_for(p))
    return out


def role_color(role: str) -> str:
    """A role otids has no colour for: its protocol's colour for servers, the same mixed with white for clients."""
    proto, _, kind = role.rpartition(" ")
    c = color_for(proto or role)  # stable across reports (the map legend shows roles anyway)
    if kind in ("server", "slave", "broker"):
        return c
    r, g, b = (int(c[i:i + 2], 16) for i in (1, 3, 5))
    return "#%02x%02x%02x" % tuple(int(v + (255 - v) * 0.55) for v in (r, g, b))


def _asset_text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def vendor_js() -> tuple[str, list[tuple[str, str]]]:
    """The vendored libraries (source maps references dropped: nothing to fetch) and (name, version)."""
    versions = {}
    for line in _asset_text("vendor/VERSIONS").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            versions[parts[0]] = parts[1]
    code = []
    for name in VENDOR:
        js = _asset_text(f"vendor/{name}.min.js")
        js = re.sub(r"//# sourceMappingURL=\S*", "", js)
        code.append(f"/* {name} {versions.get(name, '?')} (MIT licence, ids/report/vendor/{name}.LICENSE) */\n{js}")
    return "\n".join(code), [(n, versions.get(n, "?")) for n in VENDOR]


def e(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return escape(", ".join(str(x) for x in v))
    return escape(str(v))


def ident(v) -> str:
    """An identifier (rule id, function name) that may break after its dots and underscores on paper."""
    return e(v).replace(".", ".<wbr>").replace("_", "_<wbr>")


def num(v) -> str:
    return "—" if v is None else f"{v:,}"


def sev(name: str) -> str:
    return f'<span class="sev {e(name)}">{e(name)}</span>'


def table(tid: str, headers: list[tuple[str, bool]], rows: list[list], filter_hint: str = "filter") -> str:
    """A sortable, filterable table. headers: (title, numeric); a cell is text, or (html, sort value)."""
    out = [f'<input class="filter" data-table="{tid}" placeholder="{e(filter_hint)}" aria-label="{e(filter_hint)}">',
           f'<table class="sortable" id="{tid}"><thead><tr>']
    out += [f'<th{" class=n" if n else ""}>{e(h)}</th>' for h, n in headers]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        for (h, n), cell in zip(headers, r):
            cls = ' class="n"' if n else ' class="nw"' if h in ("first", "last", "time") else ""
            if isinstance(cell, tuple):
                out.append(f'<td{cls} data-v="{e(cell[1])}">{cell[0]}</td>')
            elif isinstance(cell, int) and not isinstance(cell, bool):
                out.append(f'<td{cls} data-v="{cell}">{cell:,}</td>')
            elif h in ("first", "last", "time") and isinstance(cell, str):  # may break at T and . on paper
                out.append(f"<td{cls}>{e(cell).replace('T', '<wbr>T', 1).replace('.', '<wbr>.', 1)}</td>")
            else:
                out.append(f"<td{cls}>{e(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _json_script(obj) -> str:
    s = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return s.replace("</", "<\\/").replace("<!--", "<\\!--")


def _dur(s: float) -> str:
    s = float(s or 0)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _human_bytes(b) -> str:
    if b is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:,.0f} {unit}" if unit == "B" else f"{b:,.1f} {unit}"
        b /= 1024
    return str(b)


def overview(m: dict) -> str:
    o = m["overview"]
    card = lambda k, v, label: f'<div class="card"><div class="v" data-key="{k}">{v}</div><div class="k">{e(label)}</div></div>'  # noqa: E731
    cards = [card("start", e(o["start"] or "—"), "first seen (UTC)"), card("end", e(o["end"] or "—"), "last seen (UTC)"),
             card("duration", e(_dur(o["duration_s"])), "capture span"),
             card("packets", num(o["packets"]), "packets" if o["packets"] is not None else
                  "packets (needs connection records)"),
             card("hosts", num(o["hosts"]), "hosts"), card("protocols", num(len(o["protocols"])), "protocols"),
             card("events", num(o["events"]), "event documents"), card("alerts", num(o["alerts"]), "alerts")]
    if o["connections"] is not None:
        cards.insert(4, card("connections", num(o["connections"]), "connections"))
        cards.insert(5, card("bytes", e(_human_bytes(o["bytes"])), "bytes (IP)"))
    sevs = "".join(f'<div class="card"><div class="v" data-key="sev-{k}">{v:,}</div><div class="k">{sev(k)}</div></div>'
                   for k, v in o["alerts_by_severity"].items())
    src = ("hosts, map and protocol mix from connection records (otids.conn)" if m["source"] == "conn" else
           "hosts, map and protocol mix from protocol events (no connection records in the input)")
    if m["source"] == "conn":
        protos = table("t-protocols", [("protocol", False), ("connections", True), ("exchanges (protocol events)", True)],
                       [[p, n, o["protocol_events"].get(p, 0)] for p, n in o["protocols"].items()], "filter protocols")
    else:
        protos = table("t-protocols", [("protocol", False), ("exchanges (protocol events)", True)],
                       [[p, n] for p, n in o["protocols"].items()], "filter protocols")
    return (f'<section id="overview"><h2>Overview</h2><div class="cards">{"".join(cards)}</div>'
            f'<h3>Alerts by severity</h3><div class="cards">{sevs}</div>'
            f'<h3>Protocols</h3><p class="muted">{e(src)}.</p>{protos}</section>')


def findings(m: dict) -> str:
    fs = m["findings"]
    if not fs:
        return '<section id="findings"><h2>Findings</h2><p>No alerts.</p></section>'
    summary = table("t-findings", [("severity", False), ("finding", False), ("rule", False), ("detector", False),
                                   ("alerts", True), ("occurrences", True), ("hosts", False), ("first", False)],
                    [[(sev(f["severity"]), f["score"]), (f'<a href="#f-{e(f["rule"])}">{e(f["name"])}</a>', f["name"]),
                      (f'<code>{ident(f["rule"])}</code>', f["rule"]), f["detector"], f["alerts"], f["occurrences"],
                      ", ".join(f["hosts"][:6]) + (" …" if len(f["hosts"]) > 6 else ""), f["first"]] for f in fs],
                    "filter findings (rule, host, detector…)")
    cards = []
    for f in fs:
        tech = ", ".join(f'<a href="{e(t["url"])}" rel="noreferrer">{e(t["id"])} {e(t["name"])}</a>' for t in f["techniques"])
        cmp = any(x["expected"] or x["seen"] for x in f["evidence"])  # baseline and certificate findings
        ev_rows = "".join(
            f'<tr><td class="mono nw">{e(x["time"]).replace("T", "<wbr>T", 1).replace(".", "<wbr>.", 1)}</td><td class="mono">{e(x["exchange"])}</td>'
            + (f'<td>{e(x["expected"])}</td><td>{e(x["seen"])}</td>' if cmp else "")
            + f'<td>{e(x["reason"])}</td><td class="n">{e(x["count"])}</td></tr>' for x in f["evidence"])
        more = (f'<p class="muted">Evidence: the first {len(f["evidence"])} of {f["alerts"]:,} alerts.</p>'
                if f["alerts"] > len(f["evidence"]) else "")
        hosts = ", ".join(f'<a href="#asset-{e(h)}">{e(h)}</a>' for h in f["hosts"]) + \
            (f' and {f["more_hosts"]} more' if f["more_hosts"] else "")
        cards.append(
            f'<div class="finding {e(f["severity"])}" id="f-{e(f["rule"])}"><h3>{sev(f["severity"])} {e(f["name"])} '
            f'<span class="muted">×{f["alerts"]:,}</span></h3>'
            f'<div class="kv"><div>rule</div><div><code>{ident(f["rule"])}</code> ({e(f["detector"])})</div>'
            f'<div>ATT&amp;CK for ICS</div><div>{tech or "—"}</div><div>hosts</div><div>{hosts}</div>'
            f'<div>seen</div><div>{e(f["first"])} … {e(f["last"])} ({f["occurrences"]:,} occurrences)</div></div>'
            f'<p class="muted">{e(f["description"])}</p>'
            f'<table><thead><tr><th>time</th><th>exchange</th>{"<th>expected</th><th>seen</th>" if cmp else ""}'
            f'<th>reason</th><th class="n">count</th></tr></thead><tbody>{ev_rows}</tbody></table>{more}</div>')
    return f'<section id="findings"><h2>Findings</h2>{summary}{"".join(cards)}</section>'


def baseline(m: dict) -> str:
    rows = [[(sev(b["severity"]), b["severity"]), b["deviation"], b["entry"], b["expected"], b["seen"], b["count"],
             b["first"] or b["time"], b["last"] or b["time"]] for b in m["baseline"][:MAX_ROWS]]
    more = (f'<p class="muted">The first {MAX_ROWS:,} of {len(m["baseline"]):,} deviations; the alerts file has '
            'them all.</p>' if len(m["baseline"]) > MAX_ROWS else "")
    body = (table("t-baseline", [("severity", False), ("deviation", False), ("entry", False), ("expected", False),
                                 ("seen", False), ("count", True), ("first", False), ("last", False)], rows,
                  "filter deviations") + more if rows else
            '<p>No baseline deviations (no baseline given, or the traffic matched it).</p>')
    return f'<section id="baseline"><h2>Baseline deviations</h2>{body}</section>'


def assets(m: dict) -> str:
    conn = m["source"] == "conn"
    rows = []
    for a in m["assets"]:
        nalerts = sum(x["count"] for x in a["alerts"])
        row = [(f'<a href="#asset-{e(a["ip"])}">{e(a["ip"])}</a>', a["ip"]), a["group"], ", ".join(a["roles"]),
               a["summary"], a["peer_count"], a["events"]]
        if conn:
            row.append(a["packets"])
        row.append((f'<span class="alerting">{nalerts:,}</span>' if nalerts else "0", nalerts))
        rows.append(row)
    headers = [("host", False), ("subnet / VLAN", False), ("roles", False), ("identity", False), ("peers", True),
               ("events", True)] + ([("packets", True)] if conn else []) + [("alerts", True)]
    out = [f'<section id="assets"><h2>Assets</h2>',
           table("t-assets", headers, rows, "filter hosts (address, role, vendor…)")]
    for a in m["assets"]:
        kv = [("roles", e(a["roles"]) or "—"), ("MAC", e(a["macs"]) or "—"), ("VLAN", e(a["vlans"]) or "—"),
              ("offers", e(a["offers"]) or "—"), ("uses", e(a["uses"]) or "—"),
              ("seen", f'{e(a["first"])} … {e(a["last"])}, {a["events"]:,} events')]
        if conn:
            kv.append(("traffic", f'{a["packets"]:,} packets, {_human_bytes(a["bytes"])}'))
        kv += [(k, e(v)) for k, v in a["identity"].items()]
        peers = ", ".join(f'<a href="#asset-{e(p["ip"])}">{e(p["ip"])}</a> <span class="muted">({e(p["protocols"])})</span>'
                          for p in a["peers"])
        if a["peer_count"] > len(a["peers"]):
            peers += f' and {a["peer_count"] - len(a["peers"])} more'
        kv.append(("peers", peers or "—"))
        parts = [f'<div class="asset" id="asset-{e(a["ip"])}"><h3>{e(a["ip"])} <span class="muted">{e(a["role"])}</span></h3>'
                 f'<div class="kv">{"".join(f"<div>{k}</div><div>{v}</div>" for k, v in kv)}</div>']
        if a["certificates"]:
            parts.append("<table><thead><tr><th>certificate subject</th><th>issuer</th><th>not after</th><th>key</th>"
                         "<th>protocol</th><th>sha256</th><th>verdict</th></tr></thead><tbody>")
            for c in a["certificates"]:
                bad = c["verdict"] != ["no finding"]
                parts.append(f'<tr><td>{e(c["subject"])}</td><td>{e(c["issuer"])}</td><td>{e(c["not_after"])}</td>'
                             f'<td>{e(c["key"])}</td><td>{e(c["protocol"])}</td><td class="mono">{e((c["sha256"] or "")[:16])}</td>'
                             f'<td{" class=alerting" if bad else ""}>{e(c["verdict"])}</td></tr>')
            parts.append("</tbody></table>")
        if a["alerts"]:
            parts.append("<table><thead><tr><th>severity</th><th>alert</th><th class=n>count</th></tr></thead><tbody>")
            parts += [f'<tr><td>{sev(x["severity"])}</td><td><a href="#f-{e(x["rule"])}">{e(x["name"])}</a></td>'
                      f'<td class="n">{x["count"]:,}</td></tr>' for x in a["alerts"]]
            parts.append("</tbody></table>")
        parts.append("</div>")
        out.append("".join(parts))
    out.append("</section>")
    return "".join(out)


def activity(m: dict) -> str:
    out = ['<section id="activity"><h2>Device activity</h2>']
    if m["modbus"]:
        out.append("<h3>Modbus register activity</h3>")
        rows = []
        for d in m["modbus"]:
            for b in d["blocks"]:
                rng = "" if b["address"] is None else (f'{b["address"]}' if b["last_address"] == b["address"]
                                                       else f'{b["address"]}–{b["last_address"]}')
                rows.append([(f'<a href="#asset-{e(d["device"])}">{e(d["device"])}</a>', d["device"]), d["unit"],
                             b["function"], (e(rng), b["address"] if b["address"] is not None else -1),
                             b["quantity"] if b["quantity"] is not None else "", b["count"], b["exceptions"],
                             ", ".join(b["masters"]), "" if b["min"] is None else f'{b["min"]}–{b["max"]}',
                             "" if b["values"] is None else ", ".join(map(str, b["values"])), b["last"]])
        out.append(table("t-modbus", [("device", False), ("unit", True), ("function", False), ("addresses", True),
                                      ("quantity", True), ("exchanges", True), ("exceptions", True),
                                      ("masters", False), ("values min–max", False), ("last values", False),
                                      ("last", False)], rows,
                         "filter (device, function, master…)"))
    if m["opcua"]:
        out.append("<h3>OPC UA node activity</h3>")
        rows = [[(f'<a href="#asset-{e(d["device"])}">{e(d["device"])}</a>', d["device"]), n["name"], n["kind"],
                 n["count"], ", ".join(n["clients"]), "" if n["value"] is None else str(n["value"]), n["last"]]
                for d in m["opcua"] for n in d["nodes"]]
        out.append(table("t-opcua", [("server", False), ("node", False), ("service", False), ("exchanges", True),
                                     ("clients", False), ("last written value", False), ("last", False)], rows,
                         "filter (node, service, client…)"))
    if m["mqtt"]:
        out.append("<h3>MQTT topic activity</h3>")
        rows = [[(f'<a href="#asset-{e(d["device"])}">{e(d["device"])}</a>', d["device"]), n["name"], n["kind"],
                 n["count"], ", ".join(n["clients"]), "" if n["value"] is None else str(n["value"])[:60], n["last"]]
                for d in m["mqtt"] for n in d["topics"]]
        out.append(table("t-mqtt", [("broker", False), ("topic", False), ("message", False), ("exchanges", True),
                                    ("clients", False), ("last message", False), ("last", False)], rows,
                         "filter (topic, client…)"))
    if not (m["modbus"] or m["opcua"] or m["mqtt"]):
        out.append("<p>No Modbus, OPC UA or MQTT exchanges.</p>")
    out.append("</section>")
    return "".join(out)


def notices(m: dict) -> str:
    o = m["overview"]
    rows = [[k, v] for k, v in o["notices"].items()]
    ds = table("t-datasets", [("dataset", False), ("documents", True)], [[k, v] for k, v in o["datasets"].items()],
               "filter datasets")
    body = (table("t-notices", [("notice", False), ("count", True)], rows, "filter notices") if rows
            else "<p>No data-path notices.</p>")
    return f'<section id="notices"><h2>Data path</h2><h3>Documents read</h3>{ds}<h3>Notices</h3>{body}</section>'


def render(model: dict, generated: str) -> str:
    """The whole HTML page. `generated` is the one line that may differ between two runs on the same inputs."""
    protos = list(model["overview"]["protocols"])
    for ed in model["map"]["edges"]:
        if ed["protocol"] not in protos:
            protos.append(ed["protocol"])
    colors = protocol_colors(sorted(protos))
    roles = sorted({n["role"] for n in model["map"]["nodes"]})
    role_colors = {r: ROLE_COLORS.get(r) or role_color(r) for r in roles}
    data = {"overview": {"protocols": model["overview"]["protocols"]}, "source": model["source"],
            "timeline": model["timeline"], "mix": model["mix"], "map": model["map"], "colors": colors,
            "roleColors": role_colors}
    js, versions = vendor_js()
    legend_p = "".join(f'<span><i style="background:{c}"></i>{e(p)}</span>' for p, c in colors.items())
    legend_r = "".join(f'<span><i class="node" style="background:{c}"></i>{e(r)}</span>' for r, c in role_colors.items())
    nmap = model["map"]
    nalerting = sum(1 for x in nmap["edges"] if x["alerting"])
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in SECTIONS)
    mix_unit = "bytes by protocol, from connection records" if model["source"] == "conn" else \
        "protocol exchanges (events) by protocol; connection records would show every protocol's bytes"
    libs = ", ".join(f"{n} {v}" for n, v in versions)
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network: the policy forbids every fetch, so a mistake shows as a console error in the browser test
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; script-src \'unsafe-inline\'; '
        'style-src \'unsafe-inline\'; img-src data:">',
        '<title>otids report</title><style>', _asset_text("report.css"), "</style></head><body>",
        f'<header><h1>otids report</h1>\n<p class="gen" id="generated">{e(generated)}</p>\n</header>',
        f"<nav>{nav}</nav><main>",
        overview(model),
        '<section id="timeline"><h2>Alert timeline</h2><p class="muted">Alerts per time bin, stacked by severity '
        '(each alert document counts once; repeated occurrences are summarised in Findings).</p>'
        '<div class="chart"><canvas id="timeline-chart" role="img" aria-label="alert timeline"></canvas></div></section>',
        f'<section id="map"><h2>Communication map</h2><p class="muted">{len(nmap["nodes"]):,} hosts in '
        f'{len(nmap["groups"]):,} subnets/VLANs, {len(nmap["edges"]):,} links ({nalerting:,} with alerts, drawn dashed '
        'on a red halo). Arrows point from client to server. Scroll to zoom, drag to pan, click a host to isolate '
        'its links, double-click to open its section.</p>'
        f'<div class="legend">{legend_p}</div><div class="legend">{legend_r}</div>'
        '<div id="map-graph" role="img" aria-label="communication map"></div><img id="map-print" alt="communication map">'
        '<p class="muted mono" id="map-info">&nbsp;</p></section>',
        f'<section id="mix"><h2>Protocol mix over time</h2><p class="muted">{e(mix_unit)}.</p>'
        '<div class="chart"><canvas id="mix-chart" role="img" aria-label="protocol mix"></canvas></div></section>',
        findings(model), baseline(model), assets(model), activity(model), notices(model),
        f"</main><footer>Made by otids. Charts: Chart.js; map: Cytoscape.js ({e(libs)}; MIT licences, "
        "inlined). Times are UTC.</footer>",
        f'<script type="application/json" id="report-data">{_json_script(data)}</script>',
        f"<script>{js}</script><script>{_asset_text('report.js')}</script></body></html>\n"])
