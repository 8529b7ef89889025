// Max and average pooling over image planes (N·C planes of H×W), parallel over planes (max
// pooling as jobs: OpenMP, or a host's thread pool when one is lent).
#include "ck_dense.h"
#include "ck_jobs.h"
#include "ck_clones.h"
#include <float.h>
#include <string.h>

// The common 2×2, stride 2, no-padding case, branch-free over each output row.
static void maxpool_2x2(int pl0, int pl1, int h, int w, int oh, int ow, const float *x, float *y,
                        int32_t *argmax) {
  for (int pl = pl0; pl < pl1; pl++) {
    const float *in = x + (size_t)pl * h * w;
    float *out = y + (size_t)pl * oh * ow;
    int32_t *arg = argmax + (size_t)pl * oh * ow;
    for (int oy = 0; oy < oh; oy++) {
      const float *r0 = in + (size_t)(2 * oy) * w;
      const float *r1 = r0 + w;
      for (int ox = 0; ox < ow; ox++) {
        int i0 = 2 * oy * w + 2 * ox;
        float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
        float m1 = a, m2 = c;
        int j1 = i0, j2 = i0 + w;
        if (b > m1) { m1 = b; j1 = i0 + 1; }
        if (d > m2) { m2 = d; j2 = i0 + w + 1; }
        if (m2 > m1) { m1 = m2; j1 = j2; }
        out[oy * ow + ox] = m1;
        arg[oy * ow + ox] = j1;
      }
    }
  }
}

/// Max pooling forward with argmax; contract in include/ck_dense.h.
// The arguments of one max-pooling call, shared by its parts.
typedef struct {
  int planes, h, w, k, s, p, oh, ow;
  const float *x, *dy;
  float *y, *dx;
  int32_t *argmax;
} pool_job;

/// Max pooling of the planes of part `part`.
CK_CLONES static void maxpool_forward_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const pool_job *job = arg;
  const int h = job->h, w = job->w, k = job->k, s = job->s, p = job->p, oh = job->oh, ow = job->ow;
  const float *x = job->x;
  float *y = job->y;
  int32_t *argmax = job->argmax;
  int pl0, pl1;
  ck_job_range(job->planes, part, parts, &pl0, &pl1);
  if (k == 2 && s == 2 && p == 0 && oh == h / 2 && ow == w / 2) {
    maxpool_2x2(pl0, pl1, h, w, oh, ow, x, y, argmax);
    return;
  }
  for (int pl = pl0; pl < pl1; pl++) {
    const float *in = x + (size_t)pl * h * w;
    float *out = y + (size_t)pl * oh * ow;
    int32_t *arg = argmax + (size_t)pl * oh * ow;
    for (int oy = 0; oy < oh; oy++) {
      for (int ox = 0; ox < ow; ox++) {
        float best = -FLT_MAX;
        int32_t best_index = -1;
        for (int i = 0; i < k; i++) {
          int iy = oy * s - p + i;
          if (iy < 0 || iy >= h) continue;
          for (int j = 0; j < k; j++) {
            int ix = ox * s - p + j;
            if (ix < 0 || ix >= w) continue;
            float v = in[iy * w + ix];
            if (v > best || best_index < 0) {
              best = v;
              best_index = iy * w + ix;
            }
          }
        }
        out[oy * ow + ox] = best_index < 0 ? 0.0f : best;
        arg[oy * ow + ox] = best_index;
      }
    }
  }
}

/// Max pooling forward with argmax; contract in include/ck_dense.h.
void ck_maxpool_forward(int planes, int h, int w, int k, int s, int p, int oh, int ow,
                        const float *x, float *y, int32_t *argmax) {
  pool_job j = {planes, h, w, k, s, p, oh, ow, x, NULL, y, NULL, argmax};
  ck_run_job(ck_get_threads(), ck_get_threads(), maxpool_forward_part, &j, 0);
}

/// dy routed to the argmax positions of the planes of part `part`.
CK_CLONES static void maxpool_backward_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const pool_job *j = arg;
  const int h = j->h, w = j->w, oh = j->oh, ow = j->ow;
  const int32_t *argmax = j->argmax;
  const float *dy = j->dy;
  float *dx = j->dx;
  int pl0, pl1;
  ck_job_range(j->planes, part, parts, &pl0, &pl1);
  for (int pl = pl0; pl < pl1; pl++) {
    float *d = dx + (size_t)pl * h * w;
    const float *g = dy + (size_t)pl * oh * ow;
    const int32_t *winner = argmax + (size_t)pl * oh * ow;
    memset(d, 0, sizeof(float) * h * w);
    for (int i = 0; i < oh * ow; i++)
      if (winner[i] >= 0) d[winner[i]] += g[i];
  }
}

/// Routes dy to the argmax positions; contract in include/ck_dense.h.
void ck_maxpool_backward(int planes, int h, int w, int oh, int ow, const int32_t *argmax,
                         const float *dy, float *dx) {
  pool_job j = {planes, h, w, 0, 0, 0, oh, ow, NULL, dy, NULL, dx, (int32_t *)argmax};
  ck_run_job(ck_get_threads(), ck_get_threads(), maxpool_backward_part, &j, 0);
}

/// Average pooling forward; contract in include/ck_dense.h.
void ck_avgpool_forward(int planes, int h, int w, int k, int s, int p, int oh, int ow,
                        const float *x, float *y) {
  const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for num_threads(ck_get_threads()) schedule(static)
  for (int pl = 0; pl < planes; pl++) {
    const float *in = x + (size_t)pl * h * w;
    float *out = y + (size_t)pl * oh * ow;
    for (int oy = 0; oy < oh; oy++) {
      for (int ox = 0; ox < ow; ox++) {
        float sum = 0.0f;
        for (int i = 0; i < k; i++) {
          int iy = oy * s - p + i;
          if (iy < 0 || iy >= h) continue;
          for (int j = 0; j < k; j++) {
            int ix = ox * s - p + j;
            if (ix >= 0 && ix < w) sum += in[iy * w + ix];
          }
        }
        out[oy * ow + ox] = sum * inv;
      }
    }
  }
}

/// Spreads dy evenly over each window; contract in include/ck_dense.h.
void ck_avgpool_backward(int planes, int h, int w, int k, int s, int p, int oh, int ow,
                         const float *dy, float *dx) {
  const float inv = 1.0f / (float)(k * k);
#pragma omp parallel for num_threads(ck_get_threads()) schedule(static)
  for (int pl = 0; pl < planes; pl++) {
    float *d = dx + (size_t)pl * h * w;
    const float *g = dy + (size_t)pl * oh * ow;
    memset(d, 0, sizeof(float) * h * w);
    for (int oy = 0; oy < oh; oy++) {
      for (int ox = 0; ox < ow; ox++) {
        float v = g[oy * ow + ox] * inv;
        for (int i = 0; i < k; i++) {
          int iy = oy * s - p + i;
          if (iy < 0 || iy >= h) continue;
          for (int j = 0; j < k; j++) {
            int ix = ox * s - p + j;
            if (ix >= 0 && ix < w) d[iy * w + ix] += v;
          }
        }
      }
    }
  }
}
