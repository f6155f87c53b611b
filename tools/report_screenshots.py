#!/usr/bin/env python3
"""Screenshots of `otids report` for docs/REPORT.md: the demo capture (with the shipped rules), the simulated
plant's change scenario (pcaps/sim/changes.pcap against models/sim-baseline.yaml) and the map of a hand-made
293-host plant (connection records), each section opened in headless Chromium with the network off, the same
way tests/test_report_browser.py does. Fails if the page logs an error or makes a request.

usage: python3 tools/report_screenshots.py [OUTDIR]   (default docs/report/)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from ids.report.browser import Chromium  # noqa: E402
from test_report_browser import PLANT_ALERT, synthetic_plant_conn  # noqa: E402

CASES = {
    "demo": (["pcaps/modbus-demo.pcap", "--rules", "rules/", "--lists", "pcaps/modbus-demo.lists.yml"],
             ("overview", "timeline", "map", "findings")),
    "sim": (["pcaps/sim/changes.pcap", "--baseline", "models/sim-baseline.yaml"],
            ("overview", "timeline", "map", "mix", "findings", "baseline", "assets", "activity")),
}


def otids(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ids.cli", *args], cwd=ROOT, check=True)


def shoot(browser: Chromium, html: str, prefix: str, sections, outdir: str) -> None:
    browser.events.clear()
    browser.open(html)
    errors, requests = browser.errors(), browser.requests()
    if errors or any(not u.startswith(("file://", "data:image/png")) for u in requests):
        sys.exit(f"{html}: errors {errors}, requests {requests}")
    for s in sections:
        png = os.path.join(outdir, f"{prefix}-{s}.png")
        browser.screenshot(png, f"#{s}", max_height=900)
        print(png, os.path.getsize(png))


def main() -> None:
    outdir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "report"))
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, Chromium(width=1280, height=900) as b:
        for name, (args, sections) in CASES.items():
            html = os.path.join(tmp, f"{name}.html")
            otids("report", *args, "-o", html)
            shoot(b, html, name, sections, outdir)
        conn, alerts, html = (os.path.join(tmp, n) for n in ("conn.ndjson", "alerts.ndjson", "plant.html"))
        synthetic_plant_conn(conn)
        with open(alerts, "w") as fh:
            fh.write(PLANT_ALERT)
        otids("report", "--from", alerts, "--events", conn, "-o", html)
        shoot(b, html, "plant293", ("map",), outdir)


if __name__ == "__main__":
    main()
