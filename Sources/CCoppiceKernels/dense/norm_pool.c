// Batch norm + ReLU + 2×2 max pooling (stride 2) as one layer, NCHW, parallel over channels or
// images (as jobs). The forward reads the input twice (statistics, then normalise-and-pool) and
// writes only the pooled output and one byte per window naming its winner; the batch-norm
// output itself is never stored. The backward reads the pooled gradient, the winners and the
// input, and writes the input gradient once — instead of a full-size ReLU output, a full-size
// pooled gradient and three more passes over them.
//
// The backward's batch sums (Σg and Σg·(x − mean), g the gradient at the normalised value) need
// x only where g ≠ 0: at a window's winner whose output y is positive, and there
// x − mean = (y − β)/scale. So when the caller passes β (the engine's layer does), the sums are
// taken from the pooled arrays alone, image by image, and dx is then written image by image:
// x and dx stream through memory once, in address order (cnn at batch 128, 2 threads: bn2
// 2.5 → 1.8 ms, bn3 1.1–1.3 → 0.7 ms). Without β (the C ABI's entry point), or when a channel's
// γ is so small against its β that (y − β)/scale would lose digits, each channel is done in
// turn: its sums read x, and its second pass finds the channel's planes still in L2.
//
// The by-image dx can also be left to the convolution before the layer
// (ck_batchnorm_relu_maxpool2_backward_deferred): its backward produces each dx plane into
// cache as it reads it (ck_sparse_conv2d_backward_fused), so dx is never written to memory
// and read back. cnn static 90%, batch 128, 2 threads, perf cycle shares of the dx pass plus
// the padding of the convolution's dY: 11.8–12.7% → 9.7–10.7% (about 0.45 ms of a 23 ms step).
#include "ck_dense.h"
#include "ck_jobs.h"
#include "ck_clones.h"
#include "plane_prefetch.h"
#include "ck_vector16.h"
#include "plane_moments.h"
#include <math.h>
#include <string.h>

// dx = γ·invstd/count · (count·g − Σg − x̂·Σ(g·x̂)) = k·(count·g − a − (x − mean)·b), from the
// channel's sums Σg and Σg·x̂ (both paths of the backward compute them their own way).
typedef struct {
  float k, a, b;
} dx_coefficients;

typedef struct {
  int n, c, h, w;
  const float *x, *gamma, *beta;
  float eps, momentum;
  float *running_mean, *running_var, *save_mean, *save_invstd, *y;
  uint8_t *winner;
  const float *dy;
  float *dx, *dgamma, *dbeta;
  // Backward by image: Σg and Σg·(y − β) per (image, channel).
  float *partial;
  float *map;                 // forward by image: each channel's scale, then its shift
} norm_pool_job;

// Planes at most 32 wide (the models' 28×28 and 14×14) have at most 16 windows per row, fewer
// than the auto-vectoriser's 16-lane loops need (it ran them 4 lanes at a time, or one by one).
// So a row pair's windows are done as one 16-lane vector (GCC/Clang vector extensions: SIMD on
// every target): its 32 columns loaded, the even and odd columns separated by shuffles, the
// outputs stored 16 at a time — lanes past the row land in the next row's outputs, which are
// written after them. The last rows of a plane, and rows whose loads would pass the end of the
// arrays, take the scalar loop. Every lane computes exactly the scalar expression.
#if CK_VECTOR16
#define EVEN16 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define ODD16 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define LOW_PAIRS 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define HIGH_PAIRS 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31

