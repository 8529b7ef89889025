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
 *    a status. Handles are checked against a registry of live handles, so NULL, garbage and
 *    destroyed handles are reported (COPPICE_INVALID_ARGUMENT) — except that a destroyed
 *    handle's address may be reused by a new handle of the same type: never use a handle
 *    after destroying it.
 *  - Thread-safety: functions without a handle may be called from any thread. A handle may be
 *    used by one thread at a time unless its functions say otherwise; different handles are
 *    independent and may be used from different threads at the same time (also when they save
 *    to, or load from, the same path). Not safe to share: one handle between threads without
 *    the caller's own lock; coppice_set_threads / coppice_set_idle_spin while another thread
 *    is inside the library; one checkpoint directory between two training runs (the second
 *    fails, see coppice_checkpoint_config).
 *  - Strings: paths and names are NUL-terminated UTF-8. A string that is not valid UTF-8 is
 *    refused with COPPICE_INVALID_ARGUMENT (never rewritten), so a file is only ever written
 *    or read under the exact name given.
 *  - Files: every save is atomic — the data goes to a temporary file of its own in the target's
 *    directory (unique per call, so threads and processes saving to one path never share it),
 *    is flushed (fsync) and renamed over the target; a reader sees the old or the new file,
 *    never a partial one, and the last rename wins. Saving to a symbolic link replaces the
 *    file the link points to (the link stays; a dangling link is an IO_ERROR). Saving to a
 *    directory, device, FIFO or socket is refused (IO_ERROR) and leaves it untouched.
 *    Replacing a file keeps its permission bits. File names may use the file system's whole
 *    limit (255 bytes).
 *
 * Link with -lcoppice (pkg-config coppice). The library carries its Swift runtime statically.
 */
#ifndef COPPICE_H
#define COPPICE_H

#include <stddef.h>
#include <stdint.h>

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
 * Sets the number of threads the compute kernels use, process-wide (1..1024; 0 means
 * "all cores"). Returns COPPICE_INVALID_ARGUMENT for a count outside 0..1024. Call it before
 * training, not while another thread is inside the library.
 */
coppice_status coppice_set_threads(int threads);

/*
 * How long (milliseconds, >= 0) the kernel threads keep spinning for more work after a
 * product before they sleep, for products called from the calling thread (default: OpenMP's
 * 200). A host with its own thread pool in the same process (PyTorch) should set 0, so the
 * two pools do not fight over the cores; coppice.torch does. Errors: INVALID_ARGUMENT
 * (negative), UNSUPPORTED (the OpenMP runtime has no such control).
 */
coppice_status coppice_set_idle_spin(int milliseconds);

/*
 * A host's thread pool, lent to the library: runs fn(data) once on each of up to `threads`
 * threads (the calling thread among them) and returns when every call has returned; `flags`
 * is 0. This is the signature of GNU OpenMP's GOMP_parallel, so a process that already runs
 * libgomp (PyTorch does) can pass that function's address.
 */
typedef void (*coppice_parallel_runner)(void (*fn)(void *), void *data, unsigned threads,
                                        unsigned flags);

/*
 * Makes the layer operations (coppice_layer_*: the sparse linear and convolution products)
 * run their threads on `runner` instead of the library's own OpenMP threads; NULL goes back to
 * OpenMP. With two OpenMP runtimes in one process, each pool's idle threads spin for
 * milliseconds after their work and steal the cores the other pool needs next; lending one
 * pool removes that (measured with PyTorch: see the README, "From PyTorch"). Results are
 * bit-identical either way; a runner may run fn on fewer threads than asked. Other products
 * (training with the built-in engine, sparsifier updates) keep OpenMP. Process-wide: set it
 * while no layer operation runs. coppice.torch installs libgomp's GOMP_parallel when PyTorch
 * uses libgomp. Never fails.
 */
coppice_status coppice_set_parallel_runner(coppice_parallel_runner runner);

/*
 * The number of threads the compute kernels use. Never fails.
 */
int coppice_get_threads(void);

/*
 * Log messages (schedule events such as "step 1200: prune partition 1, grow partition 2").
 * level: 0 = debug, 1 = info, 2 = warning. The callback may be called from the thread that
 * calls into the library; `message` is valid only during the call. Pass NULL to stop logging.
 * Process-wide; set it before creating handles.
 */
typedef void (*coppice_log_callback)(int level, const char *message, void *user_data);
void coppice_set_log_callback(coppice_log_callback callback, void *user_data);

/* ============================================================================================
 * The sparsifier: sparse training (GaP and the baselines) on weights the host owns.
 *
 * The host keeps its weights and optimizer. It registers each prunable weight buffer, then in
 * its training loop calls, every optimizer step:
 *     backward pass (host)  ->  coppice_sparsifier_mask_gradients
 *     optimizer step (host) ->  coppice_sparsifier_step (applies masks, grows/prunes on schedule)
 * and, when step reports a mask change, zeroes its optimizer state where
 * coppice_sparsifier_changed_mask says so. The library never copies, frees or keeps pointers
 * to host memory other than the registered weight/gradient buffers, which must stay valid (and
 * not move) until the sparsifier is destroyed.
 * Thread-safety: one thread at a time per sparsifier; different sparsifiers are independent.
 * ========================================================================================== */
typedef struct coppice_sparsifier coppice_sparsifier;

/*
 * Sparsifier configuration. Initialise with coppice_sparsifier_config_init (which sets
 * struct_size and the defaults), then change fields. Strings are copied by _create.
 */
