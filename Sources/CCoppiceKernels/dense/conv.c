// Dense 2-D convolution: per image im2col into a thread-private buffer, then one
// single-threaded OpenBLAS product per image; images are split over OpenMP threads.
#include "ck_dense.h"
#include "ck_jobs.h"
#include "ck_clones.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/// Fills out_height/out_width; 0 if the shape is valid, else -1 (include/ck_dense.h).
int ck_conv_shape_finish(ck_conv_shape *s) {
  if (s->batch < 0 || s->in_channels <= 0 || s->in_height <= 0 || s->in_width <= 0 ||
      s->out_channels <= 0 || s->kernel_h <= 0 || s->kernel_w <= 0 || s->stride <= 0 ||
      s->padding < 0)
    return -1;
  int oh = (s->in_height + 2 * s->padding - s->kernel_h) / s->stride + 1;
  int ow = (s->in_width + 2 * s->padding - s->kernel_w) / s->stride + 1;
  if (oh <= 0 || ow <= 0) return -1;
  s->out_height = oh;
  s->out_width = ow;
  return 0;
}

/// Column matrix of one image; contract in include/ck_dense.h.
CK_CLONES void ck_im2col(const ck_conv_shape *s, const float *x, float *col) {
  const int h = s->in_height, w = s->in_width, oh = s->out_height, ow = s->out_width;
  const int st = s->stride, pad = s->padding;
  for (int c = 0; c < s->in_channels; c++) {
    const float *plane = x + (size_t)c * h * w;
    for (int i = 0; i < s->kernel_h; i++) {
      for (int j = 0; j < s->kernel_w; j++) {
        float *row = col + ((size_t)(c * s->kernel_h + i) * s->kernel_w + j) * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * st - pad + i;
          float *out = row + (size_t)oy * ow;
          if (iy < 0 || iy >= h) {
            memset(out, 0, sizeof(float) * ow);
            continue;
          }
          const float *in = plane + (size_t)iy * w;
          if (st == 1) {
            // Valid ox range: 0 <= ox - pad + j < w.
            int lo = pad - j > 0 ? pad - j : 0;
            int hi = w + pad - j < ow ? w + pad - j : ow;
            if (hi < lo) hi = lo;
            for (int ox = 0; ox < lo; ox++) out[ox] = 0.0f;
            if (hi > lo) memcpy(out + lo, in + lo - pad + j, sizeof(float) * (hi - lo));
            for (int ox = hi; ox < ow; ox++) out[ox] = 0.0f;
          } else {
            for (int ox = 0; ox < ow; ox++) {
              int ix = ox * st - pad + j;
              out[ox] = (ix >= 0 && ix < w) ? in[ix] : 0.0f;
            }
          }
        }
      }
    }
  }
}

/// dx_image += col2im(col), the adjoint of ck_im2col; contract in include/ck_dense.h.
CK_CLONES void ck_col2im_add(const ck_conv_shape *s, const float *col, float *dx) {
  const int h = s->in_height, w = s->in_width, oh = s->out_height, ow = s->out_width;
  const int st = s->stride, pad = s->padding;
  for (int c = 0; c < s->in_channels; c++) {
    float *plane = dx + (size_t)c * h * w;
    for (int i = 0; i < s->kernel_h; i++) {
      for (int j = 0; j < s->kernel_w; j++) {
        const float *row = col + ((size_t)(c * s->kernel_h + i) * s->kernel_w + j) * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
          int iy = oy * st - pad + i;
          if (iy < 0 || iy >= h) continue;
          const float *src = row + (size_t)oy * ow;
          float *dst = plane + (size_t)iy * w;
          if (st == 1) {
            int lo = pad - j > 0 ? pad - j : 0;
            int hi = w + pad - j < ow ? w + pad - j : ow;
            float *d = dst - pad + j;
            for (int ox = lo; ox < hi; ox++) d[ox] += src[ox];
          } else {
            for (int ox = 0; ox < ow; ox++) {
              int ix = ox * st - pad + j;
              if (ix >= 0 && ix < w) dst[ix] += src[ox];
            }
          }
        }
      }
    }
  }
}

/// 1 when the convolution is 1×1, stride 1, no padding: the image is its own column matrix.
static int is_pointwise(const ck_conv_shape *s) {
  return s->kernel_h == 1 && s->kernel_w == 1 && s->stride == 1 && s->padding == 0;
}

