// Thread control: OpenMP owns parallelism; OpenBLAS stays single-threaded.
#include "ck_dense.h"
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

extern void openblas_set_num_threads(int num_threads);

static int ck_threads = 1;
static int ck_initialised = 0;

/// First call: takes the thread count from OpenMP and keeps OpenBLAS single-threaded.
static void ck_init_once(void) {
  if (ck_initialised) return;
  ck_initialised = 1;
#ifdef _OPENMP
  ck_threads = omp_get_max_threads();
#endif
  openblas_set_num_threads(1);
}

/// Sets the kernels' thread count (>= 1); contract in include/ck_dense.h.
void ck_set_threads(int threads) {
  ck_init_once();
  if (threads < 1) threads = 1;
  ck_threads = threads;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  openblas_set_num_threads(1);
}

/// How long idle kernel threads spin before sleeping; contract in include/ck_dense.h.
int ck_set_idle_spin(int milliseconds) {
#if defined(_OPENMP) && defined(KMP_VERSION_MAJOR)
  kmp_set_blocktime(milliseconds < 0 ? 0 : milliseconds);
  return 1;
#else
  (void)milliseconds;
  return 0;
#endif
}

/// The kernels' thread count; contract in include/ck_dense.h.
int ck_get_threads(void) {
  ck_init_once();
  return ck_threads;
}

/// Hardware threads OpenMP sees (1 without OpenMP); contract in include/ck_dense.h.
int ck_available_cores(void) {
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  return 1;
#endif
}

/// 1 when built with OpenMP; contract in include/ck_dense.h.
int ck_has_openmp(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}

// Compatibility: clang >= 18 emits __kmpc_dispatch_deinit after dynamically scheduled loops,
// but Debian 12's libomp (LLVM 14) predates it; there the dispatch buffers are released by
// __kmpc_dispatch_next itself, so nothing is left to do. A weak no-op lets the newer compiler
// link against the older runtime. (This definition would shadow a newer runtime's real one, so
// it must go when the project moves to libomp >= 18.)
__attribute__((weak)) void __kmpc_dispatch_deinit(void *loc, int gtid) {
  (void)loc;
  (void)gtid;
}
