/* A host that owns its model: a small MLP (784-64-32-10, ReLU, softmax cross-entropy) written
 * in plain C with its own forward, backward and SGD with momentum, trained on a Fashion-MNIST
 * subset while a coppice_sparsifier drives C-GaP at 90% sparsity on its three weight matrices,
 * then reports each matrix's sparsity. (Tests/abi/test_c_api.c tests the same loop.)
 *
 *   sparsify_mlp [train_limit [test_limit [epochs]]]     (defaults: 10000 2000 4)
 * Data: /usr/share/datasets/fashion-mnist (the COPPICE_DATA environment variable overrides).
 * Exit status 0 when training ran. */
#include <coppice.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PIXELS 784
#define CLASSES 10
#define BATCH 64
#define LAYERS 3
#define SPARSITY 0.9

#define CHECK(call)                                                                            \
  do {                                                                                         \
    coppice_status status_ = (call);                                                           \
    if (status_ != COPPICE_OK) {                                                               \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,                \
              coppice_status_name(status_), coppice_last_error());                             \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

/* ---- data: IDX files (gzipped) ------------------------------------------------------------ */

static unsigned char *read_idx(const char *dir, const char *file, long header, long item_size,
                               long *count) {
  char path[1024];
  unsigned char head[16];
  unsigned char *data;
  long available;
  gzFile f;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  f = gzopen(path, "rb");
  if (f == NULL || gzread(f, head, (unsigned)header) != header) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
  available = ((long)head[4] << 24) | ((long)head[5] << 16) | ((long)head[6] << 8) | head[7];
  if (*count <= 0 || *count > available) *count = available;
  data = malloc((size_t)(*count * item_size));
  if (data == NULL || gzread(f, data, (unsigned)(*count * item_size)) != *count * item_size) {
    fprintf(stderr, "%s is truncated\n", path);
    exit(1);
  }
  gzclose(f);
  return data;
}

/* Images normalised with Fashion-MNIST's mean and std; labels as ints. */
static void load(const char *dir, const char *split, long *count, float **images, int **labels) {
  char name[64];
  long n = *count, i;
  unsigned char *raw, *raw_labels;
  snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
  raw = read_idx(dir, name, 16, PIXELS, &n);
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
  raw_labels = read_idx(dir, name, 8, 1, &n);
  *images = malloc(sizeof(float) * (size_t)(n * PIXELS));
  *labels = malloc(sizeof(int) * (size_t)n);
  if (*images == NULL || *labels == NULL) exit(1);
  for (i = 0; i < n * PIXELS; ++i) (*images)[i] = ((float)raw[i] / 255.0f - 0.2860f) / 0.3530f;
  for (i = 0; i < n; ++i) (*labels)[i] = raw_labels[i];
  free(raw);
  free(raw_labels);
  *count = n;
}

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  int in, out;
  float *w, *b;   /* weights out x in (row-major), bias */
  float *gw, *gb; /* gradients */
  float *vw, *vb; /* momentum */
} Layer;

static unsigned long long rng_state = 88172645463325252ULL;
static double uniform(void) { /* xorshift64, in [0, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float *zeros(size_t n) {
  float *p = calloc(n, sizeof(float));
  if (p == NULL) exit(1);
  return p;
}

static void layer_init(Layer *l, const char *name, int in, int out) {
  size_t n = (size_t)in * (size_t)out, i;
  double bound = sqrt(6.0 / in); /* He uniform */
  l->name = name;
  l->in = in;
  l->out = out;
  l->w = zeros(n), l->gw = zeros(n), l->vw = zeros(n);
  l->b = zeros((size_t)out), l->gb = zeros((size_t)out), l->vb = zeros((size_t)out);
  for (i = 0; i < n; ++i) l->w[i] = (float)((2.0 * uniform() - 1.0) * bound);
}

/* y (batch x out) = x (batch x in) . W^T + b; ReLU when relu is set. */
static void layer_forward(const Layer *l, const float *x, int batch, float *y, int relu) {
  int s, o, i;
  for (s = 0; s < batch; ++s) {
    const float *xs = x + (size_t)s * l->in;
    for (o = 0; o < l->out; ++o) {
      const float *w = l->w + (size_t)o * l->in;
      float acc = l->b[o];
      for (i = 0; i < l->in; ++i) acc += w[i] * xs[i];
      y[(size_t)s * l->out + o] = relu && acc < 0 ? 0 : acc;
    }
  }
}

/* Gradients of W and b from dy (batch x out) and the layer's input x; dx (may be NULL) gets
 * the input gradient. */
