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
// The backward's token ranges depend only on n and the thread count, and their partial sums of
// dW and db are added in range order, so results are reproducible run to run. Threads come from
// ck_run_job: the host's pool when it lent one (ck_set_parallel_runner), else OpenMP.
#include "sparse/internal.h"

#include <string.h>

#define CHUNK 64 // tokens per chunk (one SpMM column tile)

// The compiled products (jit/) pack their X rows again and run one code segment per (block,
// 512-row chunk); over only CHUNK tokens that costs more than it saves once the chunk's rows
// leave L2. Measured with 2 threads at 128 tokens: the cnn's fc1 (256×6272, 90%) forward 0.52
// → 0.35 ms, backward 0.98 → 0.74 ms, value refresh 0.28 → 0.15 ms with the generic kernels;
// at 784 or 1024 inputs (mlp, 1024×1024) the compiled ones are as fast or faster. So layers with
// more inputs than this use the generic kernels for both products.
#define COMPILED_MAX_INPUTS 2048

/// The SpMM of one chunk: ck_sp_spmm_worker, or the instruction set's generic kernel for
/// layers with more than COMPILED_MAX_INPUTS inputs (w: the layer's weight).
static void chunk_spmm(const ck_sparse *w, const ck_sp_mat *a, int rows, int cols, const float *x,
                       const float *bias, float *y, float *buf) {
  if (w->a.cols > COMPILED_MAX_INPUTS)
    ck_sp_kernels()->spmm(a, 0, rows, 0, cols, x, CHUNK, NULL, bias, 0.0f, y, CHUNK, buf);
  else
    ck_sp_spmm_worker(a, 0, rows, 0, cols, x, CHUNK, NULL, bias, 0.0f, y, CHUNK, buf);
}

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
/// One 16×16 block: rows s, s + lds, … to columns d, d + ldd, …: pairs of rows interleaved,
/// then pairs of pairs (within 128-bit lanes), then the lanes of four rows, of eight.
CK_TGT_AVX512 static inline void transpose16x16(const float *s, size_t lds, float *d, size_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(s + (size_t)i * lds);
  for (int k = 0; k < 8; k++) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  // r[4g + j], lane L: rows 4g … 4g + 3 of column 4L + j.
  for (int g = 0; g < 4; g++) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 1]), e = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, e));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, e));
  }
  // t[m] (rows 0–7) and t[8 + m] (rows 8–15), lanes: columns m and m + 8 of two row groups.
  for (int j = 0; j < 4; j++) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int m = 0; m < 8; m++) {
    _mm512_storeu_ps(d + (size_t)m * ldd, _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88));
    _mm512_storeu_ps(d + (size_t)(m + 8) * ldd, _mm512_shuffle_f32x4(t[m], t[8 + m], 0xDD));
  }
}

/// transpose_avx2 with 16×16 blocks: every row segment read and written is a whole 64-byte
/// line where the arrays are aligned (the 8×8 blocks read and wrote half lines, so each line of
/// a large target was written twice, the second time after it had left L1), and half the
/// shuffles per element. Measured on the cnn's fc1 (256×6272, 128 tokens, 2 threads, paired
/// calls in one process): forward 1.16× / 1.14× / 1.09× and backward 1.15× / 1.13× / 1.07×
/// faster at 95 / 90 / 80%, the mlp's 300×784 1.07×. The edges by transpose_avx2.
CK_TGT_AVX512 static void transpose_avx512(int rows, int cols, const float *src, int lds,
                                           float *dst, int ldd) {
  const int r16 = rows / 16 * 16, c16 = cols / 16 * 16;
  for (int r = 0; r < r16; r += 16)
    for (int c = 0; c < c16; c += 16)
      transpose16x16(src + (size_t)r * lds + c, (size_t)lds, dst + (size_t)c * ldd + r,
                     (size_t)ldd);
  if (c16 < cols) transpose_avx2(r16, cols - c16, src + c16, lds, dst + (size_t)c16 * ldd, ldd);
  if (r16 < rows) transpose_avx2(rows - r16, cols, src + (size_t)r16 * lds, lds, dst + r16, ldd);
}
#endif

