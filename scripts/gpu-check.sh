#!/usr/bin/env bash
# scripts/gpu-check.sh — prove the CUDA backend in one short run on a GPU machine.
#
#   scripts/gpu-check.sh --build-only   # here (nvcc, no GPU needed): build and pack
#   scripts/gpu-check.sh --run          # on the GPU machine, from the repository root
#
# --build-only configures build/gpu-check (the gpu-strict preset: the configure fails without the
# CUDA backend), builds ddpm_tests_cuda (+ ddpm_tests_nccl when NCCL is found), ddpm-bench,
# ddpm-chart and the examples mnist, anime_faces and ddpm-eval, and packs them into build/gpu-pack
# (git-ignored) with every shared library they load that a bare CUDA 13 machine lacks (oneTBB,
# giflib, OpenMPI, cudart, ...: all but the base system's glibc/libstdc++/zlib, the driver and
# cuBLAS/NCCL, which are large and on that machine), plus ../shared/ref (the PyTorch reference). Fails if the pack is
# over 60 MB. Each binary gets a wrapper in bin/ that sets LD_LIBRARY_PATH for it alone, so that
# python3 (PyTorch) never sees the packed libraries.
#
# --run (under 6 minutes on an H200), everything into one folder: --out DIR, else $OUT, else
# runs/gpu-check/<date>. Steps, each with its own time limit:
#   1. the strict GPU tests (DDPM_REQUIRE_GPU=1: no device is a failure), again the model tests
#      with a 64 KiB chunk budget (every conv/attention call split), and the NCCL test, while
#      compute-sanitizer memcheck runs the op tests ("cuda ops:*") beside them;
#   2. benchmarks/compare.py on CUDA only: ddpm vs the PyTorch reference (../shared/ref, the models
#      of bench_gpu.py) for mnist, manga32 and anime64 (train, batch 64; mnist also batch 256 and
#      ancestral sampling of 100 digits, 100 steps extrapolated to 1000); bench_gpu.py's bf16
#      autocast training row for mnist at batch 256;
#   3. the MNIST example trained 2 minutes with --backend cuda, 100 digits sampled (1000 ancestral
#      steps) and scored by ddpm-eval (classifier accuracy, FD against real digits).
# Under $OUT (the device tool brings back at most 8 files), the folder holds summary.md,
# gpu-check.tar.gz (every log and result) and grid.png; elsewhere the logs stay as files too.
# Exit status: 0 when every step passed, else 1 (summary.md says which failed).
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mode=""
build_dir=build/gpu-check
pack=build/gpu-pack
out=""
jobs=2
limit_mb=60
ref_src=../shared/ref
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) mode=build ;;
    --run) mode=run ;;
    --build-dir) build_dir=$2; shift ;;
    --pack) pack=$2; shift ;;
    --out) out=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --ref) ref_src=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (--build-only or --run; --build-dir, --pack, --out, --jobs, --ref)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$mode" ] || { echo "gpu-check: say --build-only (here) or --run (on the GPU machine)" >&2; exit 2; }

# ============================================================================ build and pack
if [ "$mode" = build ]; then
  set -e
  nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
  [ -x "$nvcc" ] || { echo "gpu-check: no nvcc at $nvcc (set CUDACXX)" >&2; exit 1; }
  [ -f "$ref_src/unet.py" ] || { echo "gpu-check: no PyTorch reference at $ref_src (unet.py; --ref DIR)" >&2; exit 1; }
  cmake --preset gpu-strict -B "$build_dir" -DCMAKE_CUDA_COMPILER="$nvcc" >"$build_dir.configure.log" 2>&1 ||
    { tail -20 "$build_dir.configure.log"; echo "gpu-check: configure failed ($build_dir.configure.log)" >&2; exit 1; }
  targets=(ddpm_tests_cuda ddpm-bench ddpm-chart mnist anime_faces ddpm-eval)
  if ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q '^ddpm_tests_nccl:'; then targets+=(ddpm_tests_nccl); fi
  echo "gpu-check: building ${targets[*]} in $build_dir (-j$jobs)"
  cmake --build "$build_dir" -j "$jobs" --target "${targets[@]}"
  rm -rf "$pack"
  mkdir -p "$pack/bin" "$pack/exe" "$pack/lib" "$pack/ref"
  declare -A where=([ddpm_tests_cuda]=tests/cuda [ddpm_tests_nccl]=tests/mpi [ddpm-bench]=benchmarks
                    [ddpm-chart]=benchmarks [mnist]=examples/mnist [anime_faces]=examples/anime_faces
                    [ddpm-eval]=examples/eval)
  for t in "${targets[@]}"; do
    cp "$build_dir/${where[$t]}/$t" "$pack/exe/$t"
    strip --strip-unneeded "$pack/exe/$t"
    # a wrapper: the packed libraries for this program only
    cat >"$pack/bin/$t" <<EOF
