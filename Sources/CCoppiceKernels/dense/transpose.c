// Blocked matrix transpose, parallel over row blocks.
#include "ck_dense.h"

#define CK_TRANSPOSE_BLOCK 32

/// dst (cols×rows) = srcᵀ, blocked; contract in include/ck_dense.h.
void ck_transpose(int rows, int cols, const float *src, float *dst) {
  const int b = CK_TRANSPOSE_BLOCK;
  const int row_blocks = (rows + b - 1) / b;
#pragma omp parallel for num_threads(ck_get_threads()) if ((long)rows * cols > 65536) \
    schedule(static)
  for (int rb = 0; rb < row_blocks; rb++) {
    int r0 = rb * b, r1 = r0 + b < rows ? r0 + b : rows;
    for (int c0 = 0; c0 < cols; c0 += b) {
      int c1 = c0 + b < cols ? c0 + b : cols;
      for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
    }
  }
}
