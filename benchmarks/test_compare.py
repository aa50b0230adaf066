#!/usr/bin/env python3
"""Fast checks of benchmarks/compare.py (any python3, no torch, no build needed; ~1 s):
aggregation over quiet / contended repeats, interleaved per-round ratios, n/a columns, and a whole
compare run driven by fake ddpm-bench and torch tools. With DDPM_CHART=path/to/ddpm-chart the chart
PNG is drawn too.

    python3 benchmarks/test_compare.py
"""

import json
import os
import stat
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

FAKE = r'''#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
if args and args[0].endswith("torch_bench.py"):
    args = args[1:]
    if "--probe" in args:
        print(json.dumps({"tool": "torch", "torch": "9.9-fake", "cuda": False}))
        sys.exit(0)
    tool, dev = "torch", args[args.index("--device") + 1]
else:
    tool, dev = "ddpm-bench", args[args.index("--backend") + 1]
if dev == "cuda":
    sys.exit(3)
get = lambda k: args[args.index(k) + 1]
mode, batch = get("--mode"), int(get("--batch"))
base = {"train": 60.0, "infer": 150.0, "sample-ddim": 1.5, "sample-ancestral": 0.08}[mode]
v = base if tool == "ddpm-bench" else base / 1.25
reps = [v * 0.98, v, v * 1.02]
res = {"tool": tool, "config": get("--config"), "mode": mode, "backend": dev, "threads": 2, "batch": batch,
       "params": 1, "img_per_s": v, "img_per_s_min": reps[0], "img_per_s_max": reps[2], "gflops": v * 0.55,
       "peak_rss_mb": 100, "iterations": 3, "img_per_s_repeats": reps, "foreign_cpu": [0.01, 0.02, 0.5]}
if mode.startswith("sample"):
    res.update(sample_steps=50, steps_run=5, extrapolated=True)
print(json.dumps(res))
'''


