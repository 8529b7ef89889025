// File input for Coppice: whole-file reads with transparent gzip decompression (zlib).
#ifndef CK_IO_H
#define CK_IO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Reads a whole regular file, decompressing it if it is gzip (plain files are read as they
/// are), refusing more than max_length bytes of content (decompressed) and anything that is not
/// a regular file (directories, FIFOs, devices). On success returns 0 and sets *data (free with
/// ck_free) and *length. On failure returns -1, sets *data to NULL and writes a message (without
/// the path) into error (size error_size).
int ck_read_file(const char *path, size_t max_length, unsigned char **data, size_t *length,
                 char *error, size_t error_size);
/// Frees memory returned by ck_read_file.
void ck_free(void *pointer);
/// Continues the CRC-32 (zlib's polynomial) `crc` over `length` bytes; start from 0.
unsigned long ck_crc32(unsigned long crc, const void *data, size_t length);

#ifdef __cplusplus
}
#endif
#endif
