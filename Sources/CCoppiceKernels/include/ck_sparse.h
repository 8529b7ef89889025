// Sparse numeric kernels of Coppice (C, OpenMP): a sparse weight format and the three
// products a training step of a sparse layer needs, plus sparse convolution and a
// dense/sparse dispatch decision.
//
// Conventions are those of ck_dense.h: row-major contiguous float32, images NCHW, weights
// OIHW, OpenMP owns the parallelism (these kernels never call a threaded BLAS), results are
// written unless a `beta` says otherwise. A kernel uses omp_get_max_threads() threads, and one
// thread when it is called from inside an OpenMP parallel region.
//
// Notation: W is M×K (sparse, `rows` × `cols`), X is K×N, Y and dY are M×N, dX is K×N.
//   forward      Y  = W·X (+ bias[i] on row i) (+ beta·Y)          ck_sparse_spmm
//   input grad   dX = Wᵀ·dY (+ beta·dX)                             ck_sparse_spmm_t
//   weight grad  dW[i,k] = Σ_n dY[i,n]·X[k,n] at kept (i,k) only    ck_sparse_sddmm(_dense)
//
// `beta` semantics everywhere: when beta == 0 the output is not read (it may hold NaN or
// garbage); otherwise out = beta·out + product.
//
// Instruction set: on x86-64 AVX-512 (f, bw, dq, vl) when the CPU has it, else AVX2+FMA, else
// portable C; on AArch64 NEON; chosen at run time (see ck_sparse_isa). Results of the paths
// agree to float rounding (summation order differs from the scalar reference by at most
// reassociation).
// On x86-64 with AVX-512 the forward product and the input gradient run as machine code
// generated for the sparsity pattern at their first call (up to 1 M nonzeros; freed with the
// format, values kept in sync by ck_sparse_update_values/ck_sparse_set_values);
// CK_SPARSE_JIT=0 in the environment keeps the generic kernels.
#ifndef CK_SPARSE_H
#define CK_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "ck_dense.h"
#include "ck_jobs.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// Sparse weight format
// ---------------------------------------------------------------------------------------------

/// An M×K sparse weight with its sparsity pattern (the mask) and its values.
///
/// Layout (opaque to callers): column-panel CSR. The columns are cut into panels of
/// `CK_SPARSE_PANEL` (128) columns; for every (panel, row) the kept entries of that row inside
/// that panel are stored contiguously with 16-bit column offsets inside the panel, panel-major.
/// A transposed copy (the same layout for Wᵀ, K×M) is kept for the input gradient, so no kernel
/// needs atomics. The *value order* (the order of ck_sparse_values and of the SDDMM output) is
/// this panel-major order; use ck_sparse_gather/ck_sparse_scatter to move between it and a
/// dense M×K array. Entries whose mask is kept but whose value is 0 are stored (the pattern
/// comes from the mask only). Limits: M, K >= 1 and M·K < 2^31.
typedef struct ck_sparse ck_sparse;

/// Column panel width of the format (entries per panel column offset fit in 16 bits).
#define CK_SPARSE_PANEL 128

/// Builds the sparse form of the dense weight `w` (M×K) under `mask` (M×K floats; an entry is
/// kept iff mask != 0). Returns NULL on invalid sizes or allocation failure. O(M·K), parallel.
ck_sparse *ck_sparse_create(int rows, int cols, const float *w, const float *mask);
/// Same as ck_sparse_create with a byte mask (kept iff mask[i] != 0).
ck_sparse *ck_sparse_create_u8(int rows, int cols, const float *w, const uint8_t *mask);
/// Frees a format (NULL is allowed).
void ck_sparse_free(ck_sparse *s);

/// Refreshes the stored values from the dense weight `w` (M×K) when only values changed (same
/// mask). O(nnz), no allocation; updates the transposed copy too.
void ck_sparse_update_values(ck_sparse *s, const float *w);
/// Sets the stored values from an array in value order (length nnz); updates the transpose.
void ck_sparse_set_values(ck_sparse *s, const float *values);

