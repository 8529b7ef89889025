// Batch normalisation over (N, H, W) per channel, NCHW layout; parallel over channels (as jobs:
// OpenMP, or a host's thread pool when one is lent; every channel is computed the same way).
#include "ck_dense.h"
#include "ck_jobs.h"
#include "ck_clones.h"
#include "plane_prefetch.h"
#include "ck_affine.h"
#include "plane_moments.h"
#include <math.h>

// y = x·scale + shift over channel ch of every image (then ReLU when relu is set).
CK_INLINE void affine_channel(int n, int c, int hw, int ch, const float *x, float scale,
                              float shift, float *y, int relu) {
  for (int i = 0; i < n; i++) {
    const size_t plane = ((size_t)i * c + ch) * hw;
    ck_affine_run((size_t)hw, x + plane, scale, shift, relu, y + plane);
  }
}

// The affine map x·scale + shift of a normalised channel — one expression, inlined everywhere,
// so the backward's recomputed ReLU mask (ck_batchnorm_relu_backward) is the forward's exactly.
CK_INLINE void channel_affine(float gamma, float beta, float mean, float invstd, float *scale,
                              float *shift) {
  *scale = gamma * invstd;
  *shift = beta - mean * *scale;
}

// The dx coefficients of one channel (dx = k·(count·g − a − (x − mean)·b)), with the ReLU's
// affine map: the numbers a deferred backward's planes are made from.
typedef struct {
  float k, a, b, scale, shift;
} bn_dx_coefficients;

// The arguments of one batch-norm call, shared by its parts.
typedef struct {
  int n, c, hw;
  const float *x, *gamma, *beta;
  float eps, momentum;
  float *running_mean, *running_var, *save_mean, *save_invstd, *y;
  int relu;
  const float *dy, *relu_output;
  float *dx, *dgamma, *dbeta;
  bn_dx_coefficients *coefficients_out; // backward: each channel's, when not NULL
  const float *image_sums;    // backward: each plane's two sums, taken already (or NULL)
  const float *image_moments; // forward: each plane's statistics sums, taken already (or NULL)
} bn_job;

CK_CLONES static void forward_train_part(void *arg, int part, int parts, float *scratch);
CK_CLONES static void forward_eval_part(void *arg, int part, int parts, float *scratch);
CK_CLONES static void backward_part(void *arg, int part, int parts, float *scratch);

/// Batch-norm forward with batch statistics (updates running stats, optional fused ReLU);
/// contract in include/ck_dense.h.
void ck_batchnorm_forward_train(int n, int c, int hw, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum, float *running_mean,
                                float *running_var, float *save_mean, float *save_invstd,
                                const float *image_moments, float *y, int relu) {
  bn_job j = {n, c, hw, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean,
              save_invstd, y, relu, NULL, NULL, NULL, NULL, NULL};
  j.image_moments = image_moments;
  ck_run_job(ck_get_threads(), ck_get_threads(), forward_train_part, &j, 0);
}

// The statistics' sums: plane_moments.h (the same inline code wherever they are taken, so
// the observed and the stored paths give the same bits).
CK_INLINE float moments_shift(const float *running_mean, const float *x, int hw, int ch) {
  return running_mean ? running_shift(running_mean, ch) : x[(size_t)ch * hw];
}

/// ck_image_observer.image of ck_batchnorm_image_moments_observer: each channel's plane
/// moments of one image.
CK_CLONES static void image_moments(const ck_image_observer *observer, int image,
                                    const float *x) {
  const ck_batchnorm_image_moments *m = observer->state;
  float *out = m->moments + 2 * (size_t)image * m->c;
  for (int ch = 0; ch < m->c; ch++)
    plane_moments(m->hw, x + (size_t)ch * m->hw, running_shift(m->running_mean, ch),
                  out + 2 * ch, out + 2 * ch + 1);
}

/// The observer that takes the statistics' per-image moments; contract in include/ck_dense.h.
void ck_batchnorm_image_moments_observer(const ck_batchnorm_image_moments *state,
                                         ck_image_observer *observer) {
  *observer = (ck_image_observer){image_moments, state};
}

