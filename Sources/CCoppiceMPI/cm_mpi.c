// MPI collectives for Coppice (see cm_mpi.h). Messages larger than INT_MAX elements are sent
// in chunks, since MPI counts are int.
#include "cm_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

static void set_error(char *error, size_t size, const char *what, const char *detail) {
  if (error && size > 0) snprintf(error, size, "%s: %s", what, detail);
}

int cm_launched_with_ranks(void) {
  const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                         "SLURM_NTASKS"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = getenv(names[i]);
    if (v && atoi(v) > 1) return 1;
  }
  return 0;
}

#ifdef COPPICE_HAVE_MPI
#include <mpi.h>

static int initialised_here = 0;
static const int64_t chunk = INT_MAX / 8;

int cm_available(void) { return 1; }

static int check(int code, const char *what, char *error, size_t size) {
  if (code == MPI_SUCCESS) return 0;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", code);
  set_error(error, size, what, text);
  return -1;
}

int cm_init(int *rank, int *size, char *error, size_t error_size) {
  int flag = 0;
  MPI_Initialized(&flag);
  if (!flag) {
    int provided = 0;
    if (check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread",
              error, error_size))
      return -1;
    initialised_here = 1;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (check(MPI_Comm_rank(MPI_COMM_WORLD, rank), "MPI_Comm_rank", error, error_size)) return -1;
  return check(MPI_Comm_size(MPI_COMM_WORLD, size), "MPI_Comm_size", error, error_size);
}

void cm_finalize(void) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (initialised_here && !finalized) MPI_Finalize();
}

static int sum(void *values, int64_t count, MPI_Datatype type, size_t element, char *error,
               size_t size) {
  char *p = values;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (int64_t done = 0; done < count; done += chunk) {
    int n = (int)(count - done < chunk ? count - done : chunk);
    void *at = p + done * (int64_t)element;
    int code = MPI_Reduce(rank == 0 ? MPI_IN_PLACE : at, rank == 0 ? at : NULL, n, type, MPI_SUM,
                          0, MPI_COMM_WORLD);
    if (check(code, "MPI_Reduce", error, size)) return -1;
    if (check(MPI_Bcast(at, n, type, 0, MPI_COMM_WORLD), "MPI_Bcast", error, size)) return -1;
  }
  return 0;
}

int cm_sum_float(float *values, int64_t count, char *error, size_t error_size) {
  return sum(values, count, MPI_FLOAT, sizeof(float), error, error_size);
}

int cm_sum_double(double *values, int64_t count, char *error, size_t error_size) {
  return sum(values, count, MPI_DOUBLE, sizeof(double), error, error_size);
}

int cm_broadcast(void *data, int64_t bytes, int root, char *error, size_t error_size) {
  char *p = data;
  for (int64_t done = 0; done < bytes; done += chunk) {
    int n = (int)(bytes - done < chunk ? bytes - done : chunk);
    if (check(MPI_Bcast(p + done, n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast", error,
              error_size))
      return -1;
  }
  return 0;
}

int cm_all_gather(const void *send, int64_t bytes, void *received, char *error,
                  size_t error_size) {
  if (bytes > INT_MAX) {
    set_error(error, error_size, "MPI_Allgather", "message larger than 2 GiB");
    return -1;
  }
  return check(MPI_Allgather(send, (int)bytes, MPI_BYTE, received, (int)bytes, MPI_BYTE,
                             MPI_COMM_WORLD),
               "MPI_Allgather", error, error_size);
}

#else  // built without MPI

static const char *missing = "MPI support is not compiled in (install libopenmpi-dev and rebuild)";

int cm_available(void) { return 0; }

int cm_init(int *rank, int *size, char *error, size_t error_size) {
  *rank = 0;
  *size = 1;
  set_error(error, error_size, "MPI", missing);
  return -1;
}

void cm_finalize(void) {}

int cm_sum_float(float *values, int64_t count, char *error, size_t error_size) {
  (void)values, (void)count;
  set_error(error, error_size, "MPI", missing);
  return -1;
}

int cm_sum_double(double *values, int64_t count, char *error, size_t error_size) {
  (void)values, (void)count;
  set_error(error, error_size, "MPI", missing);
  return -1;
}

int cm_broadcast(void *data, int64_t bytes, int root, char *error, size_t error_size) {
  (void)data, (void)bytes, (void)root;
  set_error(error, error_size, "MPI", missing);
  return -1;
}

int cm_all_gather(const void *send, int64_t bytes, void *received, char *error,
                  size_t error_size) {
  (void)send, (void)bytes, (void)received;
  set_error(error, error_size, "MPI", missing);
  return -1;
}
#endif
