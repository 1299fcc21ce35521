#!/usr/bin/env python3
"""benches/paired.py BASE [--rounds N] [--kills N] [--seconds S] [--runs N]

The `handoff` and `restart` benchmarks of commit BASE and of the working
tree, built side by side (BASE in a temporary worktree) and run in turn, one
after the other in each round, the order swapped every round. Prints, for
every figure the benchmarks print, the median of the round medians for each
side with their range, and the ratio after / before paired by round (median
and range): on a noisy machine the paired ratio is the figure to read. Each
run's CPU time (the benchmark, the daemon and its streamlets: every process
it waited for) is a figure too.

As root, for the streamlets' sandbox. Needs nothing but git, cargo and
python3.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

BENCHES = ("handoff", "restart")


def build(tree):
    """The bench executables of the tree at `tree`, by name."""
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--no-run", "--message-format=json"]
        + [arg for b in BENCHES for arg in ("--bench", b)],
        cwd=tree, check=True, stdout=subprocess.PIPE, text=True).stdout
    found = {}
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            name = msg["target"]["name"]
            if name in BENCHES:
                found[name] = msg["executable"]
    missing = set(BENCHES) - set(found)
    if missing:
        sys.exit(f"paired: no executable for {', '.join(sorted(missing))} in {tree}")
    return found


def figures(text):
    """Every figure a benchmark printed: name -> value."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"raw SCM_RIGHTS.*?:\s+(\d+) fds/s median", line)
        if m:
            out["raw SCM_RIGHTS fds/s"] = float(m.group(1))
        m = re.match(r"handoff\s+concurrency\s+(\d+):\s+(\d+) streams/s median.*p50\s+([\d.]+) us\s+p99\s+([\d.]+) us",
                     line)
        if m:
            c = m.group(1)
            out[f"handoff c{c} streams/s"] = float(m.group(2))
            out[f"handoff c{c} p50 us"] = float(m.group(3))
            out[f"handoff c{c} p99 us"] = float(m.group(4))
        m = re.match(r"(spare = \w+)[^:]*: (\w[\w ]*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            out[f"restart {m.group(1)} {m.group(2)} p50 ms"] = float(m.group(3))
            out[f"restart {m.group(1)} {m.group(2)} p90 ms"] = float(m.group(4))
    return out


def run(executable, args):
    """One run: its figures, and the CPU seconds of every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([executable, "--bench"] + args, check=True, stdout=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return figures(done.stdout), cpu


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--seconds", default="2")
    p.add_argument("--runs", default="3")
    o = p.parse_args()
    here = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()
    base = subprocess.run(["git", "rev-parse", "--short", o.base], cwd=here, check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix="paired-")
    tree = os.path.join(tmp, "base")
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", tree, base], cwd=here, check=True)
    try:
        sides = {"before": build(tree), "after": build(here)}
        args = {"handoff": ["--seconds", o.seconds, "--runs", o.runs], "restart": ["--kills", str(o.kills)]}
        results = {side: [] for side in sides}
        for r in range(o.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for side in order:
                round_figures = {}
                for bench in BENCHES:
                    got, cpu = run(sides[side][bench], args[bench])
                    round_figures.update(got)
                    round_figures[f"{bench} run CPU s"] = cpu
                results[side].append(round_figures)
            print(f"round {r + 1} of {o.rounds} done", file=sys.stderr)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=here, check=False)
    report(base, o.rounds, results)


def spread(values):
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"


def report(base, rounds, results):
    print(f"before: {base}; after: the working tree; {rounds} rounds, in turn")
    print("| figure | before: median (range) | after | after / before, paired: median (range) |")
    print("| --- | --- | --- | --- |")
    names = [n for n in results["before"][0] if all(n in r for side in results.values() for r in side)]
    for name in names:
        before = [r[name] for r in results["before"]]
        after = [r[name] for r in results["after"]]
        ratios = [a / b for a, b in zip(after, before) if b]
        print(f"| {name} | {spread(before)} | {spread(after)} | {spread(ratios) if ratios else '-'} |")


if __name__ == "__main__":
    main()
