// The vector SpMM and SDDMM kernels, written once over a few vector primitives and compiled
// once per instruction set: x86/avx512.c, x86/avx2.c and arm/neon.c each define the primitives
// and then include this file (it is not a header of declarations; include it nowhere else).
//
// The including file defines, all under the target attribute CK_VEC_TARGET:
//   vec, vec_mask          a vector of VEC_WIDTH floats and a lane mask
//   VEC(op)                the intrinsic for op in load (aligned), loadu, store (aligned), storeu,
//                          set1, fmadd, mul
//   vec_first(count)       mask of the first count lanes (1 <= count <= VEC_WIDTH); vec_all()
//   vec_maskz_load(p, m)   the lanes m of p (unaligned), 0 elsewhere; vec_mask_store(p, m, v)
//   vec_sum(a)             Σ lanes of a
//   vec_add_sums4(p, a, b, c, d)  p[0..3] += [Σa, Σb, Σc, Σd]
//   CK_VEC_KERNELS         the name of the ck_sp_isa_kernels table this file defines.
// Both kernels pack rows of X into an L1-friendly block (pack) and sweep blocks of rows of W
// over it, panel by panel; see spmm.c and sddmm.c for the blocking and its reasons.

#define P CK_SPARSE_PANEL
#define RBLOCK 256    // rows of W per sweep over a packed panel
#define PACK_AHEAD 16 // rows of X prefetched ahead while packing
#define SPMM_NV 4     // vectors per SpMM column tile (accumulators per row of W)
#define SDDMM_NV 8    // vectors per SDDMM column tile (dY row held in registers)
#define SPMM_T (SPMM_NV * VEC_WIDTH)   // SpMM column tile, floats (= packed row stride)
#define SDDMM_T (SDDMM_NV * VEC_WIDTH) // SDDMM column tile, floats (= packed row stride)

_Static_assert(SPMM_T <= CK_SP_SPMM_TILE, "SpMM tile exceeds its scratch");
_Static_assert(SDDMM_T <= CK_SP_SDDMM_TILE, "SDDMM tile exceeds its scratch");

/// Vectors covering a column tile of w floats (1 <= w); *lm receives the lanes of the last one.
CK_VEC_TARGET static inline int tile_vectors(int w, vec_mask *lm) {
  const int nv = (w + VEC_WIDTH - 1) / VEC_WIDTH;
  *lm = vec_first(w - VEC_WIDTH * (nv - 1));
  return nv;
}

// ---------------------------------------------------------------------------------------------
// Packing (the one routine for the row-major packed block both products read)
// ---------------------------------------------------------------------------------------------

/// Copies rows [k0, k1) of X, columns [c0, c0 + nv·VEC_WIDTH) — the last vector only on the
/// lanes lm, zero filled — to buf, row k at buf + (k − k0)·stride. Row k of X starts at
/// x + xoff[k] when xoff is not NULL, else x + k·ldx. buf: 64-byte aligned, (k1 − k0)·stride
/// floats; stride a multiple of VEC_WIDTH, at least nv·VEC_WIDTH; 1 <= nv.
CK_VEC_TARGET static void pack(const float *x, int ldx, const int64_t *xoff, int k0, int k1,
                               int c0, int nv, vec_mask lm, int stride, float *buf) {
  const size_t bytes = sizeof(vec) * (size_t)nv;
  for (int k = k0; k < k1; k++) {
    const float *s = (xoff ? x + xoff[k] : x + (size_t)k * ldx) + c0;
    float *d = buf + (size_t)(k - k0) * stride;
    // X rows are far apart (ldx): fetch a few rows ahead so DRAM latency overlaps the copy.
    const char *ahead = (const char *)(s + (size_t)PACK_AHEAD * ldx); // ldx: a stride hint
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(ahead + o, 0, 3);
    __builtin_prefetch(ahead + bytes - 4, 0, 3);
    for (int v = 0; v < nv - 1; v++) VEC(store)(d + VEC_WIDTH * v, VEC(loadu)(s + VEC_WIDTH * v));
    VEC(store)(d + VEC_WIDTH * (nv - 1), vec_maskz_load(s + VEC_WIDTH * (nv - 1), lm));
  }
}

