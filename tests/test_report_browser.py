"""`otids report` in a real browser: Debian's headless Chromium (.ci/install) opens the report from disk with
the network off (offline emulation, a dead proxy, a fresh profile) and, over the DevTools protocol, the test
asserts no console error, no exception and no request other than the file itself (and the map's own data:
image), that the numbers in the page equal those of the NDJSON outputs, that tables sort and filter, that
the page prints to PDF, and saves a screenshot of each section (tools/report_screenshots.py makes the
ones in docs/REPORT.md the same way)."""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import ROOT, read_ndjson, run_cli
from ids.report.browser import Chromium, find_chromium
from ids.report.model import severity_name
from test_report import CONN, DEMO, SIM, analyze

SECTIONS = ("overview", "timeline", "map", "mix", "findings", "baseline", "assets", "activity", "notices")


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.fail("chromium is not installed (.ci/install installs Debian's chromium)")
    with Chromium() as b:
        yield b


def page_numbers(b) -> dict:
    return b.evaluate("Object.fromEntries([...document.querySelectorAll('[data-key]')]"
                      ".map(e => [e.dataset.key, e.textContent]))")


def open_clean(b, path):
    b.events.clear()
    b.open(str(path))
    assert b.errors() == []
    reqs = b.requests()
    assert reqs[0] == f"file://{path}"
    assert all(u.startswith("data:image/png") for u in reqs[1:]), reqs


@pytest.mark.parametrize("name,args,extra", [("demo", DEMO, []), ("sim", SIM, []), ("demo-conn", DEMO, [CONN])])
def test_report_in_chromium(tmp_path, browser, name, args, extra):
    alerts, events = analyze(tmp_path, name, args)
    html = tmp_path / f"{name}.html"
    run_cli("report", "--from", str(alerts), "--events", str(events), *[x for c in extra for x in ("--events", str(c))],
            "-o", str(html))
    A, E = read_ndjson(alerts), read_ndjson(events) + [d for c in extra for d in read_ndjson(c)]
    open_clean(browser, html)

    n = page_numbers(browser)
    assert int(n["alerts"]) == len(A)
    assert int(n["events"]) == len(E)
    sev = Counter(severity_name(a["event"]["severity"]) for a in A)
    for k in ("critical", "high", "medium", "low", "info"):
        assert int(n[f"sev-{k}"]) == sev.get(k, 0), k
    conns = [d for d in E if d["event"]["dataset"] == "otids.conn"]
    ips = {d[s]["ip"] for d in E if d.get("source") and d.get("destination") for s in ("source", "destination")}
    assert int(n["hosts"]) == len(ips)
    if conns:
        assert int(n["packets"].replace(",", "")) == sum(d["source"]["packets"] + d["destination"]["packets"]
                                                        for d in conns)
    else:
        assert n["packets"] == "—"
    assert n["start"] == min(d.get("event", {}).get("start") or d["@timestamp"] for d in E + A)[:19] + "Z"

    # the findings table has one row per rule with its alert count; the map one node per host
    rows = browser.evaluate("[...document.querySelectorAll('#t-findings tbody tr')]"
                            ".map(r => [r.cells[2].textContent, Number(r.cells[4].dataset.v)])")
    assert dict(rows) == dict(Counter(a["rule"]["id"] for a in A))
    assert browser.evaluate("window.otidsMap.nodes().filter(n => !n.isParent()).length") == len(ips)
    boxes_apart(browser)
    alerting = browser.evaluate("window.otidsMap.edges('.alerting').length")
    assert (alerting > 0) == bool(A)
    assert browser.evaluate("Chart.getChart('timeline-chart').data.datasets.reduce("
                            "(s, d) => s + d.data.reduce((a, b) => a + b, 0), 0)") == len(A)

    # sorting by the numeric 'alerts' column, then filtering the assets table
    browser.evaluate("document.querySelector('#t-assets thead th:last-child').click()")
    col = browser.evaluate("[...document.querySelectorAll('#t-assets tbody tr')].map(r => Number(r.cells[r.cells.length-1].dataset.v))")
    assert col == sorted(col)
    browser.evaluate("document.querySelector('#t-assets thead th:last-child').click()")
    col = browser.evaluate("[...document.querySelectorAll('#t-assets tbody tr')].map(r => Number(r.cells[r.cells.length-1].dataset.v))")
    assert col == sorted(col, reverse=True)
    first_ip = sorted(ips)[0]
    visible = browser.evaluate(f"""(() => {{ const i = document.querySelector('input[data-table="t-assets"]');
        i.value = {first_ip!r}; i.dispatchEvent(new Event('input'));
        return [...document.querySelectorAll('#t-assets tbody tr')].filter(r => r.style.display !== 'none')
               .map(r => r.cells[0].textContent); }})()""")
    assert visible and all(first_ip in v for v in visible)

    for s in SECTIONS:
        shot = tmp_path / f"{name}-{s}.png"
        browser.screenshot(str(shot), f"#{s}")
        assert shot.stat().st_size > 3000, s
    pdf = browser.pdf()
    assert pdf.startswith(b"%PDF") and len(pdf) > 20000
    assert browser.errors() == []


