// Tests of the sparse kernels (ck_sparse.h) against their scalar references.
//
// Build and run (from the repository root; `make -C Tests/kernels test` does the same):
//   OMP_INC=/usr/lib/llvm-14/lib/clang/14.0.6/include OMP_LIB=/usr/lib/llvm-14/lib
//   clang -O2 -fopenmp -isystem $OMP_INC -ISources/CCoppiceKernels/include
//     -ISources/CCoppiceKernels $(find Sources/CCoppiceKernels/sparse
//     Sources/CCoppiceKernels/jobs -name "*.c") Tests/kernels/test_sparse.c -L$OMP_LIB
//     -Wl,-rpath,$OMP_LIB -lomp -lm -o /tmp/test_sparse && /tmp/test_sparse    (one line)
// Sanitizers: add -fsanitize=address,undefined -fno-omit-frame-pointer (make check-sanitize).
//
// Every fast kernel is compared with the double-precision reference on random shapes (odd
// sizes, sizes around the panel width 128 and the vector tiles 16/32/64/128, empty rows and
// columns), sparsity 0, 0.5, 0.9, 0.99 and 1, under 1 and 2 OpenMP threads and every
// instruction set the CPU has (AVX-512, AVX2, C; NEON, C on AArch64), or only the one named by
// COPPICE_ISA=generic|avx2|avx512|neon (mk/isa.mk runs each; a set the CPU lacks is a failure).
//
// Tolerance: |fast − ref| <= TOL · (Σ|terms| + 1e-30) element-wise with TOL = 2e-5, where
// Σ|terms| is the same reference evaluated on absolute values (|W|·|X| + |bias| + |beta·out|),
// i.e. a relative error bound that stays meaningful under cancellation.
//
// Prints one line per check and finally "N passed, M failed"; exits 1 on any failure.
#include "ck_sparse.h"

#include <math.h>
#include <pthread.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-5

static int passed = 0, failed = 0;
static int isa_default = -1; // instruction set of the tests that do not loop over them

// The AVX-512 products run as code compiled for the pattern (sparse/jit/) unless
// CK_SPARSE_JIT=0; the AVX-512 tests run both ways.
static const char *jit_label(void) {
  const char *v = getenv("CK_SPARSE_JIT");
  return v && !strcmp(v, "0") ? " jit=off" : "";
}
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}
static double uniform(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }
static float *rand_floats(size_t count) {
  float *p = malloc(sizeof(float) * (count ? count : 1));
  for (size_t i = 0; i < count; i++) p[i] = (float)(2.0 * uniform() - 1.0);
  return p;
}
static float *abs_copy(const float *src, size_t count) {
  float *p = malloc(sizeof(float) * (count ? count : 1));
  for (size_t i = 0; i < count; i++) p[i] = fabsf(src[i]);
  return p;
}

// Mask with the given sparsity; when `holes`, every 7th row and every 5th column is emptied.
static float *make_mask(int m, int k, double sparsity, int holes) {
  float *mask = malloc(sizeof(float) * (size_t)m * k);
  for (int i = 0; i < m; i++)
    for (int q = 0; q < k; q++) {
      int keep = uniform() >= sparsity;
      if (holes && (i % 7 == 3 || q % 5 == 2)) keep = 0;
      mask[(size_t)i * k + q] = keep ? 1.0f : 0.0f;
    }
  return mask;
}

// Compares `got` with `want` (rows × cols with leading dims) under the bound `mag`.
static void check(const char *what, const char *ctx, const float *got, int ldg, const float *want,
                  int ldw, const float *mag, int ldm, int rows, int cols) {
  double worst = 0.0;
  int bad = 0;
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++) {
      double g = got[(size_t)i * ldg + c], w = want[(size_t)i * ldw + c];
      double bound = TOL * ((double)mag[(size_t)i * ldm + c] + 1e-30);
      double err = fabs(g - w);
      if (!(err <= bound)) bad = 1; // NaN fails too
      double rel = err / (bound / TOL);
      if (rel > worst || isnan(rel)) worst = isnan(rel) ? INFINITY : rel;
    }
  if (bad) failed++; else passed++;
  printf("%s %-14s %s max_rel=%.2e\n", bad ? "FAIL" : "ok  ", what, ctx, worst);
}

