// Applying a channel affine map (ck_channel_affine, include/ck_jobs.h) to a whole tensor, for
// the readers that need it in full (the dense convolution, the sparse one's paths that do not
// map as they pad).
#include "ck_affine.h"
#include "ck_jobs.h"

typedef struct {
  int n, c, hw;
  const float *x;
  const ck_channel_affine *map;
  float *y;
} apply_job;

/// Images of part `part`, plane by plane in address order.
CK_CLONES static void apply_images(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const apply_job *j = arg;
  const size_t hw = (size_t)j->hw;
  int i0, i1;
  ck_job_range(j->n, part, parts, &i0, &i1);
  for (size_t p = (size_t)i0 * j->c; p < (size_t)i1 * j->c; p++) {
    const int ch = (int)(p % (size_t)j->c);
    ck_affine_run(hw, j->x + p * hw, j->map->scale[ch], j->map->shift[ch], j->map->relu,
                  j->y + p * hw);
  }
}

/// The map over a whole tensor; contract in include/ck_jobs.h.
void ck_channel_affine_apply(int n, int c, int hw, const float *x, const ck_channel_affine *map,
                             int threads, float *y) {
  if (n <= 0 || c <= 0 || hw <= 0) return;
  apply_job j = {n, c, hw, x, map, y};
  ck_run_job(threads, threads, apply_images, &j, 0);
}
