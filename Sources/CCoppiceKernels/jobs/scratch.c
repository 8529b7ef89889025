// Scratch memory of the kernels: temporary buffers kept for reuse between calls.
//
// Why: a buffer above glibc's mmap threshold (128 KiB, adaptive up to 32 MiB) is mapped by
// every malloc and unmapped by every free, so each kernel call that needed one paid a page
// fault and the kernel's page zeroing for every 4 KiB of it, and again on the next call. A
// `coppice train --model cnn --method static --sparsity 0.9` profile had ~5% of all cycles in
// page faults from the kernels' per-call scratch (job scratch, partial sums, column buffers).
// Here freed buffers go to a small process-wide set of idle buffers (under a mutex: a take or
// give happens once per thread per kernel call, next to far more work) and are handed out
// again to the next request they fit.
#include "ck_jobs.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define IDLE_SLOTS 32                        // idle buffers kept at most
#define IDLE_BYTES_MAX ((size_t)256 << 20)   // idle bytes kept at most (the rest is freed)
#define HEADER_FLOATS 16                     // 64 bytes before each buffer: its capacity
#define GRAIN_FLOATS 1024                    // capacities are multiples of 4 KiB

typedef struct {
  float *base; // the allocation (header first)
  size_t cap;  // floats after the header
} idle_buffer;

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static idle_buffer idle[IDLE_SLOTS];
static int idle_count;
static size_t idle_bytes;

/// A buffer of at least `count` floats; contract in include/ck_jobs.h.
float *ck_scratch_take(size_t count) {
  if (count == 0) return NULL;
  float *base = NULL;
  pthread_mutex_lock(&idle_lock);
  int best = -1; // the smallest idle buffer that fits
  for (int i = 0; i < idle_count; i++)
    if (idle[i].cap >= count && (best < 0 || idle[i].cap < idle[best].cap)) best = i;
  if (best >= 0) {
    base = idle[best].base;
    idle_bytes -= sizeof(float) * idle[best].cap;
    idle[best] = idle[--idle_count];
  }
  pthread_mutex_unlock(&idle_lock);
  if (base) return base + HEADER_FLOATS;
  if (count > (SIZE_MAX / sizeof(float) - HEADER_FLOATS - GRAIN_FLOATS)) return NULL;
  const size_t cap = (count + GRAIN_FLOATS - 1) / GRAIN_FLOATS * GRAIN_FLOATS;
  base = aligned_alloc(64, sizeof(float) * (cap + HEADER_FLOATS));
  if (!base) return NULL;
  *(size_t *)base = cap;
  return base + HEADER_FLOATS;
}

/// Returns a buffer of ck_scratch_take; contract in include/ck_jobs.h.
void ck_scratch_give(float *buffer) {
  if (!buffer) return;
  float *base = buffer - HEADER_FLOATS;
  const size_t cap = *(const size_t *)base, bytes = sizeof(float) * cap;
  float *dropped = NULL;
  pthread_mutex_lock(&idle_lock);
  if (idle_count == IDLE_SLOTS) { // full: drop the smallest idle buffer if this one is larger
    int smallest = 0;
    for (int i = 1; i < idle_count; i++)
      if (idle[i].cap < idle[smallest].cap) smallest = i;
    if (idle[smallest].cap < cap) {
      dropped = idle[smallest].base;
      idle_bytes -= sizeof(float) * idle[smallest].cap;
      idle[smallest] = idle[--idle_count];
    }
  }
  const int kept = idle_count < IDLE_SLOTS && idle_bytes + bytes <= IDLE_BYTES_MAX;
  if (kept) {
    idle[idle_count++] = (idle_buffer){base, cap};
    idle_bytes += bytes;
  }
  pthread_mutex_unlock(&idle_lock);
  free(dropped);
  if (!kept) free(base);
}