/// dst (cols × rows, leading dimension ldd) = src (rows × cols, leading dimension lds)ᵀ.
static void transpose(int rows, int cols, const float *src, int lds, float *dst, int ldd) {
#if CK_SP_X86
  if (ck_sp_isa_now() == CK_SP_ISA_AVX512) {
    transpose_avx512(rows, cols, src, lds, dst, ldd);
    return;
  }
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

// ---------------------------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------------------------

typedef struct {
  const ck_sparse *w;
  int n;
  const float *x, *bias, *dy;
  float *y, *dx, *dw_values, *db;
  float *dw_parts, *db_parts;           // partial sums of parts 1… (part 0 sums into the outputs)
  const ck_image_observer *dx_observer; // backward: given each token's finished dx row
  const int *bounds;                    // token range of each part (backward)
} linear_job;

/// Forward, one chunk of tokens. Scratch: xt (K × CHUNK), yt (M × CHUNK), the SpMM's.
static void forward_part(void *arg, int part, int parts, float *scratch) {
  (void)parts;
  const linear_job *j = arg;
  const ck_sp_mat *a = &j->w->a;
  const int M = a->rows, K = a->cols, c0 = part * CHUNK, cw = ck_sp_imin(CHUNK, j->n - c0);
  float *xt = scratch, *yt = xt + (size_t)K * CHUNK, *buf = yt + (size_t)M * CHUNK;
  transpose(cw, K, j->x + (size_t)c0 * K, K, xt, CHUNK);
  chunk_spmm(j->w, a, M, cw, xt, j->bias, yt, buf);
  transpose(M, cw, yt, CHUNK, j->y + (size_t)c0 * M, M);
}

/// y (n×M) = x (n×K)·Wᵀ (+ bias); contract in include/ck_sparse.h.
void ck_sparse_linear_forward(const ck_sparse *w, int n, const float *x, const float *bias,
                              float *y) {
  const ck_sp_mat *a = &w->a;
  const int M = a->rows, K = a->cols;
  if (n <= 0) return;
  linear_job j = {.w = w, .n = n, .x = x, .bias = bias, .y = y};
  const size_t scratch = (size_t)(K + M) * CHUNK + ck_sp_spmm_scratch(a);
  // Chunks are independent, so each is a part, handed out as threads become free.
  ck_run_job(linear_threads(n, (double)w->nnz + M), (n + CHUNK - 1) / CHUNK, forward_part, &j,
             scratch);
}

/// Backward, one part's token range in chunks. Scratch: dyt (M × CHUNK), xt and dxt (K × CHUNK
/// each), the products'.
static void backward_part(void *arg, int part, int parts, float *scratch) {
  (void)parts;
  const linear_job *j = arg;
  const ck_sp_mat *a = &j->w->a, *t = &j->w->t;
  const int M = a->rows, K = a->cols;
  const size_t nnz = (size_t)j->w->nnz;
  float *dyt = scratch, *xt = dyt + (size_t)M * CHUNK, *dxt = xt + (size_t)K * CHUNK;
  float *buf = dxt + (size_t)K * CHUNK;
  float *my_dw = j->dw_values ? (part == 0 ? j->dw_values : j->dw_parts + (size_t)(part - 1) * nnz)
                              : NULL;
  float *my_db = j->db ? (part == 0 ? j->db : j->db_parts + (size_t)(part - 1) * (size_t)M) : NULL;
  if (my_dw && nnz) memset(my_dw, 0, sizeof(float) * nnz);
  if (my_db) memset(my_db, 0, sizeof(float) * (size_t)M);
  const int end = j->bounds[part + 1];
  for (int c0 = j->bounds[part]; c0 < end; c0 += CHUNK) {
    const int cw = ck_sp_imin(CHUNK, end - c0);
    transpose(cw, M, j->dy + (size_t)c0 * M, M, dyt, CHUNK);
    if (my_db)
      for (int i = 0; i < M; i++) {
        const float *row = dyt + (size_t)i * CHUNK;
        float s = 0.0f;
        for (int c = 0; c < cw; c++) s += row[c];
        my_db[i] += s;
      }
    if (my_dw && nnz) {
      transpose(cw, K, j->x + (size_t)c0 * K, K, xt, CHUNK);
      ck_sp_sddmm_worker(a, 0, M, 0, cw, dyt, CHUNK, NULL, xt, CHUNK, NULL, my_dw, buf);
    }
    if (j->dx) {
      chunk_spmm(j->w, t, K, cw, dyt, NULL, dxt, buf);
      transpose(K, cw, dxt, CHUNK, j->dx + (size_t)c0 * K, K);
      for (int q = 0; j->dx_observer && q < cw; q++)
        j->dx_observer->image(j->dx_observer, c0 + q, j->dx + (size_t)(c0 + q) * K);
    }
  }
}

/// A sum of per-part partials: out[i] += Σ_q partials[q·count + i] in part order for i in the
/// slice `part` of [0, count).
typedef struct {
  float *out;
  const float *partials;
  size_t count;
  int nparts; // partial arrays
} sum_job;

static void sum_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const sum_job *s = arg;
  const size_t i0 = s->count * (size_t)part / (size_t)parts;
  const size_t i1 = s->count * (size_t)(part + 1) / (size_t)parts;
  for (size_t i = i0; i < i1; i++) {
    float v = s->out[i];
    for (int q = 0; q < s->nparts; q++) v += s->partials[(size_t)q * s->count + i];
    s->out[i] = v;
  }
}