/// Dense convolution forward (im2col + sgemm per image); contract in include/ck_dense.h.
void ck_conv2d_forward(const ck_conv_shape *s, const float *x, const float *w, const float *bias,
                       float *y) {
  const int kdim = s->in_channels * s->kernel_h * s->kernel_w;
  const int hw_out = s->out_height * s->out_width;
  const size_t in_image = (size_t)s->in_channels * s->in_height * s->in_width;
  const size_t out_image = (size_t)s->out_channels * hw_out;
  const int pointwise = is_pointwise(s);
#pragma omp parallel num_threads(ck_get_threads())
  {
    float *col = pointwise ? NULL : ck_scratch_take((size_t)kdim * hw_out);
#pragma omp for schedule(static)
    for (int n = 0; n < s->batch; n++) {
      const float *src = x + n * in_image;
      if (!pointwise) {
        ck_im2col(s, src, col);
        src = col;
      }
      float *out = y + n * out_image;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->out_channels, hw_out, kdim, 1.0f,
                  w, kdim, src, hw_out, 0.0f, out, hw_out);
      if (bias) {
        for (int o = 0; o < s->out_channels; o++) {
          float b = bias[o];
          float *row = out + (size_t)o * hw_out;
          for (int p = 0; p < hw_out; p++) row[p] += b;
        }
      }
    }
    ck_scratch_give(col);
  }
}

/// Dense convolution backward (dw, dbias, dx); contract in include/ck_dense.h.
void ck_conv2d_backward(const ck_conv_shape *s, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *dbias) {
  const int kdim = s->in_channels * s->kernel_h * s->kernel_w;
  const int hw_out = s->out_height * s->out_width;
  const size_t in_image = (size_t)s->in_channels * s->in_height * s->in_width;
  const size_t out_image = (size_t)s->out_channels * hw_out;
  const size_t wcount = (size_t)s->out_channels * kdim;
  const int pointwise = is_pointwise(s);
  const int threads = ck_get_threads();
  // Thread-private weight-gradient accumulators, reduced at the end.
  const size_t acc_floats = (size_t)threads * (wcount + s->out_channels);
  float *acc = ck_scratch_take(acc_floats);
  memset(acc, 0, sizeof(float) * acc_floats);
#pragma omp parallel num_threads(threads)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float *my_dw = acc + (size_t)tid * (wcount + s->out_channels);
    float *my_db = my_dw + wcount;
    float *col = pointwise ? NULL : ck_scratch_take((size_t)kdim * hw_out);
    float *dcol = ck_scratch_take((size_t)kdim * hw_out);
#pragma omp for schedule(static)
    for (int n = 0; n < s->batch; n++) {
      const float *src = x + n * in_image;
      const float *g = dy + n * out_image;
      if (!pointwise) {
        ck_im2col(s, src, col);
        src = col;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->out_channels, kdim, hw_out, 1.0f, g,
                  hw_out, src, hw_out, 1.0f, my_dw, kdim);
      if (dbias) {
        for (int o = 0; o < s->out_channels; o++) {
          const float *row = g + (size_t)o * hw_out;
          float sum = 0.0f;
          for (int p = 0; p < hw_out; p++) sum += row[p];
          my_db[o] += sum;
        }
      }
      if (dx) {
        float *dimg = dx + n * in_image;
        if (pointwise) {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kdim, hw_out, s->out_channels,
                      1.0f, w, kdim, g, hw_out, 0.0f, dimg, hw_out);
        } else {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kdim, hw_out, s->out_channels,
                      1.0f, w, kdim, g, hw_out, 0.0f, dcol, hw_out);
          memset(dimg, 0, sizeof(float) * in_image);
          ck_col2im_add(s, dcol, dimg);
        }
      }
    }
    ck_scratch_give(col);
    ck_scratch_give(dcol);
  }
  // Reduce the per-thread accumulators.
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < wcount; i++) {
    float sum = 0.0f;
    for (int t = 0; t < threads; t++) sum += acc[(size_t)t * (wcount + s->out_channels) + i];
    dw[i] = sum;
  }
  if (dbias) {
    for (int o = 0; o < s->out_channels; o++) {
      float sum = 0.0f;
      for (int t = 0; t < threads; t++)
        sum += acc[(size_t)t * (wcount + s->out_channels) + wcount + o];
      dbias[o] = sum;
    }
  }
  ck_scratch_give(acc);
}
