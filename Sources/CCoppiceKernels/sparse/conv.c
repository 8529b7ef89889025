// Sparse 2-D convolution (NCHW input, OIHW weight as the M = out_channels × K = in·kh·kw
// sparse matrix), built on the products of spmm.c and sddmm.c.
//
// Two ways to feed the products, per image:
//  * direct (stride 1 and 2, the default there): the image is copied once into a zero-padded
//    buffer of Hp×Wp planes (stride 2: of its 2×2 phase planes, see `padded`, so every window is
//    again one contiguous run and everything below holds with the phase width for Wp).
//    Computing every output row over the full padded width Wp (OH·Wp outputs,
//    the last Wp−OW of each row are thrown away), the "column matrix" row of (c, i, j) is just
//    the window of the padded buffer starting at c·Hp·Wp + i·Wp + j — no im2col at all; the
//    products read those overlapping windows through a row-offset table (the compiled product
//    has the offsets in its loads and, for outputs at least ROWS_MIN_WIDTH wide, writes the
//    compact rows directly: direct_product). The input gradient of a "same" convolution is
//    the convolution of the padded dY by the flipped weight (conv_flip.c, backward_flipped);
//    otherwise each row of Wᵀ·dY is added back at its window (col2im as K contiguous
//    additions). Measured on the cnn layers at batch 128 (2 threads, AVX-512, 90% sparsity)
//    the direct method was 2–3× faster than im2col already before the compiled windows,
//    im2col's many short row copies costing more than the sparse product; on ResNet-20's
//    stride-2 layers (16→32 channels at 28×28, 32→64 at 14×14) the phase planes took forward +
//    backward from 5.8 to 2.3 ms and from 3.5 to 1.6 ms at 90%.
//  * im2col (any stride; forced with CK_SPARSE_CONV=im2col in the environment): per image a
//    K × (OH·OW) buffer, then the products on it, col2im for the input gradient.
// Whole images are split over threads when the batch has at least as many images as threads
// (weight and bias gradients go to private accumulators, summed at the end); otherwise images
// are processed one after another with the parallel products.
#include "sparse/internal.h"

#include "ck_affine.h"
#include "ck_vector16.h"

#include <string.h>

typedef struct {
  int B, C, H, W, O, KH, KW, S, PAD, OH, OW, K, N;
} geom;

/// Fills g from shape s and checks it against w (O rows, C·KH·KW columns); 0, or -1 when invalid.
static int make_geom(const ck_conv_shape *s, const ck_sparse *w, geom *g) {
  g->B = s->batch;
  g->C = s->in_channels;
  g->H = s->in_height;
  g->W = s->in_width;
  g->O = s->out_channels;
  g->KH = s->kernel_h;
  g->KW = s->kernel_w;
  g->S = s->stride;
  g->PAD = s->padding;
  if (g->B < 0 || g->C <= 0 || g->S <= 0 || g->PAD < 0 || g->KH <= 0 || g->KW <= 0) return -1;
  g->OH = (g->H + 2 * g->PAD - g->KH) / g->S + 1;
  g->OW = (g->W + 2 * g->PAD - g->KW) / g->S + 1;
  g->K = g->C * g->KH * g->KW;
  g->N = g->OH * g->OW;
  if (g->OH <= 0 || g->OW <= 0) return -1;
  if (w->a.rows != g->O || w->a.cols != g->K) return -1;
  return 0;
}

/// 1 when the convolution is 1×1, stride 1, no padding: the image is its own column matrix.
static int is_pointwise(const geom *g) {
  return g->KH == 1 && g->KW == 1 && g->S == 1 && g->PAD == 0;
}

// Strides the direct method takes (phase planes above 1; measured on ResNet-20's stride-2
// layers, see the top of the file). Larger strides keep im2col: no model here has them.
#define DIRECT_MAX_STRIDE 2

/// 1 when the direct (padded-window) method is used: not pointwise, stride at most
/// DIRECT_MAX_STRIDE, and not CK_SPARSE_CONV=im2col.
static int use_direct(const geom *g) {
  if (g->S > DIRECT_MAX_STRIDE || is_pointwise(g)) return 0;
  const char *e = getenv("CK_SPARSE_CONV");
  return !(e && !strcmp(e, "im2col"));
}

// Direct layout. Stride 1: padded planes Hp×Wp (Hr = Hp, Wr = Wp), outputs over the padded
// width (Nw = OH·Wp). Stride S > 1: the padded image split into its S×S phases — plane
// (c, p, q) holds padded rows p, p + S, … and columns q, q + S, … (Hr×Wr each) — so the window
// of (c, i, j) is again one contiguous run, in phase plane (c, i mod S, j mod S) from row i / S
// and column j / S, and output row oy reads phase row oy + i / S: outputs over the phase
// width (Nw = OH·Wr), exactly as in the stride-1 layout.
typedef struct {
  int Hp, Wp;         // padded image
  int S, Hr, Wr, Nw;  // stride, rows and row stride of a (phase) plane, wide output columns
  size_t plane, size; // floats per (phase) plane; buffer floats (with a zero tail for overreads)
} padded;

// Outputs at least this wide are written straight in the compact layout by the windowed compiled
// product (each output row as 16-column tiles, the last one masked); narrower ones waste fewer
// lanes computed over the padded width and compacted afterwards (OW = 7: 7 of 16 lanes against
// 7 of 9).
#define ROWS_MIN_WIDTH 12

// Stride 1 with rows at least ROWS_MIN_WIDTH wide: the padded rows are ROW_ALIGN floats apart
// (zeros past Wp), so that every output row's 16-column tiles and the windows at column 0 of
// every kernel row start at a multiple of 64 bytes — the compiled product's loads of them do not
// cross cache lines (jit/codegen.c). Measured at 90%, batch 128: cnn conv2 (28×28) forward and
// input gradient … (see README), for 32 instead of 30 floats per padded row.
#define ROW_ALIGN 16

// Outputs (y forward, dx backward) of at least STREAM_MIN_FLOATS for the whole batch do not stay
// in cache until they are read again (by the next layer, or only in the backward): each image
// is computed into a buffer in cache, given to the observers there, and written out with
// non-temporal stores (ck_stream_store), which do not read the target's lines first.
// Measured at batch 128, 2 threads, AVX-512, alternating profiled runs (round 8): cnn 95%, the
// forwards of conv1/conv2/conv3 (12.8/25.7/12.8 MB outputs) 1.29/1.20/1.37× faster and the step
// 1.10× (medians of 10 pairs), although conv2 reads conv1's output right after. ResNet-20's
// largest outputs (6.4 MB) streamed made its step 0.99× — the residual sum reading them next lost
// more than the convolutions gained — so smaller outputs are written in place.
// CK_STREAM_STORES=always|never in the environment forces the choice (the tests check that both
// give the same values).
#define STREAM_MIN_FLOATS ((size_t)1 << 21)

/// 1 when an output of `batch_floats` floats is streamed out image by image (above).
static int streams(size_t batch_floats) {
  const char *e = getenv("CK_STREAM_STORES");
  if (e && !strcmp(e, "always")) return 1;
  if (e && !strcmp(e, "never")) return 0;
  return batch_floats >= STREAM_MIN_FLOATS;
}

// The backward by image hands out the batch in chunks of this many images (parts claimed by
// the threads as they become free), not in one fixed share per thread: with two shares one
// thread waited for the other 6.9–7.9% of the job's thread time (cnn 90%, batch 128, 2 threads,
// a host whose other tenants slow one core or the other; the job's threads timed around each
// part), with chunks of 8 images 2.6%. The weight gradient's partials are one per chunk, added
// in chunk order: the results no longer depend on the thread count.
#define BACKWARD_CHUNK 8

