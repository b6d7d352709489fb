#!/usr/bin/env python3
"""Writes RATE new files per second into SRC for SECONDS (4 KiB-1 MiB,
log-uniform, in directories of 1000), while watching each replica directory
for them; prints change -> applied latencies per replica and how long after
the load's end each had every file (JSON).

  replication_load.py SRC REPLICA... RATE SECONDS
"""
import json
import math
import os
import random
import sys
import threading
import time

src, replicas, rate, seconds = sys.argv[1], sys.argv[2:-2], float(sys.argv[-2]), float(sys.argv[-1])
rng = random.Random(19)
written = {}  # relative path -> time written
lock = threading.Lock()
done = threading.Event()
seen = {r: {} for r in replicas}


def watch(replica):
    # Each pass lists the load's directories in the replica.
    while True:
        with lock:
            pending = [p for p in written if p not in seen[replica]]
        now = time.time()
        dirs = {os.path.dirname(p) for p in pending}
        for d in dirs:
            try:
                names = set(os.listdir(os.path.join(replica, d)))
            except OSError:
                continue
            for p in pending:
                if os.path.dirname(p) == d and os.path.basename(p) in names:
                    seen[replica][p] = now
        if done.is_set() and len(seen[replica]) >= len(written):
            return
        if done.is_set() and time.time() > end + 600:
            return
        time.sleep(0.05)


threads = [threading.Thread(target=watch, args=(r,), daemon=True) for r in replicas]
for t in threads:
    t.start()
start = time.time()
end = start + seconds
n = 0
total = 0
while time.time() < end:
    due = start + n / rate
    delay = due - time.time()
    if delay > 0:
        time.sleep(delay)
    size = int(math.exp(rng.uniform(math.log(4096), math.log(1 << 20))))
    rel = f"load/d{n // 1000:04d}/f{n:07d}"
    os.makedirs(os.path.join(src, os.path.dirname(rel)), exist_ok=True)
    with open(os.path.join(src, rel), "wb") as f:
        f.write(os.urandom(size))
    with lock:
        written[rel] = time.time()
    total += size
    n += 1
load_end = time.time()
done.set()
for t in threads:
    t.join()


def pct(values, p):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 3) if values else None


out = {"files": n, "achieved_rate_per_s": round(n / (load_end - start), 1), "mib": round(total / 2**20), "replicas": {}}
for r in replicas:
    lat = [seen[r][p] - written[p] for p in written if p in seen[r]]
    last = max(seen[r].values()) if seen[r] else load_end
    out["replicas"][os.path.basename(r)] = {
        "applied": len(lat),
        "p50_s": pct(lat, 50),
        "p99_s": pct(lat, 99),
        "max_s": round(max(lat), 3) if lat else None,
        "caught_up_after_end_s": round(last - load_end, 2),
    }
print(json.dumps(out))