static void layer_backward(Layer *l, const float *x, const float *dy, int batch, float *dx) {
  int s, o, i;
  memset(l->gw, 0, sizeof(float) * (size_t)l->in * (size_t)l->out);
  memset(l->gb, 0, sizeof(float) * (size_t)l->out);
  if (dx != NULL) memset(dx, 0, sizeof(float) * (size_t)batch * (size_t)l->in);
  for (s = 0; s < batch; ++s) {
    const float *xs = x + (size_t)s * l->in;
    for (o = 0; o < l->out; ++o) {
      float g = dy[(size_t)s * l->out + o], *gw = l->gw + (size_t)o * l->in;
      const float *w = l->w + (size_t)o * l->in;
      if (g == 0) continue;
      l->gb[o] += g;
      for (i = 0; i < l->in; ++i) gw[i] += g * xs[i];
      if (dx != NULL)
        for (i = 0; i < l->in; ++i) dx[(size_t)s * l->in + i] += g * w[i];
    }
  }
}

/* dy *= (y > 0): back through the ReLU whose output is y. */
static void relu_backward(const float *y, float *dy, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (y[i] <= 0) dy[i] = 0;
}

static void sgd(Layer *l, float lr, float momentum) {
  size_t n = (size_t)l->in * (size_t)l->out, i;
  for (i = 0; i < n; ++i) l->vw[i] = momentum * l->vw[i] + l->gw[i], l->w[i] -= lr * l->vw[i];
  for (i = 0; i < (size_t)l->out; ++i)
    l->vb[i] = momentum * l->vb[i] + l->gb[i], l->b[i] -= lr * l->vb[i];
}

typedef struct {
  Layer layers[LAYERS];
  float x[BATCH * PIXELS], h1[BATCH * 64], h2[BATCH * 32], out[BATCH * CLASSES];
  float d2[BATCH * 32], d1[BATCH * 64];
} Mlp;

static void forward(Mlp *m, int batch) {
  layer_forward(&m->layers[0], m->x, batch, m->h1, 1);
  layer_forward(&m->layers[1], m->h1, batch, m->h2, 1);
  layer_forward(&m->layers[2], m->h2, batch, m->out, 0);
}

/* Softmax cross-entropy: returns the summed loss, turns m->out into d(mean loss)/d(logits). */
static double loss_backward(Mlp *m, const int *labels, int batch) {
  double loss = 0;
  int s, c;
  for (s = 0; s < batch; ++s) {
    float *z = m->out + (size_t)s * CLASSES, max = z[0], sum = 0;
    for (c = 1; c < CLASSES; ++c) max = z[c] > max ? z[c] : max;
    for (c = 0; c < CLASSES; ++c) sum += (z[c] = expf(z[c] - max));
    for (c = 0; c < CLASSES; ++c) z[c] /= sum;
    loss -= log(z[labels[s]] + 1e-12);
    z[labels[s]] -= 1;
    for (c = 0; c < CLASSES; ++c) z[c] /= (float)batch;
  }
  return loss;
}

static void backward(Mlp *m, int batch) {
  layer_backward(&m->layers[2], m->h2, m->out, batch, m->d2);
  relu_backward(m->h2, m->d2, (size_t)batch * 32);
  layer_backward(&m->layers[1], m->h1, m->d2, batch, m->d1);
  relu_backward(m->h1, m->d1, (size_t)batch * 64);
  layer_backward(&m->layers[0], m->x, m->d1, batch, NULL);
}

static double accuracy(Mlp *m, const float *images, const int *labels, long count) {
  long start, correct = 0;
  int s, c;
  for (start = 0; start < count; start += BATCH) {
    int batch = count - start < BATCH ? (int)(count - start) : BATCH;
    memcpy(m->x, images + start * PIXELS, sizeof(float) * (size_t)batch * PIXELS);
    forward(m, batch);
    for (s = 0; s < batch; ++s) {
      const float *z = m->out + (size_t)s * CLASSES;
      int best = 0;
      for (c = 1; c < CLASSES; ++c) best = z[c] > z[best] ? c : best;
      correct += best == labels[start + s];
    }
  }
  return 100.0 * (double)correct / (double)count;
}

/* ---- the host's training loop, driven by the sparsifier ----------------------------------- */

