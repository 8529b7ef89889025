// The MPI layer built without MPI (no COPPICE_HAVE_MPI) must say so, not crash or pretend.
#include <stdio.h>
#include <string.h>

#include "cm_mpi.h"

int main(void) {
  char error[256] = "";
  int rank = -1, size = -1;
  float x = 1;
  if (cm_available() != 0) return printf("stub claims MPI\n"), 1;
  if (cm_init(&rank, &size, error, sizeof error) != -1 || rank != 0 || size != 1)
    return printf("stub cm_init did not fail cleanly\n"), 1;
  if (!strstr(error, "not compiled in")) return printf("unclear message: %s\n", error), 1;
  if (cm_sum_float(&x, 1, error, sizeof error) != -1) return printf("stub sum succeeded\n"), 1;
  printf("mpi: built without MPI, the layer reports: %s\n", error);
  return 0;
}
