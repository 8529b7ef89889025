// The batch-norm statistics' per-plane sums, shared by every kernel that takes them (the
// statistics' own pass, ck_batchnorm_image_moments_observer, the fused norm-pool window
// observer), so each gives the same bits.
//
// The sums are taken about a shift K per channel, which keeps E[(x−K)²] − E[x−K]² accurate
// when the mean is large relative to the spread: the running mean (near the batch mean once
// training has started; 0 if it is not finite), or without running statistics the channel's
// first value. Each plane's two sums are floats (plane_moments), added in image order in
// double by the statistics.
#ifndef CK_PLANE_MOMENTS_H
#define CK_PLANE_MOMENTS_H

#include "ck_clones.h"
#include <math.h>
#include <stddef.h>

CK_INLINE float running_shift(const float *running_mean, int ch) {
  return isfinite(running_mean[ch]) ? running_mean[ch] : 0.0f;
}

/// Σ(x − k) and Σ(x − k)² over one plane of hw floats.
CK_INLINE void plane_moments(int hw, const float *p, float k, float *sum, float *sq) {
  float s = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s, s2)
  for (int j = 0; j < hw; j++) {
    float d = p[j] - k;
    s += d;
    s2 += d * d;
  }
  *sum = s;
  *sq = s2;
}

#endif
