// Code generation for the compiled forward product: from the column-panel CSR pattern, one
// function per (chunk, block) segment (see driver.c for the work layout). A segment function
// takes a jit_args pointer (rdi) and runs one 16-column tile:
//   init zmm0..zmm(rows−1) by mode (zero, bias broadcast, or reload Y) → for each X row k of the
//   chunk with entries in the block: load X[k, tile] into zmm31 and do one
//   `vfmadd231ps acc_row, zmm31, [values]{1to16}` per entry → store the rows of Y.
// Loads and stores of X and Y are masked by k1 (the tile's valid columns).
#include "sparse/jit/jit.h"

#if CK_JIT_AVAILABLE
#include <string.h>

/// Entries of one segment, ordered by X row then block row: row-in-block and value source.
typedef struct {
  int count;    // entries
  int *k_start; // per X row of the chunk: first entry (chunk rows + 1)
  uint8_t *row; // row in block per entry
  int32_t *src; // index into a->val per entry
} seg_entries;

/// Collects into s the entries of rows [i0, i0 + rows) in X rows [k0, k1) of a, bucketed by X
/// row (counting sort), rows ascending inside a bucket. k0 is a multiple of the panel width;
/// s->k_start has room for k1 − k0 + 1 ints, s->row and s->src for the entries.
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

/// The FMAs of entries [q0, q1) with X in zmm `x`: `vfmadd231ps acc_row, zmm_x, [r9 + 4·q]{1to16}`,
/// r9 stepped by 512 bytes whenever the displacement would leave EVEX disp8 (×4) range.
static void emit_fmas(ck_jit_emitter *e, const seg_entries *s, int q0, int q1, int x,
                      int64_t *vbase, int32_t *val_src) {
  for (int q = q0; q < q1; q++) {
    if (q - *vbase >= 128) {
      ck_jit_add_ri(e, R9, 512);
      *vbase += 128;
    }
    ck_jit_fma_bcast(e, s->row[q], x, R9, (int32_t)(4 * (q - *vbase)));
    val_src[q] = s->src[q];
  }
}

/// Rows k, k + 1, … of a windowed product whose offsets go up by one float (a convolution's
/// windows along one image row: j = 0, 1, 2 of a 3-wide kernel): how many, at most 16.
static int window_run(const int64_t *xoff, int k, int nk) {
  int n = 1;
  while (k + n < nk && n < 16 && xoff[k + n] == xoff[k] + n) n++;
  return n;
}