typedef struct coppice_sparsifier_config {
  size_t struct_size;       /* sizeof(coppice_sparsifier_config), set by _init */
  const char *method;       /* "dense", "static", "oneshot", "gmp", "set", "rigl", "cgap";
                               _init sets "cgap"; NULL also means "cgap". With "pgap"
                               the host runs the workers: coppice_sparsifier_pgap_* */
  double sparsity;          /* target sparsity in [0, 1) (default 0.9) */
  const char *distribution; /* "uniform", "erk" or NULL for the method's default */
  double erk_power;         /* default 1; finite, >= 0 (any size: large powers are solved in
                               log space) */
  int keep_first_dense;     /* non-zero: first registered parameter stays dense */
  int keep_last_dense;      /* non-zero: last registered parameter stays dense */
  int64_t total_steps;      /* optimizer steps the host will run (required, 1..2^40; steps
                               past it are allowed and keep the final masks) */
  int64_t steps_per_epoch;  /* optimizer steps per epoch (default: total_steps) */
  int partitions;           /* GaP partitions κ (default 4; contiguous in registration order) */
  const char *partition_balance; /* "flops" or "parameters" (_init and NULL: "flops") */
  int64_t gap_step_length;  /* GaP step length in optimizer steps (0: the rounds fill 75% of
                               total_steps; inside coppice_train_config, 0 means one epoch) */
  int rounds;               /* GaP rounds (default 1, as every front end) */
  int64_t update_interval;  /* set/rigl: steps between mask updates (default 100) */
  double drop_fraction;     /* set/rigl (default 0.3) */
  int64_t prune_step;       /* oneshot: step to prune at (-1: half of training) */
  uint64_t seed;            /* random masks and growth (default 0) */
  /* Since 0.2 (each has its default when struct_size ends before it): */
  const char *gap_prune;    /* GaP prunes: "layer" (per layer, default; NULL too) or "global"
                               (one magnitude ranking over the pruned partition under its
                               budget, the whole model for the final prune: non-uniform GaP) */
  int global_magnitude;     /* oneshot/gmp: rank over all layers at once (default 0) */
  int reset_optimizer_state; /* the host should zero optimizer state where masks change
                               (default 1; read by coppice_train; the sparsifier only reports
                               the changes) */
  int restart_optimizer_per_step; /* GaP: fresh optimizer state at every GaP step (default 0;
                               coppice_train does it; a host does it when
                               coppice_sparsifier_ended_gap_step says so) */
  int restart_lr_per_step;  /* GaP: restart the learning-rate schedule at every GaP step and
                               for the fine-tune (default 0; coppice_train does it) */
  int restart_warmup_per_step; /* with restart_lr_per_step: every restart has the warm-up
                               (default 0) */
  const char *pgap_merge;   /* P-GaP in coppice_train: "average" (default; NULL too) every
                               tensor but the partitions' weights, or "partition": a partition's
                               layers' parameters, buffers and optimizer state from its worker */
  double initial_sparsity;  /* gmp: initial sparsity (default 0) */
  int64_t pruning_begin_step; /* gmp: first pruning step (-1, default: 25% of training) */
  int64_t pruning_end_step; /* gmp: last pruning step (-1, default: 75% of training) */
  int64_t pruning_frequency; /* gmp: steps between prunes (default 100) */
  const char *drop_fraction_decay; /* set/rigl: "constant" or "cosine" (NULL, default: cosine
                               for rigl, constant for set) */
  double update_end_fraction; /* set/rigl: updates stop at this fraction of training (0.75) */
  int reference_mask_updates; /* set/rigl: update steps as in the RigL reference code: the
                               mask update replaces the optimizer step (the host skips it when
                               coppice_sparsifier_skips_optimizer_step says so) and the drop
                               count is floored (default 0) */
  int warmup_epochs;        /* coppice_train only (the engine's training settings cannot grow
                               coppice_train_config without moving this struct): linear
                               learning-rate warm-up over the first epochs (default 0), and of
                               every GaP restart with restart_lr_per_step and
                               restart_warmup_per_step; 0..100000. A sparsifier ignores it. */
} coppice_sparsifier_config;

/* Sets struct_size and every default. Never fails; does nothing when config is NULL. */
void coppice_sparsifier_config_init(coppice_sparsifier_config *config);

/*
 * Creates a sparsifier. *out receives the handle (destroy with coppice_sparsifier_destroy).
 * Errors: COPPICE_INVALID_ARGUMENT (NULL, bad struct_size, unknown method or distribution,
 * sparsity outside [0, 1), total_steps < 1, ...). The config may be freed after the call.
 */
coppice_status coppice_sparsifier_create(const coppice_sparsifier_config *config,
                                         coppice_sparsifier **out);

/* Destroys a sparsifier (NULL is allowed). Host buffers are not touched. */
void coppice_sparsifier_destroy(coppice_sparsifier *sparsifier);

/*
 * Registers a weight buffer (float32, row-major, `rank` dims in `shape`) under a unique name,
 * before coppice_sparsifier_start. `gradients` (same size, may be NULL) is needed by
 * mask_gradients and by RigL. `flops_per_weight` (<= 0: 2) weights the FLOP-balanced GaP
 * partitions (e.g. 2·H_out·W_out for a convolution). The buffers stay owned by the host.
 * Errors: INVALID_ARGUMENT (NULL, empty name, rank outside 1..8, non-positive dims, name
 * registered twice, weights or gradients overlapping another parameter's buffers or each
 * other — tied weights are one parameter), INVALID_STATE (already started).
 */
coppice_status coppice_sparsifier_add_parameter(coppice_sparsifier *sparsifier, const char *name,
                                                float *weights, const int64_t *shape, int rank,
                                                float *gradients, double flops_per_weight);

/*
 * Puts parameter `name` into GaP partition `partition` (0-based), before start. Once any
 * parameter is assigned, the partitions are these explicit groups (e.g. whole Transformer
 * blocks) instead of config.partitions balanced ones: every parameter must then be assigned,
 * and partitions 0..max must all be non-empty (start reports otherwise). Members keep their
 * registration order. Errors: NOT_FOUND (unknown name), INVALID_ARGUMENT (partition outside
 * 0..1023), INVALID_STATE (already started).
 */
coppice_status coppice_sparsifier_set_partition(coppice_sparsifier *sparsifier, const char *name,
                                                int partition);

