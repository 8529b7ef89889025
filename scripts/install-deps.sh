#!/usr/bin/env bash
# Installs what Coppice needs and is missing: Debian packages (OpenBLAS, libomp, zlib, Open MPI,
# the Fashion-MNIST dataset package, the fortunes text corpus of the Transformer example; cmake
# for the find_package test of the installed tree, patchelf to bundle the library's dependencies
# into the Python wheel, librsvg2-bin's rsvg-convert to render the compare plots; the aarch64
# cross compiler, its C library and qemu's user-mode emulator to build the kernels for aarch64
# and run their tests, mk/isa.mk) and the
# Python packages the tests and examples use (numpy, pytest, safetensors, a CPU-only PyTorch).
# Idempotent: it only calls apt-get or pip when something is absent.
set -euo pipefail

APT_PACKAGES=(libopenblas-dev libomp-dev zlib1g-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist
              gzip pkg-config fortunes cmake patchelf librsvg2-bin
              gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
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

# PyTorch, for coppice.torch and examples/torch. Pinned to the CPU-only build 2.13.0+cpu:
# - the default `torch` wheel of PyPI is the CUDA build (about 5.4 GB with its nvidia-* packages)
#   and nothing here has a GPU;
# - Debian's python3-torch (1.13) is CPU-only but belongs to /usr/bin/python3, not to $PYTHON,
#   and torch 1.13 lacks Optimizer.register_step_post_hook (torch >= 2.0), which coppice.torch
#   uses to step the schedule after optimizer.step();
# - 2.13.0+cpu is a 192 MB wheel (about 760 MB installed) whose only dependencies are small pure
#   Python packages (filelock, typing-extensions, setuptools, sympy, networkx, jinja2, fsspec).
# PyPI itself does not carry "+cpu" builds: pip finds this one in the machine's wheelhouse
# (pip.conf find-links, /opt/wheels on these machines). Where there is none, the same version
# from PyPI is installed (the CUDA build: much larger and slower to install, but it runs on the
# CPU just the same).
TORCH_VERSION="2.13.0"
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "install-deps: installing Python package torch==$TORCH_VERSION+cpu (CPU-only)"
  if ! "$PYTHON" -m pip install --quiet "torch==$TORCH_VERSION+cpu"; then
    echo "install-deps: no CPU-only wheel here; installing torch==$TORCH_VERSION from PyPI"
    "$PYTHON" -m pip install --quiet "torch==$TORCH_VERSION"
  fi
fi

# The OpenMP header and runtime the Swift toolchain's clang needs (Package.swift finds them the
# same way); fail early with a clear message if they are still missing.
if ! bash "$(dirname "$0")/openmp-paths.sh" >/dev/null; then
  echo "install-deps: libomp-dev is installed but omp.h/libomp.so were not found" >&2
  exit 1
fi
