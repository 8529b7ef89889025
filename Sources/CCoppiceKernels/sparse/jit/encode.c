// A minimal x86-64 instruction encoder for the compiled forward product: legacy, VEX and EVEX
// (512-bit) forms of only the instructions the generated segments use (see jit.h). The
// encodings are checked by the kernel tests, which compare every product with the scalar
// reference.
#include "sparse/jit/jit.h"

#if CK_JIT_AVAILABLE
#include <string.h>

/// Appends byte v, growing the buffer (64 KiB, then doubling); drops it once allocation failed.
static void b1(ck_jit_emitter *e, uint8_t v) {
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

/// Appends v as 4 little-endian bytes.
static void b4(ck_jit_emitter *e, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int i = 0; i < 4; i++) b1(e, (uint8_t)(u >> (8 * i)));
}

/// ModRM (+ disp) for reg and [base + disp]; `scale` is the EVEX disp8 compression factor (1
/// for legacy encodings). base is never rsp/r12 (no SIB byte).
static void mem(ck_jit_emitter *e, int reg, int base, int32_t disp, int scale) {
  const int r = (reg & 7) << 3, b = base & 7;
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

/// EVEX prefix for a 512-bit instruction. reg, v: zmm 0..31 (v = 0 when unused); rm: a zmm when
/// rm_zmm, else a general base register; map 1 = 0F, 2 = 0F38; pp 0 = none, 1 = 66; bcast,
/// zero ({z}) and kmask (k0..k7) as in the EVEX fields.
static void evex(ck_jit_emitter *e, int map, int pp, int reg, int v, int rm, int rm_zmm,
                 int bcast, int zero, int kmask) {
  const int x_bit = rm_zmm ? (rm >> 4) & 1 : 0;
  b1(e, 0x62);
  b1(e, (uint8_t)((!((reg >> 3) & 1)) << 7 | (!x_bit) << 6 | (!((rm >> 3) & 1)) << 5 |
                  (!((reg >> 4) & 1)) << 4 | map));
  b1(e, (uint8_t)(((~v) & 15) << 3 | 1 << 2 | pp));
  b1(e, (uint8_t)(zero << 7 | 2 << 5 | bcast << 4 | (!((v >> 4) & 1)) << 3 | kmask));
}

/// REX prefix for operand width w (1 = 64-bit) and the high bits of reg and base; omitted when
/// it would be a plain 0x40.
static void rex(ck_jit_emitter *e, int w, int reg, int base) {
  const int v = 0x40 | w << 3 | ((reg >> 3) & 1) << 2 | ((base >> 3) & 1);
  if (v != 0x40) b1(e, (uint8_t)v);
}

/// ModRM for two registers (register-direct form).
static void modrm_rr(ck_jit_emitter *e, int reg, int rm) {
  b1(e, (uint8_t)(0xC0 | (reg & 7) << 3 | (rm & 7)));
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_load_zmm(ck_jit_emitter *e, int z, int base, int32_t disp) {
  evex(e, 1, 0, z, 0, base, 0, 0, 1, 1);
  b1(e, 0x10);
  mem(e, z, base, disp, 64);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_load_zmm_full(ck_jit_emitter *e, int z, int base, int32_t disp) {
  evex(e, 1, 0, z, 0, base, 0, 0, 0, 0);
  b1(e, 0x10);
  mem(e, z, base, disp, 64);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_valignd(ck_jit_emitter *e, int dst, int hi, int lo, int imm) {
  evex(e, 3, 1, dst, hi, lo, 1, 0, 0, 0);
  b1(e, 0x03);
  modrm_rr(e, dst, lo);
  b1(e, (uint8_t)imm);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_store_zmm(ck_jit_emitter *e, int z, int base) {
  evex(e, 1, 0, z, 0, base, 0, 0, 0, 1);
  b1(e, 0x11);
  mem(e, z, base, 0, 64);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_fma_bcast(ck_jit_emitter *e, int acc, int x, int base, int32_t disp) {
  evex(e, 2, 1, acc, x, base, 0, 1, 0, 0);
  b1(e, 0xB8);
  mem(e, acc, base, disp, 4);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_bcast(ck_jit_emitter *e, int z, int base, int32_t disp) {
  evex(e, 2, 1, z, 0, base, 0, 0, 0, 0);
  b1(e, 0x18);
  mem(e, z, base, disp, 4);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_zero_zmm(ck_jit_emitter *e, int z) {
  evex(e, 1, 1, z, z, z, 1, 0, 0, 0);
  b1(e, 0xEF);
  modrm_rr(e, z, z);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_mov_load(ck_jit_emitter *e, int w, int dst, int base, int32_t disp) {
  rex(e, w, dst, base);
  b1(e, 0x8B);
  mem(e, dst, base, disp, 1);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_add_rr(ck_jit_emitter *e, int dst, int src) {
  rex(e, 1, src, dst);
  b1(e, 0x01);
  modrm_rr(e, src, dst);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_mov_rr(ck_jit_emitter *e, int dst, int src) {
  rex(e, 1, src, dst);
  b1(e, 0x89);
  modrm_rr(e, src, dst);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_imul_rri(ck_jit_emitter *e, int dst, int src, int32_t imm) {
  rex(e, 1, dst, src);
  b1(e, 0x69);
  modrm_rr(e, dst, src);
  b4(e, imm);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_add_ri(ck_jit_emitter *e, int dst, int32_t imm) {
  rex(e, 1, 0, dst);
  b1(e, 0x81);
  modrm_rr(e, 0, dst);
  b4(e, imm);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_cmp_ri8(ck_jit_emitter *e, int reg, int8_t imm) {
  b1(e, 0x83);
  modrm_rr(e, 7, reg);
  b1(e, (uint8_t)imm);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_kmovw_k1(ck_jit_emitter *e, int src) {
  b1(e, 0xC5); // VEX, 2-byte form: L0, 0F map, no pp
  b1(e, 0xF8);
  b1(e, 0x92);
  modrm_rr(e, 1, src);
}

/// Encodes the instruction named in sparse/jit/jit.h.
void ck_jit_vzeroupper_ret(ck_jit_emitter *e) {
  b1(e, 0xC5);
  b1(e, 0xF8);
  b1(e, 0x77); // vzeroupper
  b1(e, 0xC3); // ret
}

/// Pads with int3 to a multiple of align; contract in sparse/jit/jit.h.
void ck_jit_align(ck_jit_emitter *e, size_t align) {
  while (e->n % align && !e->failed) b1(e, 0xCC);
}

/// Emits a jump with an open target, returns where to patch it; contract in sparse/jit/jit.h.
size_t ck_jit_jump(ck_jit_emitter *e, int cc) {
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

/// Points an open jump at the current end; contract in sparse/jit/jit.h.
void ck_jit_patch(ck_jit_emitter *e, size_t at) {
  if (e->failed) return;
  int32_t rel = (int32_t)(e->n - (at + 4));
  memcpy(e->p + at, &rel, 4);
}
#endif