/// M (rows of W).
int ck_sparse_rows(const ck_sparse *s);
/// K (columns of W).
int ck_sparse_cols(const ck_sparse *s);
/// Number of kept entries.
int64_t ck_sparse_nnz(const ck_sparse *s);
/// nnz / (M·K).
double ck_sparse_density(const ck_sparse *s);
/// The stored values in value order (length nnz). Read-only: change them through
/// ck_sparse_set_values or ck_sparse_update_values so the transposed copy stays in sync.
const float *ck_sparse_values(const ck_sparse *s);
/// Bytes of memory held by the format (both copies, indices and values, and the compiled
/// products once built).
size_t ck_sparse_bytes(const ck_sparse *s);

/// dense[M×K] = the values (array in value order, length nnz) at the kept positions and 0
/// elsewhere.
void ck_sparse_scatter(const ck_sparse *s, const float *values, float *dense);
/// values[j] = dense[i·K + k] for the j-th kept entry (i, k) in value order.
void ck_sparse_gather(const ck_sparse *s, const float *dense, float *values);

// ---------------------------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------------------------

/// Forward: y[i, :] = Σ_k W[i,k]·x[k, :] + (bias ? bias[i] : 0) + beta·y[i, :], for the M rows
/// of y and n columns. x is K×n with leading dimension ldx (>= n), y is M×n with ldy (>= n).
/// bias may be NULL. Vectorised over n; threads split n (or rows, by nonzeros, when n is small).
void ck_sparse_spmm(const ck_sparse *w, int n, const float *x, int ldx, const float *bias,
                    float beta, float *y, int ldy);

/// Input gradient: dx = Wᵀ·dy + beta·dx. dy is M×n (leading dim lddy), dx is K×n (lddx).
/// Uses the transposed copy: no atomics, no races.
void ck_sparse_spmm_t(const ck_sparse *w, int n, const float *dy, int lddy, float beta,
                      float *dx, int lddx);

/// Weight gradient at kept positions (SDDMM), in value order:
/// dw_values[j] = beta·dw_values[j] + Σ_n dy[i, n]·x[k, n] for the j-th kept entry (i, k).
/// dy is M×n (lddy), x is K×n (ldx); dw_values has nnz entries.
void ck_sparse_sddmm(const ck_sparse *w, int n, const float *dy, int lddy, const float *x,
                     int ldx, float beta, float *dw_values);

/// Weight gradient scattered to a dense M×K array: dw[i,k] = Σ_n dy[i,n]·x[k,n] (+ beta·dw[i,k])
/// at kept (i,k); entries outside the mask are set to 0 (whatever beta is).
void ck_sparse_sddmm_dense(const ck_sparse *w, int n, const float *dy, int lddy, const float *x,
                           int ldx, float beta, float *dw);

// ---------------------------------------------------------------------------------------------
// Linear layers on token-major arrays (one row per token, as hosts store activations)
// ---------------------------------------------------------------------------------------------

/// y (n×M, contiguous) = x (n×K, contiguous)·Wᵀ + (bias ? bias : 0). The same product as
/// ck_sparse_spmm on xᵀ without transposing whole arrays: threads take chunks of tokens and
/// transpose each in cache. n may be 0 (nothing written).
void ck_sparse_linear_forward(const ck_sparse *w, int n, const float *x, const float *bias,
                              float *y);

/// The gradients of ck_sparse_linear_forward for dy (n×M): dx (n×K) = dy·W when dx is not
/// NULL; dw_values (value order, nnz entries) = Σ_tokens dy[t, i]·x[t, k] at the kept entries
/// when not NULL; db (M) = Σ_tokens dy[t, :] when not NULL. All written, never accumulated.
/// One pass over x and dy; per-thread partial sums are added in thread order (reproducible
/// for a given thread count). dx_observer (NULL, or used only with dx) is given each token's
/// row of dx (K floats) once it is written, while it is in cache (from any thread; e.g. the
/// batch norm + pool before a flattening takes its sums there).
void ck_sparse_linear_backward(const ck_sparse *w, int n, const float *x, const float *dy,
                               float *dx, const ck_image_observer *dx_observer,
                               float *dw_values, float *db);

