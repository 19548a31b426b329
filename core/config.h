/*
 * config.h - one immutable, validated configuration (STYLE.md "Avoid").
 *
 * Built at start-up from the embedded defaults, then from `key = value` lines
 * of the file given with -c. Every problem is reported with the file name and
 * line number and stops start-up. After config_load returns, nothing writes
 * to a struct config: workers share it read-only.
 */
#ifndef RINGMX_CONFIG_H
#define RINGMX_CONFIG_H

#include <limits.h>
#include <sys/socket.h>

#include "../proto/cidr.h"
#include "../proto/smtp_session.h"
#include "../common/base.h"
#include "../common/bounds.h"
#include "tls.h"

/* greet_action: what a client that talks before the final greeting gets. */
enum greet_action {
	GREET_ACTION_IGNORE,  /* logged and counted; the session goes on */
	GREET_ACTION_ENFORCE, /* logged, then 550 5.5.1 to every RCPT of the session */
	GREET_ACTION_DROP,    /* 521 and close */
};

/* proxy_protocol: whether a connection starts with a PROXY protocol header
 * (proto/proxy.h) from a balancer in proxy_trusted. A listener's own word
 * (proxy=...) overrides the key; INHERIT is for listeners only. */
enum proxy_protocol {
	PROXY_PROTOCOL_INHERIT,  /* listen: no proxy= word, the key's value holds */
	PROXY_PROTOCOL_OFF,      /* no header is read */
	PROXY_PROTOCOL_REQUIRED, /* untrusted peers closed, trusted ones must send one */
	PROXY_PROTOCOL_OPTIONAL, /* trusted peers may send one */
};
#define PROXY_TIMEOUT_DEFAULT_S 5

struct listen_addr {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char text[64]; /* as configured: "127.0.0.1:2525", "[::1]:2525" */
	uint8_t mode;  /* listen only: enum smtp_listener_mode (the word after it) */
	uint8_t proxy; /* listen only: enum proxy_protocol (proxy=WORD), or INHERIT */
};

#define SMTP_LISTENER_MODE_COUNT (SMTP_LISTENER_SMTPS + 1)
#define TLS_CIPHERS_MAX_BYTES 1024
/* A TLS handshake is two round trips: 30 s is far beyond any real client
 * (Postfix uses 10 s under stress, 300 s otherwise) and short enough that a
 * client stalling its handshake does not hold a slot for long. */
#define TLS_HANDSHAKE_TIMEOUT_DEFAULT_S 30

struct config {
	char hostname[SMTP_DOMAIN_MAX_BYTES + 1];
	uint32_t workers;
	struct listen_addr listen[LISTENERS_MAX];
	uint32_t listen_count;
	char data_dir[PATH_MAX];
	bool fsync;
	uint32_t store_io;                  /* enum store_io_mode (storage/store.h) */
	uint32_t commits_in_flight;         /* group commits per worker at once */
	char recipients_file[PATH_MAX]; /* empty: no recipient table */
	uint64_t max_message_size_bytes;
	uint32_t max_recipients;
	uint32_t max_connections;
	uint32_t max_command_line_bytes;
	bool bare_newline_normalize;
	uint32_t command_timeout_s;
	uint32_t data_timeout_s;
	uint32_t idle_timeout_s;
	uint32_t min_data_rate_bytes_per_s; /* each body byte extends the data deadline */
	uint32_t shutdown_grace_s;
	uint32_t soft_error_limit;          /* the error budget: see smtp_session_config */
	uint32_t hard_error_limit;
	uint32_t error_sleep_s;             /* a reply past the soft limit waits this long */
	uint32_t in_flow_delay_s;           /* a held 250 waits at most this long (0: off) */
	uint32_t in_flow_backlog;           /* per worker: pacing starts above this backlog */
	uint32_t junk_command_limit;
	uint64_t store_max_bytes;
	uint64_t max_inflight_data_bytes;
	uint64_t segment_size_bytes;

	/* Forwarding (issue: forward path). No upstream: mail stays in the store. */
	struct listen_addr upstream[UPSTREAMS_MAX]; /* tried in order, with failover */
	uint32_t upstream_count;
	/* Each upstream's host name (NAME=ADDRESS:PORT; "" when none): the SNI
	 * and, with upstream_ca, the name its certificate must carry. */
	char upstream_name[UPSTREAMS_MAX][SMTP_DOMAIN_MAX_BYTES + 1];
	uint32_t upstream_tls;              /* enum smtp_client_tls (proto/smtp_client.h) */
	char upstream_ca[PATH_MAX];         /* empty: TLS to the upstream is not verified */
	bool upstream_chunking;             /* BDAT to upstreams that offer CHUNKING */
	uint32_t upstream_connections;      /* per worker */
	char upstream_helo[SMTP_DOMAIN_MAX_BYTES + 1];
	uint32_t upstream_timeout_s;
	uint32_t retry_min_s;
	uint32_t retry_max_s;
	uint32_t max_queue_lifetime_s;

	/* The HTTP endpoint for /metrics, /healthz, /readyz. */
	struct listen_addr metrics_listen;
	bool metrics_enabled;               /* metrics_listen = off: false */

	int log_level;                      /* enum log_level (log.h) */
	bool log_json;                      /* log_format = json */

	/* AUTH (RFC 4954) on submission listeners: the user:hash file (empty:
	 * AUTH is never offered), and failures per client address before
	 * 421 4.7.0 (core/auth_failures.h). */
	char auth_users[PATH_MAX];
	uint32_t auth_fail_limit;