static void test_products(int m, int k, int n, double sparsity, int holes, int threads, int isa) {
  char ctx[160];
  snprintf(ctx, sizeof ctx, "M=%d K=%d N=%d s=%.2f%s thr=%d isa=%d%s", m, k, n, sparsity,
           holes ? "+holes" : "", threads, isa, jit_label());
  omp_set_num_threads(threads);
  ck_sparse_set_isa(isa);
  const int ldx = n + 3, ldy = n + 5; // leading dimensions larger than n
  float *w = rand_floats((size_t)m * k), *mask = make_mask(m, k, sparsity, holes);
  float *x = rand_floats((size_t)k * ldx), *bias = rand_floats(m);
  float *y0 = rand_floats((size_t)m * ldy), *dy = rand_floats((size_t)m * ldy);
  float *dx0 = rand_floats((size_t)k * ldx);
  float *aw = abs_copy(w, (size_t)m * k), *ax = abs_copy(x, (size_t)k * ldx);
  float *abias = abs_copy(bias, m), *ay0 = abs_copy(y0, (size_t)m * ldy);
  float *ady = abs_copy(dy, (size_t)m * ldy), *adx0 = abs_copy(dx0, (size_t)k * ldx);

  ck_sparse *s = ck_sparse_create(m, k, w, mask);
  if (!s) {
    failed++;
    printf("FAIL create         %s\n", ctx);
    goto done;
  }
  {
    // Format: nnz matches the mask, the u8 build gives the same values, gather/scatter agree.
    int64_t want_nnz = 0;
    for (size_t q = 0; q < (size_t)m * k; q++) want_nnz += mask[q] != 0.0f;
    uint8_t *mu = malloc((size_t)m * k);
    for (size_t q = 0; q < (size_t)m * k; q++) mu[q] = mask[q] != 0.0f;
    ck_sparse *s8 = ck_sparse_create_u8(m, k, w, mu);
    int ok = s8 && ck_sparse_nnz(s) == want_nnz && ck_sparse_nnz(s8) == want_nnz &&
             (want_nnz == 0 || memcmp(ck_sparse_values(s), ck_sparse_values(s8),
                                      sizeof(float) * (size_t)want_nnz) == 0);
    float *dense = malloc(sizeof(float) * (size_t)m * k);
    ck_sparse_scatter(s, ck_sparse_values(s), dense);
    for (size_t q = 0; q < (size_t)m * k && ok; q++)
      ok = dense[q] == (mask[q] != 0.0f ? w[q] : 0.0f);
    if (ok) passed++; else failed++;
    printf("%s %-14s %s nnz=%lld\n", ok ? "ok  " : "FAIL", "format", ctx, (long long)want_nnz);
    free(dense);
    free(mu);
    ck_sparse_free(s8);
  }

  float *got = malloc(sizeof(float) * (size_t)(m > k ? m : k) * (ldx > ldy ? ldx : ldy));
  float *want = malloc(sizeof(float) * (size_t)(m > k ? m : k) * (ldx > ldy ? ldx : ldy));
  float *mag = malloc(sizeof(float) * (size_t)(m > k ? m : k) * (ldx > ldy ? ldx : ldy));

  // Forward with bias, beta = 0 (output holds NaN garbage that must not be read).
  for (size_t q = 0; q < (size_t)m * ldy; q++) got[q] = NAN;
  ck_sparse_spmm(s, n, x, ldx, bias, 0.0f, got, ldy);
  ck_sparse_ref_spmm(m, k, n, w, mask, x, ldx, bias, 0.0f, want, ldy);
  ck_sparse_ref_spmm(m, k, n, aw, mask, ax, ldx, abias, 0.0f, mag, ldy);
  check("forward", ctx, got, ldy, want, ldy, mag, ldy, m, n);

  // Forward without bias, beta = 0.5.
  memcpy(got, y0, sizeof(float) * (size_t)m * ldy);
  memcpy(want, y0, sizeof(float) * (size_t)m * ldy);
  memcpy(mag, ay0, sizeof(float) * (size_t)m * ldy);
  ck_sparse_spmm(s, n, x, ldx, NULL, 0.5f, got, ldy);
  ck_sparse_ref_spmm(m, k, n, w, mask, x, ldx, NULL, 0.5f, want, ldy);
  ck_sparse_ref_spmm(m, k, n, aw, mask, ax, ldx, NULL, 0.5f, mag, ldy);
  check("forward_beta", ctx, got, ldy, want, ldy, mag, ldy, m, n);

  // Input gradient, beta = 0 and beta = -0.75.
  for (size_t q = 0; q < (size_t)k * ldx; q++) got[q] = NAN;
  ck_sparse_spmm_t(s, n, dy, ldy, 0.0f, got, ldx);
  ck_sparse_ref_spmm_t(m, k, n, w, mask, dy, ldy, 0.0f, want, ldx);
  ck_sparse_ref_spmm_t(m, k, n, aw, mask, ady, ldy, 0.0f, mag, ldx);
  check("input_grad", ctx, got, ldx, want, ldx, mag, ldx, k, n);
  memcpy(got, dx0, sizeof(float) * (size_t)k * ldx);
  memcpy(want, dx0, sizeof(float) * (size_t)k * ldx);
  memcpy(mag, adx0, sizeof(float) * (size_t)k * ldx);
  ck_sparse_spmm_t(s, n, dy, ldy, -0.75f, got, ldx);
  ck_sparse_ref_spmm_t(m, k, n, w, mask, dy, ldy, -0.75f, want, ldx);
  ck_sparse_ref_spmm_t(m, k, n, aw, mask, ady, ldy, 0.75f, mag, ldx);
  check("input_grad_b", ctx, got, ldx, want, ldx, mag, ldx, k, n);

  {
    // Weight gradient in value order (beta 0, then beta 2 on top), and the dense variant.
    const int64_t nnz = ck_sparse_nnz(s);
    float *vals = malloc(sizeof(float) * (size_t)(nnz + 1));
    float *dense = malloc(sizeof(float) * (size_t)m * k), *wantd = malloc(sizeof(float) * (size_t)m * k);
    float *magd = malloc(sizeof(float) * (size_t)m * k);
    for (int64_t j = 0; j < nnz; j++) vals[j] = NAN;
    ck_sparse_sddmm(s, n, dy, ldy, x, ldx, 0.0f, vals);
    ck_sparse_scatter(s, vals, dense);
    ck_sparse_ref_sddmm_dense(m, k, n, mask, dy, ldy, x, ldx, 0.0f, wantd);
    ck_sparse_ref_sddmm_dense(m, k, n, mask, ady, ldy, ax, ldx, 0.0f, magd);
    check("weight_grad", ctx, dense, k, wantd, k, magd, k, m, k);

    ck_sparse_sddmm(s, n, dy, ldy, x, ldx, 2.0f, vals); // vals = 2·g + g = 3·g
    ck_sparse_scatter(s, vals, dense);
    for (size_t q = 0; q < (size_t)m * k; q++) {
      wantd[q] *= 3.0f;
      magd[q] *= 3.0f;
    }
    check("weight_grad_b", ctx, dense, k, wantd, k, magd, k, m, k);

    float *dw = rand_floats((size_t)m * k), *adw;
    adw = abs_copy(dw, (size_t)m * k);
    memcpy(wantd, dw, sizeof(float) * (size_t)m * k);
    memcpy(magd, adw, sizeof(float) * (size_t)m * k);
    ck_sparse_sddmm_dense(s, n, dy, ldy, x, ldx, 0.25f, dw);
    ck_sparse_ref_sddmm_dense(m, k, n, mask, dy, ldy, x, ldx, 0.25f, wantd);
    ck_sparse_ref_sddmm_dense(m, k, n, mask, ady, ldy, ax, ldx, 0.25f, magd);
    check("weight_grad_d", ctx, dw, k, wantd, k, magd, k, m, k);
    free(dw);
    free(adw);
    free(vals);
    free(dense);
    free(wantd);
    free(magd);
  }

  {
    // Values change, mask stays: update in place, then forward and input gradient again.
    float *w2 = rand_floats((size_t)m * k), *aw2 = abs_copy(w2, (size_t)m * k);
    ck_sparse_update_values(s, w2);
    ck_sparse_spmm(s, n, x, ldx, NULL, 0.0f, got, ldy);
    ck_sparse_ref_spmm(m, k, n, w2, mask, x, ldx, NULL, 0.0f, want, ldy);
    ck_sparse_ref_spmm(m, k, n, aw2, mask, ax, ldx, NULL, 0.0f, mag, ldy);
    check("update+fwd", ctx, got, ldy, want, ldy, mag, ldy, m, n);
    ck_sparse_spmm_t(s, n, dy, ldy, 0.0f, got, ldx);
    ck_sparse_ref_spmm_t(m, k, n, w2, mask, dy, ldy, 0.0f, want, ldx);
    ck_sparse_ref_spmm_t(m, k, n, aw2, mask, ady, ldy, 0.0f, mag, ldx);
    check("update+bwd", ctx, got, ldx, want, ldx, mag, ldx, k, n);
    free(w2);
    free(aw2);
  }
  free(got);
  free(want);
  free(mag);
  ck_sparse_free(s);
done:
  free(w), free(mask), free(x), free(bias), free(y0), free(dy), free(dx0);
  free(aw), free(ax), free(abias), free(ay0), free(ady), free(adx0);
}