// ---------------------------------------------------------------------------------------------
// Sparse convolution (im2col per image around the products above)
// ---------------------------------------------------------------------------------------------

/// y = conv(x, W) + bias for a batch. W is the sparse form of the OIHW weight seen as
/// M = out_channels rows × K = in_channels·kernel_h·kernel_w columns. x is NCHW
/// (batch × in_channels × in_height × in_width), y is batch × out_channels × OH × OW.
/// out_height/out_width of `shape` are recomputed from the other fields. bias may be NULL.
/// Images are split over threads (each thread: im2col into a private buffer, then the sparse
/// product); a batch smaller than the thread count parallelises inside each image instead.
void ck_sparse_conv2d_forward(const ck_conv_shape *shape, const ck_sparse *w, const float *x,
                              const float *bias, float *y);

/// Backward of ck_sparse_conv2d_forward. dx (NCHW, written, may be NULL) = input gradient;
/// dw_values (value order, nnz entries, written, may be NULL) = weight gradient at the kept
/// positions summed over the batch; dbias (out_channels, written, may be NULL) = Σ dy.
void ck_sparse_conv2d_backward(const ck_conv_shape *shape, const ck_sparse *w, const float *x,
                               const float *dy, float *dx, float *dw_values, float *dbias);

/// ck_sparse_conv2d_forward of map(x) (a batch norm's output left unstored, ck_channel_affine;
/// bit for bit the forward of the mapped tensor; x_map NULL: of x). Direct stride-1
/// convolutions by image apply the map as they pad each image; other paths map the batch into
/// scratch first. y_observer (NULL, or) is given each image of y once it is written, while it
/// is in cache (from any thread; e.g. the batch norm after takes its statistics' sums there,
/// ck_batchnorm_image_moments_observer).
void ck_sparse_conv2d_forward_mapped(const ck_conv_shape *shape, const ck_sparse *w,
                                     const float *x, const ck_channel_affine *x_map,
                                     const float *bias, const ck_image_observer *y_observer,
                                     float *y);

/// ck_sparse_conv2d_backward with the input map(x) when x_map is not NULL (the forward's), and
/// dY either stored (dy) or produced plane by plane (dy_source, batch × out_channels planes of
/// OH×OW): exactly one of the two, else nothing is written (nor when the source's dimensions
/// differ from the shape's). Where the backward reads dY once — by image over threads, dx
/// wanted, a stride-1 "same" convolution — each plane is produced into cache as it is needed
/// and x is mapped as it is padded; elsewhere dY and map(x) are made in full first. dx_add
/// (NULL, or x's shape) is added to dx image by image while it is in cache (a residual block's
/// shortcut gradient): dx = input gradient + dx_add. dx_observer (NULL, or used only when dx
/// is wanted) is given each image of dx once it is final, dx_add included, while it is in
/// cache (from any thread; e.g. the batch norm before takes its sums there,
/// ck_batchnorm_image_sums_observer). The gradients are bit for bit those of the stored
/// tensors and a separate addition.
void ck_sparse_conv2d_backward_fused(const ck_conv_shape *shape, const ck_sparse *w,
                                     const float *x, const ck_channel_affine *x_map,
                                     const float *dy, const ck_plane_source *dy_source,
                                     float *dx, const float *dx_add,
                                     const ck_image_observer *dx_observer, float *dw_values,
                                     float *dbias);

// ---------------------------------------------------------------------------------------------
// Dense/sparse dispatch
// ---------------------------------------------------------------------------------------------

