// 16-float vectors for loops the auto-vectoriser leaves narrow: rows shorter than its 16 lanes
// (7- to 14-float rows, 7 to 16 pooling windows). GCC/Clang vector extensions, so every target
// gets SIMD (AVX-512 in the x86-64-v4 clones, two or four registers elsewhere); CK_VECTOR16 is 0
// with other compilers, whose callers keep their scalar loops. Loads, stores and selects are
// macros, not functions: no 64-byte vector crosses a call, whose ABI would differ between the
// instruction-set clones.
#ifndef CK_VECTOR16_H
#define CK_VECTOR16_H

#include <stdint.h>
#include <string.h>

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define CK_VECTOR16 1
typedef float ck_f16v __attribute__((vector_size(64)));
typedef int32_t ck_i16v __attribute__((vector_size(64)));
typedef uint8_t ck_u16v __attribute__((vector_size(16)));

/// The 16 floats at p (any alignment).
#define CK_LOAD16(p) __extension__({ ck_f16v v_; memcpy(&v_, (p), sizeof v_); v_; })
/// 16 floats to p (any alignment).
#define CK_STORE16(p, v) do { const ck_f16v t_ = (v); memcpy((p), &t_, sizeof t_); } while (0)
/// m ? a : b lane by lane (m: a comparison's −1 or 0), for float vectors.
#define CK_SELECT16(m, a, b) ((ck_f16v)(((m) & (ck_i16v)(a)) | (~(m) & (ck_i16v)(b))))
/// The same for int vectors.
#define CK_SELECT16I(m, a, b) (((m) & (a)) | (~(m) & (b)))
#else
#define CK_VECTOR16 0
#endif

#endif