#!/usr/bin/env bash
d=\$(cd "\$(dirname "\$0")/.." && pwd)
export LD_LIBRARY_PATH="\$d/lib\${DDPM_GPU_LIBS:+:\$DDPM_GPU_LIBS}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$d/exe/$t" "\$@"
EOF
    chmod +x "$pack/bin/$t"
  done
  # Shared libraries: all that ldd resolves here except the base system's (glibc, libstdc++,
  # libgcc_s, zlib: any machine with python3 has them, in versions at least Debian 12's; packing
  # older copies would shadow them for compute-sanitizer), the driver, and the CUDA libraries the
  # GPU machine has (cuBLAS ~0.5 GB, NCCL 0.2 GB: from its toolkit or PyTorch's wheels). --run
  # checks with ldd that everything resolves there.
  skip='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux-x86-64|linux-vdso|libstdc\+\+|libgcc_s|libz|libcuda|libcublas|libcublasLt|libnccl)\.so'
  for f in "$pack"/exe/*; do
    ldd "$f" | awk '/=> \//{print $1" "$3}'
  done | sort -u | while read -r name path; do
    if [[ "$name" =~ $skip ]]; then continue; fi
    cp -L "$path" "$pack/lib/$name"
  done
  strip --strip-unneeded "$pack"/lib/* 2>/dev/null || true
  cp "$ref_src"/*.py "$pack/ref/"
  [ -f "$ref_src/README.md" ] && cp "$ref_src/README.md" "$pack/ref/"
  {
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git rev-parse --short=12 HEAD)$(git diff --quiet -- include tests benchmarks examples || echo ' (with uncommitted changes)')"
    echo "nvcc: $("$nvcc" --version | tail -1)"
    echo "compiler: $(c++ --version | head -1)"
    echo; echo "files (bytes):"
    (cd "$pack" && find . -type f -printf '%s %p\n' | sort -k2)
  } >"$pack/MANIFEST.txt"
  bytes=$(du -sb "$pack" | cut -f1)
  mb=$(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1e6}')
  echo "gpu-check: pack $pack: $mb MB ($bytes bytes), $(ls "$pack/lib" | wc -l) libraries, limit $limit_mb MB"
  if [ "$bytes" -gt $((limit_mb * 1000 * 1000)) ]; then
    echo "gpu-check: FAILED: the pack is over $limit_mb MB" >&2
    exit 1
  fi
  echo "gpu-check: on the GPU machine: scripts/gpu-check.sh --run   (carry: $pack; benchmarks/cuda/README.md)"
  exit 0
fi

# ============================================================================ run on the GPU
t0=$(date +%s)
[ -x "$pack/bin/ddpm_tests_cuda" ] || { echo "gpu-check: no pack at $pack: run --build-only first and carry it" >&2; exit 1; }
pack=$(cd "$pack" && pwd)
stamp=$(date -u +%Y-%m-%d_%H%M%S)
final=${out:-${OUT:-runs/gpu-check/$stamp}}
mkdir -p "$final"
final=$(cd "$final" && pwd)
logs="$final/logs"
mkdir -p "$logs"
summary="$final/summary.md"
fails=0
step() {  # step NAME STATUS DETAIL
  printf '| %s | %s | %s |\n' "$1" "$2" "$3" >>"$summary"
  [ "$2" = pass ] || [ "$2" = info ] || fails=$((fails + 1))
  echo "gpu-check: [$(( $(date +%s) - t0 )) s] $1: $2 $3"
}
elapsed() { echo $(( $(date +%s) - t0 )); }

# The CUDA libraries the pack leaves out: the toolkit's, else PyTorch's wheels (nvidia/*/lib).
py=python3
extra=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib; do
  [ -d "$d" ] && extra="$extra:$d"
