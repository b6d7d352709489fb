#!/usr/bin/env python3
"""Markdown report of one bench/bucket.sh run: bucket_report.py RESULTS.csv > report.md
(values about the run come from the environment bucket.sh sets)."""
import csv
import datetime
import os
import subprocess
import sys

STEPS = ["backup-initial", "backup-unchanged", "restore"]


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a report line, not a failure
        return f"n/a ({type(e).__name__})"


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    env = os.environ
    data = {(r["tool"], r["pool"], r["step"]): r for r in rows}

    def t(r):
        return float(r["wall_s"]) + float(r["flush_s"])

    def cpu(r):
        return float(r["user_s"]) + float(r["sys_s"]) + float(r["hub_cpu_s"])

    def mib(kib):
        return int(kib) / 1024

    b_mixed = int(env["B_MIXED"])
    o = [f"# Ferry: a bucket backed up and restored through Garage, beside restic ({datetime.date.today()})\n",
         f"`bench/bucket.sh` (issue 5), one run; Ferry {env.get('FERRY_REV', '?')}. Data: `{env['DATA']}/mixed` "
         f"({env['N_MIXED']} files, {b_mixed} bytes), uploaded with `rclone copy --transfers 8` into bucket `src` "
         f"in {float(env['UPLOAD_S']):.1f} s (not part of the comparison).\n",
         "Ratios are Ferry ÷ restic (time = wall + final sync; CPU = agent + hub for Ferry): below 1 means Ferry is "
         "faster or leaner. \"+ garage\" adds the Garage server's CPU during the step to both sides.\n",
         "| step | Ferry hub pool | ferry s | restic s | ÷ time | ÷ CPU | ÷ CPU + garage | ferry RSS MiB (agent/hub) | restic RSS MiB |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for pool in ("s3", "local"):
        for st in STEPS:
            f, r = data.get(("ferry", pool, st)), data.get(("restic", "s3", st))
            if not f:
                continue
            cells = [st, pool, f"{t(f):.2f}", f"{t(r):.2f}" if r else "-"]
            if r and f["status"] == "ok" and r["status"] == "ok":
                cells += [f"{t(f) / t(r):.2f}", f"{cpu(f) / cpu(r):.2f}",
                          f"{(cpu(f) + float(f['garage_cpu_s'])) / (cpu(r) + float(r['garage_cpu_s'])):.2f}"]
            else:
                cells += ["-", "-", "-"]
            cells += [f"{mib(f['maxrss_kib']):.0f} / {mib(f['hub_rss_kib']):.0f}",
                      f"{mib(r['maxrss_kib']):.0f}" if r else "-"]
            o.append("| " + " | ".join(cells) + " |")
    o += ["", "## All rows\n",
          "| tool | pool | step | wall s | +flush s | client user+sys s | hub CPU s | garage CPU s | client RSS MiB "
          "| hub RSS MiB | repo after MiB | MiB/s | status |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["step"] == "verify":
            o.append(f"| {r['tool']} | {r['pool']} | verify | | | | | | | | | | {r['status']} |")
            continue
        w = float(r["wall_s"])
        o.append(f"| {r['tool']} | {r['pool']} | {r['step']} | {w:.2f} | {float(r['flush_s']):.2f} | "
                 f"{float(r['user_s']) + float(r['sys_s']):.2f} | {float(r['hub_cpu_s']):.2f} | "
                 f"{float(r['garage_cpu_s']):.2f} | {mib(r['maxrss_kib']):.0f} | {mib(r['hub_rss_kib']):.0f} | "
                 f"{int(r['repo_bytes']) / 2**20:.1f} | {b_mixed / 2**20 / w if w else 0:.1f} | {r['status']} |")
    fb = env.get("FERRY_BIN", "target/release")
    o += ["", "## Versions\n",
          f"- ferry-agent: `{version([fb + '/ferry-agent', '--version'])}`, "
          f"ferry-hub: `{version([fb + '/ferry-hub', '--version'])}`",
          f"- restic: `{version(['restic', 'version'])}`",
          f"- garage: `{version([env.get('GARAGE', 'garage'), '--version'])}`, rclone: `{version(['rclone', 'version'])}`"]
    print("\n".join(o))


if __name__ == "__main__":
    main()
