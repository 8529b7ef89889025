// Run-time choice of the instruction set used by the sparse kernels.
#include "sparse/internal.h"

static int detected = -1; // what the CPU supports
static int forced = -1;   // override from ck_sparse_set_isa

static int detect(void) {
  int d = __atomic_load_n(&detected, __ATOMIC_RELAXED);
  if (d >= 0) return d;
  d = 0;
#if CK_SP_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) d = 1;
  if (d == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    d = 2;
#endif
  __atomic_store_n(&detected, d, __ATOMIC_RELAXED);
  return d;
}

int ck_sp_isa_now(void) {
  int d = detect(), f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
  return (f >= 0 && f < d) ? f : d;
}

int ck_sparse_isa(void) { return ck_sp_isa_now(); }

int ck_sparse_set_isa(int isa) {
  __atomic_store_n(&forced, isa < 0 ? -1 : isa, __ATOMIC_RELAXED);
  return ck_sp_isa_now();
}
