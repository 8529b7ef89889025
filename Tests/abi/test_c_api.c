/* Tests of the C ABI from a C host (valid C99 and C++; `make test-abi` builds it both ways with
 * -Wall -Wextra -Werror -pedantic and runs both):
 *  - library: header and library versions agree, threads can be set, a bad call returns its
 *    status with a message;
 *  - sparsifier: a host's training loop (784-64-32-10 weights, random gradients, SGD with
 *    momentum reset where changed_mask says) driven by C-GaP at 90% ends with every weight
 *    matrix at exactly round(n*0.9) zeros, zero in the host's own buffers;
 *  - kernels: coppice_spmm, coppice_spmm_transposed and coppice_sddmm on that 90% sparse
 *    64x784 layer against plain loops;
 *  - engine: a model trained with C-GaP at 90% on a Fashion-MNIST subset, exported with CSR
 *    weights and loaded back, scores the trained accuracy (±0.2 points), also after a
 *    checkpointed run and a second run that resumes the finished one.
 *
 *   test_c_api [train_limit [test_limit [epochs]]]     (defaults: 3000 1000 4)
 * Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (COPPICE_DATA overrides).
 * Exit status 0 when every check passed. */
#define _XOPEN_SOURCE 700
#include <coppice.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_products.h"

static int failures = 0;

static void expect(int condition, const char *what) {
  printf("%s: %s\n", condition ? "ok  " : "FAIL", what);
  failures += !condition;
}

/* A failed call is a failed check; the test goes on where it can. */
static int call_ok(coppice_status status, const char *call) {
  if (status == COPPICE_OK) return 1;
  printf("FAIL: %s: %s: %s\n", call, coppice_status_name(status), coppice_last_error());
  ++failures;
  return 0;
}
#define CALL(call) call_ok((call), #call)

static void *checked_calloc(size_t count, size_t size) {
  void *p = calloc(count, size);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}
#define ZEROS(type, count) ((type *)checked_calloc((size_t)(count), sizeof(type)))