/// The 16 windows from column 0 of rows r0, r1 (32 floats read from each): the maximum of
/// x·scale + shift (with its ReLU when relu is set) and the winning cell, as the scalar loop.
CK_INLINE void pool16(const float *r0, const float *r1, float scale, float shift, int relu,
                      float *out, uint8_t *win) {
  const ck_f16v a0 = CK_LOAD16(r0) * scale + shift, b0 = CK_LOAD16(r0 + 16) * scale + shift;
  const ck_f16v a1 = CK_LOAD16(r1) * scale + shift, b1 = CK_LOAD16(r1 + 16) * scale + shift;
  ck_f16v m1 = __builtin_shufflevector(a0, b0, EVEN16), b = __builtin_shufflevector(a0, b0, ODD16);
  ck_f16v m2 = __builtin_shufflevector(a1, b1, EVEN16), d = __builtin_shufflevector(a1, b1, ODD16);
  const ck_i16v zero = {0}, one = zero + 1, two = zero + 2, three = zero + 3;
  ck_i16v mask = b > m1;
  m1 = CK_SELECT16(mask, b, m1);
  ck_i16v k1 = CK_SELECT16I(mask, one, zero);
  mask = d > m2;
  m2 = CK_SELECT16(mask, d, m2);
  const ck_i16v k2 = CK_SELECT16I(mask, three, two);
  mask = m2 > m1;
  m1 = CK_SELECT16(mask, m2, m1);
  k1 = CK_SELECT16I(mask, k2, k1);
  CK_STORE16(out, relu ? CK_SELECT16(m1 > 0.0f, m1, (ck_f16v){0}) : m1);
  const ck_u16v k = __builtin_convertvector(k1, ck_u16v);
  memcpy(win, &k, sizeof k);
}

/// Rows 2oy and 2oy + 1 of dx from the 16 pooled windows at `y`, `dy`, `winner` (16 of each
/// read): the expanded gradient g interleaved back into columns, then dx = k·(count·g − a −
/// (x − mean)·b) over 32 columns of each row (x read, dx written there).
CK_INLINE void dx16(const float *y, const float *dy, const uint8_t *winner, const float *x0,
                        const float *x1, float mean, float count, float k, float a, float b,
                        float *dx0, float *dx1) {
  ck_u16v kb;
  memcpy(&kb, winner, sizeof kb);
  const ck_i16v cell = __builtin_convertvector(kb, ck_i16v) & 3, zero = {0};
  const ck_f16v v = CK_SELECT16(CK_LOAD16(y) > 0.0f, CK_LOAD16(dy), (ck_f16v){0});
  const ck_f16v g0 = CK_SELECT16(cell == zero, v, (ck_f16v){0}), g1 = CK_SELECT16(cell == zero + 1, v, (ck_f16v){0});
  const ck_f16v g2 = CK_SELECT16(cell == zero + 2, v, (ck_f16v){0}), g3 = CK_SELECT16(cell == zero + 3, v, (ck_f16v){0});
  const ck_f16v r0lo = __builtin_shufflevector(g0, g1, LOW_PAIRS);
  const ck_f16v r0hi = __builtin_shufflevector(g0, g1, HIGH_PAIRS);
  const ck_f16v r1lo = __builtin_shufflevector(g2, g3, LOW_PAIRS);
  const ck_f16v r1hi = __builtin_shufflevector(g2, g3, HIGH_PAIRS);
  CK_STORE16(dx0, k * (count * r0lo - a - (CK_LOAD16(x0) - mean) * b));
  CK_STORE16(dx0 + 16, k * (count * r0hi - a - (CK_LOAD16(x0 + 16) - mean) * b));
  CK_STORE16(dx1, k * (count * r1lo - a - (CK_LOAD16(x1) - mean) * b));
  CK_STORE16(dx1 + 16, k * (count * r1hi - a - (CK_LOAD16(x1 + 16) - mean) * b));
}
#endif

/// The maximum of a window's four values (top-left, top-right, bottom-left, bottom-right) and
/// its cell in *k: the first of the cells holding the maximum wins (as ck_maxpool_forward).
CK_INLINE float window_max(float m1, float b, float m2, float d, int *k) {
  int k1 = 0, k2 = 2;
  if (b > m1) { m1 = b; k1 = 1; }
  if (d > m2) { m2 = d; k2 = 3; }
  if (m2 > m1) { m1 = m2; k1 = k2; }
  *k = k1;
  return m1;
}