def test_the_harness_sees_requests_and_errors(tmp_path, browser):
    """The checks above can fail: a page that reaches out and logs an error is caught."""
    html = tmp_path / "leaky.html"
    html.write_text('<!DOCTYPE html><html><body><img src="http://192.0.2.1/x.png">'
                    '<script>console.error("boom"); document.body.setAttribute("data-ready", "1")</script>'
                    '</body></html>')
    browser.events.clear()
    browser.open(str(html))
    assert any("boom" in e for e in browser.errors())
    assert "http://192.0.2.1/x.png" in browser.requests()


def synthetic_plant_conn(path) -> int:
    """A hand-made plant of ~300 hosts as connection records (five PLC subnets polled by thirty HMIs, an
    OPC UA server, sixty IT hosts using DNS and a web server, one IT host polling a PLC): the map at scale."""
    import json
    import random
    from datetime import datetime, timezone
    rnd = random.Random(7)

    def ts(x):
        return datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def conn(c, s, proto, transport, port, i):
        b1, b2 = rnd.randrange(100, 5000), rnd.randrange(100, 9000)
        t = 1764900000 + i
        return {"@timestamp": ts(t + 30), "event": {"kind": "event", "dataset": "otids.conn", "start": ts(t)},
                "source": {"ip": c, "port": 40000 + i, "packets": b1 // 80, "bytes": b1},
                "destination": {"ip": s, "port": port, "packets": b2 // 80, "bytes": b2},
                "network": {"transport": transport, "protocol": proto}}
    plcs = [f"10.20.{s}.{i}" for s in range(1, 6) for i in range(1, 41)]
    hmis = [f"10.10.1.{i}" for i in range(1, 31)]
    it = [f"192.168.5.{i}" for i in range(1, 61)]
    docs = []
    for plc in plcs:
        for h in rnd.sample(hmis, 2):
            docs.append(conn(h, plc, "modbus" if rnd.random() < .8 else "s7comm", "tcp", 502, len(docs)))
    docs += [conn(h, "10.10.0.5", "opcua", "tcp", 4840, len(docs) + k) for k, h in enumerate(hmis)]
    for h in it:
        docs.append(conn(h, "192.168.5.250", "http", "tcp", 80, len(docs)))
        docs.append(conn(h, "10.10.0.53", "dns", "udp", 53, len(docs)))
    docs.append(conn("192.168.5.7", "10.20.3.5", "modbus", "tcp", 502, len(docs)))
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d, separators=(",", ":")) + "\n" for d in docs)
    return len({d[s]["ip"] for d in docs for s in ("source", "destination")})