/*
 * Explicit GaP partitions in one call: layer names separated by ',' within a partition and
 * partitions separated by ';' ("conv1.weight,conv2.weight;fc1.weight"), as the CLI's
 * --partition-list. Same rules as set_partition (replaces earlier assignments); parameters
 * that the distribution keeps dense may be left out. Errors: NOT_FOUND (unknown name),
 * INVALID_ARGUMENT (NULL, a name twice, an empty partition), INVALID_STATE (started).
 */
coppice_status coppice_sparsifier_set_partition_list(coppice_sparsifier *sparsifier,
                                                     const char *partitions);

/*
 * Per-layer sparsity table: parameter `name` ends at `sparsity` in [0, 1). Once any entry is
 * set, the table replaces config.distribution and every parameter must have an entry (start
 * reports those that have none). Errors: NOT_FOUND, INVALID_ARGUMENT (sparsity outside
 * [0, 1) or NaN), INVALID_STATE (started).
 */
coppice_status coppice_sparsifier_set_layer_sparsity(coppice_sparsifier *sparsifier,
                                                     const char *name, double sparsity);

/*
 * Puts parameter `name` into block `block` (any non-empty name, e.g. "layer2.1" for both
 * convolutions of a residual block): balanced GaP partitions never split consecutive
 * parameters of one block. Errors: NOT_FOUND, INVALID_ARGUMENT (NULL or empty block),
 * INVALID_STATE (started).
 */
coppice_status coppice_sparsifier_set_block(coppice_sparsifier *sparsifier, const char *name,
                                            const char *block);

/*
 * Resolves per-parameter sparsities, builds the schedule and applies the initial masks
 * (masked weights are set to zero). Errors: INVALID_STATE (no parameters, started twice),
 * INVALID_ARGUMENT (e.g. a GaP schedule that does not fit in total_steps).
 */
coppice_status coppice_sparsifier_start(coppice_sparsifier *sparsifier);

/* Call after the backward pass: zeroes gradients at masked positions (keeping a dense copy
 * first when the coming update needs one, for RigL). Errors: INVALID_STATE (not started). */
coppice_status coppice_sparsifier_mask_gradients(coppice_sparsifier *sparsifier);

/*
 * Call after the optimizer step: re-applies the masks, then grows/prunes when the schedule
 * says so. *masks_changed (may be NULL) is set to 1 if any mask changed. Errors: INVALID_STATE.
 */
coppice_status coppice_sparsifier_step(coppice_sparsifier *sparsifier, int *masks_changed);

/* *out = 1 when the coming step needs dense gradients (host must compute full gradients). */
coppice_status coppice_sparsifier_needs_dense_gradients(const coppice_sparsifier *sparsifier,
                                                        int *out);

/*
 * Copies the mask of parameter `name` (1 = kept) into `mask` (`count` bytes, the parameter's
 * element count). Errors: NOT_FOUND (unknown name), SHAPE_MISMATCH (count), INVALID_STATE.
 */
coppice_status coppice_sparsifier_get_mask(const coppice_sparsifier *sparsifier, const char *name,
                                           uint8_t *mask, int64_t count);

/*
 * For the last start/step call: out[i] = 1 where parameter `name`'s mask changed (grown or
 * pruned), else 0 — where the host should zero its optimizer moments. Same errors as get_mask.
 */
coppice_status coppice_sparsifier_changed_mask(const coppice_sparsifier *sparsifier,
                                               const char *name, uint8_t *out, int64_t count);

/* *out = sparsity of parameter `name`, or over all parameters when name is NULL. */
coppice_status coppice_sparsifier_sparsity(const coppice_sparsifier *sparsifier, const char *name,
                                           double *out);

/*
 * The name (owned by the sparsifier, valid until it is destroyed) and element count of the
 * index-th registered parameter, 0 <= index < parameter_count; either output may be NULL.
 * Errors: NOT_FOUND (index out of range).
 */
coppice_status coppice_sparsifier_parameter_info(const coppice_sparsifier *sparsifier, int index,
                                                 const char **name, int64_t *count);

/* Number of registered parameters and completed steps. */
coppice_status coppice_sparsifier_parameter_count(const coppice_sparsifier *sparsifier,
                                                  int *out);
coppice_status coppice_sparsifier_steps(const coppice_sparsifier *sparsifier, int64_t *out);

/*
 * GaP partitions after start: *out = the number of partitions κ as it took effect (0 for the
 * other methods); partition_of sets *out to the partition of parameter `name`, or -1 when it
 * is in none (other methods, or a layer the distribution keeps dense). Errors: NOT_FOUND
 * (unknown name), INVALID_STATE (not started).
 */
coppice_status coppice_sparsifier_partition_count(const coppice_sparsifier *sparsifier,
                                                  int *out);
coppice_status coppice_sparsifier_partition_of(const coppice_sparsifier *sparsifier,
                                               const char *name, int *out);

/* *out = 1 when masks can no longer change (fine-tune). Errors: INVALID_STATE. */
coppice_status coppice_sparsifier_masks_frozen(const coppice_sparsifier *sparsifier, int *out);

/*
 * *out = 1 when the host should skip its optimizer step for the coming step (a SET/RigL
 * update step with reference_mask_updates); it still calls mask_gradients and step.
 * Errors: INVALID_STATE.
 */
coppice_status coppice_sparsifier_skips_optimizer_step(const coppice_sparsifier *sparsifier,
                                                       int *out);

/*
 * *out = 1 when the last coppice_sparsifier_step ended a GaP step (C-GaP's prune-and-grow
 * boundaries, the final prune included): where a host restarts its optimizer state
 * (restart_optimizer_per_step) or its learning-rate schedule (restart_lr_per_step).
 * Errors: INVALID_STATE.
 */
coppice_status coppice_sparsifier_ended_gap_step(const coppice_sparsifier *sparsifier, int *out);

