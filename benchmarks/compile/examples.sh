#!/usr/bin/env bash
# Times the compile of every C++ translation unit of the examples (mnist, anime_faces, the shared
# model units examples/common/model_*.cpp, custom_schedule, forward_process, ddpm-eval), one at a
# time, with the exact command CMake uses (from <build-dir>/compile_commands.json). Prints one
# line per unit: wall and user seconds. Budget: < 60 s per unit on
# the 2-core development machine (the mnist example used to be one unit of ~100 s of CPU).
#
# Usage: benchmarks/compile/examples.sh [build-dir (default build/release)]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
[ -f "$build/compile_commands.json" ] || { echo "no $build/compile_commands.json: configure first" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 - "$build" "$out" <<'PY'
import json, os, shlex, subprocess, sys, time, resource
build, out = sys.argv[1], sys.argv[2]
cmds = json.load(open(os.path.join(build, "compile_commands.json")))
rows = []
for c in cmds:
    f = os.path.relpath(c["file"], os.getcwd())
    if not f.startswith("examples/") or not f.endswith(".cpp"):
        continue
    args = shlex.split(c["command"])
    i = args.index("-o")
    args[i + 1] = os.path.join(out, "tu.o")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(args, cwd=c["directory"], capture_output=True, text=True)
    wall = time.time() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        print(p.stderr[-2000:], file=sys.stderr)
        sys.exit(f"compile of {f} failed")
    rows.append((f, wall, r1.ru_utime - r0.ru_utime))
print("| translation unit | wall s | user s |")
print("|---|---:|---:|")
for f, w, u in rows:
    print(f"| {f} | {w:.1f} | {u:.1f} |")
PY
