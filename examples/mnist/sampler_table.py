#!/usr/bin/env python3
"""Samplers x steps on one MNIST checkpoint: time for 100 guided digits and ddpm-eval scores.

    examples/mnist/sampler_table.py --checkpoint runs/samplers-ckpt/checkpoint.safetensors \
        --bin build/h-samplers/examples/mnist/mnist --eval build/h-samplers/examples/eval/ddpm-eval

Writes one grid per run under --out (default runs/samplers-eval/<sampler>-<steps>/grid.png) and
a markdown table (--out/table.md), appended row by row so a partial run keeps its rows.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--checkpoint", required=True)
ap.add_argument("--bin", required=True, help="the mnist example binary")
ap.add_argument("--eval", required=True, help="the ddpm-eval binary")
ap.add_argument("--out", default="runs/samplers-eval")
ap.add_argument("--threads", default="2")
ap.add_argument("--samplers", default="dpmpp-2m,unipc,euler,heun,dpmpp-2m-sde,ddim,ancestral")
ap.add_argument("--steps", default="10,15,20,25,50,100")
ap.add_argument("--guidance", default="3")
a = ap.parse_args()

os.makedirs(a.out, exist_ok=True)
table = os.path.join(a.out, "table.md")
if not os.path.exists(table):
    with open(table, "w") as f:
        f.write("| sampler | steps | network evals / image | time for 100 (s) | accuracy | confident | FD (real) |\n")
        f.write("|---|---:|---:|---:|---:|---:|---:|\n")

for steps in [int(s) for s in a.steps.split(",")]:
    for smp in a.samplers.split(","):
        d = os.path.join(a.out, f"{smp}-{steps}")
        cmd = [a.bin, "--threads", a.threads, "sample", "--checkpoint", a.checkpoint, "--sampler", smp,
               "--steps", str(steps), "--guidance", a.guidance, "--record-every", "0", "--out", d]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(" ".join(cmd), "\n", r.stdout, r.stderr, file=sys.stderr)
            continue
        m = re.search(r"sampled \d+ images with .* in ([0-9.]+) s", r.stdout)
        ev = re.search(r"\((\d+) network evaluations each\)", r.stdout)
        secs = float(m.group(1)) if m else time.time() - t0
        e = subprocess.run([a.eval, "score", "--samples", os.path.join(d, "grid.png"), "--grid-rows-are-classes"],
                           capture_output=True, text=True)
        line = e.stderr.strip().splitlines()[-1] if e.stderr.strip() else ""
        acc = re.search(r"acc=([0-9.]+)", line)
        conf = re.search(r"confident=([0-9.]+)", line)
        fd = re.search(r"FD=([0-9.]+) \(real@\d+ ([0-9.]+)", line)
        nfe = int(ev.group(1)) if ev else "?"
        row = (f"| {smp} | {steps} | {nfe} | {secs:.1f} | {acc.group(1) if acc else '?'} | "
               f"{conf.group(1) if conf else '?'} | {fd.group(1) + ' (' + fd.group(2) + ')' if fd else '?'} |")
        print(row, flush=True)
        with open(table, "a") as f:
            f.write(row + "\n")
