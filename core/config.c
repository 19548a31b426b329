/*
 * config.c - the configuration file and the embedded defaults.
 *
 * Keys live in one table: name, kind, where the value goes, and its bounds.
 * Parsing is line by line; the first error stops with "FILE:LINE: ...".
 * After the file, the derived parts are built: the recipient policy (from
 * accept_domains and recipients_file) and the session settings. Start-up
 * only: reading files and allocating are fine here.
 */
#include "config.h"

#include "../storage/record.h"
#include "../storage/segment.h"
#include "../storage/store.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "../proto/policy.h"
#include "../proto/smtp_client.h"
#include "auth_users.h"

enum config_kind {
	KIND_HOSTNAME,
	KIND_TLS_CERT,
	KIND_TLS_KEY,
	KIND_TLS_MIN_VERSION,
	KIND_TLS_CIPHERS,
	KIND_U32,
	KIND_SIZE,
	KIND_DURATION,
	KIND_PATH,
	KIND_LISTEN,
	KIND_DOMAINS,
	KIND_UPSTREAMS,
	KIND_METRICS_LISTEN,
	KIND_LOG_LEVEL,
	KIND_LOG_FORMAT,
	KIND_USER,
	KIND_FSYNC,
	KIND_BARE_NEWLINE,
	KIND_UPSTREAM_TLS,
	KIND_CIDRS,
	KIND_GREET_ACTION,
	KIND_STORE_IO,
	KIND_PROXY_PROTOCOL,
	KIND_YES_NO,        /* a bool field: yes or no */
};

struct config_key {
	const char *name;
	enum config_kind kind;
	size_t offset;  /* into struct config */
	uint64_t min;
	uint64_t max;
};

#define FIELD(f) offsetof(struct config, f)

static const struct config_key config_keys[] = {
	{ "hostname", KIND_HOSTNAME, FIELD(hostname), 0, 0 },
	{ "workers", KIND_U32, FIELD(workers), 1, WORKERS_MAX },
	{ "listen", KIND_LISTEN, FIELD(listen), 0, 0 },
	{ "tls_cert", KIND_TLS_CERT, 0, 0, 0 },
	{ "tls_key", KIND_TLS_KEY, 0, 0, 0 },
	{ "tls_min_version", KIND_TLS_MIN_VERSION, 0, 0, 0 },
	{ "tls_ciphers", KIND_TLS_CIPHERS, 0, 0, 0 },
	{ "tls_handshake_timeout", KIND_DURATION, FIELD(tls_handshake_timeout_s), 1, 3600 },
	{ "data_dir", KIND_PATH, FIELD(data_dir), 0, 0 },
	{ "fsync", KIND_FSYNC, FIELD(fsync), 0, 0 },
	{ "store_io", KIND_STORE_IO, FIELD(store_io), 0, 0 },
	{ "commits_in_flight", KIND_U32, FIELD(commits_in_flight), 1, STORE_COMMITS_IN_FLIGHT_MAX },
	{ "accept_domains", KIND_DOMAINS, 0, 0, 0 },
	{ "recipients_file", KIND_PATH, FIELD(recipients_file), 0, 0 },
	{ "max_message_size", KIND_SIZE, FIELD(max_message_size_bytes), 1024,
	  SMTP_MESSAGE_SIZE_MAX_BYTES },
	{ "max_recipients", KIND_U32, FIELD(max_recipients), 1, SMTP_RECIPIENTS_MAX },
	{ "max_connections", KIND_U32, FIELD(max_connections), 1, CONNECTIONS_MAX },
	{ "max_command_line", KIND_SIZE, FIELD(max_command_line_bytes),
	  SMTP_COMMAND_LINE_MIN_BYTES, SMTP_COMMAND_LINE_MAX_BYTES },
	{ "bare_newline", KIND_BARE_NEWLINE, FIELD(bare_newline_normalize), 0, 0 },
	{ "command_timeout", KIND_DURATION, FIELD(command_timeout_s), 1, 86400 },
	{ "data_timeout", KIND_DURATION, FIELD(data_timeout_s), 1, 86400 },
	{ "idle_timeout", KIND_DURATION, FIELD(idle_timeout_s), 1, 86400 },
	{ "min_data_rate", KIND_SIZE, FIELD(min_data_rate_bytes_per_s), 1, 1u << 30 },
	{ "shutdown_grace", KIND_DURATION, FIELD(shutdown_grace_s), 0, 3600 },
	{ "soft_error_limit", KIND_U32, FIELD(soft_error_limit), 1, SMTP_ERROR_LIMIT_MAX },
	{ "hard_error_limit", KIND_U32, FIELD(hard_error_limit), 1, SMTP_ERROR_LIMIT_MAX },
	{ "error_sleep_time", KIND_DURATION, FIELD(error_sleep_s), 0, 60 },
	{ "in_flow_delay", KIND_DURATION, FIELD(in_flow_delay_s), 0, 10 },
	{ "in_flow_backlog", KIND_U32, FIELD(in_flow_backlog), 1, UINT32_MAX },
	{ "junk_command_limit", KIND_U32, FIELD(junk_command_limit), 1, SMTP_ERROR_LIMIT_MAX },
	{ "store_max_bytes", KIND_SIZE, FIELD(store_max_bytes), SEGMENT_SIZE_MIN_BYTES,
	  UINT64_MAX / 2 },
	{ "max_inflight_data_bytes", KIND_SIZE, FIELD(max_inflight_data_bytes), 65536,
	  UINT64_MAX / 2 },
	{ "segment_size", KIND_SIZE, FIELD(segment_size_bytes), SEGMENT_SIZE_MIN_BYTES,
	  SEGMENT_SIZE_MAX_BYTES },
	{ "upstream", KIND_UPSTREAMS, 0, 0, 0 },
	{ "metrics_listen", KIND_METRICS_LISTEN, 0, 0, 0 },
	{ "log_level", KIND_LOG_LEVEL, 0, 0, 0 },
	{ "log_format", KIND_LOG_FORMAT, 0, 0, 0 },
	{ "user", KIND_USER, FIELD(user), 0, 0 },
	{ "upstream_connections", KIND_U32, FIELD(upstream_connections), 1,
	  UPSTREAM_CONNECTIONS_MAX },
	{ "upstream_helo", KIND_HOSTNAME, FIELD(upstream_helo), 0, 0 },
	{ "upstream_timeout", KIND_DURATION, FIELD(upstream_timeout_s), 1, 86400 },
	{ "upstream_tls", KIND_UPSTREAM_TLS, FIELD(upstream_tls), 0, 0 },
	{ "upstream_ca", KIND_PATH, FIELD(upstream_ca), 0, 0 },
	{ "upstream_chunking", KIND_YES_NO, FIELD(upstream_chunking), 0, 0 },
	{ "retry_min", KIND_DURATION, FIELD(retry_min_s), 1, 30 * 86400 },
	{ "retry_max", KIND_DURATION, FIELD(retry_max_s), 1, 30 * 86400 },
	{ "max_queue_lifetime", KIND_DURATION, FIELD(max_queue_lifetime_s), 1, 365 * 86400 },
	{ "auth_users", KIND_PATH, FIELD(auth_users), 0, 0 },
	{ "auth_fail_limit", KIND_U32, FIELD(auth_fail_limit), 1, AUTH_FAIL_LIMIT_MAX },
	{ "max_connections_per_ip", KIND_U32, FIELD(max_connections_per_ip), 0, CONNECTIONS_MAX },
	{ "max_connection_rate_per_ip", KIND_U32, FIELD(max_connection_rate_per_ip), 0,
	  CLIENT_RATE_PER_IP_MAX },
	{ "max_message_rate_per_ip", KIND_U32, FIELD(max_message_rate_per_ip), 0,
	  CLIENT_RATE_PER_IP_MAX },
	{ "ipv6_prefix", KIND_U32, FIELD(ipv6_prefix_bits), CLIENT_IPV6_PREFIX_MIN, 128 },
	{ "limits_exempt", KIND_CIDRS, FIELD(limits_exempt), 0, 0 },
	{ "proxy_protocol", KIND_PROXY_PROTOCOL, FIELD(proxy_protocol), 0, 0 },
	{ "proxy_trusted", KIND_CIDRS, FIELD(proxy_trusted), 0, 0 },
	{ "proxy_timeout", KIND_DURATION, FIELD(proxy_timeout_s), 1, 3600 },
	{ "greet_pause", KIND_DURATION, FIELD(greet_pause_s), 0, GREET_PAUSE_MAX_S },
	{ "greet_action", KIND_GREET_ACTION, FIELD(greet_action), 0, 0 },
	{ "screen_cache_ttl", KIND_DURATION, FIELD(screen_cache_ttl_s), 0, 30 * 86400 },
	{ "overload_store_soft", KIND_U32, FIELD(overload_store_soft_pct), 0, 100 },
	{ "overload_store_hard", KIND_U32, FIELD(overload_store_hard_pct), 0, 100 },
	{ "overload_backlog_soft", KIND_U32, FIELD(overload_backlog_soft), 0, UINT32_MAX },
	{ "overload_backlog_hard", KIND_U32, FIELD(overload_backlog_hard), 0, UINT32_MAX },
	{ "overload_backlog_age_soft", KIND_DURATION, FIELD(overload_backlog_age_soft_s), 0,
	  365 * 86400 },
	{ "overload_backlog_age_hard", KIND_DURATION, FIELD(overload_backlog_age_hard_s), 0,
	  365 * 86400 },
	{ "overload_inflight_soft", KIND_U32, FIELD(overload_inflight_soft_pct), 0, 100 },
	{ "overload_inflight_hard", KIND_U32, FIELD(overload_inflight_hard_pct), 0, 100 },
};

