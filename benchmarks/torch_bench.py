#!/usr/bin/env python3
"""torch_bench: what ddpm-bench measures, on the PyTorch reference (../shared/ref), as one JSON line.

    /usr/bin/python3 benchmarks/torch_bench.py --config mnist --mode train --threads 2
    /usr/bin/python3 benchmarks/torch_bench.py --config anime64 --mode infer --device cuda --precision bf16
    /usr/bin/python3 benchmarks/torch_bench.py --config mnist --mode sample-ddim --steps 5
    /usr/bin/python3 benchmarks/torch_bench.py --probe          # torch version, CUDA device (JSON)

Run it with an interpreter that has torch (on Debian: the system /usr/bin/python3 with python3-torch).
The model and the diffusion maths are imported from the reference implementation: --ref-dir, else
$DDPM_REF_DIR, else ../shared/ref relative to the repository root.

Modes (the definitions of ../shared/ref/bench.py and benchmarks/ddpm_bench.cpp):
  train             noise + q_sample + forward + L2(eps) loss + backward + Adam (lr 2e-4); dropout 0.1
                    active; label drop 0.1 (mnist); no grad clipping, no EMA
  infer             torch.no_grad() forward in eval mode (= one sampling step)
  sample-ancestral  Diffusion.sample_ancestral (1000 steps) of one batch (default 100 mnist digits,
  sample-ddim       64 manga32 / 25 anime64 images), or Diffusion.sample_ddim(steps=50); --steps S runs S
                    steps (ancestral: the first S of the 1000, the same work per step; DDIM: S-step DDIM)
                    and extrapolates the full time ("extrapolated": true)
Precision: fp32 (on CUDA with TF32 off), tf32 (CUDA only: TF32 matmuls and convolutions), bf16
(torch.autocast around forward + loss; weights, gradients and Adam state stay fp32).
Timing: --warmup iterations, one sizing iteration, repeats of ceil(--min-repeat-s / sizing time)
iterations (torch.cuda.synchronize() at the end of each on CUDA); --quiet Q repeats until --repeats
repeats had foreign_cpu < Q (or --max-measure-s passed, >= 3 repeats). foreign_cpu = share of all cores
used by other processes during the repeat (/proc/stat minus this process's CPU time).
"""

import argparse
import contextlib
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLES = {"mnist": 100, "manga32": 64, "anime64": 25}


def ref_dir(arg=None):
    d = Path(arg or os.environ.get("DDPM_REF_DIR") or REPO.parent / "shared" / "ref")
    if not (d / "unet.py").exists() or not (d / "ddpm.py").exists():
        sys.exit(f"torch_bench: no unet.py / ddpm.py in {d} (set --ref-dir or DDPM_REF_DIR)")
    return d


