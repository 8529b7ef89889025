// Sparse × dense product Y = W·X (+ bias) (+ beta·Y) on the column-panel CSR format, and the
// input gradient dX = Wᵀ·dY (+ beta·dX) as the same product on the transposed copy.
//
// Blocking of the vector kernels (arch/x86/vec_kernels.h; AVX-512 figures, AVX2 is the same
// with 8-float vectors):
//  * a tile of 64 columns of X/Y (four 16-float vectors) is the register tile: a row of W keeps
//    its 64 outputs in 4 accumulators while its nonzeros stream by, each weight broadcast once
//    and multiplied into 4 vectors of the X row it selects;
//  * rows [k0, k1) of X for that tile (up to 1024 rows, whole panels) are packed contiguously
//    (64 floats per row, zero padded), so a panel of 128 X rows is one 32 KiB L1-sized block
//    without cache-set conflicts whatever ldx is;
//  * for each panel, a block of 256 rows of W sweeps over the packed block, so each X row
//    loaded into L1 serves every row of the block that uses it.
// With AVX-512 the forward product usually runs as code compiled for the pattern (jit/).
// Threads split the columns (equal work per column), or rows by nonzeros when n is small; the
// transposed product gives every output row of dX to one thread, so no atomics are needed.
#include "sparse/internal.h"

/// Floats of scratch of the SpMM worker: the widest packed block or the compiled product's;
/// contract in sparse/internal.h.
size_t ck_sp_spmm_scratch(const ck_sp_mat *a) {
  const size_t rows = (size_t)ck_sp_imin(a->cols, CK_SP_SPMM_KCHUNK) + CK_SPARSE_PANEL;
  const size_t packed = rows * CK_SP_SPMM_TILE + 64, jit = ck_sp_jit_scratch();
  return packed > jit ? packed : jit;
}

/// Single-threaded SpMM: the compiled product when it covers the rows, else the instruction set's
/// kernel; contract in sparse/internal.h.
void ck_sp_spmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *x,
                       int ldx, const int64_t *xoff, const float *bias, float beta, float *y,
                       int ldy, float *scratch) {
  if (r0 >= r1 || n0 >= n1) return;
  if (xoff) { // windows read in place by a product compiled with their offsets
    const ck_sp_jit *w = ck_sp_jit_get_windowed(a, xoff);
    if (w && ck_sp_jit_window_worker(w, r0, r1, n0, n1, x, bias, beta, y, ldy)) return;
  }
  const ck_sp_jit *j = ck_sp_jit_get(a);
  if (j && ck_sp_jit_worker(j, r0, r1, n0, n1, x, ldx, xoff, bias, beta, y, ldy, scratch)) return;
  ck_sp_kernels()->spmm(a, r0, r1, n0, n1, x, ldx, xoff, bias, beta, y, ldy, scratch);
}

/// Threaded SpMM over all rows; contract in sparse/internal.h.
void ck_sp_spmm_run(const ck_sp_mat *a, int n, const float *x, int ldx, const int64_t *xoff,
                    const float *bias, float beta, float *y, int ldy) {
  if (n <= 0 || a->rows <= 0) return;
  const ck_sp_jit *j = ck_sp_jit_get(a);
  int threads = ck_sp_threads();
  const double work = (double)(a->row_prefix[a->rows] + a->rows) * n;
  if (work < 65536.0) threads = 1;
  const size_t scratch = ck_sp_spmm_scratch(a);
  if (threads == 1) {
    float *buf = ck_scratch_take(scratch);
    ck_sp_spmm_worker(a, 0, a->rows, 0, n, x, ldx, xoff, bias, beta, y, ldy, buf);
    ck_scratch_give(buf);
    return;
  }
  const int split_cols = n >= 64 * threads;
#pragma omp parallel num_threads(threads)
  {
    const int t = ck_sp_thread_num(), nt = ck_sp_team_size();
    int bounds[nt + 1];
    float *buf = ck_scratch_take(scratch);
    if (split_cols) {
      ck_sp_split_cols(n, nt, 16, bounds);
      ck_sp_spmm_worker(a, 0, a->rows, bounds[t], bounds[t + 1], x, ldx, xoff, bias, beta, y, ldy,
                        buf);
    } else {
      ck_sp_split_rows(a, nt, bounds);
      if (j) ck_sp_jit_align_rows(j, nt, bounds);
      ck_sp_spmm_worker(a, bounds[t], bounds[t + 1], 0, n, x, ldx, xoff, bias, beta, y, ldy, buf);
    }
    ck_scratch_give(buf);
  }
}

/// Forward product on W; contract in include/ck_sparse.h.
void ck_sparse_spmm(const ck_sparse *w, int n, const float *x, int ldx, const float *bias,
                    float beta, float *y, int ldy) {
  ck_sp_spmm_run(&w->a, n, x, ldx, NULL, bias, beta, y, ldy);
}

/// Input gradient: the forward kernel on the transposed copy; contract in include/ck_sparse.h.
void ck_sparse_spmm_t(const ck_sparse *w, int n, const float *dy, int lddy, float beta,
                      float *dx, int lddx) {
  ck_sp_spmm_run(&w->t, n, dy, lddy, NULL, NULL, beta, dx, lddx);
}