	/* Per-client limits (core/client_table.h; 0: that limit off), counted
	 * per IPv4 address and per IPv6 /ipv6_prefix_bits, except for the
	 * blocks of limits_exempt. Rates are per minute. */
	uint32_t max_connections_per_ip;
	uint32_t max_connection_rate_per_ip;
	uint32_t max_message_rate_per_ip;
	uint32_t ipv6_prefix_bits;
	struct cidr_list limits_exempt;

	/* PROXY protocol (enum proxy_protocol, never INHERIT here): the
	 * balancers allowed to send a header, how long one may take. */
	uint32_t proxy_protocol;
	struct cidr_list proxy_trusted;
	uint32_t proxy_timeout_s;

	/* Pre-greeting screening: "220-" first, the final "220 " greet_pause_s
	 * later (0: off); what a client that talks first gets; how long a
	 * verdict is cached for the client's next connections. */
	uint32_t greet_pause_s;
	uint32_t greet_action;              /* enum greet_action */
	uint32_t screen_cache_ttl_s;

	/* Overload watermarks (core/overload.h; 0: that one off): store use and
	 * DATA bytes in flight in percent of their bounds, the backlog in
	 * messages, the age of its oldest in seconds. */
	uint32_t overload_store_soft_pct, overload_store_hard_pct;
	uint32_t overload_backlog_soft, overload_backlog_hard;
	uint32_t overload_backlog_age_soft_s, overload_backlog_age_hard_s;
	uint32_t overload_inflight_soft_pct, overload_inflight_hard_pct;

	/* Run as this user after binding the listeners (empty: stay as started). */
	char user[USER_NAME_MAX_BYTES + 1];

	uint32_t snapshot;                  /* slot of this snapshot (< CONFIG_SNAPSHOTS_MAX) */

	uint32_t accept_domain_count;
	char accept_domains_text[4096];     /* as normalised, for config_print */
	struct smtp_policy *policy;          /* built from accept_domains + recipients_file */
	struct smtp_session_config session;  /* what sessions read, derived */

	/* TLS (core/tls.h): tls_cert/tls_key pairs in order, the first the
	 * default; tls is built from them by config_load (NULL: none, so no
	 * STARTTLS and no smtps/submission listener). */
	char tls_cert[TLS_CERT_PAIRS_MAX][PATH_MAX];
	char tls_key[TLS_CERT_PAIRS_MAX][PATH_MAX];
	uint32_t tls_cert_count;
	uint32_t tls_key_count;
	uint32_t tls_min_version;             /* enum tls_version_min */
	char tls_ciphers[TLS_CIPHERS_MAX_BYTES]; /* empty: the library's default */
	uint32_t tls_handshake_timeout_s;
	struct tls_ctx *tls;
	uint32_t tls_kept_count;              /* reload: pairs kept from running ... */
	char tls_kept_text[TLS_ERROR_TEXT_BYTES + PATH_MAX]; /* ... and why, the last */
	/* session, per listener mode (listener_mode and tls_offered set) */
	struct smtp_session_config session_mode[SMTP_LISTENER_MODE_COUNT];
	/* The same under overload stress: half the error limits. */
	struct smtp_session_config session_stress[SMTP_LISTENER_MODE_COUNT];
};

/*
 * Loads the configuration: embedded defaults, then FILE when path is not NULL.
 * On failure returns -1 with a message in err ("FILE:LINE: what is wrong").
 * The caller frees with config_free.
 */
RMX_MUST_CHECK int config_load(struct config *c, const char *path, char *err, size_t errlen);

/*
 * Reload: config_load, except that a certificate/key pair that fails to
 * load, or whose key does not match, keeps the pair that running serves for
 * it (logged as tls_cert_kept) instead of failing the reload.
 */
RMX_MUST_CHECK int config_load_keeping_tls(struct config *c, const char *path,
					   const struct config *running, char *err,
					   size_t errlen);

void config_free(struct config *c);

/* The largest record c's limits allow (max_message_size, the envelope of
 * max_recipients recipients, Received:, record header, padding): a segment
 * must hold it, which config_load checks. */
uint64_t config_record_max_bytes(const struct config *c);

/*
 * Reload: the keys of next that a running process cannot change (listeners,
 * workers, data_dir, store sizes, connection slots, upstream pool...) are
 * set back to running's values; out[cap] gets the names of those that
 * differed, comma-separated, and the count is returned. next's derived
 * session settings are rebuilt. Any thread; no I/O.
 */
size_t config_restart_keys(struct config *next, const struct config *running, char *out,
			   size_t cap);

/* The PROXY protocol setting of listener i: its proxy= word, else the
 * proxy_protocol key's (never INHERIT). */
enum proxy_protocol config_listener_proxy(const struct config *c, uint32_t i);

/* Prints the effective configuration as `key = value` lines, one per key
 * (listen and upstream addresses in order; accept_domains from the policy's
 * source text), in a form config_load reads back. */
void config_print(const struct config *c, FILE *out);

/* Parsers shared with tests: "30s", "5m", "2h", "5d" or plain seconds;
 * "10M", "512k", "1G" or plain bytes. Return false on syntax or overflow. */
bool config_parse_duration_s(const char *text, uint64_t *out);
bool config_parse_size_bytes(const char *text, uint64_t *out);

/* Parses "1.2.3.4:25" or "[::1]:25" into a listen address. */
bool config_parse_listen(const char *text, struct listen_addr *out);

#endif
