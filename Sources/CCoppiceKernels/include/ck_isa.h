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

#ifdef __cplusplus
}
#endif
#endif