/// One plane of h×w (x_end: the end of the array it is in, read up to there): each 2×2
/// window's maximum of x·scale + shift — its ReLU when relu is set — into out and its winner
/// into win ((h/2)×(w/2) each). spill: out and win may be written up to 16 entries past the
/// plane (the caller writes the next plane after this one, on the same thread).
CK_INLINE void window_plane(const float *in, int h, int w, const float *x_end, float scale,
                            float shift, int relu, int spill, float *out, uint8_t *win) {
  const int oh = h / 2, ow = w / 2;
  const size_t ohw = (size_t)oh * ow;
  (void)x_end;
  (void)ohw;
  for (int oy = 0; oy < oh; oy++) {
    const float *r0 = in + (size_t)(2 * oy) * w, *r1 = r0 + w;
#if CK_VECTOR16
    // 32 columns read from r1 (inside the array) and 16 outputs written (inside the plane, or
    // the next plane with spill; lanes past the row land in the next rows' outputs, which are
    // written after them). Otherwise the plane's last rows, whose 16 outputs would pass the
    // plane (on 14×14 planes 2 of 7), keep the row's ow of them from a vector made aside.
    if (!(w & 1) && w <= 32 && r1 + 32 <= x_end) {
      if (spill || (size_t)oy * ow + 16 <= ohw) {
        pool16(r0, r1, scale, shift, relu, out + (size_t)oy * ow, win + (size_t)oy * ow);
      } else {
        float row_out[16];
        uint8_t row_win[16];
        pool16(r0, r1, scale, shift, relu, row_out, row_win);
        memcpy(out + (size_t)oy * ow, row_out, sizeof(float) * (size_t)ow);
        memcpy(win + (size_t)oy * ow, row_win, (size_t)ow);
      }
      continue;
    }
#endif
    for (int ox = 0; ox < ow; ox++) {
      int k;
      float m = window_max(r0[2 * ox] * scale + shift, r0[2 * ox + 1] * scale + shift,
                           r1[2 * ox] * scale + shift, r1[2 * ox + 1] * scale + shift, &k);
      out[oy * ow + ox] = !relu || m > 0.0f ? m : 0.0f;
      win[oy * ow + ox] = (uint8_t)k;
    }
  }
}

/// Plane (i, ch): each 2×2 window's maximum of x·scale + shift, its ReLU and its winner.
CK_INLINE void pool_plane(const norm_pool_job *j, int i, int ch, float scale, float shift) {
  const size_t hw = (size_t)j->h * j->w, ohw = (size_t)(j->h / 2) * (j->w / 2);
  window_plane(j->x + ((size_t)i * j->c + ch) * hw, j->h, j->w, j->x + (size_t)j->n * j->c * hw,
               scale, shift, 1, 0, j->y + ((size_t)i * j->c + ch) * ohw,
               j->winner + ((size_t)i * j->c + ch) * ohw);
}

/// Channels of part `part`: batch statistics (as ck_batchnorm_forward_train), running
/// statistics, then every plane of the channel pooled (pool_plane).
CK_CLONES static void forward_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const norm_pool_job *j = arg;
  const int n = j->n, c = j->c;
  const size_t ohw = (size_t)(j->h / 2) * (j->w / 2);
  int c0, c1;
  ck_job_range(c, part, parts, &c0, &c1);
  for (int ch = c0; ch < c1; ch++) {
    float scale, shift;
    ck_batchnorm_channel_statistics(n, c, j->h * j->w, ch, j->x, NULL, j->gamma,
                                    j->beta, j->eps, j->momentum, j->running_mean,
                                    j->running_var, j->save_mean, j->save_invstd, &scale,
                                    &shift);
    for (int i = 0; i < n; i++) {
      prefetch_plane_ahead_for_write(j->y + ((size_t)i * c + ch) * ohw, i, n, (size_t)c * ohw,
                                     ohw);
      pool_plane(j, i, ch, scale, shift);
    }
  }
}

/// Fused forward in training mode; contract in include/ck_dense.h.
void ck_batchnorm_relu_maxpool2_forward_train(int n, int c, int h, int w, const float *x,
                                              const float *gamma, const float *beta, float eps,
                                              float momentum, float *running_mean,
                                              float *running_var, float *save_mean,
                                              float *save_invstd, float *y, uint8_t *winner) {
  norm_pool_job j = {n, c, h, w, x, gamma, beta, eps, momentum, running_mean, running_var,
                     save_mean, save_invstd, y, winner, NULL, NULL, NULL, NULL, NULL};
  ck_run_job(ck_get_threads(), ck_get_threads(), forward_part, &j, 0);
}