/// The padded-plane layout of the direct method for geometry g.
static padded make_padded(const geom *g) {
  padded d;
  d.Hp = g->H + 2 * g->PAD;
  d.Wp = g->W + 2 * g->PAD;
  d.S = g->S;
  d.Hr = (d.Hp + d.S - 1) / d.S;
  d.Wr = (d.Wp + d.S - 1) / d.S;
  if (d.S == 1 && g->OW >= ROWS_MIN_WIDTH) d.Wr = (d.Wp + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
  d.Nw = g->OH * d.Wr;
  d.plane = (size_t)d.Hr * d.Wr;
  d.size = (size_t)g->C * d.S * d.S * d.plane + (size_t)g->KW + 64;
  return d;
}

/// Start of padded pixel (y, x) of channel c in the direct layout: its phase plane, row, column.
static size_t layout_index(const padded *d, int c, int y, int x) {
  const int S = d->S;
  return ((size_t)c * S * S + (size_t)(y % S) * S + (size_t)(x % S)) * d->plane +
         (size_t)(y / S) * d->Wr + (size_t)(x / S);
}

/// Row-offset table of the direct method: entry (c, i, j) = start of that window in the padded
/// image (K entries, malloc'ed; NULL when out of memory).
static int64_t *window_offsets(const geom *g, const padded *d) {
  int64_t *off = malloc(sizeof(int64_t) * (size_t)g->K);
  if (!off) return NULL;
  for (int c = 0; c < g->C; c++)
    for (int i = 0; i < g->KH; i++)
      for (int j = 0; j < g->KW; j++)
        off[(c * g->KH + i) * g->KW + j] = (int64_t)layout_index(d, c, i, j);
  return off;
}

// The images come from the previous layer's output, mostly no longer in cache, and are read in
// rows of 7–28 floats between which the hardware prefetchers lose the stream: requesting the
// lines PREFETCH_FLOATS ahead of each row took the cnn's conv2 (32→64 channels, 28×28, 90%,
// batch 128) forward 2.95 → 2.65 ms and backward 7.4 → 6.7 ms (paired kernel runs; 512 floats
// ahead gained little, 2048–4096 the same). Prefetches never fault, past the array or not.
#define PREFETCH_FLOATS 2048

/// Prefetches the `floats` floats PREFETCH_FLOATS after row (one request per 64-byte line).
CK_INLINE void prefetch_ahead(const float *row, int floats) {
  for (int q = 0; q < floats; q += 16) __builtin_prefetch(row + PREFETCH_FLOATS + q);
}

// Rows narrower than 16 floats (ResNet-20's 7×7 planes: 9-float padded rows) leave the
// auto-vectoriser's 16-lane loops unused, so such a padded row is made from one 16-float load
// shifted by the padding (ck_vector16.h) and stored whole:
// the floats past the row land in the next row, which is written after it. Only where the load
// stays inside the readable source; every lane computes the scalar loops' expression.
#if CK_VECTOR16
/// A padded row (padding 1) of the W (< 16) floats at `in` (16 read), mapped when `map`: 16
/// floats stored at row (zero, the row, zeros).
CK_INLINE void pad_row16(const float *in, float *row, int W, const ck_channel_affine *map,
                         float scale, float shift) {
  const ck_i16v lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const ck_f16v zero = {0}, in16 = CK_LOAD16(in);
  ck_f16v v = __builtin_shufflevector(zero, in16, 0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                                   28, 29, 30);
  if (map) {
    v = v * scale + shift; // the batch norm's expression (ck_channel_affine)
    if (map->relu) v = CK_SELECT16(v > 0.0f, v, zero);
  }
  CK_STORE16(row, CK_SELECT16((lane >= 1) & (lane <= W), v, zero));
}
#endif

/// Padded plane `plane` (d->plane floats) := the H×W plane src, or map(src) for channel ch when
/// map is not NULL, zero border included. Every float is written once: each padded row in one
/// vector loop that selects the image or 0 (masked loads), no memcpy/memset calls per row — on
/// ResNet-20's 7- to 28-float rows the calls cost more than the copy (measured per image,
/// 16×28×28 to 64×7×7: 1.6–3× faster than memcpy rows). `prefetch`: src is in memory, request
/// its lines ahead of each row (not for a plane in cache). `readable`: floats that may be read
/// from src on (at least H·W).
CK_INLINE void pad_plane(const geom *g, const padded *d, const float *src, size_t readable,
                         float *plane, int prefetch, const ck_channel_affine *map, int ch) {
  const int P = g->PAD, W = g->W, H = g->H, Wr = d->Wr;
  const float scale = map ? map->scale[ch] : 1.0f, shift = map ? map->shift[ch] : 0.0f;
  const int relu = map && map->relu;
  // One vector per row: padding 1, rows under 16 floats whose spill (16 − Wr floats) stays
  // inside the plane's next row.
  const int row_vectors = CK_VECTOR16 && P == 1 && Wr >= 8 && Wr <= 16;
  (void)readable;
  for (int i = 0; i < P * Wr; i++) plane[i] = 0.0f;
  for (int y = 0; y < H; y++) {
    float *restrict row = plane + (size_t)(y + P) * Wr;
    const float *restrict in = src + (size_t)y * W;
    if (prefetch) prefetch_ahead(in, W);
#if CK_VECTOR16
    if (row_vectors && (size_t)y * W + 16 <= readable) {
      pad_row16(in, row, W, map, scale, shift);
      continue;
    }
#endif
    if (!map) {
#pragma omp simd
      for (int i = 0; i < Wr; i++) row[i] = (unsigned)(i - P) < (unsigned)W ? in[i - P] : 0.0f;
    } else if (relu) { // the batch norm's expression (ck_channel_affine)
#pragma omp simd
      for (int i = 0; i < Wr; i++) {
        const int inside = (unsigned)(i - P) < (unsigned)W;
        float v = (inside ? in[i - P] : 0.0f) * scale + shift;
        v = v > 0.0f ? v : 0.0f;
        row[i] = inside ? v : 0.0f;
      }
    } else {
#pragma omp simd
      for (int i = 0; i < Wr; i++) {
        const int inside = (unsigned)(i - P) < (unsigned)W;
        const float v = (inside ? in[i - P] : 0.0f) * scale + shift;
        row[i] = inside ? v : 0.0f;
      }
    }
  }
  float *restrict below = plane + (size_t)(P + H) * Wr;
  for (int i = 0; i < (d->Hp - P - H) * Wr; i++) below[i] = 0.0f;
}

/// The zero tail of a padded buffer past its planes (`planes` of d->plane floats).
static void zero_tail(const padded *d, size_t planes, float *xp) {
  for (size_t i = planes * d->plane; i < d->size; i++) xp[i] = 0.0f;
}

/// xp (d->size floats) := image x (C×H×W), or map(x) when map is not NULL, in zero-padded
/// planes, zero tail included.
CK_CLONES static void pad_image(const geom *g, const padded *d, const float *x, float *xp,
                                const ck_channel_affine *map) {
  const size_t hw = (size_t)g->H * g->W;
  for (int c = 0; c < g->C; c++) // the image's later planes may be read too
    pad_plane(g, d, x + (size_t)c * hw, (size_t)(g->C - c) * hw, xp + c * d->plane, 1, map, c);
  zero_tail(d, (size_t)g->C, xp);
}

/// xp := image b of a plane source (C planes of H×W) in zero-padded planes, each plane produced
/// into `tmp` (H·W floats, stays in cache) and padded from there; db[c] += the plane's sum
/// when db is not NULL.
CK_CLONES static void pad_source_image(const geom *g, const padded *d, const ck_plane_source *s,
                                       int b, float *tmp, float *xp, double *db) {
  const int hw = g->H * g->W;
  for (int c = 0; c < g->C; c++) {
    s->plane(s, b, c, tmp);
    pad_plane(g, d, tmp, (size_t)hw, xp + c * d->plane, 0, NULL, c);
    if (db) {
      float sum = 0.0f;
      for (int q = 0; q < hw; q++) sum += tmp[q];
      db[c] += sum;
    }
  }
  zero_tail(d, (size_t)g->C, xp);
}

/// xp (d->size floats) := image x (C×H×W) in the phase planes of a stride-S layout (S > 1),
/// every float written once, zero tail included. Phase (p, q) row r is padded row S·r + p,
/// columns q, q + S, …: the image's columns S·t + q − P where they exist, else 0.
CK_CLONES static void phase_image(const geom *g, const padded *d, const float *x, float *xp) {
  const int S = d->S, P = g->PAD, W = g->W, Wr = d->Wr;
  for (int c = 0; c < g->C; c++) {
    const float *src = x + (size_t)c * g->H * W;
    for (int p = 0; p < S; p++)
      for (int q = 0; q < S; q++) {
        float *plane = xp + layout_index(d, c, p, q);
        // Columns t with 0 <= S·t + q − P < W: [t0, t1).
        int t0 = P > q ? (P - q + S - 1) / S : 0, t1 = (W - 1 + P - q) / S + 1;
        if (t1 > Wr) t1 = Wr;
        if (t0 > t1) t0 = t1;
        for (int r = 0; r < d->Hr; r++) {
          const int y = S * r + p - P;
          float *restrict row = plane + (size_t)r * Wr;
          if (y < 0 || y >= g->H) {
            for (int t = 0; t < Wr; t++) row[t] = 0.0f;
            continue;
          }
          const float *restrict in = src + (size_t)y * W;
          if (p == 0 && q == 0) prefetch_ahead(in, W);
          for (int t = 0; t < t0; t++) row[t] = 0.0f;
          for (int t = t0; t < t1; t++) row[t] = in[S * t + q - P];
          for (int t = t1; t < Wr; t++) row[t] = 0.0f;
        }
      }
  }
  const size_t used = (size_t)g->C * S * S * d->plane;
  for (size_t i = used; i < d->size; i++) xp[i] = 0.0f;
}

/// xp := image x in the direct layout of its stride (pad_image or phase_image).
static void layout_image(const geom *g, const padded *d, const float *x, float *xp) {
  if (d->S == 1)
    pad_image(g, d, x, xp, NULL);
  else
    phase_image(g, d, x, xp);
}

// y[o][oy][ox] = yw[o][oy·Wr + ox] for ox < OW (plain loops: the rows are short, 7 to 28 floats
// on the models here, where a memcpy call per row costs more than the copy).
CK_CLONES static void compact_rows(const geom *g, const padded *d, const float *yw, float *y) {
  // Rows under 16 floats as one 16-float copy each (the spill lands in the next row, written
  // after it), where the copy stays inside the wide buffer and the image's output.
  const int row_vectors = CK_VECTOR16 && g->OW < 16;
  const float *yw_end = yw + (size_t)g->O * d->Nw;
  float *y_end = y + (size_t)g->O * g->OH * g->OW;
  (void)row_vectors, (void)yw_end, (void)y_end;
  for (int o = 0; o < g->O; o++)
    for (int oy = 0; oy < g->OH; oy++) {
      float *restrict dst = y + ((size_t)o * g->OH + oy) * g->OW;
      const float *restrict src = yw + (size_t)o * d->Nw + (size_t)oy * d->Wr;
#if CK_VECTOR16
      if (row_vectors && src + 16 <= yw_end && dst + 16 <= y_end) {
        CK_STORE16(dst, CK_LOAD16(src));
        continue;
      }
#endif
      for (int ox = 0; ox < g->OW; ox++) dst[ox] = src[ox];
    }
}


/// out (the O = a->rows planes of OH×OW of g) := a times the windows (offsets off) of the padded
/// image xp: straight into out with the windowed compiled product where it runs and the rows
/// are wide enough, else over the padded width into `wide` (O × Nw floats), then compacted.
static void direct_product(const ck_sp_mat *a, const geom *g, const padded *d, const int64_t *off,
                           const float *xp, const float *bias, float *wide, float *out,
                           float *buf) {
  if (g->OW >= ROWS_MIN_WIDTH) {
    const ck_sp_jit *j = ck_sp_jit_get_windowed(a, off);
    if (j && ck_sp_jit_window_rows(j, g->OH, g->OW, d->Wr, xp, bias, out, g->N)) return;
  }
  ck_sp_spmm_worker(a, 0, a->rows, 0, d->Nw, xp, d->Wr, off, bias, 0.0f, wide, d->Nw, buf);
  compact_rows(g, d, wide, out);
}

// dyw row o [oy·Wr + ox] = plane [oy][ox] for ox < OW, 0 in the thrown-away columns
// (`prefetch`: the plane is in memory, request its lines ahead of each row).
CK_INLINE void widen_plane(const geom *g, const padded *d, const float *plane, float *row,
                           int prefetch) {
  const int OW = g->OW, Wr = d->Wr;
  for (int oy = 0; oy < g->OH; oy++) {
    float *restrict dst = row + (size_t)oy * Wr;
    const float *restrict src = plane + (size_t)oy * OW;
    if (prefetch) prefetch_ahead(src, OW);
#pragma omp simd
    for (int i = 0; i < Wr; i++) dst[i] = i < OW ? src[i] : 0.0f;
  }
}

// dyw[o][oy·Wr + ox] = dy[o][oy][ox] for ox < OW, 0 in the thrown-away columns.
CK_CLONES static void widen_rows(const geom *g, const padded *d, const float *dy, float *dyw) {
  for (int o = 0; o < g->O; o++)
    widen_plane(g, d, dy + (size_t)o * g->N, dyw + (size_t)o * d->Nw, 1);
}

// widen_rows of image b of a plane source, each plane produced into `tmp` (N floats) — only the
// rows of output channels that keep a weight (used[o]; the products read no other row).
CK_CLONES static void widen_source_rows(const geom *g, const padded *d, const ck_plane_source *s,
                                        int b, const uint8_t *used, float *tmp, float *dyw) {
  for (int o = 0; o < g->O; o++) {
    if (!used[o]) continue;
    s->plane(s, b, o, tmp);
    widen_plane(g, d, tmp, dyw + (size_t)o * d->Nw, 0);
  }
}

// dx_image = the interior of Σ_k window_k(dcol[k]) (dcol rows over the padded width).
static void scatter_windows(const geom *g, const padded *d, const int64_t *off, const float *dcol,
                            float *dxp, float *dx) {
  memset(dxp, 0, sizeof(float) * d->size);
  for (int k = 0; k < g->K; k++) {
    float *dst = dxp + off[k];
    const float *src = dcol + (size_t)k * d->Nw;
    for (int t = 0; t < d->Nw; t++) dst[t] += src[t];
  }
  if (d->S == 1) {
    for (int c = 0; c < g->C; c++)
      for (int y = 0; y < g->H; y++)
        memcpy(dx + ((size_t)c * g->H + y) * g->W,
               dxp + c * d->plane + (size_t)(y + g->PAD) * d->Wr + g->PAD, sizeof(float) * g->W);
    return;
  }
  // Phase layout: each padded column's place relative to its row start, once per call.
  size_t *col_at = malloc(sizeof(size_t) * (size_t)g->W);
  if (!col_at) return;
  for (int x = 0; x < g->W; x++) col_at[x] = layout_index(d, 0, 0, x + g->PAD);
  for (int c = 0; c < g->C; c++)
    for (int y = 0; y < g->H; y++) {
      const float *row = dxp + layout_index(d, c, y + g->PAD, 0);
      float *out = dx + ((size_t)c * g->H + y) * g->W;
      for (int x = 0; x < g->W; x++) out[x] = row[col_at[x]];
    }
  free(col_at);
}

/// col (K × OH·OW) := the column matrix of image x (C×H×W), any stride and padding.
CK_CLONES static void im2col(const geom *g, const float *x, float *col) {
  for (int c = 0; c < g->C; c++)
    for (int i = 0; i < g->KH; i++)
      for (int j = 0; j < g->KW; j++) {
        float *row = col + (size_t)((c * g->KH + i) * g->KW + j) * g->N;
        const float *plane = x + (size_t)c * g->H * g->W;
        for (int oy = 0; oy < g->OH; oy++) {
          const int iy = oy * g->S - g->PAD + i;
          float *out = row + (size_t)oy * g->OW;
          if (iy < 0 || iy >= g->H) {
            memset(out, 0, sizeof(float) * g->OW);
            continue;
          }
          const float *in = plane + (size_t)iy * g->W;
          if (g->S == 1) {
            int lo = g->PAD - j > 0 ? g->PAD - j : 0;
            int hi = g->W + g->PAD - j < g->OW ? g->W + g->PAD - j : g->OW;
            if (hi < lo) hi = lo;
            for (int ox = 0; ox < lo; ox++) out[ox] = 0.0f;
            if (hi > lo) memcpy(out + lo, in + lo - g->PAD + j, sizeof(float) * (hi - lo));
            for (int ox = hi; ox < g->OW; ox++) out[ox] = 0.0f;
          } else {
            for (int ox = 0; ox < g->OW; ox++) {
              const int ix = ox * g->S - g->PAD + j;
              out[ox] = (ix >= 0 && ix < g->W) ? in[ix] : 0.0f;
            }
          }
        }
      }
}

// dx += col2im(col)
CK_CLONES static void col2im_add(const geom *g, const float *col, float *dx) {
  for (int c = 0; c < g->C; c++)
    for (int i = 0; i < g->KH; i++)
      for (int j = 0; j < g->KW; j++) {
        const float *row = col + (size_t)((c * g->KH + i) * g->KW + j) * g->N;
        float *plane = dx + (size_t)c * g->H * g->W;
        for (int oy = 0; oy < g->OH; oy++) {
          const int iy = oy * g->S - g->PAD + i;
          if (iy < 0 || iy >= g->H) continue;
          const float *in = row + (size_t)oy * g->OW;
          float *out = plane + (size_t)iy * g->W;
          for (int ox = 0; ox < g->OW; ox++) {
            const int ix = ox * g->S - g->PAD + j;
            if (ix >= 0 && ix < g->W) out[ix] += in[ox];
          }
        }
      }
}

// When the direct kernels beat the dense convolution (im2col + one OpenBLAS sgemm per image)
// even with every weight kept, measured with `coppice bench train --dispatch alwaysSparse
// --sparsity 0,0.00001 --profile` (2 threads, AVX-512, batch 128): the forward of every
// stride-1 3×3 layer of the cnn and ResNet-20 (up to 128 output channels) took 0.55–0.75× the
// dense time; the backward 0.55–0.65× on ResNet-20's layers and the cnn's conv2 (O·C·9 up to
// 36,864) but 1.15× on the cnn's conv3 (64→128 channels, O·C·9 = 73,728; still 1.04× with
// the aligned window loads), where the larger products let sgemm amortise its packing.
// Below CK_SP_MIN_SPARSE_COLUMNS (the cnn's conv1, K = 9; ResNet-20's stem, K = 27 is above)
// only with the compiled products, which read the image's windows in place: cnn conv1 (1→32
// channels, 28×28, batch 128) forward 0.40 ms against 0.54 ms, weight gradient 0.51 ms
// against 1.13 ms dense (the generic kernels gain nothing there).
// ResNet-20's stride-2 layers (phase planes) with every weight kept, forward + backward at
// batch 128: 16→32 channels 3.97 ms against 7.67 ms dense, 32→64 4.15 against 5.70 ms (with the
// windows loaded in aligned pairs; `--dispatch alwaysSparse --sparsity 0,0.00001 --profile`).
#define DIRECT_FORWARD_MAX_OUT_CHANNELS 128
#define DIRECT_BACKWARD_MAX_WEIGHTS 40000

/// Whether the direct kernels with a full mask beat dense; contract in include/ck_sparse.h.
int ck_sparse_conv2d_direct_preferred(const ck_conv_shape *s, ck_sparse_op op) {
  if (!s || s->in_channels <= 0 || s->out_channels <= 0 || s->kernel_h <= 0 || s->kernel_w <= 0)
    return 0;
  geom g = {.C = s->in_channels, .O = s->out_channels, .KH = s->kernel_h, .KW = s->kernel_w,
            .S = s->stride, .PAD = s->padding};
  g.K = g.C * g.KH * g.KW;
  if ((g.K < CK_SP_MIN_SPARSE_COLUMNS && !ck_sp_jit_enabled()) || !use_direct(&g)) return 0;
  if (op == CK_SPARSE_OP_FORWARD) return g.O <= DIRECT_FORWARD_MAX_OUT_CHANNELS;
  return (int64_t)g.O * g.K <= DIRECT_BACKWARD_MAX_WEIGHTS;
}

/// Sparse convolution forward; contract in include/ck_sparse.h.
typedef struct {
  const geom *g;
  const padded *d;
  const int64_t *off; // window offsets (direct)
  const int64_t *dy_off; // backward, direct: offsets of the widened dY rows (o·Nw), so the
                         // input-gradient product reads them in place
  // Backward as convolutions (backward_flipped): dY's geometry as an input (gf, df), its
  // window offsets (off_f), the flipped weight, and each padded dY row's offset (dy_rows).
  const geom *gf;
  const padded *df;
  const int64_t *off_f, *dy_rows;
  const ck_sparse *flip;
  const ck_sparse *w;
  const float *x, *dy, *bias;
  const ck_plane_source *dy_source; // backward_flipped: dY produced plane by plane (dy NULL)
  const ck_channel_affine *x_map;   // direct stride 1 by image: the map applied to x as padded
  const float *dx_add;              // backward: added to dx image by image (or NULL)
  const ck_image_observer *dx_observer; // backward: given each finished dx image (or NULL)
  const ck_image_observer *y_observer;  // forward: given each finished output image (or NULL)
  const uint8_t *rows_used;         // backward_images with a dY source: rows that keep a weight
  size_t plane_f;                   // backward with a dY source: floats of its plane buffer
  float *y, *dx;
  int direct, pw;
  size_t in_buf, out_buf; // per-image buffers in the scratch (floats, multiples of 16)
  size_t image_f;         // floats of the buffer an output image is made in before it is
                          // streamed out (0: written in place; see STREAM_MIN_FLOATS)
  size_t dyw_f, dxp_f;    // backward: further buffers in the scratch (floats, multiples of 16)
  size_t nw;              // backward: columns of the row operands
  float *priv;            // backward: per-part weight-gradient partials (nnz each), or NULL
  double *db_priv;        // backward: per-part bias-gradient partials (O each), or NULL
  const ck_sp_mat *sm;    // backward: the structure the weight gradient is computed with
  const ck_sp_window_entries *win; // backward, direct: W's entries for the windowed SDDMM
  size_t lanes_f;                  // backward, direct: floats of its per-lane accumulators
  int block; // backward, direct: images per block (the X and dY buffers are per image)
} conv_job;

/// Forward of image `part` (one part per image). Scratch: the padded image or column matrix,
/// the wide output (direct), the SpMM's.
static void forward_image(void *arg, int b, int parts, float *scratch) {
  (void)parts;
  const conv_job *c = arg;
  const geom *g = c->g;
  const size_t in_img = (size_t)g->C * g->H * g->W, out_img = (size_t)g->O * g->N;
  float *src_buf = scratch, *yw = src_buf + c->in_buf, *image = yw + c->out_buf;
  float *buf = image + c->image_f;
  const float *xb = c->x + (size_t)b * in_img;
  float *const out = c->y + (size_t)b * out_img, *yb = c->image_f ? image : out;
  if (c->direct) {
    if (c->x_map)
      pad_image(g, c->d, xb, src_buf, c->x_map);
    else
      layout_image(g, c->d, xb, src_buf);
    direct_product(&c->w->a, g, c->d, c->off, src_buf, c->bias, yw, yb, buf);
  } else {
    const float *src = xb;
    if (!c->pw) {
      im2col(g, xb, src_buf);
      src = src_buf;
    }
    ck_sp_spmm_worker(&c->w->a, 0, g->O, 0, g->N, src, g->N, NULL, c->bias, 0.0f, yb, g->N, buf);
  }
  if (c->y_observer) c->y_observer->image(c->y_observer, b, yb);
  if (c->image_f) ck_stream_store(out, yb, out_img);
}

/// Floats rounded up to a multiple of 16 (64 bytes), so buffers cut from one scratch stay aligned.
static size_t aligned16(size_t floats) { return (floats + 15) / 16 * 16; }

/// map(x) for the whole batch in scratch (ck_scratch_give it), for the paths that do not map
/// as they pad; NULL when out of memory.
static float *mapped_input(const geom *g, const float *x, const ck_channel_affine *map,
                           int threads) {
  float *mapped = ck_scratch_take((size_t)g->B * g->C * g->H * g->W);
  if (mapped) ck_channel_affine_apply(g->B, g->C, g->H * g->W, x, map, threads, mapped);
  return mapped;
}

/// Sparse convolution forward of x or map(x) (x_map not NULL).
CK_CLONES static void conv_forward(const ck_conv_shape *shape, const ck_sparse *w,
                                   const float *x, const ck_channel_affine *x_map,
                                   const float *bias, const ck_image_observer *y_observer,
                                   float *y) {
  geom g;
  if (make_geom(shape, w, &g) != 0 || g.B == 0) return;
  const size_t in_img = (size_t)g.C * g.H * g.W, out_img = (size_t)g.O * g.N;
  const int pw = is_pointwise(&g), direct = use_direct(&g);
  const padded d = make_padded(&g);
  const int threads = ck_sp_threads(), by_image = threads > 1 && g.B >= threads;
  // The map is applied as each image is padded (direct, stride 1, by image), else up front.
  float *mapped = NULL;
  if (x_map && !(by_image && direct && g.S == 1)) {
    if (!(mapped = mapped_input(&g, x, x_map, threads))) return;
    x = mapped;
    x_map = NULL;
  }
  int64_t *off = direct ? window_offsets(&g, &d) : NULL;
  if (direct && !off) { // out of memory: as for the mapped input above
    ck_scratch_give(mapped);
    return;
  }
  // Per-image buffers: the padded image and the wide output (direct) or the column matrix.
  const size_t in_buf = aligned16(direct ? d.size : (pw ? 0 : (size_t)g.K * g.N));
  const size_t out_buf = aligned16(direct ? (size_t)g.O * d.Nw : 0);
  if (by_image) { // images over threads, each image a part
    const size_t image_f = streams((size_t)g.B * out_img) ? aligned16(out_img) : 0;
    conv_job c = {.g = &g, .d = &d, .off = off, .w = w, .x = x, .x_map = x_map, .bias = bias,
                  .y = y, .direct = direct, .pw = pw, .in_buf = in_buf, .out_buf = out_buf,
                  .image_f = image_f, .y_observer = y_observer};
    ck_run_job(threads, g.B, forward_image, &c,
               in_buf + out_buf + image_f + ck_sp_spmm_scratch(&w->a));
    free(off);
    ck_scratch_give(mapped);
    return;
  }
  // Fewer images than threads: one image after another, parallel inside the products.
  float *src_buf = ck_scratch_take(in_buf), *yw = ck_scratch_take(out_buf);
  for (int b = 0; b < g.B; b++) {
    const float *xb = x + (size_t)b * in_img;
    float *yb = y + (size_t)b * out_img;
    if (direct) {
      layout_image(&g, &d, xb, src_buf);
      ck_sp_spmm_run(&w->a, d.Nw, src_buf, d.Wr, off, bias, 0.0f, yw, d.Nw);
      compact_rows(&g, &d, yw, yb);
    } else {
      const float *src = xb;
      if (!pw) {
        im2col(&g, xb, src_buf);
        src = src_buf;
      }
      ck_sp_spmm_run(&w->a, g.N, src, g.N, NULL, bias, 0.0f, yb, g.N);
    }
    if (y_observer) y_observer->image(y_observer, b, yb);
  }
  ck_scratch_give(src_buf);
  ck_scratch_give(yw);
  free(off);
  ck_scratch_give(mapped);
}

/// Sparse convolution forward; contract in include/ck_sparse.h.
void ck_sparse_conv2d_forward(const ck_conv_shape *shape, const ck_sparse *w, const float *x,
                              const float *bias, float *y) {
  conv_forward(shape, w, x, NULL, bias, NULL, y);
}

/// The same of a mapped input; contract in include/ck_sparse.h.
void ck_sparse_conv2d_forward_mapped(const ck_conv_shape *shape, const ck_sparse *w,
                                     const float *x, const ck_channel_affine *x_map,
                                     const float *bias, const ck_image_observer *y_observer,
                                     float *y) {
  conv_forward(shape, w, x, x_map, bias, y_observer, y);
}

/// db[o] += Σ of output plane o of one image's dY (O planes of N).
static void bias_grad_add(const geom *g, const float *dy_img, double *db) {
  for (int o = 0; o < g->O; o++) {
    const float *r = dy_img + (size_t)o * g->N;
    float s = 0.0f;
    for (int c = 0; c < g->N; c++) s += r[c];
    db[o] += s;
  }
}

/// dx_img += add_img over one image (n floats), while the image's dx is still in cache; the
/// sum is the one a separate pass would compute (dx + add, one addition per element).
CK_CLONES static void add_image(size_t n, const float *add_img, float *dx_img) {
#pragma omp simd
  for (size_t t = 0; t < n; t++) dx_img[t] += add_img[t];
}

/// Image b's dx (n floats) is computed: dx_add's image added (when given), then the image
/// handed to the observer (when given) while it is in cache.
static void finish_dx_image(size_t n, const float *dx_add, const ck_image_observer *observer,
                            int b, float *dx_img) {
  if (dx_add) add_image(n, dx_add + (size_t)b * n, dx_img);
  if (observer) observer->image(observer, b, dx_img);
}

/// Backward of the images of part `part` (images part, part + parts, …) into the part's
/// partial sums. Scratch as laid out by ck_sparse_conv2d_backward.
CK_CLONES static void backward_images(void *arg, int part, int parts, float *scratch) {
  const conv_job *c = arg;
  (void)parts;
  const geom *g = c->g;
  const padded *d = c->d;
  const size_t in_img = (size_t)g->C * g->H * g->W, out_img = (size_t)g->O * g->N;
  const int64_t nnz = c->w->nnz;
  const int use_t = c->sm == &c->w->t;
  float *src_buf = scratch, *dyw = src_buf + c->in_buf * c->block;
  float *dcol = dyw + c->dyw_f * c->block, *dxp = dcol + c->out_buf;
  float *dy_plane = dxp + c->dxp_f, *lanes = dy_plane + c->plane_f, *buf = lanes + c->lanes_f;
  float *mine = c->priv ? c->priv + (size_t)part * (size_t)nnz : NULL;
  double *db = c->db_priv ? c->db_priv + (size_t)part * g->O : NULL;
  if (mine) memset(mine, 0, sizeof(float) * (size_t)nnz);
  if (c->lanes_f) memset(lanes, 0, sizeof(float) * c->lanes_f);
  if (c->dy_source) // rows never produced stay 0
    memset(dyw, 0, sizeof(float) * c->dyw_f * (size_t)c->block);
  const int nw = (int)c->nw;
  // Blocks of c->block images (the direct method with the windowed SDDMM; else 1), the weight
  // gradient of the block after its images are laid out.
  const int first = part * BACKWARD_CHUNK, last = ck_sp_imin(g->B, first + BACKWARD_CHUNK);
  for (int b0 = first; b0 < last; b0 += c->block) {
    int images = 0;
    for (int b = b0; b < last && images < c->block; b++, images++) {
      const float *xb = c->x + (size_t)b * in_img;
      const float *dyb = c->dy_source ? NULL : c->dy + (size_t)b * out_img;
      float *srci = src_buf + c->in_buf * images, *dywi = dyw + c->dyw_f * images;
      // Row operands: dY rows (dyr, ld nw) and X rows (xr, ld or window offsets xo).
      const float *dyr = dyb, *xr = xb;
      const int64_t *xo = NULL;
      int ldxr = nw;
      if (c->direct) {
        if (c->dy_source)
          widen_source_rows(g, d, c->dy_source, b, c->rows_used, dy_plane, dywi);
        else
          widen_rows(g, d, dyb, dywi);
        dyr = dywi;
        if (mine) {
          layout_image(g, d, xb, srci);
          xr = srci;
          xo = c->off;
          ldxr = d->Wr;
        }
      } else if (!c->pw && mine) {
        im2col(g, xb, srci);
        xr = srci;
      }
      if (mine && !c->win) {
        if (use_t)
          ck_sp_sddmm_worker(c->sm, 0, g->K, 0, nw, xr, ldxr, xo, dyr, nw, NULL, mine, buf);
        else
          ck_sp_sddmm_worker(c->sm, 0, g->O, 0, nw, dyr, nw, NULL, xr, ldxr, xo, mine, buf);
      }
      if (c->dx) {
        float *dxb = c->dx + (size_t)b * in_img;
        if (c->direct) {
          ck_sp_spmm_worker(&c->w->t, 0, g->K, 0, d->Nw, dyr, d->Nw, c->dy_off, NULL, 0.0f, dcol,
                            d->Nw, buf);
          scatter_windows(g, d, c->off, dcol, dxp, dxb);
        } else if (c->pw) {
          ck_sp_spmm_worker(&c->w->t, 0, g->K, 0, g->N, dyb, g->N, NULL, NULL, 0.0f, dxb, g->N,
                            buf);
        } else {
          ck_sp_spmm_worker(&c->w->t, 0, g->K, 0, g->N, dyb, g->N, NULL, NULL, 0.0f, dcol, g->N,
                            buf);
          memset(dxb, 0, sizeof(float) * in_img);
          col2im_add(g, dcol, dxb);
        }
        finish_dx_image(in_img, c->dx_add, c->dx_observer, b, dxb);
      }
      if (db) bias_grad_add(g, dyb, db);
    }
    if (mine && c->win)
      ck_sp_kernels()->sddmm_windows(c->win, images, nw, dyw, nw, NULL, c->dyw_f, src_buf,
                                     c->in_buf, lanes);
  }
  if (mine && c->win) ck_sp_lanes_sum(nnz, lanes, mine);
}

/// The backward of the images of part `part` for a stride-1 "same" convolution (2P = KH − 1 =
/// KW − 1) with dx wanted: each image's dY is padded once (as the convolution input it is for
/// dX = conv(dY, W′), conv_flip.c); dX comes out of the compiled forward product of W′ reading
/// the padded dY's windows in place, and the weight gradient reads the same padded dY, whose
/// row o from offset P·Wp + P is exactly the widened dY row (zeros past OW). Scratch: padded X
/// (when the weight gradient is wanted), padded dY, the wide dX, the products'.
CK_CLONES static void backward_flipped(void *arg, int part, int parts, float *scratch) {
  const conv_job *c = arg;
  (void)parts;
  const geom *g = c->g, *gf = c->gf;
  const padded *d = c->d, *df = c->df;
  const size_t in_img = (size_t)g->C * g->H * g->W, out_img = (size_t)g->O * g->N;
  const int64_t nnz = c->w->nnz;
  const int use_t = c->sm == &c->w->t, nw = (int)c->nw;
  float *xp = scratch, *dyp = xp + c->in_buf * c->block, *dxw = dyp + c->dyw_f * c->block;
  float *dy_plane = dxw + c->out_buf, *lanes = dy_plane + c->plane_f; // dy_plane: a source's
  float *image = lanes + c->lanes_f, *buf = image + c->image_f;
  float *mine = c->priv ? c->priv + (size_t)part * (size_t)nnz : NULL;
  double *db = c->db_priv ? c->db_priv + (size_t)part * g->O : NULL;
  if (mine) memset(mine, 0, sizeof(float) * (size_t)nnz);
  if (c->lanes_f) memset(lanes, 0, sizeof(float) * c->lanes_f);
  // Blocks of c->block images: padded one after another, then the weight gradient of the block.
  const int first = part * BACKWARD_CHUNK, last = ck_sp_imin(g->B, first + BACKWARD_CHUNK);
  for (int b0 = first; b0 < last; b0 += c->block) {
    int images = 0;
    for (int b = b0; b < last && images < c->block; b++, images++) {
      float *xpi = xp + c->in_buf * images, *dypi = dyp + c->dyw_f * images;
      float *const out = c->dx + (size_t)b * in_img, *dxb = c->image_f ? image : out;
      if (c->dy_source)
        pad_source_image(gf, df, c->dy_source, b, dy_plane, dypi, db);
      else
        pad_image(gf, df, c->dy + (size_t)b * out_img, dypi, NULL);
      if (mine) pad_image(g, d, c->x + (size_t)b * in_img, xpi, c->x_map);
      if (mine && !c->win) {
        if (use_t)
          ck_sp_sddmm_worker(c->sm, 0, g->K, 0, nw, xpi, d->Wr, c->off, dypi, nw, c->dy_rows,
                             mine, buf);
        else
          ck_sp_sddmm_worker(c->sm, 0, g->O, 0, nw, dypi, nw, c->dy_rows, xpi, d->Wr, c->off,
                             mine, buf);
      }
      direct_product(&c->flip->a, gf, df, c->off_f, dypi, NULL, dxw, dxb, buf);
      finish_dx_image(in_img, c->dx_add, c->dx_observer, b, dxb);
      if (c->image_f) ck_stream_store(out, dxb, in_img);
      if (db && !c->dy_source) bias_grad_add(g, c->dy + (size_t)b * out_img, db);
    }
    if (mine && c->win)
      ck_sp_kernels()->sddmm_windows(c->win, images, nw, dyp, nw, c->dy_rows, c->dyw_f, xp,
                                     c->in_buf, lanes);
  }
  if (mine && c->win) ck_sp_lanes_sum(nnz, lanes, mine);
}

// The windowed SDDMM keeps each group of entries' accumulators in registers over a block of
// images of at least SDDMM_BLOCK_COLUMNS wide columns (at most SDDMM_BLOCK_MAX images), and
// takes W's entries by blocks of channels whose padded planes in the block of images fit in
// SDDMM_CACHE_FLOATS (L1), so that every row's entries in a block read X from L1.
#define SDDMM_BLOCK_COLUMNS 512
#define SDDMM_BLOCK_MAX 8
#define SDDMM_CACHE_FLOATS 6144

// The packed SDDMM holds a tile of one row of its structure (W's, or Wᵀ's when it has more rows)
// in registers for that row's entries: with fewer than SDDMM_WINDOW_ENTRIES per row on average
// the tile is loaded for too few products, and the windowed SDDMM is faster; with more, its
// unaligned window loads and scattered accumulators lose. Weight gradient alone, batch 128,
// 2 threads, 7 interleaved runs each (scratch harness; noisy host): ResNet-20's 16→16 at 28×28
// (1.6 entries per row of Wᵀ at 90%, 0.8 at 95%) 0.92–1.05 → 0.72–0.81 ms at 90% (the whole
// backward 1.10–1.55 → 1.00–1.31 ms), 0.58–0.84 → 0.46–0.65 ms at 95%; 32→32 at 14×14 (3.2 and
// 1.6) even at 90%, 0.47–0.51 → 0.46–0.47 ms at 95%; 64→64 at 7×7 (6.4) 0.46–0.72 → 0.91–0.98
// ms and the cnn's 64→128 at 14×14 2.4–3.3 → 3.1–4.0 ms at 90%. Since the packed row loop's
// loads stay fused (CK_SP_OPAQUE, round 9) the crossover is lower: the whole backward (dx and
// dw), the two forms alternating in one process (31 pairs, medians of packed/windowed, two
// runs): 32→32 at 14×14 and 90% (3.0 per row) 0.90–0.93, at 95% (1.5) 0.95–0.98; 16→16 at
// 28×28 and 90% (1.6) 1.03, at 95% (0.9) 1.01–1.05; 16→16 at 80% (3.2) 0.96; 64→64 at 7×7
// and 95% (3.2) 0.78–0.83. (The uniform 80/90/95% masks of the reference models have at least
// 3.2 or at most 1.6 entries per row, so their choice does not change; other profiles' can.)
#define SDDMM_WINDOW_ENTRIES 2.0

/// 1 when the direct method's weight gradient runs on the windowed SDDMM: few entries per row
/// (above), or forced by CK_SPARSE_SDDMM=windows|packed in the environment (for tests).
static int sddmm_by_windows(const ck_sparse *w, const geom *g) {
  const char *e = getenv("CK_SPARSE_SDDMM");
  if (e && !strcmp(e, "windows")) return 1;
  if (e && !strcmp(e, "packed")) return 0;
  const int rows = g->O < g->K ? g->K : g->O;
  return (double)w->nnz < SDDMM_WINDOW_ENTRIES * rows;
}

/// Images per block of the windowed SDDMM for layout d.
static int sddmm_block(const padded *d) {
  const int b = (SDDMM_BLOCK_COLUMNS + d->Nw - 1) / d->Nw;
  return b < 1 ? 1 : b > SDDMM_BLOCK_MAX ? SDDMM_BLOCK_MAX : b;
}

/// Columns of W per block of the windowed SDDMM: whole channels (KH·KW columns each).
static int sddmm_block_columns(const geom *g, const padded *d, int block) {
  const size_t per_channel = (size_t)d->S * d->S * d->plane * (size_t)block;
  size_t channels = SDDMM_CACHE_FLOATS / per_channel;
  if (channels < 1) channels = 1;
  if (channels > (size_t)g->C) channels = (size_t)g->C;
  return (int)channels * g->KH * g->KW;
}

/// Whether backward_flipped runs for geometry g: the direct method by image, dx wanted, a
/// stride-1 "same" convolution with a square kernel.
static int flips(const geom *g, int threads, int want_dx) {
  return threads > 1 && g->B >= threads && use_direct(g) && want_dx && g->S == 1 &&
         g->KH == g->KW && 2 * g->PAD == g->KH - 1;
}

/// The backward from dY stored (dy) or produced plane by plane (dy_source, dy NULL), of x or
/// map(x) (x_map), with dx_add added to dx. Where each image's dY is read once (the flipped path;
/// the direct path by image without a bias gradient) its planes are produced as they are read,
/// and x is mapped as it is padded on the flipped path; elsewhere both are made in full first.
CK_CLONES static void conv_backward(const ck_conv_shape *shape, const ck_sparse *w,
                                    const float *x, const ck_channel_affine *x_map,
                                    const float *dy, const ck_plane_source *dy_source, float *dx,
                                    const float *dx_add, const ck_image_observer *dx_observer,
                                    float *dw_values, float *dbias) {
  geom g;
  if (make_geom(shape, w, &g) != 0) return;
  const size_t in_img = (size_t)g.C * g.H * g.W, out_img = (size_t)g.O * g.N;
  const int64_t nnz = w->nnz;
  const int pw = is_pointwise(&g);
  if (dw_values && nnz) memset(dw_values, 0, sizeof(float) * (size_t)nnz);
  if (dbias) memset(dbias, 0, sizeof(float) * g.O);
  if (g.B == 0) return;
  const int threads = ck_sp_threads();
  const int by_image = threads > 1 && g.B >= threads;
  const int direct = by_image && use_direct(&g);
  const padded d = make_padded(&g);
  int64_t *off = direct ? window_offsets(&g, &d) : NULL;
  if (direct && !off) return; // out of memory: as for the other buffers below
  // dx as a convolution of dY (backward_flipped) where the padding keeps the size.
  const ck_sparse *flip = NULL;
  geom gf = g;
  padded df = d;
  int64_t *off_f = NULL, *dy_rows = NULL;
  if (flips(&g, threads, dx != NULL)) flip = ck_sp_conv_flipped((ck_sparse *)w, g.KH, g.KW);
  if (flip) {
    gf.C = g.O, gf.H = g.OH, gf.W = g.OW, gf.O = g.C, gf.OH = g.H, gf.OW = g.W;
    gf.K = g.O * g.KH * g.KW, gf.N = g.H * g.W;
    df = make_padded(&gf);
    off_f = window_offsets(&gf, &df);
    dy_rows = malloc(sizeof(int64_t) * (size_t)g.O);
    if (!off_f || !dy_rows) flip = NULL;
    for (int o = 0; flip && o < g.O; o++)
      dy_rows[o] = (int64_t)o * (int64_t)df.plane + (int64_t)g.PAD * df.Wr + g.PAD;
  }
  // x is read for the weight gradient only: mapped as padded on the flipped path, else first.
  float *mapped = NULL;
  if (!dw_values) x_map = NULL;
  if (x_map && !flip) {
    if (!(mapped = mapped_input(&g, x, x_map, threads))) {
      free(off);
      free(off_f);
      free(dy_rows);
      return;
    }
    x = mapped;
    x_map = NULL;
  }
  // A dY source is read as produced where each image's dY is read once: the flipped path, and
  // the direct path by image without a bias gradient — there only the rows of output channels
  // that keep a weight are produced (the products read no other). Elsewhere it is made in full.
  const int source_direct = dy_source && !flip && direct && !dbias;
  uint8_t *rows_used = source_direct ? malloc((size_t)g.O) : NULL;
  for (int o = 0; rows_used && o < g.O; o++)
    rows_used[o] = w->a.row_prefix[o + 1] > w->a.row_prefix[o];
  float *dy_full = NULL;
  if (dy_source && !flip && !rows_used) {
    dy_full = ck_scratch_take((size_t)g.B * g.O * g.N);
    if (!dy_full) {
      free(off);
      free(off_f);
      free(dy_rows);
      ck_scratch_give(mapped);
      return;
    }
    ck_plane_source_fill(dy_source, threads, dy_full);
    dy = dy_full;
    dy_source = NULL;
  }
  int64_t *dy_off = direct && dx && !flip ? malloc(sizeof(int64_t) * (size_t)g.O) : NULL;
  for (int o = 0; dy_off && o < g.O; o++) dy_off[o] = (int64_t)o * d.Nw;
  if (!by_image) {
    // Fewer images than threads: one image after another, parallel inside the products.
    float *col = (!pw && dw_values) ? ck_scratch_take((size_t)g.K * g.N) : NULL;
    float *dcol = (!pw && dx) ? ck_scratch_take((size_t)g.K * g.N) : NULL;
    double *db = dbias ? calloc((size_t)g.O, sizeof(double)) : NULL;
    for (int b = 0; b < g.B; b++) {
      const float *dyb = dy + (size_t)b * out_img;
      if (dw_values) {
        const float *src = x + (size_t)b * in_img;
        if (!pw) {
          im2col(&g, src, col);
          src = col;
        }
        ck_sparse_sddmm(w, g.N, dyb, g.N, src, g.N, b > 0 ? 1.0f : 0.0f, dw_values);
      }
      if (dx) {
        float *dxb = dx + (size_t)b * in_img;
        if (pw) {
          ck_sp_spmm_run(&w->t, g.N, dyb, g.N, NULL, NULL, 0.0f, dxb, g.N);
        } else {
          ck_sp_spmm_run(&w->t, g.N, dyb, g.N, NULL, NULL, 0.0f, dcol, g.N);
          memset(dxb, 0, sizeof(float) * in_img);
          col2im_add(&g, dcol, dxb);
        }
        finish_dx_image(in_img, dx_add, dx_observer, b, dxb);
      }
      if (db) bias_grad_add(&g, dyb, db);
    }
    if (dbias)
      for (int o = 0; o < g.O; o++) dbias[o] = (float)db[o];
    ck_scratch_give(col);
    ck_scratch_give(dcol);
    ck_scratch_give(dy_full);
    ck_scratch_give(mapped);
    free(db);
    return;
  }
  // Images over threads: the batch in chunks of BACKWARD_CHUNK images, each a part that the
  // threads claim as they become free; each part sums its weight gradient in its own partial
  // array, in the order of the structure it is computed with: W's (X windows/columns packed,
  // dY rows in registers) when M >= K, else Wᵀ's (dY packed, the smaller operand), scattered
  // back through tmap. Partials are added in part order, so the results depend on the batch
  // alone, not on the threads.
  // The direct paths sum it per lane over W's entries by blocks of channels (the windowed
  // SDDMM) over blocks of images.
  const int block = direct && dw_values ? sddmm_block(&d) : 1;
  ck_sp_window_entries win = {0};
  const int windows =
      direct && dw_values && nnz && sddmm_by_windows(w, &g) &&
      ck_sp_window_entries_make(&w->a, off, sddmm_block_columns(&g, &d, block), &win) == 0;
  const int use_t = !windows && g.O < g.K;
  const ck_sp_mat *sm = use_t ? &w->t : &w->a;
  const int parts = (g.B + BACKWARD_CHUNK - 1) / BACKWARD_CHUNK;
  float *priv = (dw_values && nnz) ? ck_scratch_take((size_t)parts * (size_t)nnz) : NULL;
  double *db_priv = dbias ? calloc((size_t)parts * g.O, sizeof(double)) : NULL;
  const size_t nw = direct ? (size_t)d.Nw : (size_t)g.N;
  // Scratch: src (padded image or columns), dcol, dyw, dxp, then the products'.
  size_t src_f = 0, dcol_f = 0, dyw_f = 0, dxp_f = 0;
  if (direct) {
    src_f = d.size;
    dyw_f = (size_t)g.O * d.Nw;
    if (dx) dcol_f = (size_t)g.K * d.Nw, dxp_f = d.size;
  } else {
    if (!pw && dw_values) src_f = (size_t)g.K * g.N;
    if (!pw && dx) dcol_f = (size_t)g.K * g.N;
  }
  if (flip) { // padded X, padded dY, wide dX (backward_flipped)
    src_f = dw_values ? d.size : 0;
    dyw_f = df.size;
    dcol_f = (size_t)g.C * df.Nw;
    dxp_f = 0;
  }
  size_t sc = ck_sp_spmm_scratch(flip ? &flip->a : &w->t), sd = ck_sp_sddmm_scratch(sm);
  conv_job c = {.g = &g, .d = &d, .off = off, .dy_off = dy_off, .w = w, .x = x, .dy = dy,
                .dy_source = dy_source, .x_map = x_map, .dx = dx, .dx_add = dx_add,
                .dx_observer = dx ? dx_observer : NULL,
                .rows_used = rows_used,
                .direct = direct, .pw = pw, .priv = priv, .db_priv = db_priv, .sm = sm,
                .gf = &gf, .df = &df, .off_f = off_f, .dy_rows = dy_rows, .flip = flip};
  c.in_buf = aligned16(src_f);
  c.out_buf = aligned16(dcol_f);
  c.dyw_f = aligned16(dyw_f);
  c.dxp_f = aligned16(dxp_f);
  c.nw = nw;
  c.plane_f = dy_source ? aligned16((size_t)g.N) : 0;
  c.win = windows ? &win : NULL;
  c.lanes_f = windows ? (size_t)nnz * CK_SP_LANES : 0;
  c.block = windows ? block : 1;
  c.image_f = flip && streams((size_t)g.B * in_img) ? aligned16(in_img) : 0;
  ck_run_job(threads, parts, flip ? backward_flipped : backward_images, &c,
             (c.in_buf + c.dyw_f) * c.block + c.out_buf + c.dxp_f + c.plane_f + c.lanes_f +
                 c.image_f + (sc > sd ? sc : sd));
  if (priv) { // part by part into part 0's array (the same additions as per entry in part
               // order, but each array read once, in order), then to value order
    for (int q = 1; q < parts; q++) {
      const float *pq = priv + (size_t)q * (size_t)nnz;
      for (int64_t j = 0; j < nnz; j++) priv[j] += pq[j];
    }
    for (int64_t j = 0; j < nnz; j++) dw_values[use_t ? w->tmap[j] : j] = priv[j];
  }
  if (dbias)
    for (int o = 0; o < g.O; o++) {
      double s = 0.0;
      for (int q = 0; q < parts; q++) s += db_priv[(size_t)q * g.O + o];
      dbias[o] = (float)s;
    }
  ck_scratch_give(priv);
  if (windows) ck_sp_window_entries_free(&win);
  free(db_priv);
  free(off);
  free(dy_off);
  free(off_f);
  free(dy_rows);
  free(rows_used);
  ck_scratch_give(dy_full);
  ck_scratch_give(mapped);
}

/// Sparse convolution backward (dx, weight gradient in value order, dbias); contract in
/// include/ck_sparse.h.
void ck_sparse_conv2d_backward(const ck_conv_shape *shape, const ck_sparse *w, const float *x,
                               const float *dy, float *dx, float *dw_values, float *dbias) {
  conv_backward(shape, w, x, NULL, dy, NULL, dx, NULL, NULL, dw_values, dbias);
}

/// The same of a mapped input and/or from a dY plane source; contract in include/ck_sparse.h.
void ck_sparse_conv2d_backward_fused(const ck_conv_shape *shape, const ck_sparse *w,
                                     const float *x, const ck_channel_affine *x_map,
                                     const float *dy, const ck_plane_source *dy_source,
                                     float *dx, const float *dx_add,
                                     const ck_image_observer *dx_observer, float *dw_values,
                                     float *dbias) {
  geom g;
  if (make_geom(shape, w, &g) != 0 || (dy == NULL) == (dy_source == NULL)) return;
  if (dy_source && (dy_source->n != g.B || dy_source->c != g.O || dy_source->h != g.OH ||
                    dy_source->w != g.OW))
    return;
  conv_backward(shape, w, x, x_map, dy, dy_source, dx, dx_add, dx_observer, dw_values, dbias);
}
