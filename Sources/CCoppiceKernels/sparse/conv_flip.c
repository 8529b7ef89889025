// The input gradient of a stride-1 convolution as a convolution: dX = conv(dY, W′) with
// W′[c, (o, KH−1−i, KW−1−j)] = W[o, (c, i, j)] and padding KH−1−P. Computed that way it runs on
// the direct convolution's compiled forward product (windows read in place) and writes each
// dX element once, where the transposed product Wᵀ·dY wrote a K × (OH·Wp) column matrix that
// was then added back window by window (col2im) — as much memory traffic as the product.
//
// W′ is a second sparse format, built on first use and kept with W's (its values follow W's
// through a value map, re-gathered whenever W's values changed since, see values_version).
#include "sparse/internal.h"

#include <pthread.h>
#include <string.h>

#define P CK_SPARSE_PANEL

struct ck_sp_flip {
  ck_sparse *f;     // W′: C rows × O·KH·KW columns
  int32_t *map;     // f's value q is W's value map[q]
  int kh, kw;
  uint64_t version; // W's values_version f's values were taken at
};

static pthread_mutex_t flip_lock = PTHREAD_MUTEX_INITIALIZER;

/// W′ of s for KH×KW kernels, or NULL when out of memory or too large for the value map.
static ck_sp_flip *build_flip(const ck_sparse *s, int kh, int kw) {
  const ck_sp_mat *a = &s->a;
  const int O = a->rows, K = a->cols, taps = kh * kw, C = K / taps;
  const int64_t nnz = s->nnz;
  if (nnz >= ((int64_t)1 << 24)) return NULL; // value indices travel as exact floats below
  const size_t n = (size_t)O * K;
  ck_sp_flip *fl = calloc(1, sizeof *fl);
  float *index = calloc(n, sizeof(float)), *mask = calloc(n, sizeof(float));
  float *order = ck_alloc_floats((size_t)nnz + 1);
  if (!fl || !index || !mask || !order) goto fail;
  // W′ densely: at each kept position, 1 + the index of W's value there.
  for (int p = 0; p < a->npanels; p++)
    for (int o = 0; o < O; o++)
      for (int32_t j = a->ptr[(size_t)p * O + o]; j < a->ptr[(size_t)p * O + o + 1]; j++) {
        const int k = p * P + a->col[j], c = k / taps, i = (k % taps) / kw, jj = k % kw;
        const size_t at = (size_t)c * ((size_t)O * taps) + (size_t)o * taps +
                          (size_t)(kh - 1 - i) * kw + (kw - 1 - jj);
        index[at] = (float)(j + 1);
        mask[at] = 1.0f;
      }
  fl->f = ck_sparse_create(C, O * taps, index, mask);
  fl->map = malloc(sizeof(int32_t) * ((size_t)nnz + 1));
  if (!fl->f || !fl->map) goto fail;
  memcpy(order, ck_sparse_values(fl->f), sizeof(float) * (size_t)nnz);
  for (int64_t q = 0; q < nnz; q++) fl->map[q] = (int32_t)order[q] - 1;
  fl->kh = kh, fl->kw = kw;
  fl->version = s->values_version - 1; // values not taken yet
  free(index), free(mask), free(order);
  return fl;
fail:
  free(index), free(mask), free(order);
  ck_sp_flip_free(fl);
  return NULL;
}

/// W′ of s with current values; contract in sparse/internal.h.
const ck_sparse *ck_sp_conv_flipped(ck_sparse *s, int kh, int kw) {
  if (kh <= 0 || kw <= 0 || s->a.cols % (kh * kw) != 0) return NULL;
  pthread_mutex_lock(&flip_lock);
  if (!s->flip) s->flip = build_flip(s, kh, kw);
  ck_sp_flip *fl = s->flip;
  if (fl && (fl->kh != kh || fl->kw != kw)) fl = NULL; // another kernel shape: not this way
  if (fl && fl->version != s->values_version) {
    const int64_t nnz = s->nnz;
    float *v = ck_scratch_take((size_t)nnz + 1);
    if (v) {
      for (int64_t q = 0; q < nnz; q++) v[q] = s->a.val[fl->map[q]];
      ck_sparse_set_values(fl->f, v);
      fl->version = s->values_version;
      ck_scratch_give(v);
    } else {
      fl = NULL;
    }
  }
  pthread_mutex_unlock(&flip_lock);
  return fl ? fl->f : NULL;
}

/// Frees W′ (NULL allowed); contract in sparse/internal.h.
void ck_sp_flip_free(ck_sp_flip *fl) {
  if (!fl) return;
  ck_sparse_free(fl->f);
  free(fl->map);
  free(fl);
}

/// Bytes held by W′ (0 for NULL); contract in sparse/internal.h.
size_t ck_sp_flip_bytes(const ck_sp_flip *fl) {
  return fl ? sizeof *fl + ck_sparse_bytes(fl->f) + sizeof(int32_t) * (size_t)(fl->f->nnz + 1) : 0;
}