// A plane source over a stored array (its state), as a layer after the convolution would give.
static void stored_plane(const ck_plane_source *source, int image, int channel, float *out) {
  const size_t hw = (size_t)source->h * source->w;
  memcpy(out, (const float *)source->state + ((size_t)image * source->c + channel) * hw,
         sizeof(float) * hw);
}

// An image observer that copies each image it is given and counts the times (threads give
// distinct images, so the counts need no lock).
typedef struct {
  float *copy;
  int *times;
  size_t image_floats;
} image_copy;

static void copy_image(const ck_image_observer *observer, int image, const float *values) {
  const image_copy *c = observer->state;
  memcpy(c->copy + (size_t)image * c->image_floats, values, sizeof(float) * c->image_floats);
  c->times[image]++;
}

/// A copying observer for `images` images of `image_floats` floats (image_copy_free it).
static image_copy image_copy_new(int images, size_t image_floats) {
  image_copy c = {malloc(sizeof(float) * ((size_t)images * image_floats + 1)),
                  calloc((size_t)images + 1, sizeof(int)), image_floats};
  return c;
}

/// 1 when every one of `images` images was seen exactly `times` times, and (times 1) the copies
/// equal `want`; the counts start again from 0.
static int image_copy_seen(image_copy *c, int images, int times, const float *want) {
  int ok = times != 1 || !memcmp(c->copy, want, sizeof(float) * (size_t)images * c->image_floats);
  for (int b = 0; b < images; b++) ok = ok && c->times[b] == times;
  memset(c->times, 0, sizeof(int) * ((size_t)images + 1));
  return ok;
}

static void image_copy_free(image_copy *c) { free(c->copy), free(c->times); }

// The fused entry points against the plain ones on stored tensors, bit for bit (every path:
// mapped/produced as read, or made in full first): the forward of map(x) and the backward of
// map(x) with dY stored or produced by a source, for a map with and without ReLU. x is put on
// a grid and the maps use powers of two, so x·scale + shift is exact with or without a fused
// multiply-add. Misused calls (both dY forms or neither, a source of other dimensions) write
// nothing.
static void test_conv_fused(const ck_conv_shape *sh, const ck_sparse *s, const float *x0,
                            const float *dy, const char *ctx) {
  const int C = sh->in_channels, O = sh->out_channels;
  const size_t hw = (size_t)sh->in_height * sh->in_width, xs = (size_t)sh->batch * C * hw;
  const size_t ys = (size_t)sh->batch * O * sh->out_height * sh->out_width;
  const size_t nnz = (size_t)ck_sparse_nnz(s) + 1;
  float *x = malloc(sizeof(float) * (xs + 1)), *xm = malloc(sizeof(float) * (xs + 1));
  float *scale = malloc(sizeof(float) * C), *shift = malloc(sizeof(float) * C);
  float *y0 = calloc(ys + 1, sizeof(float)), *y1 = calloc(ys + 1, sizeof(float));
  float *dx0 = calloc(xs + 1, sizeof(float)), *dx1 = calloc(xs + 1, sizeof(float));
  float *dw0 = calloc(nnz, sizeof(float)), *dw1 = calloc(nnz, sizeof(float));
  float *db0 = calloc((size_t)O, sizeof(float)), *db1 = calloc((size_t)O, sizeof(float));
  for (size_t i = 0; i < xs; i++) x[i] = roundf(x0[i] * 64.0f) / 64.0f;
  const float scales[] = {0.5f, 2.0f, -1.0f, 0.25f, -0.5f};
  for (int c = 0; c < C; c++) scale[c] = scales[c % 5], shift[c] = (float)(c % 7 - 3) / 8.0f;
  ck_plane_source source = {stored_plane, dy, sh->batch, O, sh->out_height, sh->out_width};
  int ok = 1;
  for (int relu = 0; relu <= 1; relu++) {
    const ck_channel_affine map = {scale, shift, relu};
    for (size_t i = 0; i < xs; i++) {
      const float v = x[i] * scale[(i / hw) % (size_t)C] + shift[(i / hw) % (size_t)C];
      xm[i] = relu && v < 0.0f ? 0.0f : v;
    }
    ck_sparse_conv2d_forward(sh, s, xm, NULL, y0);
    { // An observer is given every finished output image once.
      image_copy copy = image_copy_new(sh->batch, ys / (size_t)sh->batch);
      const ck_image_observer observer = {copy_image, &copy};
      ck_sparse_conv2d_forward_mapped(sh, s, x, &map, NULL, &observer, y1);
      ok = ok && !memcmp(y0, y1, sizeof(float) * ys) && image_copy_seen(&copy, sh->batch, 1, y1);
      image_copy_free(&copy);
    }
    // all outputs; no bias gradient; no dx — dY stored and produced, x mapped and not
    for (int variant = 0; variant < 6; variant++) {
      float *db_want = variant % 3 == 0 ? db0 : NULL, *dx_want = variant % 3 == 2 ? NULL : dx0;
      const int produced = variant >= 3;
      ck_sparse_conv2d_backward(sh, s, xm, dy, dx_want, dw0, db_want);
      ck_sparse_conv2d_backward_fused(sh, s, x, &map, produced ? NULL : dy,
                                      produced ? &source : NULL, dx_want ? dx1 : NULL, NULL, NULL,
                                      dw1, db_want ? db1 : NULL);
      if (dx_want) ok = ok && !memcmp(dx0, dx1, sizeof(float) * xs);
      ok = ok && !memcmp(dw0, dw1, sizeof(float) * (nnz - 1));
      if (db_want) ok = ok && !memcmp(db0, db1, sizeof(float) * (size_t)O);
    }
  }
  ck_sparse_conv2d_backward(sh, s, x, dy, dx0, dw0, NULL); // unmapped, from a source
  ck_sparse_conv2d_backward_fused(sh, s, x, NULL, NULL, &source, dx1, NULL, NULL, dw1, NULL);
  ok = ok && !memcmp(dx0, dx1, sizeof(float) * xs) && !memcmp(dw0, dw1, sizeof(float) * (nnz - 1));
  // An addend: dx + add, the addition as a separate pass would do it.
  for (size_t i = 0; i < xs; i++) xm[i] = x0[i] * 0.5f - 0.25f, dx0[i] += xm[i];
  ck_sparse_conv2d_backward_fused(sh, s, x, NULL, dy, NULL, dx1, xm, NULL, NULL, NULL);
  ok = ok && !memcmp(dx0, dx1, sizeof(float) * xs);
  // An observer is given every finished image of dx once (addend included), dY stored or
  // produced; none without dx.
  for (int produced = 0; produced <= 1; produced++) {
    image_copy copy = image_copy_new(sh->batch, xs / (size_t)sh->batch);
    const ck_image_observer observer = {copy_image, &copy};
    ck_sparse_conv2d_backward_fused(sh, s, x, NULL, produced ? NULL : dy, produced ? &source : NULL,
                                    dx1, xm, &observer, NULL, NULL);
    ok = ok && !memcmp(dx0, dx1, sizeof(float) * xs) && image_copy_seen(&copy, sh->batch, 1, dx1);
    ck_sparse_conv2d_backward_fused(sh, s, x, NULL, dy, NULL, NULL, NULL, &observer, dw1, NULL);
    ok = ok && image_copy_seen(&copy, sh->batch, 0, NULL);
    image_copy_free(&copy);
  }
  for (size_t i = 0; i < xs; i++) dx1[i] = -7.0f;
  ck_sparse_conv2d_backward_fused(sh, s, x, NULL, dy, &source, dx1, NULL, NULL, NULL, NULL);
  ck_sparse_conv2d_backward_fused(sh, s, x, NULL, NULL, NULL, dx1, NULL, NULL, NULL, NULL);
  source.c = O + 1;
  ck_sparse_conv2d_backward_fused(sh, s, x, NULL, NULL, &source, dx1, NULL, NULL, NULL, NULL);
  for (size_t i = 0; i < xs; i++) ok = ok && dx1[i] == -7.0f;
  if (ok) passed++; else failed++;
  printf("%s %-14s %s\n", ok ? "ok  " : "FAIL", "conv_fused", ctx);
  free(x), free(xm), free(scale), free(shift), free(y0), free(y1), free(dx0), free(dx1);
  free(dw0), free(dw1), free(db0), free(db1);
}

