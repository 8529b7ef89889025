#!/usr/bin/env bash
# Checks the shared library against coppice.h: every function the header declares is exported,
# nothing but coppice_* is exported, and no Swift runtime library is a dependency.
set -euo pipefail
LIB="$1"
HEADER="$2"
declared=$(grep -vE '^\s*(/?\*)' "$HEADER" | grep -oE '\bcoppice_[a-z0-9_]+\(' | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[TDBRW]$/ {print $3}' | sed 's/@.*//' | sort -u)
status=0
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
if [ -n "$missing" ]; then echo "declared in $HEADER but not exported: $missing"; status=1; fi
if [ -n "$extra" ]; then echo "exported but not declared in $HEADER: $extra"; status=1; fi
locals=$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[a-z]$/' | wc -l)
if [ "$locals" -ne 0 ]; then echo "$locals local symbols in the dynamic table"; status=1; fi
if ldd "$LIB" | grep -qi swift; then echo "depends on a Swift runtime library:"; ldd "$LIB" | grep -i swift; status=1; fi
if ! readelf -d "$LIB" | grep -q 'SONAME.*libcoppice.so.0'; then echo "SONAME is not libcoppice.so.0"; status=1; fi
n=$(echo "$declared" | wc -l)
if [ $status -eq 0 ]; then echo "exports: $n functions of coppice.h exported, nothing else; no Swift runtime dependency"; fi
exit $status
