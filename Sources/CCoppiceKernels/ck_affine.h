// A batch norm's output, y = x·scale + shift (then max(y, 0) with a fused ReLU), over one run of
// a channel: the one expression every kernel that applies a ck_channel_affine uses — the batch
// norm's own forward, and the convolutions and residual sums that apply a deferred batch norm
// as they read its input — so their results agree bit for bit (inlined into each instruction-set
// clone, CK_INLINE).
#ifndef CK_AFFINE_H
#define CK_AFFINE_H

#include <stddef.h>

#include "ck_clones.h"

/// out[q] = in[q]·scale + shift (ReLU'd when relu) for q < n.
CK_INLINE void ck_affine_run(size_t n, const float *in, float scale, float shift, int relu,
                             float *out) {
  if (relu) {
#pragma omp simd
    for (size_t q = 0; q < n; q++) {
      float v = in[q] * scale + shift;
      out[q] = v > 0.0f ? v : 0.0f;
    }
  } else {
#pragma omp simd
    for (size_t q = 0; q < n; q++) out[q] = in[q] * scale + shift;
  }
}

#endif
