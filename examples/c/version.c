/* The smallest Coppice host: check the library version, set threads, read an error. */
#include <coppice.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  printf("coppice %s (header %d.%d.%d)\n", coppice_version(), COPPICE_VERSION_MAJOR,
         COPPICE_VERSION_MINOR, COPPICE_VERSION_PATCH);
  if (coppice_version_number() != COPPICE_VERSION_NUMBER) {
    fprintf(stderr, "header and library versions differ\n");
    return 1;
  }
  if (coppice_set_threads(2) != COPPICE_OK || coppice_get_threads() != 2) return 1;
  coppice_status status = coppice_set_threads(-1);
  if (status != COPPICE_INVALID_ARGUMENT || strlen(coppice_last_error()) == 0) return 1;
  printf("error path ok: %s: %s\n", coppice_status_name(status), coppice_last_error());
  return 0;
}
