#!/usr/bin/python3
"""Random 4 KiB pread latencies over a tree (stdlib only).

Usage: randread.py ROOT FILELIST [--reads N] [--seed S] [--big BYTES] [--big-share F] [--json OUT]

FILELIST has one "SIZE<TAB>RELPATH" line per regular file (made once from the extracted tree,
so that listing the tree is not part of the measurement and both trees get the same sequence).
Each sample picks a file — with probability --big-share one of the files larger than --big
bytes, otherwise any file — and a random 4 KiB-aligned offset inside it, then times
open(), pread(4096) and close() separately with perf_counter_ns.
Prints a JSON object with percentiles in milliseconds.
"""
import argparse
import json
import os
import random
import sys
import time


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    k = (len(sorted_ms) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (k - lo)


def summary(ms):
    s = sorted(ms)
    return {
        "n": len(s),
        "mean": sum(s) / len(s),
        "p50": pct(s, 50),
        "p90": pct(s, 90),
        "p99": pct(s, 99),
        "max": s[-1],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("filelist")
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--big", type=int, default=64 * 1024)
    ap.add_argument("--big-share", type=float, default=0.8)
    ap.add_argument("--json")
    a = ap.parse_args()

    files = []
    with open(a.filelist, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            size, _, rel = line.rstrip("\n").partition("\t")
            files.append((int(size), rel))
    big = [x for x in files if x[0] > a.big]
    nonempty = [x for x in files if x[0] > 0]
    rng = random.Random(a.seed)
    plan = []
    for _ in range(a.reads):
        size, rel = rng.choice(big if big and rng.random() < a.big_share else nonempty)
        pages = max(1, (size + 4095) // 4096)
        plan.append((rel, rng.randrange(pages) * 4096))

    open_ms, read_ms, total_ms = [], [], []
    nbytes = 0
    clock = time.perf_counter_ns
    for rel, off in plan:
        path = os.path.join(a.root, rel)
        t0 = clock()
        fd = os.open(path, os.O_RDONLY)
        t1 = clock()
        data = os.pread(fd, 4096, off)
        t2 = clock()
        os.close(fd)
        t3 = clock()
        nbytes += len(data)
        open_ms.append((t1 - t0) / 1e6)
        read_ms.append((t2 - t1) / 1e6)
        total_ms.append((t3 - t0) / 1e6)
    out = {
        "root": a.root,
        "reads": a.reads,
        "big_files": len(big),
        "files": len(files),
        "bytes": nbytes,
        "pread": summary(read_ms),
        "open": summary(open_ms),
        "open_pread_close": summary(total_ms),
    }
    text = json.dumps(out, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