/* Kinds of structured sparsifier events (stable numbers, never renumbered). */
#define COPPICE_EVENT_START 1           /* initial masks set */
#define COPPICE_EVENT_PRUNE 2           /* a GaP partition pruned */
#define COPPICE_EVENT_GROW 3            /* a GaP partition grown (made dense) */
#define COPPICE_EVENT_FINAL_PRUNE 4     /* the last GaP prune; masks frozen */
#define COPPICE_EVENT_MASK_UPDATE 5     /* a SET/RigL drop-and-grow update */
#define COPPICE_EVENT_MAGNITUDE_PRUNE 6 /* a one-shot or GMP prune */
#define COPPICE_EVENT_WORKER_BEGIN 7    /* a P-GaP worker began (its partition dense) */
#define COPPICE_EVENT_ROUND_MERGED 8    /* a P-GaP round assembled and pruned */
#define COPPICE_EVENT_FROZEN 9          /* masks frozen from here on */

/* A structured event. Initialise struct_size (sizeof) before coppice_sparsifier_next_event. */
typedef struct coppice_sparsifier_event {
  size_t struct_size;    /* sizeof(coppice_sparsifier_event), set by the host */
  int kind;              /* COPPICE_EVENT_* */
  int partition;         /* GaP partition or P-GaP worker, -1 when none */
  int64_t step;          /* completed optimizer steps (0: at start) */
  double sparsity;       /* sparsity over the event's layers right after it */
  int layer_count;       /* number of layers concerned */
  const char *kind_name; /* "start", "prune", "grow", "final_prune", ... (static string) */
  const char *layers;    /* the layers' names, comma-separated; owned by the sparsifier,
                            valid until the next next_event call on it or its destruction */
} coppice_sparsifier_event;

/*
 * Takes the next structured event not yet read (events since start, in order; each is
 * returned once). *has_event = 1 and *event filled when there was one, else 0. The log
 * callback gets the same events as text. Errors: INVALID_ARGUMENT (NULL, struct_size too
 * small), INVALID_STATE (not started).
 */
coppice_status coppice_sparsifier_next_event(coppice_sparsifier *sparsifier,
                                             coppice_sparsifier_event *event, int *has_event);

/*
 * What the schedule is doing ("C-GaP round 1/2, partition 3 dense", "fine-tune", ...). The
 * string is owned by the sparsifier (hence the non-const handle: it caches the text) and valid
 * until the next call on it. NULL on a NULL or destroyed handle.
 */
const char *coppice_sparsifier_phase(coppice_sparsifier *sparsifier);

/*
 * P-GaP run by the host (method "pgap"), for hosts with their own communication (their own
 * MPI, torch.distributed, files). Each round, on every machine:
 *
 *   coppice_sparsifier_pgap_begin_worker(s, w)     worker w's masks: partition w dense (its
 *                                                  pruned weights are zero), the rest shared
 *   train gap_step_length steps as usual (mask_gradients / step)
 *   coppice_sparsifier_pgap_export_partition(s, w, buf, masks, n)   partition w's weights
 *   ... the host sends every worker's buffer to every machine, and averages its other
 *       tensors (biases, norms, optimizer state) over the workers itself ...
 *   coppice_sparsifier_pgap_import_partition(s, v, buf_v, n_v)      for every worker v
 *   coppice_sparsifier_pgap_finish_round(s)        assembles partition v from worker v, prunes
 *                                                  to target, writes the host's weights
 *
 * after the host put its weights back to the round's start (the previous finish_round's
 * result) before each begin_worker. The worker's own partition need not be imported: it is
 * then taken as it was at this sparsifier's last step in that worker (never from the host's
 * buffers at finish time, which may already hold the round's start again); a partition
 * neither imported nor trained here since its begin_worker is INVALID_STATE. A
 * partition's buffer is its parameters' weights concatenated in registration order;
 * partition_size gives its length; export_partition's `masks` (same length) may be NULL.
 * pgap_status gives the worker count, rounds completed and rounds (each output may be NULL).
 * After the rounds, masks stay frozen for fine-tuning and begin_worker fails ("finished").
 * Errors: INVALID_STATE (not started, not pgap, a partition missing at finish_round),
 * INVALID_ARGUMENT (worker out of range, rounds finished, NULL or non-finite buffer),
 * SHAPE_MISMATCH (count).
 */
coppice_status coppice_sparsifier_pgap_status(const coppice_sparsifier *sparsifier, int *workers,
                                              int *rounds_completed, int *rounds);
coppice_status coppice_sparsifier_pgap_begin_worker(coppice_sparsifier *sparsifier, int worker);
coppice_status coppice_sparsifier_pgap_partition_size(const coppice_sparsifier *sparsifier,
                                                      int worker, int64_t *count);
coppice_status coppice_sparsifier_pgap_export_partition(const coppice_sparsifier *sparsifier,
                                                        int worker, float *weights,
                                                        uint8_t *masks, int64_t count);
coppice_status coppice_sparsifier_pgap_import_partition(coppice_sparsifier *sparsifier,
                                                        int worker, const float *weights,
                                                        int64_t count);
coppice_status coppice_sparsifier_pgap_finish_round(coppice_sparsifier *sparsifier);

/*
 * Saves the sparsifier's state (masks, step counter, schedule state) to `path`, atomically
 * (temporary file, fsync, rename). Load it into a sparsifier created with the same config and
 * parameters, instead of calling start, to resume. A loaded step count must be in 0..2^40.
 * Errors: IO_ERROR, INVALID_FILE (load of a bad or mismatched file, or a step count out of
 * range), INVALID_STATE.
 */
coppice_status coppice_sparsifier_save(const coppice_sparsifier *sparsifier, const char *path);
coppice_status coppice_sparsifier_load(coppice_sparsifier *sparsifier, const char *path);

/* ============================================================================================
 * Sparse matrices: the runtime's sparse kernels on the host's own buffers.
 * W is rows×cols (sparse), X is cols×n, Y and dY are rows×n, dX is cols×n; all row-major
 * float32 with n the contiguous dimension. Thread-safety: a matrix may be used by one thread
 * at a time; products use the library's kernel threads.
 * ========================================================================================== */
