#!/usr/bin/env python3
"""Prints the request-path figures: ours, the floor, the Node.js peer, and their ratios.

Reads criterion's estimates (target/criterion/request_path/...) and the peer's output
(target/bench-corpus/node.jsonl), both written by scripts/bench.
"""

import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target/criterion/request_path"
NODE = ROOT / "target/bench-corpus/node.jsonl"
STARTED = ROOT / "target/bench-started"


def mean_ns(kind, size):
    path = CRITERION / kind / size / "new/estimates.json"
    return json.loads(path.read_text())["mean"]["point_estimate"]


node = {}
if NODE.exists():
    for line in NODE.read_text().splitlines():
        row = json.loads(line)
        node[row["name"]] = row["ns_per_event"]

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"machine: {cpu}, {os.cpu_count()} cores")
print(f"{'payload':<8} {'ours':>11} {'floor':>11} {'ours/floor':>10} {'node':>11} {'node/ours':>10}")
# Only the sizes that ran this time (scripts/bench touches STARTED first): a filter such
# as `scripts/bench 1KiB` leaves the others out, or with estimates from an earlier run.
def ran_now(kind, size):
    path = CRITERION / kind / size / "new/estimates.json"
    return path.exists() and (not STARTED.exists() or path.stat().st_mtime >= STARTED.stat().st_mtime)


ran = [size for size in ["1KiB", "16KiB", "512KiB"] if ran_now("ours", size) and ran_now("floor", size)]
if not ran:
    raise SystemExit("no criterion estimates under target/criterion/request_path: run scripts/bench")
for size in ran:
    ours, floor = mean_ns("ours", size), mean_ns("floor", size)
    n = node.get(size)
    us = lambda ns: f"{ns / 1000:.2f} µs"
    print(
        f"{size:<8} {us(ours):>11} {us(floor):>11} {ours / floor:>9.2f}x "
        f"{us(n) if n else '-':>11} {(f'{n / ours:.1f}x') if n else '-':>10}"
    )
