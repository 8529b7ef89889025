// Forward product Y = W·X compiled for one sparsity pattern (x86-64 with AVX-512).
//
// Why: the generic kernel (sparse_spmm.c) must load one vector of X for every nonzero it
// multiplies, because the row a nonzero adds into is only known at run time. Here the pattern is
// turned into machine code, so the row is a register number: a block of up to 30 rows of W keeps
// its 30 output vectors (16 columns each) in zmm0..zmm29 while the code walks X row by row; each
// X row segment is loaded once (zmm31) and multiplied into every row of the block that keeps that
// column, by one `vfmadd231ps acc, zmm31, [values]{1to16}` per nonzero. No index is read at run
// time and the weights stream in code order from a private copy of the values.
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
// The code reads its pointers and strides from an argument block, so one compilation serves any
// ldx/ldy. It is built lazily by the first product that needs it (ck_sp_jit_get, under a lock),
// its value copy follows the format's values (ck_sp_jit_values_changed) and it is freed with the
// format. Where it cannot run (no AVX-512 in effect, not x86-64, executable memory refused,
// CK_SPARSE_JIT=0 in the environment) the generic kernel is used. The instruction encodings
// below are checked by the kernel tests, which compare every product with the scalar reference.
#include "sparse/internal.h"

#include <string.h>

#if CK_SP_X86 && defined(__x86_64__) && !defined(_WIN32)
#define CK_JIT_AVAILABLE 1
#include <pthread.h>
#include <sys/mman.h>
#else
#define CK_JIT_AVAILABLE 0
#endif

#ifndef JIT_ROWS
#define JIT_ROWS 30 // accumulator registers zmm0..zmm29 (zmm31 holds the X row)
#endif
#ifndef JIT_KCHUNK
#define JIT_KCHUNK 256 // rows of X per segment (a multiple of CK_SPARSE_PANEL)
#endif
#ifndef JIT_GROUP
#define JIT_GROUP 16 // 16-column tiles packed together and run segment by segment
#endif
// Larger patterns use the generic kernel: their code (~7.5 bytes per nonzero) no longer stays
// in the caches, and instruction fetch from memory makes the compiled product slower (measured:
// 4096×1024 at 50%, 2.1 M nonzeros, 1.18× dense vs 1.58× for the generic kernel; a tie at
// 0.84 M; 1024×1024 at 50%, 0.52 M, 1.78× vs 1.42×).
#define JIT_MAX_NNZ (1 << 20)

/// Arguments of a generated segment function (read by its prologue; offsets are fixed below).
typedef struct {
  const float *x;     // 0: X row k0 of the chunk, at the tile's first column
  float *y;           // 8: Y row i0 of the block, at the tile's first column
  const float *bias;  // 16: bias + i0 (mode 1 only)
  const float *val;   // 24: the segment's values in code order
  int64_t ldx_bytes;  // 32
  int64_t ldy_bytes;  // 40
  int32_t mode;       // 48: 0 zero, 1 bias, 2 accumulate into Y
  int32_t lane_mask;  // 52: 16-bit mask of the tile's valid columns
} jit_args;
_Static_assert(sizeof(void *) != 8 || (__builtin_offsetof(jit_args, ldx_bytes) == 32 &&
                                       __builtin_offsetof(jit_args, lane_mask) == 52),
               "the generated prologue reads jit_args at fixed offsets");

typedef struct {
  int i0, k0;        // the block starts at row i0, the chunk at X row k0
  int64_t nnz, voff; // nonzeros of the segment and their offset in the code-order values
  size_t code_off;   // entry point in the code buffer
  size_t code_bytes; // length of its code
} jit_segment;

struct ck_sp_jit {
  int nblocks, nchunks, rows, cols;
  jit_segment *seg;  // nchunks × nblocks, chunk-major
  float *val;        // nnz values in code order
  int32_t *val_src;  // val[q] = a->val[val_src[q]]
  int64_t nnz;
  uint8_t *code;
  size_t code_bytes;
};

#if CK_JIT_AVAILABLE

