// Writing out a plane source (ck_plane_source, include/ck_jobs.h) in full, for the readers that
// need the whole tensor (the dense convolution, the sparse one's paths that read dY twice, the
// BN+ReLU+pool backward's stored dx).
#include "ck_jobs.h"

typedef struct {
  const ck_plane_source *source;
  float *dst;
} fill_job;

static void fill_images(void *arg, int part, int parts, float *scratch) {
  (void)scratch;
  const fill_job *j = arg;
  const ck_plane_source *s = j->source;
  const size_t hw = (size_t)s->h * s->w;
  int i0, i1;
  ck_job_range(s->n, part, parts, &i0, &i1);
  for (int i = i0; i < i1; i++)
    for (int ch = 0; ch < s->c; ch++) s->plane(s, i, ch, j->dst + ((size_t)i * s->c + ch) * hw);
}

/// Every plane of a source; contract in include/ck_jobs.h.
void ck_plane_source_fill(const ck_plane_source *source, int threads, float *dst) {
  if (source->n <= 0 || source->c <= 0) return;
  fill_job j = {source, dst};
  ck_run_job(threads, threads, fill_images, &j, 0);
}
