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
  first PAGE FOLDED PNG  at 1400x900 the heaviest Python frame of FOLDED is
                         on the first screen; import and CPython frames are
                         hidden until one click shows them (and a screenshot)
  threads PAGE BYTHREAD  the thread selector: merged by default, each thread's
                         total as memray-fold --by-thread's BYTHREAD gives it
  inverted PAGE FOLDED   a page made with --inverted: the roots are FOLDED's
                         allocating frames; the checkbox turns it back
  source PAGE NAME TEXT  hovering NAME shows its source line TEXT
  note PAGE NAME TEXT    NAME is drawn as a no-frame label, its tooltip saying TEXT
  chart PAGE FOLDED      hovering the memory chart gives FOLDED's timeline values
  table PAGE FOLDED      the table tab: own and total of each function from
                         FOLDED, sorted by any column
  temporal PAGE DUMP|no  a time range dragged on the chart: the graph shows
                         what was live at the range's highest memory sample,
                         as DUMP (memray-stat --dump) replayed here gives it;
                         with "no", the page says what it needs instead
  srcdoc HOST NAME       HOST holds a page inside <iframe srcdoc=...>, as the
                         notebook magic shows it: the page is drawn there with
                         a frame whose function is NAME, a click zooms (the
                         fragment follows), reset zooms out