// Outputs streamed out image by image (CK_STREAM_STORES=always) against written in place
// (never), bit for bit: the forward with an observer, the backward with an addend and an
// observer, dY stored and produced.
static void test_conv_streamed(const ck_conv_shape *sh, const ck_sparse *s, const float *x,
                               const float *dy, const char *ctx) {
  const size_t xs = (size_t)sh->batch * sh->in_channels * sh->in_height * sh->in_width;
  const size_t ys = (size_t)sh->batch * sh->out_channels * sh->out_height * sh->out_width;
  const size_t nnz = (size_t)ck_sparse_nnz(s) + 1;
  ck_plane_source source = {stored_plane, dy, sh->batch, sh->out_channels, sh->out_height,
                            sh->out_width};
  float *y[2], *dx[2], *dw[2], *add = rand_floats(xs);
  image_copy ys_seen[2], dxs_seen[2];
  int ok = 1;
  for (int mode = 0; mode < 2; mode++) {
    setenv("CK_STREAM_STORES", mode ? "always" : "never", 1);
    y[mode] = calloc(ys + 1, sizeof(float)), dx[mode] = calloc(xs + 1, sizeof(float));
    dw[mode] = calloc(nnz, sizeof(float));
    ys_seen[mode] = image_copy_new(sh->batch, ys / (size_t)sh->batch);
    dxs_seen[mode] = image_copy_new(sh->batch, xs / (size_t)sh->batch);
    const ck_image_observer yo = {copy_image, &ys_seen[mode]}, dxo = {copy_image, &dxs_seen[mode]};
    ck_sparse_conv2d_forward_mapped(sh, s, x, NULL, NULL, &yo, y[mode]);
    ok = ok && image_copy_seen(&ys_seen[mode], sh->batch, 1, y[mode]);
    for (int produced = 0; produced <= 1; produced++) {
      ck_sparse_conv2d_backward_fused(sh, s, x, NULL, produced ? NULL : dy,
                                      produced ? &source : NULL, dx[mode], add, &dxo, dw[mode],
                                      NULL);
      ok = ok && image_copy_seen(&dxs_seen[mode], sh->batch, 1, dx[mode]);
    }
  }
  unsetenv("CK_STREAM_STORES");
  ok = ok && !memcmp(y[0], y[1], sizeof(float) * ys) && !memcmp(dx[0], dx[1], sizeof(float) * xs) &&
       !memcmp(dw[0], dw[1], sizeof(float) * (nnz - 1));
  if (ok) passed++; else failed++;
  printf("%s %-14s %s\n", ok ? "ok  " : "FAIL", "conv_streamed", ctx);
  for (int mode = 0; mode < 2; mode++) {
    free(y[mode]), free(dx[mode]), free(dw[mode]);
    image_copy_free(&ys_seen[mode]), image_copy_free(&dxs_seen[mode]);
  }
  free(add);
}

// ck_stream_store against memcpy: every start offset in a 64-byte line, lengths around the
// vector width and a long one; the floats around the target untouched.
static void test_stream_store(void) {
  const size_t lengths[] = {0, 1, 5, 15, 16, 17, 31, 32, 33, 47, 100, 1000, 65537};
  float *src = rand_floats(65537 + 64), *dst = malloc(sizeof(float) * (65537 + 96));
  int ok = 1;
  for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
    for (int start = 0; start < 16; start++) {
      const size_t n = lengths[li];
      for (size_t i = 0; i < n + 96; i++) dst[i] = -1.0f;
      ck_stream_store(dst + 16 + start, src + start, n);
      for (size_t i = 0; i < n + 96; i++) {
        const int inside = i >= (size_t)16 + start && i < (size_t)16 + start + n;
        ok = ok && (inside ? dst[i] == src[i - 16] : dst[i] == -1.0f);
      }
    }
  if (ok) passed++; else failed++;
  printf("%s %-14s every offset in a line, 13 lengths\n", ok ? "ok  " : "FAIL", "stream_store");
  free(src), free(dst);
}

