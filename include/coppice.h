/*
 * coppice.h — the stable C interface of Coppice, a sparse-training runtime
 * (scheduled grow-and-prune and the standard sparse-training baselines on real sparse kernels).
 *
 * Conventions
 *  - Every function is prefixed `coppice_`. Handles are opaque; every `_create` has a
 *    `_destroy` that accepts NULL.
 *  - Every fallible call returns a coppice_status. COPPICE_OK is 0; the other codes are stable
 *    and never renumbered. After a failure, coppice_last_error() describes it.
 *  - Nothing traps across this boundary: arguments are validated and bad ones are reported as
 *    a status.
 *  - Thread-safety: functions without a handle may be called from any thread. A handle may be
 *    used by one thread at a time unless its functions say otherwise.
 *
 * Link with -lcoppice (pkg-config coppice). The library carries its Swift runtime statically.
 */
#ifndef COPPICE_H
#define COPPICE_H

#ifdef __cplusplus
extern "C" {
#endif

#define COPPICE_VERSION_MAJOR 0
#define COPPICE_VERSION_MINOR 1
#define COPPICE_VERSION_PATCH 0
/* One number that grows with every release: major*10000 + minor*100 + patch. */
#define COPPICE_VERSION_NUMBER \
  (COPPICE_VERSION_MAJOR * 10000 + COPPICE_VERSION_MINOR * 100 + COPPICE_VERSION_PATCH)

/* Result of every fallible call. Values are stable: new codes are only ever appended. */
typedef int coppice_status;
#define COPPICE_OK 0                /* success */
#define COPPICE_INVALID_ARGUMENT 1  /* NULL where a value is required, value out of range */
#define COPPICE_SHAPE_MISMATCH 2    /* sizes or shapes that do not agree */
#define COPPICE_NOT_FOUND 3         /* unknown name (parameter, model, method) */
#define COPPICE_IO_ERROR 4          /* a file could not be read or written */
#define COPPICE_INVALID_FILE 5      /* a file is malformed, truncated or of the wrong kind */
#define COPPICE_INVALID_STATE 6     /* call not allowed in the handle's current state */
#define COPPICE_OUT_OF_MEMORY 7     /* an allocation failed */
#define COPPICE_UNSUPPORTED 8       /* feature not compiled in or not supported here */
#define COPPICE_INTERNAL 9          /* a bug in Coppice; please report it */

/*
 * The library version as "MAJOR.MINOR.PATCH". Never fails. The string is static: do not
 * free it. Compare with COPPICE_VERSION_* to detect a header/library mismatch.
 */
const char *coppice_version(void);

/*
 * The version as COPPICE_VERSION_NUMBER of the library that is loaded. Never fails.
 */
int coppice_version_number(void);

/*
 * A description of the last failure on the calling thread ("" if none). The string is owned by
 * the library and stays valid until the next failing call on the same thread; do not free it.
 */
const char *coppice_last_error(void);

/*
 * The short, stable name of a status code, e.g. "COPPICE_SHAPE_MISMATCH" ("unknown status" for
 * codes this library does not know). Static string; do not free it. Never fails.
 */
const char *coppice_status_name(coppice_status status);

/*
 * Sets the number of threads the compute kernels use, process-wide (threads >= 1; 0 means
 * "all cores"). Returns COPPICE_INVALID_ARGUMENT for a negative count. Call it before training,
 * not while another thread is inside the library.
 */
coppice_status coppice_set_threads(int threads);

/*
 * The number of threads the compute kernels use. Never fails.
 */
int coppice_get_threads(void);

#ifdef __cplusplus
}
#endif

#endif /* COPPICE_H */
