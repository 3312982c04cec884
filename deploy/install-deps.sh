#!/usr/bin/env bash
# Installs every Debian 12 package that ctphase needs to build, test and
# benchmark. Idempotent: packages already present are left alone. Run as
# root (or with sudo). Set CTPHASE_SKIP_APT=1 to skip (e.g. offline).
set -euo pipefail

BUILD_PKGS=(
  build-essential pkg-config meson ninja-build
  libdcmtk-dev dcmtk libuv1-dev libsqlite3-dev libopenblas-dev libcjson-dev
  libpng-dev libopenjp2-7-dev
  # required by dcmtk.pc (Requires.private), so that pkg-config finds DCMTK
  libssl-dev libsndfile1-dev libtiff-dev zlib1g-dev
)
TEST_PKGS=(
  orthanc dicom3tools python3-pydicom python3-numpy python3-torch python3-jsonschema
  sqlite3 curl
)
# Node.js and npm (for the ONNX Runtime benchmark peer) come from Debian
# only when the machine has no node of its own.
command -v npm >/dev/null 2>&1 || TEST_PKGS+=(nodejs npm)

[ "${CTPHASE_SKIP_APT:-0}" = 1 ] && exit 0

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
# Orthanc's Debian package starts a system service; ctphase's tests start
# their own instances on private ports, so stop the packaged one if it runs.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
  $SUDO systemctl stop orthanc || true
fi
echo "install-deps: done"
