#!/usr/bin/env bash
# Scaling of data-parallel training from 1 to 2 ranks on this machine (docs/distributed.md):
# the mnist U-Net on the Cpu backend with one thread per rank, the same global batch, runs
# interleaved round by round (1 rank; 2 ranks: overlapped, one blocking all-reduce, blocking per
# bucket, overlapped with Open MPI's mpi_yield_when_idle), one JSON line per run from dist_train --bench plus the 1-minute load
# average before the run. Summarise with tests/mpi/bench_summary.py.
#   usage: tests/mpi/bench_scaling.sh BUILD_DIR [rounds=5] [batch=32] [steps=10] > runs.jsonl
set -euo pipefail
build=${1:?build dir}; rounds=${2:-5}; batch=${3:-32}; steps=${4:-10}
dt="$build/tests/mpi/dist_train"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpiexec -n 2 --oversubscribe --bind-to none)
common=(--config mnist --threads 1 --batch "$batch" --steps "$steps" --warmup 2 --images 512 --bench)
run() {  # label, command...
  local label=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local json; json=$("$@" 2>/dev/null | grep '^{')
  echo "{\"label\": \"$label\", \"load1_before\": $load, \"result\": $json}"
}
for r in $(seq 1 "$rounds"); do
  run "1 rank" "$dt" "${common[@]}"
  run "2 ranks, overlapped buckets" "${mpi[@]}" "$dt" "${common[@]}" --overlap backward --bucket-kb 1024
  run "2 ranks, one blocking all-reduce" "${mpi[@]}" "$dt" "${common[@]}" --overlap none --bucket-kb 0
  run "2 ranks, blocking buckets" "${mpi[@]}" "$dt" "${common[@]}" --overlap none --bucket-kb 1024
  run "2 ranks, overlapped buckets, yield when idle" "${mpi[@]}" --mca mpi_yield_when_idle 1 "$dt" "${common[@]}" --overlap backward --bucket-kb 1024
done