// The pooling taken by the producer of x. A channel's normalisation t(x) = x·scale + shift is
// monotone in x, increasing when scale > 0 and decreasing when scale < 0, with scale =
// γ·invstd of γ's sign; and its rounding is monotone too. So the window maximum of t(x) is
// t(max x) for γ > 0 and t(min x) for γ < 0, bit for bit, and a window's winner is a cell
// holding max x (min x): the convolution's forward hands each image, still in cache, to
// ck_norm_pool_image_windows_observer, which writes each window's extreme of x·sign (sign =
// −1 where γ < 0: exact) and its cell, and the forward only maps those pooled values
// (y = max(p·sign·scale + shift, 0) = max(t(x_winner), 0)): the full-size input is not read
// at all. Where t ties two different values of x (their normalised values round to the same
// float), the cell chosen can differ from the one the stored path chooses — the same output,
// and either cell is a maximum of it. Where γ = 0 every value maps to shift and cell 0 wins,
// as in the stored path.

/// The direction a channel's window extremes are taken in: −1 (minima) where γ < 0, else +1.
CK_INLINE float pooling_sign(float gamma) { return gamma < 0.0f ? -1.0f : 1.0f; }

/// ck_image_observer.image of ck_norm_pool_image_windows_observer: one image's moments (as
/// ck_batchnorm_image_moments_observer), then every window's extreme and cell.
CK_CLONES static void image_windows(const ck_image_observer *observer, int image,
                                    const float *x) {
  const ck_norm_pool_image_windows *s = observer->state;
  const int c = s->c, h = s->h, w = s->w, oh = h / 2, ow = w / 2;
  const size_t hw = (size_t)h * w, ohw = (size_t)oh * ow;
  const float *x_end = x + (size_t)c * hw;
  float *moments = s->moments + 2 * (size_t)image * c;
  for (int ch = 0; ch < c; ch++) {
    const float *in = x + (size_t)ch * hw;
    plane_moments((int)hw, in, running_shift(s->running_mean, ch), moments + 2 * ch,
                  moments + 2 * ch + 1);
    // x·sign + 0 is x·sign (up to the sign of a zero, which neither the comparisons nor the
    // normalisation of the pooled value can see).
    const float sign = pooling_sign(s->gamma[ch]);
    float *out = s->pooled + ((size_t)image * c + ch) * ohw;
    uint8_t *win = s->winner + ((size_t)image * c + ch) * ohw;
    // The image's planes are done in order by this thread: all but the last may spill.
    window_plane(in, h, w, x_end, sign, 0.0f, 0, ch + 1 < c, out, win);
    if (s->gamma[ch] == 0.0f) memset(win, 0, ohw);
  }
}

/// The observer that takes the moments and the pooling; contract in include/ck_dense.h.
void ck_norm_pool_image_windows_observer(const ck_norm_pool_image_windows *state,
                                         ck_image_observer *observer) {
  *observer = (ck_image_observer){image_windows, state};
}

/// Images of part `part`: y := max(p·sign·scale + shift, 0) in place over the observed
/// window extremes p (j->y), with the channels' maps (j->map: c scales, then c shifts).
CK_CLONES static void map_pooled_images(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const norm_pool_job *j = arg;
  const size_t ohw = (size_t)(j->h / 2) * (j->w / 2);
  int i0, i1;
  ck_job_range(j->n, part, parts, &i0, &i1);
  for (int i = i0; i < i1; i++)
    for (int ch = 0; ch < j->c; ch++) {
      const float scale = pooling_sign(j->gamma[ch]) * j->map[ch]; // exact: a sign
      const float shift = j->map[j->c + ch];
      float *y = j->y + ((size_t)i * j->c + ch) * ohw;
#pragma omp simd
      for (size_t p = 0; p < ohw; p++) {
        const float v = y[p] * scale + shift;
        y[p] = v > 0.0f ? v : 0.0f;
      }
    }
}