/// Batch statistics of one channel; contract in include/ck_dense.h.
CK_CLONES void ck_batchnorm_channel_statistics(int n, int c, int hw, int ch, const float *x,
                                               const float *image_moments, const float *gamma,
                                               const float *beta, float eps, float momentum,
                                               float *running_mean, float *running_var,
                                               float *save_mean, float *save_invstd,
                                               float *scale_out, float *shift_out) {
  const double count = (double)n * hw;
  const float shift_k = moments_shift(running_mean, x, hw, ch);
  if (!running_mean) image_moments = NULL; // taken about the running mean: none without it
  double sum = 0.0, sq = 0.0;
  for (int i = 0; i < n; i++) {
    float s, s2;
    if (image_moments) {
      s = image_moments[2 * ((size_t)i * c + ch)];
      s2 = image_moments[2 * ((size_t)i * c + ch) + 1];
    } else {
      const float *p = x + ((size_t)i * c + ch) * hw;
      prefetch_plane_ahead(p, i, n, (size_t)c * hw, (size_t)hw);
      plane_moments(hw, p, shift_k, &s, &s2);
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
  channel_affine(gamma[ch], beta[ch], (float)mean, invstd, scale_out, shift_out);
}

/// Channels of part `part`: batch statistics, running statistics, normalised output.
CK_CLONES static void forward_train_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const bn_job *j = arg;
  const int n = j->n, c = j->c, hw = j->hw;
  const float *x = j->x, *gamma = j->gamma, *beta = j->beta;
  const float eps = j->eps, momentum = j->momentum;
  float *running_mean = j->running_mean, *running_var = j->running_var;
  float *save_mean = j->save_mean, *save_invstd = j->save_invstd, *y = j->y;
  const int relu = j->relu;
  int c0, c1;
  ck_job_range(c, part, parts, &c0, &c1);
  for (int ch = c0; ch < c1; ch++) {
    float scale, shift;
    ck_batchnorm_channel_statistics(n, c, hw, ch, x, j->image_moments, gamma, beta, eps,
                                    momentum, running_mean, running_var, save_mean, save_invstd,
                                    &scale, &shift);
    affine_channel(n, c, hw, ch, x, scale, shift, y, relu);
  }
}

typedef struct {
  int n, c, hw;
  const float *x, *gamma, *beta;
  float eps, momentum;
  float *running_mean, *running_var, *save_mean, *save_invstd, *scale, *shift;
  const float *image_moments;
} statistics_job;

/// Channels of part `part`: batch and running statistics, the affine map.
static void statistics_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const statistics_job *j = arg;
  int c0, c1;
  ck_job_range(j->c, part, parts, &c0, &c1);
  for (int ch = c0; ch < c1; ch++)
    ck_batchnorm_channel_statistics(j->n, j->c, j->hw, ch, j->x, j->image_moments, j->gamma,
                                    j->beta, j->eps, j->momentum, j->running_mean,
                                    j->running_var, j->save_mean, j->save_invstd, j->scale + ch,
                                    j->shift + ch);
}

/// Statistics without the output; contract in include/ck_dense.h.
void ck_batchnorm_statistics_train(int n, int c, int hw, const float *x,
                                   const float *image_moments, const float *gamma,
                                   const float *beta, float eps, float momentum,
                                   float *running_mean, float *running_var, float *save_mean,
                                   float *save_invstd, float *scale, float *shift) {
  statistics_job j = {n, c, hw, x, gamma, beta, eps, momentum, running_mean, running_var,
                      save_mean, save_invstd, scale, shift, image_moments};
  ck_run_job(ck_get_threads(), ck_get_threads(), statistics_part, &j, 0);
}

/// Batch-norm forward with the running statistics; contract in include/ck_dense.h.
void ck_batchnorm_forward_eval(int n, int c, int hw, const float *x, const float *gamma,
                               const float *beta, float eps, const float *running_mean,
                               const float *running_var, float *y, int relu) {
  bn_job j = {n, c, hw, x, gamma, beta, eps, 0.0f, (float *)running_mean, (float *)running_var,
              NULL, NULL, y, relu, NULL, NULL, NULL, NULL, NULL};
  ck_run_job(ck_get_threads(), ck_get_threads(), forward_eval_part, &j, 0);
}