/// Prefetches (to L2) the X rows [k0, k1) at columns [c0, c0 + nv·VEC_WIDTH) that the next pack
/// will copy, so that reading X from memory overlaps the current chunk's arithmetic (measured
/// 4-8% faster on the conv-as-GEMM shapes, whose X is far larger than the caches). A hint only.
CK_VEC_TARGET static inline void prefetch_rows(const float *x, int ldx, const int64_t *xoff,
                                               int k0, int k1, int c0, int nv) {
  const size_t bytes = sizeof(vec) * (size_t)nv;
  for (int k = k0; k < k1; k++) {
    const char *s = (const char *)((xoff ? x + xoff[k] : x + (size_t)k * ldx) + c0);
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(s + o, 0, 2);
  }
}

/// Whether the tile of nv whole vectors at column c0 of X (rows ldx apart, no row offsets) can
/// be read in place instead of packed: every row's tile vector-aligned, and no lanes past the
/// tile's columns (a packed tile has zeros there); ldx a power of two (the SDDMM shifts by its
/// logarithm). fc1's chunks of transposed tokens are.
CK_VEC_TARGET static inline int tile_in_place(const float *x, int ldx, const int64_t *xoff,
                                              int c0, int width, int nv) {
  return !xoff && width == nv * VEC_WIDTH && ldx > 0 && ldx % VEC_WIDTH == 0 &&
         !(ldx & (ldx - 1)) && (uintptr_t)(x + c0) % sizeof(vec) == 0;
}

// ---------------------------------------------------------------------------------------------
// SpMM: y = W·X (+ bias) (+ beta·y); a tile of SPMM_NV vectors per row of W in registers
// ---------------------------------------------------------------------------------------------

/// Rows [i0, i1) of one panel (segment offsets ptr, columns col, values val) against its packed
/// block pb (row stride SPMM_T), into nv vectors of each row of y (the last on the
/// lanes lm). mode: 0 = y := bias + W·X, 1 = y := beta·y + bias + W·X, 2 = y += W·X (rows
/// without entries are skipped). bias may be NULL (0). nv is a constant after inlining.
CK_VEC_TARGET static inline __attribute__((always_inline)) void
spmm_rows(const int nv, vec_mask lm, const int32_t *ptr, const uint16_t *col, const float *val,
          int i0, int i1, const float *pb, float *y, int ldy, int mode, const float *bias,
          float beta) {
  for (int i = i0; i < i1; i++) {
    int32_t j = ptr[i];
    const int32_t je = ptr[i + 1];
    if (mode == 2 && j == je) continue;
    float *yr = y + (size_t)i * ldy;
    vec acc[SPMM_NV];
    const vec b = VEC(set1)(bias ? bias[i] : 0.0f);
    for (int v = 0; v < nv; v++) {
      const vec_mask m = v == nv - 1 ? lm : vec_all();
      if (mode == 2)
        acc[v] = vec_maskz_load(yr + VEC_WIDTH * v, m);
      else if (mode == 1)
        acc[v] = VEC(fmadd)(VEC(set1)(beta), vec_maskz_load(yr + VEC_WIDTH * v, m), b);
      else
        acc[v] = b;
    }
    for (; j + 1 < je; j += 2) { // two entries per step; each accumulator in entry order
      const float *x0 = pb + (size_t)col[j] * SPMM_T, *x1 = pb + (size_t)col[j + 1] * SPMM_T;
      CK_SP_OPAQUE(x0);
      CK_SP_OPAQUE(x1);
      const vec w0 = VEC(set1)(val[j]), w1 = VEC(set1)(val[j + 1]);
      for (int v = 0; v < nv; v++) acc[v] = VEC(fmadd)(w0, VEC(load)(x0 + VEC_WIDTH * v), acc[v]);
      for (int v = 0; v < nv; v++) acc[v] = VEC(fmadd)(w1, VEC(load)(x1 + VEC_WIDTH * v), acc[v]);
    }
    if (j < je) {
      const float *x0 = pb + (size_t)col[j] * SPMM_T;
      CK_SP_OPAQUE(x0);
      const vec w0 = VEC(set1)(val[j]);
      for (int v = 0; v < nv; v++) acc[v] = VEC(fmadd)(w0, VEC(load)(x0 + VEC_WIDTH * v), acc[v]);
    }
    for (int v = 0; v < nv - 1; v++) VEC(storeu)(yr + VEC_WIDTH * v, acc[v]);
    vec_mask_store(yr + VEC_WIDTH * (nv - 1), lm, acc[nv - 1]);
  }
}

