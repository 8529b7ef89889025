#!/usr/bin/env bash
# Installs what Coppice needs and is missing: Debian packages (OpenBLAS, libomp, zlib, Open MPI,
# the Fashion-MNIST dataset package) and the Python packages the tests use. Idempotent: it
# only calls apt-get or pip when something is absent.
set -euo pipefail

APT_PACKAGES=(libopenblas-dev libomp-dev zlib1g-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist
              gzip pkg-config)
PYTHON_MODULES=(numpy pytest safetensors)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
for m in "${PYTHON_MODULES[@]}"; do
  if ! "$PYTHON" -c "import $m" 2>/dev/null; then
    echo "install-deps: installing Python package $m"
    "$PYTHON" -m pip install --quiet "$m"
  fi
done

# The OpenMP header and runtime the Swift toolchain's clang needs (Package.swift finds them the
# same way); fail early with a clear message if they are still missing.
if ! bash "$(dirname "$0")/openmp-paths.sh" >/dev/null; then
  echo "install-deps: libomp-dev is installed but omp.h/libomp.so were not found" >&2
  exit 1
fi