def run(variant, rnd, vals, foreign, config="mnist", mode="train"):
    return dict(rc=0, variant=variant, round=rnd, config=config, mode=mode, foreign_cpu_process=None,
                result=dict(img_per_s=sorted(vals)[len(vals) // 2], img_per_s_min=min(vals), img_per_s_max=max(vals),
                            gflops=1.0 * sorted(vals)[len(vals) // 2], img_per_s_repeats=vals, foreign_cpu=foreign,
                            peak_rss_mb=10, batch=64))


class Aggregation(unittest.TestCase):
    def test_quiet_repeats_only(self):
        runs = [run("ddpm-cpu", 0, [10, 11, 2], [0.0, 0.05, 0.9]), run("ddpm-cpu", 1, [12, 1, 1], [0.01, 0.8, 0.8])]
        a = compare.aggregate(runs, 0.1)[("mnist", "train", "ddpm-cpu")]
        self.assertFalse(a["contended"])
        self.assertEqual((a["n_quiet"], a["n_all"]), (3, 6))
        self.assertEqual(a["median"], 11)
        self.assertEqual((a["min"], a["max"]), (10, 12))

    def test_contended_fallback(self):
        runs = [run("torch-cpu", 0, [3, 4, 5], [0.5, 0.6, 0.05])]
        a = compare.aggregate(runs, 0.1)[("mnist", "train", "torch-cpu")]
        self.assertTrue(a["contended"])
        self.assertEqual(a["median"], 4)

    def test_ratios_are_per_round_and_prefer_quiet_rounds(self):
        runs = [run("ddpm-cpu", 0, [20, 20, 20], [0, 0, 0]), run("torch-cpu", 0, [10, 10, 10], [0, 0, 0]),
                run("ddpm-cpu", 1, [30, 30, 30], [0, 0, 0]), run("torch-cpu", 1, [10, 10, 10], [0.9, 0.9, 0.9]),
                run("ddpm-cpu", 2, [22, 22, 22], [0, 0, 0]), run("torch-cpu", 2, [10, 10, 10], [0, 0, 0])]
        rt = compare.pair_ratios(runs, 0.1)[("mnist", "train", "CPU")]
        self.assertEqual((rt["n_quiet"], rt["n"]), (2, 3))
        self.assertAlmostEqual(rt["ratio"], 2.1)
        self.assertFalse(rt["contended"])

    def test_unpaired_rounds_give_no_ratio(self):
        runs = [run("ddpm-cpu", 0, [20], [0])]
        self.assertEqual(compare.pair_ratios(runs, 0.1), {})


class EndToEnd(unittest.TestCase):
    def test_fake_tools(self):
        with tempfile.TemporaryDirectory() as d:
            fake = Path(d) / "fake"
            fake.write_text(FAKE)
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
            compare.gpu_name = lambda: None          # as on a machine without a GPU
            out = Path(d) / "out"
            argv = ["--ddpm-bench", str(fake), "--torch-python", str(fake), "--rounds", "2", "--max-wait-s", "0",
                    "--modes", "train,infer,sample-ddim", "--steps", "5", "--out-dir", str(out)]
            chart = os.environ.get("DDPM_CHART")
            chart = chart if chart and Path(chart).exists() else None
            if chart:
                argv += ["--chart-tool", chart]
            else:
                argv += ["--chart-tool", str(Path(d) / "missing")]
            self.assertEqual(compare.main(argv), 0)
            md = (out / "results.md").read_text()
            self.assertIn("| mnist | train | 59.4 | 47.5 | 1.25x (2/2 rounds quiet) | n/a (no device) | n/a (no device) |",
                          md)
            self.assertIn("extrapolated from 5 of 50 steps", md)
            self.assertNotIn(d, md)                   # no machine paths in the report
            runs = [json.loads(l) for l in (out / "runs.jsonl").read_text().splitlines()]
            self.assertEqual(len(runs), 2 * 3 * 2)
            order = [r["variant"] for r in runs if r["mode"] == "train"]
            self.assertEqual(order, ["ddpm-cpu", "torch-cpu", "torch-cpu", "ddpm-cpu"])   # A B, B A
            spec = json.loads((out / "chart.json").read_text())
            self.assertEqual(len(spec["panels"]), 3)
            self.assertEqual(spec["panels"][0]["bars"][2]["na"], "n/a (no device)")
            if chart:
                self.assertTrue((out / "chart.png").exists())
            # the report can be rebuilt from the recorded runs, and published into a README block
            here = Path(d) / "benchmarks"
            here.mkdir()
            (here / "README.md").write_text(f"# B\n\nintro\n\n{compare.BEGIN}\nold\n{compare.END}\n\ntail\n")
            saved, compare.HERE, compare.REPO = (compare.HERE, compare.REPO), here, Path(d)
            try:
                self.assertEqual(compare.main(["--report-only", str(out), "--publish",
                                               "--chart-tool", chart or "missing"]), 0)
            finally:
                compare.HERE, compare.REPO = saved
            self.assertEqual((out / "results.md").read_text().count("| mnist | train |"), 6)
            readme = (here / "README.md").read_text()
            self.assertNotIn("\nold\n", readme)
            self.assertTrue(readme.startswith("# B\n\nintro\n\n") and readme.endswith("\n\ntail\n"))
            self.assertIn("| mnist | train | 59.4 | 47.5 |", readme)
            self.assertTrue((here / "results" / "latest.md").exists())

    def test_no_cpu_runs_only_the_cuda_columns(self):
        # a fake GPU machine: both tools run on cuda; --no-cpu (scripts/gpu-check.sh) skips the CPU
        fake_cuda = FAKE.replace('if dev == "cuda":\n    sys.exit(3)\n', "").replace(
            '"cuda": False', '"cuda": True')
        self.assertNotEqual(fake_cuda, FAKE)
        with tempfile.TemporaryDirectory() as d:
            fake = Path(d) / "fake"
            fake.write_text(fake_cuda)
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
            saved = compare.gpu_name
            compare.gpu_name = lambda: "Fake GPU"
            try:
                out = Path(d) / "out"
                argv = ["--ddpm-bench", str(fake), "--torch-python", str(fake), "--rounds", "1", "--max-wait-s", "0",
                        "--modes", "train", "--no-cpu", "--out-dir", str(out), "--chart-tool", str(Path(d) / "missing")]
                self.assertEqual(compare.main(argv), 0)
            finally:
                compare.gpu_name = saved
            runs = [json.loads(l) for l in (out / "runs.jsonl").read_text().splitlines()]
            self.assertEqual(sorted(r["variant"] for r in runs), ["ddpm-cuda", "torch-cuda"])
            md = (out / "results.md").read_text()
            self.assertIn("n/a (skipped)", md)


if __name__ == "__main__":
    unittest.main()
