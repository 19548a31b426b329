/*
 * auth_users.h - the table of users who may AUTH, loaded from the
 * `auth_users` file, and the password check against it.
 *
 * The file holds `user:hash` lines; blank lines and lines starting with '#'
 * are ignored. Hashes are crypt(3) strings made with yescrypt (`$y$`, e.g.
 * `mkpasswd -m yescrypt`) or SHA-512-crypt (`$6$`); any other scheme, a
 * malformed line or a user named twice stops the load with "FILE:LINE: ...".
 * A loaded table is immutable: any thread may check against it. Checking
 * costs one crypt_r (milliseconds for yescrypt), so only core/auth_verify's
 * threads call auth_users_check, never a worker.
 */
#ifndef RINGMX_AUTH_USERS_H
#define RINGMX_AUTH_USERS_H

#include <crypt.h>

#include "../common/base.h"
#include "../common/bounds.h"

/* Outcome of one check; also the res of the completion auth_verify posts. */
enum auth_result {
	AUTH_RESULT_FAILED = 0,   /* unknown user or wrong password: 535 5.7.8 */
	AUTH_RESULT_OK = 1,       /* 235 2.7.0 */
	AUTH_RESULT_TEMPFAIL = 2, /* could not check (queue full, crypt failed): 454 4.7.0 */
};

struct auth_users;

/*
 * Loads path into a new table (*out, freed with auth_users_free). Returns 0,
 * or -1 with "FILE:LINE: what is wrong" (or "FILE: ...") in err. An empty
 * file is a valid, empty table. Blocking file I/O: start-up or reload only.
 */
RMX_MUST_CHECK int auth_users_load(const char *path, struct auth_users **out, char *err,
				   size_t errlen);

void auth_users_free(struct auth_users *u);

size_t auth_users_count(const struct auth_users *u);

/*
 * Checks user and password (any bytes; not NUL-terminated) against u with
 * crypt_r into cd (the caller's, about 32 KiB; wiped before return, as is
 * the copy of the password). The result of crypt_r is compared with the
 * stored hash in constant time. An unknown user, or a password longer than
 * AUTH_PASSWORD_MAX_BYTES or holding a NUL, still costs one crypt_r (against
 * another user's hash, or a built-in one when the table is empty), so the
 * time taken does not tell which users exist. Blocks for milliseconds.
 */
enum auth_result auth_users_check(const struct auth_users *u, struct span user,
				  struct span password, struct crypt_data *cd);

#endif