static void test_conv(ck_conv_shape sh, double sparsity, int threads, int isa) {
  sh.out_height = (sh.in_height + 2 * sh.padding - sh.kernel_h) / sh.stride + 1;
  sh.out_width = (sh.in_width + 2 * sh.padding - sh.kernel_w) / sh.stride + 1;
  char ctx[200];
  const char *sddmm = getenv("CK_SPARSE_SDDMM");
  snprintf(ctx, sizeof ctx, "B=%d C=%d %dx%d O=%d k=%dx%d s=%d p=%d sp=%.2f thr=%d isa=%d%s%s",
           sh.batch, sh.in_channels, sh.in_height, sh.in_width, sh.out_channels, sh.kernel_h,
           sh.kernel_w, sh.stride, sh.padding, sparsity, threads, isa, jit_label(),
           sddmm ? " sddmm=windows" : "");
  omp_set_num_threads(threads);
  ck_sparse_set_isa(isa);
  const int O = sh.out_channels, K = sh.in_channels * sh.kernel_h * sh.kernel_w;
  const size_t xs = (size_t)sh.batch * sh.in_channels * sh.in_height * sh.in_width;
  const size_t ys = (size_t)sh.batch * O * sh.out_height * sh.out_width, ws = (size_t)O * K;
  float *w = rand_floats(ws), *mask = make_mask(O, K, sparsity, 0), *x = rand_floats(xs);
  float *bias = rand_floats(O), *dy = rand_floats(ys);
  float *aw = abs_copy(w, ws), *ax = abs_copy(x, xs), *abias = abs_copy(bias, O);
  float *ady = abs_copy(dy, ys);
  float *y = malloc(sizeof(float) * ys), *yr = malloc(sizeof(float) * ys), *ym = malloc(sizeof(float) * ys);
  ck_sparse *s = ck_sparse_create(O, K, w, mask);
  ck_sparse_conv2d_forward(&sh, s, x, bias, y);
  ck_sparse_ref_conv2d_forward(&sh, w, mask, x, bias, yr);
  ck_sparse_ref_conv2d_forward(&sh, aw, mask, ax, abias, ym);
  check("conv_forward", ctx, y, 1, yr, 1, ym, 1, (int)ys, 1);

  float *dx = malloc(sizeof(float) * xs), *dxr = malloc(sizeof(float) * xs), *dxm = malloc(sizeof(float) * xs);
  float *dwv = malloc(sizeof(float) * (size_t)(ck_sparse_nnz(s) + 1));
  float *dw = malloc(sizeof(float) * ws), *dwr = malloc(sizeof(float) * ws), *dwm = malloc(sizeof(float) * ws);
  float *db = malloc(sizeof(float) * O), *dbr = malloc(sizeof(float) * O), *dbm = malloc(sizeof(float) * O);
  ck_sparse_conv2d_backward(&sh, s, x, dy, dx, dwv, db);
  ck_sparse_scatter(s, dwv, dw);
  ck_sparse_ref_conv2d_backward(&sh, w, mask, x, dy, dxr, dwr, dbr);
  ck_sparse_ref_conv2d_backward(&sh, aw, mask, ax, ady, dxm, dwm, dbm);
  check("conv_dx", ctx, dx, 1, dxr, 1, dxm, 1, (int)xs, 1);
  check("conv_dw", ctx, dw, 1, dwr, 1, dwm, 1, (int)ws, 1);
  check("conv_dbias", ctx, db, 1, dbr, 1, dbm, 1, O, 1);
  // Only some outputs requested.
  ck_sparse_conv2d_backward(&sh, s, x, dy, NULL, dwv, NULL);
  ck_sparse_scatter(s, dwv, dw);
  check("conv_dw_only", ctx, dw, 1, dwr, 1, dwm, 1, (int)ws, 1);
  test_conv_fused(&sh, s, x, dy, ctx);
  // Streaming happens on the paths by image (2 threads) and does not depend on the SDDMM's form.
  if (threads == 2 && !sddmm) test_conv_streamed(&sh, s, x, dy, ctx);
  ck_sparse_free(s);
  free(w), free(mask), free(x), free(bias), free(dy), free(aw), free(ax), free(abias), free(ady);
  free(y), free(yr), free(ym), free(dx), free(dxr), free(dxm), free(dwv), free(dw), free(dwr);
  free(dwm), free(db), free(dbr), free(dbm);
}

// One weight in convolutions of many image sizes (more offset tables than the compiled
// products a matrix keeps, so the later ones fall back to packing), then new values: every
// result against the reference.
static void test_conv_geometries(int isa) {
  omp_set_num_threads(2);
  ck_sparse_set_isa(isa);
  const int O = 12, C = 5, K = C * 9;
  float *w = rand_floats((size_t)O * K), *mask = make_mask(O, K, 0.7, 1);
  ck_sparse *s = ck_sparse_create(O, K, w, mask);
  int ok = 1;
  size_t bytes[12] = {0}; // held by the format after each size of the first round
  for (int round = 0; round < 2; round++) {
    if (round == 1) { // values change: every compiled product must follow
      for (int i = 0; i < O * K; i++) w[i] = 2.0f * w[i] - 0.25f;
      ck_sparse_update_values(s, w);
    }
    for (int hw = 4; hw <= 11; hw++) {
      ck_conv_shape sh = {3, C, hw, hw + 1, O, 3, 3, 1, 1, hw, hw + 1};
      const size_t xs = (size_t)3 * C * hw * (hw + 1), ys = (size_t)3 * O * hw * (hw + 1);
      float *x = rand_floats(xs), *dy = rand_floats(ys);
      float *y = malloc(sizeof(float) * ys), *yr = malloc(sizeof(float) * ys);
      float *dx = malloc(sizeof(float) * xs), *dxr = malloc(sizeof(float) * xs);
      float *dwr = malloc(sizeof(float) * (size_t)O * K), dbr[12];
      ck_sparse_conv2d_forward(&sh, s, x, NULL, y);
      ck_sparse_ref_conv2d_forward(&sh, w, mask, x, NULL, yr);
      ck_sparse_conv2d_backward(&sh, s, x, dy, dx, NULL, NULL);
      ck_sparse_ref_conv2d_backward(&sh, w, mask, x, dy, dxr, dwr, dbr);
      if (round == 0) bytes[hw] = ck_sparse_bytes(s);
      for (size_t i = 0; i < ys; i++) ok = ok && fabsf(y[i] - yr[i]) <= 1e-4f * (1.0f + fabsf(yr[i]));
      for (size_t i = 0; i < xs; i++)
        ok = ok && fabsf(dx[i] - dxr[i]) <= 1e-4f * (1.0f + fabsf(dxr[i]));
      free(x), free(dy), free(y), free(yr), free(dx), free(dxr), free(dwr);
    }
  }
  // With the compiled products: one more windowed product (forward and input gradient) per new
  // size up to the limit, none after it.
  if (isa == 2 && ck_sparse_isa() == 2 && bytes[5] > 0) {
    for (int hw = 5; hw <= 7; hw++) ok = ok && bytes[hw] > bytes[hw - 1];
    for (int hw = 8; hw <= 11; hw++) ok = ok && bytes[hw] == bytes[7];
  }
  if (ok) passed++; else failed++;
  printf("%s %-14s one weight, 8 image sizes × 2 value sets, isa=%d%s\n", ok ? "ok  " : "FAIL",
         "conv_sizes", isa, jit_label());
  ck_sparse_free(s);
  free(w), free(mask);
}

