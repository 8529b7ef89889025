// What bounds a sparse product on this core: FMAs or loads? Four single-threaded loops of
// 512-bit FMAs into 8 independent accumulators (no dependency chain limits them), timed on data
// in L1, each printing billions of FMAs per second:
//   registers      FMAs on registers only                      — the FMA peak
//   broadcast      each FMA with a broadcast weight from memory, one X load per 8 FMAs
//   aligned X      one 64-byte-aligned X load per 2 FMAs, broadcast weights
//   crossing X     the same with X loads that cross a cache line (start 4 bytes past a line)
// The last two are a compiled sparse product's inner loop at ~90% sparsity (2–3 FMAs per X row
// of a block). On the project's machine (AMD EPYC, AVX-512): 7.7 / 6.8 / 5.0 / 3.8 G FMA/s —
// two FMAs per cycle at peak, and the loads, not the FMAs, bound the sparse loop, a crossing
// load costing two of the core's load slots (why jit/codegen.c loads a convolution's windows as
// aligned pairs and shifts them in registers).
//
//   make -C Tests/kernels load-slots
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define ITERS 20000000L

static float x[4096] __attribute__((aligned(64)));
static float w[4096] __attribute__((aligned(64)));

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { REGISTERS, BROADCAST, ALIGNED_X, CROSSING_X };

/// G FMA/s of the loop `kind` (8 FMAs per iteration).
__attribute__((target("avx512f"), noinline)) static double rate(int kind) {
  __m512 a[8];
  for (int r = 0; r < 8; r++) a[r] = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.0001f);
  const float *xc = x + 1; // 4 bytes past a line: every 64-byte load crosses one
  const double t0 = seconds();
  for (long i = 0; i < ITERS; i++) {
    const int o = (int)((i * 64) & 1023);
    __m512 xv[4];
    switch (kind) {
    case REGISTERS:
      for (int r = 0; r < 8; r++) a[r] = _mm512_fmadd_ps(a[r], one, one);
      continue;
    case BROADCAST:
      xv[0] = xv[1] = xv[2] = xv[3] = _mm512_load_ps(x + o);
      break;
    case ALIGNED_X:
      for (int v = 0; v < 4; v++) xv[v] = _mm512_load_ps(x + o + 32 * v);
      break;
    default:
      for (int v = 0; v < 4; v++) xv[v] = _mm512_loadu_ps(xc + o + 32 * v);
      break;
    }
    for (int r = 0; r < 8; r++) a[r] = _mm512_fmadd_ps(xv[r / 2], _mm512_set1_ps(w[o + r]), a[r]);
  }
  const double t = seconds() - t0;
  __m512 s = a[0];
  for (int r = 1; r < 8; r++) s = _mm512_add_ps(s, a[r]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return 8.0 * (double)ITERS / t / 1e9;
}

int main(void) {
  if (!__builtin_cpu_supports("avx512f")) {
    printf("no AVX-512 on this CPU\n");
    return 0;
  }
  for (int i = 0; i < 4096; i++) x[i] = w[i] = 1e-3f;
  const char *names[] = {"registers", "broadcast", "aligned X", "crossing X"};
  for (int kind = REGISTERS; kind <= CROSSING_X; kind++) {
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
      const double r = rate(kind);
      if (r > best) best = r;
    }
    printf("%-11s %.2f G FMA/s (512-bit, one thread, best of 3)\n", names[kind], best);
  }
  return 0;
}