/// The fused forward from an observed pooling; contract in include/ck_dense.h.
void ck_batchnorm_relu_maxpool2_forward_pooled(int n, int c, int h, int w, const float *x,
                                               const float *gamma, const float *beta, float eps,
                                               float momentum, float *running_mean,
                                               float *running_var, float *save_mean,
                                               float *save_invstd, const float *image_moments,
                                               float *y) {
  norm_pool_job j = {n, c, h, w, x, gamma, beta, eps, momentum, running_mean, running_var,
                     save_mean, save_invstd, y, NULL, NULL, NULL, NULL, NULL, NULL};
  float *map = ck_scratch_take(2 * (size_t)c);
  j.map = map;
  ck_batchnorm_statistics_train(n, c, h * w, x, image_moments, gamma, beta, eps, momentum,
                                running_mean, running_var, save_mean, save_invstd, map, map + c);
  ck_run_job(ck_get_threads(), ck_get_threads(), map_pooled_images, &j, 0);
  ck_scratch_give(map);
}

// The gradient reaching the batch-norm output of one plane: the pooled gradient at each window's
// winner where the output is positive, 0 elsewhere (a plane-sized buffer that stays in cache).
// Every element is written once, window row pairs as vectors (no memset, no scattered stores).
static inline void expand_plane_gradient(int h, int w, const float *y, const uint8_t *winner,
                                         const float *dy, float *full) {
  const int oh = h / 2, ow = w / 2;
  for (int oy = 0; oy < oh; oy++) {
    float *r0 = full + (size_t)(2 * oy) * w, *r1 = r0 + w;
    const float *yr = y + (size_t)oy * ow, *dr = dy + (size_t)oy * ow;
    const uint8_t *kr = winner + (size_t)oy * ow;
#pragma omp simd
    for (int ox = 0; ox < ow; ox++) {
      const float v = yr[ox] > 0.0f ? dr[ox] : 0.0f;
      const int k = kr[ox] & 3;
      r0[2 * ox] = k == 0 ? v : 0.0f;
      r0[2 * ox + 1] = k == 1 ? v : 0.0f;
      r1[2 * ox] = k == 2 ? v : 0.0f;
      r1[2 * ox + 1] = k == 3 ? v : 0.0f;
    }
    if (w & 1) r0[w - 1] = r1[w - 1] = 0.0f; // a last column no window covers
  }
  if (h & 1) memset(full + (size_t)(h - 1) * w, 0, sizeof(float) * (size_t)w);
}

/// The coefficients of one channel.
CK_INLINE dx_coefficients coefficients_of(float gamma, float invstd, float count, double sum_dy,
                                          double sum_dy_xhat) {
  return (dx_coefficients){gamma * invstd / count, (float)sum_dy,
                           (float)sum_dy_xhat * invstd};
}

/// dx over one plane of x, from its expanded gradient g.
CK_INLINE void plane_input_gradient(size_t hw, const float *x, const float *g, float mean,
                                    float count, dx_coefficients f, float *dx) {
#pragma omp simd
  for (size_t q = 0; q < hw; q++) dx[q] = f.k * (count * g[q] - f.a - (x[q] - mean) * f.b);
}

