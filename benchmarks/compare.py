#!/usr/bin/env python3
"""compare: ddpm vs PyTorch, on the CPU and on CUDA, end to end, in one command.

    python3 benchmarks/compare.py --build                       # build ddpm-bench + ddpm-chart, mnist train+infer
    python3 benchmarks/compare.py --configs mnist,manga32,anime64 --rounds 3
    python3 benchmarks/compare.py --modes sample-ddim,sample-ancestral --steps 20   # sampling, extrapolated
    python3 benchmarks/compare.py --report-only runs/bench/2026-11-23_1530         # redo table + chart
    python3 benchmarks/compare.py --build --publish   # and update benchmarks/README.md "Latest figures"

Runs benchmarks/ddpm-bench (the C++ library) and benchmarks/torch_bench.py (the PyTorch reference in
../shared/ref) INTERLEAVED: per config and mode, one fresh process of each implementation after the
other, the order alternating between rounds (A B, B A, A B, ...), so that both see the same machine.
Each run records the share of the CPUs that other processes used (from /proc/stat, per timed repeat
inside the tools and over the whole process here); repeats and runs above --quiet are contended and
flagged. Figures are medians over the quiet repeats of all rounds (or over all repeats, marked
contended, when fewer than 3 were quiet); ratios are medians of the per-round ratios of the
interleaved pairs.

Columns: ddpm CPU, PyTorch CPU, ddpm CUDA, PyTorch CUDA. The CUDA ones run when a CUDA device exists
and ddpm-bench was built with the CUDA backend (resp. torch has CUDA); otherwise they read
"n/a (no device)" (or "n/a (not built with CUDA)", ...). Without torch, only the ddpm columns appear.
Runs with any python3; the torch script is run with the first interpreter that can import torch
(--torch-python, $DDPM_TORCH_PYTHON, this interpreter, /usr/bin/python3, python3 on PATH).

Writes to --out-dir (default runs/bench/<date>_<time> under the repository root):
  runs.jsonl    one line per run: the tool's JSON plus variant, round, wall time, foreign CPU
  results.md    the Markdown tables (summary, details, sampling, per-round ratios)
  summary.json  settings, machine, commit, aggregates, ratios
  chart.json, chart.png   the bar chart (drawn by ddpm-chart, built from benchmarks/ddpm_chart.cpp)
"""

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

