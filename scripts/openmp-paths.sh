#!/usr/bin/env bash
# Prints "INCLUDE_DIR LIB_DIR" of the newest Debian libomp (any LLVM version), the same
# discovery Package.swift does. COPPICE_OMP_INCLUDE / COPPICE_OMP_LIB override it.
set -euo pipefail
if [ -n "${COPPICE_OMP_INCLUDE:-}" ] && [ -n "${COPPICE_OMP_LIB:-}" ]; then
  echo "$COPPICE_OMP_INCLUDE $COPPICE_OMP_LIB"
  exit 0
fi
for root in $(ls -d /usr/lib/llvm-* 2>/dev/null | sort -t- -k2 -n -r); do
  for inc in "$root"/lib/clang/*/include; do
    if [ -f "$inc/omp.h" ] && [ -f "$root/lib/libomp.so" ]; then
      echo "$inc $root/lib"
      exit 0
    fi
  done
done
echo "openmp-paths: no libomp found (install libomp-dev)" >&2
exit 1
