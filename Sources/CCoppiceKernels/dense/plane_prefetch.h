// Software prefetch for the channel-major sweeps of the batch-norm kernels. A channel of an
// NCHW array is n planes of h·w floats, c·h·w floats apart: short runs (0.8–3 KiB on the
// models here) that the hardware prefetchers barely start on before each run ends, so the
// first pass over a channel waited on memory at every plane. Requesting the plane PLANES_AHEAD
// ahead while the current one is summed took the cnn's batch norms 8–30% faster (2 threads,
// batch 128; the second passes, which hit L2, gain nothing and are left alone). The fused
// BN+ReLU+pool forward also requests its short pooled output planes for writing (10–20%
// faster; the same on the full-size outputs of the other kernels gained nothing).
#ifndef CK_PLANE_PREFETCH_H
#define CK_PLANE_PREFETCH_H

#include <stddef.h>

#define PLANES_AHEAD 2

/// Prefetches the plane `PLANES_AHEAD` images after plane i (one prefetch per 64-byte line)
/// of the array whose planes are `stride` floats apart; nothing past image n − 1.
static inline __attribute__((always_inline)) void prefetch_plane_ahead(const float *plane, int i,
                                                                      int n, size_t stride,
                                                                      size_t floats) {
  if (i + PLANES_AHEAD >= n) return;
  const float *p = plane + PLANES_AHEAD * stride;
  for (size_t q = 0; q < floats; q += 16) __builtin_prefetch(p + q);
}

/// The same for a plane about to be written (prefetch for writing: the line arrives owned, so
/// the stores need not fetch it themselves).
static inline __attribute__((always_inline)) void prefetch_plane_ahead_for_write(float *plane,
                                                                                int i, int n,
                                                                                size_t stride,
                                                                                size_t floats) {
  if (i + PLANES_AHEAD >= n) return;
  float *p = plane + PLANES_AHEAD * stride;
  for (size_t q = 0; q < floats; q += 16) __builtin_prefetch(p + q, 1);
}

#endif
