// Dense/sparse dispatch: a small cost model of the sparse kernels relative to dense sgemm.
// (Calibration constants filled in from Tests/kernels/bench_sparse.c; see below.)
#include "sparse_internal.h"

double ck_sparse_cost_ratio(ck_sparse_op op, int m, int k, int n, double density) {
  (void)op; (void)m; (void)k; (void)n;
  return density / 0.4;
}

int ck_sparse_prefer(ck_sparse_op op, int m, int k, int n, double density) {
  return ck_sparse_cost_ratio(op, m, k, n, density) < 0.9;
}

double ck_sparse_crossover_density(ck_sparse_op op, int m, int k, int n) {
  double lo = 0.0, hi = 1.0;
  if (!ck_sparse_prefer(op, m, k, n, 1e-9)) return 0.0;
  for (int it = 0; it < 40; it++) {
    double mid = 0.5 * (lo + hi);
    if (ck_sparse_prefer(op, m, k, n, mid)) lo = mid; else hi = mid;
  }
  return lo;
}
