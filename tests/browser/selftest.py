"""Self-test of the cdp.py browser harness.

    python3 tests/browser/selftest.py

Writes a few small HTML pages into a temporary directory, opens them in
headless Chromium through cdp.Browser and checks each feature of the
harness.  Prints one `ok N - what` or `not ok N - what` line per check,
comment lines starting with `#` (start-up time among them), and exits 1 if
any check failed.
"""

import os
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser, BrowserError  # noqa: E402

MAIN = """<!doctype html>
<title>main</title>
<style>
  body { margin: 0; }
  #b { position: absolute; left: 100px; top: 50px; width: 200px; height: 40px; }
  #t { position: absolute; left: 100px; top: 150px; width: 200px; }
</style>
<button id="b">press me</button>
<input id="t">
<script>
  window.sawInit = window.initRan === true;
  window.keys = [];
  document.addEventListener("keydown", e => keys.push(e.key + ":" + e.code));
  document.addEventListener("mousemove", e => window.moved = [e.clientX, e.clientY]);
  b.addEventListener("click", () => { window.clicked = true; b.textContent = "pressed"; });
  setTimeout(() => window.ready = true, 50);
</script>
"""

ERRORS = """<!doctype html>
<script>console.error('x'); console.log('not an error');</script>
"""

THROWS = """<!doctype html>
<script>throw new Error('boom');</script>
"""

FETCH = """<!doctype html>
<script>
  fetch('http://127.0.0.1:9/x').catch(e => e).then(() => window.fetched = true);
</script>
"""

STUCK = """#!/bin/sh
exec sleep 60
"""


class Report:
    """Numbered ok / not ok lines and the overall verdict."""

    def __init__(self):
        self.n = self.failed = 0

    def check(self, what, cond, detail=""):
        self.n += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, what))
        if not cond:
            self.failed += 1
            for line in str(detail).splitlines():
                print("#   " + line)
        sys.stdout.flush()

    def raises(self, what, fn, needle):
        """Check that fn() raises BrowserError whose text contains needle."""
        try:
            fn()
        except BrowserError as e:
            self.check(what, needle in str(e), "message: %s" % e)
        else:
            self.check(what, False, "no exception")


def write_pages(d):
    """Write the test pages into d and return {name: file:// URL}."""
    urls = {}
    for name, html in (("main", MAIN), ("errors", ERRORS),
                       ("throws", THROWS), ("fetch", FETCH)):
        path = os.path.join(d, name + ".html")
        with open(path, "w") as f:
            f.write(html)
        urls[name] = "file://" + path
    return urls


def png_size(path):
    """Width and height of a PNG file, or None if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def live_processes_using(needle):
    """Pids whose command line mentions needle."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if needle.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_page(r, b, urls, d):
    """Navigation, evaluation, viewport, input and screenshots."""
    b.add_init_script("window.initRan = true;")
    elapsed = b.goto(urls["main"], wait_expr="window.ready")
    print("# goto main.html took %.3f s" % elapsed)
    r.check("goto returns the elapsed seconds", 0 < elapsed < 20, elapsed)
    r.check("init script ran before the page's scripts", b.eval("sawInit") is True)
    size = b.eval("[innerWidth, innerHeight, devicePixelRatio]")
    r.check("viewport is 1280x900 at scale 1", size == [1280, 900, 1], size)
    rect = b.eval("(r => [r.x, r.y, r.width, r.height])"
                  "(b.getBoundingClientRect())")
    r.check("layout is as styled", rect == [100, 50, 200, 40], rect)
    value = b.eval("({n: 1.5, s: 'é', l: [1, null], t: true})")
    r.check("eval returns JSON values", value == {"n": 1.5, "s": "é", "l": [1, None], "t": True}, value)
    r.check("eval returns None for undefined", b.eval("undefined") is None)
    r.check("eval awaits promises", b.eval("new Promise(ok => setTimeout(() => ok(42), 30))") == 42)
    r.raises("eval raises with the page's exception text",
             lambda: b.eval("null.foo"), "TypeError")

    b.move(150, 400)
    r.check("move dispatches mousemove", b.eval("window.moved") == [150, 400], b.eval("window.moved"))
    b.click(200, 70)
    r.check("click hits the button", b.eval("window.clicked === true && b.textContent") == "pressed")
    b.click(200, 160)
    b.type_text("héllo wörld")
    r.check("type_text fills the focused input", b.eval("t.value") == "héllo wörld", b.eval("t.value"))
    b.eval("t.blur()")
    for k in ("/", "Escape", "Enter", "a"):
        b.key(k)
    keys = b.eval("keys")
    want = ["/:Slash", "Escape:Escape", "Enter:Enter", "a:KeyA"]
    r.check("key sends key and code for / Escape Enter a", keys == want, keys)

    shot = os.path.join(d, "shot.png")
    b.screenshot(shot)
    r.check("screenshot writes a 1280x900 PNG", png_size(shot) == (1280, 900), png_size(shot))
    r.check("no console errors on a clean page", b.console_errors == [], b.console_errors)


