// Linear-layer products on token-major arrays, the way hosts (and the engine's Linear) store
// activations: x is n×K, y and dy are n×M, one row per token.
//   forward   y  = x·Wᵀ (+ bias)
//   backward  dx = dy·W,  dW = dyᵀ·x at the kept positions (value order),  db = Σ_tokens dy
//
// The vector kernels vectorise over tokens and read feature-major operands (features × tokens).
// Transposing whole arrays to get those cost more than the sparse product itself at high
// sparsity (measured on a Transformer training step at 90%: 29% of all cycles in the
// transposes), so here each thread takes its own range of tokens in chunks of CHUNK,
// transposes a chunk into scratch that stays in cache, runs the single-threaded kernels on it
// and transposes the result back: every input is read once and every output written once.
// Token ranges per thread depend only on n and the thread count, and the per-thread partial
// sums of dW and db are added in thread order, so results are reproducible run to run.
#include "sparse/internal.h"

#include <string.h>

#define CHUNK 64 // tokens per chunk (one SpMM column tile)

// ---------------------------------------------------------------------------------------------
// Small strided transposes (a chunk at a time, in cache)
// ---------------------------------------------------------------------------------------------

/// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols: plain C.
static void transpose_c(int rows, int cols, const float *src, int lds, float *dst, int ldd) {
  for (int r0 = 0; r0 < rows; r0 += 16)
    for (int c0 = 0; c0 < cols; c0 += 16) {
      const int r1 = ck_sp_imin(rows, r0 + 16), c1 = ck_sp_imin(cols, c0 + 16);
      for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
    }
}

#if CK_SP_X86
/// One 8×8 block: rows s, s + lds, … to columns d, d + ldd, … (AVX2 shuffles).
CK_TGT_AVX2 static inline void transpose8x8(const float *s, size_t lds, float *d, size_t ldd) {
  __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds);
  __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
  // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/// transpose_c with 8×8 vector blocks; the ragged edges in plain C.
CK_TGT_AVX2 static void transpose_avx2(int rows, int cols, const float *src, int lds, float *dst,
                                       int ldd) {
  const int r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int r = 0; r < r8; r += 8)
    for (int c = 0; c < c8; c += 8)
      transpose8x8(src + (size_t)r * lds + c, (size_t)lds, dst + (size_t)c * ldd + r, (size_t)ldd);
  if (c8 < cols) transpose_c(r8, cols - c8, src + c8, lds, dst + (size_t)c8 * ldd, ldd);
  if (r8 < rows) transpose_c(rows - r8, cols, src + (size_t)r8 * lds, lds, dst + r8, ldd);
}
#endif

/// dst (cols × rows, leading dimension ldd) = src (rows × cols, leading dimension lds)ᵀ.
static void transpose(int rows, int cols, const float *src, int lds, float *dst, int ldd) {
#if CK_SP_X86
  if (ck_sp_isa_now() >= CK_SP_ISA_AVX2) {
    transpose_avx2(rows, cols, src, lds, dst, ldd);
    return;
  }
#endif
  transpose_c(rows, cols, src, lds, dst, ldd);
}

// ---------------------------------------------------------------------------------------------
// Work split
// ---------------------------------------------------------------------------------------------

/// Threads worth using for n tokens with `cost_per_token` multiply-adds each: one below ~64 K
/// multiply-adds (a parallel region costs more than it saves), never more than one per 16
/// tokens.
static int linear_threads(int n, double cost_per_token) {
  int threads = ck_sp_threads();
  if (cost_per_token * n < 65536.0) threads = 1;
  const int by_tokens = (n + 15) / 16;
  return threads < by_tokens ? threads : by_tokens;
}

/// Allocation of `count` floats set to 0.
static float *zeroed_floats(size_t count) {
  float *p = ck_sp_alloc_floats(count);
  if (p) memset(p, 0, sizeof(float) * count);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------------------------

/// y (n×M) = x (n×K)·Wᵀ (+ bias); contract in include/ck_sparse.h.
void ck_sparse_linear_forward(const ck_sparse *w, int n, const float *x, const float *bias,
                              float *y) {
  const ck_sp_mat *a = &w->a;
  const int M = a->rows, K = a->cols;
  if (n <= 0) return;
  const int threads = linear_threads(n, (double)w->nnz / n + M);
  const size_t scratch = ck_sp_spmm_scratch(a);
  const int chunks = (n + CHUNK - 1) / CHUNK;
  int next_chunk = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    float *xt = ck_sp_alloc_floats((size_t)K * CHUNK), *yt = ck_sp_alloc_floats((size_t)M * CHUNK);
    float *buf = ck_sp_alloc_floats(scratch);
    // Chunks are independent here, so they are handed out as threads become free (a counter
    // rather than schedule(dynamic), which needs a newer OpenMP runtime than Debian's).
    for (;;) {
      int q;
#pragma omp atomic capture
      q = next_chunk++;
      if (q >= chunks) break;
      const int c0 = q * CHUNK, cw = ck_sp_imin(CHUNK, n - c0);
      transpose(cw, K, x + (size_t)c0 * K, K, xt, CHUNK);
      ck_sp_spmm_worker(a, 0, M, 0, cw, xt, CHUNK, NULL, bias, 0.0f, yt, CHUNK, buf);
      transpose(M, cw, yt, CHUNK, y + (size_t)c0 * M, M);
    }
    free(buf);
    free(yt);
    free(xt);
  }
}