"""
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser, BrowserError  # noqa: E402

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
    root = [r for r in rects(b) if r["kind"] == "root"][0]
    leaf = by_name(b, "run (app.py:3)")[0]
    check(root["y"] < leaf["y"], "it opens as an icicle: the root on top, its callees below")
    names = [r["name"] for r in rects(b)]
    check(b.eval("document.getElementById('hide').checked") is True and
          not any(n.startswith("_Py") or "importlib" in n or n.startswith("Py_") for n in names),
          "CPython internals and the import system are hidden at first", str(names))
    check("run (app.py:3)" in names and "malloc (libc.so.6)" in names and "load (mod.py:2)" in names,
          "... and everything else is drawn, their bytes in their callers", str(names))
    b.eval("document.getElementById('view').click()")
    root = [r for r in rects(b) if r["kind"] == "root"][0]
    leaf = by_name(b, "run (app.py:3)")[0]
    check(root["y"] > leaf["y"], "the view button draws a flame: the root below its callees")
    check("v=flame" in b.eval("location.hash"), "the view is in the URL fragment")
    b.eval("document.getElementById('view').click()")
    run = by_name(b, "run (app.py:3)")[0]
    b.click(*centre(run))
    check(b.eval("memrayFlame.zoomPath()") == ["_start (app)", "run (app.py:3)"], "zoomed into run")
    hide = b.eval("(() => { const r = document.getElementById('hide').getBoundingClientRect();"
                  " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    b.click(*hide)
    names = [r["name"] for r in rects(b)]
    check(b.eval("document.getElementById('hide').checked") is False, "one click on the toggle ...")
    b.eval("memrayFlame.zoomPath()")
    path_now = b.eval("memrayFlame.zoomPath()")
    check(path_now[-1] == "run (app.py:3)" and len(path_now) == 4,
          "... shows the internals, keeping the zoom, with the frames between", str(path_now))
    check("h=0" in b.eval("location.hash"), "the toggle is in the URL fragment")
    b.key("Escape")
    kinds = {r["name"]: r["kind"] for r in rects(b)}
    check(kinds.get("_PyEval_EvalFrameDefault (ceval.c:1)") == "cpython", "CPython frames are classed")
    check(kinds.get("_find_and_load (<frozen importlib._bootstrap>:1176)") == "import",
          "import system frames are classed", str(kinds))
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
    clean(b, path)


def stacks_of(path):
    """The stack lines of a collapsed file: [([frame, ...], value)]."""
    out = []
    for line in open(path, encoding="utf-8"):
        if line.startswith("# ") or not line.strip():
            continue
        stack, value = line.rstrip("\n").rsplit(" ", 1)
        out.append((stack.split(";"), int(value)))
    return out


def first(b, path, folded, png):
    """The first screen of a Python recording's page, at 1400x900."""
    b.set_viewport(1400, 900)
    open_page(b, path)
    own = {}
    for frames, value in stacks_of(folded):
        py = [f for f in frames if re_search(r"\.py:\d+\)$", f) and "importlib" not in f]
        if py:
            own[py[-1]] = own.get(py[-1], 0) + value
    heaviest = max(own, key=own.get)
    got = by_name(b, heaviest)
    check(len(got) >= 1, f"the heaviest Python frame, {heaviest}, is drawn")
    vw, vh = b.eval("[innerWidth, innerHeight]")
    for r in got[:1]:
        check(r["y"] >= 0 and r["y"] + r["h"] <= vh and r["x"] >= 0 and r["x"] + r["w"] <= vw and r["w"] > 50,
              f"... on the first screen of {vw}x{vh}, {r['w']:.0f} px wide",
              f"at ({r['x']:.0f}, {r['y']:.0f}), {r['w']:.0f} x {r['h']} px")
    kinds = {r["kind"] for r in rects(b)}
    check("import" not in kinds and "cpython" not in kinds, "no import system or CPython frame at first", str(kinds))
    if png:
        b.screenshot(png)
        check(os.path.getsize(png) > 1000, f"screenshot saved to {png}")
    hide = b.eval("(() => { const r = document.getElementById('hide').getBoundingClientRect();"
                  " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    b.click(*hide)
    kinds = {r["kind"] for r in rects(b)}
    check("import" in kinds, "one click on the toggle shows the import system's frames", str(kinds))
    total = sum(v for _, v in stacks_of(folded))
    check(b.eval("memrayFlame.total()") == total, "the total is the same either way", str(total))
    clean(b, path)


def threads(b, path, by_thread):
    open_page(b, path)
    want = {}
    for frames, value in stacks_of(by_thread):
        want[frames[0]] = want.get(frames[0], 0) + value
    check(b.eval("document.getElementById('threadbox').hidden") is False, "the page has a thread selector")
    opts = b.eval("[...document.querySelectorAll('#thread option')].map(o => [o.value, o.textContent])")
    check(opts[0][0] == "0" and opts[0][1].startswith("all threads, merged"), "merged threads first, the default",
          str(opts))
    check(b.eval("document.getElementById('thread').value") == "0", "... and chosen")
    check(b.eval("memrayFlame.total()") == sum(want.values()), "the merged total is all threads'")
    check(len(opts) == len(want) + 1, f"one choice per thread ({len(want)})", str(opts))
    for value, label in opts[1:]:
        name = label.rsplit(" (", 1)[0]
        b.eval(f"(() => {{ const s = document.getElementById('thread'); s.value = {value!r};"
               " s.dispatchEvent(new Event('change')); })()")
        got = b.eval("memrayFlame.total()")
        check(got == want.get(name), f"choosing {name} shows its {want.get(name)} bytes", str(got))
        check(f"t={value}" in b.eval("location.hash"), "... and puts it in the URL fragment")
        root = [r for r in rects(b) if r["kind"] == "root"]
        check(root and abs(root[0]["w"] - full_width(b)) < 1, "... across the full width")
    clean(b, path)


def inverted(b, path, folded):
    open_page(b, path)
    leaves = {}
    for frames, value in stacks_of(folded):
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + value
    check(b.eval("document.getElementById('invert').checked") is True, "--inverted checks the inverted box")
    tops = {r["name"]: r["total"] for r in rects(b) if r["depth"] == 1}
    check(tops == leaves, "the roots are the allocating frames, with their bytes", f"{tops} for {leaves}")
    width = full_width(b)
    for name, value in leaves.items():
        r = [r for r in rects(b) if r["name"] == name and r["depth"] == 1]
        check(len(r) == 1 and abs(r[0]["w"] - width * value / sum(leaves.values())) <= 1,
              f"{name} is a root as wide as its bytes")
    callers = {r["name"] for r in rects(b) if r["depth"] == 2}
    want = {frames[-2] for frames, _ in stacks_of(folded) if len(frames) > 1}
    check(callers == want, "their callers are drawn above them", f"{callers} for {want}")
    b.eval("document.getElementById('invert').click()")
    tops = {r["name"] for r in rects(b) if r["depth"] == 1}
    check(tops == {frames[0] for frames, _ in stacks_of(folded)}, "unchecked, the roots are the callers again",
          str(tops))
    check("i=0" in b.eval("location.hash"), "the choice is in the URL fragment")
    clean(b, path)


def source(b, path, name, text):
    open_page(b, path)
    r = [r for r in rects(b) if name in r["name"] and not r["ancestor"]]
    check(len(r) > 0, f"{name} is drawn")
    b.move(*centre(r[0]))
    b.wait_for("document.getElementById('tooltip').style.display === 'block'")
    src = b.eval("(document.querySelector('#tooltip .src') || {}).textContent")
    check(src == text, "the tooltip shows the source line", str(src))
    tip = b.eval("document.getElementById('tooltip').textContent")
    check(re_search(r"\d+ allocations?", tip), "and the allocation count", tip)
    clean(b, path)


def note(b, path, name, text):
    open_page(b, path)
    r = [r for r in rects(b) if r["name"] == name and not r["ancestor"]]
    check(len(r) > 0, f"{name} is drawn")
    check(r[0]["kind"] == "label", f"{name} is drawn as a label, not as a frame", r[0]["kind"])
    b.move(*centre(r[0]))
    b.wait_for("document.getElementById('tooltip').style.display === 'block'")
    got = b.eval("(document.querySelector('#tooltip .note') || {}).textContent")
    check(got is not None and text in got, f"its tooltip says what {name} stands for", str(got))
    clean(b, path)


def timeline_of(folded):
    for line in open(folded, encoding="utf-8"):
        if line.startswith('# timeline="'):
            return [tuple(map(int, p.split(","))) for p in line.strip()[12:-1].split(" ")[1:]]
    return []


def chart(b, path, folded):
    open_page(b, path)
    pts = timeline_of(folded)
    box = b.eval("(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
                 " return [r.left, r.top, r.width, r.height]; })()")
    b.eval("document.getElementById('timeline').scrollIntoView()")
    box = b.eval("(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
                 " return [r.left, r.top, r.width, r.height]; })()")
    seen = set()
    for frac in (0.3, 0.5, 0.8):
        # the x of a point in the chart's own coordinates (viewBox 640 wide,
        # the plot from 64 to 632)
        b.move(box[0] + box[2] * (64 + 568 * frac) / 640, box[1] + box[3] / 2)
        h = b.eval("memrayFlame.hovered()")
        text = b.eval("document.getElementById('chartinfo').textContent")
        ok = h is not None and (h["ms"], h["rss"], h["heap"]) in pts
        check(ok, f"hovering at {frac:.0%} of the chart picks a point of the timeline", str(h))
        if h:
            seen.add(h["ms"])
            check(f"({h['heap']:,} bytes)" in text, "and shows its heap value", text)
    check(len(seen) == 3, "three places, three points", str(seen))
    clean(b, path)


def replay_dump(dump):
    """The bytes live at each memory record of a memray-stat --dump, replayed
    here on their own: [(ms, bytes, {thread: bytes})]."""
    blocks, maps, out = {}, [], []  # addr -> (size, thread); (start, end, thread)

    def cut(a, z):
        nonlocal maps
        kept = []
        for s, e, t in maps:
            if e <= a or s >= z:
                kept.append((s, e, t))
                continue
            if s < a:
                kept.append((s, a, t))
            if e > z:
                kept.append((z, e, t))
        maps = kept

    for line in open(dump, encoding="utf-8", errors="replace"):
        f = line.split()
        if len(f) < 3:
            continue
        kv = dict(x.split("=", 1) for x in f[3:] if "=" in x)
        num = lambda k: int(kv[k], 0)
        if f[2] == "memory":
            by = {}
            for size, t in blocks.values():
                by[t] = by.get(t, 0) + size
            for s, e, t in maps:
                by[t] = by.get(t, 0) + e - s
            out.append((num("time_us") // 1000, sum(by.values()), by))
        elif f[2] in ("alloc", "free", "move"):
            ranged = "mmap" in f[3] or "mremap" in f[3] or "munmap" in f[3]
            if f[2] == "move":
                if ranged:
                    cut(num("old"), num("old") + num("old_size"))
                else:
                    blocks.pop(num("old"), None)
            if f[2] == "free":
                if ranged:
                    cut(num("addr"), num("addr") + num("size"))
                else:
                    blocks.pop(num("addr"), None)
                continue
            if ranged:
                cut(num("addr"), num("addr") + num("size"))
                maps.append((num("addr"), num("addr") + num("size"), num("thread")))
            else:
                blocks[num("addr")] = (num("size"), num("thread"))
    return out


def temporal(b, path, dump):
    open_page(b, path)
    peak = b.eval("memrayFlame.total()")
    b.eval("document.getElementById('timeline').scrollIntoView()")
    box = b.eval("(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
                 " return [r.left, r.top, r.width, r.height]; })()")
    x = lambda frac: box[0] + box[2] * (64 + 568 * frac) / 640
    y = box[1] + box[3] / 3
    if dump == "no":
        b.drag(x(0.2), y, x(0.6), y)
        note = b.eval("document.getElementById('window').textContent")
        check("memray-fold --temporal" in note, "without the data, dragging says what it needs", note)
        check(b.eval("memrayFlame.total()") == peak and b.eval("memrayFlame.state().win") is None,
              "and changes nothing")
        clean(b, path)
        return
    samples = replay_dump(dump)
    check(len(samples) > 10, f"{len(samples)} memory samples in the recording")
    for a, z in ((0.1, 0.45), (0.55, 0.95)):
        b.drag(x(a), y, x(z), y)
        b.wait_for("memrayFlame.state().win !== null")
        win = b.eval("memrayFlame.state().win")
        inside = [p for p in samples if win[0] <= p[0] <= win[1]]
        best = max(inside, key=lambda p: p[1])
        at = b.eval("memrayFlame.liveAt()")
        check(at is not None and at["ms"] == best[0],
              f"a range from {win[0]} to {win[1]} ms is drawn at its highest sample, {best[0]} ms", str(at))
        total = b.eval("memrayFlame.total()")
        check(total == best[1], f"the graph's total is what was live then: {best[1]} bytes", str(total))
        check("w=%d-%d" % tuple(win) in b.eval("location.hash"), "the range is in the URL fragment")
        root = [r for r in rects(b) if r["kind"] == "root"]
        check(root and root[0]["total"] == best[1], "the graph is redrawn with it")
        b.wait_for("document.getElementById('window').textContent.includes('Live at')")
    # and one thread's own then (the stream's thread numbers are the page's)
    pick = ("(() => {{ const s = document.getElementById('thread'); s.value = '{t}';"
            " s.dispatchEvent(new Event('change')); return s.value; }})()")
    seen = ("JSON.stringify({state: memrayFlame.state(), total: memrayFlame.total(),"
            " options: [...document.getElementById('thread').options].map((o) => o.value),"
            " value: document.getElementById('thread').value, hash: location.hash,"
            " readyMs: memrayFlame.readyMs})")
    for t, v in sorted(best[2].items()):
        b.eval(pick.format(t=t))
        try:
            b.wait_for(f"memrayFlame.total() === {v}", timeout=5)
        except BrowserError:
            pass
        got = b.eval("memrayFlame.total()")
        check(got == v, f"thread {t}'s own at {best[0]} ms: {v} bytes", f"{got} ({b.eval(seen)})")
    b.eval("(() => { const s = document.getElementById('thread'); s.value = '0';"
           " s.dispatchEvent(new Event('change')); })()")
    b.eval("document.getElementById('clearwin').click()")
    check(b.eval("memrayFlame.total()") == peak and b.eval("memrayFlame.state().win") is None,
          "'Whole recording' brings back the peak")
    clean(b, path)


def table(b, path, folded):
    open_page(b, path)
    own, total = {}, {}
    for frames, value in stacks_of(folded):
        own[frames[-1]] = own.get(frames[-1], 0) + value
        for f in set(frames):
            total[f] = total.get(f, 0) + value
    b.eval("document.getElementById('tab-table').click()")
    check(b.eval("document.getElementById('graph').hidden") is True, "the table tab hides the graph")

    def read():
        return b.eval("[...document.querySelectorAll('#table tbody tr')].map(tr =>"
                      " [...tr.cells].map(td => td.dataset.value))")

    def column(key):
        return b.eval(f"[...document.querySelectorAll('#table th button')].findIndex(b => b.dataset.key === '{key}')")
    rows = read()
    io, it = column("own"), column("total")
    check({r[0]: float(r[io]) for r in rows} == {k: float(own.get(k, 0)) for k in total},
          "each function's own value", str(rows))
    check({r[0]: float(r[it]) for r in rows} == {k: float(v) for k, v in total.items()},
          "each function's total, a recursive one counted once", str(rows))
    check([float(r[io]) for r in rows] == sorted((float(r[io]) for r in rows), reverse=True),
          "sorted by own at first, largest first")
    b.eval("document.querySelectorAll('#table th button')[%d].click()" % it)
    rows = read()
    check([float(r[it]) for r in rows] == sorted((float(r[it]) for r in rows), reverse=True),
          "a click on Total sorts by it", str([r[0] for r in rows]))
    b.eval("document.querySelectorAll('#table th button')[%d].click()" % it)
    rows = read()
    check([float(r[it]) for r in rows] == sorted(float(r[it]) for r in rows), "a second click reverses it")
    b.eval("document.querySelectorAll('#table th button')[0].click()")
    rows = read()
    check([r[0] for r in rows] == sorted(r[0] for r in rows), "names sort alphabetically")
    check("tab=table" in b.eval("location.hash"), "the tab is in the URL fragment")
    b.eval("document.getElementById('tab-graph').click()")
    check(len(rects(b)) > 0 and b.eval("document.getElementById('tablebox').hidden") is True,
          "the graph tab brings the graph back")
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
    has = re_search(r"[\d,]+ allocations?\n", text)
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
    open_page(b, path, "#v=flame")  # the deepest frames on top, on screen
    h = b.eval("document.getElementById('flame').height")
    check(0 < h <= 32767, f"the canvas stays within the size a browser draws ({h} px)")
    note = b.eval("document.getElementById('deep').textContent")
    check("not drawn here" in note, "the page says the deepest frames are not drawn", note)
    px = b.eval("""(() => { const c = document.getElementById('flame');
        const d = c.getContext('2d').getImageData(5, c.height - 5, 1, 1).data; return d[3]; })()""")
    check(px == 255, "the root row is painted")
    deepest = max(rects(b), key=lambda r: r["depth"])
    b.click(*centre(deepest))
    b.wait_for("memrayFlame.zoomPath().length > 100")
    names = {r["name"] for r in rects(b)}
    check("f3000" in names, "zooming into the deepest drawn frame shows deeper ones", str(len(names)))
    crumbs = b.eval("document.querySelectorAll('#crumbs button').length")
    check(crumbs > 1000, f"the breadcrumbs still give the whole path ({crumbs})")
    clean(b, path)


def srcdoc(b, host, name):
    b.add_init_script(INIT)
    w = "document.querySelector('iframe').contentWindow"
    b.goto(page_url(host), wait_expr=f"{w}.memrayFlame && {w}.memrayFlame.ready")
    check(b.eval(f"{w}.location.href") == "about:srcdoc", "the page is the iframe's srcdoc")
    drawn = b.eval(f"{w}.memrayFlame.rects().map(r => r.name)")
    check(any(n.startswith(name + " (") for n in drawn), f"a frame of {name} is drawn",
          ", ".join(drawn[-5:]))
    # the iframe's first drawn frame, in the host's coordinates
    at = b.eval(f"""(() => {{ const f = document.querySelector('iframe').getBoundingClientRect();
        const r = {w}.memrayFlame.rects().filter(r => r.depth > 0 && !r.ancestor && r.w > 40)
            .sort((a, b) => a.y - b.y)[0];
        return [f.left + r.x + r.w / 2, f.top + r.y + r.h / 2]; }})()""")
    b.click(*at)
    b.wait_for(f"{w}.memrayFlame.zoomPath().length > 0")
    frag = b.eval(f"{w}.location.hash")
    check(frag.startswith("#z="), "the zoom is in the iframe's URL fragment", frag)
    b.eval(f"{w}.document.getElementById('reset').click()")
    b.wait_for(f"{w}.memrayFlame.zoomPath().length === 0")
    check(b.eval(f"{w}.location.hash") in ("", "#"), "reset clears the fragment")
    clean(b, host)


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
        elif scenario == "first":
            first(b, path, rest[0], rest[1] if len(rest) > 1 else None)
        elif scenario == "threads":
            threads(b, path, rest[0])
        elif scenario == "inverted":
            inverted(b, path, rest[0])
        elif scenario == "source":
            source(b, path, rest[0], rest[1])
        elif scenario == "note":
            note(b, path, rest[0], rest[1])
        elif scenario == "chart":
            chart(b, path, rest[0])
        elif scenario == "table":
            table(b, path, rest[0])
        elif scenario == "temporal":
            temporal(b, path, rest[0])
        elif scenario == "srcdoc":
            srcdoc(b, path, rest[0])
        else:
            sys.exit(f"flame_check.py: unknown scenario {scenario!r}")
    print(f"1..{count}")
    sys.exit(1 if failed else 0)


main()
