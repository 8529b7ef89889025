// Optimizer updates: SGD (momentum, Nesterov, L2 weight decay) and AdamW, over every weight of
// a tensor or over a list of positions (a sparse layer's kept weights: its pruned weights, whose
// gradient and state are zero, would stay zero anyway, so at 90% sparsity nine in ten updates —
// and the memory traffic of reading and writing three arrays for them — were wasted).
#include "ck_clones.h"
#include "ck_dense.h"
#include <math.h>

#define CK_PAR_MIN 32768

// Each update runs over chunks of CHUNK weights, in parallel over chunks; the loop over one chunk
// is a CK_CLONES function so that it is vectorised for the CPU's instruction set (a parallel
// region's own body would get only the baseline one). Every weight is updated the same way
// whatever the chunking, so the results do not depend on threads.
#define CHUNK 16384

/// The SGD update of weight i (the same arithmetic for every weight and every caller).
static inline __attribute__((always_inline)) void sgd_one(size_t i, float *w, const float *g,
                                                          float *velocity, float lr,
                                                          float momentum, float weight_decay,
                                                          int nesterov) {
  float grad = g[i] + weight_decay * w[i];
  if (momentum != 0.0f) {
    float v = momentum * velocity[i] + grad;
    velocity[i] = v;
    grad = nesterov ? grad + momentum * v : v;
  }
  w[i] -= lr * grad;
}

/// The SGD update of weights [begin, end), or of weights at[begin..<end] when `at` is given.
CK_CLONES static void sgd_range(size_t begin, size_t end, const int32_t *at, float *w,
                                const float *g, float *velocity, float lr, float momentum,
                                float weight_decay, int nesterov) {
  if (at)
    for (size_t k = begin; k < end; k++)
      sgd_one((size_t)at[k], w, g, velocity, lr, momentum, weight_decay, nesterov);
  else
    for (size_t i = begin; i < end; i++)
      sgd_one(i, w, g, velocity, lr, momentum, weight_decay, nesterov);
}

/// One SGD step (momentum, Nesterov, weight decay) in place; contract in include/ck_dense.h.
void ck_sgd_update(size_t count, float *w, const float *g, float *velocity, float lr,
                   float momentum, float weight_decay, int nesterov) {
  ck_sgd_update_at(count, NULL, w, g, velocity, lr, momentum, weight_decay, nesterov);
}

/// The SGD step of the weights at `at` (all `count` when NULL); contract in include/ck_dense.h.
void ck_sgd_update_at(size_t count, const int32_t *at, float *w, const float *g,
                      float *velocity, float lr, float momentum, float weight_decay,
                      int nesterov) {
  const size_t chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t end = (c + 1) * CHUNK < count ? (c + 1) * CHUNK : count;
    sgd_range(c * CHUNK, end, at, w, g, velocity, lr, momentum, weight_decay, nesterov);
  }
}

/// The AdamW update of weight i (c1, c2: the bias corrections).
static inline __attribute__((always_inline)) void adamw_one(size_t i, float *w, const float *g,
                                                            float *m, float *v, float lr,
                                                            float beta1, float beta2, float eps,
                                                            float weight_decay, float c1,
                                                            float c2) {
  float gi = g[i];
  float mi = beta1 * m[i] + (1.0f - beta1) * gi;
  float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  w[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + weight_decay * w[i]);
}

/// The AdamW update of weights [begin, end), or of weights at[begin..<end] when `at` is given.
CK_CLONES static void adamw_range(size_t begin, size_t end, const int32_t *at, float *w,
                                  const float *g, float *m, float *v, float lr, float beta1,
                                  float beta2, float eps, float weight_decay, float c1,
                                  float c2) {
  if (at)
    for (size_t k = begin; k < end; k++)
      adamw_one((size_t)at[k], w, g, m, v, lr, beta1, beta2, eps, weight_decay, c1, c2);
  else
    for (size_t i = begin; i < end; i++)
      adamw_one(i, w, g, m, v, lr, beta1, beta2, eps, weight_decay, c1, c2);
}

/// One AdamW step in place; contract in include/ck_dense.h.
void ck_adamw_update(size_t count, float *w, const float *g, float *m, float *v, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t t) {
  ck_adamw_update_at(count, NULL, w, g, m, v, lr, beta1, beta2, eps, weight_decay, t);
}

/// The AdamW step of the weights at `at` (all `count` when NULL); contract in include/ck_dense.h.
void ck_adamw_update_at(size_t count, const int32_t *at, float *w, const float *g, float *m,
                        float *v, float lr, float beta1, float beta2, float eps,
                        float weight_decay, int64_t t) {
  const float c1 = 1.0f / (1.0f - powf(beta1, (float)t));
  const float c2 = 1.0f / (1.0f - powf(beta2, (float)t));
  const size_t chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t end = (c + 1) * CHUNK < count ? (c + 1) * CHUNK : count;
    adamw_range(c * CHUNK, end, at, w, g, m, v, lr, beta1, beta2, eps, weight_decay, c1, c2);
  }
}
