// The end of a residual block, y = relu(body + shortcut(x)), and its backward, each in one pass
// (as jobs over images). The shortcut is the identity, or — when the body changes the shape —
// the parameter-free "option A": x subsampled by the stride, its channels placed at an offset
// among zero channels.
#include "ck_dense.h"
#include "ck_jobs.h"
#include "ck_clones.h"
#include "ck_affine.h"
#include <string.h>

typedef struct {
  ck_residual_shape s;
  const float *body, *x, *y, *dy, *grad_body, *grad_sum;
  const ck_channel_affine *body_map; // forward: the body's output is map(body)
  const ck_image_observer *observer; // backward: given each finished image of grad_sum
  float *out, *grad_sum_out, *dx;
} residual_job;

// Channel offset of x's channels in the output (option A pads both sides equally).
static int channel_pad(const ck_residual_shape *s) {
  return (s->out_channels - s->in_channels) / 2;
}

static int stride_of(const ck_residual_shape *s) {
  int st = s->out_height > 0 ? s->in_height / s->out_height : 1;
  return st > 0 ? st : 1;
}

// Plane sizes, channel offset and stride of a shape, and the images of one part.
typedef struct {
  size_t ohw, ihw;
  int pad, stride, b0, b1;
} residual_part;

static residual_part part_of(const ck_residual_shape *s, int part, int parts) {
  residual_part r = {(size_t)s->out_height * s->out_width, (size_t)s->in_height * s->in_width,
                     channel_pad(s), stride_of(s), 0, 0};
  ck_job_range(s->batch, part, parts, &r.b0, &r.b1);
  return r;
}

/// Images of part `part`: y = relu(body + shortcut(x)), body mapped first (into the part's
/// scratch, one plane) when a map is given.
CK_CLONES static void forward_part(void *arg, int part, int parts, float *scratch) {
  const residual_job *j = arg;
  const ck_residual_shape *s = &j->s;
  const residual_part r = part_of(s, part, parts);
  const size_t ohw = r.ohw, ihw = r.ihw;
  const int pad = r.pad, st = r.stride;
  for (int b = r.b0; b < r.b1; b++) {
    for (int o = 0; o < s->out_channels; o++) {
      const float *p = j->body + ((size_t)b * s->out_channels + o) * ohw;
      if (j->body_map) {
        ck_affine_run(ohw, p, j->body_map->scale[o], j->body_map->shift[o], j->body_map->relu,
                      scratch);
        p = scratch;
      }
      float *q = j->out + ((size_t)b * s->out_channels + o) * ohw;
      const int c = o - pad;
      if (c < 0 || c >= s->in_channels) {  // a zero channel of the shortcut
#pragma omp simd
        for (size_t t = 0; t < ohw; t++) q[t] = p[t] > 0.0f ? p[t] : 0.0f;
        continue;
      }
      const float *xc = j->x + ((size_t)b * s->in_channels + c) * ihw;
      if (st == 1) {
#pragma omp simd
        for (size_t t = 0; t < ohw; t++) {
          float v = p[t] + xc[t];
          q[t] = v > 0.0f ? v : 0.0f;
        }
        continue;
      }
      for (int oy = 0; oy < s->out_height; oy++) {
        const float *xr = xc + (size_t)oy * st * s->in_width;
        const float *pr = p + (size_t)oy * s->out_width;
        float *qr = q + (size_t)oy * s->out_width;
        for (int ox = 0; ox < s->out_width; ox++) {
          float v = pr[ox] + xr[ox * st];
          qr[ox] = v > 0.0f ? v : 0.0f;
        }
      }
    }
  }
}

/// Residual-block output; contract in include/ck_dense.h.
void ck_residual_relu_forward(const ck_residual_shape *s, const float *body, const float *x,
                              float *y) {
  residual_job j = {.s = *s, .body = body, .x = x, .out = y};
  ck_run_job(ck_get_threads(), ck_get_threads(), forward_part, &j, 0);
}

/// Residual-block output of a mapped body; contract in include/ck_dense.h.
void ck_residual_relu_forward_mapped(const ck_residual_shape *s, const float *body,
                                     const ck_channel_affine *body_map, const float *x,
                                     float *y) {
  residual_job j = {.s = *s, .body = body, .body_map = body_map, .x = x, .out = y};
  ck_run_job(ck_get_threads(), ck_get_threads(), forward_part, &j,
             (size_t)s->out_height * s->out_width);
}

/// Images of part `part`: the gradient at the sum (ReLU backward).
CK_CLONES static void backward_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const residual_job *j = arg;
  const ck_residual_shape *s = &j->s;
  const size_t out_image = (size_t)s->out_channels * s->out_height * s->out_width;
  int b0, b1;
  ck_job_range(s->batch, part, parts, &b0, &b1);
  for (int b = b0; b < b1; b++) {
    const float *y = j->y + (size_t)b * out_image, *dy = j->dy + (size_t)b * out_image;
    float *gs = j->grad_sum_out + (size_t)b * out_image;
#pragma omp simd
    for (size_t t = 0; t < out_image; t++) gs[t] = y[t] > 0.0f ? dy[t] : 0.0f;
    if (j->observer) j->observer->image(j->observer, b, gs);
  }
}

/// dx = grad_body + shortcutᵀ(grad_sum) for the images of part `part`.
CK_CLONES static void input_gradient_part(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const residual_job *j = arg;
  const ck_residual_shape *s = &j->s;
  const residual_part r = part_of(s, part, parts);
  const size_t ohw = r.ohw, ihw = r.ihw;
  const int pad = r.pad, st = r.stride;
  for (int b = r.b0; b < r.b1; b++) {
    for (int c = 0; c < s->in_channels; c++) {
      const float *gb = j->grad_body + ((size_t)b * s->in_channels + c) * ihw;
      const float *gs = j->grad_sum + ((size_t)b * s->out_channels + c + pad) * ohw;
      float *d = j->dx + ((size_t)b * s->in_channels + c) * ihw;
      if (st == 1) {
#pragma omp simd
        for (size_t t = 0; t < ihw; t++) d[t] = gb[t] + gs[t];
        continue;
      }
      memcpy(d, gb, sizeof(float) * ihw);
      for (int oy = 0; oy < s->out_height; oy++) {
        float *dr = d + (size_t)oy * st * s->in_width;
        const float *gr = gs + (size_t)oy * s->out_width;
        for (int ox = 0; ox < s->out_width; ox++) dr[ox * st] += gr[ox];
      }
    }
  }
}

/// Gradient at the block's sum (ReLU backward); contract in include/ck_dense.h.
void ck_residual_relu_backward(const ck_residual_shape *s, const float *y, const float *dy,
                               float *grad_sum, const ck_image_observer *observer) {
  residual_job j = {.s = *s, .y = y, .dy = dy, .grad_sum_out = grad_sum, .observer = observer};
  ck_run_job(ck_get_threads(), ck_get_threads(), backward_part, &j, 0);
}

/// The block's input gradient; contract in include/ck_dense.h.
void ck_residual_input_gradient(const ck_residual_shape *s, const float *grad_body,
                                const float *grad_sum, float *dx) {
  residual_job j = {.s = *s, .grad_body = grad_body, .grad_sum = grad_sum, .dx = dx};
  ck_run_job(ck_get_threads(), ck_get_threads(), input_gradient_part, &j, 0);
}
