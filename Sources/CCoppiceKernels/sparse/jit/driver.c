// Forward product Y = W·X compiled for one sparsity pattern (x86-64 with AVX-512): building,
// caching, running and freeing it. The instructions come from codegen.c (via encode.c).
//
// Why: the generic kernel (arch/x86/vec_kernels.h) must load one vector of X for every nonzero
// it multiplies, because the row a nonzero adds into is only known at run time. Here the
// pattern is turned into machine code, so the row is a register number: a block of up to 30
// rows of W keeps its 30 output vectors (16 columns each) in zmm0..zmm29 while the code walks X
// row by row; each X row segment is loaded once (zmm31) and multiplied into every row of the
// block that keeps that column, by one `vfmadd231ps acc, zmm31, [values]{1to16}` per nonzero. No
// index is read at run time and the weights stream in code order from a private copy of the
// values.
//
// Layout of the work: the rows of W are cut into blocks (≤ 30 rows, balanced), the columns of W
// (rows of X) into chunks of JIT_KCHUNK, and one small function is generated for every
// (chunk, block) segment. A call runs one segment on one 16-column tile:
//   init (zero, bias, or reload Y) → for each X row k of the chunk with nonzeros in the block:
//   load X[k, tile] (masked for a partial tile) and do the block's FMAs → store Y (masked).
// The driver packs, for a group of JIT_GROUP tiles, the chunk's X rows tile by tile into a
// contiguous scratch (64 bytes per row, so no cache-set conflicts whatever ldx is; the
// convolution's row-offset tables are read here too), then runs every block's segment over the
// group's tiles back to back, so the segment's code and values stay in L1 and X and Y in L2.
// While it computes, the X region of the next pack is prefetched to L2 a little per call.
//
// Windowed form (the direct convolution, whose X rows are overlapping windows of one padded
// image at given offsets): one chunk of all rows, each X row loaded at its offset as the load's
// displacement from the tile's column, so nothing is packed; built per offset table
// (ck_sp_jit_get_windowed), run over wide columns (ck_sp_jit_window_worker) or output rows
// straight into the compact layout (ck_sp_jit_window_rows).
//
// The code reads its pointers and strides from an argument block, so one compilation serves any
// ldx/ldy. It is built lazily by the first product that needs it (ck_sp_jit_get, under a lock),
// its value copy follows the format's values (ck_sp_jit_values_changed) and it is freed with the
// format. Where it cannot run (no AVX-512 in effect, not x86-64, executable memory refused,
// CK_SPARSE_JIT=0 in the environment) the generic kernel is used.
#include "sparse/jit/jit.h"

#include <string.h>

#if CK_JIT_AVAILABLE
#include <pthread.h>
#include <sys/mman.h>

// Larger patterns use the generic kernel: their code (~7.5 bytes per nonzero) no longer stays
// in the caches, and instruction fetch from memory makes the compiled product slower (measured:
// 4096×1024 at 50%, 2.1 M nonzeros, 1.18× dense vs 1.58× for the generic kernel; a tie at
// 0.84 M; 1024×1024 at 50%, 0.52 M, 1.78× vs 1.42×).
#define JIT_MAX_NNZ (1 << 20)

// ---------------------------------------------------------------------------------------------
// Build and free
// ---------------------------------------------------------------------------------------------

/// Frees j and everything it holds (NULL is allowed; members may be NULL).
static void jit_free(ck_sp_jit *j) {
  if (!j) return;
  if (j->code) munmap(j->code, j->code_bytes);
  free(j->seg);
  free(j->val);
  free(j->val_src);
  free(j->xoff);
  free(j);
}

/// j->val[q] := a->val[j->val_src[q]] for every value (parallel when there are many).
static void sync_values(ck_sp_jit *j, const ck_sp_mat *a) {
  const int64_t n = j->nnz;
  float *v = j->val;
  const int32_t *src = j->val_src;
  const float *av = a->val;
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads()) if (n > 65536)
  for (int64_t q = 0; q < n; q++) v[q] = av[src[q]];
}

