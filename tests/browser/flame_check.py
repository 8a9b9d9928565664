#!/usr/bin/env python3
"""flame_check.py SCENARIO PAGE.html [ARGS] - memray-flame pages in Chromium.

Each scenario opens a page memray-flame wrote in headless Chromium (through
cdp.py), acts on it as a person would (clicks, keys, typing), and checks
what is drawn through the page's window.memrayFlame interface and its DOM.
It prints "ok N - what" or "not ok N - what" lines and exits 1 if any
check failed. Every scenario also checks that the page logged no console
error and made no request other than for itself.

Scenarios:
  widths PAGE FOLDED     frames drawn as wide as their share of FOLDED's total
  zoom PAGE              click to zoom, breadcrumbs, reset, the URL fragment
  search PAGE            "/" then a substring, a regex, Esc; nested matches
  views PAGE             flame and icicle, the hide-internals toggle
  hostile PAGE NAME...   the names show literally and no script runs
  timeline PAGE yes|no   the memory chart is there or not
  load PAGE SECONDS [PNG] the page is drawn within SECONDS (and a screenshot)
  tooltip PAGE NAME counts|nocounts   hovering NAME shows its numbers
  theme PAGE             light and dark themes follow the system setting
  deep PAGE              a stack deeper than a canvas can be tall
  diff PAGE NAME DELTA   a differential page: widths from the later run,
                         red frames grew, blue shrank, grey unchanged;
                         frame NAME grew by exactly DELTA, as its tooltip says
"""
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser  # noqa: E402

failed = 0
count = 0


def check(cond, what, detail=""):
    global failed, count
    count += 1
    if cond:
        print(f"ok {count} - {what}")
    else:
        failed += 1
        print(f"not ok {count} - {what}" + (f": {detail}" if detail else ""))
    return cond


def page_url(path):
    return "file://" + urllib.parse.quote(os.path.abspath(path))


INIT = """
window.__alerted = 0;
window.alert = window.confirm = window.prompt = function () { window.__alerted++; };
"""


def open_page(b, path, fragment=""):
    b.add_init_script(INIT)
    return b.goto(page_url(path) + fragment, wait_expr="window.memrayFlame && window.memrayFlame.ready")


def rects(b):
    return b.eval("memrayFlame.rects()")


def by_name(b, name):
    return [r for r in rects(b) if r["name"] == name and not r["ancestor"]]


def centre(r):
    return r["x"] + r["w"] / 2, r["y"] + r["h"] / 2


def full_width(b):
    return b.eval("document.getElementById('flame').getBoundingClientRect().width")


def clean(b, path):
    check(not b.console_errors, "no console errors", "; ".join(b.console_errors))
    own = page_url(path)
    others = [u for u in b.requests if u.split("#")[0] != own]
    check(not others, "no network requests", ", ".join(others))
    check(b.eval("window.__alerted") == 0, "no alert, confirm or prompt was called")


def folded_totals(path):
    """Each frame name's total in a collapsed-stacks file (names unique)."""
    totals, grand = {}, 0
    for line in open(path, encoding="utf-8"):
        if line.startswith("# ") or not line.strip():
            continue
        stack, value = line.rstrip("\n").rsplit(" ", 1)
        value = int(value)
        grand += value
        for frame in set(stack.split(";")):
            totals[frame] = totals.get(frame, 0) + value
    return totals, grand


# ---- scenarios --------------------------------------------------------------

def widths(b, path, folded):
    open_page(b, path)
    totals, grand = folded_totals(folded)
    width = full_width(b)
    root = [r for r in rects(b) if r["kind"] == "root"]
    check(len(root) == 1 and abs(root[0]["w"] - width) < 1, "the root spans the width")
    for name, total in sorted(totals.items()):
        got = by_name(b, name)
        want = width * total / grand
        check(len(got) == 1 and abs(got[0]["w"] - want) <= 1.0,
              f"{name} is drawn {want:.1f} px wide ({total} of {grand})",
              f"drawn {[round(r['w'], 1) for r in got]}")
    clean(b, path)


