// Optimizer updates: SGD (momentum, Nesterov, L2 weight decay) and AdamW.
#include "ck_dense.h"
#include <math.h>

#define CK_PAR_MIN 32768

/// One SGD step (momentum, Nesterov, weight decay) in place; contract in include/ck_dense.h.
void ck_sgd_update(size_t count, float *w, const float *g, float *velocity, float lr,
                   float momentum, float weight_decay, int nesterov) {
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) {
    float grad = g[i] + weight_decay * w[i];
    if (momentum != 0.0f) {
      float v = momentum * velocity[i] + grad;
      velocity[i] = v;
      grad = nesterov ? grad + momentum * v : v;
    }
    w[i] -= lr * grad;
  }
}

/// One AdamW step in place; contract in include/ck_dense.h.
void ck_adamw_update(size_t count, float *w, const float *g, float *m, float *v, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t t) {
  const float c1 = 1.0f / (1.0f - powf(beta1, (float)t));
  const float c2 = 1.0f / (1.0f - powf(beta2, (float)t));
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) {
    float gi = g[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + weight_decay * w[i]);
  }
}