/// Channels of part `part`: dγ, dβ, then dx, as ck_batchnorm_backward over each plane's
/// expanded gradient (kept for the channel's second pass in the part's scratch, n·h·w floats).
CK_CLONES static void backward_by_channel(void *arg, int part, int parts, float *scratch) {
  const norm_pool_job *j = arg;
  const int n = j->n, c = j->c, h = j->h, w = j->w;
  const size_t hw = (size_t)h * w, ohw = (size_t)(h / 2) * (w / 2);
  const float count = (float)n * (float)hw;
  int c0, c1;
  ck_job_range(c, part, parts, &c0, &c1);
  for (int ch = c0; ch < c1; ch++) {
    const float mean = j->save_mean[ch], invstd = j->save_invstd[ch];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int i = 0; i < n; i++) {
      const size_t plane = (size_t)i * c + ch;
      const float *p = j->x + plane * hw;
      prefetch_plane_ahead(p, i, n, (size_t)c * hw, hw);
      float *g = scratch + (size_t)i * hw;
      expand_plane_gradient(h, w, j->y + plane * ohw, j->winner + plane * ohw,
                            j->dy + plane * ohw, g);
      float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
      for (size_t q = 0; q < hw; q++) {
        s1 += g[q];
        s2 += g[q] * (p[q] - mean);
      }
      sum_dy += s1;
      sum_dy_xhat += s2;
    }
    sum_dy_xhat *= invstd;
    j->dgamma[ch] = (float)sum_dy_xhat;
    j->dbeta[ch] = (float)sum_dy;
    if (!j->dx) continue;
    const dx_coefficients f = coefficients_of(j->gamma[ch], invstd, count, sum_dy, sum_dy_xhat);
    for (int i = 0; i < n; i++) {
      const size_t plane = (size_t)i * c + ch;
      plane_input_gradient(hw, j->x + plane * hw, scratch + (size_t)i * hw, mean, count, f,
                           j->dx + plane * hw);
    }
  }
}

/// Whether channel ch's batch sums may come from its pooled output: x − mean = (y − β)/scale
/// keeps its digits while |β| is within 2^10·|γ| (and γ is not 0).
static int pooled_sums_exact_enough(float gamma, float beta, float invstd) {
  const float scale = gamma * invstd;
  return gamma != 0.0f && isfinite(scale) && scale != 0.0f &&
         fabsf(beta) <= 1024.0f * fabsf(gamma);
}

/// One image's Σg and Σg·(y − β) per channel over its pooled planes (g: the pooled gradient
/// where the output is positive): y, dy the image's c planes of ohw, partial its 2·c sums.
CK_INLINE void image_partial_sums(int c, size_t ohw, const float *y, const float *dy,
                                  const float *beta, float *partial) {
  for (int ch = 0; ch < c; ch++) {
    const float *yc = y + (size_t)ch * ohw, *dyc = dy + (size_t)ch * ohw, b = beta[ch];
    float s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
    for (size_t q = 0; q < ohw; q++) {
      const float g = yc[q] > 0.0f ? dyc[q] : 0.0f;
      s1 += g;
      s2 += g * (yc[q] - b);
    }
    partial[2 * ch] = s1;
    partial[2 * ch + 1] = s2;
  }
}

/// Images of part `part`: every image's partial sums (image_partial_sums).
CK_CLONES static void sums_by_image(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const norm_pool_job *j = arg;
  const int c = j->c;
  const size_t ohw = (size_t)(j->h / 2) * (j->w / 2), image = (size_t)c * ohw;
  int i0, i1;
  ck_job_range(j->n, part, parts, &i0, &i1);
  for (int i = i0; i < i1; i++)
    image_partial_sums(c, ohw, j->y + (size_t)i * image, j->dy + (size_t)i * image, j->beta,
                       j->partial + 2 * (size_t)i * c);
}

/// ck_image_observer.image of ck_norm_pool_image_sums_observer.
CK_CLONES static void observed_image_sums(const ck_image_observer *observer, int image,
                                          const float *dy) {
  const ck_norm_pool_image_sums *s = observer->state;
  const size_t ohw = (size_t)(s->h / 2) * (s->w / 2);
  image_partial_sums(s->c, ohw, s->y + (size_t)image * s->c * ohw, dy, s->beta,
                     s->sums + 2 * (size_t)image * s->c);
}

/// The observer that takes the backward's per-image sums; contract in include/ck_dense.h.
void ck_norm_pool_image_sums_observer(const ck_norm_pool_image_sums *state,
                                      ck_image_observer *observer) {
  *observer = (ck_image_observer){observed_image_sums, state};
}