// ---------------------------------------------------------------------------------------------
// A minimal x86-64 encoder: only the instructions the segments need.
// ---------------------------------------------------------------------------------------------
enum { RAX = 0, RCX = 1, RDX = 2, RSI = 6, RDI = 7, R8 = 8, R9 = 9, R10 = 10, R11 = 11 };

typedef struct {
  uint8_t *p; // grows as code is emitted
  size_t n, cap;
  int failed; // out of memory: the rest is dropped
} emitter;

static void b1(emitter *e, uint8_t v) {
  if (e->n == e->cap) {
    uint8_t *grown = e->failed ? NULL : realloc(e->p, e->cap ? 2 * e->cap : 65536);
    if (!grown) {
      e->failed = 1;
      return;
    }
    e->p = grown;
    e->cap = e->cap ? 2 * e->cap : 65536;
  }
  e->p[e->n++] = v;
}
static void b4(emitter *e, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++) b1(e, (uint8_t)(u >> (8 * i)));
}

// ModRM (+ disp) for [base + disp]; `scale` is the EVEX disp8 compression factor (1 for legacy).
static void mem(emitter *e, int reg, int base, int32_t disp, int scale) {
  const int r = (reg & 7) << 3, b = base & 7; // bases used here are never rsp/r12
  if (disp == 0 && b != 5) {
    b1(e, (uint8_t)(r | b));
  } else if (disp % scale == 0 && disp / scale >= -128 && disp / scale <= 127) {
    b1(e, (uint8_t)(0x40 | r | b));
    b1(e, (uint8_t)(int8_t)(disp / scale));
  } else {
    b1(e, (uint8_t)(0x80 | r | b));
    b4(e, disp);
  }
}

// EVEX prefix for a 512-bit instruction. reg, v: zmm 0..31 (v = 0 when unused); rm: a zmm when
// rm_zmm, else a general base register; map 1 = 0F, 2 = 0F38; pp 0 = none, 1 = 66.
static void evex(emitter *e, int map, int pp, int reg, int v, int rm, int rm_zmm, int bcast,
                 int zero, int kmask) {
  const int x_bit = rm_zmm ? (rm >> 4) & 1 : 0;
  b1(e, 0x62);
  b1(e, (uint8_t)((!((reg >> 3) & 1)) << 7 | (!x_bit) << 6 | (!((rm >> 3) & 1)) << 5 |
                  (!((reg >> 4) & 1)) << 4 | map));
  b1(e, (uint8_t)(((~v) & 15) << 3 | 1 << 2 | pp));
  b1(e, (uint8_t)(zero << 7 | 2 << 5 | bcast << 4 | (!((v >> 4) & 1)) << 3 | kmask));
}

static void rex(emitter *e, int w, int reg, int base) {
  const int v = 0x40 | w << 3 | ((reg >> 3) & 1) << 2 | ((base >> 3) & 1);
  if (v != 0x40) b1(e, (uint8_t)v);
}