typedef struct coppice_sparse_matrix coppice_sparse_matrix;

/*
 * Builds the sparse form of `dense` (rows×cols) under `mask` (rows×cols bytes, non-zero =
 * kept; NULL: keep the non-zero entries of dense). Both are copied. Errors: INVALID_ARGUMENT.
 */
coppice_status coppice_sparse_matrix_create(int64_t rows, int64_t cols, const float *dense,
                                            const uint8_t *mask, coppice_sparse_matrix **out);
void coppice_sparse_matrix_destroy(coppice_sparse_matrix *matrix);
/* Refreshes the stored values from `dense` (same mask). */
coppice_status coppice_sparse_matrix_update(coppice_sparse_matrix *matrix, const float *dense);
/* Number of kept entries. */
coppice_status coppice_sparse_matrix_nnz(const coppice_sparse_matrix *matrix, int64_t *out);
/* y = W·x + beta·y (y is not read when beta == 0). */
coppice_status coppice_spmm(const coppice_sparse_matrix *w, int64_t n, const float *x, float beta,
                            float *y);
/* dx = Wᵀ·dy + beta·dx. */
coppice_status coppice_spmm_transposed(const coppice_sparse_matrix *w, int64_t n,
                                       const float *dy, float beta, float *dx);
/* dw (rows×cols, dense) = (dy·xᵀ) at kept positions, 0 elsewhere. */
coppice_status coppice_sddmm(const coppice_sparse_matrix *w, int64_t n, const float *dy,
                             const float *x, float *dw);

/* ============================================================================================
 * Sparse layers: the products of a host's own linear and convolution layers on the sparse
 * kernels, so the host's model gets the speed of sparsity, not only the masks.
 *
 *   linear   y[N×out] = x[N×in]·Wᵀ + b            W [out, in], all row-major float32
 *   conv2d   y = conv2d(x, W) + b                  x NCHW, W OIHW [out, in, kh, kw], y NCHW;
 *                                                  stride and zero padding, dilation 1, groups 1
 *   backward dx = input gradient, dw = weight gradient, db = bias gradient (each may be NULL)
 *
 * A layer is bound either to a parameter registered with a sparsifier (its mask follows the
 * schedule: GaP steps, RigL updates) or to a fixed mask given at creation. The weights are
 * read from the host's buffer at every forward (for a bound layer the registered buffer, which
 * the sparsifier keeps zero outside the mask; a fixed-mask layer multiplies by its mask
 * itself); the sparse form is rebuilt by the layer when the mask changes — a host never
 * rebuilds. Each product runs on the sparse kernels where the cost model expects them to be
 * faster than dense OpenBLAS for this shape and density, dense otherwise (both give the same
 * result up to float rounding); coppice_layer_execution says which ran.
 *
 * dw is computed only at the kept positions and is 0 elsewhere, except on the steps where the
 * bound sparsifier needs dense gradients (RigL's updates; coppice_sparsifier_needs_dense_
 * gradients), when it is the full gradient. Call backward after the forward of the same x
 * (the layer reuses what its forward prepared); the weights must not change in between.
 * Buffer lengths follow from the arguments (x: N·in or N·in_channels·H·W floats, and so on);
 * the host guarantees them. Errors: INVALID_ARGUMENT (NULL buffers, non-positive or
 * overflowing sizes, a linear call on a conv2d layer or the reverse), SHAPE_MISMATCH (a
 * parameter of the wrong rank, an input smaller than the kernel), NOT_FOUND (unknown
 * parameter), UNSUPPORTED (dilation other than 1, different strides or paddings per axis).
 * Thread-safety: a layer is used by one thread at a time, and its sparsifier must not step
 * while it runs. The kernels use coppice_set_threads threads (OpenMP, or a host's pool lent
 * with coppice_set_parallel_runner).
 * ========================================================================================== */
typedef struct coppice_layer coppice_layer;

/* Convolution geometry. Initialise with coppice_conv2d_params_init (stride 1, padding 0,
 * dilation 1). Only equal strides and paddings on both axes and dilation 1 are supported. */
typedef struct coppice_conv2d_params {
  size_t struct_size; /* sizeof(coppice_conv2d_params), set by _init */
  int stride_h;       /* default 1 */
  int stride_w;       /* default 1 */
  int pad_h;          /* zero padding, default 0 */
  int pad_w;          /* default 0 */
  int dilation_h;     /* default 1 (the only value supported) */
  int dilation_w;     /* default 1 */
} coppice_conv2d_params;

/* Sets struct_size and the defaults. Never fails; does nothing when params is NULL. */
void coppice_conv2d_params_init(coppice_conv2d_params *params);

/*
 * A linear layer over parameter `name` of `sparsifier` (registered with shape [out, in]), or a
 * convolution over one registered OIHW (params NULL: the defaults). The layer follows the
 * parameter's mask; it keeps what it needs of the sparsifier alive (destroy both, in any
 * order). May be created before or after coppice_sparsifier_start (before it, the mask is all
 * kept). *out receives the handle (destroy with coppice_layer_destroy).
 */
coppice_status coppice_layer_linear_create(coppice_sparsifier *sparsifier, const char *name,
                                           coppice_layer **out);
coppice_status coppice_layer_conv2d_create(coppice_sparsifier *sparsifier, const char *name,
                                           const coppice_conv2d_params *params,
                                           coppice_layer **out);

/*
 * Layers with a fixed mask and no sparsifier: `weights` ([out, in], or OIHW with `shape` its
 * four dimensions) stays owned by the host and must outlive the layer; `mask` (same count of
 * bytes, non-zero = kept) is copied.
 */
coppice_status coppice_layer_linear_create_masked(int64_t out_features, int64_t in_features,
                                                  const float *weights, const uint8_t *mask,
                                                  coppice_layer **out);
