#!/usr/bin/env python3
"""Drives and reads one continuous-mode run of `ferry-agent run` on a
directory (bench/watch.sh calls it).

  watch_latency.py idle LOG PID SECONDS
      waits for the first full walk's "snapshot committed" in the agent's
      JSON log LOG, then prints the agent's CPU over SECONDS idle (JSON).
  watch_latency.py changes LOG DIR RATE SECONDS
      writes RATE new files per second into DIR for SECONDS, waits for the
      agent to commit them, and prints change -> committed latency (JSON):
      a change written at t is committed by the first snapshot that started
      after t (the watcher had it by then), at that snapshot's commit time.
  watch_latency.py setup LOG START
      prints the seconds from START (unix time the agent was started) to
      its "watching with ..." line: how long setting the watches took.
"""
import json
import os
import sys
import time
from datetime import datetime


def events(log):
    """(unix time, message, fields) of each JSON log line so far."""
    out = []
    with open(log) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            ts = rec.get("timestamp", "").replace("Z", "+00:00")
            try:
                t = datetime.fromisoformat(ts).timestamp()
            except ValueError:
                continue
            fields = rec.get("fields", {})
            out.append((t, fields.get("message", ""), fields))
    return out


def commits(log):
    # The daemon's line (with the source), not the backup's own.
    return [e for e in events(log) if e[1] == "snapshot committed" and "source" in e[2]]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def idle(log, pid, seconds):
    deadline = time.time() + 3600
    while not commits(log):
        if time.time() > deadline:
            sys.exit("no first snapshot within an hour")
        time.sleep(1)
    first = commits(log)[0]
    time.sleep(5)  # let the first walk's tail (journal promote, logs) settle
    before, t0 = cpu_seconds(pid), time.time()
    time.sleep(seconds)
    used, span = cpu_seconds(pid) - before, time.time() - t0
    print(json.dumps({
        "first_walk_entries": first[2].get("entries"),
        "idle_seconds": round(span, 1),
        "cpu_seconds": round(used, 3),
        "cpu_percent_of_a_core": round(100 * used / span, 3),
        "snapshots_while_idle": len(commits(log)) - 1,
    }))


def setup(log, start):
    for t, message, _ in events(log):
        if message.startswith("watching with"):
            print(round(t - start, 2))
            return
    print("n/a")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def changes(log, out_dir, rate, seconds):
    os.makedirs(out_dir, exist_ok=True)
    # The new directory itself is a change: let it be committed first.
    settle_until = time.time() + 30
    base = len(commits(log))
    while len(commits(log)) == base and time.time() < settle_until:
        time.sleep(0.1)
    time.sleep(2)
    writes = []
    start = time.time()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        with open(os.path.join(out_dir, f"c{i:06d}"), "wb") as f:
            f.write(os.urandom(512))
        writes.append(time.time())
    last = writes[-1]
    deadline = time.time() + 120
    while True:
        starts = [e[0] for e in events(log) if e[1] == "snapshot started" and e[0] > last]
        if starts and any(c[0] > starts[0] for c in commits(log)):
            break
        if time.time() > deadline:
            sys.exit("the last change was never committed")
        time.sleep(0.2)
    evs = events(log)
    started = [e[0] for e in evs if e[1] == "snapshot started" and e[0] >= writes[0] - 1]
    done = [e[0] for e in evs
            if e[1] == "snapshot committed" and "source" in e[2] and e[0] >= writes[0] - 1]
    # Each start is followed by its commit (snapshots of a source do not overlap).
    pairs = []
    for s in started:
        c = next((c for c in done if c > s), None)
        if c is not None:
            pairs.append((s, c))
    lat = []
    for t in writes:
        pair = next((p for p in pairs if p[0] > t), None)
        if pair is None:
            sys.exit("a change with no snapshot after it")
        lat.append(pair[1] - t)
    durations = [c - s for s, c in pairs]
    print(json.dumps({
        "changes": n,
        "rate_per_s": rate,
        "achieved_rate_per_s": round(n / (last - writes[0]), 1) if n > 1 else rate,
        "snapshots": len(pairs),
        "latency_p50_s": round(pct(lat, 50), 3),
        "latency_p99_s": round(pct(lat, 99), 3),
        "latency_max_s": round(max(lat), 3),
        "snapshot_duration_mean_s": round(sum(durations) / len(durations), 3),
        "snapshot_duration_max_s": round(max(durations), 3),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "idle":
        idle(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "changes":
        changes(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    elif sys.argv[1] == "setup":
        setup(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(__doc__)