/// The compiled product of a (rows, cols >= 1): packed (xoff NULL) or windowed with the row
/// offsets xoff (cols entries, copied); NULL when memory or executable memory is refused. The
/// code is written, then made read+execute (never writable and executable at once).
static ck_sp_jit *build_jit(const ck_sp_mat *a, const int64_t *xoff) {
  if (a->rows <= 0 || a->cols <= 0) return NULL;
  const int M = a->rows, K = a->cols;
  const int64_t nnz = a->ptr[(size_t)a->npanels * M];
  ck_sp_jit *j = calloc(1, sizeof *j);
  ck_jit_emitter e = {0};
  if (!j) return NULL;
  const int max_rows = xoff ? JIT_WINDOW_ROWS : JIT_ROWS;
  j->nblocks = (M + max_rows - 1) / max_rows;
  j->kchunk = xoff ? K : JIT_KCHUNK; // windowed: nothing is packed, so one chunk of all rows
  j->nchunks = (K + j->kchunk - 1) / j->kchunk;
  j->rows = M;
  j->cols = K;
  j->nnz = nnz;
  // (+1 / +16: an empty pattern still gets buffers, which its code never reads)
  j->seg = calloc((size_t)j->nblocks * j->nchunks, sizeof(jit_segment));
  j->val = ck_alloc_floats((size_t)nnz + 16);
  j->val_src = malloc(sizeof(int32_t) * ((size_t)nnz + 1));
  if (xoff) {
    j->xoff = malloc(sizeof(int64_t) * (size_t)K);
    if (!j->xoff) goto fail;
    memcpy(j->xoff, xoff, sizeof(int64_t) * (size_t)K);
  }
  if (!j->seg || !j->val || !j->val_src || ck_jit_generate(a, j, &e) != 0) goto fail;
  j->code_bytes = (e.n + 4095) & ~(size_t)4095;
  void *m = mmap(NULL, j->code_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) goto fail;
  j->code = m;
  memcpy(j->code, e.p, e.n);
  if (mprotect(j->code, j->code_bytes, PROT_READ | PROT_EXEC) != 0) goto fail;
  free(e.p);
  sync_values(j, a);
  return j;
fail:
  free(e.p);
  jit_free(j);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

/// Prefetching (to L2) of the X region the next pack will read — rows [k, k1) at column c0,
/// `bytes` per row — spread over the calls of the current region, `per` rows a call.
typedef struct {
  const float *x;
  const int64_t *xoff;
  int ldx, k, k1, c0, bytes, per;
} prefetcher;

/// Prefetches the next `per` rows of p's region (none once it is done). A hint only.
static void prefetch_some(prefetcher *p) {
  const int e = p->k + p->per < p->k1 ? p->k + p->per : p->k1;
  for (int k = p->k; k < e; k++) {
    const char *r = (const char *)((p->xoff ? p->x + p->xoff[k] : p->x + (size_t)k * p->ldx) + p->c0);
    for (int o = 0; o < p->bytes; o += 64) _mm_prefetch(r + o, _MM_HINT_T1);
  }
  p->k = e;
}

/// The compiled product's own packed layout: copies X rows [k0, k1), columns [g0, g1)
/// (g1 − g0 <= 16·JIT_GROUP), into per-tile blocks of JIT_KCHUNK rows × 16 floats — tile t at
/// buf + t·JIT_KCHUNK·16, row k at + (k − k0)·16 — a partial last tile zero padded. Row k of X
/// starts at x + xoff[k] when xoff is not NULL, else x + k·ldx. buf is 64-byte aligned.
CK_TGT_AVX512 static void pack_group(const float *x, int ldx, const int64_t *xoff, int k0, int k1,
                                     int g0, int g1, float *buf) {
  for (int k = k0; k < k1; k++) {
    const float *src = xoff ? x + xoff[k] : x + (size_t)k * ldx;
    float *d = buf + (size_t)(k - k0) * 16;
    for (int t = g0; t < g1; t += 16, d += (size_t)JIT_KCHUNK * 16) {
      const int w = g1 - t < 16 ? g1 - t : 16;
      _mm512_store_ps(d, _mm512_maskz_loadu_ps((__mmask16)((1u << w) - 1), src + t));
    }
  }
}

typedef void (*segment_fn)(const jit_args *);

/// Prefetches (to L2) the code and values of segment s of j. A hint only.
static void prefetch_segment(const ck_sp_jit *j, const jit_segment *s) {
  const char *c = (const char *)(j->code + s->code_off), *v = (const char *)(j->val + s->voff);
  const size_t code_bytes = s->code_bytes, val_bytes = sizeof(float) * (size_t)s->nnz;
  for (size_t o = 0; o < code_bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T1);
  for (size_t o = 0; o < val_bytes; o += 64) _mm_prefetch(v + o, _MM_HINT_T1);
}

/// Calls generated code. UBSan's function-type check reads a signature before the callee, which
/// generated code does not have (and the first segment starts a mapping), so it is off here.
#if defined(__clang__)
__attribute__((no_sanitize("function")))
#endif
static inline void call_segment(segment_fn fn, const jit_args *arg) {
  fn(arg);
}

/// Floats of scratch of ck_sp_jit_worker: one group of packed tiles; contract in sparse/internal.h.
size_t ck_sp_jit_scratch(void) { return (size_t)JIT_GROUP * JIT_KCHUNK * 16; }

/// The block of j starting at row r (0 <= r <= rows; nblocks for r = rows), or -1 when no block
/// starts there.
static int block_at(const ck_sp_jit *j, int r) {
  const int b = (int)(((int64_t)r * j->nblocks + j->rows - 1) / j->rows);
  return b <= j->nblocks && ck_jit_block_row(j, b) == r ? b : -1;
}

/// Moves split bounds to the nearest block starts; contract in sparse/internal.h.
void ck_sp_jit_align_rows(const ck_sp_jit *j, int parts, int *bounds) {
  for (int q = 1; q < parts; q++) {
    const int b = (int)(((int64_t)bounds[q] * j->nblocks + j->rows / 2) / j->rows);
    bounds[q] = ck_jit_block_row(j, b);
  }
}

/// y[i, c] := beta·y[i, c] + bias[i] (0 without bias) for rows [r0, r1), columns [n0, n1): a
/// product with beta ≠ 0 starts so, and its code then accumulates into y.
static void scale_and_bias(int r0, int r1, int n0, int n1, const float *bias, float beta,
                           float *y, int ldy) {
  for (int i = r0; i < r1; i++) {
    float *yr = y + (size_t)i * ldy;
    const float bi = bias ? bias[i] : 0.0f;
    for (int c = n0; c < n1; c++) yr[c] = beta * yr[c] + bi;
  }
}

/// Runs the compiled product on whole blocks [r0, r1) × columns [n0, n1); contract in
/// sparse/internal.h.
int ck_sp_jit_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x, int ldx,
                     const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
                     float *buf) {
  const int b0 = block_at(j, r0), b1 = block_at(j, r1);
  if (b0 < 0 || b1 < 0) return 0;
  if (b0 >= b1 || n0 >= n1) return 1;
  if (beta != 0.0f) scale_and_bias(r0, r1, n0, n1, bias, beta, y, ldy); // then accumulate
  const int first_mode = beta != 0.0f ? 2 : bias ? 1 : 0, span = 16 * JIT_GROUP;
  jit_args arg;
  arg.ldx_bytes = 64; // packed rows
  arg.ldy_bytes = (int64_t)ldy * 4;
  prefetcher pf = {x, xoff, ldx, 0, 0, 0, 0, 0};
  for (int g0 = n0; g0 < n1; g0 += span) {
    const int g1 = g0 + span < n1 ? g0 + span : n1, tiles = (g1 - g0 + 15) / 16;
    for (int c = 0; c < j->nchunks; c++) {
      const int k0 = c * JIT_KCHUNK, k1 = k0 + JIT_KCHUNK < j->cols ? k0 + JIT_KCHUNK : j->cols;
      pack_group(x, ldx, xoff, k0, k1, g0, g1, buf);
      // Next region: the next chunk of this group, or the first chunk of the next group.
      const int last = c + 1 == j->nchunks, ng0 = last ? g0 + span : g0;
      pf.k = last ? 0 : k1;
      pf.k1 = ng0 < n1 ? (pf.k + JIT_KCHUNK < j->cols ? pf.k + JIT_KCHUNK : j->cols) : pf.k;
      pf.c0 = ng0;
      pf.bytes = 4 * (n1 - ng0 < span ? n1 - ng0 : span);
      pf.per = (pf.k1 - pf.k + (b1 - b0) * tiles - 1) / ((b1 - b0) * tiles);
      for (int b = b0; b < b1; b++) {
        const jit_segment *s = &j->seg[(size_t)c * j->nblocks + b];
        const int mode = c == 0 ? first_mode : 2;
        // Large patterns do not stay in the caches: fetch the next segment's code and values
        // to L2 while this one runs (instruction fetch from memory would stall otherwise).
        if (b + 1 < b1) prefetch_segment(j, s + 1);
        if (mode == 2 && s->nnz == 0) continue;
        const segment_fn fn = (segment_fn)(void *)(j->code + s->code_off);
        arg.bias = bias ? bias + s->i0 : NULL;
        arg.val = j->val + s->voff;
        arg.mode = mode;
        for (int t = 0; t < tiles; t++) {
          const int c0 = g0 + 16 * t, w = g1 - c0 < 16 ? g1 - c0 : 16;
          arg.lane_mask = (int32_t)((1u << w) - 1);
          arg.x = buf + (size_t)t * JIT_KCHUNK * 16;
          arg.y = y + (size_t)s->i0 * ldy + c0;
          prefetch_some(&pf);
          call_segment(fn, &arg);
        }
      }
    }
  }
  return 1;
}

