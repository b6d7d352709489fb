#!/usr/bin/env python3
"""Makes the flat-memory scale dataset: N files of 0-4 KiB (seeded, random
bytes) in directories of 1000. usage: mkmany.py OUT [N=1000000]"""
import os
import random
import sys

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
rng = random.Random(42)
for i in range(count):
    d = os.path.join(out, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 1000:03d}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(0, 4096)))
    if i and i % 100_000 == 0:
        print(f"{i} files", file=sys.stderr)