/// Channels of part `part`, normalised with the running statistics.
CK_CLONES static void forward_eval_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const bn_job *j = arg;
  const int n = j->n, c = j->c, hw = j->hw, relu = j->relu;
  const float *x = j->x, *gamma = j->gamma, *beta = j->beta, eps = j->eps;
  const float *running_mean = j->running_mean, *running_var = j->running_var;
  float *y = j->y;
  int c0, c1;
  ck_job_range(c, part, parts, &c0, &c1);
  for (int ch = c0; ch < c1; ch++) {
    const float scale = gamma[ch] / sqrtf(running_var[ch] + eps);
    const float shift = beta[ch] - running_mean[ch] * scale;
    affine_channel(n, c, hw, ch, x, scale, shift, y, relu);
  }
}

/// Batch-norm backward (dx, dgamma, dbeta); contract in include/ck_dense.h.
void ck_batchnorm_backward(int n, int c, int hw, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           const float *relu_output, float *dx, float *dgamma, float *dbeta) {
  bn_job j = {n, c, hw, x, gamma, NULL, 0.0f, 0.0f, NULL, NULL, (float *)save_mean,
              (float *)save_invstd, NULL, relu_output != NULL, dy, relu_output, dx, dgamma, dbeta};
  ck_run_job(ck_get_threads(), ck_get_threads(), backward_part, &j, 0);
}

/// Fused BN+ReLU backward recomputing the ReLU's mask from x; contract in include/ck_dense.h.
void ck_batchnorm_relu_backward(int n, int c, int hw, const float *x, const float *gamma,
                                const float *beta, const float *save_mean,
                                const float *save_invstd, const float *dy, float *dx,
                                float *dgamma, float *dbeta) {
  bn_job j = {n, c, hw, x, gamma, beta, 0.0f, 0.0f, NULL, NULL, (float *)save_mean,
              (float *)save_invstd, NULL, 1, dy, NULL, dx, dgamma, dbeta};
  ck_run_job(ck_get_threads(), ck_get_threads(), backward_part, &j, 0);
}

// The gradient reaching the normalised value at x: dy, or with a ReLU dy where the output was
// positive — read from the ReLU's output (mode RELU_READ, r), or recomputed from x
// (RELU_RECOMPUTE) with the forward's own arithmetic. mode is a constant at every call, so each
// loop below is compiled once per mode without a branch inside.
enum { RELU_NONE, RELU_READ, RELU_RECOMPUTE };
CK_INLINE float relu_gradient(int mode, float r, float x, float dy, float scale, float shift) {
  if (mode == RELU_READ) return r > 0.0f ? dy : 0.0f;
  if (mode == RELU_RECOMPUTE) return x * scale + shift > 0.0f ? dy : 0.0f;
  return dy;
}

// Σ g and Σ g·(x − mean) over one plane, g the gradient at the normalised values.
CK_INLINE void plane_sums(int mode, int hw, const float *x, const float *dy, const float *r,
                          float mean, float scale, float shift, double *sum_dy,
                          double *sum_dy_xc) {
  float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
  for (int j = 0; j < hw; j++) {
    const float g = relu_gradient(mode, mode == RELU_READ ? r[j] : 0.0f, x[j], dy[j], scale, shift);
    s1 += g;
    s2 += g * (x[j] - mean);
  }
  *sum_dy += s1;
  *sum_dy_xc += s2;
}

// dx = k·(count·g − a − (x − mean)·b) over one plane.
CK_INLINE void plane_dx(int mode, int hw, const float *x, const float *dy, const float *r,
                        float mean, float scale, float shift, float k, float count, float a,
                        float b, float *dx) {
#pragma omp simd
  for (int j = 0; j < hw; j++) {
    const float g = relu_gradient(mode, mode == RELU_READ ? r[j] : 0.0f, x[j], dy[j], scale, shift);
    dx[j] = k * (count * g - a - (x[j] - mean) * b);
  }
}

