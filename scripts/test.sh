#!/usr/bin/env bash
# Configure, build and run the test suite: bash scripts/test.sh
# env: BUILD_DIR (default build), CMAKE_ARGS (extra configure flags),
#      CTEST_ARGS (extra ctest flags, e.g. "-L cpu").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
build=${BUILD_DIR:-$root/build}
jobs=$(nproc)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" ${CTEST_ARGS:-}