def zoom(b, path):
    open_page(b, path)
    width = full_width(b)
    alpha = by_name(b, "alpha")[0]
    before = alpha["w"]
    b.click(*centre(alpha))
    b.wait_for("memrayFlame.zoomPath().length === 2")
    check(b.eval("memrayFlame.zoomPath()") == ["main", "alpha"], "clicking alpha zooms into it")
    now = by_name(b, "alpha")[0]
    check(abs(now["w"] - width) < 1, "alpha now spans the full width", f"{now['w']} of {width}")
    beta = by_name(b, "beta")[0]
    check(abs(beta["w"] - width * 600 / 900) <= 1, "its children widen in proportion",
          f"beta {beta['w']}")
    check(all(r["ancestor"] for r in rects(b) if r["name"] == "main"), "main is drawn as an ancestor")
    crumbs = b.eval("[...document.querySelectorAll('#crumbs button')].map(e => e.textContent)")
    check(crumbs == ["all", "main", "alpha"], "breadcrumbs lead back to the root", str(crumbs))
    frag = b.eval("location.hash")
    check(frag.startswith("#z="), "the zoom is in the URL fragment", frag)
    # a breadcrumb zooms out one level
    b.eval("document.querySelectorAll('#crumbs button')[1].click()")
    check(b.eval("memrayFlame.zoomPath()") == ["main"], "a breadcrumb zooms out to main")
    # reset restores the first view
    btn = b.eval("(() => { const r = document.getElementById('reset').getBoundingClientRect();"
                 " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    b.click(*btn)
    b.wait_for("memrayFlame.zoomPath().length === 0")
    check(abs(by_name(b, "alpha")[0]["w"] - before) < 0.5, "reset gives alpha its first width back")
    check(b.eval("location.hash") in ("", "#"), "and clears the fragment")
    clean(b, path)
    # the link reopens the same view
    b.requests.clear()
    open_page(b, path, frag)
    check(b.eval("memrayFlame.zoomPath()") == ["main", "alpha"], "opening the link shows the zoom again")
    check(abs(by_name(b, "alpha")[0]["w"] - width) < 1, "... at full width")
    clean(b, path)


def search(b, path):
    open_page(b, path)
    b.key("/")
    check(b.eval("document.activeElement.id") == "search", "/ focuses the search box")
    b.type_text("beta")
    b.wait_for("document.getElementById('matched').textContent !== ''")
    matched = b.eval("document.getElementById('matched').textContent")
    check(matched == "matched 600 B of 1000 B (60.0%)",
          "a substring match counts nested matches once", matched)
    hits = sorted(r["name"] for r in rects(b) if r["match"])
    check(hits == ["beta", "betamax"], "the matching frames are highlighted", str(hits))
    check("s=beta" in b.eval("location.hash"), "the search is in the URL fragment")
    b.eval("document.getElementById('regex').click()")
    b.eval("document.getElementById('search').select()")
    b.type_text("^(gamma|delta)$")
    b.wait_for("document.getElementById('matched').textContent.includes('40.0%')")
    hits = sorted(r["name"] for r in rects(b) if r["match"])
    check(hits == ["delta", "gamma"], "a regex matches whole names", str(hits))
    b.eval("document.getElementById('search').select()")
    b.type_text("(")
    b.wait_for("document.getElementById('searcherr').textContent !== ''")
    check(b.eval("document.getElementById('matched').textContent") == "",
          "an invalid regex says so and matches nothing")
    b.key("Escape")
    b.wait_for("document.getElementById('search').value === ''")
    check(not any(r["match"] for r in rects(b)), "Esc clears the search")
    clean(b, path)


def views(b, path):
    open_page(b, path)
    inverted = b.eval("document.getElementById('view').textContent")
    root = [r for r in rects(b) if r["kind"] == "root"][0]
    leaf = by_name(b, "run (app.py:3)")[0]
    check(root["y"] > leaf["y"], "flame: the root is drawn below its callees", inverted)
    b.eval("document.getElementById('view').click()")
    root = [r for r in rects(b) if r["kind"] == "root"][0]
    leaf = by_name(b, "run (app.py:3)")[0]
    check(root["y"] < leaf["y"], "icicle: the root is drawn above its callees")
    kinds = {r["name"]: r["kind"] for r in rects(b)}
    check(kinds.get("_PyEval_EvalFrameDefault (ceval.c:1)") == "cpython", "CPython frames are classed")
    check(kinds.get("run (app.py:3)") == "python", "Python frames are classed")
    check(kinds.get("malloc (libc.so.6)") == "native", "native frames are classed")
    colours = b.eval("""(() => { const c = document.getElementById('flame'), x = c.getContext('2d');
        const pick = (n) => { const r = memrayFlame.rects().find(r => r.name === n);
          const b = c.getBoundingClientRect();
          const d = x.getImageData(Math.round((r.x - b.left + 2) * devicePixelRatio),
                                   Math.round((r.y - b.top + 2) * devicePixelRatio), 1, 1).data;
          return Array.from(d.slice(0, 3)).join(','); };
        return [pick('run (app.py:3)'), pick('malloc (libc.so.6)'), pick('_PyEval_EvalFrameDefault (ceval.c:1)')]; })()""")
    check(len(set(colours)) == 3, "Python, native and CPython frames have distinct colours", str(colours))
    b.eval("document.getElementById('hide').click()")
    names = [r["name"] for r in rects(b)]
    check(not any(n.startswith("_Py") or "importlib" in n for n in names),
          "the toggle hides CPython internals and the import system", str(names))
    check("run (app.py:3)" in names and "malloc (libc.so.6)" in names, "... and keeps the rest")
    check("h=1" in b.eval("location.hash"), "the toggle is in the URL fragment")
    run = by_name(b, "run (app.py:3)")[0]
    b.click(*centre(run))
    b.eval("document.getElementById('hide').click()")
    path_now = b.eval("memrayFlame.zoomPath()")
    check(path_now[-1] == "run (app.py:3)" and len(path_now) == 4,
          "showing the internals again keeps the zoom, with the frames between", str(path_now))
    clean(b, path)


def hostile(b, path, names):
    open_page(b, path)
    drawn = {r["name"] for r in rects(b)}
    for n in names:
        check(n in drawn, f"the frame {n!r} is drawn under its own name")
    # hover each: the tooltip shows the name as text
    for r in rects(b):
        if r["name"] in names:
            b.move(*centre(r))
            tip = b.eval("document.querySelector('#tooltip .name').textContent")
            check(tip == r["name"], f"the tooltip shows {r['name']!r} literally", tip)
            b.click(*centre(r))
            crumbs = b.eval("document.getElementById('crumbs').textContent")
            check(r["name"] in crumbs, "... and so do the breadcrumbs")
            b.key("Escape")
    check(b.eval("document.querySelectorAll('script').length") == 2, "no script element was added")
    check(b.eval("document.querySelectorAll('[onmouseover],[onerror],img,iframe').length") == 0,
          "no element with handlers was made")
    b.move(5, 5)
    clean(b, path)


def timeline(b, path, want):
    open_page(b, path)
    n = b.eval("document.querySelectorAll('#timeline polyline').length")
    if want == "yes":
        check(n == 2, "the memory-over-time chart has an RSS and a heap line", str(n))
        pts = b.eval("document.querySelector('#timeline .rss').getAttribute('points').split(' ').length")
        check(pts >= 2, "with the timeline's points", str(pts))
        stats = b.eval("document.getElementById('stats').textContent")
        check("command" in stats and "peak" in stats and "duration" in stats,
              "the stats panel shows the command, peak and duration", stats[:200])
    else:
        check(n == 0 and b.eval("document.getElementById('timeline')") is None,
              "no chart without a timeline")
    clean(b, path)


def load(b, path, seconds, png=None):
    elapsed = open_page(b, path)
    ready = b.eval("memrayFlame.readyMs")
    check(ready < seconds * 1000, f"drawn {ready:.0f} ms after navigation starts (limit {seconds} s)")
    check(elapsed < seconds + 1, f"load event and first draw within {elapsed:.2f} s")
    n = len(rects(b))
    check(n > 0, f"{n} frames drawn")
    if png:
        b.screenshot(png)
        check(os.path.getsize(png) > 1000, f"screenshot saved to {png}")
    clean(b, path)


def tooltip(b, path, name, counts):
    open_page(b, path)
    r = [r for r in rects(b) if name in r["name"] and not r["ancestor"]][0]
    b.move(*centre(r))
    b.wait_for("document.getElementById('tooltip').style.display === 'block'")
    text = b.eval("document.getElementById('tooltip').textContent")
    check(r["name"] in text, "the tooltip names the whole frame", text)
    check(re_search(r"\d+(\.\d)? (B|KiB|MiB|GiB) \([\d,]+ bytes\)", text),
          "it gives the bytes in human units and exactly", text)
    check(re_search(r"[\d.]+% of the total, [\d.]+% of its parent", text),
          "it gives the percent of the total and of the parent", text)
    has = re_search(r"[\d,]+ allocations", text)
    check(bool(has) == (counts == "counts"), f"allocation count {'shown' if counts == 'counts' else 'not shown'}", text)
    b.move(2, 2)
    check(b.eval("document.getElementById('tooltip').style.display") == "none",
          "it goes away when the mouse leaves")
    clean(b, path)


def diff(b, path, name, delta):
    open_page(b, path)
    check(b.eval("memrayFlame.diff") is True, "the page knows it is differential")
    legend = b.eval("document.getElementById('difflegend').textContent")
    check("red frames grew, blue shrank" in legend, "a legend says what the colours mean", legend)
    width = full_width(b)
    rs = [r for r in rects(b) if not r["ancestor"]]
    root = [r for r in rs if r["kind"] == "root"][0]
    bad = []
    for r in rs:
        if r["kind"] == "root":
            continue
        want = width * r["after"] / root["after"]
        hue = "hsl(0," if r["after"] > r["before"] else "hsl(220," if r["after"] < r["before"] else "hsl(0,0%"
        if abs(r["w"] - want) > 1.0 or not r["fill"].startswith(hue):
            bad.append(f"{r['name']}: {r['w']:.1f} px for {want:.1f}, {r['fill']} "
                       f"({r['before']} -> {r['after']})")
    check(not bad, f"all {len(rs) - 1} frames as wide as the later run and coloured by their change",
          "; ".join(bad[:5]))
    grew = [r for r in rs if r["name"] == name]
    check(len(grew) == 1 and grew[0]["after"] - grew[0]["before"] == delta,
          f"{name} grew by {delta}", str([(r["before"], r["after"]) for r in grew]))
    if grew:
        b.move(*centre(grew[0]))
        b.wait_for("document.getElementById('tooltip').style.display === 'block'")
        text = b.eval("document.getElementById('tooltip').textContent")
        check(f"(+{delta:,} bytes)" in text and "before: " in text and "after: " in text,
              "its tooltip gives both values and the exact change", text)
    clean(b, path)


def re_search(pattern, text):
    import re
    return re.search(pattern, text)


def theme(b, path):
    def background():
        return b.eval("getComputedStyle(document.body).backgroundColor")
    open_page(b, path)
    light = background()
    b.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    open_page(b, path)
    dark = background()
    lum = lambda c: sum(int(x) for x in re_search(r"(\d+), (\d+), (\d+)", c).groups())
    check(lum(light) > 600 and lum(dark) < 150, "white in light mode, dark in dark mode", f"{light} / {dark}")
    label = [r for r in rects(b) if r["kind"] == "root"][0]
    check(label["w"] > 0, "the graph is drawn in dark mode too")
    clean(b, path)


def deep(b, path):
    open_page(b, path)
    h = b.eval("document.getElementById('flame').height")
    check(0 < h <= 32767, f"the canvas stays within the size a browser draws ({h} px)")
    note = b.eval("document.getElementById('deep').textContent")
    check("not drawn here" in note, "the page says the deepest frames are not drawn", note)
    px = b.eval("""(() => { const c = document.getElementById('flame');
        const d = c.getContext('2d').getImageData(5, c.height - 5, 1, 1).data; return d[3]; })()""")
    check(px == 255, "the root row is painted")
    deepest = min(rects(b), key=lambda r: r["y"])
    b.click(*centre(deepest))
    b.wait_for("memrayFlame.zoomPath().length > 100")
    names = {r["name"] for r in rects(b)}
    check("f3000" in names, "zooming into the deepest drawn frame shows deeper ones", str(len(names)))
    crumbs = b.eval("document.querySelectorAll('#crumbs button').length")
    check(crumbs > 1000, f"the breadcrumbs still give the whole path ({crumbs})")
    clean(b, path)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    scenario, path, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    with Browser() as b:
        if scenario == "widths":
            widths(b, path, rest[0])
        elif scenario == "zoom":
            zoom(b, path)
        elif scenario == "search":
            search(b, path)
        elif scenario == "views":
            views(b, path)
        elif scenario == "hostile":
            hostile(b, path, rest)
        elif scenario == "timeline":
            timeline(b, path, rest[0])
        elif scenario == "load":
            load(b, path, float(rest[0]), rest[1] if len(rest) > 1 else None)
        elif scenario == "tooltip":
            tooltip(b, path, rest[0], rest[1])
        elif scenario == "theme":
            theme(b, path)
        elif scenario == "deep":
            deep(b, path)
        elif scenario == "diff":
            diff(b, path, rest[0], int(rest[1]))
        else:
            sys.exit(f"flame_check.py: unknown scenario {scenario!r}")
    print(f"1..{count}")
    sys.exit(1 if failed else 0)


main()
