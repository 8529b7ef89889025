// NEON (AArch64 Advanced SIMD) variant of the sparse kernels: the vector primitives of
// vec_kernels.h on 4-float q registers. NEON is part of every AArch64 CPU, so nothing needs a
// target attribute or a run-time check; isa.c uses this table whenever it is compiled in.
// NEON has no masked loads and stores: a lane mask is the count of lanes in use, and a partial
// vector goes through a small stack buffer (only the last vector of a column tile is partial).
#include "sparse/internal.h"

#if CK_SP_ARM
#include <arm_neon.h>
#include <string.h>

#define CK_VEC_TARGET
#define CK_VEC_KERNELS ck_sp_kernels_neon
#define VEC_WIDTH 4
#define VEC(op) neon_##op
typedef float32x4_t vec;
typedef int vec_mask; // lanes in use, 1..4

static inline vec neon_load(const float *p) { return vld1q_f32(p); }
static inline vec neon_loadu(const float *p) { return vld1q_f32(p); }
static inline void neon_store(float *p, vec v) { vst1q_f32(p, v); }
static inline void neon_storeu(float *p, vec v) { vst1q_f32(p, v); }
static inline vec neon_set1(float a) { return vdupq_n_f32(a); }
/// a·b + c, fused.
static inline vec neon_fmadd(vec a, vec b, vec c) { return vfmaq_f32(c, a, b); }
static inline vec neon_mul(vec a, vec b) { return vmulq_f32(a, b); }

/// Mask of the first count lanes, 1 <= count <= 4.
static inline vec_mask vec_first(int count) { return count; }

/// Mask of all 4 lanes.
static inline vec_mask vec_all(void) { return VEC_WIDTH; }

/// The first m floats at p (nothing beyond them is read), 0 in the other lanes.
static inline vec vec_maskz_load(const float *p, vec_mask m) {
  if (m == VEC_WIDTH) return vld1q_f32(p);
  float lanes[VEC_WIDTH] = {0.0f, 0.0f, 0.0f, 0.0f};
  memcpy(lanes, p, sizeof(float) * (size_t)m);
  return vld1q_f32(lanes);
}

/// Stores the first m lanes of v to p (nothing beyond them is written).
static inline void vec_mask_store(float *p, vec_mask m, vec v) {
  if (m == VEC_WIDTH) {
    vst1q_f32(p, v);
    return;
  }
  float lanes[VEC_WIDTH];
  vst1q_f32(lanes, v);
  memcpy(p, lanes, sizeof(float) * (size_t)m);
}

/// Σ of the 4 lanes of a.
static inline float vec_sum(vec a) { return vaddvq_f32(a); }

/// p[0..3] += [Σa, Σb, Σc, Σd], by pairwise adds.
static inline void vec_add_sums4(float *p, vec a, vec b, vec c, vec d) {
  const vec sums = vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
  vst1q_f32(p, vaddq_f32(vld1q_f32(p), sums));
}

#include "sparse/arch/vec_kernels.h"
#endif
