// AVX2 + FMA variant of the sparse kernels: the vector primitives of vec_kernels.h on 8-float
// ymm vectors, with lane masks as integer vectors (maskload/maskstore). Compiled for any x86
// target (the functions carry the AVX2 target attribute); isa.c calls them only when the CPU
// has AVX2 and FMA.
#include "sparse/internal.h"

#if CK_SP_X86
#define CK_VEC_TARGET CK_TGT_AVX2
#define CK_VEC_KERNELS ck_sp_kernels_avx2
#define VEC_WIDTH 8
#define VEC(op) _mm256_##op##_ps
typedef __m256 vec;
typedef __m256i vec_mask;

// Lane masks are read from here: 8 set lanes, then 8 clear ones.
static const int32_t lane_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/// Mask of the first count lanes, 1 <= count <= 8.
CK_VEC_TARGET static inline vec_mask vec_first(int count) {
  return _mm256_loadu_si256((const __m256i *)(lane_table + 8 - count));
}

/// Mask of all 8 lanes.
CK_VEC_TARGET static inline vec_mask vec_all(void) { return _mm256_set1_epi32(-1); }

/// The lanes m of the 8 floats at p (unaligned; lanes outside m are not read), 0 elsewhere.
CK_VEC_TARGET static inline vec vec_maskz_load(const float *p, vec_mask m) {
  return _mm256_maskload_ps(p, m);
}

/// Stores the lanes m of v to p (unaligned; memory outside m is not written).
CK_VEC_TARGET static inline void vec_mask_store(float *p, vec_mask m, vec v) {
  _mm256_maskstore_ps(p, m, v);
}

/// Σ of the 8 lanes of a.
CK_VEC_TARGET static inline float vec_sum(vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/// [Σa, Σb, Σc, Σd] by horizontal adds.
CK_VEC_TARGET static inline __m128 sum4(vec a, vec b, vec c, vec d) {
  __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/// p[0..3] += [Σa, Σb, Σc, Σd].
CK_VEC_TARGET static inline void vec_add_sums4(float *p, vec a, vec b, vec c, vec d) {
  _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), sum4(a, b, c, d)));
}

#include "sparse/arch/vec_kernels.h"
#endif
