#!/usr/bin/env bash
# Configure, build and run the test suite against both supported FAISS
# versions: bash scripts/test.sh
#
#   leg 1: Debian's FAISS (1.7.3, installed by setup.sh), in $BUILD_DIR
#          (default build/); GPU code built when nvcc is there. Then the
#          Python package: `pip install .` into the virtualenv
#          $BUILD_DIR/py-venv (with pytest, scikit-learn, faiss-cpu from PyPI)
#          and its pytest suite, python/tests.
#   leg 2: FAISS 1.15.0 built from ../shared/deps/faiss-1.15.0-src.tar.gz by
#          scripts/build-faiss.sh (CPU-only, cached outside the clone by the
#          tarball's sha256), in $BUILD_DIR-faiss115, with AddressSanitizer,
#          UndefinedBehaviorSanitizer and _GLIBCXX_ASSERTIONS (GPU code off:
#          the device machine checks it against this FAISS). Skipped with one
#          line when the tarball is missing.
#   each leg then builds the Python package against its FAISS (pip, in a
#   virtual environment under the leg's build folder) and runs pytest.
#
# env: BUILD_DIR, CMAKE_ARGS (extra configure flags, both legs), CTEST_ARGS
#      (extra ctest flags, e.g. "-L cpu"), FAISS_TARBALL (leg 2's source),
#      FAISS_GMM_LEGS ("both" (default), "debian" or "current").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
build=${BUILD_DIR:-$root/build}
jobs=$(nproc)
legs=${FAISS_GMM_LEGS:-both}
tarball=${FAISS_TARBALL:-$root/../shared/deps/faiss-1.15.0-src.tar.gz}
status=0

leg_seconds() {
  echo $(($(date +%s) - $1))
}

# The Python package against a leg's FAISS: pip builds it (the library
# again) in <dir>/py-build, into the virtual environment <dir>/py-venv, then
# pytest runs. Arguments: <dir>, then extra pip -C options (FAISS's prefix).
python_package() {
  local dir=$1
  shift
  local venv=$dir/py-venv
  # (each step is chained: set -e does not hold inside `python_package ||`)
  { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } &&
    "$venv/bin/pip" install -q --disable-pip-version-check \
      scikit-build-core nanobind numpy pytest scikit-learn faiss-cpu &&
    CMAKE_BUILD_PARALLEL_LEVEL=$jobs "$venv/bin/pip" install -q --disable-pip-version-check \
      --no-build-isolation -Cbuild-dir="$dir/py-build" "$@" "$root" &&
    (cd "$root" && "$venv/bin/python" -m pytest -q -rs python/tests)
}

if [ "$legs" != current ]; then
  start=$(date +%s)
  echo "test.sh: leg 1, Debian's FAISS, in $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
  cmake --build "$build" -j "$jobs"
  ctest --test-dir "$build" --output-on-failure -j "$jobs" ${CTEST_ARGS:-} || status=1
  echo "test.sh: leg 1 done in $(leg_seconds "$start") s"
  start=$(date +%s)
  echo "test.sh: Python package, in $build/py-venv"
  python_package "$build" || status=1
  echo "test.sh: Python package done in $(leg_seconds "$start") s"
fi

if [ "$legs" != debian ]; then
  if [ ! -f "$tarball" ]; then
    echo "test.sh: leg 2 skipped: $tarball not found (FAISS 1.15 source; see ../shared/deps/README.md)"
  else
    start=$(date +%s)
    prefix=$(bash "$root/scripts/build-faiss.sh" "$tarball")
    build2=${build}-faiss115
    echo "test.sh: leg 2, FAISS from $prefix, sanitizers on, in $build2"
    sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS"
    cmake -S "$root" -B "$build2" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_PREFIX_PATH="$prefix" -DFAISS_GMM_GPU=OFF \
      -DCMAKE_CXX_FLAGS="$sanitize" -DCMAKE_C_FLAGS="$sanitize" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
      -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
      ${CMAKE_ARGS:-}
    cmake --build "$build2" -j "$jobs"
    # FAISS itself is not instrumented: std::vector annotations would see
    # its writes as overflows, so container-overflow checks are off; leaks
    # are checked (tests/lsan.supp: FAISS's own).
    ASAN_OPTIONS=detect_container_overflow=0:detect_leaks=1:abort_on_error=1 \
    LSAN_OPTIONS=suppressions=$root/tests/lsan.supp \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir "$build2" --output-on-failure -j "$jobs" ${CTEST_ARGS:-} || status=1
    # the Python package against this FAISS too (CPU code, no sanitizers:
    # the interpreter is not instrumented)
    echo "test.sh: Python package against FAISS from $prefix, in $build2/py-venv"
    python_package "$build2" -Ccmake.define.CMAKE_PREFIX_PATH="$prefix" \
      -Ccmake.define.FAISS_GMM_GPU=OFF || status=1
    echo "test.sh: leg 2 done in $(leg_seconds "$start") s"
  fi
fi
exit $status