class CpuMonitor:
    """System-wide CPU accounting from /proc/stat, minus this process's own CPU time."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.ncpu = os.cpu_count() or 1
        self.ok = os.path.exists("/proc/stat")

    def snap(self):
        t = time.perf_counter()
        own = os.times()
        busy = None
        if self.ok:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / self.hz      # user nice system irq softirq
        return t, busy, own.user + own.system

    def foreign(self, a, b):
        if a[1] is None or b[1] is None:
            return None
        wall = max(b[0] - a[0], 1e-9)
        return max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / (wall * self.ncpu)


def time_repeats(fn, warmup, repeats, min_repeat_s, sync, quiet=0.0, max_measure_s=0.0):
    mon = CpuMonitor()
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()                                  # sizing iteration
    sync()
    single = time.perf_counter() - t0
    inner = max(1, math.ceil(min_repeat_s / max(single, 1e-9)))
    per_iter, foreign = [], []
    start = time.perf_counter()
    while True:
        a = mon.snap()
        for _ in range(inner):
            fn()
        sync()
        b = mon.snap()
        per_iter.append((b[0] - a[0]) / inner)
        foreign.append(mon.foreign(a, b))
        n = len(per_iter)
        nq = sum(1 for f in foreign if f is not None and f < quiet) if quiet > 0 else n
        if nq >= repeats:
            break
        if max_measure_s > 0 and time.perf_counter() - start > max_measure_s and n >= 3:
            break
    return dict(per_iter_s=per_iter, foreign_cpu=foreign, inner=inner, warmup=warmup + 1)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0      # Linux: KiB


def current_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def probe():
    info = dict(tool="torch", torch=None, cuda=False)
    try:
        import torch
    except ImportError as e:
        info["error"] = str(e)
        return info
    info["torch"] = torch.__version__
    info["cuda"] = bool(torch.cuda.is_available())
    if info["cuda"]:
        info["device_name"] = torch.cuda.get_device_name(0)
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="mnist", choices=["mnist", "manga32", "anime64"])
    ap.add_argument("--mode", default="train", choices=["train", "infer", "sample-ancestral", "sample-ddim"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and OMP/OpenBLAS/MKL threads)")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per step (64); sampling: images sampled at once (100 mnist, 64 manga32, 25 anime64)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (5; sampling: 1)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up iterations (2; sampling: 1 run of 2 steps)")
    ap.add_argument("--min-repeat-s", type=float, default=0.5)
    ap.add_argument("--quiet", type=float, default=0.0)
    ap.add_argument("--max-measure-s", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=0, help="sampling: steps to run (0 = all: 1000 / 50)")
    ap.add_argument("--guidance", type=float, default=1.0, help="sampling, mnist: classifier-free guidance weight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-dir", default=None)
    ap.add_argument("--probe", action="store_true", help="print torch version and CUDA availability, then exit")
    args = ap.parse_args()

    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, str(args.threads))
    if args.probe:
        print(json.dumps(probe()))
        return
    sys.path.insert(0, str(ref_dir(args.ref_dir)))
    import torch
    from ddpm import Diffusion
    from unet import UNet, count_forward_flops, count_params
    from bench import CONFIGS

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("torch_bench: --device cuda: no CUDA device visible to torch", file=sys.stderr)
            sys.exit(4)
        if device.index is not None:
            torch.cuda.set_device(device.index)
        torch.backends.cudnn.benchmark = True
        tf = args.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf
        torch.backends.cudnn.allow_tf32 = tf
        sync = lambda: torch.cuda.synchronize(device)
    else:
        if args.precision == "tf32":
            sys.exit("torch_bench: --precision tf32 exists on CUDA only")
        sync = lambda: None
    amp = ((lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if args.precision == "bf16"
           else contextlib.nullcontext)
    rss0 = current_rss_mb()

    cfg = CONFIGS[args.config]
    sampling = args.mode.startswith("sample")
    N = args.batch or (DEFAULT_SAMPLES[args.config] if sampling else 64)
    torch.manual_seed(args.seed)
    model = UNet(**cfg).to(device)
    g = torch.Generator().manual_seed(args.seed)
    s = cfg["image_size"]
    x = (torch.rand(N, cfg["in_channels"], s, s, generator=g) * 2 - 1).to(device)
    y = torch.randint(0, cfg["num_classes"], (N,), generator=g).to(device) if cfg["num_classes"] else None
    t = torch.randint(0, 1000, (N,), generator=g).to(device)
    f, _ = count_forward_flops(model, x[:2], t[:2], y[:2] if y is not None else None)
    fwd_gflop = f / 1e9
    diff = Diffusion(T=1000, schedule="linear", pred="eps", loss="l2", device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    out = dict(tool="torch", config=args.config, mode=args.mode, backend=device.type, threads=torch.get_num_threads(),
               batch=N, params=count_params(model))
    extra = {}
    if not sampling:
        if args.mode == "train":
            opt = torch.optim.Adam(model.parameters(), lr=2e-4)
            p_unc = 0.1 if y is not None else 0.0
            model.train()

            def fn():   # = Diffusion.train_step without grad clipping / EMA, loss under autocast for bf16
                with amp():
                    loss = diff.loss(model, x, y, p_uncond=p_unc)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            gflop_img = 3 * fwd_gflop
        else:
            model.eval()

            def fn():
                with torch.no_grad(), amp():
                    model(x, t, y)
            gflop_img = fwd_gflop
        r = time_repeats(fn, 2 if args.warmup is None else args.warmup, args.repeats or 5, args.min_repeat_s, sync,
                         args.quiet, args.max_measure_s)
        ips = [N / v for v in r["per_iter_s"]]
        foreign, warmup, inner = r["foreign_cpu"], r["warmup"], r["inner"]
    else:
        ddim = args.mode == "sample-ddim"
        full = 50 if ddim else 1000
        run_steps = min(args.steps, full) if args.steps else full
        labels = (torch.arange(N, device=device) % cfg["num_classes"]) if cfg["num_classes"] else None
        guidance = None if args.guidance == 1.0 else args.guidance
        shape = (N, cfg["in_channels"], s, s)

        def ancestral_partial(steps, gen):
            """The body of Diffusion.sample_ancestral over its first `steps` timesteps (T-1 down)."""
            model.eval()
            xs = torch.randn(shape, generator=gen, device=device)
            for i in list(reversed(range(diff.T)))[:steps]:
                tt = torch.full((N,), i, dtype=torch.long, device=device)
                x0, _ = diff._pred_x0_eps(model, xs, tt, labels, guidance, True)
                mean = (diff.post_c1.gather(0, tt).reshape(-1, 1, 1, 1) * x0
                        + diff.post_c2.gather(0, tt).reshape(-1, 1, 1, 1) * xs)
                if i > 0:
                    z = torch.randn(shape, generator=gen, device=device)
                    xs = mean + torch.exp(0.5 * diff.post_logvar.gather(0, tt).reshape(-1, 1, 1, 1)) * z
                else:
                    xs = mean
            return xs

        def sample(steps):
            gen = torch.Generator(device=device).manual_seed(7)
            with torch.no_grad(), amp():
                if ddim:
                    return diff.sample_ddim(model, shape, steps=steps, y=labels, guidance=guidance, generator=gen,
                                            device=device)
                if steps == diff.T:
                    return diff.sample_ancestral(model, shape, y=labels, guidance=guidance, generator=gen,
                                                 device=device)
                return ancestral_partial(steps, gen)

        warmup = 1 if args.warmup is None else args.warmup
        for _ in range(warmup):
            sample(2)
        sync()
        mon = CpuMonitor()
        run_s, foreign = [], []
        start = time.perf_counter()
        R = args.repeats or 1
        while True:
            a = mon.snap()
            sample(run_steps)
            sync()
            b = mon.snap()
            run_s.append(b[0] - a[0])
            foreign.append(mon.foreign(a, b))
            nq = sum(1 for v in foreign if v is not None and v < args.quiet) if args.quiet > 0 else len(run_s)
            if nq >= R or (args.max_measure_s > 0 and time.perf_counter() - start > args.max_measure_s
                           and len(run_s) >= min(3, R)):
                break
        scale = full / run_steps
        calls = 2 if guidance is not None else 1
        ips = [N / (v * scale) for v in run_s]
        gflop_img = fwd_gflop * full * calls
        med_run = sorted(run_s)[len(run_s) // 2]
        inner = 1
        extra = dict(sampler="ddim(eta=0)" if ddim else "ancestral(fixed_small)", sample_steps=full,
                     steps_run=run_steps, extrapolated=run_steps != full, sample_s=round(med_run * scale, 3),
                     sample_s_measured=round(med_run, 3), step_s=med_run / run_steps,
                     step_img_per_s=N * run_steps / med_run, guidance=args.guidance)

    srt = sorted(ips)
    med = srt[len(srt) // 2]
    out.update(img_per_s=med, img_per_s_min=srt[0], img_per_s_max=srt[-1], gflops=round(med * gflop_img, 2),
               peak_rss_mb=round(peak_rss_mb()), steady_state_heap_allocs=None, steady_state_tensor_allocs=None,
               iterations=inner * len(ips), precision=args.precision, warmup=warmup, inner=inner, repeats=len(ips),
               img_per_s_repeats=ips, foreign_cpu=foreign, quiet_threshold=args.quiet or None,
               fwd_gflops_per_img=round(fwd_gflop, 4))
    out.update(extra)
    out.update(torch=torch.__version__, rss_after_import_mb=rss0 and round(rss0))
    if device.type == "cuda":   # the field names of ddpm-bench --backend cuda
        out["device"] = torch.cuda.get_device_name(device)
        out["device_mem_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20)
        out["device_mem_reserved_peak_mb"] = round(torch.cuda.max_memory_reserved(device) / 2 ** 20)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
