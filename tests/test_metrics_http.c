/*
 * test_metrics_http.c - the metrics endpoint's pieces against real clients:
 * a small blocking loopback server built from the request parser and the
 * response writer (proto/http) and metrics_render (the shape of the
 * worker's endpoint, minus io_uring), answered to curl and scraped by a
 * real Prometheus. Without curl or prometheus the test exits 77 (skipped). The endpoint inside the gateway is exercised end to end by
 * tests/e2e/test_metrics.py.
 */
#include "../proto/http.h"
#include "../core/metrics.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct test_server {
	int listen_fd;
	uint16_t port;
	bool stop; /* atomic access */
	pthread_t tid;
	struct metrics_worker *metrics;
	struct metrics_static st;
	unsigned requests; /* atomic access */
	char body[64 * 1024];
};

static bool send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Answers one parsed request (or a parse error when req is NULL).
 * Returns false when the connection is to be closed. */
static bool serve_request(struct test_server *srv, int fd, const struct http_request *req,
			  unsigned error_status)
{
	const struct metrics_worker *const workers[] = { srv->metrics };
	unsigned status = req ? http_request_refusal(req) : error_status;
	enum http_body kind = HTTP_BODY_TEXT;
	size_t body_len;
	if (status != 0) {
		const char *reason = http_status_reason(status);
		body_len = (size_t)snprintf(srv->body, sizeof(srv->body), "%s\n", reason);
	} else if (req->route == HTTP_ROUTE_METRICS) {
		status = 200;
		kind = HTTP_BODY_METRICS;
		body_len = metrics_render(workers, 1, &srv->st, srv->body, sizeof(srv->body));
		REQUIRE(body_len <= sizeof(srv->body));
	} else {
		status = req->route == HTTP_ROUTE_HEALTHZ ? 200 : 503;
		body_len = (size_t)snprintf(srv->body, sizeof(srv->body), "%s\n",
					    status == 200 ? "ok" : "draining");
	}
	struct http_response r = http_response_for(req, status, kind, body_len);
	char head[HTTP_RESPONSE_HEAD_MAX_BYTES];
	size_t head_len = http_response_head(&r, head, sizeof(head));
	REQUIRE(head_len > 0);
	__atomic_add_fetch(&srv->requests, 1, __ATOMIC_RELAXED);
	if (!send_all(fd, head, head_len))
		return false;
	if (!r.head_only && !send_all(fd, srv->body, body_len))
		return false;
	return !r.close;
}

static void serve_connection(struct test_server *srv, int fd)
{
	struct http_parser p;
	http_parser_init(&p);
	uint8_t in[4096];
	bool open = true;
	while (open && !__atomic_load_n(&srv->stop, __ATOMIC_RELAXED)) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int ready = poll(&pfd, 1, 50);
		if (ready < 0 && errno != EINTR)
			break;
		if (ready <= 0)
			continue;
		ssize_t got = recv(fd, in, sizeof(in), 0);
		if (got <= 0)
			break;
		size_t off = 0;
		while (open && off < (size_t)got) {
			size_t used = 0;
			enum http_parse_status st = http_parse(&p, in + off, (size_t)got - off, &used);
			off += used;
			if (st == HTTP_PARSE_AGAIN)
				break;
			if (st == HTTP_PARSE_ERROR) {
				serve_request(srv, fd, NULL, p.error_status);
				open = false;
				break;
			}
			open = serve_request(srv, fd, &p.request, 0);
			http_parser_init(&p);
		}
	}
	/* Lingering close (RFC 9112 9.6): stop sending, then read what the
	 * client still sends for a moment, so that closing with unread input
	 * does not reset the connection before the client reads the answer. */
	if (shutdown(fd, SHUT_WR) == 0) {
		for (int rounds = 0; rounds < 10; rounds++) {
			struct pollfd pfd = { fd, POLLIN, 0 };
			if (poll(&pfd, 1, 20) <= 0)
				continue;
			if (recv(fd, in, sizeof(in), 0) <= 0)
				break;
		}
	}
	close(fd);
}

static void *server_main(void *arg)
{
	struct test_server *srv = arg;
	while (!__atomic_load_n(&srv->stop, __ATOMIC_RELAXED)) {
		struct pollfd pfd = { srv->listen_fd, POLLIN, 0 };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept(srv->listen_fd, NULL, NULL);
		if (fd >= 0)
			serve_connection(srv, fd);
	}
	return NULL;
}

