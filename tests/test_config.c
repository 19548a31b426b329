/*
 * test_config.c - configuration: defaults, units, listen addresses, and that
 * every kind of mistake is refused with its file and line number.
 */
#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#include "../core/config.h"
#include "../proto/smtp_client.h"
#include "../storage/segment.h"
#include "test.h"

static char dir[] = "/tmp/ringmx-test-config-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	REQUIRE(f != NULL);
	fputs(text, f);
	REQUIRE(fclose(f) == 0);
	return path;
}

/* Loads text; returns 0 or -1 and leaves the message in err. */
static int load_text(struct config *c, const char *text, char *err, size_t errlen)
{
	const char *p = write_file("ringmx.conf", text);
	return config_load(c, p, err, errlen);
}

static void expect_error(const char *text, const char *needle)
{
	struct config c;
	char err[1024] = "";
	int rc = load_text(&c, text, err, sizeof(err));
	CHECK(rc != 0);
	if (rc == 0) {
		config_free(&c);
		return;
	}
	if (!strstr(err, needle))
		fprintf(stderr, "  error was: %s (wanted %s)\n", err, needle);
	CHECK(strstr(err, needle) != NULL);
}

/* auth_users and auth_fail_limit: defaults, a valid file, a bad file refused
 * with its own line, bounds, config_print, and AUTH on or off as a restart
 * key while a new path is live. */
