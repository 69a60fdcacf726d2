#!/usr/bin/python3
"""Turns the raw results of bench/run (hyperfine JSON, randread JSON, /proc status snapshots)
into markdown tables on stdout. Stdlib only. Reports targets as met / not met; never fails on
a figure."""
import argparse
import json
import os
import re


def hf(results_dir, name):
    path = os.path.join(results_dir, name + ".json")
    r = json.load(open(path))["results"][0]
    return {k: r[k] for k in ("mean", "stddev", "median", "min", "max", "user", "system")} | {"n": len(r["times"])}


def fmt_cpu(r):
    return f"{r['user'] + r['system']:.2f} s CPU"


def fmt_t(r):
    m, sd = r["mean"], r["stddev"] or 0.0
    if m < 1:
        return f"{m * 1e3:.1f} ms ± {sd * 1e3:.1f} (median {r['median'] * 1e3:.1f}, n={r['n']})"
    return f"{m:.3f} s ± {sd:.3f} (median {r['median']:.3f}, n={r['n']})"


def status_kib(path):
    """{'VmHWM': kB, 'VmRSS': kB} per line label from 'VmHWM: N VmRSS: N label' lines."""
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path):
        toks = line.split()
        if not toks:
            continue
        label = toks[-1] if not toks[-1].isdigit() else "cold-mount"
        vals = dict(zip(toks[0:-1:2], toks[1::2])) if label != "cold-mount" else {}
        if label == "cold-mount":
            continue
        out[label] = {k.rstrip(":"): int(v) for k, v in vals.items()}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--largest-decoded", type=int, required=True)
    ap.add_argument("--file-bytes", type=int, required=True)
    ap.add_argument("--files", type=int, required=True)
    ap.add_argument("--entries-mnt", type=int, required=True)
    ap.add_argument("--entries-ext", type=int, required=True)
    ap.add_argument("--load-before", required=True)
    ap.add_argument("--load-after", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--cpus", required=True)
    a = ap.parse_args()
    R = a.results

    cold, warm, umoci, gz = (hf(R, n) for n in ("cold", "warm", "umoci", "gzip"))
    walks = {n: (hf(R, n + "-mnt"), hf(R, n + "-ext")) for n in ("find", "find-printf")}
    ra_m, ra_e = hf(R, "readall-mnt"), hf(R, "readall-ext")
    rnd_m = json.load(open(os.path.join(R, "rand-mnt.json")))
    rnd_e = json.load(open(os.path.join(R, "rand-ext.json")))
    layers = json.load(open(os.path.join(R, "layers.json")))
    rss = status_kib(os.path.join(R, "rss.txt"))
    cold_status = {}
    p = os.path.join(R, "rss-cold-mount.txt")
    if os.path.exists(p):
        for line in open(p):
            k, v = line.split(":", 1)
            cold_status[k] = int(v.split()[0])
    mount_maxrss = None
    p = os.path.join(R, "time-cold.txt")
    if os.path.exists(p):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(p).read())
        mount_maxrss = int(m.group(1)) if m else None
    cache_bytes = int(open(os.path.join(R, "cache-bytes.txt")).read().strip())

    gz_tput = a.largest_decoded / gz["mean"] / 1e6
    ra_m_tput = a.file_bytes / ra_m["mean"] / 1e6
    ra_e_tput = a.file_bytes / ra_e["mean"] / 1e6
    MiB = 1024.0

    print(f"## ocifs benchmark — {a.ref}\n")
    print(f"- load average (1/5/15 min): before `{a.load_before}`, after `{a.load_after}`, {a.cpus} CPUs")
    print(f"- layers: " + ", ".join(f"{l['size'] / 1e6:.1f} MB" for l in layers)
          + f"; largest decodes to {a.largest_decoded / 1e6:.1f} MB")
    print(f"- entries: {a.entries_mnt} in the mount, {a.entries_ext} in the umoci tree; "
          f"{a.files} regular-file paths, {a.file_bytes / 1e6:.1f} MB of file data")
    print(f"- ocifs cache dir after a cold mount: {cache_bytes / 1e6:.2f} MB")
    print("- MB = 10^6 bytes; ± is the standard deviation over hyperfine runs\n")

    print("| measurement | ocifs | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| cold mount (empty cache dir) vs `umoci unpack` | {fmt_t(cold)} | {fmt_t(umoci)} | "
          f"{cold['mean'] / umoci['mean']:.3f}× |")
    print(f"| cold mount vs one `gzip -dc` of the largest layer | {fmt_t(cold)} | {fmt_t(gz)} | "
          f"{cold['mean'] / gz['mean']:.2f}× |")
    print(f"| warm remount (index cached) vs `umoci unpack` | {fmt_t(warm)} | {fmt_t(umoci)} | "
          f"{warm['mean'] / umoci['mean']:.4f}× |")
    for n, label in (("find", "`find T`"), ("find-printf", "`find T -printf '%s %m %u\\n'`")):
        m, e = walks[n]
        print(f"| {label}, fresh mount vs extracted tree (caches dropped) | {fmt_t(m)} | {fmt_t(e)} | "
              f"{m['mean'] / e['mean']:.2f}× |")
    print(f"| read every file (`find -type f -print0 \\| xargs -0 cat`), fresh mount vs extracted "
          f"(caches dropped) | {fmt_t(ra_m)} = {ra_m_tput:.0f} MB/s | {fmt_t(ra_e)} = {ra_e_tput:.0f} MB/s | "
          f"{ra_m['mean'] / ra_e['mean']:.2f}× time |")
    print(f"| read every file: ocifs throughput vs `gzip -dc` decode throughput | {ra_m_tput:.0f} MB/s | "
          f"{gz_tput:.0f} MB/s | {ra_m_tput / gz_tput:.2f}× |")
    for key, label in (("pread", "pread 4 KiB"), ("open", "open()"), ("open_pread_close", "open+pread+close")):
        m, e = rnd_m[key], rnd_e[key]
        print(f"| random {label} latency p50 / p90 / p99 / max, ms ({rnd_m['reads']} reads, "
              f"{rnd_m['big_files']} files > 64 KiB get 80%) | {m['p50']:.3f} / {m['p90']:.3f} / {m['p99']:.3f} / "
              f"{m['max']:.1f} | {e['p50']:.3f} / {e['p90']:.3f} / {e['p99']:.3f} / {e['max']:.1f} | "
              f"{m['p50'] / e['p50'] if e['p50'] else float('nan'):.1f}× p50 |")
    print()

    print(f"CPU (user+sys, mean per run): cold mount {fmt_cpu(cold)}, warm remount {fmt_cpu(warm)}, "
          f"umoci unpack {fmt_cpu(umoci)}, gzip -dc {fmt_cpu(gz)}.")
    p = os.path.join(R, "daemon-after-readall.txt")
    if os.path.exists(p):
        d = dict(line.split() for line in open(p) if line.strip())
        blobs = sum(l["size"] for l in layers)
        rchar = int(d["rchar:"]) if "rchar:" in d else int(d.get("rchar", 0))
        cpu = int(d["cpu_ticks"]) / int(d["clk_tck"])
        print(f"Daemon totals after mount + find + reading every file once: read {rchar / 1e6:.0f} MB "
              f"(blob preads + FUSE requests; the layer blobs are {blobs / 1e6:.0f} MB, i.e. "
              f"{rchar / blobs:.1f}× ), {cpu:.2f} s CPU.")
    print()

    print("| daemon memory (/proc/PID/status) | VmRSS | VmHWM |")
    print("|---|---|---|")
    if cold_status:
        print(f"| right after a cold mount | {cold_status.get('VmRSS', 0) / MiB:.1f} MiB | "
              f"{cold_status.get('VmHWM', 0) / MiB:.1f} MiB |")
    for label, text in (("mount", "right after a warm mount"), ("find", "after `find -printf`"),
                        ("readall", "after reading every file")):
        if label in rss:
            print(f"| {text} | {rss[label].get('VmRSS', 0) / MiB:.1f} MiB | {rss[label].get('VmHWM', 0) / MiB:.1f} MiB |")
    if mount_maxrss:
        print(f"| `ocifs mount` command, cold (indexes before it forks; `/usr/bin/time -v` max RSS) | "
              f"| {mount_maxrss / MiB:.1f} MiB |")
    print()

    hwm = max([v.get("VmHWM", 0) for v in rss.values()] + [cold_status.get("VmHWM", 0)]) / MiB
    targets = [
        ("warm remount < 100 ms", f"{warm['mean'] * 1e3:.1f} ms", warm["mean"] < 0.1),
        ("warm remount ≤ 0.02× umoci unpack", f"{warm['mean'] / umoci['mean']:.4f}×", warm["mean"] <= 0.02 * umoci["mean"]),
        ("cold mount ≤ 0.25× umoci unpack", f"{cold['mean'] / umoci['mean']:.3f}×", cold["mean"] <= 0.25 * umoci["mean"]),
        ("cold mount ≤ 1.3× gzip -dc of the largest layer", f"{cold['mean'] / gz['mean']:.2f}×", cold["mean"] <= 1.3 * gz["mean"]),
        ("read every file ≥ 0.8× gzip -dc throughput", f"{ra_m_tput / gz_tput:.2f}× ({ra_m_tput:.0f} vs {gz_tput:.0f} MB/s)",
         ra_m_tput >= 0.8 * gz_tput),
        ("random 4 KiB read p50 ≤ 2 ms", f"{rnd_m['pread']['p50']:.3f} ms (open+pread+close {rnd_m['open_pread_close']['p50']:.3f} ms)",
         rnd_m["pread"]["p50"] <= 2.0),
        ("daemon RSS ≤ 64 MiB", f"VmHWM {hwm:.1f} MiB", hwm <= 64),
    ]
    print("| target | figure | |")
    print("|---|---|---|")
    for t, fig, ok in targets:
        print(f"| {t} | {fig} | {'met' if ok else '**not met**'} |")


if __name__ == "__main__":
    main()