/// Which product a dispatch question is about.
typedef enum {
  CK_SPARSE_OP_FORWARD = 0,    ///< Y = W·X
  CK_SPARSE_OP_INPUT_GRAD = 1, ///< dX = Wᵀ·dY
  CK_SPARSE_OP_WEIGHT_GRAD = 2 ///< dW = (dY·Xᵀ) ⊙ mask
} ck_sparse_op;

/// Modelled time ratio sparse/dense (< 1: sparse expected faster) for op on W M×K with the given
/// density (kept fraction, 0..1) and N columns of X, on this machine class (2-core AVX-512,
/// OpenBLAS dense). The model is calibrated from Tests/kernels/bench_sparse.c; see
/// sparse/dispatch.c for the numbers and how they were fitted.
double ck_sparse_cost_ratio(ck_sparse_op op, int m, int k, int n, double density);

/// 1 when the sparse kernel is expected to be faster than dense sgemm for this op and shape
/// (ratio below a safety margin), else 0. A layer should use the sparse path iff this says so,
/// so that it never gets slower by being sparse.
int ck_sparse_prefer(ck_sparse_op op, int m, int k, int n, double density);

/// 1 when the sparse convolution's direct kernels (stride 1 or 2, not 1×1), even with every
/// weight kept, are expected to be faster than the dense convolution for this op (a dense layer
/// then runs them with a full mask, and a masked layer is sparse at any density); see
/// sparse/conv.c.
int ck_sparse_conv2d_direct_preferred(const ck_conv_shape *shape, ck_sparse_op op);

/// Largest density at which ck_sparse_prefer still chooses sparse for this op and shape.
double ck_sparse_crossover_density(ck_sparse_op op, int m, int k, int n);

// ---------------------------------------------------------------------------------------------
// Instruction set selection and scalar references (for tests)
// ---------------------------------------------------------------------------------------------

/// Instruction set the kernels use: 2 = AVX-512, 1 = AVX2+FMA, 0 = portable C (generic),
/// 3 = NEON (AArch64). Chosen at run time: the best the CPU has, unless forced lower by
/// ck_sparse_set_isa or by the environment variable COPPICE_ISA (auto, generic, avx2, avx512
/// or neon; read when the kernels first run).
int ck_sparse_isa(void);
/// The name of an instruction set number: "generic", "avx2", "avx512" or "neon" (static).
const char *ck_sparse_isa_name(int isa);
/// Forces a lower instruction set (clamped to what the CPU supports; on AArch64 anything
/// below NEON is C; -1 = automatic). Returns the one in effect. Not thread-safe with running
/// kernels; meant for tests.
int ck_sparse_set_isa(int isa);

/// Scalar references, straight from the definitions on the dense weight and mask (float mask,
/// kept iff != 0), accumulating in double. Same argument meaning as the fast kernels.
void ck_sparse_ref_spmm(int m, int k, int n, const float *w, const float *mask, const float *x,
                        int ldx, const float *bias, float beta, float *y, int ldy);
void ck_sparse_ref_spmm_t(int m, int k, int n, const float *w, const float *mask,
                          const float *dy, int lddy, float beta, float *dx, int lddx);
/// dw is dense M×K: dw[i,k] = Σ_n dy[i,n]·x[k,n] (+ beta·dw) at kept entries, 0 elsewhere.
void ck_sparse_ref_sddmm_dense(int m, int k, int n, const float *mask, const float *dy,
                               int lddy, const float *x, int ldx, float beta,
                               float *dw);
/// Direct (no im2col) convolution forward/backward with the masked dense weight w ⊙ mask.
void ck_sparse_ref_conv2d_forward(const ck_conv_shape *shape, const float *w, const float *mask,
                                  const float *x, const float *bias, float *y);
/// dw is dense OIHW, zero outside the mask; any output may be NULL.
void ck_sparse_ref_conv2d_backward(const ck_conv_shape *shape, const float *w,
                                   const float *mask, const float *x, const float *dy,
                                   float *dx, float *dw, float *dbias);

#ifdef __cplusplus
}
#endif
#endif
