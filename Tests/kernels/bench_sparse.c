// Benchmark of the sparse kernels against dense OpenBLAS sgemm on the same products.
//
// Build and run (from the repository root; `make -C Tests/kernels bench` does the same):
//   OMP_INC=/usr/lib/llvm-14/lib/clang/14.0.6/include OMP_LIB=/usr/lib/llvm-14/lib
//   clang -O2 -fopenmp -isystem $OMP_INC -ISources/CCoppiceKernels/include
//     -ISources/CCoppiceKernels $(find Sources/CCoppiceKernels/sparse
//     Sources/CCoppiceKernels/jobs -name "*.c") Tests/kernels/bench_sparse.c -L$OMP_LIB
//     -Wl,-rpath,$OMP_LIB -lomp -lopenblas -lm -o /tmp/bench_sparse    (one line)
//   /tmp/bench_sparse [--shape MxKxN]... [--sparsity S]... [--threads T] [--reps R] [--json FILE]
//                     [--conv | --no-conv]
//
// For each shape (W is M×K, X is K×N) and sparsity it prints, for forward (Y = W·X), input_grad
// (dX = Wᵀ·dY) and weight_grad (dW = dY·Xᵀ at kept positions), plus backward = both gradients:
// the dense time (OpenBLAS cblas_sgemm with T threads, same product on the masked dense weight),
// the sparse time (T OpenMP threads), the speedup, the dense-equivalent GFLOP/s of the sparse
// kernel (2·M·K·N / time) and the fraction of the ideal speedup 1/(1−s) reached.
// With --conv (or after the GEMM shapes by default) the cnn conv2/conv3 layers at batch 128 run
// end to end: sparse conv forward/backward (im2col per image) against dense im2col + sgemm per
// image with images over the OpenMP threads (how the engine runs dense convolutions).
// Times are the median of R runs after a warm-up run. The two thread pools are never busy at the
// same time: a pause after each phase lets OpenBLAS's and OpenMP's spinning workers go to sleep.
#include "ck_sparse.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void openblas_set_num_threads(int num_threads);

static uint64_t rng = 88172645463325252ull;
static double uniform(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef void (*run_fn)(void *ctx);

static double time_median(run_fn fn, void *ctx, int reps) {
  double t[64];
  if (reps > 64) reps = 64;
  fn(ctx); // warm-up
  for (int r = 0; r < reps; r++) {
    double t0 = omp_get_wtime();
    fn(ctx);
    t[r] = omp_get_wtime() - t0;
  }
  qsort(t, reps, sizeof(double), cmp_double);
  return t[reps / 2] * 1e3;
}

typedef struct {
  int m, k, n;
  float *w, *x, *y, *dy, *dx, *dw, *vals;
  ck_sparse *s;
} problem;

static void dense_fwd(void *p_) {
  problem *p = p_;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->m, p->n, p->k, 1.0f, p->w, p->k,
              p->x, p->n, 0.0f, p->y, p->n);
}
static void dense_igrad(void *p_) {
  problem *p = p_;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->k, p->n, p->m, 1.0f, p->w, p->k,
              p->dy, p->n, 0.0f, p->dx, p->n);
}
static void dense_wgrad(void *p_) {
  problem *p = p_;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->m, p->k, p->n, 1.0f, p->dy, p->n,
              p->x, p->n, 0.0f, p->dw, p->k);
}
static void sparse_fwd(void *p_) {
  problem *p = p_;
  ck_sparse_spmm(p->s, p->n, p->x, p->n, NULL, 0.0f, p->y, p->n);
}
static void sparse_igrad(void *p_) {
  problem *p = p_;
  ck_sparse_spmm_t(p->s, p->n, p->dy, p->n, 0.0f, p->dx, p->n);
}
static void sparse_wgrad(void *p_) {
  problem *p = p_;
  ck_sparse_sddmm(p->s, p->n, p->dy, p->n, p->x, p->n, 0.0f, p->vals);
}

