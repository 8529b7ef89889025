// Parallel jobs of the kernels: run on a host's thread pool when one is lent
// (ck_set_parallel_runner), else in an OpenMP parallel region.
#include "ck_jobs.h"

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static ck_parallel_runner host_runner = NULL; // set by ck_set_parallel_runner

/// Installs or removes the host's runner; contract in include/ck_jobs.h.
void ck_set_parallel_runner(ck_parallel_runner runner) {
  __atomic_store_n(&host_runner, runner, __ATOMIC_RELEASE);
}

/// The runner in effect (NULL: OpenMP); contract in include/ck_jobs.h.
ck_parallel_runner ck_parallel_runner_now(void) {
  return __atomic_load_n(&host_runner, __ATOMIC_ACQUIRE);
}

typedef struct {
  ck_job_fn body;
  void *arg;
  int parts;
  int next; // the next unclaimed part
  size_t scratch_floats;
} job;

/// What each thread of a job runs: claim parts until none is left.
static void run_parts(void *data) {
  job *j = data;
  float *scratch = ck_scratch_take(j->scratch_floats);
  for (;;) {
    const int q = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
    if (q >= j->parts) break;
    j->body(j->arg, q, j->parts, scratch);
  }
  ck_scratch_give(scratch);
}

/// A job over parts on the runner or OpenMP; contract in include/ck_jobs.h.
void ck_run_job(int threads, int parts, ck_job_fn body, void *arg, size_t scratch_floats) {
  job j = {body, arg, parts, 0, scratch_floats};
#ifdef _OPENMP
  if (omp_in_parallel()) threads = 1; // called from inside a parallel region: no nesting
#endif
  if (threads > parts) threads = parts;
  if (threads <= 1) {
    run_parts(&j);
    return;
  }
  ck_parallel_runner runner = ck_parallel_runner_now();
  if (runner) {
    runner(run_parts, &j, (unsigned)threads, 0);
    return;
  }
#pragma omp parallel num_threads(threads)
  run_parts(&j);
}

/// 64-byte aligned floats (NULL for 0); contract in include/ck_jobs.h.
float *ck_alloc_floats(size_t count) {
  if (count == 0) return NULL;
  size_t bytes = (sizeof(float) * count + 63) / 64 * 64;
  return aligned_alloc(64, bytes);
}

/// Range of part `part` of `parts` over [0, count); contract in include/ck_jobs.h.
void ck_job_range(int count, int part, int parts, int *begin, int *end) {
  *begin = (int)((long long)count * part / parts);
  *end = (int)((long long)count * (part + 1) / parts);
}