// vmovups zmm{k1}{z}, [base + disp]
static void load_zmm(emitter *e, int z, int base, int32_t disp) {
  evex(e, 1, 0, z, 0, base, 0, 0, 1, 1);
  b1(e, 0x10);
  mem(e, z, base, disp, 64);
}
// vmovups [base]{k1}, zmm
static void store_zmm(emitter *e, int z, int base) {
  evex(e, 1, 0, z, 0, base, 0, 0, 0, 1);
  b1(e, 0x11);
  mem(e, z, base, 0, 64);
}
// vfmadd231ps zmm_acc, zmm_x, dword [base + disp]{1to16}
static void fma_bcast(emitter *e, int acc, int x, int base, int32_t disp) {
  evex(e, 2, 1, acc, x, base, 0, 1, 0, 0);
  b1(e, 0xB8);
  mem(e, acc, base, disp, 4);
}
// vbroadcastss zmm, dword [base + disp]
static void bcast(emitter *e, int z, int base, int32_t disp) {
  evex(e, 2, 1, z, 0, base, 0, 0, 0, 0);
  b1(e, 0x18);
  mem(e, z, base, disp, 4);
}
// vpxord zmm, zmm, zmm
static void zero_zmm(emitter *e, int z) {
  evex(e, 1, 1, z, z, z, 1, 0, 0, 0);
  b1(e, 0xEF);
  b1(e, (uint8_t)(0xC0 | (z & 7) << 3 | (z & 7)));
}
// mov r64, [base + disp8]   (w = 0: mov r32)
static void mov_load(emitter *e, int w, int dst, int base, int32_t disp) {
  rex(e, w, dst, base);
  b1(e, 0x8B);
  mem(e, dst, base, disp, 1);
}
// add dst, src (64-bit)
static void add_rr(emitter *e, int dst, int src) {
  rex(e, 1, src, dst);
  b1(e, 0x01);
  b1(e, (uint8_t)(0xC0 | (src & 7) << 3 | (dst & 7)));
}
// mov dst, src (64-bit)
static void mov_rr(emitter *e, int dst, int src) {
  rex(e, 1, src, dst);
  b1(e, 0x89);
  b1(e, (uint8_t)(0xC0 | (src & 7) << 3 | (dst & 7)));
}
// imul dst, src, imm32 (64-bit)
static void imul_rri(emitter *e, int dst, int src, int32_t imm) {
  rex(e, 1, dst, src);
  b1(e, 0x69);
  b1(e, (uint8_t)(0xC0 | (dst & 7) << 3 | (src & 7)));
  b4(e, imm);
}
// add dst, imm32 (64-bit)
static void add_ri(emitter *e, int dst, int32_t imm) {
  rex(e, 1, 0, dst);
  b1(e, 0x81);
  b1(e, (uint8_t)(0xC0 | (dst & 7)));
  b4(e, imm);
}
// jcc/jmp rel32 with a placeholder; returns the position of the displacement.
static size_t jump(emitter *e, int cc) { // cc < 0: jmp
  if (cc < 0) {
    b1(e, 0xE9);
  } else {
    b1(e, 0x0F);
    b1(e, (uint8_t)(0x80 | cc));
  }
  size_t at = e->n;
  b4(e, 0);
  return at;
}
static void patch(emitter *e, size_t at) { // the jump at `at` lands here
  if (e->failed) return;
  int32_t rel = (int32_t)(e->n - (at + 4));
  memcpy(e->p + at, &rel, 4);
}

enum { CC_B = 2, CC_E = 4 };

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

// Entries of one segment, ordered by X row then block row: row-in-block and value source.
typedef struct {
  int count;       // entries
  int *k_start;    // per X row of the chunk: first entry (chunk rows + 1)
  uint8_t *row;    // row in block per entry
  int32_t *src;    // index into a->val per entry
} seg_entries;

// Collects the entries of rows [i0, i0 + rows) in X rows [k0, k1) of a (panel CSR), bucketed by
// X row (counting sort), rows ascending inside a bucket.
static void collect(const ck_sp_mat *a, int i0, int rows, int k0, int k1, seg_entries *s) {
  const int M = a->rows, P = CK_SPARSE_PANEL, p0 = k0 / P, p1 = (k1 + P - 1) / P;
  const int nk = k1 - k0;
  memset(s->k_start, 0, sizeof(int) * (size_t)(nk + 1));
  for (int r = 0; r < rows; r++)
    for (int p = p0; p < p1; p++) {
      const size_t sg = (size_t)p * M + i0 + r;
      for (int32_t j = a->ptr[sg]; j < a->ptr[sg + 1]; j++) s->k_start[p * P + a->col[j] - k0 + 1]++;
    }
  for (int k = 0; k < nk; k++) s->k_start[k + 1] += s->k_start[k];
  s->count = s->k_start[nk];
  // Fill with a moving cursor per X row (k_start shifted back at the end).
  for (int r = 0; r < rows; r++)
    for (int p = p0; p < p1; p++) {
      const size_t sg = (size_t)p * M + i0 + r;
      for (int32_t j = a->ptr[sg]; j < a->ptr[sg + 1]; j++) {
        const int at = s->k_start[p * P + a->col[j] - k0]++;
        s->row[at] = (uint8_t)r;
        s->src[at] = j;
      }
    }
  for (int k = nk; k > 0; k--) s->k_start[k] = s->k_start[k - 1];
  s->k_start[0] = 0;
}

