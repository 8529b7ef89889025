// Work splitting helpers for the sparse kernels: thread count, row ranges balanced by nonzeros,
// column ranges aligned to the vector width (aligned scratch: ck_alloc_floats in jobs/).
#include "sparse/internal.h"

#include <string.h>

/// Threads a kernel may use here; contract in sparse/internal.h.
int ck_sp_threads(void) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
  int t = omp_get_max_threads();
  return t < 1 ? 1 : t;
#else
  return 1;
#endif
}

/// Row ranges of about equal nonzeros; contract in sparse/internal.h.
void ck_sp_split_rows(const ck_sp_mat *a, int parts, int *bounds) {
  // Cost of a row: its nonzeros plus a fixed overhead of 4 (loading and storing its outputs).
  const int R = a->rows;
  const double total = (double)a->row_prefix[R] + 4.0 * R;
  bounds[0] = 0;
  int r = 0;
  for (int t = 1; t < parts; t++) {
    double target = total * t / parts;
    while (r < R && (double)a->row_prefix[r] + 4.0 * r < target) r++;
    bounds[t] = r;
  }
  bounds[parts] = R;
}

/// Column ranges aligned to `align`; contract in sparse/internal.h.
void ck_sp_split_cols(int n, int parts, int align, int *bounds) {
  bounds[0] = 0;
  for (int t = 1; t < parts; t++) {
    long b = ((long)n * t / parts + align / 2) / align * align;
    if (b > n) b = n;
    if (b < bounds[t - 1]) b = bounds[t - 1];
    bounds[t] = (int)b;
  }
  bounds[parts] = n;
}
