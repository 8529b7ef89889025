#!/usr/bin/env bash
# The Python wheel on its own (make test-python-wheel): builds it from bindings/python with
# `pip wheel` (nothing may be written into the source tree), checks its platform tag and the
# libraries it carries, installs it into a fresh virtualenv and trains a small model with no
# environment variables set while the system's copies of the bundled libraries (OpenBLAS,
# libgfortran, libquadmath, libomp/libgomp) are hidden by bind mounts in a private mount
# namespace (`unshare -m`, needs root). The wheel carries zlib too, but the system's zlib stays
# visible: the Python interpreter and numpy load it themselves. Where that is not possible, it falls back to checking
# that `ldd` of the installed library resolves every non-system dependency inside the wheel,
# and says so.
#   usage: Tests/wheel/test-wheel.sh PYTHON   (run from the repository; dist/lib built)
set -euo pipefail

PYTHON="${1:-python3}"
SYSTEM='^(linux-vdso|ld-linux[-_a-z0-9]*|libc|libm|libdl|librt|libpthread|libresolv|libutil|libstdc\+\+|libgcc_s)\.so'
HIDDEN_NAMES='^lib(openblas[a-z]*|gfortran|quadmath|omp|gomp)[.-]'

fail() { echo "test-python-wheel: $*" >&2; exit 1; }

[ -f dist/lib/libcoppice.so.0 ] || fail "dist/lib/libcoppice.so.0 is missing (make lib)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Build, and leave the source tree as it was (bytecode caches aside: the pytest suite may
#    be writing them at the same time under make -j).
tree() { find bindings/python -not -path '*/__pycache__*' -not -path '*/.pytest_cache*' | sort; }
before=$(tree)
"$PYTHON" -m pip wheel --no-deps --no-cache-dir -q -w "$work/wheels" ./bindings/python
after=$(tree)
if [ "$before" != "$after" ]; then
  diff <(echo "$before") <(echo "$after") >&2 || true
  fail "building the wheel wrote into bindings/python"
fi
if [ -e bindings/python/build ] || compgen -G 'bindings/python/*.egg-info' > /dev/null; then
  fail "bindings/python/build or *.egg-info exists"
fi
wheel=$(ls "$work"/wheels/coppice-*.whl)
name=$(basename "$wheel")
echo "wheel: $name, $(du -h "$wheel" | cut -f1)"
case "$name" in
  *-manylinux_2_*_"$(uname -m)".whl) ;;
  *) fail "$name is not tagged manylinux_2_*_$(uname -m)" ;;
esac

# 2. What it carries.
libraries=$("$PYTHON" -c "import sys, zipfile; print('\n'.join(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if '.so' in n))" "$wheel")
echo "$libraries" | sed 's/^/  carries /'
for required in coppice/libcoppice.so.0 'coppice/_libs/libopenblas-' 'coppice/_libs/lib(omp|gomp)-'; do
  echo "$libraries" | grep -Eq "^$required" || fail "the wheel lacks $required"
done

# 3. A fresh virtualenv: numpy from the package index if it can be had quickly, else the
#    system's numpy through --system-site-packages.
venv="$work/venv"
"$PYTHON" -m venv "$venv"
if timeout 120 "$venv/bin/pip" install -q --disable-pip-version-check numpy 2> "$work/numpy.log"; then
  echo "virtualenv: fresh, numpy $("$venv/bin/python" -c 'import numpy; print(numpy.__version__)') from the package index"
else
  echo "virtualenv: numpy not installable from the index ($(tail -1 "$work/numpy.log")); using --system-site-packages for numpy"
  rm -rf "$venv"
  "$PYTHON" -m venv --system-site-packages "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$wheel"
package=$(cd "$work" && env -i "$venv/bin/python" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('coppice').origin))")
installed="$package/libcoppice.so.0"
[ -f "$installed" ] || fail "$installed was not installed"

