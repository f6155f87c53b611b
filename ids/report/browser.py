"""Open a report in headless Chromium with the network off and drive it over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: no port, no websocket library): collect console errors, exceptions and every
request the page makes, read values out of the page, take screenshots, print to PDF.

Used by tests/test_report_browser.py and tools/report_screenshots.py; the report itself never needs it.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         # anything that still tried to reach the network would go to a closed local port
         "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless browser with a fresh profile, one page attached in flat mode."""

    def __init__(self, exe: str | None = None, width: int = 1400, height: int = 1000, timeout: float = 60):
        exe = exe or find_chromium()
        if not exe:
            raise BrowserError("chromium not found (apt-get install chromium; .ci/install does it)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="otids-chromium-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()

        def fds():  # the protocol pipe is fd 3 (commands in) and fd 4 (replies out) in the child
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                  uploadThroughput=-1)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # ------------------------------------------------------------------ protocol
    def _read_message(self, deadline: float) -> dict:
        import select
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
                    raise BrowserError(f"chromium closed the protocol pipe: {err}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, **params):
        self._id += 1
        mid = self._id
        msg = {"id": mid, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == mid:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method: str, timeout: float | None = None) -> dict:
        for m in self.events:
            if m.get("method") == method:
                return m
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if "method" in m:
                self.events.append(m)
                if m["method"] == method:
                    return m

    # ------------------------------------------------------------------ page
    def open(self, path: str) -> None:
        url = "file://" + os.path.abspath(path)
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        deadline = time.monotonic() + self.timeout
        while self.evaluate("document.body && document.body.getAttribute('data-ready')") != "1":
            if time.monotonic() > deadline:
                raise BrowserError(f"the report's script did not finish (no data-ready): {self.errors()}")
            time.sleep(0.1)

    def evaluate(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"evaluate {expr!r}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations, failed loads)."""
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def requests(self) -> list[str]:
        """URLs of every request the page made (the report itself is the first)."""
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: str, selector: str | None = None, max_height: int = 2400, quality: int = 0) -> None:
        """PNG, or JPEG at `quality` (1-100) when given."""
        clip = None
        if selector:
            r = self.evaluate(f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                              "if(!e) return null; e.scrollIntoView(); var r=e.getBoundingClientRect();"
                              "return [r.left+window.scrollX, r.top+window.scrollY, r.width, r.height];})()")
            if r is None:
                raise BrowserError(f"no element {selector}")
            x, y, w, h = r
            clip = {"x": x, "y": y, "width": w, "height": min(h, max_height), "scale": 1}
        params = {"format": "jpeg", "quality": quality} if quality else {"format": "png"}
        params["captureBeyondViewport"] = True
        if clip:
            params["clip"] = clip
        data = self.call("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))

    def pdf(self) -> bytes:
        return base64.b64decode(self.call("Page.printToPDF", printBackground=True)["data"])

    def close(self) -> None:
        try:
            try:
                self.call("Browser.close")
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            for fd in (self._r, self._w):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