static void test_auth_keys(void)
{
	static const char hash[] = "$6$/kXzvxTzEeu5RHUi$tsfiUFy0u5OY1uWFS7xWa1U63xPp/9ri04sY."
				   "nSccXlwToEr8uDzNe4WE4tPO/dZEMG8Un2MoBz26WHox6nry1";
	struct config c, next;
	char err[1024], text[1024], users_path[512], keys[256];
	REQUIRE(config_load(&c, NULL, err, sizeof(err)) == 0);
	CHECK(c.auth_users[0] == '\0');
	CHECK_EQ_U(c.auth_fail_limit, AUTH_FAIL_LIMIT_DEFAULT);
	config_free(&c);

	snprintf(text, sizeof(text), "# submission users\nalice:%s\n", hash);
	snprintf(users_path, sizeof(users_path), "%s", write_file("users", text));
	snprintf(text, sizeof(text), "auth_users = %s\nauth_fail_limit = 3\n", users_path);
	REQUIRE(load_text(&c, text, err, sizeof(err)) == 0);
	CHECK(strcmp(c.auth_users, users_path) == 0);
	CHECK_EQ_U(c.auth_fail_limit, 3);
	char printed[8192];
	FILE *f = fmemopen(printed, sizeof(printed), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	snprintf(text, sizeof(text), "auth_users = %s\nauth_fail_limit = 3\n", users_path);
	CHECK(strstr(printed, text) != NULL);

	/* Turning AUTH off by reload is a restart key; another file is live. */
	REQUIRE(load_text(&next, "auth_fail_limit = 4\n", err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&next, &c, keys, sizeof(keys)), 1);
	CHECK(strcmp(keys, "auth_users") == 0);
	CHECK(strcmp(next.auth_users, users_path) == 0);
	CHECK_EQ_U(next.auth_fail_limit, 4); /* live */
	config_free(&next);
	snprintf(text, sizeof(text), "alice:%s\nbob:%s\n", hash, hash);
	char other[512];
	snprintf(other, sizeof(other), "%s", write_file("users2", text));
	snprintf(text, sizeof(text), "auth_users = %s\n", other);
	REQUIRE(load_text(&next, text, err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&next, &c, keys, sizeof(keys)), 0);
	CHECK(strcmp(next.auth_users, other) == 0);
	config_free(&next);
	config_free(&c);
	unlink(other);

	/* A bad users file stops the load with its file and line. */
	write_file("users", "# fine\nalice:$1$md5$notsupported\n");
	snprintf(text, sizeof(text), "auth_users = %s\n", users_path);
	expect_error(text, "users:2: unsupported hash");
	expect_error("auth_users = /nonexistent/ringmx-users\n", "cannot open");
	expect_error("auth_fail_limit = 0\n", ":1: auth_fail_limit");
	expect_error("auth_fail_limit = 1001\n", ":1: auth_fail_limit");
	unlink(users_path);
}

/* Per-client limits, screening and overload keys: defaults (Postfix's, and
 * loopback exempt), every key set, config_print read back, each mistake
 * refused with its line, and all of them live on reload. */
static void test_limits_keys(void)
{
	struct config c, next;
	char err[1024], keys[256];
	REQUIRE(config_load(&c, NULL, err, sizeof(err)) == 0);
	CHECK_EQ_U(c.max_connections_per_ip, 50);
	CHECK_EQ_U(c.max_connection_rate_per_ip, 0);
	CHECK_EQ_U(c.max_message_rate_per_ip, 0);
	CHECK_EQ_U(c.ipv6_prefix_bits, 64);
	CHECK_EQ_U(c.limits_exempt.count, 2);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	CHECK(cidr_list_contains_sockaddr(&c.limits_exempt, (struct sockaddr *)&lo));
	CHECK_EQ_U(c.greet_pause_s, 0);
	CHECK_EQ_U(c.greet_action, GREET_ACTION_IGNORE);
	CHECK_EQ_U(c.screen_cache_ttl_s, 86400);
	CHECK_EQ_U(c.overload_store_soft_pct, 90);
	CHECK_EQ_U(c.overload_store_hard_pct, 97);
	CHECK_EQ_U(c.overload_inflight_soft_pct, 80);
	CHECK_EQ_U(c.overload_inflight_hard_pct, 95);
	CHECK(c.overload_backlog_soft == 0 && c.overload_backlog_hard == 0);
	CHECK(c.overload_backlog_age_soft_s == 0 && c.overload_backlog_age_hard_s == 0);
	config_free(&c);

	static const char all[] = "max_connections_per_ip = 10\n"
				  "max_connection_rate_per_ip = 30\n"
				  "max_message_rate_per_ip = 100\n"
				  "ipv6_prefix = 48\n"
				  "limits_exempt = 192.0.2.0/24, 2001:db8::/32 10.1.2.3\n"
				  "greet_pause = 6s\n"
				  "greet_action = enforce\n"
				  "screen_cache_ttl = 2h\n"
				  "overload_store_soft = 70\n"
				  "overload_store_hard = 90\n"
				  "overload_backlog_soft = 10000\n"
				  "overload_backlog_hard = 50000\n"
				  "overload_backlog_age_soft = 30m\n"
				  "overload_backlog_age_hard = 2h\n"
				  "overload_inflight_soft = 60\n"
				  "overload_inflight_hard = 100\n";
	REQUIRE(load_text(&c, all, err, sizeof(err)) == 0);
	CHECK_EQ_U(c.max_connections_per_ip, 10);
	CHECK_EQ_U(c.max_connection_rate_per_ip, 30);
	CHECK_EQ_U(c.max_message_rate_per_ip, 100);
	CHECK_EQ_U(c.ipv6_prefix_bits, 48);
	CHECK_EQ_U(c.limits_exempt.count, 3);
	CHECK(!cidr_list_contains_sockaddr(&c.limits_exempt, (struct sockaddr *)&lo));
	CHECK_EQ_U(c.greet_pause_s, 6);
	CHECK_EQ_U(c.greet_action, GREET_ACTION_ENFORCE);
	CHECK_EQ_U(c.screen_cache_ttl_s, 7200);
	CHECK(c.overload_store_soft_pct == 70 && c.overload_store_hard_pct == 90);
	CHECK(c.overload_backlog_soft == 10000 && c.overload_backlog_hard == 50000);
	CHECK(c.overload_backlog_age_soft_s == 1800 && c.overload_backlog_age_hard_s == 7200);
	CHECK(c.overload_inflight_soft_pct == 60 && c.overload_inflight_hard_pct == 100);
	char printed[8192];
	FILE *f = fmemopen(printed, sizeof(printed), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strstr(printed, "limits_exempt = 192.0.2.0/24 2001:db8::/32 10.1.2.3\n") != NULL);
	CHECK(strstr(printed, "greet_action = enforce\n") != NULL);
	CHECK(strstr(printed, "overload_backlog_age_soft = 30m\n") != NULL);
	CHECK(strstr(printed, "ipv6_prefix = 48\n") != NULL);

	/* All live: a reload that changes every one names no restart key. */
	REQUIRE(load_text(&next, "limits_exempt = none\ngreet_action = drop\n"
				 "max_connections_per_ip = 0\nipv6_prefix = 128\n",
			  err, sizeof(err)) == 0);
	CHECK_EQ_U(next.limits_exempt.count, 0);
	CHECK_EQ_U(next.greet_action, GREET_ACTION_DROP);
	CHECK_EQ_U(config_restart_keys(&next, &c, keys, sizeof(keys)), 0);
	CHECK_EQ_U(next.limits_exempt.count, 0);
	CHECK_EQ_U(next.max_connections_per_ip, 0);
	CHECK_EQ_U(next.ipv6_prefix_bits, 128);
	f = fmemopen(printed, sizeof(printed), "w");
	REQUIRE(f != NULL);
	config_print(&next, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strstr(printed, "limits_exempt = none\n") != NULL);
	config_free(&next);
	config_free(&c);

	expect_error("limits_exempt = 10.0.0.0/8 192.0.2.1/24\n",
		     ":1: limits_exempt: '192.0.2.1/24': host bits set");
	expect_error("\nlimits_exempt = mx.example.org\n", ":2: limits_exempt: 'mx.example.org'");
	expect_error("limits_exempt = \n", ":1: limits_exempt: empty value");
	expect_error("greet_action = reject\n", ":1: greet_action: 'reject' is not ignore");
	expect_error("greet_pause = 61s\n", ":1: greet_pause");
	expect_error("ipv6_prefix = 15\n", ":1: ipv6_prefix");
	expect_error("ipv6_prefix = 129\n", ":1: ipv6_prefix");
	expect_error("max_connection_rate_per_ip = 1000001\n", ":1: max_connection_rate_per_ip");
	expect_error("max_message_rate_per_ip = lots\n", ":1: max_message_rate_per_ip");
	expect_error("overload_store_hard = 101\n", ":1: overload_store_hard");
	expect_error("screen_cache_ttl = 31d\n", ":1: screen_cache_ttl");
	expect_error("overload_store_soft = 99\n",
		     "overload_store_soft (99) must not exceed overload_store_hard (97)");
	expect_error("overload_backlog_soft = 5\noverload_backlog_hard = 4\n",
		     "overload_backlog_soft (5) must not exceed overload_backlog_hard (4)");
	expect_error("overload_backlog_age_soft = 2h\noverload_backlog_age_hard = 1h\n",
		     "overload_backlog_age_soft (7200) must not exceed");
	expect_error("overload_inflight_soft = 96\n", "overload_inflight_soft (96)");
	/* One of a pair off: the other alone is fine. */
	REQUIRE(load_text(&c, "overload_store_hard = 0\noverload_store_soft = 99\n", err,
			  sizeof(err)) == 0);
	config_free(&c);
}

/* proxy_protocol, proxy_trusted, proxy_timeout and a listener's proxy=WORD:
 * defaults, the per-listener override, config_print read back, the words
 * refused by name, and a PROXY listener with no trusted balancer refused. */
static void test_proxy_keys(void)
{
	struct config c, again;
	char err[1024];
	REQUIRE(config_load(&c, NULL, err, sizeof(err)) == 0);
	CHECK_EQ_U(c.proxy_protocol, PROXY_PROTOCOL_OFF);
	CHECK_EQ_U(c.proxy_trusted.count, 0);
	CHECK_EQ_U(c.proxy_timeout_s, 5);
	CHECK_EQ_U(config_listener_proxy(&c, 0), PROXY_PROTOCOL_OFF);
	config_free(&c);

	static const char text[] = "proxy_protocol = optional\n"
				   "proxy_trusted = 127.0.0.1 10.0.0.0/8 ::1\n"
				   "proxy_timeout = 2s\n"
				   "listen = 127.0.0.1:2525\n"
				   "listen = 127.0.0.1:2526 smtp proxy=required\n"
				   "listen = [::1]:2527 proxy=off\n";
	REQUIRE(load_text(&c, text, err, sizeof(err)) == 0);
	CHECK_EQ_U(c.proxy_protocol, PROXY_PROTOCOL_OPTIONAL);
	CHECK_EQ_U(c.proxy_trusted.count, 3);
	CHECK_EQ_U(c.proxy_timeout_s, 2);
	CHECK_EQ_U(c.listen_count, 3);
	CHECK_EQ_U(config_listener_proxy(&c, 0), PROXY_PROTOCOL_OPTIONAL);
	CHECK_EQ_U(config_listener_proxy(&c, 1), PROXY_PROTOCOL_REQUIRED);
	CHECK_EQ_U(c.listen[1].mode, SMTP_LISTENER_SMTP);
	CHECK_EQ_U(config_listener_proxy(&c, 2), PROXY_PROTOCOL_OFF);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	CHECK(cidr_list_contains_sockaddr(&c.proxy_trusted, (struct sockaddr *)&lo));
	char printed[8192];
	FILE *f = fmemopen(printed, sizeof(printed), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strstr(printed, "proxy_protocol = optional\n") != NULL);
	CHECK(strstr(printed, "proxy_trusted = 127.0.0.1 10.0.0.0/8 ::1\n") != NULL);
	CHECK(strstr(printed, "proxy_timeout = 2s\n") != NULL);
	CHECK(strstr(printed, "listen = 127.0.0.1:2525\n") != NULL);
	CHECK(strstr(printed, "listen = 127.0.0.1:2526 proxy=required\n") != NULL);
	CHECK(strstr(printed, "listen = [::1]:2527 proxy=off\n") != NULL);
	/* What config_print wrote reads back the same. */
	REQUIRE(load_text(&again, printed, err, sizeof(err)) == 0);
	CHECK_EQ_U(config_listener_proxy(&again, 1), PROXY_PROTOCOL_REQUIRED);
	CHECK_EQ_U(config_listener_proxy(&again, 2), PROXY_PROTOCOL_OFF);
	CHECK_EQ_U(again.proxy_trusted.count, 3);
	config_free(&again);
	config_free(&c);

	/* The key off, one listener on by its own word. */
	REQUIRE(load_text(&c, "proxy_trusted = 192.0.2.0/24\n"
			      "listen = 127.0.0.1:2525\n"
			      "listen = 127.0.0.1:2526 smtp proxy=optional\n",
			  err, sizeof(err)) == 0);
	CHECK_EQ_U(config_listener_proxy(&c, 0), PROXY_PROTOCOL_OFF);
	CHECK_EQ_U(config_listener_proxy(&c, 1), PROXY_PROTOCOL_OPTIONAL);
	CHECK_EQ_U(c.listen[1].mode, SMTP_LISTENER_SMTP);
	config_free(&c);

	/* All live: a reload that turns it on for a listener names no
	 * restart key and keeps the new words. */
	struct config running, next;
	char keys[256];
	REQUIRE(load_text(&running, "listen = 127.0.0.1:2525\n", err, sizeof(err)) == 0);
	REQUIRE(load_text(&next, "listen = 127.0.0.1:2525 proxy=required\n"
				 "proxy_trusted = 10.0.0.1\nproxy_timeout = 9s\n",
			  err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&next, &running, keys, sizeof(keys)), 0);
	CHECK_EQ_U(config_listener_proxy(&next, 0), PROXY_PROTOCOL_REQUIRED);
	CHECK_EQ_U(next.proxy_trusted.count, 1);
	CHECK_EQ_U(next.proxy_timeout_s, 9);
	config_free(&running);
	config_free(&next);

	expect_error("proxy_protocol = on\n", ":1: proxy_protocol: 'on' is not off, required or optional");
	expect_error("proxy_trusted = 127.0.0.1/8\n", ":1: proxy_trusted: '127.0.0.1/8': host bits set");
	expect_error("proxy_timeout = 0\n", ":1: proxy_timeout");
	expect_error("proxy_trusted = ::1\nlisten = 127.0.0.1:25 proxy=yes\n",
		     "listen 127.0.0.1:25: 'proxy=yes' is not proxy=off, proxy=required or proxy=optional");
	expect_error("proxy_trusted = ::1\nlisten = 127.0.0.1:25 proxy=off proxy=off\n",
		     "'proxy=off' is not allowed twice");
	expect_error("proxy_trusted = ::1\nlisten = 127.0.0.1:25 proxy=off smtps\n",
		     "listen 127.0.0.1:25: 'smtps' is not an option");
	expect_error("listen = 127.0.0.1:25 smtp proxy=required\n",
		     "listen 127.0.0.1:25: the PROXY protocol is on but proxy_trusted names no balancer");
	expect_error("proxy_protocol = optional\n", "proxy_trusted names no balancer");
}

/* upstream_chunking: yes by default, yes or no, anything else refused;
 * config_print writes it back; a reload changes it without a restart. */
static void test_upstream_chunking_key(void)
{
	struct config c, next;
	char err[1024], out[8192], keys[256];
	REQUIRE(load_text(&c, "upstream = 127.0.0.1:2025\n", err, sizeof(err)) == 0);
	CHECK(c.upstream_chunking);
	config_free(&c);
	REQUIRE(load_text(&c, "upstream_chunking = no\n", err, sizeof(err)) == 0);
	CHECK(!c.upstream_chunking);
	FILE *f = fmemopen(out, sizeof(out), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strstr(out, "upstream_chunking = no\n") != NULL);
	REQUIRE(load_text(&next, "upstream_chunking = yes\n", err, sizeof(err)) == 0);
	CHECK(next.upstream_chunking);
	CHECK_EQ_U(config_restart_keys(&next, &c, keys, sizeof(keys)), 0);
	CHECK(next.upstream_chunking);
	config_free(&next);
	config_free(&c);
	expect_error("upstream_chunking = maybe\n",
		     ":1: upstream_chunking: 'maybe' is not 'yes' or 'no'");
	expect_error("upstream_chunking = YES\n", ":1: upstream_chunking: 'YES'");
}

/* upstream_tls, upstream_ca and upstream names: defaults, each mode, a CA
 * that needs every upstream named and a readable file, config_print read
 * back, and upstream_ca as a restart key while upstream_tls is live. */
static void test_upstream_tls_keys(void)
{
	struct config c, next;
	char err[1024], text[2048], keys[256];
	REQUIRE(load_text(&c, "upstream = 127.0.0.1:2025\n", err, sizeof(err)) == 0);
	CHECK_EQ_U(c.upstream_tls, SMTP_CLIENT_TLS_OPPORTUNISTIC);
	CHECK(c.upstream_ca[0] == '\0' && c.upstream_name[0][0] == '\0');
	config_free(&c);
	REQUIRE(load_text(&c, "upstream_tls = none\n", err, sizeof(err)) == 0);
	CHECK_EQ_U(c.upstream_tls, SMTP_CLIENT_TLS_NONE);
	config_free(&c);
	REQUIRE(load_text(&c, "upstream_tls = required\n"
			      "upstream = relay1.example=127.0.0.1:2025, [::1]:2026 "
			      "relay3.example=[::1]:2027\n",
			  err, sizeof(err)) == 0);
	CHECK_EQ_U(c.upstream_tls, SMTP_CLIENT_TLS_REQUIRED);
	CHECK_EQ_U(c.upstream_count, 3);
	CHECK(strcmp(c.upstream_name[0], "relay1.example") == 0);
	CHECK(strcmp(c.upstream[0].text, "127.0.0.1:2025") == 0);
	CHECK(c.upstream_name[1][0] == '\0' && strcmp(c.upstream[1].text, "[::1]:2026") == 0);
	CHECK(strcmp(c.upstream_name[2], "relay3.example") == 0);
	config_free(&c);
	expect_error("upstream_tls = maybe\n", ":1: upstream_tls: 'maybe'");
	expect_error("upstream = bad_name=127.0.0.1:25\n", ":1: upstream: 'bad_name'");
	expect_error("upstream = relay.example=nowhere\n", ":1: upstream: 'nowhere'");

	const char *ca = write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n");
	snprintf(text, sizeof(text), "upstream_ca = %s\nupstream = relay.example=127.0.0.1:25 "
		 "127.0.0.1:26\n", ca);
	expect_error(text, "upstream_ca verifies the upstream's name: give upstream "
			   "127.0.0.1:26 one");
	expect_error("upstream_ca = /nonexistent/ringmx-ca.pem\n", "upstream_ca: cannot read");
	snprintf(text, sizeof(text), "upstream_ca = %s\nupstream_tls = required\n"
		 "upstream = relay.example=127.0.0.1:25 [::1]:26\n", ca);
	expect_error(text, "give upstream [::1]:26 one");
	snprintf(text, sizeof(text), "upstream_ca = %s\nupstream_tls = required\n"
		 "upstream = relay.example=127.0.0.1:25 other.example=[::1]:26\n", ca);
	REQUIRE(load_text(&c, text, err, sizeof(err)) == 0);
	CHECK(strcmp(c.upstream_ca, ca) == 0);
	char first[8192], second[8192];
	FILE *f = fmemopen(first, sizeof(first), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strstr(first, "upstream = relay.example=127.0.0.1:25 other.example=[::1]:26\n"));
	CHECK(strstr(first, "upstream_tls = required\n") != NULL);
	struct config again;
	REQUIRE(load_text(&again, first, err, sizeof(err)) == 0);
	f = fmemopen(second, sizeof(second), "w");
	REQUIRE(f != NULL);
	config_print(&again, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strcmp(first, second) == 0);
	config_free(&again);

	/* Reload: another CA or another name waits for a restart; the mode is live. */
	snprintf(text, sizeof(text), "upstream_tls = none\n"
		 "upstream = relay.example=127.0.0.1:25 renamed.example=[::1]:26\n");
	REQUIRE(load_text(&next, text, err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&next, &c, keys, sizeof(keys)), 2);
	CHECK(strcmp(keys, "upstream,upstream_ca") == 0);
	CHECK(strcmp(next.upstream_ca, ca) == 0);
	CHECK(strcmp(next.upstream_name[1], "other.example") == 0);
	CHECK_EQ_U(next.upstream_tls, SMTP_CLIENT_TLS_NONE);
	config_free(&next);
	config_free(&c);
	unlink(ca);
}

/* The error budget: Postfix's defaults, the session sees them, soft above
 * hard is refused, bounds, config_print writes them back. */
static void test_error_budget_keys(void)
{
	struct config c;
	char err[1024];
	REQUIRE(load_text(&c, "", err, sizeof(err)) == 0);
	CHECK(c.soft_error_limit == 10 && c.hard_error_limit == 20 && c.error_sleep_s == 1 &&
	      c.junk_command_limit == 100);
	CHECK(c.session.soft_error_limit == 10 && c.session.hard_error_limit == 20 &&
	      c.session.junk_command_limit == 100);
	config_free(&c);
	REQUIRE(load_text(&c, "soft_error_limit = 3\nhard_error_limit = 3\nerror_sleep_time = 5s\n"
			      "junk_command_limit = 7\n", err, sizeof(err)) == 0);
	CHECK(c.session.soft_error_limit == 3 && c.session.hard_error_limit == 3 &&
	      c.error_sleep_s == 5 && c.session.junk_command_limit == 7);
	char *printed = NULL;
	size_t printed_len = 0;
	FILE *f = open_memstream(&printed, &printed_len);
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	CHECK(strstr(printed, "soft_error_limit = 3\n") && strstr(printed, "hard_error_limit = 3\n") &&
	      strstr(printed, "error_sleep_time = 5s\n") && strstr(printed, "junk_command_limit = 7\n"));
	free(printed);
	config_free(&c);
	expect_error("soft_error_limit = 21\n", "soft_error_limit (21) must not exceed hard_error_limit (20)");
	expect_error("hard_error_limit = 0\n", ":1: hard_error_limit");
	expect_error("junk_command_limit = 10001\n", ":1: junk_command_limit");
	expect_error("error_sleep_time = 61s\n", ":1: error_sleep_time");
}

/* Makes a self-signed certificate and key in dir with openssl. */
static bool make_cert(const char *name, const char *cn)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-keyout %s/%s.key -out %s/%s.crt -days 10 -subj /CN=%s >/dev/null 2>&1",
		 dir, name, dir, name, cn);
	return system(cmd) == 0;
}