/// dx of plane (i, ch) into out (h·w floats): the expanded gradient, then dx over it in place.
/// The one code path of the by-image dx, whether stored or produced for a convolution. Row
/// pairs that fit the window vectors are done by dx16 (all but the last, whose stores would
/// pass the plane), the rest by the two plane loops.
CK_INLINE void norm_pool_dx_plane(const ck_norm_pool_gradient *s, int i, int ch, float *out) {
  const int h = s->h, w = s->w, oh = h / 2, ow = w / 2;
  const size_t hw = (size_t)h * w, ohw = (size_t)oh * ow;
  const size_t plane = (size_t)i * s->c + ch, planes = (size_t)s->n * s->c;
  const dx_coefficients *f = (const dx_coefficients *)s->coefficients;
  const float *x = s->x + plane * hw, *y = s->y + plane * ohw, *dy = s->dy + plane * ohw;
  const uint8_t *winner = s->winner + plane * ohw;
  const float count = (float)s->n * (float)hw, mean = s->save_mean[ch];
  int vector_rows = 0;
#if CK_VECTOR16
  // Pairs whose 32-column x reads and stores stay inside the plane and whose 16 pooled reads
  // stay inside the pooled arrays.
  if (!(w & 1) && w <= 32) {
    while (vector_rows < oh && (size_t)(2 * vector_rows + 1) * w + 32 <= hw &&
           plane * ohw + (size_t)vector_rows * ow + 16 <= planes * ohw)
      vector_rows++;
    for (int oy = 0; oy < vector_rows; oy++) {
      const size_t r = (size_t)(2 * oy) * w, p = (size_t)oy * ow;
      dx16(y + p, dy + p, winner + p, x + r, x + r + w, mean, count, f[ch].k, f[ch].a, f[ch].b,
           out + r, out + r + w);
    }
  }
#endif
  if (vector_rows == oh && !(h & 1)) return;
  const size_t done = (size_t)(2 * vector_rows) * w;
  expand_plane_gradient(h - 2 * vector_rows, w, y + (size_t)vector_rows * ow,
                        winner + (size_t)vector_rows * ow, dy + (size_t)vector_rows * ow,
                        out + done);
  plane_input_gradient(hw - done, x + done, out + done, mean, count, f[ch], out + done);
}

// A convolution's backward asks for an image's planes in turn, between its products: the
// hardware prefetchers lose the stream, so each call requests the input SOURCE_AHEAD floats
// ahead of its plane (and the pooled arrays a quarter of that). Prefetches never fault.
#define SOURCE_AHEAD 2048

/// ck_plane_source.plane of a deferred backward.
CK_CLONES static void norm_pool_source_plane(const ck_plane_source *source, int image,
                                             int channel, float *out) {
  const ck_norm_pool_gradient *s = source->state;
  const size_t hw = (size_t)s->h * s->w, ohw = (size_t)(s->h / 2) * (s->w / 2);
  const size_t plane = (size_t)image * s->c + channel;
  const float *x = s->x + plane * hw + SOURCE_AHEAD;
  for (size_t q = 0; q < hw; q += 16) __builtin_prefetch(x + q);
  const float *y = s->y + plane * ohw + SOURCE_AHEAD / 4, *dy = s->dy + plane * ohw + SOURCE_AHEAD / 4;
  for (size_t q = 0; q < ohw; q += 16) {
    __builtin_prefetch(y + q);
    __builtin_prefetch(dy + q);
  }
  norm_pool_dx_plane(s, image, channel, out);
}

/// The batch sums of the backward by image (β given, every channel's sums exact enough from
/// the pooled output): dγ, dβ and each channel's dx coefficients (c entries), from the
/// per-image sums taken already (image_sums) or taken here; 0 when the partial sums' buffer
/// could not be had.
static int sums_and_coefficients(norm_pool_job *j, const float *image_sums,
                                 dx_coefficients *coefficients) {
  const int n = j->n, c = j->c;
  const float count = (float)n * (float)j->h * (float)j->w;
  float *own = image_sums ? NULL : ck_scratch_take((size_t)n * c * 2);
  if (!image_sums && !own) return 0;
  const float *partial = image_sums ? image_sums : own;
  if (own) {
    j->partial = own;
    ck_run_job(ck_get_threads(), ck_get_threads(), sums_by_image, j, 0);
  }
  for (int ch = 0; ch < c; ch++) {
    double sum_dy = 0.0, sum_dy_yc = 0.0; // image order: the same sums whatever the threads
    for (int i = 0; i < n; i++) {
      sum_dy += partial[2 * ((size_t)i * c + ch)];
      sum_dy_yc += partial[2 * ((size_t)i * c + ch) + 1];
    }
    const float invstd = j->save_invstd[ch], scale = j->gamma[ch] * invstd;
    const double sum_dy_xhat = sum_dy_yc / scale * invstd; // Σg·(x − mean)·invstd
    j->dgamma[ch] = (float)sum_dy_xhat;
    j->dbeta[ch] = (float)sum_dy;
    coefficients[ch] = coefficients_of(j->gamma[ch], invstd, count, sum_dy, sum_dy_xhat);
  }
  ck_scratch_give(own);
  j->partial = NULL;
  return 1;
}

