// Internal interface shared by the sparse kernel files (not part of the public API).
//
// Layout of sparse/: format.c (the format), spmm.c / sddmm.c / conv.c (the products, threaded),
// arch/ (one file per instruction set behind the table of isa.c), jit/ (the forward product
// compiled for a pattern), parallel.c (work splitting), dispatch.c (dense/sparse cost model),
// reference.c (scalar references for the tests).
#ifndef CK_SPARSE_INTERNAL_H
#define CK_SPARSE_INTERNAL_H

#include "ck_clones.h"
#include "ck_jobs.h"
#include "ck_sparse.h"

#include <stdint.h>
#include <stdio.h>
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

#if defined(__aarch64__) && defined(__ARM_NEON)
#define CK_SP_ARM 1
#else
#define CK_SP_ARM 0
#endif

/// Instruction sets, as numbered by ck_sparse_isa. A CPU has C and either the x86 sets up to
/// the best it supports or NEON (every AArch64 CPU); forcing a lower set on AArch64 gives C.
enum { CK_SP_ISA_C = 0, CK_SP_ISA_AVX2 = 1, CK_SP_ISA_AVX512 = 2, CK_SP_ISA_NEON = 3 };

/// Weights with fewer columns than this stay dense (ck_sparse_prefer, and no dense convolution
/// runs on the direct kernels): each output then sums a handful of products, so the sparse
/// format's per-row overhead eats the saving. Measured with `coppice bench kernels` on the cnn's
/// conv1 (K = 9): 0.73–1.08× of dense at 50–98% sparsity.
#define CK_SP_MIN_SPARSE_COLUMNS 16

/// Blocking of the vector kernels, shared with the scratch sizes (ck_sp_*_scratch). A packed
/// row holds one column tile; the tiles below are the widest of any instruction set.
#define CK_SP_SPMM_KCHUNK 1024 // rows of X the SpMM packs at once (a multiple of the panel)
#define CK_SP_SPMM_TILE 64     // SpMM column tile, floats (4 AVX-512 vectors)
#define CK_SP_SDDMM_KCHUNK 512 // rows of X the SDDMM packs at once (a multiple of the panel)
#define CK_SP_SDDMM_TILE 128   // SDDMM column tile, floats (8 AVX-512 vectors)

typedef struct ck_sp_jit ck_sp_jit;

#define CK_SP_JIT_WINDOWS 4 // windowed compiled products kept per matrix (one per row-offset table)

/// One column-panel CSR matrix (rows × cols). Entry j of segment (p, i) — row i, columns
/// [p·PANEL, (p+1)·PANEL) — is at j ∈ [ptr[p·rows + i], ptr[p·rows + i + 1]), its column is
/// p·PANEL + col[j] and its value val[j]. Segments are panel-major, so ptr is monotone and
/// ptr[npanels·rows] = nnz.
typedef struct {
  int rows, cols, npanels;
  int32_t *ptr;        // npanels·rows + 1
  uint16_t *col;       // nnz (+ padding)
  float *val;          // nnz (+ padding)
  int64_t *row_prefix; // rows + 1: Σ nnz of rows < i (over all panels), for load balancing
  ck_sp_jit *jit;      // compiled forward product, built lazily (see ck_sp_jit_get)
  int jit_state;       // 0 not tried yet, 1 built, -1 not available for this matrix
  ck_sp_jit *jit_window[CK_SP_JIT_WINDOWS]; // windowed products (ck_sp_jit_get_windowed)
  int jit_windows;     // how many of jit_window are built (published with release order)
} ck_sp_mat;

typedef struct ck_sp_flip ck_sp_flip;

struct ck_sparse {
  ck_sp_mat a;    // W, M×K
  ck_sp_mat t;    // Wᵀ, K×M
  int32_t *tmap;  // t.val[j] = a.val[tmap[j]]
  int64_t nnz;
  uint64_t values_version; // incremented whenever the values change
  ck_sp_flip *flip;        // the convolution input gradient's weight (conv_flip.c), or NULL
};

/// The smaller of a and b.
static inline int ck_sp_imin(int a, int b) { return a < b ? a : b; }

// A pointer the compiler must take as it is, in one register: the vector loads from it then use
// base + displacement addresses. Computed as `base + col[j]·stride`, the compiler keeps base and
// the scaled index apart and addresses base + index + displacement, which Intel cores split
// into two micro-ops per load (an FMA with a memory operand no longer fuses). Measured on the
// SDDMM's row loop (the cnn's conv2/conv3 weight-gradient shapes at 80–95%, one thread, A and B
// alternating in one process): 1.20–1.30× faster. Other compilers: nothing.
#if defined(__GNUC__) || defined(__clang__)
#define CK_SP_OPAQUE(p) __asm__("" : "+r"(p))
#else
#define CK_SP_OPAQUE(p) ((void)0)
#endif

