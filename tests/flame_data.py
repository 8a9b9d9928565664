#!/usr/bin/env python3
"""flame_data.py PAGE.html [--meta|--kinds|--json KEY]

Reads the data memray-flame wrote into a page (the JSON inside
<script type="application/json" id="data">) and prints it back as
collapsed stacks: one line per frame whose own value ("rest": its value
outside the children written) is not zero, frames root first, sorted.
--meta prints the metadata as "key: value" lines, --kinds prints
"kind<TAB>frame" for every frame name, --json KEY prints one top-level
value as JSON. Exits 1 if the page has no valid data.
"""
import json
import re
import sys


def load(path):
    html = open(path, encoding="utf-8").read()
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    if not m:
        sys.exit(f"{path}: no data element")
    return json.loads(m.group(1))


def stacks(d):
    stride = 4 if d["counts"] else 3
    nodes, names = d["nodes"], d["names"]
    out, path = [], []
    if d["root"][0]:
        out.append(("", d["root"][0]))
    for k in range(0, len(nodes), stride):
        name, depth, rest = nodes[k], nodes[k + 1], nodes[k + 2]
        del path[depth - 1:]
        path.append(names[name])
        if rest:
            out.append((";".join(path), rest))
    return sorted(out)


def main():
    d = load(sys.argv[1])
    opt = sys.argv[2] if len(sys.argv) > 2 else ""
    if opt == "--meta":
        for k, v in d["meta"]:
            print(f"{k}: {v}")
    elif opt == "--kinds":
        for name, kind in zip(d["names"], d["kinds"]):
            print(f"{'native python cpython import'.split()[int(kind)]}\t{name}")
    elif opt == "--json":
        print(json.dumps(d[sys.argv[3]]))
    else:
        for s, v in stacks(d):
            print(f"{s} {v}")


main()
