// Parallel jobs of the kernels (C, OpenMP or a host's thread pool).
//
// A job is `parts` independent pieces of work run on up to `threads` threads. Threads claim
// parts from a counter, so what a part computes must not depend on which thread runs it or on
// how many threads actually come: a job's results are the same on OpenMP, on a host's pool
// and on one thread.
#ifndef CK_JOBS_H
#define CK_JOBS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A host's thread pool: runs fn(data) once on each of up to `threads` threads (the calling
/// thread among them) and returns when all calls have returned; `flags` is 0. This is the
/// signature of libgomp's GOMP_parallel, so a process that already runs GNU OpenMP (PyTorch)
/// can lend its threads.
typedef void (*ck_parallel_runner)(void (*fn)(void *), void *data, unsigned threads,
                                   unsigned flags);

/// Installs `runner` (NULL: remove it) for every job: the layer products (ck_sparse_linear_*,
/// the image-parallel paths of ck_sparse_conv2d_*), batch norm and pooling then run their
/// threads on the host's pool instead of OpenMP's: one pool in the process, no two pools
/// spinning against each other. Process-wide; set it while no kernel runs.
void ck_set_parallel_runner(ck_parallel_runner runner);
/// The runner installed by ck_set_parallel_runner (NULL for none).
ck_parallel_runner ck_parallel_runner_now(void);

/// Body of a job: does part `part` of `parts` with `scratch` (the job's scratch_floats floats,
/// 64-byte aligned, private to the thread running it; NULL for 0).
typedef void (*ck_job_fn)(void *arg, int part, int parts, float *scratch);

/// Runs body for every part in [0, parts) on up to `threads` threads and returns when all are
/// done: on the host's runner when one is installed, else in an OpenMP parallel region; on
/// the calling thread alone when it is already inside an OpenMP parallel region.
void ck_run_job(int threads, int parts, ck_job_fn body, void *arg, size_t scratch_floats);

/// 64-byte aligned allocation of `count` floats (a job's scratch, the kernels' buffers); free
/// with free(). NULL when count is 0.
float *ck_alloc_floats(size_t count);

/// Scratch for one kernel call: a 64-byte aligned buffer of at least `count` floats (contents
/// undefined), from the buffers earlier calls gave back when one fits, else newly allocated;
/// NULL when count is 0 or memory is refused. Return it with ck_scratch_give (never free()).
/// Thread-safe. Kernels use it for per-call buffers, so that a training step does not map and
/// fault in the same memory again at every call (see jobs/scratch.c).
float *ck_scratch_take(size_t count);
/// Gives back a buffer of ck_scratch_take (NULL is allowed). It is kept for later takes while
/// at most 32 buffers and 256 MiB are idle; otherwise freed.
void ck_scratch_give(float *buffer);

/// dst[0, n) := src[0, n) (no overlap) with non-temporal stores where the target has them: the
/// lines of dst are not read first and not kept in cache. For a finished image of a tensor
/// larger than the caches, written from a buffer in cache and read again only much later
/// (jobs/stream_store.c); ordered before the caller's later stores.
void ck_stream_store(float *dst, const float *src, size_t n);

/// The contiguous range [*begin, *end) of part `part` of `parts` over [0, count).
void ck_job_range(int count, int part, int parts, int *begin, int *end);

/// A tensor [n, c, h, w] that is not stored but produced plane by plane by whoever reads it:
/// plane(source, image, channel, out) writes that plane (h·w floats) to out. It lets a
/// convolution's backward compute its output gradient — the input gradient of the layer after
/// it — one plane at a time while it reads it, so that gradient is never written to memory in
/// full and read back (ck_sparse_conv2d_backward_fused).
typedef struct ck_plane_source {
  void (*plane)(const struct ck_plane_source *source, int image, int channel, float *out);
  const void *state; // what `plane` reads; must outlive every call
  int n, c, h, w;
} ck_plane_source;

/// dst [n, c, h, w] := every plane of `source` (images over up to `threads` threads).
void ck_plane_source_fill(const ck_plane_source *source, int threads, float *dst);

/// Something that reads each image of a tensor as its producer finishes it, while the image is
/// still in cache: image(observer, image, values) with the image's values (c·h·w floats, NCHW).
/// A convolution's backward hands each image of its input gradient to the batch norm before it,
/// which takes its per-channel sums there instead of in a pass of its own over the whole tensor
/// (ck_batchnorm_image_sums_observer). Called from any thread, each image once.
typedef struct ck_image_observer {
  void (*image)(const struct ck_image_observer *observer, int image, const float *values);
  const void *state; // what `image` reads and writes; must outlive every call
} ck_image_observer;

/// A per-channel affine map y = x·scale[ch] + shift[ch], then max(y, 0) when relu is set: a
/// batch norm's (+ ReLU's) output left for its reader to compute as it reads the input
/// (ck_sparse_conv2d_forward_mapped), so the normalised tensor is never stored. Everything
/// that applies it computes exactly `float v = x * scale + shift; v > 0 ? v : 0` (bit for bit
/// the batch norm's own output).
typedef struct {
  const float *scale, *shift;
  int relu;
} ck_channel_affine;

/// y [n, c, hw] := map(x) (images over up to `threads` threads): bit for bit the batch norm's
/// own output for the map its statistics returned (ck_batchnorm_statistics_train).
void ck_channel_affine_apply(int n, int c, int hw, const float *x, const ck_channel_affine *map,
                             int threads, float *y);

#ifdef __cplusplus
}
#endif
#endif
