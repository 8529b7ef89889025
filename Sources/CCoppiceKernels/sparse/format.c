// Sparse weight format: column-panel CSR of W plus a transposed copy, built from a dense
// weight and a mask, refreshed in place when only the values change.
#include "sparse/internal.h"

#include <string.h>

#define P CK_SPARSE_PANEL
#define PAD 64 // extra entries after col/val so vector code may over-read a little

/// Whether entry idx of the mask is kept: the float mask mf when not NULL, else the byte mask mu.
static int kept(const float *mf, const uint8_t *mu, size_t idx) {
  return mf ? (mf[idx] != 0.0f) : (mu[idx] != 0);
}

/// Frees m's arrays and compiled product and zeroes it (m itself is not freed).
static void mat_free(ck_sp_mat *m) {
  ck_sp_jit_reset(m);
  free(m->ptr);
  free(m->col);
  free(m->val);
  free(m->row_prefix);
  memset(m, 0, sizeof *m);
}

/// Sets m's shape and allocates its zeroed ptr and row_prefix; 1 on success, 0 when out of memory
/// (free with mat_free).
static int mat_alloc(ck_sp_mat *m, int rows, int cols, int64_t nnz_hint_unused) {
  (void)nnz_hint_unused;
  m->rows = rows;
  m->cols = cols;
  m->npanels = (cols + P - 1) / P;
  m->ptr = calloc((size_t)m->npanels * rows + 1, sizeof(int32_t));
  m->row_prefix = calloc((size_t)rows + 1, sizeof(int64_t));
  return m->ptr && m->row_prefix;
}

/// Allocates m's col and val for nnz entries plus padding, zeroed; 1 on success, 0 when out of
/// memory.
static int mat_alloc_entries(ck_sp_mat *m, int64_t nnz) {
  m->col = calloc((size_t)nnz + PAD, sizeof(uint16_t));
  m->val = ck_alloc_floats((size_t)nnz + PAD);
  if (m->val) memset(m->val, 0, sizeof(float) * ((size_t)nnz + PAD));
  return m->col && m->val;
}

// ptr currently holds counts at [p·rows + i + 1]; turn them into offsets and fill row_prefix.
static void mat_finish_offsets(ck_sp_mat *m) {
  size_t total = (size_t)m->npanels * m->rows;
  m->ptr[0] = 0;
  for (size_t s = 0; s < total; s++) m->ptr[s + 1] += m->ptr[s];
  m->row_prefix[0] = 0;
  for (int i = 0; i < m->rows; i++) {
    int64_t c = 0;
    for (int p = 0; p < m->npanels; p++) {
      size_t s = (size_t)p * m->rows + i;
      c += m->ptr[s + 1] - m->ptr[s];
    }
    m->row_prefix[i + 1] = m->row_prefix[i] + c;
  }
}

/// The format of w (rows×cols) under the float mask mf or, when it is NULL, the byte mask mu; NULL
/// on invalid sizes or out of memory.
static ck_sparse *build(int rows, int cols, const float *w, const float *mf, const uint8_t *mu) {
  if (rows <= 0 || cols <= 0 || (int64_t)rows * cols >= ((int64_t)1 << 31) || !w || (!mf && !mu))
    return NULL;
  ck_sparse *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  ck_sp_mat *a = &s->a, *t = &s->t;
  if (!mat_alloc(a, rows, cols, 0) || !mat_alloc(t, cols, rows, 0)) goto fail;
  const int M = rows, K = cols, np = a->npanels, nq = t->npanels;

  // W: counts per (panel, row), then offsets, then entries; rows are independent.
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads())
  for (int i = 0; i < M; i++) {
    for (int p = 0; p < np; p++) {
      int k1 = (p + 1) * P < K ? (p + 1) * P : K, c = 0;
      for (int k = p * P; k < k1; k++) c += kept(mf, mu, (size_t)i * K + k);
      a->ptr[(size_t)p * M + i + 1] = c;
    }
  }
  mat_finish_offsets(a);
  s->nnz = a->ptr[(size_t)np * M];
  if (!mat_alloc_entries(a, s->nnz) || !mat_alloc_entries(t, s->nnz)) goto fail;
  s->tmap = malloc(sizeof(int32_t) * ((size_t)s->nnz + 1));
  if (!s->tmap) goto fail;
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads())
  for (int i = 0; i < M; i++) {
    for (int p = 0; p < np; p++) {
      int k1 = (p + 1) * P < K ? (p + 1) * P : K;
      int32_t j = a->ptr[(size_t)p * M + i];
      for (int k = p * P; k < k1; k++) {
        size_t idx = (size_t)i * K + k;
        if (kept(mf, mu, idx)) {
          a->col[j] = (uint16_t)(k - p * P);
          a->val[j] = w[idx];
          j++;
        }
      }
    }
  }

  // Wᵀ: panel q holds rows i ∈ [q·P, (q+1)·P) of W; every q is owned by one thread.
#pragma omp parallel for schedule(static, 1) num_threads(ck_sp_threads())
  for (int q = 0; q < nq; q++) {
    int i1 = (q + 1) * P < M ? (q + 1) * P : M;
    int32_t *cnt = t->ptr + (size_t)q * K + 1;
    for (int i = q * P; i < i1; i++)
      for (int k = 0; k < K; k++) cnt[k] += kept(mf, mu, (size_t)i * K + k);
  }
  mat_finish_offsets(t);
  int32_t *cursor = malloc(sizeof(int32_t) * ((size_t)nq * K + 1));
  if (!cursor) goto fail;
  memcpy(cursor, t->ptr, sizeof(int32_t) * ((size_t)nq * K + 1));