static FILE *json = NULL;
static int json_first = 1;

static void report(const char *op, const problem *p, double s, double dense_ms, double sparse_ms) {
  const double flops = 2.0 * p->m * p->k * (double)p->n * (strcmp(op, "backward") ? 1.0 : 2.0);
  const double speedup = dense_ms / sparse_ms;
  const double ideal = s < 1.0 ? 1.0 / (1.0 - s) : INFINITY;
  printf("%-11s %5dx%5dx%6d  s=%.2f  dense %8.3f ms  sparse %8.3f ms  speedup %6.2fx  "
         "dense-eq %7.1f GF/s  ideal %6.1fx  of-ideal %5.1f%%\n",
         op, p->m, p->k, p->n, s, dense_ms, sparse_ms, speedup, flops / sparse_ms * 1e-6, ideal,
         100.0 * speedup / ideal);
  fflush(stdout);
  if (json) {
    fprintf(json,
            "%s\n  {\"op\": \"%s\", \"shape\": [%d, %d, %d], \"sparsity\": %.4f, "
            "\"dense_ms\": %.4f, \"sparse_ms\": %.4f, \"speedup\": %.4f, "
            "\"dense_equivalent_gflops\": %.2f, \"fraction_of_ideal\": %.4f}",
            json_first ? "" : ",", op, p->m, p->k, p->n, s, dense_ms, sparse_ms, speedup,
            flops / sparse_ms * 1e-6, speedup / ideal);
    json_first = 0;
  }
}


// ---- Convolution layers end to end (im2col per image), the reference cnn at batch B ----------
typedef struct {
  ck_conv_shape sh;
  int K, N;
  float *x, *w, *y, *dy, *dx, *dw, *vals, *bias, *db;
  ck_sparse *s;
} conv_problem;

static void im2col_img(const ck_conv_shape *s, const float *x, float *col) {
  const int oh = s->out_height, ow = s->out_width;
  for (int c = 0; c < s->in_channels; c++)
    for (int i = 0; i < s->kernel_h; i++)
      for (int j = 0; j < s->kernel_w; j++) {
        float *row = col + (size_t)((c * s->kernel_h + i) * s->kernel_w + j) * oh * ow;
        for (int oy = 0; oy < oh; oy++)
          for (int ox = 0; ox < ow; ox++) {
            int iy = oy * s->stride - s->padding + i, ix = ox * s->stride - s->padding + j;
            row[oy * ow + ox] = (iy >= 0 && iy < s->in_height && ix >= 0 && ix < s->in_width)
                                    ? x[((size_t)c * s->in_height + iy) * s->in_width + ix]
                                    : 0.0f;
          }
      }
}

static void col2im_img(const ck_conv_shape *s, const float *col, float *x) {
  const int oh = s->out_height, ow = s->out_width;
  memset(x, 0, sizeof(float) * s->in_channels * s->in_height * s->in_width);
  for (int c = 0; c < s->in_channels; c++)
    for (int i = 0; i < s->kernel_h; i++)
      for (int j = 0; j < s->kernel_w; j++) {
        const float *row = col + (size_t)((c * s->kernel_h + i) * s->kernel_w + j) * oh * ow;
        for (int oy = 0; oy < oh; oy++)
          for (int ox = 0; ox < ow; ox++) {
            int iy = oy * s->stride - s->padding + i, ix = ox * s->stride - s->padding + j;
            if (iy >= 0 && iy < s->in_height && ix >= 0 && ix < s->in_width)
              x[((size_t)c * s->in_height + iy) * s->in_width + ix] += row[oy * ow + ox];
          }
      }
}