# 4. ldd of the installed copy: every dependency outside the system set resolves in the package.
echo "ldd $installed:"
while read -r soname _ path _; do
  [ -n "$soname" ] || continue
  if [[ "$soname" =~ $SYSTEM ]]; then continue; fi
  case "$path" in
    "$package"/_libs/*) echo "  $soname => ${path#"$package"/} (bundled)" ;;
    *) fail "$soname resolves to $path, not inside the wheel" ;;
  esac
done < <(ldd "$installed" | grep '=>')

# 5. Train with the system's copies hidden.
train='
import os, sys
import numpy as np
import coppice
package = os.path.dirname(coppice.__file__)
assert coppice.library_path == os.path.join(package, "libcoppice.so.0"), coppice.library_path
# Two classes told apart by a bright or dark square in the middle of noise: learnable in a few
# steps, so a broken library shows as chance accuracy.
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, 1024).astype(np.int32)
images = rng.standard_normal((1024, 28, 28), dtype=np.float32) * 0.5
images[:, 10:18, 10:18] += np.where(labels[:, None, None] == 1, 1.0, -1.0).astype(np.float32)
train = coppice.Dataset(images[:768], labels[:768], classes=2)
test = coppice.Dataset(images[768:], labels[768:], classes=2)
model = coppice.Model("mlp", seed=1, classes=2)
result = model.train(train, test, epochs=3, method="set", sparsity=0.8, batch_size=32)
assert result.epochs == 3 and abs(result.sparsity - 0.8) < 0.01, result
assert result.test_accuracy > 90, result
mapped = sorted({line.split()[-1] for line in open("/proc/self/maps") if ".so" in line})
bundled = [m for m in mapped if m.startswith(os.path.join(package, "_libs"))]
import re
system = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/")
foreign = [m for m in mapped if re.search(sys.argv[1], os.path.basename(m)) and m.startswith(system)]
assert not foreign, f"system copies loaded: {foreign}"
print(f"coppice {coppice.version()} from {coppice.library_path}: trained mlp, SET at 80%:",
      f"test accuracy {result.test_accuracy:.1f}%, sparsity {result.sparsity:.3f}")
print("loaded from the wheel:", ", ".join(os.path.basename(m) for m in bundled))
'
# Hidden: the files the repository's build of the library resolves to, and every other copy of
# the same libraries in the system's library folders.
hide=()
while IFS= read -r file; do hide+=("$file"); done < <(
  { ldd dist/lib/libcoppice.so.0 | awk '$2 == "=>" { print $3 }' | while read -r path; do
      [[ "$(basename "$path")" =~ $HIDDEN_NAMES ]] && readlink -f "$path"; done
    find /lib /usr/lib /lib64 /usr/lib64 /usr/local/lib -type f -name 'lib*.so*' 2>/dev/null |
      while read -r path; do [[ "$(basename "$path")" =~ $HIDDEN_NAMES ]] && echo "$path"; done
  } | sort -u)
cd "$work"
if unshare -m true 2>/dev/null; then
  echo "hiding ${#hide[@]} system files in a private mount namespace (unshare -m):"
  printf '  %s\n' "${hide[@]}"
  : > "$work/empty"
  unshare -m bash -c '
    set -e
    empty=$1; venv=$2; pattern=$3; train=$4; shift 4
    for f in "$@"; do mount --bind "$empty" "$f"; done
    # The hiding works: none of the hidden files loads any more.
    for f in "$@"; do
      if env -i "$venv/bin/python" -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$f" \
          2>/dev/null; then
        echo "test-python-wheel: $f still loads with the system copies hidden" >&2; exit 1
      fi
    done
    echo "  (checked: none of them loads now)"
    env -i "$venv/bin/python" -c "$train" "$pattern"
  ' hide "$work/empty" "$venv" "$HIDDEN_NAMES" "$train" "${hide[@]}"
  echo "test-python-wheel: passed (trained with the system copies hidden by unshare -m)"
else
  echo "unshare -m is not available here: training with the system libraries present;"
  echo "the check that they are not used is the ldd check above and /proc/self/maps below"
  env -i "$venv/bin/python" -c "$train" "$HIDDEN_NAMES"
  echo "test-python-wheel: passed (ldd and /proc/self/maps checks; system copies not hidden)"
fi