// Emits one segment function; appends its values' sources to val_src.
static void emit_segment(emitter *e, const seg_entries *s, int rows, int nk, int32_t *val_src) {
  // Prologue: the lane mask first (through eax), then the pointers and strides.
  mov_load(e, 0, RAX, RDI, 52);
  b1(e, 0xC5); b1(e, 0xF8); b1(e, 0x92); b1(e, 0xC8); // kmovw k1, eax
  mov_load(e, 1, RAX, RDI, 0);
  mov_load(e, 1, RSI, RDI, 8);
  mov_load(e, 1, RDX, RDI, 16);
  mov_load(e, 1, R9, RDI, 24);
  mov_load(e, 1, R10, RDI, 32);
  mov_load(e, 1, R11, RDI, 40);
  mov_load(e, 0, RCX, RDI, 48);
  // Init by mode: 0 zero, 1 bias, 2 reload Y.
  b1(e, 0x83); b1(e, 0xF9); b1(e, 1); // cmp ecx, 1
  const size_t to_zero = jump(e, CC_B), to_bias = jump(e, CC_E);
  mov_rr(e, R8, RSI);
  for (int r = 0; r < rows; r++) {
    load_zmm(e, r, R8, 0);
    if (r + 1 < rows) add_rr(e, R8, R11);
  }
  const size_t from_load = jump(e, -1);
  patch(e, to_bias);
  for (int r = 0; r < rows; r++) bcast(e, r, RDX, 4 * r);
  const size_t from_bias = jump(e, -1);
  patch(e, to_zero);
  for (int r = 0; r < rows; r++) zero_zmm(e, r);
  patch(e, from_load);
  patch(e, from_bias);
  // Body: X rows with entries, in order; rax walks X, r9 walks the values.
  int at_k = 0;
  int64_t vbase = 0;
  for (int k = 0; k < nk; k++) {
    const int q0 = s->k_start[k], q1 = s->k_start[k + 1];
    if (q0 == q1) continue;
    if (k - at_k == 1)
      add_rr(e, RAX, R10);
    else if (k > at_k) {
      imul_rri(e, R8, R10, k - at_k);
      add_rr(e, RAX, R8);
    }
    at_k = k;
    load_zmm(e, 31, RAX, 0);
    for (int q = q0; q < q1; q++) {
      if (q - vbase >= 128) {
        add_ri(e, R9, 512);
        vbase += 128;
      }
      fma_bcast(e, s->row[q], 31, R9, (int32_t)(4 * (q - vbase)));
      val_src[q] = s->src[q];
    }
  }
  // Store.
  mov_rr(e, R8, RSI);
  for (int r = 0; r < rows; r++) {
    store_zmm(e, r, R8);
    if (r + 1 < rows) add_rr(e, R8, R11);
  }
  b1(e, 0xC5); b1(e, 0xF8); b1(e, 0x77); // vzeroupper
  b1(e, 0xC3);                           // ret
}

static void sync_values(ck_sp_jit *j, const ck_sp_mat *a);

static void jit_free(ck_sp_jit *j);

// Row where block b starts: nblocks blocks of ⌊rows/nblocks⌋ or ⌈rows/nblocks⌉ rows.
static int block_row(const ck_sp_jit *j, int b) { return (int)((int64_t)j->rows * b / j->nblocks); }

