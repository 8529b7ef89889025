// Elementwise kernels: activation, addition, bias, products, dropout.
#include "ck_dense.h"
#include "ck_clones.h"

#define CK_PAR_MIN 32768

/// y = max(x, 0) elementwise; contract in include/ck_dense.h.
void ck_relu_forward(size_t count, const float *x, float *y) {
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/// dx = dy where y > 0, else 0; contract in include/ck_dense.h.
void ck_relu_backward(size_t count, const float *y, const float *dy, float *dx) {
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

/// y = a + b elementwise; contract in include/ck_dense.h.
void ck_add(size_t count, const float *a, const float *b, float *y) {
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
}

/// y += x elementwise; contract in include/ck_dense.h.
void ck_add_inplace(size_t count, const float *x, float *y) {
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) y[i] += x[i];
}

/// y = a · b elementwise; contract in include/ck_dense.h.
void ck_mul(size_t count, const float *a, const float *b, float *y) {
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) y[i] = a[i] * b[i];
}

/// y[i][j] += bias[j] over n rows of c; contract in include/ck_dense.h.
CK_CLONES void ck_add_bias_rows(int n, int c, const float *bias, float *y) {
  for (int i = 0; i < n; i++) {
    float *row = y + (size_t)i * c;
    for (int j = 0; j < c; j++) row[j] += bias[j];
  }
}

// SplitMix64 finaliser: a counter-based generator, so results do not depend on threading.
static inline uint64_t ck_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Inverted dropout with a counter-based mask; contract in include/ck_dense.h.
void ck_dropout_forward(size_t count, float p, uint64_t seed, const float *x, float *mask,
                        float *y) {
  const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const uint64_t threshold = (uint64_t)((double)p * 18446744073709551615.0);
  const uint64_t key = ck_mix(seed);
#pragma omp parallel for num_threads(ck_get_threads()) if (count > CK_PAR_MIN) schedule(static)
  for (size_t i = 0; i < count; i++) {
    float m = ck_mix(key ^ (uint64_t)i) < threshold ? 0.0f : keep_scale;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}
