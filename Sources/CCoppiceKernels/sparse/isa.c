// Run-time choice of the instruction set of the sparse kernels: detected once, optionally
// forced lower (tests: ck_sparse_set_isa, or COPPICE_ISA in the environment), and the one table
// of kernels per instruction set that every product goes through.
#include "sparse/internal.h"

#include <string.h>

static int detected = -1; // what the CPU supports (CK_SP_ISA_*), -1 until detect() ran
static int forced = -2;   // override: -1 none, -2 not yet read from COPPICE_ISA

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
#elif CK_SP_ARM
  d = CK_SP_ISA_NEON;
#endif
  __atomic_store_n(&detected, d, __ATOMIC_RELAXED);
  return d;
}

/// The instruction set COPPICE_ISA names (generic, avx2, avx512, neon), or -1 when it is unset,
/// empty or "auto". An unknown name is reported on stderr once and ignored.
static int isa_from_environment(void) {
  const char *v = getenv("COPPICE_ISA");
  if (!v || !*v || !strcmp(v, "auto")) return -1;
  if (!strcmp(v, "generic") || !strcmp(v, "portable") || !strcmp(v, "c")) return CK_SP_ISA_C;
  if (!strcmp(v, "avx2")) return CK_SP_ISA_AVX2;
  if (!strcmp(v, "avx512")) return CK_SP_ISA_AVX512;
  if (!strcmp(v, "neon")) return CK_SP_ISA_NEON;
  fprintf(stderr, "coppice: COPPICE_ISA=%s is not one of auto, generic, avx2, avx512, neon; "
                  "ignored\n", v);
  return -1;
}

/// The forced instruction set (-1 for none), reading COPPICE_ISA the first time.
static int forced_isa(void) {
  int f = __atomic_load_n(&forced, __ATOMIC_RELAXED);
  if (f != -2) return f;
  int expected = -2;
  f = isa_from_environment();
  // A concurrent first call reads the same variable; ck_sparse_set_isa wins over both.
  if (!__atomic_compare_exchange_n(&forced, &expected, f, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    f = expected;
  return f;
}

/// The detected instruction set, lowered to the forced one if any; contract in sparse/internal.h.
int ck_sp_isa_now(void) {
  const int d = detect(), f = forced_isa();
  if (f < 0 || f >= d) return d;
  // Below NEON there is only C; on x86 every set below the detected one exists.
  return d == CK_SP_ISA_NEON ? CK_SP_ISA_C : f;
}

/// The table of the instruction set in effect; contract in sparse/internal.h.
const ck_sp_isa_kernels *ck_sp_kernels(void) {
  static const ck_sp_isa_kernels *const by_isa[] = {
      [CK_SP_ISA_C] = &ck_sp_kernels_portable,
#if CK_SP_X86
      [CK_SP_ISA_AVX2] = &ck_sp_kernels_avx2,
      [CK_SP_ISA_AVX512] = &ck_sp_kernels_avx512,
#endif
#if CK_SP_ARM
      [CK_SP_ISA_NEON] = &ck_sp_kernels_neon,
#endif
  };
  return by_isa[ck_sp_isa_now()];
}

/// Instruction set in use; contract in include/ck_sparse.h.
int ck_sparse_isa(void) { return ck_sp_isa_now(); }

/// Name of an instruction set number; contract in include/ck_sparse.h.
const char *ck_sparse_isa_name(int isa) {
  switch (isa) {
  case CK_SP_ISA_AVX2: return "avx2";
  case CK_SP_ISA_AVX512: return "avx512";
  case CK_SP_ISA_NEON: return "neon";
  default: return "generic";
  }
}

/// Forces a lower instruction set (-1: automatic); contract in include/ck_sparse.h.
int ck_sparse_set_isa(int isa) {
  __atomic_store_n(&forced, isa < 0 ? -1 : isa, __ATOMIC_RELAXED);
  return ck_sp_isa_now();
}