// Dense conv the way the engine runs it: images over OpenMP threads, single-threaded sgemm each.
static void dense_conv_fwd(void *p_) {
  conv_problem *p = p_;
  const size_t in_img = (size_t)p->sh.in_channels * p->sh.in_height * p->sh.in_width;
  openblas_set_num_threads(1);
#pragma omp parallel
  {
    float *col = malloc(sizeof(float) * (size_t)p->K * p->N);
#pragma omp for schedule(static)
    for (int b = 0; b < p->sh.batch; b++) {
      im2col_img(&p->sh, p->x + b * in_img, col);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->sh.out_channels, p->N, p->K, 1.0f,
                  p->w, p->K, col, p->N, 0.0f, p->y + (size_t)b * p->sh.out_channels * p->N, p->N);
    }
    free(col);
  }
}
static void dense_conv_bwd(void *p_) {
  conv_problem *p = p_;
  const size_t in_img = (size_t)p->sh.in_channels * p->sh.in_height * p->sh.in_width;
  const int O = p->sh.out_channels;
  openblas_set_num_threads(1);
  const int T = omp_get_max_threads();
  float *priv = calloc((size_t)T * O * p->K, sizeof(float));
#pragma omp parallel
  {
    float *col = malloc(sizeof(float) * (size_t)p->K * p->N);
    float *dcol = malloc(sizeof(float) * (size_t)p->K * p->N);
    float *mine = priv + (size_t)omp_get_thread_num() * O * p->K;
#pragma omp for schedule(static)
    for (int b = 0; b < p->sh.batch; b++) {
      const float *dyb = p->dy + (size_t)b * O * p->N;
      im2col_img(&p->sh, p->x + b * in_img, col);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, O, p->K, p->N, 1.0f, dyb, p->N, col,
                  p->N, 1.0f, mine, p->K);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->K, p->N, O, 1.0f, p->w, p->K, dyb,
                  p->N, 0.0f, dcol, p->N);
      col2im_img(&p->sh, dcol, p->dx + b * in_img);
    }
#pragma omp for schedule(static)
    for (int q = 0; q < O * p->K; q++) {
      float s = 0.0f;
      for (int t = 0; t < T; t++) s += priv[(size_t)t * O * p->K + q];
      p->dw[q] = s;
    }
    free(col);
    free(dcol);
  }
  free(priv);
}
static void sparse_conv_fwd(void *p_) {
  conv_problem *p = p_;
  ck_sparse_conv2d_forward(&p->sh, p->s, p->x, NULL, p->y);
}
static void sparse_conv_bwd(void *p_) {
  conv_problem *p = p_;
  ck_sparse_conv2d_backward(&p->sh, p->s, p->x, p->dy, p->dx, p->vals, NULL);
}

static void bench_conv(const char *name, ck_conv_shape sh, const double *sps, int nsps, int reps) {
  conv_problem p = {.sh = sh};
  p.sh.out_height = (sh.in_height + 2 * sh.padding - sh.kernel_h) / sh.stride + 1;
  p.sh.out_width = (sh.in_width + 2 * sh.padding - sh.kernel_w) / sh.stride + 1;
  p.K = sh.in_channels * sh.kernel_h * sh.kernel_w;
  p.N = p.sh.out_height * p.sh.out_width;
  const int O = sh.out_channels;
  const size_t xs = (size_t)sh.batch * sh.in_channels * sh.in_height * sh.in_width;
  const size_t ys = (size_t)sh.batch * O * p.N, ws = (size_t)O * p.K;
  p.x = malloc(sizeof(float) * xs);
  p.dx = malloc(sizeof(float) * xs);
  p.y = malloc(sizeof(float) * ys);
  p.dy = malloc(sizeof(float) * ys);
  p.w = malloc(sizeof(float) * ws);
  p.dw = malloc(sizeof(float) * ws);
  p.vals = malloc(sizeof(float) * (ws + 1));
  float *mask = malloc(sizeof(float) * ws);
  for (size_t i = 0; i < xs; i++) p.x[i] = (float)(uniform() - 0.5);
  for (size_t i = 0; i < ys; i++) p.dy[i] = (float)(uniform() - 0.5);
  for (size_t i = 0; i < ws; i++) p.w[i] = (float)(uniform() - 0.5);
  const double d_f = time_median(dense_conv_fwd, &p, reps);
  const double d_b = time_median(dense_conv_bwd, &p, reps);
  usleep(300000);
  for (int si = 0; si < nsps; si++) {
    for (size_t i = 0; i < ws; i++) mask[i] = uniform() >= sps[si] ? 1.0f : 0.0f;
    p.s = ck_sparse_create(O, p.K, p.w, mask);
    const double s_f = time_median(sparse_conv_fwd, &p, reps);
    const double s_b = time_median(sparse_conv_bwd, &p, reps);
    problem shape = {.m = O, .k = p.K, .n = p.N * sh.batch};
    char op[32];
    snprintf(op, sizeof op, "%s_fwd", name);
    report(op, &shape, sps[si], d_f, s_f);
    snprintf(op, sizeof op, "%s_bwd", name);
    report(op, &shape, sps[si], d_b, s_b);
    ck_sparse_free(p.s);
  }
  usleep(300000);
  free(p.x), free(p.dx), free(p.y), free(p.dy), free(p.w), free(p.dw), free(p.vals), free(mask);
}

