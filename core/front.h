/*
 * front.h - what every worker's client connections share, process-wide:
 * the AUTH verifier threads and the failures table behind auth_fail_limit,
 * and the per-client table behind the limits and the screening cache.
 * Created by main before the workers start and destroyed after they stop;
 * each member is safe to use from any worker (see its own header). A member
 * is NULL when its feature is off (no auth_users: no verifier).
 */
#ifndef RINGMX_FRONT_H
#define RINGMX_FRONT_H

#include <stddef.h>

#include "config.h"

struct auth_verify;
struct auth_failures;
struct client_table;

struct front {
	struct auth_verify *auth_verify;     /* NULL: AUTH is not offered */
	struct auth_failures *auth_failures; /* always there */
	struct client_table *clients;        /* always there */
};

/* Makes them for cfg (auth_users loaded now: a bad file stops start-up).
 * Call with the workers' signals blocked (the verifier threads inherit the
 * mask). 0, or -1 with the reason in err. */
int front_create(struct front *f, const struct config *cfg, char *err, size_t errlen);

/* SIGHUP with a valid next configuration: the user table is read again,
 * the old one kept (and logged) when the new one fails to load. */
void front_reload(struct front *f, const struct config *next);

/* After every worker has stopped. */
void front_destroy(struct front *f);

#endif
