// Weight gradient at the kept positions only (SDDMM): dW[i,k] = Σ_n dY[i,n]·X[k,n].
//
// Vector kernels (arch/x86/vec_kernels.h; AVX-512 figures): a tile of 128 columns; the tile of
// row i of dY stays in 8 registers while the entries of row i go by, four at a time: four dot
// products over the tile (8 FMAs each, X rows read from a packed, zero-padded block of up to
// 512 X rows), reduced together by a shuffle tree into 4 sums added to the value-order output.
// Panels and row blocks as in the SpMM.
// Threads split the columns (each thread sums into a private array, reduced at the end) or,
// when n is small, rows by nonzeros (writing straight to the output).
#include "sparse/internal.h"

#include <string.h>

#define P CK_SPARSE_PANEL

/// Floats of scratch of the SDDMM worker: its widest packed block; contract in sparse/internal.h.
size_t ck_sp_sddmm_scratch(const ck_sp_mat *a) {
  const size_t rows = (size_t)ck_sp_imin(a->cols, CK_SP_SDDMM_KCHUNK) + P;
  return rows * CK_SP_SDDMM_TILE + 64;
}

/// Single-threaded SDDMM through the instruction set's kernel; contract in sparse/internal.h.
void ck_sp_sddmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *dy,
                        int lddy, const int64_t *dyoff, const float *x, int ldx,
                        const int64_t *xoff, float *acc, float *scratch) {
  if (r0 >= r1 || n0 >= n1) return;
  ck_sp_kernels()->sddmm(a, r0, r1, n0, n1, dy, lddy, dyoff, x, ldx, xoff, acc, scratch);
}

/// The entry table of the windowed SDDMM; contract in sparse/internal.h.
int ck_sp_window_entries_make(const ck_sp_mat *a, const int64_t *xoff, int block_cols,
                              ck_sp_window_entries *e) {
  const int64_t nnz = a->ptr[(size_t)a->npanels * a->rows];
  const int blocks = (a->cols + block_cols - 1) / block_cols;
  const size_t most = (size_t)a->rows * (size_t)blocks, n1 = nnz > 0 ? (size_t)nnz : 1;
  e->row = malloc(sizeof(int32_t) * most);
  e->start = malloc(sizeof(int32_t) * (most + 1));
  e->value = malloc(sizeof(int32_t) * n1);
  e->off = malloc(sizeof(int64_t) * n1);
  if (!e->row || !e->start || !e->value || !e->off) {
    ck_sp_window_entries_free(e);
    return -1;
  }
  int32_t n = 0;
  int segments = 0;
  for (int k0 = 0; k0 < a->cols; k0 += block_cols) {
    const int k1 = ck_sp_imin(a->cols, k0 + block_cols);
    for (int i = 0; i < a->rows; i++) {
      const int32_t first = n;
      for (int p = k0 / P; p <= (k1 - 1) / P; p++) {
        const size_t s = (size_t)p * a->rows + i;
        for (int32_t j = a->ptr[s]; j < a->ptr[s + 1]; j++) {
          const int k = p * P + a->col[j];
          if (k < k0 || k >= k1) continue;
          e->value[n] = j;
          e->off[n++] = xoff[k];
        }
      }
      if (n > first) {
        e->row[segments] = i;
        e->start[segments++] = first;
      }
    }
  }
  e->start[segments] = n;
  e->segments = segments;
  return 0;
}

/// Frees an entry table; contract in sparse/internal.h.
void ck_sp_window_entries_free(ck_sp_window_entries *e) {
  free(e->row);
  free(e->start);
  free(e->value);
  free(e->off);
  e->row = e->start = e->value = NULL;
  e->off = NULL;
}

/// Adds up the per-lane accumulators; contract in sparse/internal.h.
void ck_sp_lanes_sum(int64_t n, const float *lanes, float *acc) {
  for (int64_t j = 0; j < n; j++) {
    const float *l = lanes + (size_t)j * CK_SP_LANES;
    float s = 0.0f;
    for (int q = 0; q < CK_SP_LANES; q++) s += l[q];
    acc[j] += s;
  }
}

// values of rows [r0, r1) := beta·values (0 when beta == 0, without reading them).
static void scale_rows(const ck_sp_mat *a, int r0, int r1, float beta, float *v) {
  for (int p = 0; p < a->npanels; p++) {
    const int32_t j0 = a->ptr[(size_t)p * a->rows + r0], j1 = a->ptr[(size_t)p * a->rows + r1];
    if (beta == 0.0f)
      memset(v + j0, 0, sizeof(float) * (size_t)(j1 - j0));
    else
      for (int32_t j = j0; j < j1; j++) v[j] *= beta;
  }
}