// cols × rows copy of a rows × cols array.
static float *transposed(const float *a, int rows, int cols) {
  float *t = malloc(sizeof(float) * ((size_t)rows * cols + 1));
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) t[(size_t)c * rows + r] = a[(size_t)r * cols + c];
  return t;
}

// The token-major linear products against the feature-major references (on transposed copies).
static void test_linear(int m, int k, int n, double sparsity, int holes, int threads, int isa) {
  char ctx[160];
  snprintf(ctx, sizeof ctx, "M=%d K=%d tokens=%d s=%.2f%s thr=%d isa=%d%s", m, k, n, sparsity,
           holes ? "+holes" : "", threads, isa, jit_label());
  omp_set_num_threads(threads);
  ck_sparse_set_isa(isa);
  float *w = rand_floats((size_t)m * k), *mask = make_mask(m, k, sparsity, holes);
  float *x = rand_floats((size_t)n * k), *dy = rand_floats((size_t)n * m), *bias = rand_floats(m);
  float *aw = abs_copy(w, (size_t)m * k), *ax = abs_copy(x, (size_t)n * k);
  float *ady = abs_copy(dy, (size_t)n * m), *abias = abs_copy(bias, m);
  float *xt = transposed(x, n, k), *axt = transposed(ax, n, k);
  float *dyt = transposed(dy, n, m), *adyt = transposed(ady, n, m);
  ck_sparse *s = ck_sparse_create(m, k, w, mask);
  const size_t big = (size_t)(m > k ? m : k) * (n > 0 ? n : 1) + 1;
  float *got = malloc(sizeof(float) * big), *want_t = malloc(sizeof(float) * big);
  float *mag_t = malloc(sizeof(float) * big);

  for (size_t q = 0; q < (size_t)n * m; q++) got[q] = NAN;
  ck_sparse_linear_forward(s, n, x, bias, got);
  ck_sparse_ref_spmm(m, k, n, w, mask, xt, n, bias, 0.0f, want_t, n);
  ck_sparse_ref_spmm(m, k, n, aw, mask, axt, n, abias, 0.0f, mag_t, n);
  float *want = transposed(want_t, m, n), *mag = transposed(mag_t, m, n);
  check("linear_fwd", ctx, got, m, want, m, mag, m, n, m);
  free(want), free(mag);

  for (size_t q = 0; q < (size_t)n * k; q++) got[q] = NAN;
  const int64_t nnz = ck_sparse_nnz(s);
  float *vals = malloc(sizeof(float) * (size_t)(nnz + 1)), *db = malloc(sizeof(float) * m);
  for (int64_t j = 0; j < nnz; j++) vals[j] = NAN;
  for (int i = 0; i < m; i++) db[i] = NAN;
  ck_sparse_linear_backward(s, n, x, dy, got, NULL, vals, db);
  ck_sparse_ref_spmm_t(m, k, n, w, mask, dyt, n, 0.0f, want_t, n);
  ck_sparse_ref_spmm_t(m, k, n, aw, mask, adyt, n, 0.0f, mag_t, n);
  want = transposed(want_t, k, n), mag = transposed(mag_t, k, n);
  check("linear_dx", ctx, got, k, want, k, mag, k, n, k);
  free(want), free(mag);
  { // An observer is given every token's finished dx row once (the same dx); none without dx.
    float *again = malloc(sizeof(float) * ((size_t)n * k + 1));
    image_copy copy = image_copy_new(n, (size_t)k);
    const ck_image_observer observer = {copy_image, &copy};
    ck_sparse_linear_backward(s, n, x, dy, again, &observer, NULL, NULL);
    int ok = !memcmp(got, again, sizeof(float) * (size_t)n * k) &&
             image_copy_seen(&copy, n, 1, again);
    ck_sparse_linear_backward(s, n, x, dy, NULL, &observer, NULL, db);
    ok = ok && image_copy_seen(&copy, n, 0, NULL);
    if (ok) passed++; else failed++;
    printf("%s %-14s %s\n", ok ? "ok  " : "FAIL", "linear_dx_seen", ctx);
    free(again);
    image_copy_free(&copy);
  }

  float *dense = malloc(sizeof(float) * (size_t)m * k), *wantd = malloc(sizeof(float) * (size_t)m * k);
  float *magd = malloc(sizeof(float) * (size_t)m * k);
  ck_sparse_scatter(s, vals, dense);
  ck_sparse_ref_sddmm_dense(m, k, n, mask, dyt, n, xt, n, 0.0f, wantd);
  ck_sparse_ref_sddmm_dense(m, k, n, mask, adyt, n, axt, n, 0.0f, magd);
  check("linear_dw", ctx, dense, k, wantd, k, magd, k, m, k);

  float *dbr = malloc(sizeof(float) * m), *dbm = malloc(sizeof(float) * m);
  for (int i = 0; i < m; i++) {
    double sum = 0.0, mg = 0.0;
    for (int t = 0; t < n; t++) sum += dy[(size_t)t * m + i], mg += ady[(size_t)t * m + i];
    dbr[i] = (float)sum, dbm[i] = (float)mg;
  }
  check("linear_db", ctx, db, 1, dbr, 1, dbm, 1, m, 1);

  // One output at a time (the others NULL) gives the same values.
  for (int64_t j = 0; j < nnz; j++) vals[j] = NAN;
  ck_sparse_linear_backward(s, n, x, dy, NULL, NULL, vals, NULL);
  ck_sparse_scatter(s, vals, dense);
  check("linear_dw_only", ctx, dense, k, wantd, k, magd, k, m, k);
  for (int i = 0; i < m; i++) db[i] = NAN;
  ck_sparse_linear_backward(s, n, x, dy, NULL, NULL, NULL, db);
  check("linear_db_only", ctx, db, 1, dbr, 1, dbm, 1, m, 1);

  ck_sparse_free(s);
  free(w), free(mask), free(x), free(dy), free(bias), free(aw), free(ax), free(ady), free(abias);
  free(xt), free(axt), free(dyt), free(adyt), free(got), free(want_t), free(mag_t), free(vals);
  free(db), free(dense), free(wantd), free(magd), free(dbr), free(dbm);
}

