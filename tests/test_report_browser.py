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