/* Domains from accept_domains, kept until the policy is built. */
struct domain_list {
	char (*names)[SMTP_DOMAIN_MAX_BYTES + 1];
	uint32_t count;
	uint32_t cap;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool parse_u64_with_units(const char *text, uint64_t *out, const char *units,
				 const uint64_t *factors)
{
	const char *p = text;
	uint64_t v = 0;
	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p)) {
		uint64_t d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
		p++;
	}
	uint64_t factor = 1;
	if (*p) {
		const char *u = strchr(units, *p);
		if (!u || p[1] != '\0')
			return false;
		factor = factors[u - units];
	}
	if (factor && v > UINT64_MAX / factor)
		return false;
	*out = v * factor;
	return true;
}

bool config_parse_duration_s(const char *text, uint64_t *out)
{
	static const uint64_t factors[] = { 1, 60, 3600, 86400 };
	return parse_u64_with_units(text, out, "smhd", factors);
}

bool config_parse_size_bytes(const char *text, uint64_t *out)
{
	static const uint64_t factors[] = { 1024, 1024, 1024ull << 10, 1024ull << 20 };
	return parse_u64_with_units(text, out, "kKMG", factors);
}

static bool parse_port(const char *text, uint16_t *port)
{
	uint64_t v;
	if (!parse_u64_with_units(text, &v, "", NULL) || v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

bool config_parse_listen(const char *text, struct listen_addr *out)
{
	char host[64];
	const char *port_text;
	memset(out, 0, sizeof(*out));
	if (strlen(text) >= sizeof(out->text))
		return false;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host))
			return false;
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		port_text = close + 2;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
		uint16_t port;
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1 || !parse_port(port_text, &port))
			return false;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		out->addr_len = sizeof(*a6);
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon || (size_t)(colon - text) >= sizeof(host))
			return false;
		memcpy(host, text, (size_t)(colon - text));
		host[colon - text] = '\0';
		port_text = colon + 1;
		struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
		uint16_t port;
		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1 || !parse_port(port_text, &port))
			return false;
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		out->addr_len = sizeof(*a4);
	}
	memcpy(out->text, text, strlen(text) + 1);
	return true;
}

static bool valid_hostname(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > SMTP_DOMAIN_MAX_BYTES)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (!(isalnum(c) || c == '-' || c == '.'))
			return false;
		if (c == '.' && i > 0 && h[i - 1] == '.')
			return false; /* an empty label: no domain */
	}
	return h[0] != '.' && h[0] != '-';
}

static int domains_add(struct domain_list *d, const char *name, size_t len)
{
	if (len == 0 || len > SMTP_DOMAIN_MAX_BYTES)
		return -EINVAL;
	if (d->count == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 8;
		void *p = realloc(d->names, cap * sizeof(*d->names));
		if (!p)
			return -ENOMEM;
		d->names = p;
		d->cap = cap;
	}
	memcpy(d->names[d->count], name, len);
	d->names[d->count][len] = '\0';
	d->count++;
	return 0;
}

/* Applies one `key = value`; returns false with err filled (without location). */
/* The words of proxy_protocol and of a listener's proxy=WORD. */
static const char *const proxy_protocol_words[] = {
	[PROXY_PROTOCOL_OFF] = "off",
	[PROXY_PROTOCOL_REQUIRED] = "required",
	[PROXY_PROTOCOL_OPTIONAL] = "optional",
};

/* PROXY_PROTOCOL_INHERIT when word is none of them. */
static enum proxy_protocol proxy_protocol_of_word(const char *word)
{
	for (uint32_t i = PROXY_PROTOCOL_OFF; i < RMX_ARRAY_LEN(proxy_protocol_words); i++)
		if (strcmp(word, proxy_protocol_words[i]) == 0)
			return (enum proxy_protocol)i;
	return PROXY_PROTOCOL_INHERIT;
}

enum proxy_protocol config_listener_proxy(const struct config *c, uint32_t i)
{
	RMX_ASSERT(i < c->listen_count);
	uint8_t own = c->listen[i].proxy;
	return own != PROXY_PROTOCOL_INHERIT ? (enum proxy_protocol)own
					     : (enum proxy_protocol)c->proxy_protocol;
}

/* listen = ADDRESS:PORT [smtp|submission|smtps] [proxy=off|required|optional]:
 * the mode word is optional (smtp) and comes first; option words follow it;
 * anything else there is refused by name. */
