// Whole-file reads with transparent gzip decompression.
#include "ck_io.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

int ck_read_file(const char *path, size_t max_length, unsigned char **data, size_t *length,
                 char *error, size_t error_size) {
  *data = NULL;
  *length = 0;
  // Only regular files (or links to them): a FIFO would block the open forever and a device
  // such as /dev/zero never ends.
  struct stat info;
  if (stat(path, &info) != 0) {
    snprintf(error, error_size, "cannot open: %s", strerror(errno));
    return -1;
  }
  if (!S_ISREG(info.st_mode)) {
    snprintf(error, error_size, "not a regular file (%s)",
             S_ISDIR(info.st_mode) ? "a directory" : "a FIFO, socket or device");
    return -1;
  }
  FILE *probe = fopen(path, "rb");
  if (!probe) {
    snprintf(error, error_size, "cannot open: %s", strerror(errno));
    return -1;
  }
  fclose(probe);
  gzFile file = gzopen(path, "rb");
  if (!file) {
    snprintf(error, error_size, "cannot open: %s", strerror(errno));
    return -1;
  }
  size_t capacity = 1 << 20, used = 0;
  unsigned char *buffer = malloc(capacity);
  if (!buffer) {
    gzclose(file);
    snprintf(error, error_size, "out of memory");
    return -1;
  }
  for (;;) {
    if (used == capacity) {
      capacity *= 2;
      unsigned char *grown = realloc(buffer, capacity);
      if (!grown) {
        free(buffer);
        gzclose(file);
        snprintf(error, error_size, "out of memory");
        return -1;
      }
      buffer = grown;
    }
    size_t want = capacity - used;
    if (want > (1u << 30)) want = 1u << 30;
    int got = gzread(file, buffer + used, (unsigned)want);
    if (got < 0) {
      int code = 0;
      const char *message = gzerror(file, &code);
      snprintf(error, error_size, "corrupt or truncated gzip data (%s)", message ? message : "?");
      free(buffer);
      gzclose(file);
      return -1;
    }
    if (got == 0) break;
    used += (size_t)got;
    if (used > max_length) { // a decompression bomb, or simply too large
      snprintf(error, error_size, "larger than the reader's limit of %zu bytes%s", max_length,
               gzdirect(file) ? "" : " when decompressed");
      free(buffer);
      gzclose(file);
      return -1;
    }
  }
  // gzread returns 0 both at a clean end and at a truncated stream; gzclose reports the latter.
  int code = 0;
  const char *message = gzerror(file, &code);
  if (code != Z_OK && code != Z_STREAM_END) {
    snprintf(error, error_size, "corrupt or truncated gzip data (%s)", message ? message : "?");
    free(buffer);
    gzclose(file);
    return -1;
  }
  int close_status = gzclose(file);
  if (close_status == Z_BUF_ERROR) {
    snprintf(error, error_size, "truncated gzip data (unexpected end of file)");
    free(buffer);
    return -1;
  }
  *data = buffer;
  *length = used;
  return 0;
}

void ck_free(void *pointer) { free(pointer); }

unsigned long ck_crc32(unsigned long crc, const void *data, size_t length) {
  const unsigned char *bytes = data;
  while (length > 0) {
    uInt chunk = length > 0x40000000u ? 0x40000000u : (uInt)length;
    crc = crc32(crc, bytes, chunk);
    bytes += chunk;
    length -= chunk;
  }
  return crc;
}
