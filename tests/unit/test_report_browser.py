"""The HTML report in a real browser (issue 12, item 5): headless Chromium loads it from a
file:// URL and a person's moves are replayed with real input events — click a box of the graph
(the side panel must show that layer's `netdsl explain` lines), zoom with the wheel and the +
button (the viewport's transform must change), sort the summary table by a column (the rows must
come out in that order), save a screenshot (it must not be blank). Any JavaScript error (an
uncaught exception, console.error, a browser log entry of level error) fails the test, and so
does any request that is not file: or data: (the page must fetch nothing).

Chromium is driven through the DevTools protocol over --remote-debugging-pipe: the browser reads
commands on its file descriptor 3 and writes replies on 4, JSON messages ended by a NUL byte, so
no websocket library is needed. Every read has a deadline and the browser (its whole process
group) is always killed at the end. Skips, saying why, where no Chromium is installed."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import time

import pytest

import netdsl
from netdsl.viz.report import report_html

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium and one page in it, spoken to over the DevTools pipe."""

    def __init__(self, tmp, width=1400, height=1000, timeout=30.0):
        exe = find_browser()
        if exe is None:
            pytest.skip(f"no Chromium to drive (looked for {', '.join(BROWSERS)} on PATH); "
                        "install it, e.g. apt-get install chromium")
        self.timeout, self.errors, self.requests, self.events = timeout, [], [], []
        self._buf, self._id = b"", 0
        self.log = open(os.path.join(tmp, "chromium.log"), "wb")
        cmd_r, self._cmd_w = os.pipe()           # we write commands, Chromium reads them on fd 3
        self._resp_r, resp_w = os.pipe()         # Chromium writes replies on fd 4, we read them
        # copies above 10 so dup2 onto 3 and 4 cannot overwrite one with the other
        hi_r, hi_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_r, resp_w))
        os.close(cmd_r)
        os.close(resp_w)
        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--mute-audio", f"--user-data-dir={os.path.join(tmp, 'profile')}",
                f"--window-size={width},{height}", "about:blank"]
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, self.log.fileno(), 1), (os.POSIX_SPAWN_DUP2, self.log.fileno(), 2),
                   (os.POSIX_SPAWN_DUP2, hi_r, 3), (os.POSIX_SPAWN_DUP2, hi_w, 4)]
        try:
            self.pid = os.posix_spawn(exe, args, os.environ, file_actions=actions, setsid=True)
        finally:
            os.close(hi_r)
            os.close(hi_w)
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=True)
            self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                             "deviceScaleFactor": 1, "mobile": False}, session=True)
        except BaseException:
            self.close()
            raise

    # -- the pipe
    def _send(self, method, params=None, session=False):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._cmd_w, data)
            data = data[n:]
        return self._id

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time (see chromium.log in the test's tmp_path)")
            ready, _, _ = select.select([self._resp_r], [], [], left)
            if ready:
                chunk = os.read(self._resp_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe (it exited; see chromium.log)")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg = json.loads(raw)
        if "method" in msg:
            self._event(msg)
        return msg

    def _event(self, msg):
        m, p = msg["method"], msg.get("params", {})
        self.events.append(m)
        if m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                            for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.requestWillBeSent":
            self.requests.append(p["request"]["url"])

    def call(self, method, params=None, session=False, timeout=None):
        """Send a command and wait for its reply (events meanwhile are recorded)."""
        want = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, name, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = len(self.events)
        while name not in self.events[seen:]:
            self._read(deadline)

    # -- what a test does
    def open(self, path):
        self.call("Page.navigate", {"url": "file://" + os.path.abspath(path)}, session=True)
        self.wait_event("Page.loadEventFired")

    def js(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                      session=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def centre_of(self, selector):
        """Viewport coordinates of the middle of the first element matching `selector` (scrolled into view)."""
        r = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; "
                    "e.scrollIntoView({block: 'center', inline: 'center'}); const b = e.getBoundingClientRect(); "
                    "return [b.left + b.width / 2, b.top + b.height / 2]; })()")
        assert r is not None, f"nothing matches {selector}"
        return r

    def click(self, x, y):
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
                      session=True)

    def wheel(self, x, y, dy):
        self.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0, "deltaY": dy},
                  session=True)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self._send("Browser.close")
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except (OSError, ChildProcessError):
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)      # the browser's own process group (setsid)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        for fd in (self._cmd_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()


