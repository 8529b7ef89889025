// Scalar reference implementations of the sparse kernels, written straight from the
// definitions on the dense weight and its mask, accumulating in double. Used by the tests to
// check the fast kernels; never used on a hot path.
#include "sparse/internal.h"

#include <string.h>

/// Scalar reference of ck_sparse_spmm on the masked dense weight, in double; include/ck_sparse.h.
void ck_sparse_ref_spmm(int m, int k, int n, const float *w, const float *mask, const float *x,
                        int ldx, const float *bias, float beta, float *y, int ldy) {
  for (int i = 0; i < m; i++) {
    for (int c = 0; c < n; c++) {
      double s = bias ? bias[i] : 0.0;
      for (int q = 0; q < k; q++)
        if (mask[(size_t)i * k + q] != 0.0f)
          s += (double)w[(size_t)i * k + q] * x[(size_t)q * ldx + c];
      float *out = y + (size_t)i * ldy + c;
      *out = (float)(beta != 0.0f ? s + (double)beta * *out : s);
    }
  }
}

/// Scalar reference of ck_sparse_spmm_t, in double; include/ck_sparse.h.
void ck_sparse_ref_spmm_t(int m, int k, int n, const float *w, const float *mask,
                          const float *dy, int lddy, float beta, float *dx, int lddx) {
  for (int q = 0; q < k; q++) {
    for (int c = 0; c < n; c++) {
      double s = 0.0;
      for (int i = 0; i < m; i++)
        if (mask[(size_t)i * k + q] != 0.0f)
          s += (double)w[(size_t)i * k + q] * dy[(size_t)i * lddy + c];
      float *out = dx + (size_t)q * lddx + c;
      *out = (float)(beta != 0.0f ? s + (double)beta * *out : s);
    }
  }
}

/// Scalar reference of ck_sparse_sddmm_dense, in double; include/ck_sparse.h.
void ck_sparse_ref_sddmm_dense(int m, int k, int n, const float *mask, const float *dy,
                               int lddy, const float *x, int ldx, float beta, float *dw) {
  for (int i = 0; i < m; i++) {
    for (int q = 0; q < k; q++) {
      float *out = dw + (size_t)i * k + q;
      if (mask[(size_t)i * k + q] == 0.0f) {
        *out = 0.0f;
        continue;
      }
      double s = 0.0;
      for (int c = 0; c < n; c++) s += (double)dy[(size_t)i * lddy + c] * x[(size_t)q * ldx + c];
      *out = (float)(beta != 0.0f ? s + (double)beta * *out : s);
    }
  }
}

/// Output height and width of convolution s (from its input size, kernel, stride, padding).
static void out_dims(const ck_conv_shape *s, int *oh, int *ow) {
  *oh = (s->in_height + 2 * s->padding - s->kernel_h) / s->stride + 1;
  *ow = (s->in_width + 2 * s->padding - s->kernel_w) / s->stride + 1;
}

/// For output pixel (oy, ox) of image b, channel o, and kernel tap (c, i, j) of convolution s:
/// sets *wi to the tap's index in the OIHW weight and *xi to the index in the NCHW input of the
/// pixel it reads; returns 0 (indices unset) when that pixel is padding or the tap is masked out.
static int tap(const ck_conv_shape *s, const float *mask, int b, int o, int oy, int ox, int c,
               int i, int j, size_t *wi, size_t *xi) {
  const int C = s->in_channels, H = s->in_height, W = s->in_width;
  const int iy = oy * s->stride - s->padding + i, ix = ox * s->stride - s->padding + j;
  if (iy < 0 || iy >= H || ix < 0 || ix >= W) return 0;
  *wi = (((size_t)o * C + c) * s->kernel_h + i) * s->kernel_w + j;
  if (mask[*wi] == 0.0f) return 0;
  *xi = (((size_t)b * C + c) * H + iy) * W + ix;
  return 1;
}

/// Direct (no im2col) reference convolution forward, in double; include/ck_sparse.h.
void ck_sparse_ref_conv2d_forward(const ck_conv_shape *s, const float *w, const float *mask,
                                  const float *x, const float *bias, float *y) {
  int OH, OW;
  out_dims(s, &OH, &OW);
  const int C = s->in_channels, O = s->out_channels;
  const int KH = s->kernel_h, KW = s->kernel_w;
  for (int b = 0; b < s->batch; b++)
    for (int o = 0; o < O; o++)
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          double acc = bias ? bias[o] : 0.0;
          for (int c = 0; c < C; c++)
            for (int i = 0; i < KH; i++)
              for (int j = 0; j < KW; j++) {
                size_t wi, xi;
                if (tap(s, mask, b, o, oy, ox, c, i, j, &wi, &xi)) acc += (double)w[wi] * x[xi];
              }
          y[(((size_t)b * O + o) * OH + oy) * OW + ox] = (float)acc;
        }
}

/// Direct reference convolution backward, in double; include/ck_sparse.h.
void ck_sparse_ref_conv2d_backward(const ck_conv_shape *s, const float *w, const float *mask,
                                   const float *x, const float *dy, float *dx, float *dw,
                                   float *dbias) {
  int OH, OW;
  out_dims(s, &OH, &OW);
  const int C = s->in_channels, H = s->in_height, W = s->in_width, O = s->out_channels;
  const int KH = s->kernel_h, KW = s->kernel_w;
  const size_t wsize = (size_t)O * C * KH * KW, xsize = (size_t)s->batch * C * H * W;
  double *gw = calloc(wsize, sizeof(double)), *gx = calloc(xsize ? xsize : 1, sizeof(double));
  double *gb = calloc((size_t)O, sizeof(double));
  for (int b = 0; b < s->batch; b++)
    for (int o = 0; o < O; o++)
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          const double g = dy[(((size_t)b * O + o) * OH + oy) * OW + ox];
          gb[o] += g;
          for (int c = 0; c < C; c++)
            for (int i = 0; i < KH; i++)
              for (int j = 0; j < KW; j++) {
                size_t wi, xi;
                if (!tap(s, mask, b, o, oy, ox, c, i, j, &wi, &xi)) continue;
                gw[wi] += g * x[xi];
                gx[xi] += g * w[wi];
              }
        }
  if (dw)
    for (size_t q = 0; q < wsize; q++) dw[q] = (float)gw[q];
  if (dx)
    for (size_t q = 0; q < xsize; q++) dx[q] = (float)gx[q];
  if (dbias)
    for (int o = 0; o < O; o++) dbias[o] = (float)gb[o];
  free(gw);
  free(gx);
  free(gb);
}
