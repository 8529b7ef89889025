// Reading an image of a tensor that may be recomputed instead of read (ck_image_source,
// include/ck_jobs.h).
#include "ck_jobs.h"

/// Image b from the source when it can make it, else the stored one; contract in
/// include/ck_jobs.h.
const float *ck_image_read(const ck_image_source *source, const float *x, size_t image_floats,
                           int b) {
  const float *made = source ? source->image(source, b) : NULL;
  return made ? made : x + (size_t)b * image_floats;
}
