/*
 * front.c - the process-wide objects every worker's connections share
 * (front.h): made before the workers start, reloaded on SIGHUP, destroyed
 * after the workers have stopped.
 */
#include "front.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "auth_failures.h"
#include "auth_users.h"
#include "auth_verify.h"
#include "client_table.h"
#include "log.h"

int front_create(struct front *f, const struct config *cfg, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	int rc = auth_failures_create(&f->auth_failures);
	if (rc == 0)
		rc = client_table_create(&f->clients, client_table_slots_for(cfg->max_connections));
	if (rc != 0) {
		snprintf(err, errlen, "client tables: %s", strerror(-rc));
		front_destroy(f);
		return -1;
	}
	if (cfg->auth_users[0] == '\0')
		return 0;
	struct auth_users *users;
	if (auth_users_load(cfg->auth_users, &users, err, errlen) != 0) {
		front_destroy(f);
		return -1;
	}
	size_t count = auth_users_count(users);
	rc = auth_verify_create(&f->auth_verify, users, AUTH_VERIFY_THREADS);
	if (rc != 0) {
		snprintf(err, errlen, "AUTH verifier threads: %s", strerror(-rc));
		front_destroy(f);
		return -1;
	}
	log_info("event=auth_users_loaded users=%zu threads=%d", count, AUTH_VERIFY_THREADS);
	return 0;
}

void front_reload(struct front *f, const struct config *next)
{
	if (f->auth_verify == NULL || next->auth_users[0] == '\0')
		return; /* turning AUTH on or off is a restart key */
	char err[1024];
	char q[PATH_MAX + 64];
	log_value(q, sizeof(q), next->auth_users, strlen(next->auth_users));
	if (auth_verify_reload(f->auth_verify, next->auth_users, err, sizeof(err)) != 0) {
		struct log_msg m;
		if (log_begin(&m, LOG_ERROR, "auth_users_kept")) {
			log_add_str(&m, "file", next->auth_users);
			log_add_str(&m, "error", err);
			log_add_str(&m, "note", "the running user table stays");
			log_end(&m);
		}
		return;
	}
	log_info("event=auth_users_reloaded file=%s users=%zu", q,
		 auth_verify_user_count(f->auth_verify));
}

void front_destroy(struct front *f)
{
	if (f->auth_verify)
		auth_verify_destroy(f->auth_verify);
	if (f->auth_failures)
		auth_failures_destroy(f->auth_failures);
	if (f->clients)
		client_table_destroy(f->clients);
	memset(f, 0, sizeof(*f));
}
