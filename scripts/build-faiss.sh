#!/usr/bin/env bash
# Builds FAISS from a source tarball (CPU only, the `faiss` target alone) and installs it into a
# cache outside the clone, keyed by the tarball's sha256, so only the first run on a machine pays
# for it (~9 min on 2 cores). Prints the install prefix on stdout; progress goes to stderr.
#
#   bash scripts/build-faiss.sh [TARBALL]
#
# TARBALL defaults to ../shared/deps/faiss-1.15.0-src.tar.gz beside the clone.
# env: FAISS_GMM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/faiss-gmm): where prefixes live.
# Exit status 3 (and one line on stderr) when the tarball is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tarball=${1:-$root/../shared/deps/faiss-1.15.0-src.tar.gz}
if [ ! -f "$tarball" ]; then
  echo "build-faiss.sh: $tarball not found" >&2
  exit 3
fi
cache=${FAISS_GMM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faiss-gmm}
sha=$(sha256sum "$tarball" | cut -c1-16)
name=$(basename "$tarball" .tar.gz)
prefix=$cache/$name-$sha
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/faiss-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-faiss.sh: building $name into $prefix (first run on this machine; ~9 min on 2 cores)" >&2
start=$(date +%s)
tar xzf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFAISS_ENABLE_GPU=OFF -DFAISS_ENABLE_PYTHON=OFF -DBUILD_TESTING=OFF \
  -DFAISS_ENABLE_C_API=OFF -DFAISS_OPT_LEVEL=generic -DBUILD_SHARED_LIBS=OFF \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DCMAKE_INSTALL_PREFIX="$prefix.partial" >"$work/configure.log" 2>&1 ||
  { tail -30 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target faiss -j "$(nproc)" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; exit 1; }
rm -rf "$prefix.partial"
cmake --install "$work/build" --component Unspecified >"$work/install.log" 2>&1 ||
  cmake --install "$work/build" >>"$work/install.log" 2>&1 ||
  { tail -30 "$work/install.log" >&2; exit 1; }
rm -rf "$prefix"
mv "$prefix.partial" "$prefix"
touch "$prefix/.complete"
echo "build-faiss.sh: done in $(($(date +%s) - start)) s" >&2
echo "$prefix"
