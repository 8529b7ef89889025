// Portable C variant of the sparse kernels (instruction set 0): plain loops over the format,
// used where neither AVX2 nor AVX-512 is available or when a lower set is forced for tests.
#include "sparse/internal.h"

#define P CK_SPARSE_PANEL

/// The ck_sp_isa_kernels.spmm in plain C (contract in sparse/internal.h); scratch is unused.
static void spmm_c(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *x, int ldx,
                   const int64_t *xoff, const float *bias, float beta, float *y, int ldy,
                   float *scratch) {
  (void)scratch;
  const int M = a->rows;
  for (int i = r0; i < r1; i++) {
    float *yr = y + (size_t)i * ldy;
    const float b = bias ? bias[i] : 0.0f;
    if (beta != 0.0f)
      for (int c = n0; c < n1; c++) yr[c] = beta * yr[c] + b;
    else
      for (int c = n0; c < n1; c++) yr[c] = b;
    for (int p = 0; p < a->npanels; p++) {
      size_t s = (size_t)p * M + i;
      for (int32_t j = a->ptr[s]; j < a->ptr[s + 1]; j++) {
        const int k = p * P + a->col[j];
        const float *xr = xoff ? x + xoff[k] : x + (size_t)k * ldx;
        const float v = a->val[j];
        for (int c = n0; c < n1; c++) yr[c] += v * xr[c];
      }
    }
  }
}

/// The ck_sp_isa_kernels.sddmm in plain C (contract in sparse/internal.h); scratch is unused.
static void sddmm_c(const ck_sp_mat *a, int r0, int r1, int n0, int n1, const float *dy,
                    int lddy, const int64_t *dyoff, const float *x, int ldx, const int64_t *xoff,
                    float *acc, float *scratch) {
  (void)scratch;
  const int M = a->rows;
  for (int p = 0; p < a->npanels; p++) {
    for (int i = r0; i < r1; i++) {
      const float *d = dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy;
      size_t s = (size_t)p * M + i;
      for (int32_t j = a->ptr[s]; j < a->ptr[s + 1]; j++) {
        const int k = p * P + a->col[j];
        const float *xr = xoff ? x + xoff[k] : x + (size_t)k * ldx;
        float sum = 0.0f;
        for (int c = n0; c < n1; c++) sum += d[c] * xr[c];
        acc[j] += sum;
      }
    }
  }
}

/// The ck_sp_isa_kernels.sddmm_windows in plain C (contract in sparse/internal.h): lane l of
/// an entry sums the products at n ≡ l (mod CK_SP_LANES).
static void sddmm_windows_c(const ck_sp_window_entries *e, int images, int nw, const float *dy,
                            int lddy, const int64_t *dyoff, size_t dy_step, const float *x,
                            size_t x_step, float *lanes) {
  for (int sg = 0; sg < e->segments; sg++) {
    const int i = e->row[sg];
    const float *d = dyoff ? dy + dyoff[i] : dy + (size_t)i * lddy;
    for (int32_t q = e->start[sg]; q < e->start[sg + 1]; q++) {
      float *l = lanes + (size_t)e->value[q] * CK_SP_LANES;
      for (int b = 0; b < images; b++) {
        const float *db = d + (size_t)b * dy_step, *xr = x + (size_t)b * x_step + e->off[q];
        for (int n = 0; n < nw; n++) l[n % CK_SP_LANES] += db[n] * xr[n];
      }
    }
  }
}

const ck_sp_isa_kernels ck_sp_kernels_portable = {spmm_c, sddmm_c, sddmm_windows_c};
