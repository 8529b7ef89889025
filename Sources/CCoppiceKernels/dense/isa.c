// Which variant of the CK_CLONES functions runs on this CPU (contract in include/ck_isa.h).
// The loader's resolver picks the first of x86-64-v4, x86-64-v3 whose features the CPU has,
// else the baseline; this asks the CPU the same questions.
#include "ck_clones.h"
#include "ck_isa.h"

/// The variant of the CK_CLONES loops in use; contract in include/ck_isa.h.
const char *ck_dense_isa_name(void) {
#if CK_CLONES_ACTIVE
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
  return "x86-64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "baseline";
#endif
}