/// Index of the calling thread in its OpenMP team (0 without OpenMP).
static inline int ck_sp_thread_num(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Threads in the calling thread's OpenMP team (1 without OpenMP).
static inline int ck_sp_team_size(void) {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// ---------------------------------------------------------------------------------------------
// Work splitting (parallel.c)
// ---------------------------------------------------------------------------------------------

/// Threads a kernel may use here: 1 inside a parallel region, else omp_get_max_threads().
int ck_sp_threads(void);

/// Splits rows [0, rows) into `parts` contiguous ranges of about equal nonzeros (plus a small
/// per-row cost); bounds has parts + 1 entries.
void ck_sp_split_rows(const ck_sp_mat *a, int parts, int *bounds);
/// Splits [0, n) into `parts` ranges whose interior bounds are multiples of `align`.
void ck_sp_split_cols(int n, int parts, int align, int *bounds);

// ---------------------------------------------------------------------------------------------
// Products (spmm.c, sddmm.c)
// ---------------------------------------------------------------------------------------------

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

/// Lanes of the windowed SDDMM's per-entry accumulators (the widest vector of any instruction
/// set; narrower sets use the first lanes and leave the rest as they are).
#define CK_SP_LANES 16

/// W's kept entries listed for the windowed SDDMM in segments: segment s is entries
/// [start[s], start[s + 1]) of row row[s], each with its position in value order (value) and
/// the start of its X row (off, as xoff of ck_sp_sddmm_worker: a window of the padded image).
/// Segments go by blocks of columns, and by row within a block, so that the X rows one block
/// reads stay in cache while every row's entries in it go by.
typedef struct {
  int segments;
  int32_t *row;   // segments
  int32_t *start; // segments + 1
  int32_t *value; // nnz
  int64_t *off;   // nnz
} ck_sp_window_entries;

/// Builds the segments of W's entries (a, all panels) by blocks of block_cols columns (≥ 1)
/// with X row k at xoff[k]; 0, or -1 when out of memory (e then holds nothing to free). Freed
/// with ck_sp_window_entries_free.
int ck_sp_window_entries_make(const ck_sp_mat *a, const int64_t *xoff, int block_cols,
                              ck_sp_window_entries *e);
/// Frees a table made by ck_sp_window_entries_make.
void ck_sp_window_entries_free(ck_sp_window_entries *e);

// ---------------------------------------------------------------------------------------------
// Instruction set variants (isa.c, arch/)
// ---------------------------------------------------------------------------------------------

/// The single-threaded kernels of one instruction set. Both take arguments exactly as (and do
/// what) ck_sp_spmm_worker / ck_sp_sddmm_worker say, with r0 < r1 and n0 < n1, except that
/// spmm never uses the compiled product; scratch holds ck_sp_spmm_scratch / ck_sp_sddmm_scratch
/// floats, 64-byte aligned.
typedef struct {
  void (*spmm)(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *x, int ldx,
               const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
               float *scratch);
  void (*sddmm)(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *dy, int lddy,
                const int64_t *dyoff, const float *x, int ldx, const int64_t *xoff, float *acc,
                float *scratch);
  /// The windowed SDDMM of `images` images: for every entry e of row i in the table,
  /// lanes[value[e]·CK_SP_LANES + l] += Σ_b Σ_{n ≡ l} dy_bi[n]·x_b[off[e] + n] over n in
  /// [0, nw), lane l of the instruction set's vectors (n mod its width), with x_b = x + b·x_step
  /// and dy_bi = dy + b·dy_step + (dyoff ? dyoff[i] : i·lddy). The accumulators stay per lane
  /// across calls (no horizontal sum per image); ck_sp_lanes_sum adds them up at the end.
  void (*sddmm_windows)(const ck_sp_window_entries *e, int images, int nw, const float *dy,
                        int lddy, const int64_t *dyoff, size_t dy_step, const float *x,
                        size_t x_step, float *lanes);
} ck_sp_isa_kernels;

/// acc[j] += Σ_l lanes[j·CK_SP_LANES + l] for j < n (the lanes in order, a fixed sum order).
void ck_sp_lanes_sum(int64_t n, const float *lanes, float *acc);

/// Portable C (arch/portable.c), AVX2 (arch/x86/avx2.c), AVX-512 (arch/x86/avx512.c), NEON
/// (arch/arm/neon.c).
extern const ck_sp_isa_kernels ck_sp_kernels_portable;
#if CK_SP_X86
extern const ck_sp_isa_kernels ck_sp_kernels_avx2;
extern const ck_sp_isa_kernels ck_sp_kernels_avx512;
#endif
#if CK_SP_ARM
extern const ck_sp_isa_kernels ck_sp_kernels_neon;
#endif

/// Instruction set in effect (CK_SP_ISA_*): the best the CPU has, or lower if forced (by
/// ck_sparse_set_isa, or by COPPICE_ISA in the environment when the kernels first run).
int ck_sp_isa_now(void);
/// The kernels of the instruction set in effect.
const ck_sp_isa_kernels *ck_sp_kernels(void);

// ---------------------------------------------------------------------------------------------
// The convolution input gradient's weight (conv_flip.c)
// ---------------------------------------------------------------------------------------------

/// W′ of a convolution weight s (O × C·kh·kw): C × O·kh·kw with W′[c, (o, kh−1−i, kw−1−j)] =
/// W[o, (c, i, j)], so that the input gradient of a stride-1 convolution with padding P is the
/// convolution of dY by W′ with padding kh−1−P. Built on first use and kept in s (thread safe);
/// its values are brought up to date with s's here. NULL when out of memory, when s has 2^24
/// or more nonzeros, or when s was first asked for another kernel shape.
const ck_sparse *ck_sp_conv_flipped(ck_sparse *s, int kh, int kw);
/// Frees a W′ (with its format; NULL allowed).
void ck_sp_flip_free(ck_sp_flip *fl);
/// Bytes held by a W′ (0 for NULL).
size_t ck_sp_flip_bytes(const ck_sp_flip *fl);

// ---------------------------------------------------------------------------------------------
// Compiled forward product (jit/)
// ---------------------------------------------------------------------------------------------

/// Forward product compiled to machine code for one sparsity pattern (jit/driver.c).
/// ck_sp_jit_get builds it on first use (thread safe) and returns NULL where it is not used:
/// no AVX-512 in effect, not x86-64, CK_SPARSE_JIT=0, too many nonzeros, or a failed build.
const ck_sp_jit *ck_sp_jit_get(const ck_sp_mat *a);
/// 1 when compiled products are made at all (AVX-512 in effect on x86-64, CK_SPARSE_JIT not 0).
int ck_sp_jit_enabled(void);
/// Drops the compiled product (when the format is freed).
void ck_sp_jit_reset(ck_sp_mat *a);
/// Copies a's values into the compiled product's value order (after a->val changed).
void ck_sp_jit_values_changed(ck_sp_mat *a);
/// Bytes held by a's compiled product (0 while it is not built).
size_t ck_sp_jit_bytes(const ck_sp_mat *a);
/// Floats of scratch ck_sp_jit_worker needs.
size_t ck_sp_jit_scratch(void);
/// The compiled product of a with the X row offsets xoff (a->cols entries, each X row at
/// x + xoff[k]) built into its loads, so it reads the rows where they are — the direct
/// convolution's overlapping windows of a padded image — instead of packing them first. Built
/// on first use per offset table (thread safe, up to CK_SP_JIT_WINDOWS tables per matrix);
/// NULL where ck_sp_jit_get would give none, when the offsets do not fit a 32-bit displacement,
/// or when the matrix already has CK_SP_JIT_WINDOWS other tables.
const ck_sp_jit *ck_sp_jit_get_windowed(const ck_sp_mat *a, const int64_t *xoff);
/// ck_sp_spmm_worker with a windowed product (x: the base the offsets are relative to); returns
/// 0 (nothing done) when r0 or r1 is not the start of one of its row blocks (or the matrix end).
int ck_sp_jit_window_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x,
                            const float *bias, float beta, float *y, int ldy);
/// A windowed product over the output rows of one image: Y[i, oy·ow + ox] (row stride ldy) =
/// Σ_k a[i,k]·x[xoff[k] + oy·wp + ox] + bias[i] for oy < oh, ox < ow — the direct convolution
/// computed straight into the compact output (x: the padded image, wp its row width). Returns
/// 1 (always, with the compiled product; 0 where there is none).
int ck_sp_jit_window_rows(const ck_sp_jit *j, int oh, int ow, int wp, const float *x,
                          const float *bias, float *y, int ldy);
/// Moves the interior row bounds of a split (parts + 1 entries) to the nearest starts of the
/// compiled product's row blocks, so every part can run compiled.
void ck_sp_jit_align_rows(const ck_sp_jit *j, int parts, int *bounds);
/// ck_sp_spmm_worker with the compiled product; returns 0 (nothing done) when r0 or r1 is not
/// the start of one of its row blocks (or the matrix end).
int ck_sp_jit_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x, int ldx,
                     const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
                     float *buf);

#endif
