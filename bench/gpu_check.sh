#!/usr/bin/env bash
# kcomp's GPU check, for a machine with an NVIDIA GPU and no network (its Python has numpy,
# jinja2, pybind11, scikit-build-core, cmake, ninja, pytest and PyTorch):
#   bench/gpu_check.sh LOGDIR
# installs kcomp without downloads, builds the CUDA kernel library for the GPU, runs the CUDA
# tests and the GPU benchmarks against PyTorch, prints a short table last, and writes full logs
# to LOGDIR. Keras 2.3.1 wheels in ./.whl (if there) are installed first, for the Keras tests.
# KCOMP_GPU_TEST_SECONDS / KCOMP_GPU_FUZZ_SECONDS / KCOMP_GPU_BENCH_SECONDS cap the three long
# steps (default 200 / 60 / 120: the whole check fits in 8 minutes). The fuzzing step runs
# tests/graph_fuzz.py on the GPU in parallel processes, on fresh seeds from KCOMP_GPU_FUZZ_SEED
# (default 100000; each process takes the next 1000).
set -uo pipefail
LOG=$(mkdir -p "${1:?usage: bench/gpu_check.sh LOGDIR}" && cd "$1" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export KCOMP_CACHE_DIR=${KCOMP_CACHE_DIR:-$(mktemp -d)/kcomp-cache}
export KCOMP_TEST_CACHE_DIR=$KCOMP_CACHE_DIR  # the tests reuse the library built here
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
status=0
step() { echo "== $1 ($(date -u +%H:%M:%S))"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG/device.txt"
nvcc --version | tail -1 | tee -a "$LOG/device.txt"

step "install kcomp (no downloads)"
if ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps "$REPO"/.whl/*.whl >"$LOG/install.log" 2>&1
fi
(cd "$REPO" && $PY -m pip install --no-build-isolation --no-deps . >>"$LOG/install.log" 2>&1) ||
  { tail -40 "$LOG/install.log"; exit 1; }
cd "$(mktemp -d)"  # import the installed kcomp, not the source tree

step "CUDA kernel library"
$PY -c "
import time; t = time.perf_counter()
from kcomp.cuda import runtime as r
r.library(); print(r.device_info(), f'built/loaded in {time.perf_counter() - t:.1f} s')
" 2>&1 | tee "$LOG/library.log" || status=1

step "CUDA tests"
timeout "${KCOMP_GPU_TEST_SECONDS:-200}" $PY -m pytest -q -p no:cacheprovider -n 12 -m cuda "$REPO/tests/cuda" -rfE >"$LOG/tests.log" 2>&1 || status=1
tail -25 "$LOG/tests.log"

step "CUDA graph fuzzing"
first=${KCOMP_GPU_FUZZ_SEED:-100000}
for i in $(seq 0 $(( $(nproc) * 3 / 4 - 1 ))); do
  s=$((first + 1000 * i))
  timeout $(( ${KCOMP_GPU_FUZZ_SECONDS:-60} + 120 )) $PY "$REPO/tests/graph_fuzz.py" --device cuda --seeds "$s-$((s + 999))" \
    --seconds "${KCOMP_GPU_FUZZ_SECONDS:-60}" >"$LOG/fuzz.$i.part" 2>&1 &
done
wait
cat "$LOG"/fuzz.*.part >"$LOG/fuzz.log" && rm "$LOG"/fuzz.*.part
grep -h "graphs failed" "$LOG/fuzz.log" | awk '{n += $1; m += $3} END {print n " of " m " graphs failed"}'
grep -q "FAILED" "$LOG/fuzz.log" && { grep -h "graphs failed:" "$LOG/fuzz.log"; status=1; }

step "GPU benchmarks"
timeout "${KCOMP_GPU_BENCH_SECONDS:-120}" $PY "$REPO/bench/gpu_bench.py" --out "$LOG" 2>&1 | tee "$LOG/bench.log" | tail -30 || status=1
step "done"
exit $status
