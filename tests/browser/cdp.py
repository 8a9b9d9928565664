"""A tiny Chrome DevTools Protocol client for browser tests (stdlib only).

It starts Debian's headless Chromium with --remote-debugging-pipe: Chromium
reads commands from its fd 3 and writes replies and events to its fd 4, each
message being JSON followed by a NUL byte.  No websockets, no npm, no pip.

    from cdp import Browser

    with Browser() as b:
        b.goto("file:///tmp/page.html", wait_expr="window.ready")
        b.click(100, 20)
        assert b.eval("document.title") == "hello"
        b.screenshot("/tmp/page.png")
        assert not b.console_errors, b.console_errors

The page's viewport is 1280x900 CSS px at deviceScaleFactor 1.  Every console
error, uncaught exception and error log entry of the page is collected in
`console_errors`, and the URL of every request in `requests`.  Set the
CHROMIUM environment variable to use another binary.
"""

import base64
import collections
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 900
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--remote-debugging-pipe",
    "--window-size=%d,%d" % (WIDTH, HEIGHT),
]

# key name -> (code, windowsVirtualKeyCode, text); letters and digits are
# derived in _key_params.
KEYS = {
    "Escape": ("Escape", 27, ""), "Enter": ("Enter", 13, "\r"),
    "Tab": ("Tab", 9, ""), "Backspace": ("Backspace", 8, ""),
    "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowUp": ("ArrowUp", 38, ""),
    "ArrowRight": ("ArrowRight", 39, ""), "ArrowDown": ("ArrowDown", 40, ""),
    "/": ("Slash", 191, "/"), " ": ("Space", 32, " "),
}


class BrowserError(Exception):
    """Chromium failed to start, died, timed out or answered with an error."""


