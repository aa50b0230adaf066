#!/usr/bin/env python3
"""The ablation study of the MNIST example: T, fixed x_T, step noise, schedule x target.

    scripts/ablation.py                          # 2 minutes of training per model, 8 models
    scripts/ablation.py --minutes 10 --out runs/ablation-long
    scripts/ablation.py --only T=100,T=1000 --minutes 1
    scripts/ablation.py --report-only            # redo the table from the runs already in --out

Settings (each trains its own model with `mnist train`, except the sampling ablations, which
sample the base model's checkpoint with `mnist sample`):

    T=100, T=200, T=300, T=500, T=1000     linear schedule, epsilon target, T diffusion steps
    linear-eps (= T=1000), linear-x0, cosine-eps, cosine-x0      schedule x target, T = 1000
    fixed-xT          the base model (linear-eps, T=1000), sampled from x_T = 0
    no-step-noise     the base model, no noise added between sampling steps
    fixed-xT+no-noise both

Every setting writes <out>/<setting>/grid.png (one row per digit class) and the sampler's GIF;
each grid is scored with ddpm-eval (the library's MNIST classifier: class accuracy, confident
fraction, class entropy, Inception-Score-like figure, Frechet distance against held-out digits,
and the real-data Frechet baseline at the same n). The summary goes to <out>/summary.md and
<out>/summary.json and to stdout.

All models get the same training budget (--minutes, or --steps for an equal number of steps), the
same seed and the same sampler (default: DDPM ancestral, respaced to --sample-steps steps; 0 =
all T steps, which for T = 1000 takes several minutes per grid on 2 cores). Python 3 standard
library only; it runs the programs of the `examples` preset, building them first with --build.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (train flags or None for a sampling ablation, extra sample flags)
SETTINGS: dict[str, tuple[list[str] | None, list[str]]] = {
    "T=100": (["--schedule", "linear", "--target", "epsilon", "--timesteps", "100"], []),
    "T=200": (["--schedule", "linear", "--target", "epsilon", "--timesteps", "200"], []),
    "T=300": (["--schedule", "linear", "--target", "epsilon", "--timesteps", "300"], []),
    "T=500": (["--schedule", "linear", "--target", "epsilon", "--timesteps", "500"], []),
    "T=1000": (["--schedule", "linear", "--target", "epsilon", "--timesteps", "1000"], []),
    "linear-x0": (["--schedule", "linear", "--target", "x0", "--timesteps", "1000"], []),
    "cosine-eps": (["--schedule", "cosine", "--target", "epsilon", "--timesteps", "1000"], []),
    "cosine-x0": (["--schedule", "cosine", "--target", "x0", "--timesteps", "1000"], []),
    "fixed-xT": (None, ["--zero-init"]),
    "no-step-noise": (None, ["--no-step-noise"]),
    "fixed-xT+no-noise": (None, ["--zero-init", "--no-step-noise"]),
}
BASE = "T=1000"  # the model the sampling ablations sample (linear, epsilon, T = 1000)
ALIASES = {"linear-eps": "T=1000"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rel(x: str) -> str:
    """A path argument as the user would type it from the repository root."""
    try:
        return str(Path(x).relative_to(ROOT))
    except ValueError:
        return x


def run(cmd: list[str], log_file: Path) -> None:
    cmd = [rel(c) for c in cmd]
    log("$ " + " ".join(cmd))
    with open(log_file, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"ablation: command failed (exit {r.returncode}); the end of {log_file}:\n"
                         + "\n".join(tail))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/ablation", help="output folder (default: runs/ablation)")
    ap.add_argument("--minutes", type=float, default=2.0, help="training minutes per model (default 2)")
    ap.add_argument("--steps", type=int, default=0, help="training steps per model instead of minutes")
    ap.add_argument("--only", default="", help="comma-separated settings (default: all); see the list above")
    ap.add_argument("--sampler", default="ancestral", choices=["ancestral", "ddim"], help="sampler (default ancestral)")
    ap.add_argument("--sample-steps", type=int, default=100,
                    help="sampling steps, respaced (0 = all T; default 100)")
    ap.add_argument("--per-class", type=int, default=10, help="samples per digit class (default 10)")
    ap.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance weight (default 3)")
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0 = all cores)")
    ap.add_argument("--data", default="", help="MNIST-format folder (default: the bundled data/mnist10k)")
    ap.add_argument("--seed", type=int, default=0, help="training seed, the same for every model")
    ap.add_argument("--bin-dir", default="build/examples/examples", help="where mnist/ and eval/ were built")
    ap.add_argument("--build", action="store_true", help="configure and build the examples preset first")
    ap.add_argument("--no-eval", action="store_true", help="do not score the grids")
    ap.add_argument("--report-only", action="store_true", help="only redo the summary from --out")
    a = ap.parse_args()

    if a.minutes <= 0 and a.steps <= 0:
        ap.error("--minutes or --steps must be positive")
    if a.per_class < 1:
        ap.error("--per-class must be at least 1")
    wanted = [s.strip() for s in a.only.split(",") if s.strip()] if a.only else list(SETTINGS)
    wanted = [ALIASES.get(s, s) for s in wanted]
    unknown = [s for s in wanted if s not in SETTINGS]
    if unknown:
        ap.error(f"--only: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}, linear-eps")

    out = (ROOT / a.out) if not Path(a.out).is_absolute() else Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bins = (ROOT / a.bin_dir) if not Path(a.bin_dir).is_absolute() else Path(a.bin_dir)
    mnist, ddpm_eval = bins / "mnist" / "mnist", bins / "eval" / "ddpm-eval"
    log_file = out / "ablation.log"

    if a.build and not a.report_only:
        run(["cmake", "--preset", "examples"], log_file)
        run(["cmake", "--build", "--preset", "examples", "-j", str(os.cpu_count() or 2),
             "--target", "mnist", "ddpm-eval"], log_file)
    if not a.report_only:
        for exe in [mnist] + ([] if a.no_eval else [ddpm_eval]):
            if not exe.is_file():
                raise SystemExit(f"ablation: {exe} not found: build it with --build "
                                 f"(cmake --preset examples && cmake --build --preset examples)")

    sample_flags = ["--sampler", a.sampler, "--sample-steps", str(a.sample_steps), "--per-class",
                    str(a.per_class), "--guidance", str(a.guidance)]
    budget = ["--steps", str(a.steps), "--minutes", "0"] if a.steps > 0 else ["--minutes", str(a.minutes)]
    data = ["--data", a.data] if a.data else []
    real = ["--real", a.data] if a.data else []  # ddpm-eval's default: the bundled digits
    # sampling ablations need the base model: train it first
    order = sorted(wanted, key=lambda s: SETTINGS[s][0] is None)
    if any(SETTINGS[s][0] is None for s in wanted) and BASE not in order:
        order.insert(0, BASE)

    rows = []
    for name in order:
        train_flags, extra = SETTINGS[name]
        d = out / name.replace("+", "_")
        if not a.report_only:
            t0 = time.time()
            if train_flags is not None:
                if d.exists():
                    shutil.rmtree(d)
                run([str(mnist), "--threads", str(a.threads), "train", "--fresh", "--out", str(d),
                     "--seed", str(a.seed), *budget, *data, *train_flags, *sample_flags, "--record-every", "0"],
                    log_file)
            else:
                base_ck = out / BASE / "checkpoint.safetensors"
                if not base_ck.is_file():
                    raise SystemExit(f"ablation: {name} samples the base model, but {base_ck} is missing")
                d.mkdir(parents=True, exist_ok=True)
                run([str(mnist), "--threads", str(a.threads), "sample", "--checkpoint", str(base_ck),
                     "--out", str(d), *sample_flags, "--record-every", "0", *extra], log_file)
            (d / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
            if not a.no_eval:
                with open(d / "eval.json", "w") as f:
                    r = subprocess.run([str(ddpm_eval), "--threads", str(a.threads), "score", "--samples",
                                        rel(str(d / "grid.png")), "--grid-rows-are-classes", *real],
                                       cwd=ROOT, stdout=f, stderr=subprocess.PIPE, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"ablation: ddpm-eval failed on {d / 'grid.png'}:\n{r.stderr}")
                log(f"{name}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
        rows.append(collect(name, d, train_flags is not None))

    write_summary(out, rows, a)
    return 0


def read_loss(d: Path) -> tuple[int | None, float | None]:
    """(last step, mean loss of the last 100 rows) from loss.csv."""
    p = d / "loss.csv"
    if not p.is_file():
        return None, None
    lines = [ln.split(",") for ln in p.read_text().splitlines()[1:] if ln.strip()]
    if not lines:
        return None, None
    # columns: step, epoch, seconds, loss, loss_avg100, lr, img_per_s, grad_norm
    tail = lines[-100:]
    try:
        return int(float(tail[-1][0])) + 1, sum(float(r[3]) for r in tail) / len(tail)
    except (ValueError, IndexError):
        return None, None


def collect(name: str, d: Path, trained: bool) -> dict:
    row: dict = {"setting": name, "dir": d.name, "grid": rel(str(d / "grid.png"))}
    if trained:
        row["steps"], row["loss_avg100"] = read_loss(d)
    ev = d / "eval.json"
    if ev.is_file() and ev.stat().st_size > 0:
        j = json.loads(ev.read_text())
        row.update({k: j.get(k) for k in ("n", "accuracy", "confident_fraction", "class_entropy",
                                          "inception_score", "fd")})
        real = j.get("fd_real") or {}
        row["fd_real"] = real.get("mean")
    return row


def fmt(v, nd=3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def write_summary(out: Path, rows: list[dict], a) -> None:
    budget = f"{a.steps} steps" if a.steps > 0 else f"{a.minutes:g} min"
    head = (f"Ablation of the MNIST example: {budget} of training per model, seed {a.seed}; "
            f"sampler {a.sampler}, {a.sample_steps or 'all T'} steps, {a.per_class} per class, guidance {a.guidance:g}.\n"
            "Scores: ddpm-eval on each grid (accuracy = classifier agrees with the row's class; "
            "confident = max softmax >= 0.9; FD = Frechet distance of classifier features to "
            "held-out digits, next to the real-data baseline at the same n; lower is better).\n\n")
    table = ["| setting | steps | loss (last 100) | accuracy | confident | class entropy | IS | FD | FD real | grid |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        table.append(f"| {r['setting']} | {fmt(r.get('steps'))} | {fmt(r.get('loss_avg100'), 4)} | "
                     f"{fmt(r.get('accuracy'))} | {fmt(r.get('confident_fraction'))} | "
                     f"{fmt(r.get('class_entropy'))} | {fmt(r.get('inception_score'), 2)} | "
                     f"{fmt(r.get('fd'), 2)} | {fmt(r.get('fd_real'), 2)} | {r['dir']}/grid.png |")
    text = head + "\n".join(table) + "\n"
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
