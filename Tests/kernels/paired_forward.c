// Paired timing of the sparse forward product against dense OpenBLAS sgemm, for hosts whose
// speed drifts (shared machines): every repetition times dense, then the sparse product with the
// code compiled for the pattern (sparse/jit/) and with the generic kernel (CK_SPARSE_JIT=0),
// back to back, each the best of 3 calls; the ratios of one repetition share the machine's state,
// and the report is the median (and range) of the per-repetition ratios.
//
//   make -C Tests/kernels paired                     the four GEMM shapes of the kernel issue
//   /tmp/coppice-kernels/paired_forward [--shape MxKxN]... [--sparsity S]... [--reps R]
#include "ck_sparse.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void openblas_set_num_threads(int num_threads);

static uint64_t rng = 0x2545F4914F6CDD1Dull;
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

typedef struct {
  int m, k, n;
  const float *w, *x;
  float *y;
  ck_sparse *s;
} product;

static void dense(const product *p) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->m, p->n, p->k, 1.0f, p->w, p->k, p->x,
              p->n, 0.0f, p->y, p->n);
}
static void sparse(const product *p) {
  ck_sparse_spmm(p->s, p->n, p->x, p->n, NULL, 0.0f, p->y, p->n);
}

static double best_of_3(void (*fn)(const product *), const product *p) {
  double best = 1e30;
  for (int i = 0; i < 3; i++) {
    double t0 = omp_get_wtime();
    fn(p);
    double t = omp_get_wtime() - t0;
    if (t < best) best = t;
  }
  return best;
}

static void summary(const char *what, double *r, int n) {
  qsort(r, n, sizeof(double), cmp_double);
  printf("  %-8s median %5.2fx  (range %.2f-%.2fx)", what, r[n / 2], r[0], r[n - 1]);
}

static void run(int m, int k, int n, double sparsity, int reps) {
  float *w = malloc(sizeof(float) * (size_t)m * k), *mask = malloc(sizeof(float) * (size_t)m * k);
  float *x = malloc(sizeof(float) * (size_t)k * n), *y = malloc(sizeof(float) * (size_t)m * n);
  for (size_t i = 0; i < (size_t)m * k; i++) {
    mask[i] = uniform() >= sparsity;
    w[i] = mask[i] * (float)(uniform() - 0.5);
  }
  for (size_t i = 0; i < (size_t)k * n; i++) x[i] = (float)(uniform() - 0.5);
  product d = {m, k, n, w, x, y, NULL};
  product generic = d, compiled = d;
  generic.s = ck_sparse_create(m, k, w, mask);
  compiled.s = ck_sparse_create(m, k, w, mask);
  // The choice is made at a format's first product: generic first with the JIT switched off.
  setenv("CK_SPARSE_JIT", "0", 1);
  sparse(&generic);
  unsetenv("CK_SPARSE_JIT");
  double t0 = omp_get_wtime();
  sparse(&compiled);
  const double first_ms = (omp_get_wtime() - t0) * 1e3;
  double *rj = malloc(sizeof(double) * reps), *rg = malloc(sizeof(double) * reps);
  double dense_ms = 0, jit_ms = 0;
  for (int r = 0; r < reps; r++) {
    const double td = best_of_3(dense, &d);
    usleep(300000); // OpenBLAS's threads stop spinning
    const double tj = best_of_3(sparse, &compiled), tg = best_of_3(sparse, &generic);
    usleep(300000); // and OpenMP's (KMP_BLOCKTIME is 200 ms by default)
    rj[r] = td / tj;
    rg[r] = td / tg;
    dense_ms += td * 1e3 / reps;
    jit_ms += tj * 1e3 / reps;
  }
  printf("%5dx%5dx%5d s=%.2f  dense %6.2f ms  sparse %6.2f ms (first call %.1f ms)", m, k, n,
         sparsity, dense_ms, jit_ms, first_ms);
  summary("compiled", rj, reps);
  summary("generic", rg, reps);
  printf("\n");
  fflush(stdout);
  free(rj), free(rg), free(w), free(mask), free(x), free(y);
  ck_sparse_free(generic.s);
  ck_sparse_free(compiled.s);
}

int main(int argc, char **argv) {
  int shapes[16][3], nshapes = 0, reps = 15, nsp = 0;
  double sp[16];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shape") && i + 1 < argc && nshapes < 16 &&
        sscanf(argv[++i], "%dx%dx%d", &shapes[nshapes][0], &shapes[nshapes][1],
               &shapes[nshapes][2]) == 3)
      nshapes++;
    else if (!strcmp(argv[i], "--sparsity") && i + 1 < argc && nsp < 16)
      sp[nsp++] = atof(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--shape MxKxN]... [--sparsity S]... [--reps R]\n", argv[0]);
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  if (!nshapes) {
    const int d[4][3] = {{256, 2304, 3136}, {512, 4608, 784}, {1024, 1024, 256}, {4096, 1024, 128}};
    memcpy(shapes, d, sizeof d);
    nshapes = 4;
  }
  if (!nsp) sp[nsp++] = 0.9;
  openblas_set_num_threads(omp_get_max_threads());
  printf("paired forward timing: %d threads, ISA %d, %d repetitions (ratios = dense / sparse)\n",
         omp_get_max_threads(), ck_sparse_isa(), reps);
  for (int q = 0; q < nshapes; q++)
    for (int s = 0; s < nsp; s++) run(shapes[q][0], shapes[q][1], shapes[q][2], sp[s], reps);
  return 0;
}
