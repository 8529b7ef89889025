// Batch normalisation over (N, H, W) per channel, NCHW layout; parallel over channels.
#include "ck_dense.h"
#include <math.h>

// y = x·scale + shift over channel ch of every image (then ReLU when relu is set).
static inline void affine_channel(int n, int c, int hw, int ch, const float *x, float scale,
                                  float shift, float *y, int relu) {
  for (int i = 0; i < n; i++) {
    const float *p = x + ((size_t)i * c + ch) * hw;
    float *q = y + ((size_t)i * c + ch) * hw;
    if (relu) {
      for (int j = 0; j < hw; j++) {
        float v = p[j] * scale + shift;
        q[j] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (int j = 0; j < hw; j++) q[j] = p[j] * scale + shift;
    }
  }
}

/// Batch-norm forward with batch statistics (updates running stats, optional fused ReLU);
/// contract in include/ck_dense.h.
void ck_batchnorm_forward_train(int n, int c, int hw, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum, float *running_mean,
                                float *running_var, float *save_mean, float *save_invstd,
                                float *y, int relu) {
  const double count = (double)n * hw;
#pragma omp parallel for num_threads(ck_get_threads()) schedule(static)
  for (int ch = 0; ch < c; ch++) {
    // One pass over the channel: sums shifted by the channel's first value, which keeps
    // E[(x−K)²] − E[x−K]² accurate when the mean is large relative to the spread.
    const float shift_k = x[(size_t)ch * hw];
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) {
      const float *p = x + ((size_t)i * c + ch) * hw;
      float s = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s, s2)
      for (int j = 0; j < hw; j++) {
        float d = p[j] - shift_k;
        s += d;
        s2 += d * d;
      }
      sum += s;
      sq += s2;
    }
    const double shifted_mean = sum / count;
    const double mean = shift_k + shifted_mean;
    double var = sq / count - shifted_mean * shifted_mean;
    if (var < 0) var = 0;
    const float invstd = (float)(1.0 / sqrt(var + eps));
    save_mean[ch] = (float)mean;
    save_invstd[ch] = invstd;
    if (running_mean && running_var) {
      double unbiased = count > 1 ? var * count / (count - 1) : var;
      running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * (float)mean;
      running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * (float)unbiased;
    }
    const float scale = gamma[ch] * invstd;
    const float shift = beta[ch] - (float)mean * scale;
    affine_channel(n, c, hw, ch, x, scale, shift, y, relu);
  }
}

/// Batch-norm forward with the running statistics; contract in include/ck_dense.h.
void ck_batchnorm_forward_eval(int n, int c, int hw, const float *x, const float *gamma,
                               const float *beta, float eps, const float *running_mean,
                               const float *running_var, float *y, int relu) {
#pragma omp parallel for num_threads(ck_get_threads()) schedule(static)
  for (int ch = 0; ch < c; ch++) {
    const float scale = gamma[ch] / sqrtf(running_var[ch] + eps);
    const float shift = beta[ch] - running_mean[ch] * scale;
    affine_channel(n, c, hw, ch, x, scale, shift, y, relu);
  }
}

/// Batch-norm backward (dx, dgamma, dbeta); contract in include/ck_dense.h.
void ck_batchnorm_backward(int n, int c, int hw, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           const float *relu_output, float *dx, float *dgamma, float *dbeta) {
  const float count = (float)n * hw;
#pragma omp parallel for num_threads(ck_get_threads()) schedule(static)
  for (int ch = 0; ch < c; ch++) {
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int i = 0; i < n; i++) {
      const float *p = x + ((size_t)i * c + ch) * hw;
      const float *g = dy + ((size_t)i * c + ch) * hw;
      float s1 = 0.0f, s2 = 0.0f;
      if (relu_output) {
        const float *r = relu_output + ((size_t)i * c + ch) * hw;
#pragma omp simd reduction(+ : s1, s2)
        for (int j = 0; j < hw; j++) {
          float gj = r[j] > 0.0f ? g[j] : 0.0f;
          s1 += gj;
          s2 += gj * (p[j] - mean);
        }
      } else {
#pragma omp simd reduction(+ : s1, s2)
        for (int j = 0; j < hw; j++) {
          s1 += g[j];
          s2 += g[j] * (p[j] - mean);
        }
      }
      sum_dy += s1;
      sum_dy_xhat += s2;
    }
    sum_dy_xhat *= invstd;
    dgamma[ch] = (float)sum_dy_xhat;
    dbeta[ch] = (float)sum_dy;
    if (!dx) continue;
    // dx = γ·invstd/count · (count·dy − Σdy − x̂·Σ(dy·x̂))
    const float k = gamma[ch] * invstd / count;
    const float a = (float)sum_dy;
    const float b = (float)sum_dy_xhat * invstd;
    for (int i = 0; i < n; i++) {
      const float *p = x + ((size_t)i * c + ch) * hw;
      const float *g = dy + ((size_t)i * c + ch) * hw;
      float *q = dx + ((size_t)i * c + ch) * hw;
      if (relu_output) {
        const float *r = relu_output + ((size_t)i * c + ch) * hw;
        for (int j = 0; j < hw; j++) {
          float gj = r[j] > 0.0f ? g[j] : 0.0f;
          q[j] = k * (count * gj - a - (p[j] - mean) * b);
        }
      } else {
        for (int j = 0; j < hw; j++) q[j] = k * (count * g[j] - a - (p[j] - mean) * b);
      }
    }
  }
}