done
wheels=$($py - <<'EOF' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
dirs = set()
for r in roots:
    for f in glob.glob(os.path.join(r, "**", "lib", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
EOF
)
[ -n "$wheels" ] && extra="$extra:$wheels"
export DDPM_GPU_LIBS="${extra#:}"

{
  echo "# gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  head -1 "$pack/MANIFEST.txt"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3 || echo "nvidia-smi: not found"
  echo "python3: $($py -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
  echo '```'
  echo
  echo '| step | result | detail |'
  echo '|---|---|---|'
} >"$summary"
nvidia-smi >"$logs/nvidia-smi.txt" 2>&1

missing=0
for f in "$pack"/exe/*; do
  LD_LIBRARY_PATH="$pack/lib:$DDPM_GPU_LIBS" ldd "$f" >"$logs/ldd-$(basename "$f").txt" 2>&1
  if grep -q 'not found' "$logs/ldd-$(basename "$f").txt"; then
    missing=1
    echo "$(basename "$f"): $(grep 'not found' "$logs/ldd-$(basename "$f").txt" | tr -s ' \t' ' ' | tr '\n' ';')" >>"$logs/ldd-missing.txt"
  fi
done
if [ $missing = 1 ]; then step "shared libraries" FAIL "$(head -c 300 "$logs/ldd-missing.txt")"; else step "shared libraries" pass "every packed program resolves all its libraries"; fi

B="$pack/bin"
export DDPM_REQUIRE_GPU=1

# ---------------------------------------------------------------- 1. tests and memcheck
(
  if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    LD_LIBRARY_PATH="$pack/lib:$DDPM_GPU_LIBS" timeout 200 "$cs" --tool memcheck \
      --error-exitcode 99 "$pack/exe/ddpm_tests_cuda" -tc='cuda ops:*' >"$logs/memcheck.log" 2>&1
    echo $? >"$logs/memcheck.rc"
  else
    echo "compute-sanitizer not found" >"$logs/memcheck.log"; echo 127 >"$logs/memcheck.rc"
  fi
) &
memcheck_pid=$!
timeout 200 "$B/ddpm_tests_cuda" -d >"$logs/tests_cuda.log" 2>&1
rc=$?
res=$(grep -E '^\[doctest\] (test cases|assertions)' "$logs/tests_cuda.log" | tr -s ' ' | tr '\n' ' ')
[ $rc = 0 ] && step "ddpm_tests_cuda (strict)" pass "$res" || step "ddpm_tests_cuda (strict)" FAIL "rc $rc: $res $(grep -m3 -E 'ERROR|FAILED|error' "$logs/tests_cuda.log" | tr '\n' ' ' | head -c 400)"
DDPM_CUDA_CHUNK_BYTES=65536 timeout 90 "$B/ddpm_tests_cuda" -tc='cuda model:*' >"$logs/tests_cuda_chunked.log" 2>&1
rc=$?
res=$(grep -E '^\[doctest\] (test cases|assertions)' "$logs/tests_cuda_chunked.log" | tr -s ' ' | tr '\n' ' ')
[ $rc = 0 ] && step "model tests, DDPM_CUDA_CHUNK_BYTES=65536" pass "$res" || step "model tests, DDPM_CUDA_CHUNK_BYTES=65536" FAIL "rc $rc: $res $(grep -m3 -E 'ERROR|FAILED|error' "$logs/tests_cuda_chunked.log" | tr '\n' ' ' | head -c 400)"
# a bad DDPM_CUDA_CHUNK_BYTES must fail with an error naming the variable
DDPM_CUDA_CHUNK_BYTES=64k timeout 60 "$B/ddpm_tests_cuda" -tc='cuda ops: conv2d*' >"$logs/tests_cuda_bad_chunk.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q 'DDPM_CUDA_CHUNK_BYTES="64k" is not a positive integer' "$logs/tests_cuda_bad_chunk.log"; then
  step "DDPM_CUDA_CHUNK_BYTES=64k rejected" pass "rc $rc, the error names the variable"
else
  step "DDPM_CUDA_CHUNK_BYTES=64k rejected" FAIL "rc $rc: $(grep -m2 -E 'ERROR|error' "$logs/tests_cuda_bad_chunk.log" | tr '\n' ' ' | head -c 300)"
fi
if [ -x "$B/ddpm_tests_nccl" ]; then
  timeout 60 "$B/ddpm_tests_nccl" >"$logs/tests_nccl.log" 2>&1
  rc=$?
  res=$(grep -E '^\[doctest\] (test cases|assertions)' "$logs/tests_nccl.log" | tr -s ' ' | tr '\n' ' ')
  [ $rc = 0 ] && step "ddpm_tests_nccl (strict)" pass "$res" || step "ddpm_tests_nccl (strict)" FAIL "rc $rc: $res $(tail -2 "$logs/tests_nccl.log" | tr '\n' ' ' | head -c 300)"
else
  step "ddpm_tests_nccl" info "not in the pack (NCCL not found at build time)"
fi
wait $memcheck_pid
rc=$(cat "$logs/memcheck.rc" 2>/dev/null || echo 1)
res="$(grep -m1 -E 'ERROR SUMMARY' "$logs/memcheck.log") $(grep -E '^\[doctest\] test cases' "$logs/memcheck.log" | tr -s ' ')"
if [ "$rc" = 0 ]; then
  step "compute-sanitizer memcheck, cuda ops:*" pass "$res"
elif grep -q -E 'Device not supported|not found' "$logs/memcheck.log"; then
  # e.g. under gVisor: the tool refuses the device. Not a pass: memcheck is still to be done.
  step "compute-sanitizer memcheck, cuda ops:*" UNAVAILABLE "rc $rc: $(head -3 "$logs/memcheck.log" | tr '\n' ' ' | head -c 300)"
else
  step "compute-sanitizer memcheck, cuda ops:*" FAIL "rc $rc: $res $(grep -m2 -E 'Invalid|error' "$logs/memcheck.log" | tr '\n' ' ' | head -c 300)"
fi
unset DDPM_REQUIRE_GPU

# ---------------------------------------------------------------- 2. benchmarks vs PyTorch
cmp() {  # cmp NAME PAIRS ARGS...: compare.py, CUDA columns only, into logs/NAME; PAIRS ratios expected
  local name=$1 pairs=$2; shift 2
  PYTHONUNBUFFERED=1 timeout 150 $py benchmarks/compare.py --no-cpu --ddpm-bench "$B/ddpm-bench" \
    --chart-tool "$B/ddpm-chart" --torch-python "$py" --ref-dir "$pack/ref" --out-dir "$logs/$name" \
    --rounds 1 --repeats 3 --warmup 2 --min-repeat-s 0.3 --max-wait-s 0 --quiet 1.0 "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  local r
  r=$(grep -E 'ddpm / PyTorch|img/s' "$logs/$name.log" | sed 's/^\[round[^]]*\] *//' | tr -s ' ' | tr '\n' ';' | head -c 700)
  # compare.py exits 0 also when a column is n/a: a pass needs every ddpm/PyTorch CUDA ratio
  local got
  got=$(grep -c 'ddpm / PyTorch (CUDA)' "$logs/$name.log")
  if [ $rc = 0 ] && [ "$got" -ge "$pairs" ]; then
    step "compare.py $name" pass "$r"
  else
    step "compare.py $name" FAIL "rc $rc, $got of $pairs CUDA ratios: $r $(grep -m1 'n/a' "$logs/$name.log" | head -c 200) $(tail -1 "$logs/$name.log" | head -c 200)"
  fi
}
cmp train-b64 3 --configs mnist,manga32,anime64 --modes train --batch 64
# batch 256 training, and ancestral sampling of 100 digits timed over 100 steps and extrapolated to
# 1000 (the example below times the full 1000 steps)
cmp mnist-b256 2 --configs mnist --modes train,sample-ancestral --batch 256 --samples 100 --steps 100
PYTHONUNBUFFERED=1 timeout 60 $py "$pack/ref/bench_gpu.py" --configs mnist --modes bf16 --batch-sizes 256 \
  --only train --warmup 2 --repeats 3 --out "$logs/bench_gpu.json" --md "$logs/bench_gpu.md" >"$logs/bench_gpu.log" 2>&1
rc=$?
[ $rc = 0 ] && step "bench_gpu.py mnist bf16 autocast, batch 256" info "$(grep -m3 -iE 'img/s|train' "$logs/bench_gpu.md" 2>/dev/null | tr -s ' ' | tr '\n' ' ' | head -c 400)" ||
  step "bench_gpu.py mnist bf16 autocast, batch 256" FAIL "rc $rc: $(tail -2 "$logs/bench_gpu.log" | tr '\n' ' ' | head -c 300)"

# ---------------------------------------------------------------- 3. MNIST: train, sample, score
left=$(( 330 - $(elapsed) ))
minutes=2
if [ $left -lt 150 ]; then minutes=$(awk -v s=$((left - 40)) 'BEGIN{m=s/60; if (m < 0.5) m = 0.5; printf "%.2f", m}'); fi
mn="$logs/mnist"
mkdir -p "$mn"
timeout $(awk -v m="$minutes" 'BEGIN{printf "%d", m*60 + 60}') "$B/mnist" --backend cuda train --data data/mnist10k \
  --out "$mn" --minutes "$minutes" --batch 256 --sample-every 0 --per-class 1 --record-every 0 >"$logs/mnist_train.log" 2>&1
rc=$?
res=$(grep -iE 'step|img/s|loss' "$logs/mnist_train.log" | tail -2 | tr -s ' ' | tr '\n' ' ' | head -c 300)
[ $rc = 0 ] && step "mnist train --backend cuda, $minutes min" pass "$res" || step "mnist train --backend cuda, $minutes min" FAIL "rc $rc: $(tail -3 "$logs/mnist_train.log" | tr '\n' ' ' | head -c 400)"
if [ -f "$mn/checkpoint.safetensors" ]; then
  timeout 60 "$B/mnist" --backend cuda sample --checkpoint "$mn/checkpoint.safetensors" --out "$mn/sample" \
    --sampler ancestral --sample-steps 0 --per-class 10 --record-every 0 >"$logs/mnist_sample.log" 2>&1
  rc=$?
  [ $rc = 0 ] && step "mnist sample, 100 digits, 1000 ancestral steps" pass "$(grep -m1 sampled "$logs/mnist_sample.log")" ||
    step "mnist sample, 100 digits, 1000 ancestral steps" FAIL "rc $rc: $(tail -3 "$logs/mnist_sample.log" | tr '\n' ' ' | head -c 300)"
  if [ -f "$mn/sample/grid.png" ]; then
    cp "$mn/sample/grid.png" "$final/grid.png"
    timeout 60 "$B/ddpm-eval" score --classifier data/classifiers/mnist_classifier.safetensors \
      --samples "$mn/sample/grid.png" --grid-rows-are-classes --real data/mnist10k >"$logs/mnist_eval.log" 2>&1
    rc=$?
    [ $rc = 0 ] && step "ddpm-eval score" pass "$(tail -4 "$logs/mnist_eval.log" | tr -s ' ' | tr '\n' ' ' | head -c 400)" ||
      step "ddpm-eval score" FAIL "rc $rc: $(tail -3 "$logs/mnist_eval.log" | tr '\n' ' ' | head -c 300)"
  else
    step "ddpm-eval score" FAIL "no $mn/sample/grid.png"
  fi
else
  step "mnist sample" FAIL "no checkpoint after training"
fi

# ---------------------------------------------------------------- the folder
total=$(elapsed)
{
  echo
  echo "total $total s; $fails step(s) failed. Every log: gpu-check.tar.gz (logs/)."
} >>"$summary"
tar czf "$final/gpu-check.tar.gz" -C "$final" logs
if [ -n "${OUT:-}" ] && [ "$final" = "$(cd "$OUT" && pwd)" ]; then
  rm -rf "$logs"  # the device tool brings back 8 files at most: summary.md, the archive, grid.png
fi
cat "$summary"
[ $fails = 0 ]