coppice_status coppice_layer_conv2d_create_masked(const int64_t shape[4], const float *weights,
                                                  const uint8_t *mask,
                                                  const coppice_conv2d_params *params,
                                                  coppice_layer **out);

/* Destroys a layer (NULL is allowed). Host buffers are not touched. */
void coppice_layer_destroy(coppice_layer *layer);

/* y = x·Wᵀ + bias for `batch` rows (bias: out floats, may be NULL). */
coppice_status coppice_layer_linear_forward(coppice_layer *layer, const float *x, int64_t batch,
                                            const float *bias, float *y);
/* Gradients after coppice_layer_linear_forward of the same x: dx [batch, in], dw [out, in],
 * db [out]; each may be NULL (not computed). */
coppice_status coppice_layer_linear_backward(coppice_layer *layer, const float *x,
                                             const float *dy, int64_t batch, float *dx,
                                             float *dw, float *db);

/* Output height and width of the convolution for an input of height × width. */
coppice_status coppice_layer_conv2d_output_size(const coppice_layer *layer, int64_t height,
                                                int64_t width, int64_t *out_height,
                                                int64_t *out_width);
/* y [batch, out, OH, OW] = conv2d(x [batch, in, height, width], W) + bias (may be NULL). */
coppice_status coppice_layer_conv2d_forward(coppice_layer *layer, const float *x, int64_t batch,
                                            int64_t height, int64_t width, const float *bias,
                                            float *y);
/* Gradients after coppice_layer_conv2d_forward of the same x: dx (like x), dw (OIHW), db
 * [out]; each may be NULL. */
coppice_status coppice_layer_conv2d_backward(coppice_layer *layer, const float *x,
                                             const float *dy, int64_t batch, int64_t height,
                                             int64_t width, float *dx, float *dw, float *db);

/* Whether a forward / backward of this batch (and, for conv2d, this height × width; ignored for
 * linear) would run on the sparse kernels (1) or dense (0) at the mask's current density —
 * the decision the calls make. A host may run its own dense math when both are 0. Either
 * output may be NULL. */
coppice_status coppice_layer_plan(const coppice_layer *layer, int64_t batch, int64_t height,
                                  int64_t width, int *forward_sparse, int *backward_sparse);

/* Whether the last forward / backward ran on the sparse kernels (1) or dense (0); either
 * output may be NULL. */
coppice_status coppice_layer_execution(const coppice_layer *layer, int *forward_sparse,
                                       int *backward_sparse);

/* ============================================================================================
 * Batch norm (+ ReLU) and max pooling for a host's own convolution blocks: the rest of a
 * conv → batch norm → ReLU → max-pool block, so that a host whose convolutions run on the
 * layer operations above does not spend the step in its own normalisation and pooling. NCHW
 * float32, contiguous; `shape` is {n, c, h, w} of the input: each in 1..2^31−1, n·c and h·w
 * below 2^31, n·c·h·w below 2^40. Errors: INVALID_ARGUMENT (NULL buffers, sizes out of range,
 * eps ≤ 0, momentum outside [0, 1], a bad pooling window, an argmax outside its plane). The
 * kernels use coppice_set_threads threads, on the runner of coppice_set_parallel_runner when
 * one is installed. Stateless: any thread, any time.
 * ========================================================================================== */

/*
 * Training-mode batch norm over (n, h, w) per channel: batch mean and variance, written to
 * save_mean / save_invstd (c floats each, for the backward); running_mean / running_var (both
 * or neither) updated as running = (1 − momentum)·running + momentum·batch, with the unbiased
 * variance (PyTorch's rule); y = gamma·(x − mean)·invstd + beta, then max(y, 0) when relu is
 * non-zero. y must not alias x.
 */
coppice_status coppice_batchnorm2d_forward(const int64_t shape[4], const float *x,
                                           const float *gamma, const float *beta, float eps,
                                           float momentum, float *running_mean,
                                           float *running_var, float *save_mean,
                                           float *save_invstd, int relu, float *y);

/*
 * Gradients of coppice_batchnorm2d_forward for dy (shape of x): dgamma and dbeta (c floats),
 * and dx when not NULL. relu_output: the forward's y when it ran with relu (dy then counts only
 * where y > 0), else NULL.
 */
coppice_status coppice_batchnorm2d_backward(const int64_t shape[4], const float *x,
                                            const float *gamma, const float *save_mean,
                                            const float *save_invstd, const float *dy,
                                            const float *relu_output, float *dx, float *dgamma,
                                            float *dbeta);
/*
 * The same gradients for a forward that ran with relu, given beta instead of its output: the
 * ReLU's mask is recomputed from x, gamma, beta and the saved statistics exactly as the forward
 * computed it, so each pass reads two full-size arrays instead of three (faster; the results
 * are bit-identical to coppice_batchnorm2d_backward with relu_output). gamma and beta must be
 * the values the forward used (step the optimizer after the backward).
 */
coppice_status coppice_batchnorm2d_relu_backward(const int64_t shape[4], const float *x,
                                                 const float *gamma, const float *beta,
                                                 const float *save_mean,
                                                 const float *save_invstd, const float *dy,
                                                 float *dx, float *dgamma, float *dbeta);

/*
 * Max pooling with a kernel × kernel window, `stride` and `padding` (0..kernel/2; padded cells
 * never win): *height / *width receive the output size, (h + 2·padding − kernel)/stride + 1.
 */
coppice_status coppice_maxpool2d_output_size(const int64_t shape[4], int64_t kernel,
                                             int64_t stride, int64_t padding, int64_t *height,
                                             int64_t *width);
/* y [n, c, oh, ow] and argmax (same count of int32: each winner's index inside its h×w input
 * plane; on ties the first in row-major order, as PyTorch). */
coppice_status coppice_maxpool2d_forward(const int64_t shape[4], int64_t kernel, int64_t stride,
                                         int64_t padding, const float *x, float *y,
                                         int32_t *argmax);
