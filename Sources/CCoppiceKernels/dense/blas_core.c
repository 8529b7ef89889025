// OpenBLAS's kernel choice on CPUs newer than the installed OpenBLAS (contract in
// include/ck_isa.h).
//
// A DYNAMIC_ARCH OpenBLAS (Debian's, Ubuntu's) picks its kernels by CPU model number when it is
// loaded, and gives a model it does not know its most generic x86-64 kernels, core "Prescott"
// (SSE3). Debian 12's OpenBLAS 0.3.21 does that on Intel's Emerald Rapids (family 6, model 207):
// sgemm on the convolution shapes ran at 24-30 GFLOP/s per core instead of 107-145 with its
// AVX-512 ("SkylakeX") kernels, so every dense product here was 4-5x slower than it should be.
// OpenBLAS takes its core from OPENBLAS_CORETYPE when that is set at load time; when it fell
// back to a core below what the CPU can run, this sets the variable from the CPU's features and
// re-runs OpenBLAS's own core selection (gotoblas_dynamic_init), once, when the kernels'
// library is loaded, before any product runs. A user's OPENBLAS_CORETYPE is left alone, and
// OpenBLAS builds without DYNAMIC_ARCH (no gotoblas_dynamic_init) are left as they are.
#include "ck_isa.h"
#include <stdlib.h>
#include <string.h>

extern char *openblas_get_corename(void);
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

/// OpenBLAS's x86-64 cores from weakest to strongest, as openblas_get_corename names them
/// (the ones a fallback can land on, and the two this file may choose).
static const char *const ranked_cores[] = {"Prescott", "Core2",   "Penryn",   "Dunnington",
                                           "Nehalem",  "Sandybridge", "Haswell", "SkylakeX"};
enum { CORE_COUNT = sizeof(ranked_cores) / sizeof(ranked_cores[0]) };

static int core_rank(const char *name) {
  for (int i = 0; i < CORE_COUNT; i++)
    if (name && strcmp(name, ranked_cores[i]) == 0) return i;
  return -1;
}

static const char *corrected_from = NULL;

/// The strongest of OpenBLAS's cores this CPU (and its OS) can run, or NULL if unknown.
static const char *best_core_for_cpu(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

/// Re-selects OpenBLAS's core when it fell back below the CPU's; idempotent.
static void select_blas_core(void) {
  static int done = 0;
  if (done) return;
  done = 1;
  if (getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
  const char *best = best_core_for_cpu();
  const char *current = openblas_get_corename();
  int have = core_rank(current), want = core_rank(best);
  if (best == NULL || have < 0 || have >= want) return;
  static char previous[32];
  strncpy(previous, current, sizeof(previous) - 1);
  setenv("OPENBLAS_CORETYPE", best, 0);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  if (core_rank(openblas_get_corename()) == want) corrected_from = previous;
}

__attribute__((constructor)) static void select_blas_core_at_load(void) { select_blas_core(); }

/// OpenBLAS's kernel core in use; contract in include/ck_isa.h.
const char *ck_blas_core_name(void) {
  select_blas_core();
  return openblas_get_corename();
}

/// The core OpenBLAS had chosen before Coppice corrected it, or NULL; contract in ck_isa.h.
const char *ck_blas_core_corrected_from(void) {
  select_blas_core();
  return corrected_from;
}