VARIANTS = [  # key, display name, chart colour (tab10)
    ("ddpm-cpu", "ddpm CPU", (31, 119, 180)),
    ("torch-cpu", "PyTorch CPU", (255, 127, 14)),
    ("ddpm-cuda", "ddpm CUDA", (44, 160, 44)),
    ("torch-cuda", "PyTorch CUDA", (214, 39, 40)),
]
NAME = {k: n for k, n, _ in VARIANTS}
PAIRS = [("ddpm-cpu", "torch-cpu", "CPU"), ("ddpm-cuda", "torch-cuda", "CUDA")]
MODES = ("train", "infer", "sample-ancestral", "sample-ddim")
DEFAULT_SAMPLES = {"mnist": 100, "manga32": 64, "anime64": 25}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------ load
class CpuMonitor:
    """System-wide busy CPU time from /proc/stat (as ../shared/ref/bench.py reads it)."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.ncpu = os.cpu_count() or 1
        self.ok = os.path.exists("/proc/stat")

    def snap(self):
        import resource
        t = time.perf_counter()
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        own = ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime
        busy = None
        if self.ok:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / self.hz
        return t, busy, own

    def foreign(self, a, b):
        """Share of all CPUs used by processes other than this one and its (waited-for) children."""
        if a[1] is None or b[1] is None:
            return None
        wall = max(b[0] - a[0], 1e-9)
        return max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / (wall * self.ncpu)


def wait_quiet(threshold, max_wait_s, window_s=2.0):
    """Wait (bounded) until other processes use < threshold of the machine for a window."""
    mon = CpuMonitor()
    if not mon.ok or threshold <= 0 or max_wait_s <= 0:
        return None
    t0 = time.perf_counter()
    while True:
        a = mon.snap()
        time.sleep(window_s)
        fr = mon.foreign(a, mon.snap())
        if fr < threshold:
            return fr
        if time.perf_counter() - t0 > max_wait_s:
            log(f"    [machine busy: other processes use {100 * fr:.0f}% of the CPUs; measuring anyway]")
            return fr


# ------------------------------------------------------------------------------ environment
def machine_info():
    info = dict(cpu=platform.processor() or "?", cores=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
        info["simd"] = " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16") if x in flags)
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, StopIteration):
        pass
    info["gpu"] = gpu_name()
    return info


def gpu_name():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        p = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=30)
        names = [l.strip() for l in p.stdout.splitlines() if l.strip()]
        return ", ".join(names) if p.returncode == 0 and names else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_state():
    def git(*a):
        try:
            p = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, timeout=30)
            return p.stdout.rstrip() if p.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None
    commit = git("rev-parse", "--short=12", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "include", "benchmarks", "CMakeLists.txt")
    files = [l[3:] for l in (changed or "").splitlines() if l.strip()]
    return dict(commit=commit, subject=git("log", "-1", "--format=%s"), dirty_files=files)


def find_torch_python(explicit):
    cands = [explicit, os.environ.get("DDPM_TORCH_PYTHON"), sys.executable, "/usr/bin/python3",
             shutil.which("python3")]
    seen, tried = set(), []
    for c in cands:
        if not c or c in seen or not (os.path.exists(c) or shutil.which(c)):
            continue
        seen.add(c)
        try:
            p = subprocess.run([c, str(HERE / "torch_bench.py"), "--probe"], capture_output=True, text=True,
                               timeout=300)
            info = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 and p.stdout.strip() else {}
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
            info = {}
        tried.append(c)
        if info.get("torch"):
            return c, info
        if explicit and c == explicit:
            break
    return None, dict(error="no interpreter with torch among " + ", ".join(tried))


def build(build_dir, jobs):
    cfg = ["cmake", "-S", str(REPO), "-B", str(build_dir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
           "-DDDPM_BUILD_TESTS=OFF", "-DDDPM_BUILD_EXAMPLES=OFF", "-DDDPM_BUILD_BENCHMARKS=ON"]
    if not shutil.which("ninja"):
        cfg.remove("-G")
        cfg.remove("Ninja")
    log("$ " + " ".join(shlex.quote(c) for c in cfg))
    subprocess.run(cfg, check=True)
    cmd = ["cmake", "--build", str(build_dir), "-j", str(jobs), "--target", "ddpm-bench"]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    # the chart tool needs ddpm::io (zlib, giflib, stb, nlohmann-json); a missing one is not fatal
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(jobs), "--target", "ddpm-chart"])


# ------------------------------------------------------------------------------------- runs
def tool_args(a, config, mode):
    sampling = mode.startswith("sample")
    args = ["--config", config, "--mode", mode, "--threads", str(a.threads), "--min-repeat-s", str(a.min_repeat_s),
            "--quiet", str(a.quiet), "--max-measure-s", str(a.max_measure_s)]
    if sampling:
        args += ["--batch", str(a.samples or DEFAULT_SAMPLES[config]), "--repeats", "1", "--warmup", "1"]
        if a.steps:
            args += ["--steps", str(a.steps)]
    else:
        args += ["--batch", str(a.batch), "--repeats", str(a.repeats), "--warmup", str(a.warmup)]
    return args


def command(a, variant, config, mode, bench, torch_py):
    impl, dev = variant.split("-")
    prec = a.cuda_precision if dev == "cuda" else a.precision
    if impl == "ddpm":
        return [str(bench), "--backend", dev, "--precision", prec] + tool_args(a, config, mode)
    cmd = [torch_py, str(HERE / "torch_bench.py"), "--device", dev, "--precision", prec] + tool_args(a, config, mode)
    if a.ref_dir:
        cmd += ["--ref-dir", a.ref_dir]
    return cmd


def relative(x):
    """A path under the repository as a repository-relative one, another absolute path as
    .../<name>: the records and reports carry no machine paths."""
    x = str(x)
    if not x.startswith("/"):
        return x
    try:
        return str(Path(x).resolve().relative_to(REPO.resolve()))
    except ValueError:
        return ".../" + Path(x).name


def run_one(cmd, threads, timeout_s):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    mon = CpuMonitor()
    a = mon.snap()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, "", f"timed out after {timeout_s} s"
    b = mon.snap()
    res = None
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    return dict(rc=rc, result=res, stderr=err.strip()[-2000:], wall_s=round(b[0] - a[0], 2),
                foreign_cpu_process=mon.foreign(a, b))


def probe_ddpm_cuda(bench, device, precision):
    """'' when ddpm-bench can run on CUDA, else the reason for the n/a column."""
    if not device:
        return "n/a (no device)"
    p = subprocess.run([str(bench), "--backend", "cuda", "--precision", precision, "--config", "mnist", "--mode",
                        "infer", "--batch", "2", "--repeats", "1", "--warmup", "0", "--min-repeat-s", "0"],
                       capture_output=True, text=True, timeout=600)
    if p.returncode == 0:
        return ""
    if p.returncode == 3:
        return "n/a (not built with CUDA)"
    if p.returncode == 2 and "--precision" in p.stderr:
        return f"n/a (no {precision})"
    return "n/a (failed: " + (p.stderr.strip().splitlines() or ["?"])[-1][:80] + ")"


# -------------------------------------------------------------------------------- aggregates
def run_repeats(res, foreign_process):
    """[(img/s, foreign share or None)] of one tool result (per timed repeat)."""
    vals = res.get("img_per_s_repeats") or [res["img_per_s"]]
    fr = res.get("foreign_cpu") or [foreign_process] * len(vals)
    if len(fr) != len(vals):
        fr = [foreign_process] * len(vals)
    return list(zip(vals, fr))


def is_quiet(f, q):
    return f is not None and f < q


def run_value(run, q):
    """(value, quiet) of one run: the median of its quiet repeats when most repeats were quiet,
    else the median of all its repeats (contended)."""
    reps = run_repeats(run["result"], run.get("foreign_cpu_process"))
    quiet = [v for v, f in reps if is_quiet(f, q)]
    if len(quiet) * 2 > len(reps) or (quiet and len(quiet) * 2 == len(reps)):
        return statistics.median(quiet), True
    return statistics.median(v for v, _ in reps), False


def aggregate(runs, q):
    """Per (config, mode, variant): figure over quiet repeats of all rounds, else all (contended)."""
    groups = {}
    for r in runs:
        if r.get("rc") == 0 and r.get("result"):
            groups.setdefault((r["config"], r["mode"], r["variant"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        reps = [x for r in rs for x in run_repeats(r["result"], r.get("foreign_cpu_process"))]
        quiet = [v for v, f in reps if is_quiet(f, q)]
        sampling = key[1].startswith("sample")
        need = 1 if sampling else min(3, len(reps))
        basis_quiet = len(quiet) >= need and bool(quiet)
        vals = quiet if basis_quiet else [v for v, _ in reps]
        res0 = rs[0]["result"]
        med = statistics.median(vals)
        gpi = res0["gflops"] / res0["img_per_s"] if res0.get("img_per_s") else None
        fr = [f for _, f in reps if f is not None]
        a = dict(median=med, min=min(vals), max=max(vals), n_quiet=len(quiet), n_all=len(reps), runs=len(rs),
                 contended=not basis_quiet, gflops=med * gpi if gpi else None,
                 peak_rss_mb=max(r["result"].get("peak_rss_mb") or 0 for r in rs),
                 foreign_median=statistics.median(fr) if fr else None, foreign_max=max(fr) if fr else None,
                 batch=res0.get("batch"), round_values=[run_value(r, q)[0] for r in rs])
        dev = [r["result"]["device_mem_peak_mb"] for r in rs if r["result"].get("device_mem_peak_mb") is not None]
        if dev:
            a["peak_device_mb"] = max(dev)
        if sampling:
            a.update(sample_steps=res0.get("sample_steps"), steps_run=res0.get("steps_run"),
                     extrapolated=any(r["result"].get("extrapolated") for r in rs),
                     sample_s=res0.get("batch", 0) / med if med else None)
        out[key] = a
    return out


def pair_ratios(runs, q):
    """Per (config, mode, device): per-round ratios ddpm / PyTorch of the interleaved runs; the
    ratio is their median over the rounds where both runs were quiet, else over all (contended)."""
    by = {}
    for r in runs:
        if r.get("rc") == 0 and r.get("result"):
            by[(r["config"], r["mode"], r["variant"], r["round"])] = r
    out = {}
    keys = sorted({(c, m) for c, m, _, _ in by})
    rounds = sorted({k[3] for k in by})
    for c, m in keys:
        for a, b, dev in PAIRS:
            per = []
            for rd in rounds:
                ra, rb = by.get((c, m, a, rd)), by.get((c, m, b, rd))
                if ra and rb:
                    va, qa = run_value(ra, q)
                    vb, qb = run_value(rb, q)
                    if vb > 0:
                        per.append(dict(round=rd, ratio=va / vb, quiet=qa and qb))
            if not per:
                continue
            qv = [p["ratio"] for p in per if p["quiet"]]
            vals = qv or [p["ratio"] for p in per]
            out[(c, m, dev)] = dict(ratio=statistics.median(vals), contended=not qv, n_quiet=len(qv),
                                    n=len(per), per_round=per)
    return out


# --------------------------------------------------------------------------------- reports
def fmt(v, nd=None):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if nd is None:
        nd = 2 if abs(v) < 10 else 1 if abs(v) < 1000 else 0
    return f"{v:,.{nd}f}".replace(",", " ") if abs(v) >= 10000 else f"{v:.{nd}f}"


def cell(agg, status):
    if status:
        return status
    if agg is None:
        return "failed"
    s = f"{fmt(agg['median'])} [{fmt(agg['min'])}–{fmt(agg['max'])}]"
    return s + (" (contended)" if agg["contended"] else "")


def ratio_cell(rt):
    if not rt:
        return "–"
    return f"{rt['ratio']:.2f}x" + (" (contended" if rt["contended"] else " (") + \
        f"{', ' if rt['contended'] else ''}{rt['n_quiet']}/{rt['n']} rounds quiet)"


def write_markdown(path, meta, aggs, ratios, status):
    st, m, g = meta["settings"], meta["machine"], meta["git"]
    pct = f"{100 * st['quiet']:.0f}%"
    L = ["# ddpm vs PyTorch: end-to-end throughput\n"]
    L.append(f"- date: {meta['date']}")
    L.append(f"- machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('simd', '')}), {m.get('mem_gib', '?')} GiB; "
             f"GPU: {m.get('gpu') or 'none'}")
    dirty = g.get("dirty_files") or []
    L.append(f"- commit: {g.get('commit')} ({g.get('subject')})" +
             (f"; the working tree had uncommitted changes in {len(dirty)} file(s) under include/ or benchmarks/: "
              + ", ".join(dirty[:6]) + (" ..." if len(dirty) > 6 else "") if dirty else ""))
    L.append(f"- command: `{meta['command']}`")
    L.append(f"- tools: ddpm-bench `{meta.get('ddpm_bench')}`; PyTorch {meta.get('torch') or '– (not found)'}"
             + (f" via `{meta.get('torch_python')}`" if meta.get("torch_python") else ""))
    L.append(f"- settings: {st['threads']} threads, {st['precision']} (CUDA: {st['cuda_precision']}); train/infer "
             f"batch {st['batch']}, {st['warmup']} warm-up + 1 sizing iteration, {st['repeats']} repeats of "
             f">= {st['min_repeat_s']} s per run; {st['rounds']} rounds, each a fresh process per implementation, "
             "interleaved (the order alternates every round)")
    L.append("- train = noise + q_sample + forward + L2(eps) loss + backward + Adam (lr 2e-4), dropout 0.1, label "
             "drop 0.1 (mnist); infer = no-grad forward (one sampling step); GFLOP/s = img/s x forward GFLOPs "
             "(x3 for train; conv, linear and attention matmuls as ../shared/ref/unet.py counts them)")
    L.append(f"- **load**: a repeat is *quiet* when other processes used < {pct} of all CPUs during it (/proc/stat "
             "minus the tool's own CPU time). Figures are the median [min–max] over the quiet repeats of all rounds; "
             "where too few were quiet, over all repeats, marked **(contended)** — on a shared machine such "
             "figures are not comparable (OpenMP/TBB threads oversubscribed are slowed several-fold, and not "
             "equally for both implementations).\n")

    rows = [(c, mo) for c in st["configs"] for mo in st["modes"]]
    n_cont = sum(1 for a in aggs.values() if a["contended"])
    if n_cont:
        L.append(f"- **{'All' if n_cont == len(aggs) else f'{n_cont} of {len(aggs)}'} figures below are contended**: "
                 "other processes kept the CPUs busy during the runs, so these are not the implementations' speeds "
                 "and their ratios are not meaningful. Re-run on a quiet machine (one command: see "
                 "benchmarks/README.md).\n")
    n_header = len(L)
    L.append("## Summary (img/s, higher is better)\n")
    L.append("| config | mode | ddpm CPU | PyTorch CPU | ddpm / PyTorch (CPU) | ddpm CUDA | PyTorch CUDA | "
             "ddpm / PyTorch (CUDA) |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for c, mo in rows:
        cells = []
        for v in ("ddpm-cpu", "torch-cpu"):
            a = aggs.get((c, mo, v))
            cells.append(status[v] or (f"{fmt(a['median'])}{' (contended)' if a['contended'] else ''}" if a else "failed"))
        cells.append(ratio_cell(ratios.get((c, mo, "CPU"))))
        for v in ("ddpm-cuda", "torch-cuda"):
            a = aggs.get((c, mo, v))
            cells.append(status[v] or (f"{fmt(a['median'])}{' (contended)' if a['contended'] else ''}" if a else "failed"))
        cells.append(ratio_cell(ratios.get((c, mo, "CUDA"))))
        L.append(f"| {c} | {mo} | " + " | ".join(cells) + " |")
    if any(mo.startswith("sample") for mo in st["modes"]):
        L.append("\nSampling modes: img/s = images of the batch / full sampling time (1000 ancestral steps, or 50 "
                 "DDIM steps); see the sampling table for the times.")

    n_summary = len(L)
    L.append("\n## Details\n")
    L.append("| config | mode | implementation | img/s median [min–max] | GFLOP/s | peak RSS (MB) | peak device "
             "mem (MB) | quiet / all repeats | others' CPU share, median / max |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for c, mo in rows:
        for v, name, _ in VARIANTS:
            a = aggs.get((c, mo, v))
            if status[v] or not a:
                L.append(f"| {c} | {mo} | {name} | {status[v] or 'failed'} | | | | | |")
                continue
            fr = (f"{100 * a['foreign_median']:.0f}% / {100 * a['foreign_max']:.0f}%"
                  if a["foreign_median"] is not None else "–")
            L.append(f"| {c} | {mo} | {name} | {cell(a, '')} | {fmt(a['gflops'])} | {fmt(a['peak_rss_mb'], 0)} | "
                     f"{fmt(a.get('peak_device_mb'), 0)} | {a['n_quiet']}/{a['n_all']} | {fr} |")

    samp = [(c, mo) for c, mo in rows if mo.startswith("sample")]
    if samp:
        L.append("\n## Sampling: full time for one batch (seconds, lower is better)\n")
        L.append("| config | sampler | images | " + " | ".join(n for _, n, _ in VARIANTS) + " | note |")
        L.append("|---|---|---:|" + "---:|" * len(VARIANTS) + "---|")
        for c, mo in samp:
            cells, note, n_img = [], "", None
            for v, _, _ in VARIANTS:
                a = aggs.get((c, mo, v))
                if status[v] or not a:
                    cells.append(status[v] or "failed")
                    continue
                n_img = a["batch"]
                cells.append(fmt(a["sample_s"]) + (" (contended)" if a["contended"] else ""))
                if a.get("extrapolated"):
                    note = f"extrapolated from {a['steps_run']} of {a['sample_steps']} steps"
            label = "ancestral, 1000 steps" if mo == "sample-ancestral" else "DDIM, 50 steps"
            L.append(f"| {c} | {label} | {n_img or '–'} | " + " | ".join(cells) + f" | {note or 'measured'} |")

    if ratios:
        nr = st["rounds"]
        L.append("\n## Per-round ratios of the interleaved pairs (ddpm / PyTorch img/s)\n")
        L.append("| config | mode | device | " + " | ".join(f"round {i + 1}" for i in range(nr)) + " |")
        L.append("|---|---|---|" + "---:|" * nr)
        for (c, mo, dev), rt in sorted(ratios.items(), key=lambda kv: (rows.index(kv[0][:2]) if kv[0][:2] in rows
                                                                       else len(rows), kv[0][2])):
            per = {p["round"]: p for p in rt["per_round"]}
            cells = [(f"{per[i]['ratio']:.2f}" + ("" if per[i]["quiet"] else "*")) if i in per else "–"
                     for i in range(nr)]
            L.append(f"| {c} | {mo} | {dev} | " + " | ".join(cells) + " |")
        L.append("\n\\* a contended round (one of the pair had most repeats above the load threshold).")
    if meta.get("chart"):
        L.append(f"\n![ddpm vs PyTorch]({meta['chart']})")
    failed = meta.get("failures") or []
    if failed:
        L.append("\n## Failed runs\n")
        for f in failed[:20]:
            L.append(f"- round {f['round'] + 1} {f['variant']} {f['config']} {f['mode']}: rc {f['rc']}: "
                     f"{f['stderr'][-300:]}")
    Path(path).write_text("\n".join(L) + "\n")
    return L[1:n_header], L[n_header:n_summary]


BEGIN, END = "<!-- latest-figures:begin (written by compare.py --publish) -->", "<!-- latest-figures:end -->"


def publish(out_dir, meta, header, summary):
    """Copies results.md / chart.png / summary.json to benchmarks/results/latest.* and rewrites the
    "Latest figures" block of benchmarks/README.md (between the markers) with the summary table."""
    dst = HERE / "results"
    dst.mkdir(exist_ok=True)
    md = (out_dir / "results.md").read_text().replace("](chart.png)", "](latest.png)")
    (dst / "latest.md").write_text(md)
    shutil.copyfile(out_dir / "summary.json", dst / "latest.json")
    if meta.get("chart") and (out_dir / "chart.png").exists():
        shutil.copyfile(out_dir / "chart.png", dst / "latest.png")
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if BEGIN not in text or END not in text:
        log(f"publish: no latest-figures markers in {readme}; copied the files only")
        return
    demote = lambda l: "#" + l if l.lstrip("\n").startswith("## ") else l   # under README's "## Latest figures"
    block = [BEGIN, ""] + [l.rstrip("\n") for l in header if l.strip()] + [""] + [demote(l) for l in summary] + [""]
    block += ["Details (GFLOP/s, peak RSS, load per run, per-round ratios): [results/latest.md](results/latest.md)."]
    if meta.get("chart"):
        block += ["", "![ddpm vs PyTorch](results/latest.png)"]
    block += ["", END]
    head, rest = text.split(BEGIN, 1)
    readme.write_text(head + "\n".join(block) + rest.split(END, 1)[1])
    log(f"published to {dst.relative_to(REPO)}/latest.* and {readme.relative_to(REPO)}")


def chart_spec(meta, aggs, ratios, status):
    st, m, g = meta["settings"], meta["machine"], meta["git"]
    panels = []
    for c in st["configs"]:
        for mo in st["modes"]:
            if not any((c, mo, v) in aggs for v, _, _ in VARIANTS):
                continue
            sampling = mo.startswith("sample")
            bars = []
            for v, _, _ in VARIANTS:
                a = aggs.get((c, mo, v))
                if status[v] or not a:
                    bars.append(dict(na=status[v] or "failed"))
                elif sampling:   # seconds for the batch
                    n = a["batch"]
                    bars.append(dict(value=n / a["median"], lo=n / a["max"], hi=n / a["min"],
                                     label=fmt(n / a["median"]) + " s", contended=a["contended"]))
                else:
                    bars.append(dict(value=a["median"], lo=a["min"], hi=a["max"], label=fmt(a["median"]),
                                     contended=a["contended"]))
            notes = []
            for dev in ("CPU", "CUDA"):
                rt = ratios.get((c, mo, dev))
                if rt:
                    notes.append(f"ddpm / PyTorch {dev}: {rt['ratio']:.2f}x" + (" *" if rt["contended"] else ""))
            if sampling:
                a0 = next((aggs[(c, mo, v)] for v, _, _ in VARIANTS if (c, mo, v) in aggs), {})
                steps = "1000 ancestral steps" if mo == "sample-ancestral" else "DDIM-50"
                notes.append(f"{a0.get('batch')} images, {steps}" + (" (extrapolated)" if a0.get("extrapolated") else ""))
            title = f"{c} {mo}" if not sampling else f"{c} {'ancestral' if mo == 'sample-ancestral' else 'DDIM'}"
            panels.append(dict(title=title, unit="seconds per batch (lower is better)" if sampling else
                               "img/s (higher is better)", notes=notes, bars=bars))
    sub = [f"{meta['date'][:16]}  |  {m.get('cpu')} ({m.get('cores')} cores), GPU: {m.get('gpu') or 'none'}  |  "
           f"commit {g.get('commit')}{' + local changes' if g.get('dirty_files') else ''}",
           f"{st['threads']} threads, {st['precision']}, batch {st['batch']}, {st['rounds']} interleaved rounds, "
           f"PyTorch {meta.get('torch') or 'not found'}"]
    foot = [f"* contended: other processes used >= {100 * st['quiet']:.0f}% of the CPUs during most repeats; "
            "such bars are hatched and not comparable.",
            "Whiskers: min-max over the repeats used. Table and method: results.md next to this image."]
    return dict(title="ddpm vs PyTorch, end to end", subtitle=sub, footer=foot,
                series=[dict(name=n, color=list(col)) for _, n, col in VARIANTS], panels=panels)


def find_chart_tool(a, bench):
    for c in (a.chart_tool, bench.parent / "ddpm-chart" if bench else None,
              REPO / a.build_dir / "benchmarks" / "ddpm-chart"):
        if c and Path(c).exists():
            return Path(c)
    return None


def report(out_dir, meta, runs, chart_tool):
    q = meta["settings"]["quiet"]
    aggs, ratios = aggregate(runs, q), pair_ratios(runs, q)
    status = meta["status"]
    spec = chart_spec(meta, aggs, ratios, status)
    (out_dir / "chart.json").write_text(json.dumps(spec, indent=1))
    meta["chart"] = None
    if chart_tool and spec["panels"]:
        p = subprocess.run([str(chart_tool), str(out_dir / "chart.json"), str(out_dir / "chart.png")],
                           capture_output=True, text=True)
        if p.returncode == 0:
            meta["chart"] = "chart.png"
        else:
            log(f"ddpm-chart failed: {p.stderr.strip()}")
    elif not chart_tool:
        log("no ddpm-chart binary (build target ddpm-chart, or pass --build): wrote chart.json, no PNG")
    meta["failures"] = [dict(round=r["round"], variant=r["variant"], config=r["config"], mode=r["mode"], rc=r["rc"],
                             stderr=r.get("stderr", "")) for r in runs if r.get("rc") != 0]
    meta["markdown"] = write_markdown(out_dir / "results.md", meta, aggs, ratios, status)
    summ = dict({k: v for k, v in meta.items() if k != "markdown"}, aggregates=[dict(config=k[0], mode=k[1], variant=k[2], **v) for k, v in aggs.items()],
                ratios=[dict(config=k[0], mode=k[1], device=k[2], **v) for k, v in ratios.items()])
    (out_dir / "summary.json").write_text(json.dumps(summ, indent=1))
    return aggs, ratios


# ------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="mnist", help="comma list of mnist,manga32,anime64 (default mnist)")
    ap.add_argument("--modes", default="train,infer", help="comma list of " + ",".join(MODES))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (fresh processes each)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="train/infer batch")
    ap.add_argument("--samples", type=int, default=0,
                    help="sampling modes: images per batch (default 100 mnist, 64 manga32, 25 anime64)")
    ap.add_argument("--steps", type=int, default=0,
                    help="sampling modes: run this many steps and extrapolate (0 = all 1000 / 50)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-repeat-s", type=float, default=0.5)
    ap.add_argument("--max-measure-s", type=float, default=60.0,
                    help="per run: stop repeating after this much timed work (>= 3 repeats) when not enough quiet ones")
    ap.add_argument("--quiet", type=float, default=0.10,
                    help="a repeat is quiet when other processes used less than this share of the CPUs")
    ap.add_argument("--max-wait-s", type=float, default=20.0,
                    help="before each run, wait up to this long for a quiet machine (0 = do not wait)")
    ap.add_argument("--precision", default="fp32", help="CPU precision (ddpm's CPU backend: fp32 only)")
    ap.add_argument("--cuda-precision", default="fp32", help="precision of the CUDA runs (fp32, tf32, bf16)")
    ap.add_argument("--out-dir", default=None, help="default: runs/bench/<date>_<time> under the repository root")
    ap.add_argument("--build-dir", default="build/bench", help="where ddpm-bench is (relative to the repository root)")
    ap.add_argument("--build", action="store_true", help="configure and build ddpm-bench and ddpm-chart first")
    ap.add_argument("--jobs", type=int, default=2, help="build parallelism with --build")
    ap.add_argument("--ddpm-bench", default=None, help="path of the ddpm-bench binary (overrides --build-dir)")
    ap.add_argument("--chart-tool", default=None, help="path of the ddpm-chart binary")
    ap.add_argument("--torch-python", default=None, help="python interpreter with torch")
    ap.add_argument("--ref-dir", default=None, help="PyTorch reference (default ../shared/ref or $DDPM_REF_DIR)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-cuda", action="store_true")
    ap.add_argument("--no-cpu", action="store_true",
                    help="CUDA columns only: skip ddpm CPU and PyTorch CPU (a GPU machine's short run)")
    ap.add_argument("--timeout-s", type=float, default=7200.0, help="per run")
    ap.add_argument("--publish", action="store_true",
                    help="also copy the results to benchmarks/results/latest.{md,png,json} and rewrite the "
                         "'Latest figures' block of benchmarks/README.md")
    ap.add_argument("--report-only", default=None, metavar="DIR",
                    help="rebuild results.md, summary.json and the chart from DIR/runs.jsonl + DIR/meta.json")
    a = ap.parse_args(argv)
    a.configs = [c for c in a.configs.split(",") if c]
    a.modes = [m for m in a.modes.split(",") if m]
    for c in a.configs:
        if c not in DEFAULT_SAMPLES:
            ap.error(f"unknown config {c}")
    for m in a.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.report_only:
        out_dir = Path(a.report_only)
        meta = json.loads((out_dir / "meta.json").read_text())
        runs = [json.loads(l) for l in (out_dir / "runs.jsonl").read_text().splitlines() if l.strip()]
        bench = REPO / meta["ddpm_bench"] if meta.get("ddpm_bench") else None
        report(out_dir, meta, runs, find_chart_tool(a, bench))
        log(f"wrote {out_dir / 'results.md'}")
        if a.publish:
            publish(out_dir, meta, *meta["markdown"])
        return 0

    build_dir = REPO / a.build_dir
    if a.build:
        build(build_dir, a.jobs)
    bench = Path(a.ddpm_bench) if a.ddpm_bench else build_dir / "benchmarks" / "ddpm-bench"
    if not bench.exists():
        sys.exit(f"compare: no ddpm-bench at {bench}; build it (cmake --build {a.build_dir} --target ddpm-bench) "
                 "or pass --build")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    out_dir = Path(a.out_dir) if a.out_dir else REPO / "runs" / "bench" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"compare: writing to {out_dir}")

    torch_py, tinfo = (None, dict(error="--no-torch")) if a.no_torch else find_torch_python(a.torch_python)
    gpu = None if a.no_cuda else gpu_name()
    device = bool(gpu) or bool(tinfo.get("cuda"))
    status = {"ddpm-cpu": "n/a (skipped)" if a.no_cpu else ""}
    status["torch-cpu"] = ("n/a (skipped)" if a.no_cpu or a.no_torch else "" if torch_py else "n/a (no torch)")
    if a.no_cuda:
        status["ddpm-cuda"] = status["torch-cuda"] = "n/a (skipped)"
    else:
        status["ddpm-cuda"] = probe_ddpm_cuda(bench, device, a.cuda_precision)
        status["torch-cuda"] = ("n/a (no device)" if not device else "n/a (no torch)" if not torch_py else
                                "" if tinfo.get("cuda") else "n/a (torch without CUDA)")
    meta = dict(date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), machine=machine_info(),
                git=git_state(), command="python3 benchmarks/compare.py " + " ".join(
                    shlex.quote(relative(x)) for x in (sys.argv[1:] if argv is None else argv)),
                ddpm_bench=relative(bench), torch=tinfo.get("torch"),
                torch_python=torch_py and relative(torch_py) if torch_py != "/usr/bin/python3" else torch_py,
                status=status,
                settings=dict(configs=a.configs, modes=a.modes, rounds=a.rounds, threads=a.threads, batch=a.batch,
                              samples=a.samples, steps=a.steps, repeats=a.repeats, warmup=a.warmup,
                              min_repeat_s=a.min_repeat_s, max_measure_s=a.max_measure_s, quiet=a.quiet,
                              precision=a.precision, cuda_precision=a.cuda_precision))
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    active = [v for v, _, _ in VARIANTS if not status[v]]
    log(f"compare: {', '.join(NAME[v] for v in active)}; n/a: "
        + (", ".join(f"{NAME[v]} {s}" for v, s in status.items() if s) or "none"))

    runs = []
    t_all = time.perf_counter()
    with open(out_dir / "runs.jsonl", "a") as fout:
        for rd in range(a.rounds):
            for c in a.configs:
                for mo in a.modes:
                    order = active if rd % 2 == 0 else active[::-1]
                    for v in order:
                        pre = wait_quiet(a.quiet, a.max_wait_s)
                        cmd = command(a, v, c, mo, bench, torch_py)
                        r = run_one(cmd, a.threads, a.timeout_s)
                        r.update(round=rd, config=c, mode=mo, variant=v, foreign_cpu_before=pre,
                                 cmd=[Path(cmd[0]).name] + [relative(x) for x in cmd[1:]])
                        runs.append(r)
                        fout.write(json.dumps(r) + "\n")
                        fout.flush()
                        res = r["result"]
                        if r["rc"] == 0 and res:
                            fr = [f for f in (res.get("foreign_cpu") or []) if f is not None]
                            quiet_n = sum(1 for f in fr if f < a.quiet)
                            log(f"[round {rd + 1}/{a.rounds}] {c:8s} {mo:16s} {NAME[v]:13s} "
                                f"{res['img_per_s']:9.3f} img/s [{res['img_per_s_min']:.3f}-{res['img_per_s_max']:.3f}]"
                                f"  {quiet_n}/{len(fr)} quiet repeats (others max {100 * max(fr or [0]):.0f}%)"
                                f"  RSS {res.get('peak_rss_mb')} MB  {r['wall_s']:.0f}s")
                        else:
                            log(f"[round {rd + 1}/{a.rounds}] {c} {mo} {NAME[v]}: FAILED rc {r['rc']}: "
                                f"{r['stderr'][-300:]}")
    meta["total_wall_s"] = round(time.perf_counter() - t_all)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    aggs, ratios = report(out_dir, meta, runs, find_chart_tool(a, bench))
    for (c, mo, dev), rt in ratios.items():
        log(f"{c} {mo}: ddpm / PyTorch ({dev}) = {rt['ratio']:.2f}x"
            + (" (contended)" if rt["contended"] else f" over {rt['n_quiet']} quiet rounds"))
    log(f"wrote {out_dir / 'results.md'}" + (f" and {out_dir / 'chart.png'}" if meta.get("chart") else ""))
    if a.publish:
        publish(out_dir, meta, *meta["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
