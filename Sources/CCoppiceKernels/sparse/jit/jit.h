// Internal interface of the compiled forward product (jit/): the compiled product's layout,
// the instruction encoder (encode.c) and the code generator (codegen.c) used by the driver
// (driver.c). See driver.c for what the compiled product is and why.
#ifndef CK_SPARSE_JIT_H
#define CK_SPARSE_JIT_H

#include "sparse/internal.h"

#include <stddef.h>

#if CK_SP_X86 && defined(__x86_64__) && !defined(_WIN32)
#define CK_JIT_AVAILABLE 1
#else
#define CK_JIT_AVAILABLE 0
#endif

#ifndef JIT_ROWS
#define JIT_ROWS 30 // accumulator registers zmm0..zmm29 (zmm31 holds the X row)
#endif
// The windowed form keeps one row fewer: zmm31 and zmm30 hold two adjacent 16-float runs of the
// image and zmm29 the window between them (see codegen.c).
#define JIT_WINDOW_ROWS (JIT_ROWS - 1)
#ifndef JIT_KCHUNK
#define JIT_KCHUNK 256 // rows of X per segment (a multiple of CK_SPARSE_PANEL)
#endif
#ifndef JIT_WINDOW_GROUP
#define JIT_WINDOW_GROUP 8 // 16-column tiles a windowed product runs block by block
#endif
#ifndef JIT_GROUP
#define JIT_GROUP 16 // 16-column tiles packed together and run segment by segment
#endif

/// Arguments of a generated segment function (read by its prologue at these offsets).
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
_Static_assert(sizeof(void *) != 8 || (offsetof(jit_args, ldx_bytes) == 32 &&
                                       offsetof(jit_args, lane_mask) == 52),
               "the generated prologue reads jit_args at fixed (disp8) offsets");

/// One generated function: rows [i0, i0 + block rows) of W against X rows of one chunk.
typedef struct {
  int i0, k0;        // the block starts at row i0, the chunk at X row k0
  int64_t nnz, voff; // nonzeros of the segment and their offset in the code-order values
  size_t code_off;   // entry point in the code buffer
  size_t code_bytes; // length of its code
} jit_segment;

struct ck_sp_jit {
  int nblocks, nchunks, rows, cols;
  int kchunk;        // X rows per chunk: JIT_KCHUNK, or cols for a windowed product
  int64_t *xoff;     // windowed product: the X row offsets built into its loads (cols entries);
                     // NULL for the packed product
  jit_segment *seg;  // nchunks × nblocks, chunk-major
  float *val;        // nnz values in code order
  int32_t *val_src;  // val[q] = a->val[val_src[q]]
  int64_t nnz;
  uint8_t *code;
  size_t code_bytes;
};

/// Row where block b (0 <= b <= nblocks) starts: nblocks blocks of ⌊rows/nblocks⌋ or
/// ⌈rows/nblocks⌉ rows.
static inline int ck_jit_block_row(const ck_sp_jit *j, int b) {
  return (int)((int64_t)j->rows * b / j->nblocks);
}

#if CK_JIT_AVAILABLE

// ---------------------------------------------------------------------------------------------
// Encoder (encode.c): appends one x86-64 instruction each; only what the segments need.
// Registers are numbered as in the ISA (general 0..15, zmm 0..31); memory operands are
// [base + disp] with a base that is never rsp/r12.
// ---------------------------------------------------------------------------------------------

enum { RAX = 0, RCX = 1, RDX = 2, RSI = 6, RDI = 7, R8 = 8, R9 = 9, R10 = 10, R11 = 11 };
enum { CC_B = 2, CC_E = 4 }; // condition codes for ck_jit_jump

/// Growing code buffer. On allocation failure `failed` is set and further bytes are dropped.
typedef struct {
  uint8_t *p; // malloc'ed; free with free()
  size_t n, cap;
  int failed;
} ck_jit_emitter;

/// mov r64, [base + disp] (w = 1), or mov r32 (w = 0).
void ck_jit_mov_load(ck_jit_emitter *e, int w, int dst, int base, int32_t disp);
/// mov dst, src (64-bit).
void ck_jit_mov_rr(ck_jit_emitter *e, int dst, int src);
/// add dst, src (64-bit).
void ck_jit_add_rr(ck_jit_emitter *e, int dst, int src);
/// add dst, imm32 (64-bit).
void ck_jit_add_ri(ck_jit_emitter *e, int dst, int32_t imm);
/// imul dst, src, imm32 (64-bit).
void ck_jit_imul_rri(ck_jit_emitter *e, int dst, int src, int32_t imm);
/// cmp r32, imm8 (r32 one of eax..edi).
void ck_jit_cmp_ri8(ck_jit_emitter *e, int reg, int8_t imm);
/// kmovw k1, r32 (r32 one of eax..edi).
void ck_jit_kmovw_k1(ck_jit_emitter *e, int src);
/// vmovups zmm{k1}{z}, [base + disp].
void ck_jit_load_zmm(ck_jit_emitter *e, int z, int base, int32_t disp);
/// vmovups zmm, [base + disp] (all 16 lanes).
void ck_jit_load_zmm_full(ck_jit_emitter *e, int z, int base, int32_t disp);
/// valignd dst, hi, lo, imm8: dst = the 16 dwords from dword imm8 of the 32 dwords hi:lo.
void ck_jit_valignd(ck_jit_emitter *e, int dst, int hi, int lo, int imm);
/// vmovups [base]{k1}, zmm.
void ck_jit_store_zmm(ck_jit_emitter *e, int z, int base);
/// vfmadd231ps zmm_acc, zmm_x, dword [base + disp]{1to16}.
void ck_jit_fma_bcast(ck_jit_emitter *e, int acc, int x, int base, int32_t disp);
/// vbroadcastss zmm, dword [base + disp].
void ck_jit_bcast(ck_jit_emitter *e, int z, int base, int32_t disp);
/// vpxord zmm, zmm, zmm (zmm := 0).
void ck_jit_zero_zmm(ck_jit_emitter *e, int z);
/// vzeroupper; ret.
void ck_jit_vzeroupper_ret(ck_jit_emitter *e);
/// int3 until the buffer length is a multiple of `align`.
void ck_jit_align(ck_jit_emitter *e, size_t align);
/// jcc rel32 (cc a CC_* code), or jmp rel32 when cc < 0, with the target left open; returns
/// the position to give ck_jit_patch.
size_t ck_jit_jump(ck_jit_emitter *e, int cc);
/// Makes the jump whose position is `at` land at the current end of the buffer.
void ck_jit_patch(ck_jit_emitter *e, size_t at);

// ---------------------------------------------------------------------------------------------
// Code generation (codegen.c)
// ---------------------------------------------------------------------------------------------

/// Emits into e one segment function per (chunk of j->kchunk X rows, block of rows) of a,
/// chunk-major, each entry point 16-byte aligned; fills j->seg (nchunks × nblocks entries) and
/// j->val_src (nnz entries: the a->val index of each value in code order). j->nblocks,
/// nchunks, kchunk, rows, cols and xoff must be set and the arrays allocated. Packed (xoff
/// NULL): a segment reads X row k0 + r at x + r·ldx_bytes. Windowed: it reads X row k at
/// x + 4·xoff[k], the offset an immediate in the load, and ldx_bytes is unused. Returns 0, or -1 when memory
/// ran out (then e may hold partial code).
int ck_jit_generate(const ck_sp_mat *a, ck_sp_jit *j, ck_jit_emitter *e);

#endif // CK_JIT_AVAILABLE
#endif
