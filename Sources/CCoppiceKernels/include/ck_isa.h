// The instruction sets the kernels chose at run time, for reports (`coppice --version`,
// `coppice bench kernels`). The sparse kernels' set is ck_sparse_isa / ck_sparse_isa_name
// (ck_sparse.h); the loops compiled with CK_CLONES (dense kernels, sparse drivers) are bound
// once at load time by the dynamic loader.
#ifndef CK_ISA_H
#define CK_ISA_H

#ifdef __cplusplus
extern "C" {
#endif

/// The variant the CK_CLONES loops run on this CPU: "x86-64-v4" (AVX-512), "x86-64-v3" (AVX2 +
/// FMA) or "x86-64" (baseline SSE2) on x86-64 Linux; "aarch64" (NEON, compiled once) on
/// AArch64; "baseline" elsewhere (compiled once for the target). A static string.
const char *ck_dense_isa_name(void);

/// OpenBLAS's kernel core in use (openblas_get_corename), e.g. "SkylakeX". When OpenBLAS fell
/// back to a core below what the CPU runs (an OpenBLAS older than the CPU model: Debian 12's
/// 0.3.21 takes Emerald Rapids for a "Prescott", 4-5x slower sgemm) and OPENBLAS_CORETYPE is
/// not set, the kernels' library re-selects it from the CPU's features when it is loaded
/// (dense/blas_core.c).
const char *ck_blas_core_name(void);

/// The core OpenBLAS had chosen before that correction, or NULL when none was made.
const char *ck_blas_core_corrected_from(void);

#ifdef __cplusplus
}
#endif
#endif