/* listen modes, tls_cert/tls_key pairs, tls_min_version, tls_ciphers,
 * tls_handshake_timeout: defaults, every mistake refused by name, the
 * session settings per listener mode, config_print, a reload that keeps a
 * pair whose new file is broken, a mode change as a restart key. */
static void test_tls_keys(void)
{
	struct config c, next;
	char err[1024], text[2048], keys[256];
	REQUIRE(config_load(&c, NULL, err, sizeof(err)) == 0);
	CHECK(c.tls == NULL && c.tls_cert_count == 0);
	CHECK_EQ_U(c.tls_handshake_timeout_s, TLS_HANDSHAKE_TIMEOUT_DEFAULT_S);
	CHECK(c.tls_min_version == TLS_VERSION_MIN_1_2);
	CHECK(c.listen[0].mode == SMTP_LISTENER_SMTP);
	for (int m = 0; m < SMTP_LISTENER_MODE_COUNT; m++)
		CHECK(!c.session_mode[m].tls_offered && c.session_mode[m].listener_mode == m);
	config_free(&c);

	expect_error("listen = 127.0.0.1:2526 submission\n",
		     "listen 127.0.0.1:2526 submission: needs a certificate (tls_cert and tls_key)");
	expect_error("listen = 127.0.0.1:2526 smtps\n", "smtps: needs a certificate");
	expect_error("listen = 127.0.0.1:2526 bogus\n",
		     "ringmx.conf:1: listen 127.0.0.1:2526: 'bogus' is not a mode (smtp, submission or smtps)");
	expect_error("listen = 127.0.0.1:2526 smtp smtps\n", "'smtps' is not an option");
	expect_error("listen = localhost:25 smtp\n", "'localhost:25' is not ADDRESS:PORT");
	expect_error("tls_min_version = 1.1\n", "tls_min_version: '1.1' is not 1.2 or 1.3");
	expect_error("tls_min_version = 1.0\n", "is not 1.2 or 1.3");
	expect_error("tls_handshake_timeout = 0\n", "tls_handshake_timeout: 0 is out of range");
	expect_error("tls_cert = /nonexistent.crt\n", "tls_cert and tls_key come in pairs");
	expect_error("tls_key = /nonexistent.key\n", "1 tls_key");

	if (!make_cert("one", "one.example.test") || !make_cert("two", "two.example.test")) {
		fprintf(stderr, "openssl cannot make certificates: the TLS part is not run\n");
		CHECK(false);
		return;
	}
	snprintf(text, sizeof(text), "tls_cert = %s/one.crt\ntls_key = %s/two.key\n", dir, dir);
	snprintf(keys, sizeof(keys), "%s/one.crt: its tls_key does not match", dir);
	expect_error(text, keys);
	snprintf(text, sizeof(text), "tls_cert = %s/missing.crt\ntls_key = %s/two.key\n", dir, dir);
	snprintf(keys, sizeof(keys), "tls_cert %s/missing.crt: No such file", dir);
	expect_error(text, keys);
	snprintf(text, sizeof(text),
		 "tls_cert = %s/one.crt\ntls_key = %s/one.key\ntls_ciphers = NO-SUCH-CIPHER\n",
		 dir, dir);
	expect_error(text, "tls_ciphers names no cipher suite");

	snprintf(text, sizeof(text),
		 "listen = 127.0.0.1:2525\n"
		 "listen = 127.0.0.1:2587 submission\n"
		 "listen = [::1]:2465 smtps\n"
		 "tls_cert = %s/one.crt\n"
		 "tls_key = %s/one.key\n"
		 "tls_cert = %s/two.crt\n"
		 "tls_key = %s/two.key\n"
		 "tls_min_version = 1.3\n"
		 "tls_ciphers = TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384\n"
		 "tls_handshake_timeout = 15s\n",
		 dir, dir, dir, dir);
	REQUIRE(load_text(&c, text, err, sizeof(err)) == 0);
	CHECK(c.tls != NULL && tls_ctx_cert_count(c.tls) == 2);
	CHECK(c.listen[0].mode == SMTP_LISTENER_SMTP);
	CHECK(c.listen[1].mode == SMTP_LISTENER_SUBMISSION);
	CHECK(c.listen[2].mode == SMTP_LISTENER_SMTPS);
	CHECK(c.tls_min_version == TLS_VERSION_MIN_1_3 && c.tls_handshake_timeout_s == 15);
	for (int m = 0; m < SMTP_LISTENER_MODE_COUNT; m++)
		CHECK(c.session_mode[m].tls_offered && c.session_mode[m].listener_mode == m &&
		      c.session_mode[m].max_recipients == c.session.max_recipients);
	char *printed = NULL;
	size_t printed_len = 0;
	FILE *out = open_memstream(&printed, &printed_len);
	REQUIRE(out != NULL);
	config_print(&c, out);
	REQUIRE(fclose(out) == 0);
	CHECK(strstr(printed, "listen = 127.0.0.1:2525\n") != NULL);
	CHECK(strstr(printed, "listen = 127.0.0.1:2587 submission\n") != NULL);
	CHECK(strstr(printed, "listen = [::1]:2465 smtps\n") != NULL);
	CHECK(strstr(printed, "tls_min_version = 1.3\n") != NULL);
	CHECK(strstr(printed, "tls_handshake_timeout = 15s\n") != NULL);
	snprintf(keys, sizeof(keys), "tls_cert = %s/two.crt\ntls_key = %s/two.key\n", dir, dir);
	CHECK(strstr(printed, keys) != NULL);
	/* What it prints loads again, the same. */
	REQUIRE(load_text(&next, printed, err, sizeof(err)) == 0);
	CHECK(next.listen[2].mode == SMTP_LISTENER_SMTPS && tls_ctx_cert_count(next.tls) == 2);
	config_free(&next);
	free(printed);

	/* Reload: the second certificate's file is now broken. A plain load
	 * refuses it; a reload keeps the running pair for it. */
	int64_t not_after = tls_ctx_cert_not_after(c.tls, 1);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cp %s/two.crt %s/two.saved && echo broken > %s/two.crt", dir,
		 dir, dir);
	REQUIRE(system(cmd) == 0);
	CHECK(load_text(&next, text, err, sizeof(err)) != 0);
	const char *p = write_file("ringmx.conf", text);
	REQUIRE(config_load_keeping_tls(&next, p, &c, err, sizeof(err)) == 0);
	CHECK(tls_ctx_cert_count(next.tls) == 2);
	CHECK_EQ_U(tls_ctx_cert_not_after(next.tls, 1), not_after);
	CHECK_EQ_U(next.tls_kept_count, 1);
	CHECK(strstr(next.tls_kept_text, "two.crt: no PEM certificate") != NULL);
	config_free(&next);
	snprintf(cmd, sizeof(cmd), "mv %s/two.saved %s/two.crt", dir, dir);
	REQUIRE(system(cmd) == 0);

	/* A listener's mode is a restart key, like its address. */
	char changed[2048];
	snprintf(changed, sizeof(changed), "%s", text);
	char *sub = strstr(changed, "2587 submission");
	REQUIRE(sub != NULL);
	memcpy(sub, "2587 smtps     ", 15);
	REQUIRE(load_text(&next, changed, err, sizeof(err)) == 0);
	CHECK(next.listen[1].mode == SMTP_LISTENER_SMTPS);
	CHECK(config_restart_keys(&next, &c, keys, sizeof(keys)) >= 1);
	CHECK(strstr(keys, "listen") != NULL);
	CHECK(next.listen[1].mode == SMTP_LISTENER_SUBMISSION);
	config_free(&next);
	config_free(&c);
}

