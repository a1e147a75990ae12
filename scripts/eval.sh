#!/usr/bin/env bash
# Build and run the main job: recall@10 vs distance computations, GMM IVF
# against k-means IVF.
#   bash scripts/eval.sh               embedded synthetic default data set
#   bash scripts/eval.sh sift1m [...]  a registered data set (see datasets/)
# Extra arguments go to faiss_gmm_eval. env: BUILD_DIR, CMAKE_ARGS, OUT_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
build=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)" --target faiss_gmm_eval
dataset=${1:-synthetic}
[ $# -gt 0 ] && shift
# a folder given as the data set gets its last component as the output name
out=${OUT_DIR:-$root/out/$(basename "$dataset")}
mkdir -p "$out"
"$build/eval/faiss_gmm_eval" --dataset "$dataset" --out "$out" "$@"
echo "eval.sh: tables above; files and plot in $out"
