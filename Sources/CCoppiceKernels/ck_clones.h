// Run-time instruction set choice for plain C loops (the dense kernels and the loops of the
// sparse drivers outside arch/): CK_CLONES before a function definition compiles it three
// times — for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline x86-64 — and the
// dynamic loader binds the best one the CPU has, once, when the library is loaded (an ifunc).
// So no whole target needs -march and the binaries run on any x86-64.
//
// Where ifuncs do not exist (macOS, musl, other compilers) or on other architectures CK_CLONES
// is empty: the function is compiled once for the target's baseline (on aarch64 that includes
// NEON, which the auto-vectoriser uses).
//
// Put it on functions that hold the hot loops and contain no `#pragma omp parallel`: clang
// compiles a parallel region's body as a separate (outlined) function without the clone's
// instruction set, so a clone helps only code that runs in the function itself (or in
// functions inlined into it). Calls into a clone from inside a parallel region are fine.
#ifndef CK_CLONES_H
#define CK_CLONES_H

#include <limits.h> // defines __GLIBC__ on glibc

// (GCC before 12 knows neither the x86-64-vN names here nor in __builtin_cpu_supports.)
#if defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && defined(__has_attribute) && \
    (defined(__clang__) || __GNUC__ >= 12) && !defined(CK_NO_CLONES)
#if __has_attribute(target_clones)
#define CK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define CK_CLONES_ACTIVE 1
#endif
#endif

#ifndef CK_CLONES
#define CK_CLONES
#define CK_CLONES_ACTIVE 0
#endif

// A helper with arithmetic that a CK_CLONES function calls: inlined into every clone, even
// without optimisation (debug builds), so that it runs with the clone's instruction set. A
// helper compiled on its own would get the baseline set — no FMA — and round differently from
// the same expression inside the clone (the fused layers are checked bit for bit against the
// layers they replace).
#define CK_INLINE static inline __attribute__((always_inline))

#endif