/// dx = dy·W, dW at the kept positions, db = Σ dy; contract in include/ck_sparse.h.
void ck_sparse_linear_backward(const ck_sparse *w, int n, const float *x, const float *dy,
                               float *dx, float *dw_values, float *db) {
  const ck_sp_mat *a = &w->a, *t = &w->t;
  const int M = a->rows, K = a->cols;
  const size_t nnz = (size_t)w->nnz;
  if (n <= 0) { // no tokens: the sums are empty
    if (dw_values && nnz) memset(dw_values, 0, sizeof(float) * nnz);
    if (db) memset(db, 0, sizeof(float) * (size_t)M);
    return;
  }
  const double per_token = (dx ? (double)nnz : 0.0) + (dw_values ? (double)nnz : 0.0) + M;
  const int threads = linear_threads(n, per_token);
  // Partial sums of threads 1… (thread 0 sums straight into the outputs).
  float *dw_parts = dw_values && threads > 1 ? zeroed_floats((size_t)(threads - 1) * nnz) : NULL;
  float *db_parts = db && threads > 1 ? zeroed_floats((size_t)(threads - 1) * (size_t)M) : NULL;
  size_t scratch = dx ? ck_sp_spmm_scratch(t) : 0;
  if (dw_values && ck_sp_sddmm_scratch(a) > scratch) scratch = ck_sp_sddmm_scratch(a);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int me = ck_sp_thread_num(), nt = ck_sp_team_size();
    int bounds[nt + 1];
    ck_sp_split_cols(n, nt, 16, bounds);
    float *dyt = ck_sp_alloc_floats((size_t)M * CHUNK);
    float *xt = dw_values ? ck_sp_alloc_floats((size_t)K * CHUNK) : NULL;
    float *dxt = dx ? ck_sp_alloc_floats((size_t)K * CHUNK) : NULL;
    float *buf = ck_sp_alloc_floats(scratch);
    float *my_dw = dw_values ? (me == 0 ? dw_values : dw_parts + (size_t)(me - 1) * nnz) : NULL;
    float *my_db = db ? (me == 0 ? db : db_parts + (size_t)(me - 1) * (size_t)M) : NULL;
    if (me == 0 && my_dw && nnz) memset(my_dw, 0, sizeof(float) * nnz);
    if (me == 0 && my_db) memset(my_db, 0, sizeof(float) * (size_t)M);
    for (int c0 = bounds[me]; c0 < bounds[me + 1]; c0 += CHUNK) {
      const int cw = ck_sp_imin(CHUNK, bounds[me + 1] - c0);
      transpose(cw, M, dy + (size_t)c0 * M, M, dyt, CHUNK);
      if (my_db)
        for (int i = 0; i < M; i++) {
          const float *row = dyt + (size_t)i * CHUNK;
          float s = 0.0f;
          for (int c = 0; c < cw; c++) s += row[c];
          my_db[i] += s;
        }
      if (my_dw && nnz) {
        transpose(cw, K, x + (size_t)c0 * K, K, xt, CHUNK);
        ck_sp_sddmm_worker(a, 0, M, 0, cw, dyt, CHUNK, NULL, xt, CHUNK, NULL, my_dw, buf);
      }
      if (dxt) {
        ck_sp_spmm_worker(t, 0, K, 0, cw, dyt, CHUNK, NULL, NULL, 0.0f, dxt, CHUNK, buf);
        transpose(K, cw, dxt, CHUNK, dx + (size_t)c0 * K, K);
      }
    }
    free(buf);
    free(dxt);
    free(xt);
    free(dyt);
#pragma omp barrier
    if (dw_parts) {
#pragma omp for schedule(static)
      for (size_t j = 0; j < nnz; j++) {
        float s = dw_values[j];
        for (int q = 1; q < nt; q++) s += dw_parts[(size_t)(q - 1) * nnz + j];
        dw_values[j] = s;
      }
    }
    if (db_parts) {
#pragma omp for schedule(static)
      for (int i = 0; i < M; i++) {
        float s = db[i];
        for (int q = 1; q < nt; q++) s += db_parts[(size_t)(q - 1) * (size_t)M + i];
        db[i] = s;
      }
    }
  }
  free(db_parts);
  free(dw_parts);
}
