// Transposed product dX = Wᵀ·dY (+ beta·dX): the forward kernel run on the transposed copy
// of the format (built with the format), so every output row of dX belongs to one thread and
// no atomics or private copies are needed.
#include "sparse/internal.h"

void ck_sparse_spmm_t(const ck_sparse *w, int n, const float *dy, int lddy, float beta,
                      float *dx, int lddx) {
  ck_sp_spmm_run(&w->t, n, dy, lddy, NULL, NULL, beta, dx, lddx);
}