// Host runners for ck_set_parallel_runner: one that runs fn on `threads` POSIX threads, one that
// gives a single thread whatever is asked (a pool may give fewer threads than requested).
static int runner_calls = 0;
static void *pthread_body(void *p) {
  void **job = p;
  ((void (*)(void *))job[0])(job[1]);
  return NULL;
}
static void pthread_runner(void (*fn)(void *), void *data, unsigned threads, unsigned flags) {
  (void)flags;
  __atomic_fetch_add(&runner_calls, 1, __ATOMIC_RELAXED);
  pthread_t ids[16];
  void *job[2] = {(void *)fn, data};
  unsigned started = threads > 16 ? 16 : threads;
  for (unsigned t = 1; t < started; t++) pthread_create(&ids[t], NULL, pthread_body, job);
  fn(data);
  for (unsigned t = 1; t < started; t++) pthread_join(ids[t], NULL);
}
static void single_runner(void (*fn)(void *), void *data, unsigned threads, unsigned flags) {
  (void)threads, (void)flags;
  __atomic_fetch_add(&runner_calls, 1, __ATOMIC_RELAXED);
  fn(data);
}

// The layer products give bit-identical results on OpenMP, on a host's pool and on a pool that
// gives one thread.
static void test_runner(void) {
  omp_set_num_threads(2);
  ck_sparse_set_isa(isa_default);
  const int m = 96, k = 200, n = 300;
  float *w = rand_floats((size_t)m * k), *mask = make_mask(m, k, 0.8, 0);
  float *x = rand_floats((size_t)n * k), *dy = rand_floats((size_t)n * m), *bias = rand_floats(m);
  ck_sparse *s = ck_sparse_create(m, k, w, mask);
  const int64_t nnz = ck_sparse_nnz(s);
  ck_conv_shape sh = {4, 16, 14, 14, 32, 3, 3, 1, 1, 0, 0};
  sh.out_height = 14, sh.out_width = 14;
  const int cK = 16 * 9;
  float *cw = rand_floats((size_t)32 * cK), *cmask = make_mask(32, cK, 0.9, 0);
  ck_sparse *cs = ck_sparse_create(32, cK, cw, cmask);
  const size_t cxs = (size_t)4 * 16 * 14 * 14, cys = (size_t)4 * 32 * 14 * 14;
  float *cx = rand_floats(cxs), *cdy = rand_floats(cys);
  const int64_t cnnz = ck_sparse_nnz(cs);
  // Outputs of one configuration, concatenated.
  const size_t total = (size_t)n * m + (size_t)n * k + nnz + m + cys + cxs + cnnz + 32;
  float *out[3];
  ck_parallel_runner runners[3] = {NULL, pthread_runner, single_runner};
  int calls_ok = 1;
  for (int r = 0; r < 3; r++) {
    float *o = out[r] = malloc(sizeof(float) * total);
    ck_set_parallel_runner(runners[r]);
    runner_calls = 0;
    ck_sparse_linear_forward(s, n, x, bias, o);
    o += (size_t)n * m;
    ck_sparse_linear_backward(s, n, x, dy, o, NULL, o + (size_t)n * k, o + (size_t)n * k + nnz);
    o += (size_t)n * k + nnz + m;
    ck_sparse_conv2d_forward(&sh, cs, cx, NULL, o);
    ck_sparse_conv2d_backward(&sh, cs, cx, cdy, o + cys, o + cys + cxs, o + cys + cxs + cnnz);
    if (ck_parallel_runner_now() != runners[r] || (runners[r] && runner_calls == 0)) calls_ok = 0;
  }
  ck_set_parallel_runner(NULL);
  int ok = calls_ok && memcmp(out[0], out[1], sizeof(float) * total) == 0 &&
           memcmp(out[0], out[2], sizeof(float) * total) == 0;
  if (ok) passed++; else failed++;
  printf("%s %-14s OpenMP, a host pool and a one-thread pool agree bit for bit\n",
         ok ? "ok  " : "FAIL", "runner");
  for (int r = 0; r < 3; r++) free(out[r]);
  ck_sparse_free(s), ck_sparse_free(cs);
  free(w), free(mask), free(x), free(dy), free(bias), free(cw), free(cmask), free(cx), free(cdy);
}

// The scratch cache: aligned, sized, reused after a give, distinct while held, safe from threads.
static void test_scratch(void) {
  int ok = ck_scratch_take(0) == NULL;
  float *a = ck_scratch_take(100000), *b = ck_scratch_take(100000);
  ok = ok && a && b && a != b && ((uintptr_t)a % 64) == 0 && ((uintptr_t)b % 64) == 0;
  for (int i = 0; ok && i < 100000; i++) a[i] = 1.0f, b[i] = 2.0f; // whole buffers writable
  ck_scratch_give(a);
  float *c = ck_scratch_take(99000); // fits the buffer just given back
  ok = ok && c == a;
  float *d = ck_scratch_take(300000); // larger than anything idle: a new one
  ok = ok && d && d != a && d != b;
  for (int i = 0; ok && i < 300000; i++) d[i] = 3.0f;
  ck_scratch_give(b), ck_scratch_give(c), ck_scratch_give(d), ck_scratch_give(NULL);
  int distinct = 1;
#pragma omp parallel num_threads(4) reduction(&& : distinct)
  for (int r = 0; r < 200; r++) {
    const size_t n = 1000 + (size_t)(r * 7919 % 50000);
    float *p = ck_scratch_take(n);
    const float tag = (float)omp_get_thread_num();
    for (size_t i = 0; i < n; i++) p[i] = tag;
    for (size_t i = 0; i < n; i++) distinct = distinct && p[i] == tag; // nobody else wrote it
    ck_scratch_give(p);
  }
  ok = ok && distinct;
  if (ok) passed++; else failed++;
  printf("%s %-14s take/give: aligned, reused, private to its holder under 4 threads\n",
         ok ? "ok  " : "FAIL", "scratch");
}

static void test_dispatch(void) {
  // The decision is monotone in density and never chooses sparse for a fully dense weight.
  int ok = 1;
  const int shapes[][3] = {{256, 2304, 3136}, {512, 4608, 784}, {1024, 1024, 256}, {64, 27, 1024}};
  for (int q = 0; q < 4; q++)
    for (int op = 0; op < 3; op++) {
      int prev = 1;
      for (double d = 0.0; d <= 1.0001; d += 0.01) {
        int p = ck_sparse_prefer((ck_sparse_op)op, shapes[q][0], shapes[q][1], shapes[q][2], d);
        if (p && !prev) ok = 0;
        prev = p;
      }
      if (ck_sparse_prefer((ck_sparse_op)op, shapes[q][0], shapes[q][1], shapes[q][2], 1.0)) ok = 0;
    }
  if (ok) passed++; else failed++;
  printf("%s %-14s monotone in density, dense at density 1\n", ok ? "ok  " : "FAIL", "dispatch");
}

