#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, builds faiss-gmm with CUDA,
# runs the GPU-labelled tests and the benchmarks whose figures the READMEs
# quote, each step under a time limit, one log per step and one summary line
# per step (exit status, seconds) in $OUT/summary.log. CI has no GPU: this is
# what a GPU machine runs after a change to kernels/ or faiss_gmm/gpu/.
#
# usage: bash scripts/gpu-check.sh [STEP ...]
#   steps (default: tests full bench):
#     tests    ctest -L gpu (every GPU test), then test_gpu_em_full and
#              test_gpu_em run alone so that their printed errors are logged
#     full     bench_em --cov full on the issue-17 shapes (tf32, fp32)
#     bench    bench_em (bf16, Hopper E-step), bench_search (synthetic, list
#              pruning on / off), faiss_gmm_eval --gpu --prune-sweep
#     scale    bench_scale at its defaults (100M x 96; about 8 minutes, 60 GB
#              of host memory)
#     python   the Python package with CUDA (pip, no build isolation: needs
#              scikit-build-core, nanobind, numpy and pytest installed) and
#              python/tests/test_gpu.py
# env:
#   CMAKE_PREFIX_PATH  where FAISS is installed (default: CMake's search)
#   CUDA_ARCH          CMAKE_CUDA_ARCHITECTURES (default 90: the sm_90a E-step)
#   BUILD_DIR          build folder (default /tmp/faiss-gmm-gpu-check)
#   OUT                logs (default ./gpu-check)
#   FAISS_GMM_SIFT_DIR a folder with base.bvecs / query.bvecs (the SIFT tests)
#   STEP_SECONDS       time limit of each step (default 300)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-/tmp/faiss-gmm-gpu-check}
out=${OUT:-$PWD/gpu-check}
limit=${STEP_SECONDS:-300}
mkdir -p "$out"
t0=$(date +%s)
status=0

# step NAME CMD...: runs CMD under the time limit, output in $out/NAME.log
step() {
  local name=$1
  shift
  local s=$(date +%s)
  # (through bash, so that a step can be a function of this script)
  timeout -k 5 "$limit" stdbuf -oL bash -c '"$@"' _ "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(($(date +%s) - s)) s (at $(($(date +%s) - t0)) s)" | tee -a "$out/summary.log"
  [ $rc -eq 0 ] || status=1
  return $rc
}

configure_and_build() {
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
    ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH"} &&
    cmake --build "$build" -j "$(nproc)"
}

export root build
export -f configure_and_build

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(tests full bench)
nvidia-smi -L 2>&1 | tee -a "$out/summary.log"
step build configure_and_build || { cat "$out/summary.log"; exit 1; }
for s in "${steps[@]}"; do
  case $s in
    tests)
      step ctest ctest --test-dir "$build" -L gpu --timeout 200 --output-on-failure
      step test_gpu_em_full "$build/tests/test_gpu_em_full"
      step test_gpu_em "$build/tests/test_gpu_em"
      ;;
    full)
      step bench_em_full "$build/eval/bench_em" --shapes "1000000,128,256;1000000,128,1024" \
        --cov full --prec tf32,fp32 --reps 5 --no-stream
      ;;
    bench)
      step bench_em "$build/eval/bench_em" \
        --shapes "1000000,128,1024;1000000,128,4096;10000000,96,1024;1000000,960,1024" \
        --prec bf16 --reps 5 --no-stream
      step bench_search "$build/eval/bench_search" --synthetic 1000000 --nlist 4096 \
        --nprobe 16,32,64 --reps 3 --prune-margin 0,0.4
      step eval_prune "$build/eval/faiss_gmm_eval" --gpu --prune-sweep 0,0.3,0.4,0.5 \
        --out "$out/eval_prune"
      ;;
    scale)
      step bench_scale "$build/eval/bench_scale"
      ;;
    python)
      step python bash -c "python3 -m pip install -q --no-build-isolation --no-deps \
        --target '$build/py-site' -Cbuild-dir='$build/py-build' \
        -Ccmake.define.CMAKE_CUDA_ARCHITECTURES='${CUDA_ARCH:-90}' \
        ${CMAKE_PREFIX_PATH:+-Ccmake.define.CMAKE_PREFIX_PATH='$CMAKE_PREFIX_PATH'} '$root' &&
        cd '$root' && PYTHONPATH='$build/py-site' python3 -m pytest -q -rs python/tests/test_gpu.py"
      ;;
    *)
      echo "gpu-check.sh: unknown step '$s' (tests, full, bench, scale, python)" >&2
      exit 2
      ;;
  esac
done
cat "$out/summary.log"
exit $status
