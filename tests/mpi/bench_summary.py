#!/usr/bin/env python3
"""Summarises tests/mpi/bench_scaling.sh output (JSON lines) as a Markdown table: medians over
rounds per configuration, and the per-round speed-up of each 2-rank run over the 1-rank run of
the same round (paired, so that slow phases of a shared machine cancel)."""
import json
import statistics
import sys
from collections import defaultdict


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    by = defaultdict(list)
    order = []
    for r in runs:
        if r["label"] not in by:
            order.append(r["label"])
        by[r["label"]].append(r)
    base = by.get("1 rank", [])
    print("| configuration | runs | img/s (median) | step s | compute s | comm exposed s "
          "(in backward + after) | speed-up vs 1 rank (paired median, range) | CPU s per step per rank "
          "| speed-up with a core per rank | load before |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cpu1 = statistics.median(b["result"]["cpu_s_per_step"] for b in base) if base else 0
    for label in order:
        rs = by[label]
        res = [r["result"] for r in rs]
        med = lambda k: statistics.median(x[k] for x in res)
        ups = [r["result"]["images_per_s"] / b["result"]["images_per_s"]
               for r, b in zip(rs, base) if b["result"]["images_per_s"] > 0]
        up = f"{statistics.median(ups):.2f}x ({min(ups):.2f}-{max(ups):.2f})" if label != "1 rank" else "1"
        print(f"| {label} | {len(rs)} | {med('images_per_s'):.2f} | {med('step_s_median'):.3f} | "
              f"{med('compute_s'):.3f} | {med('comm_exposed_s'):.4f} ({med('comm_in_backward_s'):.4f} + "
              f"{med('comm_after_backward_s'):.4f}) | {up} | {med('cpu_s_per_step'):.3f} | "
              f"{cpu1 / med('cpu_s_per_step'):.2f}x | "
              f"{statistics.median(r['load1_before'] for r in rs):.1f} |")
    ar = [r["result"]["allreduce_alone_s"] for r in runs if r["result"]["ranks"] > 1]
    if ar:
        p = runs[0]["result"]["parameters"]
        print(f"\nOne blocking MPI_Allreduce of all {p} gradients ({p * 4 / 1e6:.1f} MB), nothing else "
              f"running: median {statistics.median(ar) * 1e3:.2f} ms (min {min(ar) * 1e3:.2f}, "
              f"max {max(ar) * 1e3:.2f}).")


if __name__ == "__main__":
    main(sys.argv[1])