/// The batch sums of channel ch: Σg and Σg·x̂ (the latter scaled by invstd as dγ), and the
/// affine map the recomputed ReLU mask uses (mode RELU_RECOMPUTE).
CK_INLINE void channel_sums(const bn_job *j, int mode, int ch, float *scale, float *shift,
                            double *sum_dy, double *sum_dy_xhat) {
  const int n = j->n, c = j->c, hw = j->hw;
  const float mean = j->save_mean[ch], invstd = j->save_invstd[ch];
  *scale = 0.0f, *shift = 0.0f;
  if (mode == RELU_RECOMPUTE) channel_affine(j->gamma[ch], j->beta[ch], mean, invstd, scale, shift);
  double s_dy = 0.0, s_dy_xhat = 0.0;
  if (j->image_sums) { // taken by the producer of dy (ck_batchnorm_image_sums_observer)
    for (int i = 0; i < n; i++) {
      s_dy += j->image_sums[2 * ((size_t)i * c + ch)];
      s_dy_xhat += j->image_sums[2 * ((size_t)i * c + ch) + 1];
    }
    *sum_dy = s_dy;
    *sum_dy_xhat = s_dy_xhat * invstd;
    return;
  }
  for (int i = 0; i < n; i++) {
    const float *p = j->x + ((size_t)i * c + ch) * hw;
    const float *g = j->dy + ((size_t)i * c + ch) * hw;
    const float *r = j->relu_output ? j->relu_output + ((size_t)i * c + ch) * hw : NULL;
    prefetch_plane_ahead(p, i, n, (size_t)c * hw, (size_t)hw);
    prefetch_plane_ahead(g, i, n, (size_t)c * hw, (size_t)hw);
    if (mode == RELU_READ)
      plane_sums(RELU_READ, hw, p, g, r, mean, *scale, *shift, &s_dy, &s_dy_xhat);
    else if (mode == RELU_RECOMPUTE)
      plane_sums(RELU_RECOMPUTE, hw, p, g, r, mean, *scale, *shift, &s_dy, &s_dy_xhat);
    else
      plane_sums(RELU_NONE, hw, p, g, r, mean, *scale, *shift, &s_dy, &s_dy_xhat);
  }
  *sum_dy = s_dy;
  *sum_dy_xhat = s_dy_xhat * invstd;
}

/// Channels of part `part`: dγ, dβ and dx. With a ReLU and no output given (relu_output NULL)
/// its mask is recomputed from x and β, so each pass reads two arrays instead of three.
/// With coefficients_out, each channel's dx coefficients too (dx may then be NULL: deferred).
CK_CLONES static void backward_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const bn_job *j = arg;
  const int n = j->n, c = j->c, hw = j->hw;
  const float *x = j->x, *gamma = j->gamma, *save_mean = j->save_mean;
  const float *save_invstd = j->save_invstd, *dy = j->dy, *relu_output = j->relu_output;
  float *dx = j->dx, *dgamma = j->dgamma, *dbeta = j->dbeta;
  const float count = (float)n * hw;
  const int mode = !j->relu ? RELU_NONE : relu_output ? RELU_READ : RELU_RECOMPUTE;
  int c0, c1;
  ck_job_range(c, part, parts, &c0, &c1);
  for (int ch = c0; ch < c1; ch++) {
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    float scale, shift;
    double sum_dy, sum_dy_xhat;
    channel_sums(j, mode, ch, &scale, &shift, &sum_dy, &sum_dy_xhat);
    dgamma[ch] = (float)sum_dy_xhat;
    dbeta[ch] = (float)sum_dy;
    // dx = γ·invstd/count · (count·dy − Σdy − x̂·Σ(dy·x̂))
    const float k = gamma[ch] * invstd / count;
    const float a = (float)sum_dy;
    const float b = (float)sum_dy_xhat * invstd;
    if (j->coefficients_out)
      j->coefficients_out[ch] = (bn_dx_coefficients){k, a, b, scale, shift};
    if (!dx) continue;
    for (int i = 0; i < n; i++) {
      const float *p = x + ((size_t)i * c + ch) * hw;
      const float *g = dy + ((size_t)i * c + ch) * hw;
      float *q = dx + ((size_t)i * c + ch) * hw;
      const float *r = relu_output ? relu_output + ((size_t)i * c + ch) * hw : NULL;
      if (mode == RELU_READ)
        plane_dx(RELU_READ, hw, p, g, r, mean, scale, shift, k, count, a, b, q);
      else if (mode == RELU_RECOMPUTE)
        plane_dx(RELU_RECOMPUTE, hw, p, g, r, mean, scale, shift, k, count, a, b, q);
      else
        plane_dx(RELU_NONE, hw, p, g, r, mean, scale, shift, k, count, a, b, q);
    }
  }
}