/// Blocks [b0, b1) of a windowed product over oh output rows of ow columns (input rows wp
/// floats apart, output rows ow apart): each tile is 16 columns of one output row (the last one
/// masked), tiles are taken in groups of JIT_WINDOW_GROUP, and each block runs over the group's
/// tiles back to back (its code and values stay in L1) while the group's X windows stay in L1
/// for the next block. mode as in jit_args.
static void run_window_tiles(const ck_sp_jit *j, int b0, int b1, int mode, int oh, int ow,
                             int wp, const float *x, const float *bias, float *y, int ldy) {
  const int tiles_per_row = (ow + 15) / 16, tiles = oh * tiles_per_row;
  jit_args arg;
  arg.ldx_bytes = 0; // unused: the row offsets are in the code
  arg.ldy_bytes = (int64_t)ldy * 4;
  arg.mode = mode;
  for (int t0 = 0; t0 < tiles; t0 += JIT_WINDOW_GROUP) {
    const int t1 = t0 + JIT_WINDOW_GROUP < tiles ? t0 + JIT_WINDOW_GROUP : tiles;
    for (int b = b0; b < b1; b++) {
      const jit_segment *s = &j->seg[b];
      if (b + 1 < b1) prefetch_segment(j, s + 1);
      if (mode == 2 && s->nnz == 0) continue;
      const segment_fn fn = (segment_fn)(void *)(j->code + s->code_off);
      arg.bias = bias ? bias + s->i0 : NULL;
      arg.val = j->val + s->voff;
      for (int t = t0; t < t1; t++) {
        const int oy = t / tiles_per_row, ox = 16 * (t % tiles_per_row);
        const int w = ow - ox < 16 ? ow - ox : 16;
        arg.lane_mask = (int32_t)((1u << w) - 1);
        arg.x = x + (size_t)oy * wp + ox;
        arg.y = y + (size_t)s->i0 * ldy + (size_t)oy * ow + ox;
        call_segment(fn, &arg);
      }
    }
  }
}

