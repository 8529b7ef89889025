// Optimizer updates: SGD (momentum, Nesterov, L2 weight decay) and AdamW.
#include "ck_clones.h"
#include "ck_dense.h"
#include <math.h>

#define CK_PAR_MIN 32768

// Each update runs over chunks of CHUNK weights, in parallel over chunks; the loop over one chunk
// is a CK_CLONES function so that it is vectorised for the CPU's instruction set (a parallel
// region's own body would get only the baseline one). Every weight is updated the same way
// whatever the chunking, so the results do not depend on threads.
#define CHUNK 16384

/// The SGD update of weights [begin, end).
CK_CLONES static void sgd_range(size_t begin, size_t end, float *w, const float *g,
                                float *velocity, float lr, float momentum, float weight_decay,
                                int nesterov) {
  for (size_t i = begin; i < end; i++) {
    float grad = g[i] + weight_decay * w[i];
    if (momentum != 0.0f) {
      float v = momentum * velocity[i] + grad;
      velocity[i] = v;
      grad = nesterov ? grad + momentum * v : v;
    }
    w[i] -= lr * grad;
  }
}

/// One SGD step (momentum, Nesterov, weight decay) in place; contract in include/ck_dense.h.
void ck_sgd_update(size_t count, float *w, const float *g, float *velocity, float lr,
                   float momentum, float weight_decay, int nesterov) {
  const size_t chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t end = (c + 1) * CHUNK < count ? (c + 1) * CHUNK : count;
    sgd_range(c * CHUNK, end, w, g, velocity, lr, momentum, weight_decay, nesterov);
  }
}

/// The AdamW update of weights [begin, end) (c1, c2: the bias corrections).
CK_CLONES static void adamw_range(size_t begin, size_t end, float *w, const float *g, float *m,
                                  float *v, float lr, float beta1, float beta2, float eps,
                                  float weight_decay, float c1, float c2) {
  for (size_t i = begin; i < end; i++) {
    float gi = g[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + weight_decay * w[i]);
  }
}

/// One AdamW step in place; contract in include/ck_dense.h.
void ck_adamw_update(size_t count, float *w, const float *g, float *m, float *v, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t t) {
  const float c1 = 1.0f / (1.0f - powf(beta1, (float)t));
  const float c2 = 1.0f / (1.0f - powf(beta2, (float)t));
  const size_t chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t c = 0; c < chunks; c++) {
    const size_t end = (c + 1) * CHUNK < count ? (c + 1) * CHUNK : count;
    adamw_range(c * CHUNK, end, w, g, m, v, lr, beta1, beta2, eps, weight_decay, c1, c2);
  }
}
