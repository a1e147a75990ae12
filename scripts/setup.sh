#!/usr/bin/env bash
# Installs the system packages faiss-gmm needs on Debian (bookworm or later).
# Idempotent: packages already present are not touched. Run as root (or with
# sudo available). The CUDA toolkit is optional and not installed here.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libfaiss-dev libopenblas-dev liblapack-dev libomp-dev
  libhdf5-dev libgtest-dev
  openmpi-bin libopenmpi-dev
  gnuplot-nox clang-format
  python3
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