static void usage(void) {
  printf("usage: bench_sparse [--shape MxKxN]... [--sparsity S]... [--threads T] [--reps R] "
         "[--json FILE] [--conv | --no-conv]\n"
         "  --conv: only the cnn convolution layers end to end; --no-conv: only GEMM shapes\n");
}

int main(int argc, char **argv) {
  int shapes[32][3], nshapes = 0, threads = 2, reps = 7;
  double sps[32];
  int nsps = 0;
  const char *json_path = NULL;
  int conv_only = 0, conv_none = 0;
  for (int a = 1; a < argc; a++) {
    if (!strcmp(argv[a], "--shape") && a + 1 < argc && nshapes < 32) {
      if (sscanf(argv[++a], "%dx%dx%d", &shapes[nshapes][0], &shapes[nshapes][1],
                 &shapes[nshapes][2]) == 3)
        nshapes++;
    } else if (!strcmp(argv[a], "--sparsity") && a + 1 < argc && nsps < 32) {
      sps[nsps++] = atof(argv[++a]);
    } else if (!strcmp(argv[a], "--threads") && a + 1 < argc) {
      threads = atoi(argv[++a]);
    } else if (!strcmp(argv[a], "--reps") && a + 1 < argc) {
      reps = atoi(argv[++a]);
    } else if (!strcmp(argv[a], "--conv")) {
      conv_only = 1;
    } else if (!strcmp(argv[a], "--no-conv")) {
      conv_none = 1;
    } else if (!strcmp(argv[a], "--json") && a + 1 < argc) {
      json_path = argv[++a];
    } else {
      usage();
      return !strcmp(argv[a], "--help") ? 0 : 2;
    }
  }
  if (nshapes == 0) {
    const int def[][3] = {{256, 2304, 3136}, {512, 4608, 784},      {1024, 1024, 256},
                          {4096, 1024, 128}, {32, 9, 784 * 128},    {64, 288, 784 * 128},
                          {128, 576, 196 * 128}};
    nshapes = sizeof def / sizeof def[0];
    memcpy(shapes, def, sizeof def);
  }
  if (nsps == 0) {
    const double def[] = {0.5, 0.7, 0.8, 0.9, 0.95, 0.98};
    nsps = sizeof def / sizeof def[0];
    memcpy(sps, def, sizeof def);
  }
  if (json_path) {
    json = fopen(json_path, "w");
    if (!json) {
      perror(json_path);
      return 1;
    }
    fprintf(json, "[");
  }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  printf("threads %d, isa %d (2 = AVX-512), reps %d (median)\n", threads, ck_sparse_isa(), reps);
  for (int q = 0; q < nshapes && !conv_only; q++) {
    problem p = {.m = shapes[q][0], .k = shapes[q][1], .n = shapes[q][2]};
    const size_t mk = (size_t)p.m * p.k, kn = (size_t)p.k * p.n, mn = (size_t)p.m * p.n;
    float *w_full = malloc(sizeof(float) * mk), *mask = malloc(sizeof(float) * mk);
    p.w = malloc(sizeof(float) * mk);
    p.x = malloc(sizeof(float) * kn);
    p.dx = malloc(sizeof(float) * kn);
    p.y = malloc(sizeof(float) * mn);
    p.dy = malloc(sizeof(float) * mn);
    p.dw = malloc(sizeof(float) * mk);
    p.vals = malloc(sizeof(float) * (mk + 1));
    for (size_t i = 0; i < mk; i++) w_full[i] = (float)(uniform() - 0.5);
    for (size_t i = 0; i < kn; i++) p.x[i] = (float)(uniform() - 0.5);
    for (size_t i = 0; i < mn; i++) p.dy[i] = (float)(uniform() - 0.5);
    memcpy(p.w, w_full, sizeof(float) * mk);
    // Dense times do not depend on the values: measure once per shape.
    const double d_fwd = time_median(dense_fwd, &p, reps);
    const double d_ig = time_median(dense_igrad, &p, reps);
    const double d_wg = time_median(dense_wgrad, &p, reps);
    usleep(300000);
    for (int si = 0; si < nsps; si++) {
      const double s = sps[si];
      for (size_t i = 0; i < mk; i++) mask[i] = uniform() >= s ? 1.0f : 0.0f;
      double t0 = omp_get_wtime();
      p.s = ck_sparse_create(p.m, p.k, w_full, mask);
      const double build_ms = (omp_get_wtime() - t0) * 1e3;
      if (!p.s) {
        printf("cannot build %dx%d\n", p.m, p.k);
        return 1;
      }
      const double s_fwd = time_median(sparse_fwd, &p, reps);
      const double s_ig = time_median(sparse_igrad, &p, reps);
      const double s_wg = time_median(sparse_wgrad, &p, reps);
      report("forward", &p, s, d_fwd, s_fwd);
      report("input_grad", &p, s, d_ig, s_ig);
      report("weight_grad", &p, s, d_wg, s_wg);
      report("backward", &p, s, d_ig + d_wg, s_ig + s_wg);
      t0 = omp_get_wtime();
      ck_sparse_update_values(p.s, w_full);
      printf("%-11s %5dx%5dx%6d  s=%.2f  build %.2f ms  value update %.3f ms  format %.1f MB\n",
             "format", p.m, p.k, p.n, s, build_ms, (omp_get_wtime() - t0) * 1e3,
             ck_sparse_bytes(p.s) / 1e6);
      ck_sparse_free(p.s);
    }
    usleep(300000);
    free(w_full), free(mask), free(p.w), free(p.x), free(p.dx), free(p.y), free(p.dy);
    free(p.dw), free(p.vals);
  }
  if (!conv_none) {
    // cnn conv2 (32→64, 28×28) and conv3 (64→128, 14×14), 3×3, padding 1, batch 128.
    const ck_conv_shape conv2 = {.batch = 128, .in_channels = 32, .in_height = 28, .in_width = 28,
                                 .out_channels = 64, .kernel_h = 3, .kernel_w = 3, .stride = 1,
                                 .padding = 1};
    const ck_conv_shape conv3 = {.batch = 128, .in_channels = 64, .in_height = 14, .in_width = 14,
                                 .out_channels = 128, .kernel_h = 3, .kernel_w = 3, .stride = 1,
                                 .padding = 1};
    bench_conv("cnn.conv2", conv2, sps, nsps, reps);
    bench_conv("cnn.conv3", conv3, sps, nsps, reps);
  }
  if (json) {
    fprintf(json, "\n]\n");
    fclose(json);
  }
  return 0;
}