// The instruction sets to test, best first: with COPPICE_ISA=generic|avx2|avx512|neon only that
// one (an error when the CPU lacks it), else every one the CPU has. Returns 0, or -1 on error.
static int select_isas(int *isas, int *nisas) {
  const char *want = getenv("COPPICE_ISA");
  const int best = ck_sparse_isa(); // the library applies COPPICE_ISA itself
  if (want && *want && strcmp(want, "auto") != 0) {
    if (strcmp(ck_sparse_isa_name(best), want) != 0) {
      printf("FAIL COPPICE_ISA=%s: this CPU runs %s at best\n", want, ck_sparse_isa_name(best));
      return -1;
    }
    isas[0] = best;
    *nisas = 1;
  } else {
    // COPPICE_TEST_ISAS=ends (the sanitizer run): the best instruction set and the generic one
    // only — the AVX2 kernels are compiled from the same source as the AVX-512 ones
    // (arch/vec_kernels.h), and every set is tested without the sanitizers.
    const char *which = getenv("COPPICE_TEST_ISAS");
    const int ends = which && !strcmp(which, "ends");
    for (int isa = best; isa >= 0; isa--)
      if ((!ends || isa == best || isa == 0) && ck_sparse_set_isa(isa) == isa)
        isas[(*nisas)++] = isa;
    ck_sparse_set_isa(-1);
  }
  printf("instruction sets tested:");
  for (int q = 0; q < *nisas; q++) printf(" %s", ck_sparse_isa_name(isas[q]));
  printf("\n");
  return 0;
}

int main(void) {
  const int shapes[][3] = {{1, 1, 1},     {3, 5, 7},      {17, 130, 33},  {64, 300, 65},
                           {129, 257, 100}, {200, 1000, 17}, {33, 64, 1},   {256, 129, 300},
                           {5, 1500, 129},  {300, 40, 260},  {70, 384, 64}, {2, 2, 500}};
  const int nshapes = sizeof shapes / sizeof shapes[0];
  const double sparsities[] = {0.0, 0.5, 0.9, 0.99, 1.0};
  int isas[4], nisas = 0;
  if (select_isas(isas, &nisas) != 0) return 1;
  // COPPICE_TEST_QUICK=1 (the runs under an emulator): the products under 2 threads only.
  const char *quick = getenv("COPPICE_TEST_QUICK");
  const int min_threads = quick && !strcmp(quick, "1") ? 2 : 1;
  for (int qi = 0; qi < nisas; qi++)
    for (int jit = isas[qi] == 2; jit >= 0; jit--)
      for (int threads = min_threads; threads <= 2; threads++)
        for (int q = 0; q < nshapes; q++)
          for (int si = 0; si < 5; si++) {
            setenv("CK_SPARSE_JIT", jit ? "1" : "0", 1);
            test_products(shapes[q][0], shapes[q][1], shapes[q][2], sparsities[si],
                          (q + si) % 2 == 1, threads, isas[qi]);
          }

  const int linears[][3] = {{1, 1, 1},   {3, 5, 7},    {17, 130, 33}, {64, 300, 65},
                            {48, 96, 1031}, {33, 64, 1}, {256, 129, 300}, {300, 40, 260},
                            {5, 1500, 129}, {7, 3, 0},
                            // more inputs than the compiled products take in this path
                            {9, 2100, 70}};
  const int nlinears = sizeof linears / sizeof linears[0];
  for (int qi = 0; qi < nisas; qi++)
    for (int jit = isas[qi] == 2; jit >= 0; jit--)
      for (int threads = min_threads; threads <= 2; threads++)
        for (int q = 0; q < nlinears; q++)
          for (int si = 0; si < 5; si++) {
            setenv("CK_SPARSE_JIT", jit ? "1" : "0", 1);
            test_linear(linears[q][0], linears[q][1], linears[q][2], sparsities[si],
                        (q + si) % 2 == 1, threads, isas[qi]);
          }

  const ck_conv_shape convs[] = {
      {3, 3, 9, 9, 5, 3, 3, 1, 1, 0, 0},   {2, 4, 7, 8, 6, 3, 3, 2, 0, 0, 0},
      {1, 8, 10, 10, 16, 3, 3, 1, 1, 0, 0}, {5, 16, 6, 6, 12, 1, 1, 1, 0, 0, 0},
      {4, 16, 14, 14, 32, 3, 3, 1, 1, 0, 0}, {2, 3, 11, 13, 4, 5, 3, 2, 2, 0, 0},
      // Stride 2 with padding, as ResNet-20's stage transitions (the direct method's phase
      // planes), even and odd sizes.
      {4, 16, 28, 28, 32, 3, 3, 2, 1, 0, 0}, {3, 5, 15, 9, 7, 3, 3, 2, 1, 0, 0}};
  const int nconvs = sizeof convs / sizeof convs[0];
  const double conv_sp[] = {0.0, 0.5, 0.9, 1.0};
  // The direct method's weight gradient on its own choice of SDDMM, then on the windowed one
  // everywhere (CK_SPARSE_SDDMM; the label says which).
  for (int windows = 0; windows <= 1; windows++)
    for (int qi = 0; qi < nisas; qi++)
      for (int jit = isas[qi] == 2; jit >= 0; jit--)
        for (int threads = min_threads; threads <= 2; threads++)
          for (int q = 0; q < nconvs; q++)
            for (int si = 0; si < 4; si++) {
              setenv("CK_SPARSE_JIT", jit ? "1" : "0", 1);
              if (windows)
                setenv("CK_SPARSE_SDDMM", "windows", 1);
              else
                unsetenv("CK_SPARSE_SDDMM");
              test_conv(convs[q], conv_sp[si], threads, isas[qi]);
            }
  unsetenv("CK_SPARSE_SDDMM");
  for (int qi = 0; qi < nisas; qi++) {
    setenv("CK_SPARSE_JIT", "1", 1);
    test_conv_geometries(isas[qi]);
  }
  unsetenv("CK_SPARSE_JIT");
  if (nisas == 1) isa_default = isas[0];
  ck_sparse_set_isa(isa_default);
  test_dispatch();
  test_runner();
  test_scratch();
  test_stream_store();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