static ck_sp_jit *build_jit(const ck_sp_mat *a) {
  if (a->rows <= 0 || a->cols <= 0) return NULL;
  const int M = a->rows, K = a->cols;
  const int nblocks = (M + JIT_ROWS - 1) / JIT_ROWS, nchunks = (K + JIT_KCHUNK - 1) / JIT_KCHUNK;
  const int64_t nnz = a->ptr[(size_t)a->npanels * M];
  ck_sp_jit *j = calloc(1, sizeof *j);
  seg_entries s = {0};
  emitter e = {0};
  if (!j) return NULL;
  j->nblocks = nblocks;
  j->nchunks = nchunks;
  j->rows = M;
  j->cols = K;
  j->nnz = nnz;
  // (+1 / +16: an empty pattern still gets buffers, which its code never reads)
  j->seg = calloc((size_t)nblocks * nchunks, sizeof(jit_segment));
  j->val = ck_sp_alloc_floats((size_t)nnz + 16);
  j->val_src = malloc(sizeof(int32_t) * ((size_t)nnz + 1));
  s.k_start = malloc(sizeof(int) * (JIT_KCHUNK + 1));
  s.row = malloc((size_t)nnz + 1);
  s.src = malloc(sizeof(int32_t) * ((size_t)nnz + 1));
  if (!j->seg || !j->val || !j->val_src || !s.k_start || !s.row || !s.src)
    goto fail;
  int64_t voff = 0;
  for (int c = 0; c < nchunks; c++) {
    const int k0 = c * JIT_KCHUNK, k1 = k0 + JIT_KCHUNK < K ? k0 + JIT_KCHUNK : K;
    for (int b = 0; b < nblocks; b++) {
      const int i0 = block_row(j, b), i1 = block_row(j, b + 1);
      jit_segment *g = &j->seg[(size_t)c * nblocks + b];
      collect(a, i0, i1 - i0, k0, k1, &s);
      while (e.n % 16) b1(&e, 0xCC); // entry points 16-byte aligned; int3 in the padding
      g->i0 = i0;
      g->k0 = k0;
      g->nnz = s.count;
      g->voff = voff;
      g->code_off = e.n;
      emit_segment(&e, &s, i1 - i0, k1 - k0, j->val_src + voff);
      g->code_bytes = e.n - g->code_off;
      voff += s.count;
    }
  }
  if (e.failed) goto fail;
  // Executable copy: written, then made read+execute (never writable and executable at once).
  j->code_bytes = (e.n + 4095) & ~(size_t)4095;
  void *m = mmap(NULL, j->code_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) goto fail;
  j->code = m;
  memcpy(j->code, e.p, e.n);
  if (mprotect(j->code, j->code_bytes, PROT_READ | PROT_EXEC) != 0) goto fail;
  free(e.p);
  free(s.k_start);
  free(s.row);
  free(s.src);
  sync_values(j, a);
  return j;
fail:
  free(e.p);
  free(s.k_start);
  free(s.row);
  free(s.src);
  jit_free(j);
  return NULL;
}

static void jit_free(ck_sp_jit *j) {
  if (!j) return;
  if (j->code) munmap(j->code, j->code_bytes);
  free(j->seg);
  free(j->val);
  free(j->val_src);
  free(j);
}

static void sync_values(ck_sp_jit *j, const ck_sp_mat *a) {
  const int64_t n = j->nnz;
  float *v = j->val;
  const int32_t *src = j->val_src;
  const float *av = a->val;
#pragma omp parallel for schedule(static) num_threads(ck_sp_threads()) if (n > 65536)
  for (int64_t q = 0; q < n; q++) v[q] = av[src[q]];
}

// Prefetching (to L2) of the X region the next pack will read, spread over the calls of the
// current region so that reading X from memory overlaps the arithmetic.
typedef struct {
  const float *x;
  const int64_t *xoff;
  int ldx, k, k1, c0, bytes, per;
} prefetcher;

static void prefetch_some(prefetcher *p) {
  const int e = p->k + p->per < p->k1 ? p->k + p->per : p->k1;
  for (int k = p->k; k < e; k++) {
    const char *r = (const char *)((p->xoff ? p->x + p->xoff[k] : p->x + (size_t)k * p->ldx) + p->c0);
    for (int o = 0; o < p->bytes; o += 64) _mm_prefetch(r + o, _MM_HINT_T1);
  }
  p->k = e;
}

// Copies X rows [k0, k1), columns [g0, g1) into per-tile blocks of JIT_KCHUNK rows × 16 floats
// (a partial last tile is zero padded).
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