#pragma omp parallel for schedule(static, 1) num_threads(ck_sp_threads())
  for (int q = 0; q < nq; q++) {
    int i1 = (q + 1) * P < M ? (q + 1) * P : M;
    int32_t *cur = cursor + (size_t)q * K;
    for (int i = q * P; i < i1; i++) {
      for (int p = 0; p < np; p++) {
        int k1 = (p + 1) * P < K ? (p + 1) * P : K;
        int32_t ja = a->ptr[(size_t)p * M + i];
        for (int k = p * P; k < k1; k++) {
          if (!kept(mf, mu, (size_t)i * K + k)) continue;
          int32_t jt = cur[k]++;
          t->col[jt] = (uint16_t)(i - q * P);
          s->tmap[jt] = ja;
          t->val[jt] = a->val[ja];
          ja++;
        }
      }
    }
  }
  free(cursor);
  return s;
fail:
  ck_sparse_free(s);
  return NULL;
}

/// Builds the format under a float mask; contract in include/ck_sparse.h.
ck_sparse *ck_sparse_create(int rows, int cols, const float *w, const float *mask) {
  return build(rows, cols, w, mask, NULL);
}

/// Builds the format under a byte mask; contract in include/ck_sparse.h.
ck_sparse *ck_sparse_create_u8(int rows, int cols, const float *w, const uint8_t *mask) {
  return build(rows, cols, w, NULL, mask);
}

/// Frees the format (NULL allowed); contract in include/ck_sparse.h.
void ck_sparse_free(ck_sparse *s) {
  if (!s) return;
  mat_free(&s->a);
  mat_free(&s->t);
  free(s->tmap);
  ck_sp_flip_free(s->flip);
  free(s);
}

// After a.val changed: the transposed copy and the compiled products follow.
static void sync_transpose(ck_sparse *s) {
  const int64_t nnz = s->nnz;
  float *tv = s->t.val;
  const float *av = s->a.val;
  const int32_t *map = s->tmap;
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads()) if (nnz > 65536)
  for (int64_t j = 0; j < nnz; j++) tv[j] = av[map[j]];
  ck_sp_jit_values_changed(&s->a);
  ck_sp_jit_values_changed(&s->t);
  s->values_version++;
}

/// Refreshes the values from a dense weight; contract in include/ck_sparse.h.
void ck_sparse_update_values(ck_sparse *s, const float *w) {
  ck_sparse_gather(s, w, s->a.val);
  sync_transpose(s);
}

/// Sets the values from an array in value order; contract in include/ck_sparse.h.
void ck_sparse_set_values(ck_sparse *s, const float *values) {
  if (s->nnz) memcpy(s->a.val, values, sizeof(float) * (size_t)s->nnz);
  sync_transpose(s);
}

/// M, K, nnz, density and the values in value order: accessors, contracts in include/ck_sparse.h.
int ck_sparse_rows(const ck_sparse *s) { return s->a.rows; }
int ck_sparse_cols(const ck_sparse *s) { return s->a.cols; }
int64_t ck_sparse_nnz(const ck_sparse *s) { return s->nnz; }
double ck_sparse_density(const ck_sparse *s) {
  return (double)s->nnz / ((double)s->a.rows * (double)s->a.cols);
}
const float *ck_sparse_values(const ck_sparse *s) { return s->a.val; }

/// Bytes held by the format; contract in include/ck_sparse.h.
size_t ck_sparse_bytes(const ck_sparse *s) {
  size_t b = sizeof *s;
  const ck_sp_mat *m[2] = {&s->a, &s->t};
  for (int q = 0; q < 2; q++) {
    b += sizeof(int32_t) * ((size_t)m[q]->npanels * m[q]->rows + 1);
    b += sizeof(int64_t) * ((size_t)m[q]->rows + 1);
    b += (sizeof(uint16_t) + sizeof(float)) * ((size_t)s->nnz + PAD);
    b += ck_sp_jit_bytes(m[q]);
  }
  return b + sizeof(int32_t) * ((size_t)s->nnz + 1) + ck_sp_flip_bytes(s->flip);
}

// Below this many dense weights a scatter or gather is done on the calling thread: a parallel
// region costs more than the work (the cnn's conv1, conv2 and fc2 every step).
#define SCATTER_PARALLEL_MIN 65536

/// dense := values at the kept positions, 0 elsewhere; contract in include/ck_sparse.h.
void ck_sparse_scatter(const ck_sparse *s, const float *values, float *dense) {
  const ck_sp_mat *a = &s->a;
  const int M = a->rows, K = a->cols;
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads()) \
    if ((int64_t)M * K > SCATTER_PARALLEL_MIN)
  for (int i = 0; i < M; i++) {
    float *row = dense + (size_t)i * K;
    memset(row, 0, sizeof(float) * K);
    for (int p = 0; p < a->npanels; p++) {
      size_t sg = (size_t)p * M + i;
      for (int32_t j = a->ptr[sg]; j < a->ptr[sg + 1]; j++) row[p * P + a->col[j]] = values[j];
    }
  }
}

/// values := dense at the kept positions; contract in include/ck_sparse.h.
void ck_sparse_gather(const ck_sparse *s, const float *dense, float *values) {
  const ck_sp_mat *a = &s->a;
  const int M = a->rows, K = a->cols;
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads()) \
    if ((int64_t)M * K > SCATTER_PARALLEL_MIN)
  for (int i = 0; i < M; i++) {
    const float *row = dense + (size_t)i * K;
    for (int p = 0; p < a->npanels; p++) {
      size_t sg = (size_t)p * M + i;
      for (int32_t j = a->ptr[sg]; j < a->ptr[sg + 1]; j++) values[j] = row[p * P + a->col[j]];
    }
  }
}
