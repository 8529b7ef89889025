// Dense fully-connected layer: y = x·wᵀ + b over a batch of rows.
#include "ck_dense.h"
#include <string.h>

/// y = x·wᵀ + bias; contract in include/ck_dense.h.
void ck_linear_forward(int batch, int in_features, int out_features, const float *x,
                       const float *w, const float *bias, float *y) {
  ck_sgemm(0, 1, batch, out_features, in_features, 1.0f, x, in_features, w, in_features, 0.0f, y,
           out_features);
  if (bias) ck_add_bias_rows(batch, out_features, bias, y);
}

/// Gradients of the linear layer (dw, dbias, dx); contract in include/ck_dense.h.
void ck_linear_backward(int batch, int in_features, int out_features, const float *x,
                        const float *w, const float *dy, float *dx, float *dw, float *dbias) {
  // dw[o][i] = Σ_n dy[n][o]·x[n][i]
  ck_sgemm(1, 0, out_features, in_features, batch, 1.0f, dy, out_features, x, in_features, 0.0f,
           dw, in_features);
  if (dbias) {
    memset(dbias, 0, sizeof(float) * out_features);
    for (int n = 0; n < batch; n++) {
      const float *row = dy + (size_t)n * out_features;
      for (int o = 0; o < out_features; o++) dbias[o] += row[o];
    }
  }
  if (dx)
    ck_sgemm(0, 0, batch, in_features, out_features, 1.0f, dy, out_features, w, in_features, 0.0f,
             dx, in_features);
}
