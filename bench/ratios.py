#!/usr/bin/env python3
"""Ferry beside its peers from one peers.sh run: a "ferry / peer" ratio per step.

usage: ratios.py RESULTS.csv DD_SECONDS DD_MIB ["DD_RUNS ..."] > table.md

DD_SECONDS is the median of the disk baseline's runs, listed in DD_RUNS.

Times are wall + flush (durable on disk), medians over the repeats. Ferry's
CPU is the agent's plus the hub's ("ferry-hub" rows), and so is that of a
peer with a hub of its own ("ferrypg-hub", "ferrytls-hub"); its RSS is the
larger of the two processes' peaks.
"""
import csv
import statistics
import sys
from collections import defaultdict

STEPS = ["backup-initial", "backup-incr", "backup-small", "restore-mixed"]


def main():
    rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["step"] != "verify"]
    dd_s, dd_mib = float(sys.argv[2]), float(sys.argv[3])
    dd_range = sys.argv[4] if len(sys.argv) > 4 else ""
    by = defaultdict(list)
    for r in rows:
        by[(r["peer"], r["step"])].append(r)

    def med(peer, step, f):
        rs = by.get((peer, step), [])
        return statistics.median(f(r) for r in rs) if rs else None

    def durable(r):
        return float(r["wall_s"]) + float(r["flush_s"])

    def cpu(r):
        return float(r["user_s"]) + float(r["sys_s"])

    def rss(r):
        return int(r["maxrss_kib"]) / 1024

    def repo(r):
        return int(r["repo_bytes"]) / 2**20

    peers = [p for p in dict.fromkeys(r["peer"] for r in rows) if p != "ferry" and not p.endswith("-hub")]
    out = ["| step | ferry s | ferry CPU s (agent+hub) | ferry RSS MiB (agent/hub) | ferry repo MiB | "
           + " | ".join(f"÷ {p} time | ÷ {p} CPU" for p in peers) + " |",
           "|---|---:|---:|---:|---:|" + "---:|---:|" * len(peers)]
    for step in STEPS:
        t = med("ferry", step, durable)
        if t is None:
            continue
        c = (med("ferry", step, cpu) or 0) + (med("ferry-hub", step, cpu) or 0)
        ra, rh = med("ferry", step, rss) or 0, med("ferry-hub", step, rss) or 0
        cells = [step, f"{t:.2f}", f"{c:.2f}", f"{ra:.0f} / {rh:.0f}", f"{med('ferry', step, repo):.1f}"]
        for p in peers:
            pt, pc = med(p, step, durable), med(p, step, cpu)
            if pc is not None:
                pc += med(f"{p}-hub", step, cpu) or 0
            cells.append(f"{t / pt:.2f}" if pt else "-")
            cells.append(f"{c / pc:.2f}" if pc else "-")
        out.append("| " + " | ".join(cells) + " |")
    t0 = med("ferry", "backup-initial", durable)
    if t0 and dd_s > 0:
        out.append("")
        runs = f" (median of {len(dd_range.split())}: {dd_range} s)" if len(dd_range.split()) > 1 else ""
        out.append(f"Disk baseline: `dd conv=fdatasync` of {dd_mib:.0f} MiB (Ferry's repo after "
                   f"backup-initial) took {dd_s:.2f} s{runs}; Ferry's backup-initial ÷ that = {t0 / dd_s:.2f}.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