def test_records(r, b, urls):
    """Console errors, exceptions and requests are recorded."""
    b.goto(urls["errors"])
    r.check("console.error is recorded (console.log is not)",
            b.console_errors == ["console.error: x"], b.console_errors)
    del b.console_errors[:]
    b.goto(urls["throws"])
    r.check("an uncaught exception is recorded",
            any("Error: boom" in e for e in b.console_errors), b.console_errors)
    b.goto(urls["fetch"], wait_expr="window.fetched")
    r.check("requests are recorded", "http://127.0.0.1:9/x" in b.requests, b.requests)
    r.check("page loads are recorded as requests", urls["main"] in b.requests, b.requests)


def test_failures(r, b, urls):
    """Errors are reported clearly and quickly."""
    r.raises("goto of a missing file raises",
             lambda: b.goto(urls["main"] + ".missing"), "ERR_FILE_NOT_FOUND")
    t0 = time.monotonic()
    r.raises("wait_expr timeout raises naming the expression",
             lambda: b.goto(urls["main"], wait_expr="window.never", timeout=0.5),
             "window.never")
    r.check("... after about the timeout", time.monotonic() - t0 < 2)
    r.raises("a CDP error names the method",
             lambda: b.send("No.suchMethod"), "No.suchMethod")
    r.check("the browser still works after errors", b.eval("1 + 1") == 2)


def test_startup_failures(r, d):
    """Start-up errors carry the reason and the stderr tail."""
    r.raises("a missing binary raises", lambda: Browser("/nonexistent").start(),
             "cannot run")
    t0 = time.monotonic()
    r.raises("a binary that exits at once raises naming the method",
             lambda: Browser("/bin/false").start(), "Target.createTarget")
    r.check("... quickly", time.monotonic() - t0 < 5)
    stuck = os.path.join(d, "stuck.sh")
    with open(stuck, "w") as f:
        f.write(STUCK)
    os.chmod(stuck, 0o755)
    t0 = time.monotonic()
    r.raises("a browser that never answers times out",
             lambda: Browser(stuck, timeout=1).start(), "no reply within 1 s")
    r.check("... and is killed", time.monotonic() - t0 < 4 and not live_processes_using(stuck))


def main():
    r = Report()
    with tempfile.TemporaryDirectory(prefix="cdp-selftest-") as d:
        urls = write_pages(d)
        t0 = time.monotonic()
        with Browser() as b:
            print("# Browser start-up took %.3f s" % (time.monotonic() - t0))
            r.check("Browser starts and records its start-up time",
                    0 < b.startup_seconds < 20, b.startup_seconds)
            profile, proc = b._profile, b._proc
            test_page(r, b, urls, d)
            test_records(r, b, urls)
            test_failures(r, b, urls)
            t1 = time.monotonic()
        print("# Browser close took %.3f s" % (time.monotonic() - t1))
        r.check("close ends Chromium", proc.returncode is not None, proc.returncode)
        r.check("close removes the profile", not os.path.exists(profile))
        time.sleep(0.2)
        left = live_processes_using(profile)
        r.check("no Chromium process is left behind", not left, left)
        test_startup_failures(r, d)
    print("1..%d" % r.n)
    if r.failed:
        print("# %d of %d checks failed" % (r.failed, r.n))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