static int listen_loopback(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(listen(fd, 16) == 0);
	socklen_t len = sizeof(a);
	REQUIRE(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Runs a shell command and returns its standard output (bounded). */
static bool run_capture(const char *cmd, char *out, size_t cap)
{
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return false;
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	return pclose(f) == 0;
}

static void test_curl(const struct test_server *srv)
{
	char cmd[512], out[96 * 1024];
	unsigned before = __atomic_load_n(&srv->requests, __ATOMIC_RELAXED);
	/* Two requests on one kept connection, then a HEAD. */
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -i http://127.0.0.1:%u/metrics http://127.0.0.1:%u/healthz 2>&1",
		 srv->port, srv->port);
	CHECK(run_capture(cmd, out, sizeof(out)));
	CHECK(strstr(out, "HTTP/1.1 200 OK\r\n") != NULL);
	CHECK(strstr(out, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
	CHECK(strstr(out, "ringmx_received_bytes_total 4242\n") != NULL);
	CHECK(strstr(out, "\r\n\r\nok\n") != NULL);
	CHECK_EQ_U(__atomic_load_n(&srv->requests, __ATOMIC_RELAXED), before + 2);

	/* 503 and 404 on one kept connection; POST is 405; a raw query with
	 * brackets (curl -g sends them unencoded) is ignored like any query. */
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -o /dev/null -o /dev/null -w '%%{http_code} %%{num_connects}\n' "
		 "http://127.0.0.1:%u/readyz http://127.0.0.1:%u/nope 2>&1",
		 srv->port, srv->port);
	CHECK(run_capture(cmd, out, sizeof(out)));
	if (strstr(out, "503 1\n404 0\n") == NULL)
		fprintf(stderr, "curl said: %s\n", out);
	CHECK(strstr(out, "503 1\n404 0\n") != NULL);
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -o /dev/null -w '%%{http_code}\n' -X POST -d x=1 "
		 "http://127.0.0.1:%u/metrics 2>&1", srv->port);
	CHECK(run_capture(cmd, out, sizeof(out)));
	/* The body makes it 413 before the method is looked at. */
	CHECK(strcmp(out, "413\n") == 0);
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -o /dev/null -w '%%{http_code}\n' -X DELETE "
		 "http://127.0.0.1:%u/metrics 2>&1", srv->port);
	CHECK(run_capture(cmd, out, sizeof(out)));
	CHECK(strcmp(out, "405\n") == 0);
	snprintf(cmd, sizeof(cmd),
		 "curl -sS -g -o /dev/null -w '%%{http_code}\n' "
		 "'http://127.0.0.1:%u/metrics?name[]=a{b}|c^d' 2>&1", srv->port);
	CHECK(run_capture(cmd, out, sizeof(out)));
	CHECK(strcmp(out, "200\n") == 0);

	snprintf(cmd, sizeof(cmd), "curl -sS -I --http1.0 http://127.0.0.1:%u/healthz 2>&1",
		 srv->port);
	CHECK(run_capture(cmd, out, sizeof(out)));
	CHECK(strstr(out, "HTTP/1.1 200 OK\r\n") != NULL);
	CHECK(strstr(out, "Content-Length: 3\r\n") != NULL);
	CHECK(strstr(out, "Connection: close\r\n") != NULL);
}

/* Starts Prometheus scraping the server every second and waits (at most
 * 20 s) until its query API returns the value the server exports. */
static void test_prometheus_scrape(const struct test_server *srv)
{
	char dir[] = "/tmp/ringmx-prom-XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	char path[128], arg_config[160], arg_data[160], arg_listen[64];
	snprintf(path, sizeof(path), "%s/prometheus.yml", dir);
	FILE *f = fopen(path, "w");
	REQUIRE(f != NULL);
	fprintf(f,
		"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
		"scrape_configs:\n  - job_name: ringmx\n    static_configs:\n"
		"      - targets: ['127.0.0.1:%u']\n",
		srv->port);
	REQUIRE(fclose(f) == 0);
	uint16_t prom_port;
	int probe = listen_loopback(&prom_port); /* a free port, released just before use */
	close(probe);
	snprintf(arg_config, sizeof(arg_config), "--config.file=%s", path);
	snprintf(arg_data, sizeof(arg_data), "--storage.tsdb.path=%s/data", dir);
	snprintf(arg_listen, sizeof(arg_listen), "--web.listen-address=127.0.0.1:%u", prom_port);
	char arg_log[] = "--log.level=error";

	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		/* Prometheus goes when this test goes, however it ends. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
			_exit(127);
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, STDOUT_FILENO);
			dup2(devnull, STDERR_FILENO);
		}
		execlp("prometheus", "prometheus", arg_config, arg_data, arg_listen, arg_log,
		       (char *)NULL);
		_exit(127);
	}
	bool up = false, value = false;
	char cmd[256], out[8192];
	for (int tries = 0; tries < 80 && !(up && value); tries++) {
		usleep(250 * 1000);
		snprintf(cmd, sizeof(cmd),
			 "curl -sS 'http://127.0.0.1:%u/api/v1/query?query=up' 2>/dev/null",
			 prom_port);
		if (run_capture(cmd, out, sizeof(out)))
			up = strstr(out, "\"job\":\"ringmx\"") != NULL && strstr(out, "\"1\"]") != NULL;
		snprintf(cmd, sizeof(cmd),
			 "curl -sS 'http://127.0.0.1:%u/api/v1/query?query=ringmx_received_bytes_total'"
			 " 2>/dev/null", prom_port);
		if (run_capture(cmd, out, sizeof(out)))
			value = strstr(out, "\"4242\"]") != NULL;
	}
	if (!(up && value))
		fprintf(stderr, "prometheus never scraped the server: %s\n", out);
	CHECK(up);
	CHECK(value);
	REQUIRE(kill(pid, SIGTERM) == 0);
	int status = 0;
	REQUIRE(waitpid(pid, &status, 0) == pid);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

static void test_real_clients(void)
{
	static struct test_server srv;
	static struct metrics_worker w;
	metrics_worker_init(&w);
	metrics_add(&w.received_bytes, 4242);
	srv.metrics = &w;
	REQUIRE(metrics_static_init(&srv.st, "0.1.0", false, NULL, 0) == 0);
	srv.listen_fd = listen_loopback(&srv.port);
	REQUIRE(pthread_create(&srv.tid, NULL, server_main, &srv) == 0);
	test_curl(&srv);
	test_prometheus_scrape(&srv);
	__atomic_store_n(&srv.stop, true, __ATOMIC_RELAXED);
	REQUIRE(pthread_join(srv.tid, NULL) == 0);
	close(srv.listen_fd);
}

int main(void)
{
	/* Real clients only: without them there is nothing to test here, and
	 * the test says so (77) rather than passing. */
	test_require_program("test_metrics_http", "curl", "curl");
	test_require_program("test_metrics_http", "prometheus", "prometheus");
	test_real_clients();
	return test_main_end("test_metrics_http");
}
