// Weight gradient at the kept positions only (SDDMM): dW[i,k] = Σ_n dY[i,n]·X[k,n].
//
// AVX-512 path: a tile of 128 columns; the tile of row i of dY stays in 8 registers while the
// entries of row i go by, four at a time: four dot products over the tile (8 FMAs each, X rows
// read from a packed, zero-padded block of up to 512 X rows), reduced together by a shuffle
// tree into 4 sums added to the value-order output. Panels and row blocks as in the SpMM.
// Threads split the columns (each thread sums into a private array, reduced at the end) or,
// when n is small, rows by nonzeros (writing straight to the output).
#include "sparse/internal.h"

#include <string.h>

#define P CK_SPARSE_PANEL
#define KCHUNK 512
#define RBLOCK 256
#define PACK_AHEAD 16 // rows of X prefetched ahead while packing

static inline int imin(int a, int b) { return a < b ? a : b; }

size_t ck_sp_sddmm_scratch(const ck_sp_mat *a) {
  size_t rows = (size_t)imin(a->cols, KCHUNK) + P;
  return rows * 128 + 64;
}

static void worker_c(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *dy,
                     int lddy, const int64_t *dyoff, const float *x, int ldx, const int64_t *xoff,
                     float *acc) {
  const int M = a->rows;
  for (int p = 0; p < a->npanels; p++) {
    for (int i = r0; i < r1; i++) {
      const float *d = dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy;
      size_t s = (size_t)p * M + i;
      for (int32_t j = a->ptr[s]; j < a->ptr[s + 1]; j++) {
        const int k = p * P + a->col[j];
        const float *xr = xoff ? x + xoff[k] : x + (size_t)k * ldx;
        float sum = 0.0f;
        for (int c = n0; c < n1; c++) sum += d[c] * xr[c];
        acc[j] += sum;
      }
    }
  }
}

#if CK_SP_X86
CK_TGT_AVX512 static void pack512(const float *x, int ldx, const int64_t *xoff, int k0, int k1,
                                  int c0, int nv, __mmask16 lm, float *buf) {
  for (int k = k0; k < k1; k++) {
    const float *s = (xoff ? x + xoff[k] : x + (size_t)k * ldx) + c0;
    float *d = buf + (size_t)(k - k0) * 128;
    // X rows are far apart (ldx): fetch a few rows ahead so DRAM latency overlaps the copy.
    const char *ahead = (const char *)(s + (size_t)PACK_AHEAD * ldx); // ldx: a stride hint
    for (int v = 0; v < nv; v++) _mm_prefetch(ahead + 64 * v, _MM_HINT_T0);
    _mm_prefetch(ahead + 64 * nv - 4, _MM_HINT_T0);
    for (int v = 0; v < nv - 1; v++) _mm512_store_ps(d + 16 * v, _mm512_loadu_ps(s + 16 * v));
    _mm512_store_ps(d + 16 * (nv - 1), _mm512_maskz_loadu_ps(lm, s + 16 * (nv - 1)));
  }
}

// [Σa, Σb, Σc, Σd]
CK_TGT_AVX512 static inline __m128 reduce4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
  __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
  __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4E));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, 0xB1));
  const __m512i pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, t));
}

CK_TGT_AVX512 static inline __attribute__((always_inline)) void
rows512(const int nv, __mmask16 lm, const int32_t *ptr, const uint16_t *col, int i0, int i1,
        const float *pb, const float *dy, int lddy, const int64_t *dyoff, int c0, float *acc) {
  for (int i = i0; i < i1; i++) {
    int32_t j = ptr[i];
    const int32_t je = ptr[i + 1];
    if (j == je) continue;
    const float *dr = (dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy) + c0;
    __m512 d[8];
    for (int v = 0; v < nv - 1; v++) d[v] = _mm512_loadu_ps(dr + 16 * v);
    d[nv - 1] = _mm512_maskz_loadu_ps(lm, dr + 16 * (nv - 1));
    for (; j + 3 < je; j += 4) {
      const float *x0 = pb + (size_t)col[j] * 128, *x1 = pb + (size_t)col[j + 1] * 128;
      const float *x2 = pb + (size_t)col[j + 2] * 128, *x3 = pb + (size_t)col[j + 3] * 128;
      __m512 s0 = _mm512_mul_ps(d[0], _mm512_load_ps(x0));
      __m512 s1 = _mm512_mul_ps(d[0], _mm512_load_ps(x1));
      __m512 s2 = _mm512_mul_ps(d[0], _mm512_load_ps(x2));
      __m512 s3 = _mm512_mul_ps(d[0], _mm512_load_ps(x3));
      for (int v = 1; v < nv; v++) {
        s0 = _mm512_fmadd_ps(d[v], _mm512_load_ps(x0 + 16 * v), s0);
        s1 = _mm512_fmadd_ps(d[v], _mm512_load_ps(x1 + 16 * v), s1);
        s2 = _mm512_fmadd_ps(d[v], _mm512_load_ps(x2 + 16 * v), s2);
        s3 = _mm512_fmadd_ps(d[v], _mm512_load_ps(x3 + 16 * v), s3);
      }
      _mm_storeu_ps(acc + j, _mm_add_ps(_mm_loadu_ps(acc + j), reduce4_512(s0, s1, s2, s3)));
    }
    for (; j < je; j++) {
      const float *x0 = pb + (size_t)col[j] * 128;
      __m512 s0 = _mm512_mul_ps(d[0], _mm512_load_ps(x0));
      for (int v = 1; v < nv; v++) s0 = _mm512_fmadd_ps(d[v], _mm512_load_ps(x0 + 16 * v), s0);
      acc[j] += _mm512_reduce_add_ps(s0);
    }
  }
}

