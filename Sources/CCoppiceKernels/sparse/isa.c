// Run-time choice of the instruction set of the sparse kernels: detected once, optionally
// forced lower (tests), and the one table of kernels per instruction set that every product
// goes through.
#include "sparse/internal.h"

static int detected = -1; // what the CPU supports (CK_SP_ISA_*), -1 until detect() ran
static int forced = -1;   // override from ck_sparse_set_isa, -1 for none

/// The best instruction set the CPU supports (CK_SP_ISA_*); asks the CPU once and caches it.
static int detect(void) {
  int d = __atomic_load_n(&detected, __ATOMIC_RELAXED);
  if (d >= 0) return d;
  d = CK_SP_ISA_C;
#if CK_SP_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) d = CK_SP_ISA_AVX2;
  if (d == CK_SP_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    d = CK_SP_ISA_AVX512;
#endif
  __atomic_store_n(&detected, d, __ATOMIC_RELAXED);
  return d;
}

/// The detected instruction set, lowered to the forced one if any; contract in sparse/internal.h.
int ck_sp_isa_now(void) {
  int d = detect(), f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
  return (f >= 0 && f < d) ? f : d;
}

/// The table of the instruction set in effect; contract in sparse/internal.h.
const ck_sp_isa_kernels *ck_sp_kernels(void) {
  static const ck_sp_isa_kernels *const by_isa[] = {
      [CK_SP_ISA_C] = &ck_sp_kernels_portable,
#if CK_SP_X86
      [CK_SP_ISA_AVX2] = &ck_sp_kernels_avx2,
      [CK_SP_ISA_AVX512] = &ck_sp_kernels_avx512,
#endif
  };
  return by_isa[ck_sp_isa_now()];
}

/// Instruction set in use; contract in include/ck_sparse.h.
int ck_sparse_isa(void) { return ck_sp_isa_now(); }

/// Forces a lower instruction set (-1: automatic); contract in include/ck_sparse.h.
int ck_sparse_set_isa(int isa) {
  __atomic_store_n(&forced, isa < 0 ? -1 : isa, __ATOMIC_RELAXED);
  return ck_sp_isa_now();
}