PLANT_ALERT = ('{"@timestamp":"2025-12-05T02:10:00.000000Z","event":{"kind":"alert","severity":73,'
               '"dataset":"otids.alert"},"source":{"ip":"192.168.5.7"},"destination":{"ip":"10.20.3.5"},'
               '"network":{"protocol":"modbus"},"rule":{"id":"site.it_host_polls_plc","name":"IT host polls a PLC"},'
               '"otids":{"alert":{"detector":"rules","count":1}}}\n')


def test_map_with_hundreds_of_hosts(tmp_path, browser):
    conn, alerts, html = tmp_path / "conn.ndjson", tmp_path / "alerts.ndjson", tmp_path / "plant.html"
    hosts = synthetic_plant_conn(conn)
    alerts.write_text(PLANT_ALERT)
    run_cli("report", "--from", str(alerts), "--events", str(conn), "-o", str(html))
    open_clean(browser, html)
    assert hosts == 293 and int(page_numbers(browser)["hosts"]) == hosts
    assert browser.evaluate("window.otidsMap.nodes().filter(n => !n.isParent()).length") == hosts
    assert browser.evaluate("window.otidsMap.nodes().filter(n => n.isParent()).length") == 8  # subnets
    assert browser.evaluate("window.otidsMap.edges('.alerting').map(e => e.source().id() + '>' + e.target().id())") \
        == ["192.168.5.7>10.20.3.5"]
    boxes_apart(browser)  # subnet boxes never overlap


def boxes_apart(b) -> None:
    boxes = b.evaluate("window.otidsMap.nodes().filter(n => n.isParent()).map(n => n.boundingBox())")
    for i, a in enumerate(boxes):
        for c in boxes[i + 1:]:
            assert a["x2"] <= c["x1"] or c["x2"] <= a["x1"] or a["y2"] <= c["y1"] or c["y2"] <= a["y1"], (a, c)


def test_small_map_of_several_subnets(tmp_path, browser):
    """A few hosts in four subnets (one VLAN, IPv6 link-local): the force-directed layout is kept only when
    it leaves the subnet boxes apart."""
    conn = ROOT / "tests" / "data" / "report-conn-subnets.ndjson"
    alerts, html = tmp_path / "alerts.ndjson", tmp_path / "subnets.html"
    alerts.write_text("")
    run_cli("report", "--from", str(alerts), "--events", str(conn), "-o", str(html))
    open_clean(browser, html)
    ips = {d[s]["ip"] for d in read_ndjson(conn) for s in ("source", "destination")}
    assert int(page_numbers(browser)["hosts"]) == len(ips) == 10
    groups = browser.evaluate("window.otidsMap.nodes().filter(n => n.isParent()).map(n => n.data('label'))")
    assert sorted(groups) == ["10.1.0.0/24", "10.1.0.0/24 vlan 20", "10.2.0.0/24 vlan 20", "192.168.7.0/24",
                              "fe80::/64"]
    boxes_apart(browser)


def test_printed_page_fits_a4_and_shows_the_map(tmp_path, browser):
    """Print media at an A4 page's width (760 CSS px inside the margins): nothing runs off the page, and the
    interactive map is replaced by its still image."""
    alerts, events = analyze(tmp_path, "sim", SIM)
    html = tmp_path / "sim.html"
    run_cli("report", "--from", str(alerts), "--events", str(events), "-o", str(html))
    browser.call("Emulation.setDeviceMetricsOverride", width=760, height=1000, deviceScaleFactor=1, mobile=False)
    try:
        browser.call("Emulation.setEmulatedMedia", media="print")
        open_clean(browser, html)
        assert browser.evaluate("document.documentElement.scrollWidth") <= 770
        assert browser.evaluate("getComputedStyle(document.getElementById('map-graph')).display") == "none"
        img = browser.evaluate("(() => { const i = document.getElementById('map-print');"
                               "return [getComputedStyle(i).display, i.src.slice(0, 22), i.naturalWidth]; })()")
        assert img[0] == "block" and img[1] == "data:image/png;base64," and img[2] > 300
    finally:
        browser.call("Emulation.setEmulatedMedia", media="")
        browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