/// The ck_sp_isa_kernels.spmm of this instruction set (contract in sparse/internal.h): column
/// tiles of SPMM_NV vectors; per tile, chunks of CK_SP_SPMM_KCHUNK X rows are packed and swept
/// by blocks of RBLOCK rows of W, while the next chunk's X rows are prefetched.
CK_VEC_TARGET static void spmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1,
                                      const float *x, int ldx, const int64_t *xoff,
                                      const float *bias, float beta, float *y, int ldy,
                                      float *buf) {
  const int M = a->rows, K = a->cols, np = a->npanels, ppc = CK_SP_SPMM_KCHUNK / P;
  for (int c0 = n0; c0 < n1; c0 += SPMM_T) {
    vec_mask lm;
    const int nv = tile_vectors(ck_sp_imin(SPMM_T, n1 - c0), &lm);
    float *yc = y + c0;
    // X rows exactly one tile wide (fc1's chunks of transposed tokens) are read in place.
    const int in_place =
        ldx == SPMM_T && tile_in_place(x, ldx, xoff, c0, ck_sp_imin(SPMM_T, n1 - c0), nv);
    for (int p0 = 0; p0 < np; p0 += ppc) {
      const int p1 = ck_sp_imin(np, p0 + ppc), k0 = p0 * P, k1 = ck_sp_imin(K, p1 * P);
      if (!in_place) pack(x, ldx, xoff, k0, k1, c0, nv, lm, SPMM_T, buf);
      // What the next pack reads: the next chunk of this tile, or the first of the next tile.
      const int nk0 = p1 < np ? k1 : 0, nc0 = p1 < np ? c0 : c0 + SPMM_T;
      const int nk1 = ck_sp_imin(K, nk0 + CK_SP_SPMM_KCHUNK);
      const int nnv = nc0 < n1 ? (ck_sp_imin(SPMM_T, n1 - nc0) + VEC_WIDTH - 1) / VEC_WIDTH : 0;
      for (int rb = r0; rb < r1; rb += RBLOCK) {
        const int re = ck_sp_imin(r1, rb + RBLOCK);
        for (int p = p0; p < p1; p++) {
          const int32_t *ptr = a->ptr + (size_t)p * M;
          const float *pb = in_place ? x + (size_t)p * P * SPMM_T + c0
                                     : buf + (size_t)(p - p0) * P * SPMM_T;
          const int q0 = nk0 + (p - p0) * P;
          if (rb == r0 && nnv > 0 && q0 < nk1)
            prefetch_rows(x, ldx, xoff, q0, ck_sp_imin(q0 + P, nk1), nc0, nnv);
          const int mode = p > 0 ? 2 : (beta != 0.0f ? 1 : 0);
          switch (nv) { // one inlined copy per vector count
          case 4: spmm_rows(4, lm, ptr, a->col, a->val, rb, re, pb, yc, ldy, mode, bias, beta); break;
          case 3: spmm_rows(3, lm, ptr, a->col, a->val, rb, re, pb, yc, ldy, mode, bias, beta); break;
          case 2: spmm_rows(2, lm, ptr, a->col, a->val, rb, re, pb, yc, ldy, mode, bias, beta); break;
          default: spmm_rows(1, lm, ptr, a->col, a->val, rb, re, pb, yc, ldy, mode, bias, beta); break;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SDDMM: acc[j] += dY[i, :]·X[k, :]; a tile of SDDMM_NV vectors of the dY row in registers
// ---------------------------------------------------------------------------------------------

/// Rows [i0, i1) of one panel (segment offsets ptr, columns col) against its packed block pb
/// (row stride 2^ps floats): for each entry j = (i, k), acc[j] += Σ over the nv vectors
/// (the last on the lanes lm) at column c0 of dY row i (at dy + dyoff[i] when dyoff is not
/// NULL, else dy + i·lddy) times packed X row k. Four entries at a time, reduced together.
CK_VEC_TARGET static inline __attribute__((always_inline)) void
sddmm_rows(const int nv, vec_mask lm, const int32_t *ptr, const uint16_t *col, int i0, int i1,
           const float *pb, int ps, const float *dy, int lddy, const int64_t *dyoff, int c0,
           float *acc) {
  for (int i = i0; i < i1; i++) {
    int32_t j = ptr[i];
    const int32_t je = ptr[i + 1];
    if (j == je) continue;
    const float *dr = (dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy) + c0;
    vec d[SDDMM_NV];
    for (int v = 0; v < nv - 1; v++) d[v] = VEC(loadu)(dr + VEC_WIDTH * v);
    d[nv - 1] = vec_maskz_load(dr + VEC_WIDTH * (nv - 1), lm);
    for (; j + 3 < je; j += 4) {
      const float *x0 = pb + ((size_t)col[j] << ps), *x1 = pb + ((size_t)col[j + 1] << ps);
      const float *x2 = pb + ((size_t)col[j + 2] << ps);
      const float *x3 = pb + ((size_t)col[j + 3] << ps);
      CK_SP_OPAQUE(x0);
      CK_SP_OPAQUE(x1);
      CK_SP_OPAQUE(x2);
      CK_SP_OPAQUE(x3);
      vec s0 = VEC(mul)(d[0], VEC(load)(x0));
      vec s1 = VEC(mul)(d[0], VEC(load)(x1));
      vec s2 = VEC(mul)(d[0], VEC(load)(x2));
      vec s3 = VEC(mul)(d[0], VEC(load)(x3));
      for (int v = 1; v < nv; v++) {
        s0 = VEC(fmadd)(d[v], VEC(load)(x0 + VEC_WIDTH * v), s0);
        s1 = VEC(fmadd)(d[v], VEC(load)(x1 + VEC_WIDTH * v), s1);
        s2 = VEC(fmadd)(d[v], VEC(load)(x2 + VEC_WIDTH * v), s2);
        s3 = VEC(fmadd)(d[v], VEC(load)(x3 + VEC_WIDTH * v), s3);
      }
      vec_add_sums4(acc + j, s0, s1, s2, s3);
    }
    for (; j < je; j++) {
      const float *x0 = pb + ((size_t)col[j] << ps);
      CK_SP_OPAQUE(x0);
      vec s0 = VEC(mul)(d[0], VEC(load)(x0));
      for (int v = 1; v < nv; v++) s0 = VEC(fmadd)(d[v], VEC(load)(x0 + VEC_WIDTH * v), s0);
      acc[j] += vec_sum(s0);
    }
  }
}

/// The ck_sp_isa_kernels.sddmm of this instruction set (contract in sparse/internal.h): column
/// tiles of SDDMM_NV vectors; per tile, chunks of CK_SP_SDDMM_KCHUNK X rows are packed (or read
/// in place, tile_in_place) and swept by blocks of RBLOCK rows of W.
CK_VEC_TARGET static void sddmm_worker(const ck_sp_mat *a, int r0, int r1, int n0, int n1,
                                       const float *dy, int lddy, const int64_t *dyoff,
                                       const float *x, int ldx, const int64_t *xoff, float *acc,
                                       float *buf) {
  const int M = a->rows, K = a->cols, np = a->npanels, ppc = CK_SP_SDDMM_KCHUNK / P;
  for (int c0 = n0; c0 < n1; c0 += SDDMM_T) {
    vec_mask lm;
    const int width = ck_sp_imin(SDDMM_T, n1 - c0), nv = tile_vectors(width, &lm);
    const int in_place = tile_in_place(x, ldx, xoff, c0, width, nv);
    // The packed row stride's logarithm (2^ps floats).
    const int ps = __builtin_ctz(in_place ? (unsigned)ldx : (unsigned)SDDMM_T);
    for (int p0 = 0; p0 < np; p0 += ppc) {
      const int p1 = ck_sp_imin(np, p0 + ppc), k0 = p0 * P, k1 = ck_sp_imin(K, p1 * P);
      if (!in_place) pack(x, ldx, xoff, k0, k1, c0, nv, lm, SDDMM_T, buf);
      for (int rb = r0; rb < r1; rb += RBLOCK) {
        const int re = ck_sp_imin(r1, rb + RBLOCK);
        for (int p = p0; p < p1; p++) {
          const int32_t *ptr = a->ptr + (size_t)p * M;
          const float *pb = in_place ? x + ((size_t)p * P << ps) + c0
                                     : buf + (size_t)(p - p0) * P * SDDMM_T;
          switch (nv) { // one inlined copy per vector count
          case 8: sddmm_rows(8, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          case 7: sddmm_rows(7, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          case 6: sddmm_rows(6, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          case 5: sddmm_rows(5, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          case 4: sddmm_rows(4, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          case 3: sddmm_rows(3, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          case 2: sddmm_rows(2, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          default: sddmm_rows(1, lm, ptr, a->col, rb, re, pb, ps, dy, lddy, dyoff, c0, acc); break;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Windowed SDDMM: the entries of a row of W in registers, one vector accumulator each
// ---------------------------------------------------------------------------------------------

#define WINDOW_GROUP 8 // entries whose accumulators are in registers at once (8 FMA chains)
_Static_assert(VEC_WIDTH <= CK_SP_LANES, "vector wider than the SDDMM's lanes");

/// g (≤ WINDOW_GROUP) entries of one row over `images` images: accumulators loaded from their
/// lanes (acc[e]); per image b, dY row d + b·dy_step (one load per column vector, shared by the
/// g entries) times each entry's X row xs[e] + b·x_step over [0, nw) — the last vector on the
/// lanes lm; stored back. g is a constant after inlining.
CK_VEC_TARGET static inline __attribute__((always_inline)) void
window_group(const int g, int images, const float *d, size_t dy_step, const float *const *xs,
             size_t x_step, int nw, vec_mask lm, float *const *acc) {
  vec s[WINDOW_GROUP];
  for (int e = 0; e < g; e++) s[e] = VEC(load)(acc[e]);
  for (int b = 0; b < images; b++) {
    const float *db = d + (size_t)b * dy_step;
    const size_t xb = (size_t)b * x_step;
    int n = 0;
    for (; n + VEC_WIDTH <= nw; n += VEC_WIDTH) {
      const vec dv = VEC(loadu)(db + n);
      for (int e = 0; e < g; e++) s[e] = VEC(fmadd)(dv, VEC(loadu)(xs[e] + xb + n), s[e]);
    }
    if (n < nw) {
      const vec dv = vec_maskz_load(db + n, lm);
      for (int e = 0; e < g; e++)
        s[e] = VEC(fmadd)(dv, vec_maskz_load(xs[e] + xb + n, lm), s[e]);
    }
  }
  for (int e = 0; e < g; e++) VEC(store)(acc[e], s[e]);
}

/// The ck_sp_isa_kernels.sddmm_windows of this instruction set (contract in
/// sparse/internal.h): each row's entries in groups of WINDOW_GROUP, over all the images.
CK_VEC_TARGET static void sddmm_windows(const ck_sp_window_entries *e, int images, int nw,
                                        const float *dy, int lddy, const int64_t *dyoff,
                                        size_t dy_step, const float *x, size_t x_step,
                                        float *lanes) {
  const vec_mask lm = vec_first(nw % VEC_WIDTH ? nw % VEC_WIDTH : VEC_WIDTH);
  for (int sg = 0; sg < e->segments; sg++) {
    const int i = e->row[sg];
    const float *d = dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy;
    // The segment's entries in groups of about equal size (10 = 5 + 5, not 8 + 2: a group of g
    // is g chains of dependent FMAs, too few to cover the FMA latency when g is small).
    const int32_t n = e->start[sg + 1] - e->start[sg];
    const int32_t groups = (n + WINDOW_GROUP - 1) / WINDOW_GROUP;
    for (int32_t t = 0, q = e->start[sg]; t < groups; t++) {
      const int g = (int)((n * (t + 1)) / groups - (n * t) / groups);
      const float *xs[WINDOW_GROUP];
      float *acc[WINDOW_GROUP];
      for (int u = 0; u < g; u++) {
        xs[u] = x + e->off[q + u];
        acc[u] = lanes + (size_t)e->value[q + u] * CK_SP_LANES;
      }
      switch (g) { // one inlined copy per group size
      case 8: window_group(8, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      case 7: window_group(7, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      case 6: window_group(6, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      case 5: window_group(5, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      case 4: window_group(4, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      case 3: window_group(3, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      case 2: window_group(2, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      default: window_group(1, images, d, dy_step, xs, x_step, nw, lm, acc); break;
      }
      q += g;
    }
  }
}

const ck_sp_isa_kernels CK_VEC_KERNELS = {spmm_worker, sddmm_worker, sddmm_windows};