@pytest.fixture
def browser(tmp_path):
    b = Browser(str(tmp_path))
    try:
        yield b
    finally:
        b.close()


def explain_block(m, name):
    """The lines `netdsl explain` prints for one layer, cut out of the whole text."""
    out, on = [], False
    for line in m.explain().splitlines():
        if not line.startswith(" "):
            on = line.startswith(name + ": ")
        if on:
            out.append(line)
    return "\n".join(out)


def test_report_in_chromium(browser, tmp_path):
    m = netdsl.load("resnet18")
    path = tmp_path / "resnet18.html"
    path.write_text(report_html(m, depth=1), encoding="utf-8")
    browser.open(str(path))
    assert browser.errors == [], browser.errors
    assert browser.js("document.querySelectorAll('#graph .view:not([hidden]) g.node').length") == 11

    # click the conv1 box: the panel shows its article with the explain text
    x, y = browser.centre_of("#graph .view:not([hidden]) g.node[data-name='conv1'] rect")
    browser.click(x, y)
    shown = browser.js("Array.from(document.querySelectorAll('#panel article')).filter(a => !a.hidden)"
                       ".map(a => [a.dataset.name, a.querySelector('pre.explain').textContent])")
    assert shown == [["conv1", explain_block(m, "conv1")]]
    assert browser.js("document.querySelector('g.node.selected').dataset.name") == "conv1"

    # a collapsed block: its article lists its layers
    x, y = browser.centre_of("#graph .view:not([hidden]) g.node[data-name='layer3'] rect")
    browser.click(x, y)
    members = browser.js("Array.from(document.querySelectorAll('#panel article:not([hidden]) ol.members a.sel'))"
                         ".map(a => a.textContent)")
    assert members == [n.name for n in m.graph.nodes() if n.name.startswith("layer3.")]

    # zoom: the wheel and the + button change the viewport's transform
    tf = "document.querySelector('#graph .view:not([hidden]) g.viewport').getAttribute('transform')"
    before = browser.js(tf)
    gx, gy = browser.centre_of("#graph")
    browser.wheel(gx, gy, -400)
    after_wheel = browser.js(tf)
    assert after_wheel != before
    scale = lambda t: float(t.split("scale(")[1].rstrip(")"))        # noqa: E731
    assert scale(after_wheel) > scale(before)
    browser.click(*browser.centre_of("button[data-zoom='in']"))
    assert scale(browser.js(tf)) == pytest.approx(scale(after_wheel) * 1.25, rel=1e-3)

    # sort the summary table by params (biggest first), then again (smallest first)
    rows = ("Array.from(document.querySelectorAll('table.summary tbody tr'))"
            ".map(r => [r.dataset.name, +r.cells[4].dataset.v])")
    params = {r["name"]: r["params"] for r in m.summary_dict()["layers"]}
    browser.click(*browser.centre_of("table.summary th:nth-child(5)"))
    got = browser.js(rows)
    assert [p for _, p in got] == sorted(params.values(), reverse=True)
    assert all(params[n] == p for n, p in got)
    browser.click(*browser.centre_of("table.summary th:nth-child(5)"))
    assert [p for _, p in browser.js(rows)] == sorted(params.values())

    # back to the top, and a screenshot that shows something
    browser.js("window.scrollTo(0, 0)")
    shot = browser.screenshot(str(tmp_path / "report.png"))
    from PIL import Image
    with Image.open(shot) as im:
        im = im.convert("RGB")
        assert im.size == (1400, 1000)
        colours = im.getcolors(1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is (almost) one colour"
    assert max(c for c, _ in colours) < 0.9 * im.size[0] * im.size[1]

    assert browser.errors == [], browser.errors
    assert browser.requests and all(u.startswith(("file:", "data:")) for u in browser.requests), browser.requests