int main(void)
{
	REQUIRE(mkdtemp(dir) != NULL);
	uint64_t v;
	CHECK(config_parse_duration_s("30", &v) && v == 30);
	CHECK(config_parse_duration_s("30s", &v) && v == 30);
	CHECK(config_parse_duration_s("5m", &v) && v == 300);
	CHECK(config_parse_duration_s("2h", &v) && v == 7200);
	CHECK(config_parse_duration_s("5d", &v) && v == 432000);
	CHECK(!config_parse_duration_s("5x", &v));
	CHECK(!config_parse_duration_s("", &v));
	CHECK(!config_parse_duration_s("m", &v));
	CHECK(!config_parse_duration_s("-1", &v));
	CHECK(!config_parse_duration_s("1ss", &v));
	CHECK(!config_parse_duration_s("99999999999999999999d", &v));
	CHECK(config_parse_size_bytes("10M", &v) && v == 10u << 20);
	CHECK(config_parse_size_bytes("512k", &v) && v == 512u << 10);
	CHECK(config_parse_size_bytes("1G", &v) && v == 1ull << 30);
	CHECK(config_parse_size_bytes("1234", &v) && v == 1234);
	CHECK(!config_parse_size_bytes("18446744073709551615G", &v));
	CHECK(!config_parse_size_bytes("1T", &v));

	struct listen_addr la;
	CHECK(config_parse_listen("127.0.0.1:2525", &la) && la.addr.ss_family == AF_INET);
	CHECK(config_parse_listen("[::1]:25", &la) && la.addr.ss_family == AF_INET6);
	CHECK(!config_parse_listen("127.0.0.1", &la));
	CHECK(!config_parse_listen("127.0.0.1:0", &la));
	CHECK(!config_parse_listen("127.0.0.1:65536", &la));
	CHECK(!config_parse_listen("::1:25", &la));
	CHECK(!config_parse_listen("localhost:25", &la));

	/* Embedded defaults. */
	struct config c;
	char err[1024];
	REQUIRE(config_load(&c, NULL, err, sizeof(err)) == 0);
	CHECK(c.listen_count == 1 && strcmp(c.listen[0].text, "127.0.0.1:2525") == 0);
	CHECK(strcmp(c.data_dir, "ringmx-data") == 0);
	CHECK(c.fsync);
	CHECK(c.workers >= 1);
	CHECK(c.accept_domain_count == 1);
	CHECK(c.max_message_size_bytes == 10240000);
	CHECK(!c.bare_newline_normalize);
	config_free(&c);

	/* A full file. */
	const char *rcpts = write_file("rcpts", "# users\nalice@example.org\n@example.net\n");
	char text[2048];
	snprintf(text, sizeof(text),
		 "# comment\n"
		 "hostname = mx1.example.org\n"
		 "workers = 2\n"
		 "listen = 127.0.0.1:2526   # trailing comment\n"
		 "listen = [::1]:2526\n"
		 "data_dir = /var/lib/ringmx\n"
		 "fsync = never\n"
		 "accept_domains = example.org example.net.\n"
		 "recipients_file = %s\n"
		 "max_message_size = 20M\n"
		 "max_recipients = 50\n"
		 "max_connections = 100\n"
		 "max_command_line = 1k\n"
		 "bare_newline = normalize\n"
		 "command_timeout = 1m\n"
		 "data_timeout = 10m\n"
		 "idle_timeout = 30s\n"
		 "min_data_rate = 2k\n"
		 "shutdown_grace = 5s\n"
		 "store_max_bytes = 1G\n"
		 "max_inflight_data_bytes = 64M\n"
		 "segment_size = 32M\n"
		 "upstream = 127.0.0.1:2025 [::1]:2026\n"
		 "upstream_connections = 8\n"
		 "upstream_helo = gw.example.org\n"
		 "upstream_timeout = 2m\n"
		 "retry_min = 1m\n"
		 "retry_max = 2h\n"
		 "max_queue_lifetime = 3d\n",
		 rcpts);
	REQUIRE(load_text(&c, text, err, sizeof(err)) == 0);
	CHECK(strcmp(c.hostname, "mx1.example.org") == 0);
	CHECK(c.workers == 2 && c.listen_count == 2);
	CHECK(!c.fsync && c.bare_newline_normalize);
	CHECK(c.accept_domain_count == 2);
	CHECK(c.max_message_size_bytes == 20u << 20 && c.max_recipients == 50);
	CHECK(c.max_connections == 100 && c.max_command_line_bytes == 1024);
	CHECK(c.command_timeout_s == 60 && c.data_timeout_s == 600 && c.idle_timeout_s == 30);
	CHECK(c.min_data_rate_bytes_per_s == 2048);
	CHECK(c.shutdown_grace_s == 5 && c.store_max_bytes == 1ull << 30);
	CHECK(c.max_inflight_data_bytes == 64u << 20 && c.segment_size_bytes == 32u << 20);
	CHECK(c.session.max_recipients == 50 && c.session.policy == c.policy);
	CHECK(c.upstream_count == 2 && strcmp(c.upstream[1].text, "[::1]:2026") == 0);
	CHECK(c.upstream_connections == 8 && strcmp(c.upstream_helo, "gw.example.org") == 0);
	CHECK(c.upstream_timeout_s == 120 && c.retry_min_s == 60 && c.retry_max_s == 7200);
	CHECK(c.max_queue_lifetime_s == 3 * 86400);
	config_free(&c);

	/* Forwarding defaults: no upstream, HELO name = hostname. */
	REQUIRE(load_text(&c, "hostname = mx.example.org\n", err, sizeof(err)) == 0);
	CHECK(c.upstream_count == 0 && strcmp(c.upstream_helo, "mx.example.org") == 0);
	CHECK(c.retry_min_s == 300 && c.retry_max_s == 3600 && c.max_queue_lifetime_s == 432000);
	CHECK(c.min_data_rate_bytes_per_s == MIN_DATA_RATE_DEFAULT_BYTES_PER_S);
	config_free(&c);

	/* log_level, and config_print's output reads back to the same print. */
	REQUIRE(load_text(&c, "log_level = debug\naccept_domains = a.example B.example.\n"
			  "upstream = 127.0.0.1:2025\nretry_min = 90\nmetrics_listen = off\n",
			  err, sizeof(err)) == 0);
	CHECK(c.log_level == 3 && !c.metrics_enabled);
	char first[8192], second[8192];
	FILE *f = fmemopen(first, sizeof(first), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	config_free(&c);
	CHECK(strstr(first, "accept_domains = a.example B.example\n") != NULL);
	CHECK(strstr(first, "retry_min = 90s\n") != NULL);
	CHECK(strstr(first, "metrics_listen = off\n") != NULL);
	REQUIRE(load_text(&c, first, err, sizeof(err)) == 0);
	f = fmemopen(second, sizeof(second), "w");
	REQUIRE(f != NULL);
	config_print(&c, f);
	REQUIRE(fclose(f) == 0);
	config_free(&c);
	CHECK(strcmp(first, second) == 0);
	expect_error("log_level = loud\n", ":1: log_level");

	expect_error("workers = 2\nbogus = 1\n", "ringmx.conf:2: unknown key 'bogus'");
	expect_error("\n\ncommand_timeout = 5x\n", ":3: command_timeout");
	expect_error("max_message_size = lots\n", ":1: max_message_size");
	expect_error("fsync = sometimes\n", ":1: fsync");
	expect_error("bare_newline = maybe\n", ":1: bare_newline");
	expect_error("listen = nowhere\n", ":1: listen");
	expect_error("workers = 0\n", ":1: workers");
	expect_error("max_command_line = 100\n", ":1: max_command_line");
	expect_error("hostname = bad_name!\n", ":1: hostname");
	/* An empty label is no domain: refused, not trimmed into one that
	 * config_print writes differently each time it is read back (found by
	 * fuzz_config). */
	expect_error("hostname = mx..example.org\n", ":1: hostname");
	expect_error("accept_domains = example..org\n", ":1: accept_domains: 'example..org'");
	expect_error("accept_domains = example.org..\n", ":1: accept_domains: 'example.org..'");
	expect_error("accept_domains = a.example, .\n", ":1: accept_domains: '.'");
	expect_error("accept_domains = \n", ":1: accept_domains: empty value");
	expect_error("just some words\n", ":1: expected 'key = value'");
	expect_error("recipients_file = /nonexistent/ringmx-rcpts\n", "cannot open");
	expect_error("segment_size = 1M\n", "segment_size");
	/* A segment must hold the largest record: the largest message with the
	 * envelope of max_recipients long recipients (64k of slack was not
	 * enough: 1000 recipients of 256 bytes take 259 KiB). */
	expect_error("segment_size = 2M\nmax_message_size = 1900k\n",
		     "segment_size (2097152) cannot hold the largest record");
	expect_error("segment_size = 2M\nmax_message_size = 1M\nmax_recipients = 5000\n",
		     "cannot hold the largest record");
	REQUIRE(load_text(&c, "segment_size = 2M\nmax_message_size = 1M\n", err, sizeof(err)) ==
		0);
	uint64_t record = config_record_max_bytes(&c);
	CHECK(record % 8 == 0);
	CHECK(record >= (1u << 20) + 1000ull * (3 + SMTP_PATH_MAX_BYTES) + SMTP_RECEIVED_HEADER_MAX_BYTES);
	CHECK(record <= (2u << 20) - SEGMENT_HEADER_BYTES);
	config_free(&c);
	/* A message of the advertised size must fit the in-flight bound. */
	expect_error("max_message_size = 2M\nmax_inflight_data_bytes = 2M\n",
		     "max_inflight_data_bytes (2097152) must exceed max_message_size");
	expect_error("min_data_rate = 0\n", ":1: min_data_rate");
	expect_error("upstream = 127.0.0.1:25 relay\n", ":1: upstream: 'relay'");
	expect_error("retry_min = 2h\nretry_max = 1h\n", "retry_min");
	expect_error("upstream_connections = 0\n", ":1: upstream_connections");
	const char *bad_rcpts = write_file("bad-rcpts", "alice@example.org\nnot an address\n");
	snprintf(text, sizeof(text), "recipients_file = %s\n", bad_rcpts);
	expect_error(text, "bad-rcpts:2:");

	/* Every bad line is reported, one per line, in file order. */
	struct config many;
	char errs[2048];
	CHECK(load_text(&many, "workers = 0\nfsync = sometimes\nok_line_missing_equals\n"
			       "hostname = mx.example.org\nbogus = 1\n",
			errs, sizeof(errs)) == -1);
	CHECK(strstr(errs, ":1: workers") != NULL);
	CHECK(strstr(errs, ":2: fsync") != NULL);
	CHECK(strstr(errs, ":3: expected 'key = value'") != NULL);
	CHECK(strstr(errs, ":5: unknown key") != NULL || strstr(errs, ":5: bogus") != NULL);
	CHECK(strstr(errs, ":4:") == NULL);
	unsigned lines = 0;
	for (const char *q = errs; *q; q++)
		lines += *q == '\n';
	CHECK_EQ_U(lines, 3); /* four messages, three separators */
	/* Too many to keep: cut, and said so. */
	char lots[8192] = "";
	for (int i = 0; i < 200; i++)
		strcat(lots, "workers = 0\n");
	char small[256];
	CHECK(load_text(&many, lots, small, sizeof(small)) == -1);
	CHECK(strlen(small) < sizeof(small));
	CHECK(strstr(small, "(more errors not shown)") != NULL);

	/* Reload: restart-only keys keep their running values and are named. */
	struct config running, next;
	char keys[256];
	REQUIRE(load_text(&running, "workers = 2\nlisten = 127.0.0.1:2525\n"
				    "accept_domains = a.example\nmax_recipients = 10\n",
			  err, sizeof(err)) == 0);
	REQUIRE(load_text(&next, "workers = 3\nlisten = 127.0.0.1:2526\n"
				 "accept_domains = b.example\nmax_recipients = 20\n"
				 "hostname = other.example\n",
			  err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&next, &running, keys, sizeof(keys)), 4);
	/* upstream_helo follows hostname when not set */
	CHECK(strcmp(keys, "hostname,workers,listen,upstream_helo") == 0);
	CHECK_EQ_U(next.workers, 2);
	CHECK(strcmp(next.listen[0].text, "127.0.0.1:2525") == 0);
	CHECK(strcmp(next.hostname, running.hostname) == 0);
	CHECK_EQ_U(next.session.hostname.len, strlen(running.hostname));
	CHECK_EQ_U(next.max_recipients, 20);          /* live */
	CHECK_EQ_U(next.session.max_recipients, 20);
	CHECK(strcmp(next.accept_domains_text, "b.example") == 0);
	struct config same;
	REQUIRE(load_text(&same, "workers = 2\nlisten = 127.0.0.1:2525\n", err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&same, &running, keys, sizeof(keys)), 0);
	CHECK(keys[0] == '\0');
	config_free(&running);
	config_free(&next);
	config_free(&same);

	/* A reload cannot raise the largest record past what the running
	 * segments hold: both limits keep their running values. */
	REQUIRE(load_text(&running, "segment_size = 4M\nmax_message_size = 1M\n", err,
			  sizeof(err)) == 0);
	REQUIRE(load_text(&next, "segment_size = 64M\nmax_message_size = 1M\n"
				 "max_recipients = 20000\n",
			  err, sizeof(err)) == 0);
	CHECK_EQ_U(config_restart_keys(&next, &running, keys, sizeof(keys)), 2);
	CHECK(strcmp(keys, "segment_size,max_message_size/max_recipients") == 0);
	CHECK_EQ_U(next.max_recipients, running.max_recipients);
	CHECK_EQ_U(next.session.max_recipients, running.max_recipients);
	config_free(&running);
	config_free(&next);

	test_auth_keys();
	test_error_budget_keys();
	test_tls_keys();
	test_upstream_tls_keys();
	test_upstream_chunking_key();
	test_limits_keys();
	test_proxy_keys();

	unlink(write_file("ringmx.conf", ""));
	unlink(rcpts);
	unlink(bad_rcpts);
	rmdir(dir);
	return test_main_end("config");
}