static unsigned long long rng_state = 88172645463325252ULL;
static double uniform(void) { /* xorshift64, in [0, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* ---- library ------------------------------------------------------------------------------ */

static void library(void) {
  coppice_status status;
  expect(coppice_version_number() == COPPICE_VERSION_NUMBER,
         "coppice_version_number() == COPPICE_VERSION_NUMBER");
  expect(coppice_set_threads(2) == COPPICE_OK && coppice_get_threads() == 2,
         "coppice_set_threads(2), coppice_get_threads() == 2");
  status = coppice_set_threads(-1);
  expect(status == COPPICE_INVALID_ARGUMENT && strlen(coppice_last_error()) > 0,
         "coppice_set_threads(-1) is INVALID_ARGUMENT with a message");
}

/* ---- a host's thread pool lent to the layer operations ------------------------------------ */

static int runner_calls = 0;
/* A "pool" that runs the job on the calling thread only (a pool may give fewer threads). */
static void counting_runner(void (*fn)(void *), void *data, unsigned threads, unsigned flags) {
  (void)threads, (void)flags;
  runner_calls++;
  fn(data);
}

static void parallel_runner(void) {
  enum { OUT = 64, IN = 96, BATCH = 200 };
  static float w[OUT * IN], x[BATCH * IN], dy[BATCH * OUT], y[2][BATCH * OUT], dx[2][BATCH * IN];
  static uint8_t mask[OUT * IN];
  for (int i = 0; i < OUT * IN; i++) {
    w[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    mask[i] = (i * 7) % 10 == 0; /* 90% sparse */
  }
  for (int i = 0; i < BATCH * IN; i++) x[i] = (float)((i * 13) % 23) / 23.0f - 0.5f;
  for (int i = 0; i < BATCH * OUT; i++) dy[i] = (float)((i * 11) % 19) / 19.0f - 0.5f;
  coppice_layer *layer = NULL;
  expect(coppice_layer_linear_create_masked(OUT, IN, w, mask, &layer) == COPPICE_OK,
         "coppice_layer_linear_create_masked");
  for (int pass = 0; pass < 2 && layer; pass++) {
    expect(coppice_set_parallel_runner(pass ? counting_runner : NULL) == COPPICE_OK,
           "coppice_set_parallel_runner");
    coppice_layer_linear_forward(layer, x, BATCH, NULL, y[pass]);
    coppice_layer_linear_backward(layer, x, dy, BATCH, dx[pass], NULL, NULL);
  }
  coppice_set_parallel_runner(NULL);
  int forward_sparse = 0, backward_sparse = 0;
  coppice_layer_execution(layer, &forward_sparse, &backward_sparse);
  expect(forward_sparse && backward_sparse, "the layer ran on the sparse kernels");
  expect(runner_calls > 0, "the installed runner ran the layer's products");
  expect(memcmp(y[0], y[1], sizeof y[0]) == 0 && memcmp(dx[0], dx[1], sizeof dx[0]) == 0,
         "results on the host's runner are bit-identical to OpenMP's");
  coppice_layer_destroy(layer);
}

/* ---- sparsifier and kernels --------------------------------------------------------------- */

#define LAYERS 3
#define SPARSITY 0.9

typedef struct {
  const char *name;
  int in, out;
  float *w, *g, *v; /* weights out x in, gradients, momentum */
} Layer;

static void kernels(const Layer *l, const uint8_t *mask, int n) {
  size_t rows = (size_t)l->out, cols = (size_t)l->in, i;
  int64_t nnz = -1, kept = 0;
  float *x = ZEROS(float, cols * n), *y = ZEROS(float, rows * n), *y_ref = ZEROS(float, rows * n);
  float *dx = ZEROS(float, cols * n), *dx_ref = ZEROS(float, cols * n);
  float *dw = ZEROS(float, rows * cols), *dw_ref = ZEROS(float, rows * cols);
  coppice_sparse_matrix *w = NULL;
  char what[256];
  for (i = 0; i < cols * (size_t)n; ++i) x[i] = (float)(2 * uniform() - 1);
  for (i = 0; i < rows * cols; ++i) kept += mask[i] != 0;
  /* dx and dw of the library from the reference y, so that each product is held alone */
  reference_products(l->w, mask, rows, cols, x, (size_t)n, y_ref, dx_ref, dw_ref);
  if (CALL(coppice_sparse_matrix_create(l->out, l->in, l->w, mask, &w)) &&
      CALL(coppice_sparse_matrix_nnz(w, &nnz)) && CALL(coppice_spmm(w, n, x, 0.0f, y)) &&
      CALL(coppice_spmm_transposed(w, n, y_ref, 0.0f, dx)) &&
      CALL(coppice_sddmm(w, n, y_ref, x, dw))) {
    snprintf(what, sizeof what, "sparse matrix of %s (%zux%zu, 90%%): nnz %lld = kept %lld",
             l->name, rows, cols, (long long)nnz, (long long)kept);
    expect(nnz == kept, what);
    snprintf(what, sizeof what, "coppice_spmm on %d columns vs plain loops: relative error %.1e",
             n, reference_relative_error(y, y_ref, rows * n));
    expect(reference_relative_error(y, y_ref, rows * n) < 1e-4f, what);
    snprintf(what, sizeof what, "coppice_spmm_transposed vs plain loops: relative error %.1e",
             reference_relative_error(dx, dx_ref, cols * n));
    expect(reference_relative_error(dx, dx_ref, cols * n) < 1e-4f, what);
    snprintf(what, sizeof what, "coppice_sddmm vs plain loops: relative error %.1e",
             reference_relative_error(dw, dw_ref, rows * cols));
    expect(reference_relative_error(dw, dw_ref, rows * cols) < 1e-4f, what);
  }
  coppice_sparse_matrix_destroy(w);
  free(x), free(y), free(y_ref), free(dx), free(dx_ref), free(dw), free(dw_ref);
}

static void sparsifier(void) {
  static const char *names[LAYERS] = {"fc1", "fc2", "fc3"};
  static const int sizes[LAYERS + 1] = {784, 64, 32, 10};
  const int64_t steps_per_epoch = 47, epochs = 4; /* 3000 samples in batches of 64 */
  Layer layers[LAYERS];
  coppice_sparsifier_config config;
  coppice_sparsifier *s = NULL;
  uint8_t *mask = ZEROS(uint8_t, 784 * 64), *changed = ZEROS(uint8_t, 784 * 64);
  int64_t step, changes = 0, resets = 0;
  int k, changed_any = 0, ended = 0, has_event = 0, gap_ends = 0, frozen = 0, partitions = 0;
  int events = 0, final_prunes = 0;
  coppice_sparsifier_event event;
  char what[256];

  for (k = 0; k < LAYERS; ++k) {
    Layer *l = &layers[k];
    size_t n = (size_t)sizes[k] * (size_t)sizes[k + 1], i;
    l->name = names[k], l->in = sizes[k], l->out = sizes[k + 1];
    l->w = ZEROS(float, n), l->g = ZEROS(float, n), l->v = ZEROS(float, n);
    for (i = 0; i < n; ++i) l->w[i] = (float)((2 * uniform() - 1) * sqrt(6.0 / l->in));
  }
  coppice_sparsifier_config_init(&config);
  config.method = "cgap";
  config.sparsity = SPARSITY;
  config.total_steps = steps_per_epoch * epochs;
  config.steps_per_epoch = steps_per_epoch;
  config.seed = 7;
  if (!CALL(coppice_sparsifier_create(&config, &s))) goto done;
  for (k = 0; k < LAYERS; ++k) {
    int64_t shape[2];
    shape[0] = layers[k].out, shape[1] = layers[k].in;
    if (!CALL(coppice_sparsifier_add_parameter(s, layers[k].name, layers[k].w, shape, 2,
                                                layers[k].g, 0)))
      goto done;
  }
  if (!CALL(coppice_sparsifier_start(s))) goto done;
  event.struct_size = sizeof event;
  for (step = 0; step < config.total_steps; ++step) {
    for (k = 0; k < LAYERS; ++k) { /* "backward": random gradients */
      size_t n = (size_t)layers[k].in * (size_t)layers[k].out, i;
      for (i = 0; i < n; ++i) layers[k].g[i] = (float)(uniform() - 0.5);
    }
    if (!CALL(coppice_sparsifier_mask_gradients(s))) goto done;
    for (k = 0; k < LAYERS; ++k) { /* SGD with momentum */
      size_t n = (size_t)layers[k].in * (size_t)layers[k].out, i;
      for (i = 0; i < n; ++i)
        layers[k].v[i] = 0.9f * layers[k].v[i] + layers[k].g[i],
        layers[k].w[i] -= 0.05f * layers[k].v[i];
    }
    if (!CALL(coppice_sparsifier_step(s, &changed_any))) goto done;
    if (!CALL(coppice_sparsifier_ended_gap_step(s, &ended))) goto done;
    gap_ends += ended;
    while (CALL(coppice_sparsifier_next_event(s, &event, &has_event)) && has_event)
      ++events, final_prunes += event.kind == COPPICE_EVENT_FINAL_PRUNE;
    if (!changed_any) continue;
    ++changes;
    for (k = 0; k < LAYERS; ++k) {
      int64_t n = (int64_t)layers[k].in * layers[k].out, e;
      if (!CALL(coppice_sparsifier_changed_mask(s, layers[k].name, changed, n))) goto done;
      for (e = 0; e < n; ++e)
        if (changed[e]) layers[k].v[e] = 0, ++resets;
    }
  }
  snprintf(what, sizeof what, "C-GaP changed masks at %lld steps (%lld momenta reset)",
           (long long)changes, (long long)resets);
  expect(changes > 0 && resets > 0, what);
  if (!CALL(coppice_sparsifier_masks_frozen(s, &frozen)) ||
      !CALL(coppice_sparsifier_partition_count(s, &partitions)))
    goto done;
  snprintf(what, sizeof what,
           "C-GaP: %d partitions, %d GaP step ends, %d structured events (%d final prune), "
           "masks frozen %d",
           partitions, gap_ends, events, final_prunes, frozen);
  /* κ = 3 (three layers): start, grow, then prune+grow twice and the final prune. */
  expect(partitions == 3 && gap_ends == 3 && events == 7 && final_prunes == 1 && frozen, what);

  /* Every weight matrix must end at exactly round(n * 0.9) zeros. */
  for (k = 0; k < LAYERS; ++k) {
    const Layer *l = &layers[k];
    int64_t n = (int64_t)l->in * l->out, e, masked = 0, masked_nonzero = 0;
    long long expected = llround((double)n * SPARSITY);
    double sparsity = -1;
    if (!CALL(coppice_sparsifier_sparsity(s, l->name, &sparsity)) ||
        !CALL(coppice_sparsifier_get_mask(s, l->name, mask, n)))
      goto done;
    for (e = 0; e < n; ++e) masked += mask[e] == 0, masked_nonzero += mask[e] == 0 && l->w[e] != 0;
    snprintf(what, sizeof what,
             "%s: sparsity %.6f, %lld of %lld masked (round(n*0.9) = %lld), masked non-zeros %lld",
             l->name, sparsity, (long long)masked, (long long)n, expected,
             (long long)masked_nonzero);
    expect(masked == expected && masked_nonzero == 0 &&
               fabs(sparsity - (double)expected / (double)n) < 1e-12,
           what);
  }
  if (CALL(coppice_sparsifier_get_mask(s, "fc1", mask, (int64_t)784 * 64)))
    kernels(&layers[0], mask, 256);
done:
  coppice_sparsifier_destroy(s);
  for (k = 0; k < LAYERS; ++k) free(layers[k].w), free(layers[k].g), free(layers[k].v);
  free(mask), free(changed);
}

/* ---- engine: export and reload ------------------------------------------------------------ */

/* Exports `model` into `dir`, loads the file into a fresh model and checks that it scores the
 * trained accuracy on `test` within 0.2 points. */
static void export_reloads(const coppice_model *model, const coppice_dataset *test,
                           const coppice_train_result *result, const char *dir, const char *run) {
  char path[4096], what[512];
  int64_t bytes = 0, dense_bytes = 0;
  double accuracy = -1;
  coppice_model *loaded = NULL;
  snprintf(path, sizeof path, "%s/mlp-cgap90.safetensors", dir);
  if (CALL(coppice_model_export(model, path, &bytes, &dense_bytes)) &&
      CALL(coppice_model_create("mlp", 2, 10, &loaded)) &&
      CALL(coppice_model_load(loaded, path)) && CALL(coppice_evaluate(loaded, test, &accuracy))) {
    snprintf(what, sizeof what,
             "%s: export (%lld bytes, %lld dense) reloaded scores %.2f%%, trained %.2f%% "
             "(sparsity %.4f)",
             run, (long long)bytes, (long long)dense_bytes, accuracy, result->test_accuracy,
             result->sparsity);
    expect(fabs(accuracy - result->test_accuracy) <= 0.2, what);
  }
  coppice_model_destroy(loaded);
}

static void engine(int64_t train_limit, int64_t test_limit, int epochs) {
  const char *data = getenv("COPPICE_DATA");
  coppice_dataset *train = NULL, *test = NULL;
  coppice_model *model = NULL;
  coppice_train_config config;
  coppice_checkpoint_config checkpoints;
  coppice_train_result result;
  char dir[] = "/tmp/coppice-test-c-api-XXXXXX", command[128];
  int run;

  if (mkdtemp(dir) == NULL) {
    expect(0, "mkdtemp");
    return;
  }
  if (!CALL(coppice_dataset_load_idx(data, "train", train_limit, &train)) ||
      !CALL(coppice_dataset_load_idx(data, "t10k", test_limit, &test)))
    goto done;
  coppice_train_config_init(&config);
  config.epochs = epochs;
  config.sparsity.method = "cgap";
  config.sparsity.sparsity = 0.9;
  config.sparsity.rounds = 1;
  coppice_checkpoint_config_init(&checkpoints);
  checkpoints.directory = dir;
  checkpoints.resume = 1;
  /* run 0: coppice_train; run 1: checkpointed; run 2: resumes the finished run 1 */
  for (run = 0; run < 3; ++run) {
    static const char *runs[3] = {"coppice_train", "coppice_train_checkpointed",
                                  "coppice_train_checkpointed resuming the finished run"};
    memset(&result, 0, sizeof result);
    if (!CALL(coppice_model_create("mlp", 1, 10, &model))) goto done;
    if (run == 0 ? CALL(coppice_train(model, train, test, &config, &result))
                 : CALL(coppice_train_checkpointed(model, train, test, &config, &checkpoints,
                                                   &result)))
      export_reloads(model, test, &result, dir, runs[run]);
    coppice_model_destroy(model);
    model = NULL;
  }
done:
  coppice_model_destroy(model);
  coppice_dataset_destroy(test);
  coppice_dataset_destroy(train);
  snprintf(command, sizeof command, "rm -rf '%s'", dir);
  if (system(command) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
  int64_t train_limit = argc > 1 ? atoll(argv[1]) : 3000;
  int64_t test_limit = argc > 2 ? atoll(argv[2]) : 1000;
  int epochs = argc > 3 ? atoi(argv[3]) : 4;
  library();
  parallel_runner();
  sparsifier();
  engine(train_limit, test_limit, epochs);
  printf("test_c_api: %s\n", failures == 0 ? "all checks passed" : "CHECKS FAILED");
  return failures == 0 ? 0 : 1;
}