static void prefetch_segment(const ck_sp_jit *j, const jit_segment *s) {
  const char *c = (const char *)(j->code + s->code_off), *v = (const char *)(j->val + s->voff);
  const size_t code_bytes = s->code_bytes, val_bytes = sizeof(float) * (size_t)s->nnz;
  for (size_t o = 0; o < code_bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T1);
  for (size_t o = 0; o < val_bytes; o += 64) _mm_prefetch(v + o, _MM_HINT_T1);
}

// Calls generated code. UBSan's function-type check reads a signature before the callee, which
// generated code does not have (and the first segment starts a mapping), so it is off here.
#if defined(__clang__)
__attribute__((no_sanitize("function")))
#endif
static inline void call_segment(segment_fn fn, const jit_args *arg) {
  fn(arg);
}

size_t ck_sp_jit_scratch(void) { return (size_t)JIT_GROUP * JIT_KCHUNK * 16; }

// The block starting at row r, or -1 when no block starts there.
static int block_at(const ck_sp_jit *j, int r) {
  const int b = (int)(((int64_t)r * j->nblocks + j->rows - 1) / j->rows);
  return b <= j->nblocks && block_row(j, b) == r ? b : -1;
}

void ck_sp_jit_align_rows(const ck_sp_jit *j, int parts, int *bounds) {
  for (int q = 1; q < parts; q++) {
    const int b = (int)(((int64_t)bounds[q] * j->nblocks + j->rows / 2) / j->rows);
    bounds[q] = block_row(j, b);
  }
}

int ck_sp_jit_worker(const ck_sp_jit *j, int r0, int r1, int n0, int n1, const float *x, int ldx,
                     const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
                     float *buf) {
  const int b0 = block_at(j, r0), b1 = block_at(j, r1);
  if (b0 < 0 || b1 < 0) return 0;
  if (b0 >= b1 || n0 >= n1) return 1;
  if (beta != 0.0f) { // y := beta·y + bias first; then every chunk accumulates into y
    for (int i = r0; i < r1; i++) {
      float *yr = y + (size_t)i * ldy;
      const float bi = bias ? bias[i] : 0.0f;
      for (int c = n0; c < n1; c++) yr[c] = beta * yr[c] + bi;
    }
  }
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

// Lazy construction: one global lock (builds are rare: once per pattern).
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;

static int disabled_by_env(void) {
  const char *v = getenv("CK_SPARSE_JIT");
  return v && (!strcmp(v, "0") || !strcmp(v, "off"));
}

const ck_sp_jit *ck_sp_jit_get(const ck_sp_mat *a_) {
  ck_sp_mat *a = (ck_sp_mat *)a_; // the compiled product is a cache inside the format
  if (ck_sp_isa_now() != CK_SP_ISA_AVX512) return NULL;
  int state = __atomic_load_n(&a->jit_state, __ATOMIC_ACQUIRE);
  if (state == 0) {
    pthread_mutex_lock(&build_lock);
    state = a->jit_state;
    if (state == 0) {
      const int64_t nnz = a->ptr[(size_t)a->npanels * a->rows];
      a->jit = (nnz <= JIT_MAX_NNZ && !disabled_by_env()) ? build_jit(a) : NULL;
      state = a->jit ? 1 : -1;
      __atomic_store_n(&a->jit_state, state, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&build_lock);
  }
  return state == 1 ? a->jit : NULL;
}

void ck_sp_jit_reset(ck_sp_mat *a) {
  jit_free(a->jit);
  a->jit = NULL;
  a->jit_state = 0;
}

void ck_sp_jit_values_changed(ck_sp_mat *a) {
  if (a->jit) sync_values(a->jit, a);
}

size_t ck_sp_jit_bytes(const ck_sp_mat *a) {
  const ck_sp_jit *j = a->jit;
  if (!j) return 0;
  return sizeof *j + j->code_bytes + (sizeof(float) + sizeof(int32_t)) * (size_t)j->nnz +
         sizeof(jit_segment) * (size_t)j->nblocks * j->nchunks;
}

#else // no JIT on this platform

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
