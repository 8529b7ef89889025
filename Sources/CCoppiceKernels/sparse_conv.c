// Sparse 2-D convolution (NCHW input, OIHW weight as the M = out_channels × K = in·kh·kw
// sparse matrix): per image, im2col into a thread-private K × (OH·OW) buffer, then the sparse
// products of sparse_spmm.c / sparse_sddmm.c on it; col2im for the input gradient. A 1×1,
// stride-1, unpadded convolution uses the image itself as the column matrix.
// Whole images are split over threads when the batch has at least as many images as threads
// (weight and bias gradients go to private accumulators, summed at the end); otherwise images
// are processed one after another with the parallel products.
#include "sparse_internal.h"

#include <string.h>

typedef struct {
  int B, C, H, W, O, KH, KW, S, PAD, OH, OW, K, N;
} geom;

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

static int is_pointwise(const geom *g) {
  return g->KH == 1 && g->KW == 1 && g->S == 1 && g->PAD == 0;
}

static void im2col(const geom *g, const float *x, float *col) {
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
static void col2im_add(const geom *g, const float *col, float *dx) {
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

void ck_sparse_conv2d_forward(const ck_conv_shape *shape, const ck_sparse *w, const float *x,
                              const float *bias, float *y) {
  geom g;
  if (make_geom(shape, w, &g) != 0 || g.B == 0) return;
  const size_t in_img = (size_t)g.C * g.H * g.W, out_img = (size_t)g.O * g.N;
  const int pw = is_pointwise(&g);
  const int threads = ck_sp_threads();
  if (threads > 1 && g.B >= threads) {
#pragma omp parallel num_threads(threads)
    {
      float *col = pw ? NULL : ck_sp_alloc_floats((size_t)g.K * g.N);
      float *buf = ck_sp_alloc_floats(ck_sp_spmm_scratch(&w->a));
#pragma omp for schedule(static, 1)
      for (int b = 0; b < g.B; b++) {
        const float *src = x + (size_t)b * in_img;
        if (!pw) {
          im2col(&g, src, col);
          src = col;
        }
        ck_sp_spmm_worker(&w->a, 0, g.O, 0, g.N, src, g.N, bias, 0.0f, y + (size_t)b * out_img,
                          g.N, buf);
      }
      free(col);
      free(buf);
    }
    return;
  }
  float *col = pw ? NULL : ck_sp_alloc_floats((size_t)g.K * g.N);
  for (int b = 0; b < g.B; b++) {
    const float *src = x + (size_t)b * in_img;
    if (!pw) {
      im2col(&g, src, col);
      src = col;
    }
    ck_sp_spmm_run(&w->a, g.N, src, g.N, bias, 0.0f, y + (size_t)b * out_img, g.N);
  }
  free(col);
}

static void bias_grad_add(const geom *g, const float *dy_img, double *db) {
  for (int o = 0; o < g->O; o++) {
    const float *r = dy_img + (size_t)o * g->N;
    float s = 0.0f;
    for (int c = 0; c < g->N; c++) s += r[c];
    db[o] += s;
  }
}

void ck_sparse_conv2d_backward(const ck_conv_shape *shape, const ck_sparse *w, const float *x,
                               const float *dy, float *dx, float *dw_values, float *dbias) {
  geom g;
  if (make_geom(shape, w, &g) != 0) return;
  const size_t in_img = (size_t)g.C * g.H * g.W, out_img = (size_t)g.O * g.N;
  const int64_t nnz = w->nnz;
  const int pw = is_pointwise(&g);
  if (dw_values && nnz) memset(dw_values, 0, sizeof(float) * (size_t)nnz);
  if (dbias) memset(dbias, 0, sizeof(float) * g.O);
  if (g.B == 0) return;
  const int threads = ck_sp_threads();
  if (threads > 1 && g.B >= threads) {
    float *dw_priv = dw_values ? ck_sp_alloc_floats((size_t)(threads - 1) * (size_t)nnz + 1) : NULL;
    double *db_priv = dbias ? calloc((size_t)threads * g.O, sizeof(double)) : NULL;
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
      const int t = 0, nt = 1;
#endif
      float *col = (!pw && dw_values) ? ck_sp_alloc_floats((size_t)g.K * g.N) : NULL;
      float *dcol = (!pw && dx) ? ck_sp_alloc_floats((size_t)g.K * g.N) : NULL;
      size_t sc = ck_sp_spmm_scratch(&w->t), sd = ck_sp_sddmm_scratch(&w->a);
      float *buf = ck_sp_alloc_floats(sc > sd ? sc : sd);
      float *mine = NULL;
      if (dw_values) {
        mine = t == 0 ? dw_values : dw_priv + (size_t)(t - 1) * (size_t)nnz;
        if (t > 0) memset(mine, 0, sizeof(float) * (size_t)nnz);
      }
#pragma omp for schedule(static, 1)
      for (int b = 0; b < g.B; b++) {
        const float *dyb = dy + (size_t)b * out_img;
        if (dw_values) {
          const float *src = x + (size_t)b * in_img;
          if (!pw) {
            im2col(&g, src, col);
            src = col;
          }
          ck_sp_sddmm_worker(&w->a, 0, g.O, 0, g.N, dyb, g.N, src, g.N, mine, buf);
        }
        if (dx) {
          float *dxb = dx + (size_t)b * in_img;
          if (pw) {
            ck_sp_spmm_worker(&w->t, 0, g.K, 0, g.N, dyb, g.N, NULL, 0.0f, dxb, g.N, buf);
          } else {
            ck_sp_spmm_worker(&w->t, 0, g.K, 0, g.N, dyb, g.N, NULL, 0.0f, dcol, g.N, buf);
            memset(dxb, 0, sizeof(float) * in_img);
            col2im_add(&g, dcol, dxb);
          }
        }
        if (dbias) bias_grad_add(&g, dyb, db_priv + (size_t)t * g.O);
      }
      free(col);
      free(dcol);
      free(buf);
      // The implicit barrier of the loop above ends every thread's accumulation.
      if (dw_values) {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < nnz; j++) {
          float s = dw_values[j];
          for (int q = 1; q < nt; q++) s += dw_priv[(size_t)(q - 1) * (size_t)nnz + j];
          dw_values[j] = s;
        }
      }
#pragma omp single
      if (dbias)
        for (int o = 0; o < g.O; o++) {
          double s = 0.0;
          for (int q = 0; q < nt; q++) s += db_priv[(size_t)q * g.O + o];
          dbias[o] = (float)s;
        }
    }
    free(dw_priv);
    free(db_priv);
    return;
  }
  float *col = (!pw && dw_values) ? ck_sp_alloc_floats((size_t)g.K * g.N) : NULL;
  float *dcol = (!pw && dx) ? ck_sp_alloc_floats((size_t)g.K * g.N) : NULL;
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
        ck_sp_spmm_run(&w->t, g.N, dyb, g.N, NULL, 0.0f, dxb, g.N);
      } else {
        ck_sp_spmm_run(&w->t, g.N, dyb, g.N, NULL, 0.0f, dcol, g.N);
        memset(dxb, 0, sizeof(float) * in_img);
        col2im_add(&g, dcol, dxb);
      }
    }
    if (db) bias_grad_add(&g, dyb, db);
  }
  if (dbias)
    for (int o = 0; o < g.O; o++) dbias[o] = (float)db[o];
  free(col);
  free(dcol);
  free(db);
}