static bool apply_listen(struct config *c, char *value, char *err, size_t errlen)
{
	static const char *const modes[SMTP_LISTENER_MODE_COUNT] = {
		[SMTP_LISTENER_SMTP] = "smtp",
		[SMTP_LISTENER_SUBMISSION] = "submission",
		[SMTP_LISTENER_SMTPS] = "smtps",
	};
	if (c->listen_count == LISTENERS_MAX) {
		set_err(err, errlen, "listen: at most %d addresses", LISTENERS_MAX);
		return false;
	}
	char *save = NULL;
	char *addr = strtok_r(value, " \t", &save);
	struct listen_addr *l = &c->listen[c->listen_count];
	if (!addr || !config_parse_listen(addr, l)) {
		set_err(err, errlen,
			"listen: '%s' is not ADDRESS:PORT [smtp|submission|smtps] (127.0.0.1:25, "
			"[::1]:465 smtps)", addr ? addr : value);
		return false;
	}
	l->mode = SMTP_LISTENER_SMTP;
	l->proxy = PROXY_PROTOCOL_INHERIT;
	bool mode_seen = false;
	for (char *w = strtok_r(NULL, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (strncmp(w, "proxy=", 6) == 0) {
			enum proxy_protocol pp = proxy_protocol_of_word(w + 6);
			if (pp == PROXY_PROTOCOL_INHERIT || l->proxy != PROXY_PROTOCOL_INHERIT) {
				set_err(err, errlen, "listen %s: '%s' is not %s", addr, w,
					pp == PROXY_PROTOCOL_INHERIT
						? "proxy=off, proxy=required or proxy=optional"
						: "allowed twice");
				return false;
			}
			l->proxy = (uint8_t)pp;
			mode_seen = true; /* a mode word after an option is refused */
			continue;
		}
		uint8_t m = 0;
		while (m < SMTP_LISTENER_MODE_COUNT && strcmp(w, modes[m]) != 0)
			m++;
		if (m == SMTP_LISTENER_MODE_COUNT || mode_seen) {
			set_err(err, errlen, "listen %s: '%s' is not %s", addr, w,
				mode_seen ? "an option" : "a mode (smtp, submission or smtps)");
			return false;
		}
		l->mode = m;
		mode_seen = true;
	}
	c->listen_count++;
	return true;
}

/* tls_cert and tls_key (repeatable, paired in order), tls_min_version,
 * tls_ciphers. */
static bool apply_tls_key(struct config *c, enum config_kind kind, const char *key,
			  const char *value, char *err, size_t errlen)
{
	if (kind == KIND_TLS_CERT || kind == KIND_TLS_KEY) {
		uint32_t *count = kind == KIND_TLS_CERT ? &c->tls_cert_count : &c->tls_key_count;
		char(*paths)[PATH_MAX] = kind == KIND_TLS_CERT ? c->tls_cert : c->tls_key;
		if (*count == TLS_CERT_PAIRS_MAX) {
			set_err(err, errlen, "%s: at most %d certificates", key, TLS_CERT_PAIRS_MAX);
			return false;
		}
		if (strlen(value) >= PATH_MAX) {
			set_err(err, errlen, "%s: path too long", key);
			return false;
		}
		snprintf(paths[(*count)++], PATH_MAX, "%s", value);
		return true;
	}
	if (kind == KIND_TLS_MIN_VERSION) {
		if (strcmp(value, "1.2") == 0)
			c->tls_min_version = TLS_VERSION_MIN_1_2;
		else if (strcmp(value, "1.3") == 0)
			c->tls_min_version = TLS_VERSION_MIN_1_3;
		else {
			set_err(err, errlen,
				"tls_min_version: '%s' is not 1.2 or 1.3 (TLS 1.0 and 1.1 are never "
				"offered)", value);
			return false;
		}
		return true;
	}
	if (strlen(value) >= sizeof(c->tls_ciphers)) {
		set_err(err, errlen, "tls_ciphers: longer than %zu bytes", sizeof(c->tls_ciphers) - 1);
		return false;
	}
	snprintf(c->tls_ciphers, sizeof(c->tls_ciphers), "%s", value);
	return true;
}

static bool apply_key(struct config *c, struct domain_list *domains, const char *key,
		      char *value, char *err, size_t errlen)
{
	const struct config_key *k = NULL;
	for (size_t i = 0; i < RMX_ARRAY_LEN(config_keys); i++) {
		if (strcmp(config_keys[i].name, key) == 0) {
			k = &config_keys[i];
			break;
		}
	}
	if (!k) {
		set_err(err, errlen, "unknown key '%s'", key);
		return false;
	}
	void *field = (char *)c + k->offset;
	uint64_t v;
	switch (k->kind) {
	case KIND_HOSTNAME:
		if (!valid_hostname(value)) {
			set_err(err, errlen, "%s: '%s' is not a valid domain name", key, value);
			return false;
		}
		snprintf((char *)field, SMTP_DOMAIN_MAX_BYTES + 1, "%s", value);
		return true;
	case KIND_UPSTREAMS:
		c->upstream_count = 0; /* the last upstream line wins */
		for (char *save = NULL, *tok = strtok_r(value, " \t,", &save); tok;
		     tok = strtok_r(NULL, " \t,", &save)) {
			if (c->upstream_count == UPSTREAMS_MAX) {
				set_err(err, errlen, "upstream: at most %d relays", UPSTREAMS_MAX);
				return false;
			}
			char *name = c->upstream_name[c->upstream_count];
			char *eq = strchr(tok, '=');
			name[0] = '\0';
			if (eq) {
				*eq = '\0';
				if (!valid_hostname(tok)) {
					set_err(err, errlen, "upstream: '%s' is not a valid host name", tok);
					return false;
				}
				snprintf(name, SMTP_DOMAIN_MAX_BYTES + 1, "%s", tok);
				tok = eq + 1;
			}
			if (!config_parse_listen(tok, &c->upstream[c->upstream_count])) {
				set_err(err, errlen,
					"upstream: '%s' is not [NAME=]ADDRESS:PORT (127.0.0.1:25, "
					"[::1]:25, relay.example=192.0.2.1:25)",
					tok);
				return false;
			}
			c->upstream_count++;
		}
		return true;
	case KIND_U32:
	case KIND_SIZE:
	case KIND_DURATION: {
		bool ok = k->kind == KIND_DURATION ? config_parse_duration_s(value, &v)
			: k->kind == KIND_SIZE	    ? config_parse_size_bytes(value, &v)
						    : parse_u64_with_units(value, &v, "", NULL);
		if (!ok) {
			set_err(err, errlen, "%s: '%s' is not a valid %s", key, value,
				k->kind == KIND_DURATION ? "duration (30s, 5m, 2h, 5d)"
				: k->kind == KIND_SIZE	 ? "size (bytes, or with k, M, G)"
							 : "number");
			return false;
		}
		if (v < k->min || v > k->max) {
			set_err(err, errlen, "%s: %s is out of range [%llu, %llu]", key, value,
				(unsigned long long)k->min, (unsigned long long)k->max);
			return false;
		}
		if (k->offset == FIELD(max_message_size_bytes) ||
		    k->offset == FIELD(store_max_bytes) ||
		    k->offset == FIELD(max_inflight_data_bytes) ||
		    k->offset == FIELD(segment_size_bytes))
			*(uint64_t *)field = v;
		else
			*(uint32_t *)field = (uint32_t)v;
		return true;
	}
	case KIND_PATH:
		if (strlen(value) >= PATH_MAX) {
			set_err(err, errlen, "%s: path too long", key);
			return false;
		}
		snprintf((char *)field, PATH_MAX, "%s", value);
		return true;
	case KIND_LISTEN:
		if (c->listen_count == LISTENERS_MAX) {
			set_err(err, errlen, "listen: at most %d addresses", LISTENERS_MAX);
			return false;
		}
		return apply_listen(c, value, err, errlen);
	case KIND_TLS_CERT:
	case KIND_TLS_KEY:
	case KIND_TLS_MIN_VERSION:
	case KIND_TLS_CIPHERS:
		return apply_tls_key(c, k->kind, key, value, err, errlen);
	case KIND_DOMAINS: {
		domains->count = 0; /* the last accept_domains line wins */
		for (char *save = NULL, *tok = strtok_r(value, " \t,", &save); tok;
		     tok = strtok_r(NULL, " \t,", &save)) {
			size_t n = strlen(tok);
			if (n > 1 && tok[n - 1] == '.')
				n--;
			if (!valid_hostname(tok) || domains_add(domains, tok, n) != 0) {
				set_err(err, errlen, "accept_domains: '%s' is not a valid domain", tok);
				return false;
			}
		}
		if (domains->count == 0) {
			set_err(err, errlen, "accept_domains: at least one domain is needed");
			return false;
		}
		return true;
	}
	case KIND_METRICS_LISTEN:
		if (strcmp(value, "off") == 0) {
			c->metrics_enabled = false;
			return true;
		}
		if (!config_parse_listen(value, &c->metrics_listen)) {
			set_err(err, errlen,
				"metrics_listen: '%s' is not ADDRESS:PORT (127.0.0.1:9225) or off", value);
			return false;
		}
		c->metrics_enabled = true;
		return true;
	case KIND_LOG_LEVEL: {
		static const char *const levels[] = { "error", "warn", "info", "debug" };
		for (int i = 0; i < (int)RMX_ARRAY_LEN(levels); i++) {
			if (strcmp(value, levels[i]) == 0) {
				c->log_level = i;
				return true;
			}
		}
		set_err(err, errlen, "log_level: '%s' is not error, warn, info or debug", value);
		return false;
	}
	case KIND_USER: {
		/* Checked now so --check-config says so; looked up again at the drop. */
		if (strlen(value) > USER_NAME_MAX_BYTES || getpwnam(value) == NULL) {
			set_err(err, errlen, "user: '%s' is not a user of this system", value);
			return false;
		}
		snprintf((char *)field, USER_NAME_MAX_BYTES + 1, "%s", value);
		return true;
	}
	case KIND_LOG_FORMAT:
		if (strcmp(value, "logfmt") && strcmp(value, "json")) {
			set_err(err, errlen, "log_format: '%s' is not 'logfmt' or 'json'", value);
			return false;
		}
		c->log_json = strcmp(value, "json") == 0;
		return true;
	case KIND_YES_NO:
		if (strcmp(value, "yes") && strcmp(value, "no")) {
			set_err(err, errlen, "%s: '%s' is not 'yes' or 'no'", key, value);
			return false;
		}
		*(bool *)field = strcmp(value, "yes") == 0;
		return true;
	case KIND_FSYNC:
		if (strcmp(value, "always") && strcmp(value, "never")) {
			set_err(err, errlen, "fsync: '%s' is not 'always' or 'never'", value);
			return false;
		}
		c->fsync = strcmp(value, "always") == 0;
		return true;
	case KIND_UPSTREAM_TLS: {
		static const char *const modes[] = {
			[SMTP_CLIENT_TLS_NONE] = "none",
			[SMTP_CLIENT_TLS_OPPORTUNISTIC] = "opportunistic",
			[SMTP_CLIENT_TLS_REQUIRED] = "required",
		};
		for (uint32_t i = 0; i < RMX_ARRAY_LEN(modes); i++) {
			if (strcmp(value, modes[i]) == 0) {
				c->upstream_tls = i;
				return true;
			}
		}
		set_err(err, errlen, "upstream_tls: '%s' is not none, opportunistic or required",
			value);
		return false;
	}
	case KIND_CIDRS: {
		/* "none": an empty list (an empty value is refused for every key). */
		char why[256];
		if (!cidr_list_parse((struct cidr_list *)field,
				     strcmp(value, "none") == 0 ? "" : value, why, sizeof(why))) {
			set_err(err, errlen, "%s: %s (ADDRESS[/BITS] blocks, or none)", key, why);
			return false;
		}
		return true;
	}
	case KIND_STORE_IO: {
		/* How group commits reach the disk (storage/store.h). */
		static const char *const modes[] = {
			[STORE_IO_BUFFERED] = "buffered",
			[STORE_IO_DIRECT] = "direct",
			[STORE_IO_AUTO] = "auto",
		};
		for (uint32_t i = 0; i < RMX_ARRAY_LEN(modes); i++) {
			if (strcmp(value, modes[i]) == 0) {
				*(uint32_t *)field = i;
				return true;
			}
		}
		set_err(err, errlen, "%s: '%s' is not auto, direct or buffered", key, value);
		return false;
	}
	case KIND_PROXY_PROTOCOL: {
		enum proxy_protocol pp = proxy_protocol_of_word(value);
		if (pp == PROXY_PROTOCOL_INHERIT) {
			set_err(err, errlen, "%s: '%s' is not off, required or optional", key, value);
			return false;
		}
		*(uint32_t *)field = (uint32_t)pp;
		return true;
	}
	case KIND_GREET_ACTION: {
		static const char *const actions[] = {
			[GREET_ACTION_IGNORE] = "ignore",
			[GREET_ACTION_ENFORCE] = "enforce",
			[GREET_ACTION_DROP] = "drop",
		};
		for (uint32_t i = 0; i < RMX_ARRAY_LEN(actions); i++) {
			if (strcmp(value, actions[i]) == 0) {
				*(uint32_t *)field = i;
				return true;
			}
		}
		set_err(err, errlen, "%s: '%s' is not ignore, enforce or drop", key, value);
		return false;
	}
	case KIND_BARE_NEWLINE:
		if (strcmp(value, "reject") && strcmp(value, "normalize")) {
			set_err(err, errlen, "bare_newline: '%s' is not 'reject' or 'normalize'",
				value);
			return false;
		}
		c->bare_newline_normalize = strcmp(value, "normalize") == 0;
		return true;
	}
	RMX_ASSERT(!"unreachable");
	return false;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

/* The errors of one file, one "FILE:LINE: what" line each, in err[cap]. */
struct err_list {
	char *buf;
	size_t cap;
	size_t len;
	unsigned count;
	bool cut; /* full: the last line says more were left out */
};

static void add_err(struct err_list *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_err(struct err_list *e, const char *fmt, ...)
{
	static const char more[] = "(more errors not shown)";
	e->count++;
	if (e->cut || e->cap == 0)
		return;
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	const char *text = line;
	if (e->len + 1 + strlen(line) + 1 + sizeof(more) > e->cap) {
		text = more; /* keep room for it: it is the last line */
		e->cut = true;
	}
	int n = snprintf(e->buf + e->len, e->cap - e->len, "%s%s", e->len ? "\n" : "", text);
	if (n > 0)
		e->len = RMX_MIN(e->len + (size_t)n, e->cap - 1);
}

/* Reads the file; every bad line is reported (one err line each), and any
 * error fails the load. */
static int load_file(struct config *c, struct domain_list *domains, const char *path,
		     char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char line[4096];
	char what[512];
	unsigned lineno = 0;
	struct err_list errors = { .buf = err, .cap = errlen };
	if (errlen)
		err[0] = '\0';
	bool listen_seen = false, skipping = false;
	while (fgets(line, sizeof(line), f)) {
		bool whole = strchr(line, '\n') || feof(f);
		if (skipping) { /* the rest of a line too long */
			skipping = !whole;
			continue;
		}
		lineno++;
		if (!whole) {
			add_err(&errors, "%s:%u: line too long", path, lineno);
			skipping = true;
			continue;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *s = trim(line);
		if (*s == '\0')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			add_err(&errors, "%s:%u: expected 'key = value'", path, lineno);
			continue;
		}
		*eq = '\0';
		char *key = trim(s);
		char *value = trim(eq + 1);
		if (*value == '\0') {
			add_err(&errors, "%s:%u: %s: empty value", path, lineno, key);
			continue;
		}
		/* The first `listen` line replaces the embedded default. */
		if (strcmp(key, "listen") == 0 && !listen_seen) {
			listen_seen = true;
			c->listen_count = 0;
		}
		if (!apply_key(c, domains, key, value, what, sizeof(what)))
			add_err(&errors, "%s:%u: %s", path, lineno, what);
	}
	bool read_error = ferror(f);
	fclose(f);
	if (read_error)
		add_err(&errors, "%s: read error", path);
	return errors.count ? -1 : 0;
}

static int load_recipients(struct smtp_policy *p, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		set_err(err, errlen, "recipients_file %s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char line[1024];
	unsigned lineno = 0;
	unsigned entries = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *s = trim(line);
		if (*s == '\0')
			continue;
		int rc = policy_add_recipient(p, span_make(s, strlen(s)));
		if (rc != 0) {
			set_err(err, errlen, "%s:%u: '%s' is not an address or @domain", path,
				lineno, s);
			fclose(f);
			return -1;
		}
		entries++;
	}
	fclose(f);
	if (entries == 0) {
		/* An empty table would refuse every recipient; say so rather than guess. */
		set_err(err, errlen, "%s: no recipients listed", path);
		return -1;
	}
	return 0;
}

static void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->hostname, sizeof(c->hostname), "localhost");
	char host[SMTP_DOMAIN_MAX_BYTES + 1];
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		if (valid_hostname(host))
			snprintf(c->hostname, sizeof(c->hostname), "%s", host);
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	c->workers = (uint32_t)RMX_MIN(RMX_MAX(cpus, 1L), (long)WORKERS_MAX);
	bool ok = config_parse_listen("127.0.0.1:2525", &c->listen[0]);
	RMX_ASSERT(ok);
	c->listen_count = 1;
	c->tls_handshake_timeout_s = TLS_HANDSHAKE_TIMEOUT_DEFAULT_S;
	snprintf(c->data_dir, sizeof(c->data_dir), "ringmx-data");
	c->fsync = true;
	/* Auto: direct commits where the file system takes O_DIRECT and the
	 * device needs no cache flush after a synchronous write (FUA, a
	 * write-through cache, or no block device); buffered elsewhere, where
	 * each direct commit would end in a flush from a kernel worker thread
	 * (bench/results/2026-12-07-commit, 2026-12-07-inflight). */
	c->store_io = STORE_IO_AUTO;
	c->commits_in_flight = COMMITS_IN_FLIGHT_DEFAULT;
	c->max_message_size_bytes = SMTP_MESSAGE_SIZE_DEFAULT_BYTES;
	c->max_recipients = SMTP_RECIPIENTS_DEFAULT;
	c->max_connections = CONNECTIONS_DEFAULT;
	c->max_command_line_bytes = SMTP_COMMAND_LINE_DEFAULT_BYTES;
	c->bare_newline_normalize = false;
	c->command_timeout_s = TIMEOUT_COMMAND_DEFAULT_S;
	c->data_timeout_s = TIMEOUT_DATA_DEFAULT_S;
	c->idle_timeout_s = TIMEOUT_IDLE_DEFAULT_S;
	c->min_data_rate_bytes_per_s = MIN_DATA_RATE_DEFAULT_BYTES_PER_S;
	c->shutdown_grace_s = SHUTDOWN_GRACE_DEFAULT_S;
	c->soft_error_limit = SMTP_SOFT_ERROR_LIMIT_DEFAULT;
	c->hard_error_limit = SMTP_HARD_ERROR_LIMIT_DEFAULT;
	c->error_sleep_s = SMTP_ERROR_SLEEP_MS_DEFAULT / 1000;
	c->in_flow_delay_s = IN_FLOW_DELAY_DEFAULT_S;
	c->in_flow_backlog = IN_FLOW_BACKLOG_DEFAULT;
	c->junk_command_limit = SMTP_JUNK_COMMAND_LIMIT_DEFAULT;
	c->store_max_bytes = STORE_MAX_DEFAULT_BYTES;
	c->max_inflight_data_bytes = INFLIGHT_DATA_DEFAULT_BYTES;
	c->segment_size_bytes = SEGMENT_SIZE_DEFAULT_BYTES;
	ok = config_parse_listen("127.0.0.1:9225", &c->metrics_listen);
	RMX_ASSERT(ok);
	c->metrics_enabled = true;
	c->log_level = 2; /* info */
	c->upstream_connections = UPSTREAM_CONNECTIONS_DEFAULT;
	c->upstream_timeout_s = UPSTREAM_TIMEOUT_DEFAULT_S;
	c->upstream_tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
	c->upstream_chunking = true;
	c->retry_min_s = RETRY_MIN_DEFAULT_S;
	c->retry_max_s = RETRY_MAX_DEFAULT_S;
	c->max_queue_lifetime_s = QUEUE_LIFETIME_DEFAULT_S;
	c->auth_fail_limit = AUTH_FAIL_LIMIT_DEFAULT;
	/* Per-client limits as Postfix's defaults: 50 connections, rates off,
	 * loopback exempt (smtpd_client_event_limit_exceptions = $mynetworks). */
	c->max_connections_per_ip = CLIENT_CONNECTIONS_PER_IP_DEFAULT;
	c->ipv6_prefix_bits = CLIENT_IPV6_PREFIX_DEFAULT;
	char why[128];
	ok = cidr_list_parse(&c->limits_exempt, "127.0.0.0/8 ::1", why, sizeof(why));
	RMX_ASSERT(ok);
	c->proxy_protocol = PROXY_PROTOCOL_OFF; /* proxy_trusted: none */
	c->proxy_timeout_s = PROXY_TIMEOUT_DEFAULT_S;
	c->greet_action = GREET_ACTION_IGNORE; /* postscreen_greet_action */
	c->screen_cache_ttl_s = SCREEN_CACHE_TTL_DEFAULT_S;
	c->overload_store_soft_pct = OVERLOAD_STORE_SOFT_DEFAULT_PCT;
	c->overload_store_hard_pct = OVERLOAD_STORE_HARD_DEFAULT_PCT;
	c->overload_inflight_soft_pct = OVERLOAD_INFLIGHT_SOFT_DEFAULT_PCT;
	c->overload_inflight_hard_pct = OVERLOAD_INFLIGHT_HARD_DEFAULT_PCT;
}

_Static_assert((int)GREET_ACTION_IGNORE == (int)SMTP_GREET_IGNORE &&
		       (int)GREET_ACTION_ENFORCE == (int)SMTP_GREET_ENFORCE &&
		       (int)GREET_ACTION_DROP == (int)SMTP_GREET_DROP,
	       "greet_action's values are the session's");

/* One session configuration per listener mode: STARTTLS may be offered
 * once certificates are loaded, AUTH once a user table is (the session
 * offers it on submission and smtps listeners only). */
static void derive_listener_sessions(struct config *c)
{
	for (uint32_t m = 0; m < SMTP_LISTENER_MODE_COUNT; m++) {
		c->session_mode[m] = c->session;
		c->session_mode[m].listener_mode = (uint8_t)m;
		c->session_mode[m].tls_offered = c->tls != NULL;
		c->session_mode[m].auth_offered = c->auth_users[0] != '\0';
		struct smtp_session_config *st = &c->session_stress[m];
		*st = c->session_mode[m];
		st->soft_error_limit = (uint16_t)RMX_MAX(st->soft_error_limit / 2, 1);
		st->hard_error_limit = (uint16_t)RMX_MAX(st->hard_error_limit / 2, 1);
		st->junk_command_limit = (uint16_t)RMX_MAX(st->junk_command_limit / 2, 1);
	}
}

/* What sessions read, from the keys (spans point into c itself). */
static void derive_session(struct config *c)
{
	c->session.hostname = span_make(c->hostname, strlen(c->hostname));
	c->session.max_message_size_bytes = c->max_message_size_bytes;
	c->session.max_recipients = c->max_recipients;
	c->session.max_command_line_bytes = c->max_command_line_bytes;
	c->session.bare_newline_normalize = c->bare_newline_normalize;
	c->session.policy = c->policy;
	c->session.soft_error_limit = (uint16_t)c->soft_error_limit;
	c->session.hard_error_limit = (uint16_t)c->hard_error_limit;
	c->session.junk_command_limit = (uint16_t)c->junk_command_limit;
	c->session.greet_action = (uint8_t)c->greet_action;
	derive_listener_sessions(c);
}

uint64_t config_record_max_bytes(const struct config *c)
{
	uint64_t bytes = RECORD_HEADER_BYTES + RECORD_ENVELOPE_MAX_BYTES(c->max_recipients) +
			 SMTP_RECEIVED_HEADER_MAX_BYTES + c->max_message_size_bytes;
	return RMX_ALIGN_UP(bytes, (uint64_t)RECORD_ALIGN_BYTES);
}

/* A segment of segment_bytes holds a record of c's largest message with
 * c's most recipients (else that message would get 451 for ever). */
static bool segment_holds_largest_record(const struct config *c, uint64_t segment_bytes)
{
	uint64_t record = config_record_max_bytes(c);
	return record <= STORE_RECORD_MAX_BYTES && segment_bytes > SEGMENT_HEADER_BYTES &&
	       record <= segment_bytes - SEGMENT_HEADER_BYTES;
}

/* upstream_ca verifies names: every upstream needs one, and the file must
 * be readable now (core/forward loads it when a worker starts). */
/* A reload kept a pair whose new files do not load (tls_server_ctx_reload):
 * noted for the caller's log line. */
static void report_tls_kept(void *arg, const char *message)
{
	struct config *c = arg;
	c->tls_kept_count++;
	snprintf(c->tls_kept_text, sizeof(c->tls_kept_text), "%s", message);
}

/*
 * The certificates: tls_cert and tls_key in pairs; a listener that speaks
 * TLS needs them; the server context is built here so that a bad file stops
 * start-up (or, on reload, keeps running's pair for it: report_tls_kept).
 */
static int load_tls(struct config *c, const struct config *running, char *err, size_t errlen)
{
	if (c->tls_cert_count != c->tls_key_count) {
		set_err(err, errlen,
			"tls_cert and tls_key come in pairs, in the same order: %u tls_cert, %u "
			"tls_key", c->tls_cert_count, c->tls_key_count);
		return -1;
	}
	if (c->tls_cert_count == 0) {
		for (uint32_t i = 0; i < c->listen_count; i++) {
			if (c->listen[i].mode == SMTP_LISTENER_SMTP)
				continue;
			set_err(err, errlen, "listen %s %s: needs a certificate (tls_cert and tls_key)",
				c->listen[i].text,
				c->listen[i].mode == SMTP_LISTENER_SMTPS ? "smtps" : "submission");
			return -1;
		}
		return 0;
	}
	struct tls_server_settings set = {
		.pair_count = c->tls_cert_count,
		.min_version = (enum tls_version_min)c->tls_min_version,
		.ciphers = c->tls_ciphers,
	};
	for (uint32_t i = 0; i < c->tls_cert_count; i++) {
		set.pairs[i].cert_file = c->tls_cert[i];
		set.pairs[i].key_file = c->tls_key[i];
	}
	char why[TLS_ERROR_TEXT_BYTES + PATH_MAX];
	c->tls = tls_server_ctx_reload(running ? running->tls : NULL, &set, report_tls_kept, c,
				       why, sizeof(why));
	if (!c->tls) {
		set_err(err, errlen, "tls_cert %s", why);
		return -1;
	}
	return 0;
}

static int check_upstream_ca(const struct config *c, char *err, size_t errlen)
{
	if (!c->upstream_ca[0])
		return 0;
	for (uint32_t i = 0; i < c->upstream_count; i++) {
		if (!c->upstream_name[i][0]) {
			set_err(err, errlen,
				"upstream_ca verifies the upstream's name: give upstream %s one "
				"(NAME=%s)", c->upstream[i].text, c->upstream[i].text);
			return -1;
		}
	}
	FILE *f = fopen(c->upstream_ca, "r");
	if (!f) {
		set_err(err, errlen, "upstream_ca: cannot read %s: %s", c->upstream_ca,
			strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

/* Each overload watermark pair: soft below hard when both are on. */
static int check_overload_pairs(const struct config *c, char *err, size_t errlen)
{
	const struct {
		const char *name;
		uint32_t soft, hard;
	} pairs[] = {
		{ "overload_store", c->overload_store_soft_pct, c->overload_store_hard_pct },
		{ "overload_backlog", c->overload_backlog_soft, c->overload_backlog_hard },
		{ "overload_backlog_age", c->overload_backlog_age_soft_s,
		  c->overload_backlog_age_hard_s },
		{ "overload_inflight", c->overload_inflight_soft_pct, c->overload_inflight_hard_pct },
	};
	for (size_t i = 0; i < RMX_ARRAY_LEN(pairs); i++) {
		if (pairs[i].soft && pairs[i].hard && pairs[i].soft > pairs[i].hard) {
			set_err(err, errlen, "%s_soft (%u) must not exceed %s_hard (%u)",
				pairs[i].name, pairs[i].soft, pairs[i].name, pairs[i].hard);
			return -1;
		}
	}
	return 0;
}

static int load_config(struct config *c, const char *path, const struct config *running,
		       char *err, size_t errlen)
{
	struct domain_list domains = { 0 };
	config_defaults(c);
	int rc = -1;
	if (path && load_file(c, &domains, path, err, errlen) != 0)
		goto out;
	if (load_tls(c, running, err, errlen) != 0)
		goto out;
	if (domains.count == 0 && domains_add(&domains, "localhost", 9) != 0) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	if (c->segment_size_bytes % 4096 != 0) {
		set_err(err, errlen, "segment_size must be a multiple of 4096");
		goto out;
	}
	if (!segment_holds_largest_record(c, c->segment_size_bytes)) {
		set_err(err, errlen,
			"segment_size (%llu) cannot hold the largest record (%llu bytes: "
			"max_message_size %llu, the envelope of max_recipients %u, headers); raise "
			"segment_size or lower max_message_size or max_recipients",
			(unsigned long long)c->segment_size_bytes,
			(unsigned long long)config_record_max_bytes(c),
			(unsigned long long)c->max_message_size_bytes, c->max_recipients);
		goto out;
	}
	if (c->max_message_size_bytes + SMTP_RECEIVED_HEADER_MAX_BYTES > c->max_inflight_data_bytes) {
		/* Bodies are bounded per byte (with room for our Received:): a
		 * smaller budget could never take a message of the size EHLO
		 * advertises, and would answer it 451 for ever. */
		set_err(err, errlen,
			"max_inflight_data_bytes (%llu) must exceed max_message_size (%llu) by %u",
			(unsigned long long)c->max_inflight_data_bytes,
			(unsigned long long)c->max_message_size_bytes,
			(unsigned)SMTP_RECEIVED_HEADER_MAX_BYTES);
		goto out;
	}
	if (c->store_max_bytes < (uint64_t)c->workers * 2 * c->segment_size_bytes) {
		set_err(err, errlen,
			"store_max_bytes must hold at least two segments per worker (%llu)",
			(unsigned long long)c->workers * 2 * c->segment_size_bytes);
		goto out;
	}
	for (uint32_t i = 0; i < c->listen_count; i++) {
		if (config_listener_proxy(c, i) != PROXY_PROTOCOL_OFF && c->proxy_trusted.count == 0) {
			/* required would refuse everyone, optional would never read one */
			set_err(err, errlen, "listen %s: the PROXY protocol is on but proxy_trusted "
				"names no balancer", c->listen[i].text);
			goto out;
		}
	}
	if (c->soft_error_limit > c->hard_error_limit) {
		set_err(err, errlen, "soft_error_limit (%u) must not exceed hard_error_limit (%u)",
			c->soft_error_limit, c->hard_error_limit);
		goto out;
	}
	if (c->retry_min_s > c->retry_max_s) {
		set_err(err, errlen, "retry_min (%us) must not exceed retry_max (%us)",
			c->retry_min_s, c->retry_max_s);
		goto out;
	}
	if (check_overload_pairs(c, err, errlen) != 0)
		goto out;
	if (c->upstream_helo[0] == '\0')
		snprintf(c->upstream_helo, sizeof(c->upstream_helo), "%s", c->hostname);
	if (check_upstream_ca(c, err, errlen) != 0)
		goto out;
	c->policy = policy_new();
	if (!c->policy) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < domains.count; i++) {
		const char *d = domains.names[i];
		if (policy_add_domain(c->policy, span_make(d, strlen(d))) != 0) {
			set_err(err, errlen, "accept_domains: cannot add '%s'", d);
			goto out;
		}
	}
	c->accept_domain_count = domains.count;
	size_t used = 0;
	for (uint32_t i = 0; i < domains.count; i++) {
		int n = snprintf(c->accept_domains_text + used, sizeof(c->accept_domains_text) - used,
				 "%s%s", i ? " " : "", domains.names[i]);
		if (n < 0 || (size_t)n >= sizeof(c->accept_domains_text) - used) {
			set_err(err, errlen, "accept_domains: too long to keep (%zu bytes at most)",
				sizeof(c->accept_domains_text) - 1);
			goto out;
		}
		used += (size_t)n;
	}
	if (c->recipients_file[0] &&
	    load_recipients(c->policy, c->recipients_file, err, errlen) != 0)
		goto out;

	/* The users file is checked here, so that a bad one stops start-up or
	 * is refused by a reload with its line; core/auth_verify loads its own
	 * table from it. */
	if (c->auth_users[0]) {
		struct auth_users *users = NULL;
		if (auth_users_load(c->auth_users, &users, err, errlen) != 0)
			goto out;
		auth_users_free(users);
	}

	derive_session(c);
	rc = 0;
out:
	free(domains.names);
	if (rc != 0 && c->policy) {
		policy_free(c->policy);
		c->policy = NULL;
	}
	if (rc != 0 && c->tls) {
		tls_ctx_unref(c->tls);
		c->tls = NULL;
	}
	return rc;
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	return load_config(c, path, NULL, err, errlen);
}

int config_load_keeping_tls(struct config *c, const char *path, const struct config *running,
			    char *err, size_t errlen)
{
	return load_config(c, path, running, err, errlen);
}

void config_free(struct config *c)
{
	if (c->policy)
		policy_free(c->policy);
	c->policy = NULL;
	tls_ctx_unref(c->tls); /* open TLS sessions hold their own references */
	c->tls = NULL;
}

static void print_duration(FILE *out, const char *key, uint64_t s)
{
	if (s && s % 86400 == 0)
		fprintf(out, "%s = %llud\n", key, (unsigned long long)(s / 86400));
	else if (s && s % 3600 == 0)
		fprintf(out, "%s = %lluh\n", key, (unsigned long long)(s / 3600));
	else if (s && s % 60 == 0)
		fprintf(out, "%s = %llum\n", key, (unsigned long long)(s / 60));
	else
		fprintf(out, "%s = %llus\n", key, (unsigned long long)s);
}

void config_print(const struct config *c, FILE *out)
{
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	fprintf(out, "hostname = %s\n", c->hostname);
	fprintf(out, "workers = %u\n", c->workers);
	for (uint32_t i = 0; i < c->listen_count; i++)
		fprintf(out, "listen = %s%s%s%s\n", c->listen[i].text,
			c->listen[i].mode == SMTP_LISTENER_SMTPS	  ? " smtps"
			: c->listen[i].mode == SMTP_LISTENER_SUBMISSION ? " submission"
									: "",
			c->listen[i].proxy != PROXY_PROTOCOL_INHERIT ? " proxy=" : "",
			c->listen[i].proxy != PROXY_PROTOCOL_INHERIT
				? proxy_protocol_words[c->listen[i].proxy] : "");
	for (uint32_t i = 0; i < c->tls_cert_count; i++)
		fprintf(out, "tls_cert = %s\ntls_key = %s\n", c->tls_cert[i], c->tls_key[i]);
	fprintf(out, "tls_min_version = %s\n",
		c->tls_min_version == TLS_VERSION_MIN_1_3 ? "1.3" : "1.2");
	if (c->tls_ciphers[0])
		fprintf(out, "tls_ciphers = %s\n", c->tls_ciphers);
	print_duration(out, "tls_handshake_timeout", c->tls_handshake_timeout_s);
	fprintf(out, "data_dir = %s\n", c->data_dir);
	fprintf(out, "fsync = %s\n", c->fsync ? "always" : "never");
	fprintf(out, "store_io = %s\n", c->store_io == STORE_IO_BUFFERED ? "buffered"
					 : c->store_io == STORE_IO_DIRECT ? "direct" : "auto");
	fprintf(out, "commits_in_flight = %u\n", c->commits_in_flight);
	fprintf(out, "accept_domains = %s\n", c->accept_domains_text);
	if (c->recipients_file[0])
		fprintf(out, "recipients_file = %s\n", c->recipients_file);
	fprintf(out, "max_message_size = %llu\n", (unsigned long long)c->max_message_size_bytes);
	fprintf(out, "max_recipients = %u\n", c->max_recipients);
	fprintf(out, "max_connections = %u\n", c->max_connections);
	fprintf(out, "max_command_line = %u\n", c->max_command_line_bytes);
	fprintf(out, "bare_newline = %s\n", c->bare_newline_normalize ? "normalize" : "reject");
	print_duration(out, "idle_timeout", c->idle_timeout_s);
	print_duration(out, "command_timeout", c->command_timeout_s);
	print_duration(out, "data_timeout", c->data_timeout_s);
	fprintf(out, "min_data_rate = %u\n", c->min_data_rate_bytes_per_s);
	print_duration(out, "shutdown_grace", c->shutdown_grace_s);
	fprintf(out, "soft_error_limit = %u\n", c->soft_error_limit);
	fprintf(out, "hard_error_limit = %u\n", c->hard_error_limit);
	print_duration(out, "error_sleep_time", c->error_sleep_s);
	print_duration(out, "in_flow_delay", c->in_flow_delay_s);
	fprintf(out, "in_flow_backlog = %u\n", c->in_flow_backlog);
	fprintf(out, "junk_command_limit = %u\n", c->junk_command_limit);
	fprintf(out, "store_max_bytes = %llu\n", (unsigned long long)c->store_max_bytes);
	fprintf(out, "max_inflight_data_bytes = %llu\n",
		(unsigned long long)c->max_inflight_data_bytes);
	fprintf(out, "segment_size = %llu\n", (unsigned long long)c->segment_size_bytes);
	fprintf(out, "metrics_listen = %s\n", c->metrics_enabled ? c->metrics_listen.text : "off");
	fprintf(out, "log_level = %s\n", levels[c->log_level]);
	fprintf(out, "log_format = %s\n", c->log_json ? "json" : "logfmt");
	if (c->user[0])
		fprintf(out, "user = %s\n", c->user);
	if (c->upstream_count) {
		fprintf(out, "upstream =");
		for (uint32_t i = 0; i < c->upstream_count; i++)
			fprintf(out, " %s%s%s", c->upstream_name[i], c->upstream_name[i][0] ? "=" : "",
				c->upstream[i].text);
		fprintf(out, "\n");
	}
	fprintf(out, "upstream_connections = %u\n", c->upstream_connections);
	fprintf(out, "upstream_helo = %s\n", c->upstream_helo);
	print_duration(out, "upstream_timeout", c->upstream_timeout_s);
	static const char *const tls_modes[] = { "none", "opportunistic", "required" };
	fprintf(out, "upstream_tls = %s\n", tls_modes[c->upstream_tls]);
	if (c->upstream_ca[0])
		fprintf(out, "upstream_ca = %s\n", c->upstream_ca);
	fprintf(out, "upstream_chunking = %s\n", c->upstream_chunking ? "yes" : "no");
	print_duration(out, "retry_min", c->retry_min_s);
	print_duration(out, "retry_max", c->retry_max_s);
	print_duration(out, "max_queue_lifetime", c->max_queue_lifetime_s);
	if (c->auth_users[0])
		fprintf(out, "auth_users = %s\n", c->auth_users);
	fprintf(out, "auth_fail_limit = %u\n", c->auth_fail_limit);
	fprintf(out, "max_connections_per_ip = %u\n", c->max_connections_per_ip);
	fprintf(out, "max_connection_rate_per_ip = %u\n", c->max_connection_rate_per_ip);
	fprintf(out, "max_message_rate_per_ip = %u\n", c->max_message_rate_per_ip);
	fprintf(out, "ipv6_prefix = %u\n", c->ipv6_prefix_bits);
	char exempt[CIDR_LIST_MAX * CIDR_TEXT_MAX_BYTES];
	bool whole = cidr_list_format(&c->limits_exempt, exempt, sizeof(exempt));
	RMX_ASSERT(whole); /* sized for the longest list */
	fprintf(out, "limits_exempt = %s\n", c->limits_exempt.count ? exempt : "none");
	fprintf(out, "proxy_protocol = %s\n", proxy_protocol_words[c->proxy_protocol]);
	char trusted[CIDR_LIST_MAX * CIDR_TEXT_MAX_BYTES];
	whole = cidr_list_format(&c->proxy_trusted, trusted, sizeof(trusted));
	RMX_ASSERT(whole);
	fprintf(out, "proxy_trusted = %s\n", c->proxy_trusted.count ? trusted : "none");
	print_duration(out, "proxy_timeout", c->proxy_timeout_s);
	print_duration(out, "greet_pause", c->greet_pause_s);
	static const char *const greet_actions[] = { "ignore", "enforce", "drop" };
	fprintf(out, "greet_action = %s\n", greet_actions[c->greet_action]);
	print_duration(out, "screen_cache_ttl", c->screen_cache_ttl_s);
	fprintf(out, "overload_store_soft = %u\n", c->overload_store_soft_pct);
	fprintf(out, "overload_store_hard = %u\n", c->overload_store_hard_pct);
	fprintf(out, "overload_backlog_soft = %u\n", c->overload_backlog_soft);
	fprintf(out, "overload_backlog_hard = %u\n", c->overload_backlog_hard);
	print_duration(out, "overload_backlog_age_soft", c->overload_backlog_age_soft_s);
	print_duration(out, "overload_backlog_age_hard", c->overload_backlog_age_hard_s);
	fprintf(out, "overload_inflight_soft = %u\n", c->overload_inflight_soft_pct);
	fprintf(out, "overload_inflight_hard = %u\n", c->overload_inflight_hard_pct);
}

/*
 * The keys a reload cannot change: what the process set up at start-up
 * (sockets, threads, the store's files and sizes, connection slots, the
 * forwarder's connection pool and the names it gave). One row per key:
 * whether it differs, and how to keep the running value.
 */
#define SAME_BYTES(f) (memcmp(&a->f, &b->f, sizeof(a->f)) == 0)
#define SAME_STR(f) (strcmp(a->f, b->f) == 0)

static bool same_listen(const struct config *a, const struct config *b)
{
	if (a->listen_count != b->listen_count)
		return false;
	for (uint32_t i = 0; i < a->listen_count; i++)
		if (strcmp(a->listen[i].text, b->listen[i].text) != 0 ||
		    a->listen[i].mode != b->listen[i].mode)
			return false;
	return true;
}

static bool same_upstreams(const struct config *a, const struct config *b)
{
	if (a->upstream_count != b->upstream_count)
		return false;
	for (uint32_t i = 0; i < a->upstream_count; i++)
		if (strcmp(a->upstream[i].text, b->upstream[i].text) != 0 ||
		    strcmp(a->upstream_name[i], b->upstream_name[i]) != 0)
			return false;
	return true;
}

size_t config_restart_keys(struct config *next, const struct config *running, char *out,
			   size_t cap)
{
	const struct config *a = next, *b = running;
	bool differs[] = {
		!SAME_STR(hostname),
		!SAME_BYTES(workers),
		!same_listen(a, b),
		!SAME_STR(data_dir),
		!SAME_BYTES(fsync),
		!SAME_BYTES(store_io),
		!SAME_BYTES(commits_in_flight),
		!SAME_BYTES(store_max_bytes),
		!SAME_BYTES(segment_size_bytes),
		!SAME_BYTES(max_connections),
		a->metrics_enabled != b->metrics_enabled ||
			(a->metrics_enabled && !SAME_STR(metrics_listen.text)),
		!SAME_STR(user),
		!same_upstreams(a, b),
		!SAME_BYTES(upstream_connections),
		!SAME_STR(upstream_helo),
		!SAME_STR(upstream_ca), /* each worker's TLS client context holds it */
		/* AUTH turned on or off (the verifier pool, what EHLO offers) */
		(a->auth_users[0] != '\0') != (b->auth_users[0] != '\0'),
		/* a larger record than the running segments can take */
		!segment_holds_largest_record(a, b->segment_size_bytes),
	};
	static const char *const names[] = {
		"hostname",        "workers",        "listen",          "data_dir",
		"fsync",           "store_io",       "commits_in_flight",
		"store_max_bytes", "segment_size",   "max_connections",
		"metrics_listen",  "user",           "upstream",        "upstream_connections",
		"upstream_helo",   "upstream_ca",    "auth_users",
		"max_message_size/max_recipients",
	};
	_Static_assert(RMX_ARRAY_LEN(differs) == RMX_ARRAY_LEN(names), "a name per key");
	size_t count = 0, used = 0;
	if (cap)
		out[0] = '\0';
	for (size_t i = 0; i < RMX_ARRAY_LEN(names); i++) {
		if (!differs[i])
			continue;
		count++;
		int n = cap > used ? snprintf(out + used, cap - used, "%s%s", used ? "," : "",
					      names[i])
				   : 0;
		if (n > 0)
			used = RMX_MIN(used + (size_t)n, cap ? cap - 1 : 0);
	}
	/* Keep the running values of all of them. */
	memcpy(next->hostname, b->hostname, sizeof(next->hostname));
	next->workers = b->workers;
	/* A listener's proxy= word is live: kept from next when the listeners
	 * themselves are the same. */
	uint8_t proxy_words[LISTENERS_MAX];
	bool listeners_same = same_listen(a, b);
	for (uint32_t i = 0; i < LISTENERS_MAX; i++)
		proxy_words[i] = next->listen[i].proxy;
	memcpy(next->listen, b->listen, sizeof(next->listen));
	next->listen_count = b->listen_count;
	for (uint32_t i = 0; listeners_same && i < next->listen_count; i++)
		next->listen[i].proxy = proxy_words[i];
	memcpy(next->data_dir, b->data_dir, sizeof(next->data_dir));
	next->fsync = b->fsync;
	next->store_io = b->store_io;
	next->commits_in_flight = b->commits_in_flight;
	next->store_max_bytes = b->store_max_bytes;
	next->segment_size_bytes = b->segment_size_bytes;
	next->max_connections = b->max_connections;
	next->metrics_enabled = b->metrics_enabled;
	next->metrics_listen = b->metrics_listen;
	memcpy(next->user, b->user, sizeof(next->user));
	memcpy(next->upstream, b->upstream, sizeof(next->upstream));
	memcpy(next->upstream_name, b->upstream_name, sizeof(next->upstream_name));
	next->upstream_count = b->upstream_count;
	memcpy(next->upstream_ca, b->upstream_ca, sizeof(next->upstream_ca));
	next->upstream_connections = b->upstream_connections;
	memcpy(next->upstream_helo, b->upstream_helo, sizeof(next->upstream_helo));
	if (differs[RMX_ARRAY_LEN(differs) - 2])
		memcpy(next->auth_users, b->auth_users, sizeof(next->auth_users));
	if (differs[RMX_ARRAY_LEN(differs) - 1]) {
		next->max_message_size_bytes = b->max_message_size_bytes;
		next->max_recipients = b->max_recipients;
	}
	derive_session(next);
	return count;
}
