// AVX-512 (f, bw, dq, vl) variant of the sparse kernels: the vector primitives of
// vec_kernels.h on 16-float zmm vectors with k-register lane masks. Compiled for any x86 target
// (the functions carry the AVX-512 target attribute); isa.c calls them only when the CPU has
// AVX-512.
#include "sparse/internal.h"

#if CK_SP_X86
#define CK_VEC_TARGET CK_TGT_AVX512
#define CK_VEC_KERNELS ck_sp_kernels_avx512
#define VEC_WIDTH 16
#define VEC(op) _mm512_##op##_ps
typedef __m512 vec;
typedef __mmask16 vec_mask;

/// Mask of the first count lanes, 1 <= count <= 16.
CK_VEC_TARGET static inline vec_mask vec_first(int count) {
  return (vec_mask)((1u << count) - 1);
}

/// Mask of all 16 lanes.
CK_VEC_TARGET static inline vec_mask vec_all(void) { return (vec_mask)0xFFFF; }

/// The lanes m of the 16 floats at p (unaligned; lanes outside m are not read), 0 elsewhere.
CK_VEC_TARGET static inline vec vec_maskz_load(const float *p, vec_mask m) {
  return _mm512_maskz_loadu_ps(m, p);
}

/// Stores the lanes m of v to p (unaligned; memory outside m is not written).
CK_VEC_TARGET static inline void vec_mask_store(float *p, vec_mask m, vec v) {
  _mm512_mask_storeu_ps(p, m, v);
}

/// Σ of the 16 lanes of a.
CK_VEC_TARGET static inline float vec_sum(vec a) { return _mm512_reduce_add_ps(a); }

/// [Σa, Σb, Σc, Σd]: the four vectors reduced together by a shuffle tree.
CK_VEC_TARGET static inline __m128 sum4(vec a, vec b, vec c, vec d) {
  __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
  __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4E));
  t = _mm512_add_ps(t, _mm512_permute_ps(t, 0xB1));
  const __m512i pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, t));
}

/// p[0..3] += [Σa, Σb, Σc, Σd].
CK_VEC_TARGET static inline void vec_add_sums4(float *p, vec a, vec b, vec c, vec d) {
  _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), sum4(a, b, c, d)));
}

#include "sparse/arch/vec_kernels.h"
#endif
