// A thin layer over MPI for Coppice's distributed training: world communicator, collectives
// that give bit-identical results on every rank, and errors returned (not aborted) with a
// message. Built without MPI (no mpi.h found), every call but cm_available reports that MPI
// support is not compiled in.
#ifndef CM_MPI_H
#define CM_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when compiled with MPI, 0 otherwise.
int cm_available(void);
/// Whether this process was started by an MPI launcher (mpirun/mpiexec/srun) with more than
/// one process, judged from the launcher's environment variables; no MPI call is made.
int cm_launched_with_ranks(void);
/// Initialises MPI (once; thread level FUNNELED) and returns rank and size. Errors make
/// collectives return instead of aborting. Returns 0 or -1 with a message in error.
int cm_init(int *rank, int *size, char *error, size_t error_size);
/// Finalises MPI if cm_init initialised it.
void cm_finalize(void);
/// Sums `count` floats / doubles over all ranks, in place; every rank gets the same bits
/// (reduced on rank 0, then broadcast). 0 or -1 with a message.
int cm_sum_float(float *values, int64_t count, char *error, size_t error_size);
int cm_sum_double(double *values, int64_t count, char *error, size_t error_size);
/// Broadcasts `bytes` bytes from `root`. 0 or -1 with a message.
int cm_broadcast(void *data, int64_t bytes, int root, char *error, size_t error_size);
/// Gathers `bytes` bytes from every rank into `received` (size × bytes, rank order), on all
/// ranks. 0 or -1 with a message.
int cm_all_gather(const void *send, int64_t bytes, void *received, char *error,
                  size_t error_size);

#ifdef __cplusplus
}
#endif
#endif
