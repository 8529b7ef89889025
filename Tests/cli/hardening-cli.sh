#!/usr/bin/env bash
# Hostile input to the `coppice` command (usage: hardening-cli.sh COPPICE), issue 15:
#  1. absurd integers (near 2^62, 2^63, negative) and --epochs 0 are usage errors (status 64)
#     naming the option, never a trap (status 132);
#  2. arguments that are not UTF-8 are refused (status 64) and create no file;
#  3. two runs on one checkpoint directory: the second fails at once naming the first, which
#     finishes; a fresh run refuses a directory holding checkpoints and leaves them intact;
#  4. `coppice export CK -o CK` refuses to replace the checkpoint.
set -euo pipefail
COPPICE=$(realpath "${1:-.build/debug/coppice}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "hardening-cli: FAIL: $*" >&2; exit 1; }
SMALL=(--model mlp --limit-train 256 --limit-test 100 --threads 2)

expect_usage_error() {  # expect_usage_error WHAT ARGS...: status 64 and a message on stderr
  local what="$1"; shift
  local status=0
  "$COPPICE" "$@" > "$work/out" 2> "$work/err" || status=$?
  [ "$status" -eq 64 ] || { cat "$work/err"; fail "$what: status $status, expected 64"; }
  grep -q "Error" "$work/err" || fail "$what: no error message"
}

# 1. Integers.
checked=0
for option in --epochs --batch-size --warmup-epochs --crop-padding --lr-step-epochs \
              --step-epochs --step-steps --prune-epoch --rounds --finetune-epochs \
              --partitions --update-interval --threads; do
  for value in 4611686018427387904 9223372036854775807 4611686018427387903 -1; do
    expect_usage_error "$option $value" train "${SMALL[@]}" --method cgap --epochs 2 "$option" "$value"
    grep -q -- "$option" "$work/err" || fail "$option $value: the message does not name $option"
    checked=$((checked + 1))
  done
done
expect_usage_error "--epochs 0" train "${SMALL[@]}" --epochs 0
expect_usage_error "compare --epochs 0" compare "${SMALL[@]}" --epochs 0
expect_usage_error "--gamma nan" train "${SMALL[@]}" --schedule step --gamma nan
for value in -0.1 1 1.5 nan; do  # out of [0, 1), whatever the method; "-0.1" is a value
  for method in dense cgap; do
    expect_usage_error "--sparsity $value" train "${SMALL[@]}" --method "$method" --sparsity "$value"
    grep -q -- "--sparsity must be in" "$work/err" || fail "--sparsity $value: unclear message"
  done
done
# In range one by one, overflowing together: rounds × partitions × step length.
expect_usage_error "GaP phase overflow" train "${SMALL[@]}" --method cgap --partitions 1024 \
  --rounds 1000000 --step-steps 1099511627776 --epochs 2
grep -q "take more than" "$work/err" || fail "GaP overflow: $(cat "$work/err")"
echo "hardening-cli: $((checked + 4)) absurd integer arguments refused with status 64"

# 2. Arguments that are not UTF-8.
bad=$'model\xe9.cpx'
expect_usage_error "non-UTF-8 --export" train "${SMALL[@]}" --epochs 1 --export "$work/$bad"
[ -z "$(ls "$work" | grep -v -e '^out$' -e '^err$')" ] || fail "a file was created: $(ls "$work")"
expect_usage_error "non-UTF-8 inspect" inspect "$work/$bad"
grep -q "not valid UTF-8" "$work/err" || fail "non-UTF-8: $(cat "$work/err")"
echo "hardening-cli: arguments that are not UTF-8 refused, nothing written"

# 3. One run per checkpoint directory.
RUN=(train "${SMALL[@]}" --limit-train 4000 --method static --sparsity 0.5 --epochs 3
     --checkpoint-dir "$work/ckpt" --keep-checkpoints 1)
"$COPPICE" "${RUN[@]}" > "$work/first.log" 2>&1 &
first=$!
for _ in $(seq 1 600); do   # wait until the first run holds the lock
  [ -e "$work/ckpt/.coppice.lock" ] && [ -s "$work/ckpt/.coppice.lock" ] && break
  sleep 0.05
done
# The first run is stopped while the second tries (it holds the lock, stopped or not): a first
# run faster than the second's start-up (data loading) had finished before the check.
kill -STOP "$first" 2> /dev/null || true
status=0
"$COPPICE" "${RUN[@]}" > "$work/second.log" 2>&1 || status=$?
kill -CONT "$first" 2> /dev/null || true
[ "$status" -ne 0 ] || fail "a second run on a locked checkpoint directory succeeded"
[ "$status" -lt 128 ] || fail "the second run crashed (status $status)"
grep -q "is in use by another run (process $first)" "$work/second.log" \
  || fail "second run: $(cat "$work/second.log")"
wait "$first" || fail "the first run failed: $(cat "$work/first.log")"
before=$(ls "$work/ckpt" | grep checkpoint- )
sum=$(sha256sum "$work/ckpt/$before")
status=0
"$COPPICE" "${RUN[@]}" > "$work/third.log" 2>&1 || status=$?
[ "$status" -ne 0 ] && [ "$status" -lt 128 ] || fail "a fresh run in a used directory: status $status"
grep -q "already holds checkpoints" "$work/third.log" || fail "third run: $(cat "$work/third.log")"
[ "$(sha256sum "$work/ckpt/$before")" = "$sum" ] || fail "the first run's checkpoint changed"
"$COPPICE" "${RUN[@]}" --resume > "$work/resumed.log" 2>&1 || fail "resume: $(cat "$work/resumed.log")"
echo "hardening-cli: a second run on a busy checkpoint directory fails, a fresh run refuses a used one"

# 4. An export never replaces its input (the checkpoint), also through another spelling.
ckpt="$work/ckpt/$(ls "$work/ckpt" | grep checkpoint- | tail -1)"
sum=$(sha256sum < "$ckpt")
expect_usage_error "export over its input" export "$ckpt" -o "$work/ckpt/../ckpt/$(basename "$ckpt")"
grep -q "is the input file" "$work/err" || fail "export over its input: $(cat "$work/err")"
[ "$(sha256sum < "$ckpt")" = "$sum" ] || fail "the checkpoint changed"
echo "hardening-cli: export refuses to overwrite its input"
echo "hardening-cli: all checks passed"