/// ck_image_observer.image of ck_batchnorm_image_sums_observer: the two sums of each plane of
/// one image of dy, exactly as channel_sums takes them.
CK_CLONES static void image_sums(const ck_image_observer *observer, int image,
                                 const float *dy) {
  const ck_batchnorm_image_sums *s = observer->state;
  const int c = s->c, hw = s->hw, mode = s->beta ? RELU_RECOMPUTE : RELU_NONE;
  for (int ch = 0; ch < c; ch++) {
    const float mean = s->save_mean[ch];
    float scale = 0.0f, shift = 0.0f;
    if (mode == RELU_RECOMPUTE)
      channel_affine(s->gamma[ch], s->beta[ch], mean, s->save_invstd[ch], &scale, &shift);
    const size_t plane = ((size_t)image * c + ch) * hw;
    double s1 = 0.0, s2 = 0.0; // each receives one float sum, exactly
    if (mode == RELU_RECOMPUTE)
      plane_sums(RELU_RECOMPUTE, hw, s->x + plane, dy + (size_t)ch * hw, NULL, mean, scale,
                 shift, &s1, &s2);
    else
      plane_sums(RELU_NONE, hw, s->x + plane, dy + (size_t)ch * hw, NULL, mean, scale, shift,
                 &s1, &s2);
    s->sums[2 * ((size_t)image * c + ch)] = (float)s1;
    s->sums[2 * ((size_t)image * c + ch) + 1] = (float)s2;
  }
}

/// The observer that takes a batch norm's per-plane sums; contract in include/ck_dense.h.
void ck_batchnorm_image_sums_observer(const ck_batchnorm_image_sums *state,
                                      ck_image_observer *observer) {
  *observer = (ck_image_observer){image_sums, state};
}

/// ck_plane_source.plane of a deferred batch-norm backward: dx of plane (image, channel).
CK_CLONES static void batchnorm_source_plane(const ck_plane_source *source, int image,
                                             int channel, float *out) {
  const ck_batchnorm_gradient *s = source->state;
  const bn_dx_coefficients f = ((const bn_dx_coefficients *)(const void *)s->coefficients)[channel];
  const size_t plane = ((size_t)image * s->c + channel) * s->hw;
  const float count = (float)s->n * s->hw, mean = s->save_mean[channel];
  if (s->relu)
    plane_dx(RELU_RECOMPUTE, s->hw, s->x + plane, s->dy + plane, NULL, mean, f.scale, f.shift,
             f.k, count, f.a, f.b, out);
  else
    plane_dx(RELU_NONE, s->hw, s->x + plane, s->dy + plane, NULL, mean, f.scale, f.shift, f.k,
             count, f.a, f.b, out);
}

/// Deferred batch-norm backward; contract in include/ck_dense.h.
int ck_batchnorm_backward_deferred(int n, int c, int h, int w, const float *x, const float *gamma,
                                   const float *beta, const float *save_mean,
                                   const float *save_invstd, const float *image_sums,
                                   const float *dy, float *dgamma, float *dbeta,
                                   float *coefficients, ck_batchnorm_gradient *state,
                                   ck_plane_source *source) {
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return 0;
  const int hw = h * w;
  bn_job j = {n, c, hw, x, gamma, beta, 0.0f, 0.0f, NULL, NULL, (float *)save_mean,
              (float *)save_invstd, NULL, beta != NULL, dy, NULL, NULL, dgamma, dbeta,
              (bn_dx_coefficients *)(void *)coefficients, image_sums};
  ck_run_job(ck_get_threads(), ck_get_threads(), backward_part, &j, 0);
  *state = (ck_batchnorm_gradient){n, c, hw, beta != NULL, x, dy, save_mean, coefficients};
  *source = (ck_plane_source){batchnorm_source_plane, state, n, c, h, w};
  return 1;
}
