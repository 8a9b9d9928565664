"""python3 -m memray_c: memray-c's tools for people who have only pip.

    python3 -m memray_c run [OPTIONS] script.py [ARGS...]
    python3 -m memray_c run [OPTIONS] -m module [ARGS...]
    python3 -m memray_c run [OPTIONS] -c code [ARGS...]
        records this interpreter running the script, as `memray-record
        [OPTIONS] -- python3 script.py ARGS` does, into memray run's file,
        memray-SCRIPT.PID.bin (MODULE for -m, python-c for -c), unless -o
        FILE (or -o - for standard output) says where; OPTIONS
        are memray-record's (-o FILE, -f, --native, --follow-fork,
        --trace-python-allocators, --sample-bytes N, ...), memray's
        `--output` and `--force` among them
    python3 -m memray_c flamegraph [-o OUT.html] [--leaks|--temporary] FILE.bin
        writes FILE.bin's flame graph page (memray-fold | memray-flame),
        to memray-flamegraph-FILE.html unless -o says where
    python3 -m memray_c TOOL [ARGS...]
        runs memray-TOOL (record, fold, stat, leaks, flame, tree, live, diff)
"""

import os
import sys

from . import _tools

# memray-record's options that take an argument (--pid and --duration make
# no sense with a script, but are parsed so that memray-record says so)
_RECORD_WITH_ARG = {"-o", "--output", "--interval", "--sample-bytes", "--seed",
                    "--program-output", "-p", "--pid", "--duration"}


def _usage(status):
    (sys.stdout if status == 0 else sys.stderr).write(__doc__.split("\n", 1)[1].replace(
        "python3 -m memray_c", f"{os.path.basename(sys.executable)} -m memray_c"))
    sys.exit(status)


def _names_output(opt):
    """Whether one of memray-record's options as given says where the
    stream goes: -o FILE, -oFILE, -qfo FILE, --output[=FILE] or an
    abbreviation of it (getopt_long takes one), or --pid."""
    if opt.startswith("--"):
        name = opt[2:].split("=", 1)[0]
        return "output".startswith(name) or (len(name) >= 2 and "pid".startswith(name))
    if opt.startswith("-") and len(opt) > 1:
        # a cluster of short options: -o or -p, and what follows is its value
        for c in opt[1:]:
            if c in "op":
                return True
            if c not in "fzqh":
                return False
    return False


def _takes_next(opt):
    """Whether memray-record's option as given takes the next argument as
    its value: -o FILE, -qfo FILE, --output FILE, --out FILE, ..."""
    if opt.startswith("--"):
        if "=" in opt:
            return False
        name = opt[2:]
        return any(w.startswith("--" + name) for w in _RECORD_WITH_ARG if w.startswith("--")) \
            and not any(w == "--" + name for w in ("--native", "--no-native", "--force",
                                                    "--follow-fork", "--idle", "--quiet"))
    # a cluster of short options whose last one takes a value
    return len(opt) > 1 and opt[-1] in "op" and all(c in "fzqh" for c in opt[1:-1])


def _run(args):
    """memray-record's options, then what python3 itself is given."""
    opts = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a in ("-m", "-c"):
            break
        if a in ("-h", "--help"):
            _usage(0)
        opts.append(a)
        if _takes_next(a):
            if i + 1 >= len(args):
                sys.exit(f"memray_c run: {a} needs an argument")
            opts.append(args[i + 1])
            i += 1
        i += 1
    program = args[i:]
    if not program:
        sys.exit("memray_c run: no script given (usage: run [OPTIONS] script.py | -m module | "
                 "-c code [ARGS...])")
    if program[0] in ("-m", "-c") and len(program) < 2:
        sys.exit(f"memray_c run: {program[0]} needs an argument")
    # as memray run does: the recording goes to memray-SCRIPT.PID.bin
    # (this process's pid, which memray-record keeps), never to standard
    # output, where the program's own output goes
    named = any(_names_output(o) for o in opts)
    if not named:
        what = (program[1] if program[0] == "-m" else "python-c" if program[0] == "-c"
                else os.path.basename(program[0]))
        opts += ["-o", f"memray-{what}.{os.getpid()}.bin"]
    _tools.run_tool("memray-record", opts + ["--", sys.executable] + program)


def _flamegraph(args):
    out = None
    metric = []
    files = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-o", "--output"):
            if i + 1 >= len(args):
                sys.exit(f"memray_c flamegraph: {a} needs an argument")
            out = args[i + 1]
            i += 1
        elif a == "--leaks":
            metric = ["--metric=leaked"]
        elif a == "--temporary":
            metric = ["--metric=temporary"]
        elif a in ("-h", "--help"):
            _usage(0)
        else:
            files.append(a)
        i += 1
    if len(files) != 1:
        sys.exit("memray_c flamegraph: give one recording (usage: flamegraph [-o OUT.html] "
                 "[--leaks|--temporary] FILE.bin)")
    src = files[0]
    if out is None:
        base = os.path.basename(src)
        out = "memray-flamegraph-" + (base[:-4] if base.endswith(".bin") else base) + ".html"
    try:
        messages = _tools.flame_page(src, out, metric, ["--title", os.path.basename(src)])
    except RuntimeError as e:
        sys.exit(f"memray_c flamegraph: {e}")
    for m in messages:
        sys.stderr.write(m + "\n")
    print(f"wrote {out}")


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        _usage(0 if args else 2)
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        _run(rest)
    elif cmd == "flamegraph":
        _flamegraph(rest)
    elif "memray-" + cmd in _tools.TOOLS:
        _tools.run_tool("memray-" + cmd, rest)
    else:
        sys.stderr.write(f"memray_c: unknown command {cmd!r}\n")
        _usage(2)


if __name__ == "__main__":
    main()