/// Weight gradient in value order, threaded; contract in include/ck_sparse.h.
void ck_sparse_sddmm(const ck_sparse *w, int n, const float *dy, int lddy, const float *x,
                     int ldx, float beta, float *dw_values) {
  const int64_t nnz = w->nnz;
  if (nnz == 0) return;
  // The operand that is packed and reused across rows is the one with fewer rows: X (K rows)
  // with W's structure, or dY (M rows) with the transposed structure, whose results are then
  // scattered back to value order through tmap.
  const int use_t = w->a.rows < w->a.cols;
  const ck_sp_mat *m = use_t ? &w->t : &w->a;
  const float *rowop = use_t ? x : dy, *packop = use_t ? dy : x;
  const int ldr = use_t ? ldx : lddy, ldp = use_t ? lddy : ldx;
  int threads = ck_sp_threads();
  if (n <= 0 || (double)(nnz + m->rows) * n < 65536.0) threads = 1;
  const int split_cols = threads > 1 && n >= 128 * threads;
  const int nbuf = split_cols ? threads : 1, direct = !use_t;
  float *tmp = (nbuf - direct) > 0 ? ck_scratch_take((size_t)(nbuf - direct) * (size_t)nnz) : NULL;
  const size_t scratch = ck_sp_sddmm_scratch(m);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = ck_sp_thread_num(), nt = ck_sp_team_size();
    int bounds[nt + 1];
    float *buf = n > 0 ? ck_scratch_take(scratch) : NULL;
    if (split_cols) {
      ck_sp_split_cols(n, nt, 16, bounds);
      float *mine;
      if (direct && t == 0) {
        scale_rows(m, 0, m->rows, beta, dw_values);
        mine = dw_values;
      } else {
        mine = tmp + (size_t)(t - direct) * (size_t)nnz;
        memset(mine, 0, sizeof(float) * (size_t)nnz);
      }
      ck_sp_sddmm_worker(m, 0, m->rows, bounds[t], bounds[t + 1], rowop, ldr, NULL, packop, ldp,
                         NULL, mine, buf);
    } else {
      ck_sp_split_rows(m, nt, bounds);
      float *mine = direct ? dw_values : tmp;
      scale_rows(m, bounds[t], bounds[t + 1], direct ? beta : 0.0f, mine);
      if (n > 0)
        ck_sp_sddmm_worker(m, bounds[t], bounds[t + 1], 0, n, rowop, ldr, NULL, packop, ldp, NULL,
                           mine, buf);
    }
    ck_scratch_give(buf);
#pragma omp barrier
    if (direct) {
      if (nbuf > 1) {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < nnz; j++) {
          float s = dw_values[j];
          for (int q = 1; q < nbuf; q++) s += tmp[(size_t)(q - 1) * (size_t)nnz + j];
          dw_values[j] = s;
        }
      }
    } else {
      const int32_t *map = w->tmap;
#pragma omp for schedule(static)
      for (int64_t j = 0; j < nnz; j++) {
        float s = tmp[j];
        for (int q = 1; q < nbuf; q++) s += tmp[(size_t)q * (size_t)nnz + j];
        float *o = dw_values + map[j];
        *o = beta != 0.0f ? beta * *o + s : s;
      }
    }
  }
  ck_scratch_give(tmp);
}

/// Weight gradient scattered to a dense M×K array; contract in include/ck_sparse.h.
void ck_sparse_sddmm_dense(const ck_sparse *w, int n, const float *dy, int lddy, const float *x,
                           int ldx, float beta, float *dw) {
  const ck_sp_mat *a = &w->a;
  const int M = a->rows, K = a->cols;
  float *v = ck_scratch_take((size_t)w->nnz + 1);
  ck_sparse_sddmm(w, n, dy, lddy, x, ldx, 0.0f, v);
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads())
  for (int i = 0; i < M; i++) {
    float *row = dw + (size_t)i * K;
    if (beta != 0.0f)
      for (int p = 0; p < a->npanels; p++) {
        const size_t s = (size_t)p * M + i;
        for (int32_t j = a->ptr[s]; j < a->ptr[s + 1]; j++) v[j] += beta * row[p * P + a->col[j]];
      }
    memset(row, 0, sizeof(float) * K);
    for (int p = 0; p < a->npanels; p++) {
      const size_t s = (size_t)p * M + i;
      for (int32_t j = a->ptr[s]; j < a->ptr[s + 1]; j++) row[p * P + a->col[j]] = v[j];
    }
  }
  ck_scratch_give(v);
}