/// Runs a windowed product on whole blocks [r0, r1) × columns [n0, n1) (one "row" of n1 − n0
/// columns for run_window_tiles); contract in sparse/internal.h.
int ck_sp_jit_window_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x,
                            const float *bias, float beta, float *y, int ldy) {
  const int b0 = block_at(j, r0), b1 = block_at(j, r1);
  if (b0 < 0 || b1 < 0) return 0;
  if (b0 >= b1 || n0 >= n1) return 1;
  if (beta != 0.0f) scale_and_bias(r0, r1, n0, n1, bias, beta, y, ldy); // then accumulate
  run_window_tiles(j, b0, b1, beta != 0.0f ? 2 : bias ? 1 : 0, 1, n1 - n0, 0, x + n0, bias,
                   y + n0, ldy);
  return 1;
}

/// Runs a windowed product over an image's output rows, straight into the compact layout;
/// contract in sparse/internal.h.
int ck_sp_jit_window_rows(const ck_sp_jit *j, int oh, int ow, int wp, const float *x,
                          const float *bias, float *y, int ldy) {
  run_window_tiles(j, 0, j->nblocks, bias ? 1 : 0, oh, ow, wp, x, bias, y, ldy);
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Cache inside the format
// ---------------------------------------------------------------------------------------------

// Lazy construction: one global lock (builds are rare: once per pattern).
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;

/// 1 when CK_SPARSE_JIT is "0" or "off" in the environment.
static int disabled_by_env(void) {
  const char *v = getenv("CK_SPARSE_JIT");
  return v && (!strcmp(v, "0") || !strcmp(v, "off"));
}

/// Whether compiled products are made here; contract in sparse/internal.h.
int ck_sp_jit_enabled(void) { return ck_sp_isa_now() == CK_SP_ISA_AVX512 && !disabled_by_env(); }

/// The compiled product of a, built on first use under a lock; contract in sparse/internal.h.
const ck_sp_jit *ck_sp_jit_get(const ck_sp_mat *a_) {
  ck_sp_mat *a = (ck_sp_mat *)a_; // the compiled product is a cache inside the format
  if (ck_sp_isa_now() != CK_SP_ISA_AVX512) return NULL;
  int state = __atomic_load_n(&a->jit_state, __ATOMIC_ACQUIRE);
  if (state == 0) {
    pthread_mutex_lock(&build_lock);
    state = a->jit_state;
    if (state == 0) {
      const int64_t nnz = a->ptr[(size_t)a->npanels * a->rows];
      a->jit = (nnz <= JIT_MAX_NNZ && !disabled_by_env()) ? build_jit(a, NULL) : NULL;
      state = a->jit ? 1 : -1;
      __atomic_store_n(&a->jit_state, state, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&build_lock);
  }
  return state == 1 ? a->jit : NULL;
}

/// The windowed product of a for the offsets xoff, built on first use; contract in
/// sparse/internal.h. Readers look through the published products without the lock (a product
/// is complete before the count that publishes it is stored, and never changes or goes away
/// before the format is freed).
const ck_sp_jit *ck_sp_jit_get_windowed(const ck_sp_mat *a_, const int64_t *xoff) {
  ck_sp_mat *a = (ck_sp_mat *)a_;
  if (!ck_sp_jit_get(a)) return NULL; // the same conditions as the packed product
  const size_t bytes = sizeof(int64_t) * (size_t)a->cols;
  int n = __atomic_load_n(&a->jit_windows, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++)
    if (!memcmp(a->jit_window[i]->xoff, xoff, bytes)) return a->jit_window[i];
  for (int k = 0; k < a->cols; k++) // each load's displacement is 4·xoff[k], a signed 32 bits
    if (xoff[k] < 0 || xoff[k] > (INT32_MAX - 64) / 4) return NULL;
  const ck_sp_jit *found = NULL;
  pthread_mutex_lock(&build_lock);
  n = a->jit_windows;
  for (int i = 0; i < n && !found; i++)
    if (!memcmp(a->jit_window[i]->xoff, xoff, bytes)) found = a->jit_window[i];
  if (!found && n < CK_SP_JIT_WINDOWS) {
    ck_sp_jit *j = build_jit(a, xoff);
    if (j) {
      a->jit_window[n] = j;
      __atomic_store_n(&a->jit_windows, n + 1, __ATOMIC_RELEASE);
      found = j;
    }
  }
  pthread_mutex_unlock(&build_lock);
  return found;
}

/// Frees a's compiled products and lets them be built again; contract in sparse/internal.h.
void ck_sp_jit_reset(ck_sp_mat *a) {
  jit_free(a->jit);
  a->jit = NULL;
  a->jit_state = 0;
  for (int i = 0; i < a->jit_windows; i++) jit_free(a->jit_window[i]);
  a->jit_windows = 0;
}

/// Recopies a's values into code order; contract in sparse/internal.h.
void ck_sp_jit_values_changed(ck_sp_mat *a) {
  if (a->jit) sync_values(a->jit, a);
  for (int i = 0; i < a->jit_windows; i++) sync_values(a->jit_window[i], a);
}

/// Bytes held by one compiled product.
static size_t jit_bytes(const ck_sp_jit *j) {
  return sizeof *j + j->code_bytes + (sizeof(float) + sizeof(int32_t)) * (size_t)j->nnz +
         sizeof(jit_segment) * (size_t)j->nblocks * j->nchunks +
         (j->xoff ? sizeof(int64_t) * (size_t)j->cols : 0);
}

/// Bytes held by a's compiled products; contract in sparse/internal.h.
size_t ck_sp_jit_bytes(const ck_sp_mat *a) {
  size_t b = a->jit ? jit_bytes(a->jit) : 0;
  for (int i = 0; i < a->jit_windows; i++) b += jit_bytes(a->jit_window[i]);
  return b;
}

#else // no JIT on this platform: ck_sp_jit_get never gives a product, the rest is never used


const ck_sp_jit *ck_sp_jit_get(const ck_sp_mat *a) {
  (void)a;
  return NULL;
}
void ck_sp_jit_reset(ck_sp_mat *a) { (void)a; }
void ck_sp_jit_values_changed(ck_sp_mat *a) { (void)a; }
size_t ck_sp_jit_bytes(const ck_sp_mat *a) {
  (void)a;
  return 0;
}
size_t ck_sp_jit_scratch(void) { return 0; }
int ck_sp_jit_enabled(void) { return 0; }
const ck_sp_jit *ck_sp_jit_get_windowed(const ck_sp_mat *a, const int64_t *xoff) {
  (void)a, (void)xoff;
  return NULL;
}
int ck_sp_jit_window_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x,
                            const float *bias, float beta, float *y, int ldy) {
  (void)j, (void)r0, (void)r1, (void)n0, (void)n1, (void)x, (void)bias, (void)beta, (void)y;
  (void)ldy;
  return 0;
}
int ck_sp_jit_window_rows(const ck_sp_jit *j, int oh, int ow, int wp, const float *x,
                          const float *bias, float *y, int ldy) {
  (void)j, (void)oh, (void)ow, (void)wp, (void)x, (void)bias, (void)y, (void)ldy;
  return 0;
}
void ck_sp_jit_align_rows(const ck_sp_jit *j, int parts, int *bounds) {
  (void)j, (void)parts, (void)bounds;
}
int ck_sp_jit_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x, int ldx,
                     const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
                     float *buf) {
  (void)j, (void)r0, (void)r1, (void)n0, (void)n1, (void)x, (void)ldx, (void)xoff, (void)bias;
  (void)beta, (void)y, (void)ldy, (void)buf;
  return 0;
}
#endif
