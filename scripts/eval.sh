#!/usr/bin/env bash
# Build and run the main job: recall@10 vs distance computations, GMM IVF
# against k-means IVF.
#   bash scripts/eval.sh               real SIFT made on this machine from the
#                                      photos of Debian packages (sift-debian:
#                                      datasets/make_sift_debian, once; cached
#                                      under the data root), 1024 lists; the
#                                      embedded synthetic set when apt or
#                                      OpenCV is missing
#   bash scripts/eval.sh synthetic     the embedded synthetic set
#   bash scripts/eval.sh sift1m [...]  a registered data set (see datasets/)
# Extra arguments go to faiss_gmm_eval. env: BUILD_DIR, CMAKE_ARGS, OUT_DIR,
# FAISS_GMM_DATA_ROOT (where data sets live).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
build=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)" --target faiss_gmm_eval
dataset=${1:-}
[ $# -gt 0 ] && shift
if [ -z "$dataset" ]; then
  dataset=sift-debian
  # the nlist of the README's reference table (and half the training time)
  set -- --nlist 1024
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    echo "eval.sh: no apt-get/dpkg-deb to fetch the photos of sift-debian: evaluating the embedded synthetic set"
    dataset=synthetic
  elif ! grep -q '^FAISS_GMM_WITH_OPENCV:INTERNAL=ON' "$build/CMakeCache.txt"; then
    echo "eval.sh: OpenCV not found (scripts/setup.sh installs it) or FAISS_GMM_OPENCV=OFF: make_sift_debian not built: evaluating the embedded synthetic set"
    dataset=synthetic
  else
    cmake --build "$build" -j "$(nproc)" --target make_sift_debian
    if ! "$build/datasets/make_sift_debian"; then
      echo "eval.sh: make_sift_debian failed (above): evaluating the embedded synthetic set"
      dataset=synthetic
    fi
  fi
  if [ "$dataset" = synthetic ]; then set --; fi
fi
# a folder given as the data set gets its last component as the output name
out=${OUT_DIR:-$root/out/$(basename "$dataset")}
mkdir -p "$out"
"$build/eval/faiss_gmm_eval" --dataset "$dataset" --out "$out" "$@"
echo "eval.sh: tables above; files and plot in $out"
