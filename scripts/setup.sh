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
  python3 python3-venv python3-dev
)

# Optional: OpenCV (cv::SIFT, image decoding) for make_sift_debian, which makes
# the real SIFT data set of scripts/eval.sh. The two smallest -dev packages
# that give both (the libopencv-dev metapackage pulls in all of OpenCV).
optional=(libopencv-features2d-dev libopencv-imgcodecs-dev)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
missing_optional=()
for p in "${optional[@]}"; do
  installed "$p" || missing_optional+=("$p")
done

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ]; then
  echo "setup.sh: all packages present"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -eq 0 ] && ! command -v apt-get >/dev/null; then
  echo "setup.sh: no apt-get, OpenCV not installed: make_sift_debian will not be built"
  exit 0
fi
echo "setup.sh: installing ${missing[*]} ${missing_optional[*]}"
$sudo apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ${#missing_optional[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing_optional[@]}" ||
    echo "setup.sh: could not install ${missing_optional[*]}: make_sift_debian will not be built"
fi
