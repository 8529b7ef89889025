// Internal interface shared by the sparse kernel files (not part of the public API).
#ifndef CK_SPARSE_INTERNAL_H
#define CK_SPARSE_INTERNAL_H

#include "ck_sparse.h"

#include <stdint.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define CK_SP_X86 1
#include <immintrin.h>
#define CK_TGT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx2")))
#define CK_TGT_AVX2 __attribute__((target("avx2,fma")))
#else
#define CK_SP_X86 0
#endif

/// One column-panel CSR matrix (rows × cols). Entry j of segment (p, i) — row i, columns
/// [p·PANEL, (p+1)·PANEL) — is at j ∈ [ptr[p·rows + i], ptr[p·rows + i + 1]), its column is
/// p·PANEL + col[j] and its value val[j]. Segments are panel-major, so ptr is monotone and
/// ptr[npanels·rows] = nnz.
typedef struct ck_sp_jit ck_sp_jit;

typedef struct {
  int rows, cols, npanels;
  int32_t *ptr;        // npanels·rows + 1
  uint16_t *col;       // nnz (+ padding)
  float *val;          // nnz (+ padding)
  int64_t *row_prefix; // rows + 1: Σ nnz of rows < i (over all panels), for load balancing
  ck_sp_jit *jit;      // compiled forward product, built lazily (see ck_sp_jit_get)
  int jit_state;       // 0 not tried yet, 1 built, -1 not available for this matrix
} ck_sp_mat;

struct ck_sparse {
  ck_sp_mat a;    // W, M×K
  ck_sp_mat t;    // Wᵀ, K×M
  int32_t *tmap;  // t.val[j] = a.val[tmap[j]]
  int64_t nnz;
};

/// Threads a kernel may use here: 1 inside a parallel region, else omp_get_max_threads().
int ck_sp_threads(void);
/// Splits rows [0, rows) into `parts` contiguous ranges of about equal nonzeros (plus a small
/// per-row cost); bounds has parts + 1 entries.
void ck_sp_split_rows(const ck_sp_mat *a, int parts, int *bounds);
/// Splits [0, n) into `parts` ranges whose interior bounds are multiples of `align`.
void ck_sp_split_cols(int n, int parts, int align, int *bounds);
/// Aligned allocation (64 bytes) of `count` floats; free with free(). NULL when count == 0.
float *ck_sp_alloc_floats(size_t count);

/// Floats of scratch the SpMM worker needs for matrix a.
size_t ck_sp_spmm_scratch(const ck_sp_mat *a);
/// Single-threaded SpMM on rows [r0, r1) and columns [n0, n1) of the output (compiled for the
/// pattern when ck_sp_jit_get gives a product and the rows are whole blocks of it):
/// y[i, n] = Σ a[i,k]·x[k, n] + (bias ? bias[i] : 0) + beta·y[i, n] (y not read if beta == 0).
/// When xoff is not NULL, row k of x starts at x + xoff[k] instead of x + k·ldx (rows may
/// overlap: the direct convolution reads shifted windows of a padded image this way).
void ck_sp_spmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *x,
                       int ldx, const int64_t *xoff, const float *bias, float beta, float *y,
                       int ldy, float *scratch);
/// Parallel SpMM over all rows and n columns (threads split n, or rows when n is small).
void ck_sp_spmm_run(const ck_sp_mat *a, int n, const float *x, int ldx, const int64_t *xoff,
                    const float *bias, float beta, float *y, int ldy);

/// Floats of scratch the SDDMM worker needs for matrix a.
size_t ck_sp_sddmm_scratch(const ck_sp_mat *a);
/// Single-threaded SDDMM on rows [r0, r1) over columns [n0, n1):
/// acc[j] += Σ_n dy[i, n]·x[k, n] for every entry j = (i, k) with r0 <= i < r1.
/// dyoff/xoff, when not NULL, give row starts as for ck_sp_spmm_worker.
void ck_sp_sddmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *dy,
                        int lddy, const int64_t *dyoff, const float *x, int ldx,
                        const int64_t *xoff, float *acc, float *scratch);

/// Forward product compiled to machine code for one sparsity pattern (sparse_jit.c).
/// ck_sp_jit_get builds it on first use (thread safe) and returns NULL where it is not used:
/// no AVX-512 in effect, not x86-64, CK_SPARSE_JIT=0, too many nonzeros, or a failed build.
const ck_sp_jit *ck_sp_jit_get(const ck_sp_mat *a);
/// Drops the compiled product (when the format is freed).
void ck_sp_jit_reset(ck_sp_mat *a);
/// Copies a's values into the compiled product's value order (after a->val changed).
void ck_sp_jit_values_changed(ck_sp_mat *a);
/// Bytes held by a's compiled product (0 while it is not built).
size_t ck_sp_jit_bytes(const ck_sp_mat *a);
/// Floats of scratch ck_sp_jit_worker needs.
size_t ck_sp_jit_scratch(void);
/// Moves the interior row bounds of a split (parts + 1 entries) to the nearest starts of the
/// compiled product's row blocks, so every part can run compiled.
void ck_sp_jit_align_rows(const ck_sp_jit *j, int parts, int *bounds);
/// ck_sp_spmm_worker with the compiled product; returns 0 (nothing done) when r0 or r1 is not
/// the start of one of its row blocks (or the matrix end).
int ck_sp_jit_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x, int ldx,
                     const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
                     float *buf);

/// Instruction set in effect (2 AVX-512, 1 AVX2, 0 C).
int ck_sp_isa_now(void);

#endif
