/* Plain loops for the three sparse-layer products of a masked weight W (rows x cols, row-major)
 * and X (cols x n), for holding coppice_spmm / coppice_spmm_transposed / coppice_sddmm (and
 * coppice::SparseMatrix) against. Valid C99 and C++. Used by Tests/abi/test_c_api.c and
 * bindings/cpp/tests/test_coppice_hpp.cpp. */
#ifndef COPPICE_TESTS_REFERENCE_PRODUCTS_H
#define COPPICE_TESTS_REFERENCE_PRODUCTS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* y (rows x n) = W x;  dx (cols x n) = W^T y;  dw (rows x cols) = (y x^T) at kept positions.
 * y and dx must be zeroed by the caller. */
static void reference_products(const float *w, const uint8_t *mask, size_t rows, size_t cols,
                               const float *x, size_t n, float *y, float *dx, float *dw) {
  size_t r, c, j;
  for (r = 0; r < rows; ++r)
    for (c = 0; c < cols; ++c) {
      float wv = mask[r * cols + c] ? w[r * cols + c] : 0.0f;
      for (j = 0; j < n; ++j) y[r * n + j] += wv * x[c * n + j];
    }
  for (r = 0; r < rows; ++r)
    for (c = 0; c < cols; ++c) {
      float wv = mask[r * cols + c] ? w[r * cols + c] : 0.0f, acc = 0;
      for (j = 0; j < n; ++j) {
        dx[c * n + j] += wv * y[r * n + j];
        acc += y[r * n + j] * x[c * n + j];
      }
      dw[r * cols + c] = mask[r * cols + c] ? acc : 0.0f;
    }
}

/* max |a - b| / max(1, max |b|) */
static float reference_relative_error(const float *a, const float *b, size_t n) {
  float worst = 0, scale = 1;
  size_t i;
  for (i = 0; i < n; ++i) {
    worst = fabsf(a[i] - b[i]) > worst ? fabsf(a[i] - b[i]) : worst;
    scale = fabsf(b[i]) > scale ? fabsf(b[i]) : scale;
  }
  return worst / scale;
}

#endif