int main(int argc, char **argv) {
  const char *dir = getenv("COPPICE_DATA") ? getenv("COPPICE_DATA")
                                            : "/usr/share/datasets/fashion-mnist";
  long train_count = argc > 1 ? atol(argv[1]) : 10000, test_count = argc > 2 ? atol(argv[2]) : 2000;
  int epochs = argc > 3 ? atoi(argv[3]) : 4, epoch, k;
  float *train_x, *test_x, lr0 = 0.05f;
  int *train_y, *test_y, *order, labels[BATCH];
  long steps_per_epoch, step = 0, i;
  static Mlp m;
  coppice_sparsifier_config config;
  coppice_sparsifier *sparsifier = NULL;
  uint8_t *mask, *changed;

  load(dir, "train", &train_count, &train_x, &train_y);
  load(dir, "t10k", &test_count, &test_x, &test_y);
  order = malloc(sizeof(int) * (size_t)train_count);
  mask = malloc((size_t)PIXELS * 64), changed = malloc((size_t)PIXELS * 64);
  if (order == NULL || mask == NULL || changed == NULL || epochs < 1) return 1;
  for (i = 0; i < train_count; ++i) order[i] = (int)i;
  layer_init(&m.layers[0], "fc1", PIXELS, 64);
  layer_init(&m.layers[1], "fc2", 64, 32);
  layer_init(&m.layers[2], "fc3", 32, CLASSES);
  steps_per_epoch = (train_count + BATCH - 1) / BATCH;

  /* C-GaP at 90%: 3 partitions (one layer each), 2 rounds filling 75% of training, then
   * fine-tuning with frozen masks. */
  coppice_sparsifier_config_init(&config);
  config.method = "cgap";
  config.sparsity = SPARSITY;
  config.rounds = 2;
  config.total_steps = steps_per_epoch * epochs;
  config.steps_per_epoch = steps_per_epoch;
  config.seed = 7;
  CHECK(coppice_sparsifier_create(&config, &sparsifier));
  for (k = 0; k < LAYERS; ++k) {
    Layer *l = &m.layers[k];
    int64_t shape[2];
    shape[0] = l->out, shape[1] = l->in;
    CHECK(coppice_sparsifier_add_parameter(sparsifier, l->name, l->w, shape, 2, l->gw, 0));
  }
  CHECK(coppice_sparsifier_start(sparsifier));
  printf("%ld train / %ld test samples, %d epochs of %ld steps; %s\n", train_count, test_count,
         epochs, steps_per_epoch, coppice_sparsifier_phase(sparsifier));

  for (epoch = 1; epoch <= epochs; ++epoch) {
    double loss = 0, sparsity = 0;
    long start;
    for (i = train_count - 1; i > 0; --i) { /* shuffle */
      long j = (long)(uniform() * (double)(i + 1));
      int t = order[i];
      order[i] = order[j], order[j] = t;
    }
    for (start = 0; start < train_count; start += BATCH) {
      int batch = train_count - start < BATCH ? (int)(train_count - start) : BATCH, s;
      int changed_any = 0;
      double progress = (double)step / (double)config.total_steps;
      float lr = (float)(lr0 * 0.5 * (1 + cos(3.14159265358979 * progress))); /* cosine */
      for (s = 0; s < batch; ++s) {
        memcpy(m.x + (size_t)s * PIXELS, train_x + (size_t)order[start + s] * PIXELS,
               sizeof(float) * PIXELS);
        labels[s] = train_y[order[start + s]];
      }
      forward(&m, batch);
      loss += loss_backward(&m, labels, batch);
      backward(&m, batch);
      CHECK(coppice_sparsifier_mask_gradients(sparsifier)); /* after backward */
      for (k = 0; k < LAYERS; ++k) sgd(&m.layers[k], lr, 0.9f);
      CHECK(coppice_sparsifier_step(sparsifier, &changed_any)); /* after the optimizer step */
      ++step;
      if (changed_any) { /* zero the momentum of weights that were grown or pruned */
        long reset = 0;
        for (k = 0; k < LAYERS; ++k) {
          Layer *l = &m.layers[k];
          int64_t n = (int64_t)l->in * l->out, e;
          CHECK(coppice_sparsifier_changed_mask(sparsifier, l->name, changed, n));
          for (e = 0; e < n; ++e)
            if (changed[e]) l->vw[e] = 0, ++reset;
        }
        printf("  step %ld: masks changed (%ld momenta reset); now %s\n", step, reset,
               coppice_sparsifier_phase(sparsifier));
      }
    }
    CHECK(coppice_sparsifier_sparsity(sparsifier, NULL, &sparsity));
    printf("epoch %d  loss %.4f  test accuracy %.2f%%  sparsity %.4f\n", epoch,
           loss / (double)train_count, accuracy(&m, test_x, test_y, test_count), sparsity);
  }

  /* The masks live in the sparsifier; the host's weights are zero wherever a mask is 0. */
  for (k = 0; k < LAYERS; ++k) {
    Layer *l = &m.layers[k];
    int64_t n = (int64_t)l->in * l->out, e, masked = 0;
    double sparsity = 0;
    CHECK(coppice_sparsifier_sparsity(sparsifier, l->name, &sparsity));
    CHECK(coppice_sparsifier_get_mask(sparsifier, l->name, mask, n));
    for (e = 0; e < n; ++e) masked += mask[e] == 0;
    printf("%s: %lld of %lld weights masked, sparsity %.6f\n", l->name, (long long)masked,
           (long long)n, sparsity);
  }

  coppice_sparsifier_destroy(sparsifier);
  for (k = 0; k < LAYERS; ++k) {
    Layer *l = &m.layers[k];
    free(l->w), free(l->gw), free(l->vw), free(l->b), free(l->gb), free(l->vb);
  }
  free(train_x), free(train_y), free(test_x), free(test_y), free(order), free(mask), free(changed);
  return 0;
}
