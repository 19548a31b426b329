/*
 * version.h - what `ringmx --version` prints: the build and the machine.
 *
 * The build: ringmx's version and git commit, the liburing it was built
 * with, the wolfSSL library it runs with and the acceleration that wolfSSL
 * was compiled with. The machine: the io_uring features the running kernel
 * grants, read from a small ring set up for the purpose, and which of the
 * operations the gateway uses its probe reports as supported.
 */
#ifndef RINGMX_VERSION_INFO_H
#define RINGMX_VERSION_INFO_H

#include <stdio.h>

/*
 * Prints the version report to out, one `name: value` line each. Sets up and
 * tears down one io_uring of a few entries (start-up only, main thread);
 * when that fails, the kernel lines say why instead. Returns 0, or -1 when
 * writing to out failed.
 */
int version_print(FILE *out);

#endif