/// dx = dy·W, dW at the kept positions, db = Σ dy; contract in include/ck_sparse.h.
void ck_sparse_linear_backward(const ck_sparse *w, int n, const float *x, const float *dy,
                               float *dx, const ck_image_observer *dx_observer,
                               float *dw_values, float *db) {
  const ck_sp_mat *a = &w->a, *t = &w->t;
  const int M = a->rows, K = a->cols;
  const size_t nnz = (size_t)w->nnz;
  if (n <= 0) { // no tokens: the sums are empty
    if (dw_values && nnz) memset(dw_values, 0, sizeof(float) * nnz);
    if (db) memset(db, 0, sizeof(float) * (size_t)M);
    return;
  }
  const double per_token = (dx ? (double)nnz : 0.0) + (dw_values ? (double)nnz : 0.0) + M;
  // One part per thread, each a fixed token range: the partial sums, and so the results,
  // depend only on n and the thread count.
  const int parts = linear_threads(n, per_token);
  int bounds[parts + 1];
  ck_sp_split_cols(n, parts, 16, bounds);
  linear_job j = {.w = w, .n = n, .x = x, .dy = dy, .dx = dx, .dw_values = dw_values, .db = db,
                  .bounds = bounds, .dx_observer = dx ? dx_observer : NULL};
  if (dw_values && parts > 1) j.dw_parts = ck_scratch_take((size_t)(parts - 1) * nnz);
  if (db && parts > 1) j.db_parts = ck_scratch_take((size_t)(parts - 1) * (size_t)M);
  size_t products = dx ? ck_sp_spmm_scratch(t) : 0;
  if (dw_values && ck_sp_sddmm_scratch(a) > products) products = ck_sp_sddmm_scratch(a);
  ck_run_job(parts, parts, backward_part, &j, (size_t)(M + 2 * K) * CHUNK + products);
  if (j.dw_parts) {
    sum_job s = {dw_values, j.dw_parts, nnz, parts - 1};
    ck_run_job(parts, parts, sum_part, &s, 0);
  }
  if (j.db_parts) {
    sum_job s = {db, j.db_parts, (size_t)M, parts - 1};
    sum_part(&s, 0, 1, NULL);
  }
  ck_scratch_give(j.db_parts);
  ck_scratch_give(j.dw_parts);
}