/// The state a by-image dx is made from.
static ck_norm_pool_gradient gradient_state(const norm_pool_job *j, const float *coefficients) {
  return (ck_norm_pool_gradient){j->n, j->c, j->h, j->w, j->x, j->save_mean, j->y, j->dy,
                                 j->winner, coefficients};
}

/// The backward by image; 0 when its buffer could not be had.
static int backward_by_image(norm_pool_job *j) {
  float *coefficients = ck_scratch_take(3 * (size_t)j->c);
  if (!coefficients || !sums_and_coefficients(j, NULL, (dx_coefficients *)coefficients)) {
    ck_scratch_give(coefficients);
    return 0;
  }
  if (j->dx) { // the deferred backward's planes, written in full
    const ck_norm_pool_gradient s = gradient_state(j, coefficients);
    const ck_plane_source source = {norm_pool_source_plane, &s, j->n, j->c, j->h, j->w};
    ck_plane_source_fill(&source, ck_get_threads(), j->dx);
  }
  ck_scratch_give(coefficients);
  return 1;
}

/// Whether the backward may run by image: β given and every channel's sums exact enough.
static int by_image_possible(int n, int c, const float *gamma, const float *beta,
                             const float *save_invstd) {
  int ok = beta != NULL && n > 0 && c > 0;
  for (int ch = 0; ok && ch < c; ch++)
    ok = pooled_sums_exact_enough(gamma[ch], beta[ch], save_invstd[ch]);
  return ok;
}

/// Deferred backward; contract in include/ck_dense.h.
int ck_batchnorm_relu_maxpool2_backward_deferred(
    int n, int c, int h, int w, const float *x, const float *gamma, const float *beta,
    const float *save_mean, const float *save_invstd, const float *y, const uint8_t *winner,
    const float *image_sums, const float *dy, float *dgamma, float *dbeta, float *coefficients,
    ck_norm_pool_gradient *state, ck_plane_source *source) {
  if (!by_image_possible(n, c, gamma, beta, save_invstd)) return 0;
  norm_pool_job j = {n, c, h, w, x, gamma, beta, 0.0f, 0.0f, NULL, NULL, (float *)save_mean,
                     (float *)save_invstd, (float *)y, (uint8_t *)winner, dy, NULL, dgamma, dbeta,
                     NULL};
  if (!sums_and_coefficients(&j, image_sums, (dx_coefficients *)coefficients)) return 0;
  *state = gradient_state(&j, coefficients);
  *source = (ck_plane_source){norm_pool_source_plane, state, n, c, h, w};
  return 1;
}

/// Fused backward; contract in include/ck_dense.h.
void ck_batchnorm_relu_maxpool2_backward(int n, int c, int h, int w, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *save_mean, const float *save_invstd,
                                         const float *y, const uint8_t *winner, const float *dy,
                                         float *dx, float *dgamma, float *dbeta) {
  norm_pool_job j = {n, c, h, w, x, gamma, beta, 0.0f, 0.0f, NULL, NULL, (float *)save_mean,
                     (float *)save_invstd, (float *)y, (uint8_t *)winner, dy, dx, dgamma, dbeta,
                     NULL};
  if (by_image_possible(n, c, gamma, beta, save_invstd) && backward_by_image(&j)) return;
  ck_run_job(ck_get_threads(), ck_get_threads(), backward_by_channel, &j, (size_t)n * h * w);
}