def _high_fd(fd):
    """Move fd to a number >= 10 (close-on-exec) so dup2 onto 3/4 is safe."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def _exception_text(details):
    """The message of a CDP exceptionDetails object."""
    return details.get("exception", {}).get("description") or details["text"]


def _key_params(name):
    """The code, virtual key code and text of a key name or character."""
    if name in KEYS:
        return KEYS[name]
    if len(name) == 1 and name.isascii() and name.isalnum():
        code = ("Digit" if name.isdigit() else "Key") + name.upper()
        return code, ord(name.upper()), name
    raise ValueError("unknown key %r" % name)


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary=CHROMIUM, timeout=20, args=()):
        self.binary, self.timeout, self.args = binary, timeout, list(args)
        self.console_errors, self.requests = [], []
        self.startup_seconds = self._proc = self._session = None
        self._next_id, self._buf = 0, bytearray()
        self._events = collections.deque(maxlen=10000)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        """Launch Chromium, attach to a fresh page and enable the domains."""
        t0 = time.monotonic()
        self._profile = tempfile.mkdtemp(prefix="cdp-profile-")
        self._stderr = tempfile.TemporaryFile(prefix="cdp-stderr-")
        cmd_r, self._wfd = map(_high_fd, os.pipe())   # we write, it reads fd 3
        self._rfd, reply_w = map(_high_fd, os.pipe())  # it writes fd 4, we read

        def wire_fds():
            os.dup2(cmd_r, 3)
            os.dup2(reply_w, 4)

        argv = [self.binary, *FLAGS, *self.args,
                "--user-data-dir=" + self._profile, "about:blank"]
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._stderr,
                stderr=self._stderr, pass_fds=(3, 4), preexec_fn=wire_fds)
        except OSError as e:
            self._kill()
            raise BrowserError("cannot run %s: %s" % (self.binary, e)) from e
        finally:
            os.close(cmd_r)
            os.close(reply_w)
        try:
            self._attach()
        except BrowserError as e:
            tail = self.stderr_tail()
            self._kill()
            raise BrowserError("Chromium start-up failed: %s\n--- stderr tail:\n%s"
                               % (e, tail)) from None
        self.startup_seconds = time.monotonic() - t0

    def _attach(self):
        target = self.send("Target.createTarget", {"url": "about:blank"})
        reply = self.send("Target.attachToTarget",
                          {"targetId": target["targetId"], "flatten": True})
        self._session = reply["sessionId"]
        for domain in ("Runtime", "Page", "Log", "Network"):
            self.send(domain + ".enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT,
                   "deviceScaleFactor": 1, "mobile": False})

    def set_viewport(self, width, height):
        """Resize the page's viewport to width x height CSS px."""
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height,
                   "deviceScaleFactor": 1, "mobile": False})

    def close(self):
        """Ask Chromium to quit, kill it after 5 s, remove the profile."""
        if self._proc is None:
            return
        try:
            self.send("Browser.close", session=False, timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass  # _kill kills it
        self._kill()

    def _kill(self):
        """Kill our Chromium (if running), close the pipes, remove the profile."""
        if self._proc:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
        for fd in (self._wfd, self._rfd):
            os.close(fd)
        self._stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def stderr_tail(self, lines=20):
        """The last lines Chromium wrote to stdout and stderr (no D-Bus noise)."""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        kept = [line for line in text.splitlines() if ":ERROR:dbus/" not in line]
        return "\n".join(kept[-lines:])

    def _write(self, msg):
        data = json.dumps(msg).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._wfd, data):]
        except BrokenPipeError:
            raise BrowserError("%s: Chromium closed its command pipe (exit "
                               "status %s)" % (msg["method"], self._proc.poll()))

    def _read(self, deadline, what):
        """The next message, or None if none arrives before deadline."""
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._rfd], [], [], left)[0]:
                return None
            chunk = os.read(self._rfd, 1 << 20)
            if not chunk:
                raise BrowserError("%s: Chromium closed its reply pipe (exit "
                                   "status %s)" % (what, self._proc.poll()))
            self._buf += chunk
        end = self._buf.index(b"\0")
        msg = json.loads(self._buf[:end])
        del self._buf[:end + 1]
        return msg

    def send(self, method, params=None, timeout=None, session=True):
        """Send a command and return its result; events are buffered."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session:
            msg["sessionId"] = self._session
        self._write(msg)
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, method)
            if reply is None:
                raise BrowserError("%s: no reply within %g s" % (method, timeout))
            if "method" in reply:
                self._on_event(reply)
            elif reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError("%s failed: %s" % (method, reply["error"]))
                return reply.get("result", {})

    def wait_event(self, method, timeout=None):
        """Remove and return the params of the first event named method."""
        for ev in self._events:
            if ev["method"] == method:
                self._events.remove(ev)
                return ev.get("params", {})
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline, method)
            if msg is None:
                raise BrowserError("no %s event within %g s" % (method, timeout))
            if "method" in msg:
                self._on_event(msg)
                if msg["method"] == method:
                    return self._events.pop().get("params", {})

    def _on_event(self, ev):
        self._events.append(ev)
        method, p = ev["method"], ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            words = [str(a.get("value", a.get("description", a.get("type"))))
                     for a in p.get("args", [])]
            self.console_errors.append("console.%s: %s" % (p["type"], " ".join(words)))
        elif method == "Runtime.exceptionThrown":
            text = _exception_text(p["exceptionDetails"])
            self.console_errors.append("exception: " + text)
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            e = p["entry"]
            self.console_errors.append("log.%s: %s %s" % (
                e["source"], e["text"], e.get("url", "")))
        elif method == "Network.requestWillBeSent":
            self.requests.append(p["request"]["url"])

    def add_init_script(self, source):
        """Run source in every new document before its own scripts."""
        return self.send("Page.addScriptToEvaluateOnNewDocument",
                         {"source": source})["identifier"]

    def goto(self, url, wait_expr=None, timeout=20):
        """Navigate, wait for load (and wait_expr); return elapsed seconds."""
        t0 = time.monotonic()
        left = lambda: max(0.01, t0 + timeout - time.monotonic())  # noqa: E731
        for ev in [e for e in self._events if e["method"] == "Page.loadEventFired"]:
            self._events.remove(ev)  # stale, from an earlier load
        result = self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise BrowserError("Page.navigate %s: %s" % (url, result["errorText"]))
        if result.get("loaderId"):  # absent for same-document navigations
            self.wait_event("Page.loadEventFired", left())
        if wait_expr:
            self.wait_for(wait_expr, left())
        return time.monotonic() - t0

    def wait_for(self, expr, timeout=20):
        """Poll expr every 20 ms until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(expr, max(1, deadline - time.monotonic()))
                if value:
                    return value
            except BrowserError as e:
                last_error = e
            time.sleep(0.02)
        raise BrowserError("timed out after %g s waiting for %s%s" % (
            timeout, expr, " (last error: %s)" % last_error if last_error else ""))

    def eval(self, expr, timeout=None):
        """Evaluate expr in the page (awaiting promises); return its value."""
        r = self.send("Runtime.evaluate", {"expression": expr,
                      "returnByValue": True, "awaitPromise": True}, timeout)
        if "exceptionDetails" in r:
            text = _exception_text(r["exceptionDetails"])
            raise BrowserError("eval %s: %s" % (expr, text))
        return r["result"].get("value")

    def _mouse(self, kind, x, y, **extra):
        self.send("Input.dispatchMouseEvent",
                  {"type": kind, "x": x, "y": y, **extra})

    def move(self, x, y):
        """Move the mouse to (x, y) in CSS px."""
        self._mouse("mouseMoved", x, y)

    def click(self, x, y):
        """Left-click at (x, y) in CSS px."""
        self.move(x, y)
        self._mouse("mousePressed", x, y, button="left", buttons=1, clickCount=1)
        self._mouse("mouseReleased", x, y, button="left", buttons=0, clickCount=1)

    def drag(self, x1, y1, x2, y2, steps=8):
        """Press the left button at (x1, y1), move to (x2, y2), release."""
        self.move(x1, y1)
        self._mouse("mousePressed", x1, y1, button="left", buttons=1, clickCount=1)
        for k in range(1, steps + 1):
            self._mouse("mouseMoved", x1 + (x2 - x1) * k / steps, y1 + (y2 - y1) * k / steps,
                        button="left", buttons=1)
        self._mouse("mouseReleased", x2, y2, button="left", buttons=0, clickCount=1)

    def type_text(self, s):
        """Insert s into the focused element as if typed (no key events)."""
        self.send("Input.insertText", {"text": s})

    def key(self, name):
        """Press and release a key: "Escape", "Enter", "/", "a", "ArrowUp"..."""
        code, vk, text = _key_params(name)
        common = {"key": name, "code": code, "windowsVirtualKeyCode": vk}
        if text:  # a keyDown with text also produces keypress and input
            self.send("Input.dispatchKeyEvent", {"type": "keyDown",
                      "text": text, "unmodifiedText": text, **common})
        else:
            self.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", **common})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **common})

    def screenshot(self, path):
        """Save a PNG of the viewport to path."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
