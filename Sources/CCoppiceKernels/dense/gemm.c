// Row-major SGEMM split over OpenMP threads, each slice a single-threaded OpenBLAS call.
#include "ck_dense.h"
#include <cblas.h>

extern void openblas_set_num_threads(int num_threads);

/// Row-major sgemm split over OpenMP threads; contract in include/ck_dense.h.
void ck_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
  if (m <= 0 || n <= 0) return;
  enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  int threads = ck_get_threads();
  double flops = 2.0 * m * n * (double)k;
  if (threads <= 1 || flops < 4.0e6) {
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split the larger output dimension into `threads` slices aligned to 16.
  int split_rows = m >= n;
  int extent = split_rows ? m : n;
  int chunk = (extent + threads - 1) / threads;
  chunk = (chunk + 15) & ~15;
  int pieces = (extent + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int p = 0; p < pieces; p++) {
    int start = p * chunk;
    int len = extent - start < chunk ? extent - start : chunk;
    if (split_rows) {
      const float *a_slice = trans_a ? a + start : a + (size_t)start * lda;
      cblas_sgemm(CblasRowMajor, ta, tb, len, n, k, alpha, a_slice, lda, b, ldb, beta,
                  c + (size_t)start * ldc, ldc);
    } else {
      const float *b_slice = trans_b ? b + (size_t)start * ldb : b + start;
      cblas_sgemm(CblasRowMajor, ta, tb, m, len, k, alpha, a, lda, b_slice, ldb, beta, c + start,
                  ldc);
    }
  }
}

/// The same product through OpenBLAS threading (benchmarks); contract in include/ck_dense.h.
void ck_sgemm_openblas(int threads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc) {
  openblas_set_num_threads(threads < 1 ? 1 : threads);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  openblas_set_num_threads(1);
}