/// Emits one segment function for the entries s of a block of `rows` rows (<= JIT_ROWS) over a
/// chunk of nk X rows; val_src[q] := the a->val index of the q-th value in code order. xoff:
/// the chunk's X row offsets (windowed), or NULL (packed rows ldx_bytes apart).
static void emit_segment(ck_jit_emitter *e, const seg_entries *s, int rows, int nk,
                         const int64_t *xoff, int32_t *val_src) {
  // Prologue: the lane mask first (through eax), then the pointers and strides.
  ck_jit_mov_load(e, 0, RAX, RDI, offsetof(jit_args, lane_mask));
  ck_jit_kmovw_k1(e, RAX);
  ck_jit_mov_load(e, 1, RAX, RDI, offsetof(jit_args, x));
  ck_jit_mov_load(e, 1, RSI, RDI, offsetof(jit_args, y));
  ck_jit_mov_load(e, 1, RDX, RDI, offsetof(jit_args, bias));
  ck_jit_mov_load(e, 1, R9, RDI, offsetof(jit_args, val));
  ck_jit_mov_load(e, 1, R10, RDI, offsetof(jit_args, ldx_bytes));
  ck_jit_mov_load(e, 1, R11, RDI, offsetof(jit_args, ldy_bytes));
  ck_jit_mov_load(e, 0, RCX, RDI, offsetof(jit_args, mode));
  // Init by mode: 0 zero, 1 bias, 2 reload Y.
  ck_jit_cmp_ri8(e, RCX, 1);
  const size_t to_zero = ck_jit_jump(e, CC_B), to_bias = ck_jit_jump(e, CC_E);
  ck_jit_mov_rr(e, R8, RSI);
  for (int r = 0; r < rows; r++) {
    ck_jit_load_zmm(e, r, R8, 0);
    if (r + 1 < rows) ck_jit_add_rr(e, R8, R11);
  }
  const size_t from_load = ck_jit_jump(e, -1);
  ck_jit_patch(e, to_bias);
  for (int r = 0; r < rows; r++) ck_jit_bcast(e, r, RDX, 4 * r);
  const size_t from_bias = ck_jit_jump(e, -1);
  ck_jit_patch(e, to_zero);
  for (int r = 0; r < rows; r++) ck_jit_zero_zmm(e, r);
  ck_jit_patch(e, from_load);
  ck_jit_patch(e, from_bias);
  // Body: X rows with entries, in order; rax walks X (packed) or stays at the tile's column
  // (windowed: the row offset is the load's displacement); r9 walks the values.
  //
  // Windowed, a run of rows whose windows are one float apart (row k + t starts t floats after
  // row k) that needs two or more of its windows, one of them shifted, loads the two 16-float
  // runs at row k's start into zmm31 and zmm30 (all lanes: the windows reach past the tile's
  // valid columns) and makes window t with one valignd into zmm29. A window at a start that is
  // not a multiple of 16 floats crosses a cache line, which the core serves as two loads;
  // with broadcast weights already taking one load per FMA that made the loads, not the FMAs,
  // the bound (measured in a loop of 2 FMAs per X load: 3.8 G FMA/s with crossing loads, 5.0
  // with aligned ones, 7.7 with no loads). Correct for any alignment; fastest when the base and
  // row k's start are multiples of 16 floats.
  int at_k = 0;
  int64_t vbase = 0;
  for (int k = 0; k < nk; k++) {
    const int q0 = s->k_start[k], q1 = s->k_start[k + 1];
    if (xoff) {
      const int run = window_run(xoff, k, nk);
      int used = 0, shifted = 0;
      for (int t = 0; t < run; t++)
        if (s->k_start[k + t] < s->k_start[k + t + 1]) used++, shifted |= t > 0;
      if (used >= 2 && shifted) {
        ck_jit_load_zmm_full(e, 31, RAX, (int32_t)(4 * xoff[k]));
        ck_jit_load_zmm_full(e, 30, RAX, (int32_t)(4 * (xoff[k] + 16)));
        for (int t = 0; t < run; t++) {
          const int r0 = s->k_start[k + t], r1 = s->k_start[k + t + 1];
          if (r0 == r1) continue;
          if (t > 0) ck_jit_valignd(e, 29, 30, 31, t);
          emit_fmas(e, s, r0, r1, t > 0 ? 29 : 31, &vbase, val_src);
        }
        k += run - 1;
        continue;
      }
    }
    if (q0 == q1) continue;
    if (xoff) {
      ck_jit_load_zmm(e, 31, RAX, (int32_t)(4 * xoff[k]));
    } else {
      if (k - at_k == 1)
        ck_jit_add_rr(e, RAX, R10);
      else if (k > at_k) {
        ck_jit_imul_rri(e, R8, R10, k - at_k);
        ck_jit_add_rr(e, RAX, R8);
      }
      at_k = k;
      ck_jit_load_zmm(e, 31, RAX, 0);
    }
    emit_fmas(e, s, q0, q1, 31, &vbase, val_src);
  }
  // Store.
  ck_jit_mov_rr(e, R8, RSI);
  for (int r = 0; r < rows; r++) {
    ck_jit_store_zmm(e, r, R8);
    if (r + 1 < rows) ck_jit_add_rr(e, R8, R11);
  }
  ck_jit_vzeroupper_ret(e);
}

/// Generates every segment of a; contract in sparse/jit/jit.h.
int ck_jit_generate(const ck_sp_mat *a, ck_sp_jit *j, ck_jit_emitter *e) {
  const int64_t nnz = a->ptr[(size_t)a->npanels * a->rows];
  seg_entries s = {0};
  s.k_start = malloc(sizeof(int) * ((size_t)j->kchunk + 1));
  s.row = malloc((size_t)nnz + 1);
  s.src = malloc(sizeof(int32_t) * ((size_t)nnz + 1));
  int64_t voff = 0;
  for (int c = 0; c < j->nchunks && s.k_start && s.row && s.src; c++) {
    const int k0 = c * j->kchunk, k1 = k0 + j->kchunk < j->cols ? k0 + j->kchunk : j->cols;
    for (int b = 0; b < j->nblocks; b++) {
      const int i0 = ck_jit_block_row(j, b), i1 = ck_jit_block_row(j, b + 1);
      jit_segment *g = &j->seg[(size_t)c * j->nblocks + b];
      collect(a, i0, i1 - i0, k0, k1, &s);
      ck_jit_align(e, 16); // entry points 16-byte aligned; int3 in the padding
      g->i0 = i0;
      g->k0 = k0;
      g->nnz = s.count;
      g->voff = voff;
      g->code_off = e->n;
      emit_segment(e, &s, i1 - i0, k1 - k0, j->xoff ? j->xoff + k0 : NULL, j->val_src + voff);
      g->code_bytes = e->n - g->code_off;
      voff += s.count;
    }
  }
  const int ok = s.k_start && s.row && s.src && !e->failed;
  free(s.k_start);
  free(s.row);
  free(s.src);
  return ok ? 0 : -1;
}
#endif