/* dx [n, c, h, w] = dy routed to the forward's argmax positions (0 elsewhere). */
coppice_status coppice_maxpool2d_backward(const int64_t shape[4], int64_t kernel, int64_t stride,
                                          int64_t padding, const int32_t *argmax,
                                          const float *dy, float *dx);

/* Batch norm (training statistics, as coppice_batchnorm2d_forward with relu) + ReLU + 2×2 max
 * pooling with stride 2 and no padding, fused: x [n, c, h, w] with h, w >= 2 → y [n, c, h/2,
 * w/2] (an odd last row or column is dropped, as the pooling does). The normalised full-size
 * output is never stored; winner [n, c, h/2, w/2] receives each window's winning cell (0
 * top-left, 1 top-right, 2 bottom-left, 3 bottom-right; the first maximum wins). Reads and
 * writes far less memory than the two operations one after the other. */
coppice_status coppice_batchnorm2d_relu_maxpool2_forward(
    const int64_t shape[4], const float *x, const float *gamma, const float *beta, float eps,
    float momentum, float *running_mean, float *running_var, float *save_mean,
    float *save_invstd, float *y, uint8_t *winner);
/* Its backward from the pooled gradient dy [n, c, h/2, w/2]: dx [n, c, h, w] (may be NULL),
 * dgamma, dbeta [c]; y and winner are the forward's outputs (a winner above 3 is refused). */
coppice_status coppice_batchnorm2d_relu_maxpool2_backward(
    const int64_t shape[4], const float *x, const float *gamma, const float *save_mean,
    const float *save_invstd, const float *y, const uint8_t *winner, const float *dy, float *dx,
    float *dgamma, float *dbeta);
/* The same backward given also the forward's beta [c] (the values the forward used: step the
 * optimizer after the backward). The batch sums then come from the pooled output alone — at a
 * window's winning cell with y > 0, x − mean = (y − beta)/(gamma·invstd) — and dx is written
 * image by image, so x and dx stream through memory once: faster on large inputs (the cnn's
 * 128×128×14×14 layer: ~1.8 → ~1.0 ms). The same gradients to rounding; a channel whose gamma
 * is tiny against its beta (|beta| > 1024·|gamma|) makes the call take the path above. */
coppice_status coppice_batchnorm2d_relu_maxpool2_backward_with_beta(
    const int64_t shape[4], const float *x, const float *gamma, const float *beta,
    const float *save_mean, const float *save_invstd, const float *y, const uint8_t *winner,
    const float *dy, float *dx, float *dgamma, float *dbeta);

/* ============================================================================================
 * The engine: models built, trained and run by the runtime (sparse layers on sparse kernels).
 * Thread-safety: one thread at a time per model and per dataset handle.
 * ========================================================================================== */
typedef struct coppice_model coppice_model;
typedef struct coppice_dataset coppice_dataset;

/* A reference model by name: "mlp", "cnn" or "resnet20", initialised from `seed`, for 1×28×28
 * inputs and `classes` outputs. Errors: NOT_FOUND (unknown name), INVALID_ARGUMENT. */
coppice_status coppice_model_create(const char *name, uint64_t seed, int classes,
                                    coppice_model **out);
void coppice_model_destroy(coppice_model *model);
/* Number of trainable parameters. */
coppice_status coppice_model_parameter_count(const coppice_model *model, int64_t *out);
/* Number of outputs (classes) and input height/width (each output may be NULL). */
coppice_status coppice_model_shape(const coppice_model *model, int *classes, int *height,
                                   int *width);

/*
 * Saves the model's parameters and normalisation statistics to `path` as a safetensors file
 * (float32 tensors named like "conv1.weight", "bn1.running_mean"; loadable by the Python
 * `safetensors` package or any reader of the format), written atomically (temporary file,
 * fsync, rename). Errors: IO_ERROR; INVALID_STATE after coppice_train* ended in divergence
 * (the weights are then not a trained model; coppice_model_export refuses too) until a
 * coppice_model_load or a training that finishes.
 */
coppice_status coppice_model_save(const coppice_model *model, const char *path);

/*
 * Loads parameters saved by coppice_model_save — or a checkpoint of coppice_train_checkpointed,
 * or an export of coppice_model_export — into a model of the same architecture. Checksums are
 * verified. Masks in the file (checkpoints, exports) are attached, so sparse layers run the
 * sparse kernels. The model is unchanged unless every tensor is present with the right shape.
 * Errors: IO_ERROR, INVALID_FILE (malformed, truncated, corrupted, missing or mis-shaped
 * tensors, another model's file; the message says which).
 */
coppice_status coppice_model_load(coppice_model *model, const char *path);

/*
 * An in-memory dataset copied from caller arrays: `count` images of height×width floats (one
 * channel) and int32 labels in [0, classes). Images are used as given: normalise them as the
 * model expects (the IDX loader uses (pixel/255 − 0.2860)/0.3530, Fashion-MNIST's statistics).
 * Errors: INVALID_ARGUMENT (NULL, sizes, labels out of range, NaN or infinite values).
 */
coppice_status coppice_dataset_create(const float *images, const int32_t *labels, int64_t count,
                                      int height, int width, int classes,
                                      coppice_dataset **out);
/* Fashion-MNIST-style IDX files ("train" or "t10k" split) from `directory` (NULL: the default
 * /usr/share/datasets/fashion-mnist), first `limit` samples (<= 0: all), normalised.
 * Errors: IO_ERROR, INVALID_FILE (message names the file). */
coppice_status coppice_dataset_load_idx(const char *directory, const char *split, int64_t limit,
                                        coppice_dataset **out);
void coppice_dataset_destroy(coppice_dataset *dataset);
coppice_status coppice_dataset_count(const coppice_dataset *dataset, int64_t *out);

/* Called after every epoch of coppice_train; return non-zero to stop training early. */
typedef int (*coppice_epoch_callback)(int epoch, double train_loss, double test_accuracy,
                                      double sparsity, double seconds, void *user_data);

