/* The smallest Coppice host: check the library version, set threads, read an error. */
#include <coppice.h>
#include <stdio.h>

int main(void) {
  coppice_status status;
  printf("coppice %s (header %d.%d.%d)\n", coppice_version(), COPPICE_VERSION_MAJOR,
         COPPICE_VERSION_MINOR, COPPICE_VERSION_PATCH);
  /* A host built against one header should refuse to run on another library. */
  if (coppice_version_number() != COPPICE_VERSION_NUMBER) {
    fprintf(stderr, "header and library versions differ\n");
    return 1;
  }
  coppice_set_threads(2);
  printf("kernel threads: %d\n", coppice_get_threads());
  /* Every fallible call returns a status; coppice_last_error() says what went wrong. */
  status = coppice_set_threads(-1);
  printf("coppice_set_threads(-1): %s: %s\n", coppice_status_name(status), coppice_last_error());
  return 0;
}