CK_TGT_AVX512 static void worker512(const ck_sp_mat *a, int r0, int r1, int n0, int n1,
                                    const float *dy, int lddy, const int64_t *dyoff,
                                    const float *x, int ldx, const int64_t *xoff, float *acc,
                                    float *buf) {
  const int M = a->rows, K = a->cols, np = a->npanels, ppc = KCHUNK / P;
  for (int c0 = n0; c0 < n1; c0 += 128) {
    const int w = imin(128, n1 - c0), nv = (w + 15) / 16;
    const __mmask16 lm = (w & 15) ? (__mmask16)((1u << (w & 15)) - 1) : (__mmask16)0xFFFF;
    for (int p0 = 0; p0 < np; p0 += ppc) {
      const int p1 = imin(np, p0 + ppc), k0 = p0 * P, k1 = imin(K, p1 * P);
      pack512(x, ldx, xoff, k0, k1, c0, nv, lm, buf);
      for (int rb = r0; rb < r1; rb += RBLOCK) {
        const int re = imin(r1, rb + RBLOCK);
        for (int p = p0; p < p1; p++) {
          const int32_t *ptr = a->ptr + (size_t)p * M;
          const float *pb = buf + (size_t)(p - p0) * P * 128;
          switch (nv) {
          case 8: rows512(8, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 7: rows512(7, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 6: rows512(6, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 5: rows512(5, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 4: rows512(4, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 3: rows512(3, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 2: rows512(2, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          default: rows512(1, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          }
        }
      }
    }
  }
}

// AVX2: tile of 64 columns = 8 ymm.
static const int32_t lane_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

CK_TGT_AVX2 static void pack256(const float *x, int ldx, const int64_t *xoff, int k0, int k1,
                                int c0, int nv, __m256i lm, float *buf) {
  for (int k = k0; k < k1; k++) {
    const float *s = (xoff ? x + xoff[k] : x + (size_t)k * ldx) + c0;
    float *d = buf + (size_t)(k - k0) * 64;
    for (int v = 0; v < nv - 1; v++) _mm256_store_ps(d + 8 * v, _mm256_loadu_ps(s + 8 * v));
    _mm256_store_ps(d + 8 * (nv - 1), _mm256_maskload_ps(s + 8 * (nv - 1), lm));
  }
}

CK_TGT_AVX2 static inline __m128 reduce4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

CK_TGT_AVX2 static inline float reduce1_256(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

CK_TGT_AVX2 static inline __attribute__((always_inline)) void
rows256(const int nv, __m256i lm, const int32_t *ptr, const uint16_t *col, int i0, int i1,
        const float *pb, const float *dy, int lddy, const int64_t *dyoff, int c0, float *acc) {
  for (int i = i0; i < i1; i++) {
    int32_t j = ptr[i];
    const int32_t je = ptr[i + 1];
    if (j == je) continue;
    const float *dr = (dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy) + c0;
    __m256 d[8];
    for (int v = 0; v < nv - 1; v++) d[v] = _mm256_loadu_ps(dr + 8 * v);
    d[nv - 1] = _mm256_maskload_ps(dr + 8 * (nv - 1), lm);
    for (; j + 3 < je; j += 4) {
      const float *x0 = pb + (size_t)col[j] * 64, *x1 = pb + (size_t)col[j + 1] * 64;
      const float *x2 = pb + (size_t)col[j + 2] * 64, *x3 = pb + (size_t)col[j + 3] * 64;
      __m256 s0 = _mm256_mul_ps(d[0], _mm256_load_ps(x0));
      __m256 s1 = _mm256_mul_ps(d[0], _mm256_load_ps(x1));
      __m256 s2 = _mm256_mul_ps(d[0], _mm256_load_ps(x2));
      __m256 s3 = _mm256_mul_ps(d[0], _mm256_load_ps(x3));
      for (int v = 1; v < nv; v++) {
        s0 = _mm256_fmadd_ps(d[v], _mm256_load_ps(x0 + 8 * v), s0);
        s1 = _mm256_fmadd_ps(d[v], _mm256_load_ps(x1 + 8 * v), s1);
        s2 = _mm256_fmadd_ps(d[v], _mm256_load_ps(x2 + 8 * v), s2);
        s3 = _mm256_fmadd_ps(d[v], _mm256_load_ps(x3 + 8 * v), s3);
      }
      _mm_storeu_ps(acc + j, _mm_add_ps(_mm_loadu_ps(acc + j), reduce4_256(s0, s1, s2, s3)));
    }
    for (; j < je; j++) {
      const float *x0 = pb + (size_t)col[j] * 64;
      __m256 s0 = _mm256_mul_ps(d[0], _mm256_load_ps(x0));
      for (int v = 1; v < nv; v++) s0 = _mm256_fmadd_ps(d[v], _mm256_load_ps(x0 + 8 * v), s0);
      acc[j] += reduce1_256(s0);
    }
  }
}

CK_TGT_AVX2 static void worker256(const ck_sp_mat *a, int r0, int r1, int n0, int n1,
                                  const float *dy, int lddy, const int64_t *dyoff, const float *x,
                                  int ldx, const int64_t *xoff, float *acc, float *buf) {
  const int M = a->rows, K = a->cols, np = a->npanels, ppc = KCHUNK / P;
  for (int c0 = n0; c0 < n1; c0 += 64) {
    const int w = imin(64, n1 - c0), nv = (w + 7) / 8;
    const __m256i lm = _mm256_loadu_si256((const __m256i *)(lane_table + 8 - (w - 8 * (nv - 1))));
    for (int p0 = 0; p0 < np; p0 += ppc) {
      const int p1 = imin(np, p0 + ppc), k0 = p0 * P, k1 = imin(K, p1 * P);
      pack256(x, ldx, xoff, k0, k1, c0, nv, lm, buf);
      for (int rb = r0; rb < r1; rb += RBLOCK) {
        const int re = imin(r1, rb + RBLOCK);
        for (int p = p0; p < p1; p++) {
          const int32_t *ptr = a->ptr + (size_t)p * M;
          const float *pb = buf + (size_t)(p - p0) * P * 64;
          switch (nv) {
          case 8: rows256(8, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 7: rows256(7, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 6: rows256(6, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 5: rows256(5, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 4: rows256(4, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 3: rows256(3, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          case 2: rows256(2, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          default: rows256(1, lm, ptr, a->col, rb, re, pb, dy, lddy, dyoff, c0, acc); break;
          }
        }
      }
    }
  }
}
#endif

void ck_sp_sddmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *dy,
                        int lddy, const int64_t *dyoff, const float *x, int ldx,
                        const int64_t *xoff, float *acc, float *scratch) {
  if (r0 >= r1 || n0 >= n1) return;
#if CK_SP_X86
  const int isa = ck_sp_isa_now();
  if (isa == 2) {
    worker512(a, r0, r1, n0, n1, dy, lddy, dyoff, x, ldx, xoff, acc, scratch);
    return;
  }
  if (isa == 1) {
    worker256(a, r0, r1, n0, n1, dy, lddy, dyoff, x, ldx, xoff, acc, scratch);
    return;
  }
#endif
  (void)scratch;
  worker_c(a, r0, r1, n0, n1, dy, lddy, dyoff, x, ldx, xoff, acc);
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
  float *tmp = (nbuf - direct) > 0 ? ck_sp_alloc_floats((size_t)(nbuf - direct) * (size_t)nnz) : NULL;
  const size_t scratch = ck_sp_sddmm_scratch(m);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int t = 0, nt = 1;
#endif
    int bounds[nt + 1];
    float *buf = n > 0 ? ck_sp_alloc_floats(scratch) : NULL;
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
    free(buf);
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
  free(tmp);
}

void ck_sparse_sddmm_dense(const ck_sparse *w, int n, const float *dy, int lddy, const float *x,
                           int ldx, float beta, float *dw) {
  const ck_sp_mat *a = &w->a;
  const int M = a->rows, K = a->cols;
  float *v = ck_sp_alloc_floats((size_t)w->nnz + 1);
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
  free(v);
}