/* Training configuration. Initialise with coppice_train_config_init. */
typedef struct coppice_train_config {
  size_t struct_size;        /* sizeof(coppice_train_config), set by _init */
  int epochs;                /* default 10; 1..100000 */
  int batch_size;            /* default 128 */
  float learning_rate;       /* default 0.05 */
  const char *optimizer;     /* "sgd" or "adamw" (_init and NULL: "sgd") */
  float momentum;            /* default 0.9 */
  float weight_decay;        /* default 5e-4 */
  const char *lr_schedule;   /* "cosine" or "constant" (_init and NULL: "cosine") */
  uint64_t seed;             /* default 0 */
  coppice_epoch_callback on_epoch; /* may be NULL; epochs are numbered from 1 */
  void *user_data;           /* passed to on_epoch */
  /* Sparse training. _init sets method "dense" (dense training; NULL also means dense) and
   * rounds 1. coppice_train fills in total_steps and steps_per_epoch; gap_step_length counts
   * optimizer steps, 0 meaning one epoch. This member stays last, so that the struct can grow
   * with it (struct_size covers both). */
  coppice_sparsifier_config sparsity;
} coppice_train_config;

void coppice_train_config_init(coppice_train_config *config);

/* Results of coppice_train. */
typedef struct coppice_train_result {
  double test_accuracy;      /* percent, after the last epoch */
  double sparsity;           /* global sparsity of the prunable weights */
  double train_seconds;
  int epochs;                /* epochs run */
} coppice_train_result;

/*
 * Trains `model` on `train`, evaluating on `test` after every epoch. result may be NULL.
 * Errors: INVALID_ARGUMENT (NULL handles, bad config), SHAPE_MISMATCH (data samples are not
 * the model's input shape, or have more classes than the model's outputs).
 */
coppice_status coppice_train(coppice_model *model, const coppice_dataset *train,
                             const coppice_dataset *test, const coppice_train_config *config,
                             coppice_train_result *result);

/*
 * Checkpoints of coppice_train_checkpointed. Initialise with coppice_checkpoint_config_init.
 * A checkpoint is a safetensors file (loadable by any safetensors reader) holding weights,
 * masks ("<weight>.mask", U8), optimizer state, running statistics and the run's state, with a
 * CRC-32; it is written atomically, so a crash or a full disk never damages the previous one.
 */
typedef struct coppice_checkpoint_config {
  size_t struct_size;        /* sizeof(coppice_checkpoint_config), set by _init */
  const char *directory;     /* required; created if missing; files checkpoint-<step>.safetensors */
  int every_epochs;          /* default 1; a checkpoint is also written after the last epoch
                                and when on_epoch stops training */
  int keep;                  /* newest checkpoints kept, default 3 (the one just written is
                                always kept) */
  int resume;                /* non-zero: continue from the newest loadable checkpoint in
                                `directory` (same model, data size and config), bit-exactly */
} coppice_checkpoint_config;
/*
 * A checkpoint directory belongs to one run. While coppice_train_checkpointed runs it holds an
 * exclusive lock (flock) on "<directory>/.coppice.lock", which records its process id; a second
 * run on the same directory — another process, or another thread of this one — fails at once
 * with INVALID_STATE naming that process. The operating system releases the lock when the run
 * returns or the process dies, so a crash never leaves the directory locked (the lock file
 * stays, harmlessly). A run with resume = 0 refuses (INVALID_STATE) a directory that already
 * holds checkpoints, rather than mixing its checkpoints with an earlier run's and pruning them:
 * resume that run or use another directory.
 */

void coppice_checkpoint_config_init(coppice_checkpoint_config *config);

/*
 * coppice_train with checkpoints. Errors as coppice_train, plus IO_ERROR (directory or file
 * cannot be written: training stops, earlier checkpoints are intact), INVALID_FILE (resume:
 * the checkpoints are damaged, hold counters out of range, or were written by a run with other
 * settings; the message says which setting differs) and INVALID_STATE (the directory is in use
 * by another run, or holds an earlier run's checkpoints and resume is 0).
 */
coppice_status coppice_train_checkpointed(coppice_model *model, const coppice_dataset *train,
                                          const coppice_dataset *test,
                                          const coppice_train_config *config,
                                          const coppice_checkpoint_config *checkpoints,
                                          coppice_train_result *result);

/*
 * Writes the model for inference with its sparse weights in CSR form (safetensors: values F32,
 * column indices U16 or I32, row pointers I32), atomically. bytes / dense_bytes (may be NULL)
 * receive the file's size and the size of the same weights stored dense. Load it with
 * coppice_model_load: the sparse layers then run the sparse kernels.
 */
coppice_status coppice_model_export(const coppice_model *model, const char *path, int64_t *bytes,
                                    int64_t *dense_bytes);

/*
 * Describes a Coppice file (model, checkpoint or export) as JSON: kind, model, per-tensor
 * shape, nonzeros and sparsity, and a checkpoint's run state (as `coppice inspect --json`).
 * Writes at most `capacity` bytes including the terminating NUL into `json` (may be NULL when
 * capacity is 0); *needed (may be NULL) receives the full size including the NUL, so a caller
 * can ask once with capacity 0 and again with a large enough buffer. Returns SHAPE_MISMATCH
 * when it does not fit. Errors: IO_ERROR, INVALID_FILE (the message names the problem).
 */
coppice_status coppice_file_inspect(const char *path, char *json, size_t capacity,
                                    size_t *needed);

/* Test accuracy in percent. */
coppice_status coppice_evaluate(coppice_model *model, const coppice_dataset *data,
                                double *accuracy);

/* Inference: logits (count × classes) for `count` images of height×width floats. Errors:
 * INVALID_ARGUMENT (NULL, count outside 1..2^24, NaN or infinite pixels), SHAPE_MISMATCH. */
coppice_status coppice_predict(coppice_model *model, const float *images, int64_t count,
                               int height, int width, float *logits, int64_t logits_count);

#ifdef __cplusplus
}
#endif

#endif /* COPPICE_H */
