/*
 * fuzz_config.c - the configuration loader (core/config.c): the text of a
 * configuration file, whatever it holds, through config_load, which reads
 * only from a path. The text goes into a memory file and the loader opens
 * it as /proc/self/fd/N.
 *
 * Input: a byte choosing the size of the error buffer, then the file's
 * text; after a NUL byte, a recipient table, and after a second one an
 * auth_users table (user:hash lines), each handed to the loader through a
 * memory file of its own and a recipients_file or auth_users line added at
 * the end. Inputs that name a file of their own (recipients_file,
 * auth_users, upstream_ca, tls_cert, tls_key) are left alone: they would
 * read whatever file of this machine the fuzzer spells, which is neither
 * repeatable nor bounded.
 * Invariants: the load succeeds or fails with a message that ends inside
 * the error buffer; a loaded configuration keeps its bounds (listeners,
 * line length, session settings derived); and what config_print writes
 * loads again and prints the same (the printed form is a fixed point).
 */
#include "../../core/config.h"

#include "fuzz_common.h"

#include <sys/mman.h>
#include <unistd.h>

/* A memory file holding p[0..n); its path in path. -1 on failure. */
static int memory_file(const void *p, size_t n, char *path, size_t cap)
{
	int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		FUZZ_CHECK(w > 0);
		b += w;
		n -= (size_t)w;
	}
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

/* What config_print writes, in a heap buffer the caller frees. */
static char *printed(const struct config *c, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	FUZZ_CHECK(f != NULL);
	config_print(c, f);
	FUZZ_CHECK(fclose(f) == 0);
	return text;
}

static bool names_a_file(const uint8_t *p, size_t n)
{
	static const char *const keys[] = { "recipients_file", "auth_users", "upstream_ca",
					    "tls_cert", "tls_key" };
	for (size_t k = 0; k < RMX_ARRAY_LEN(keys); k++)
		if (memmem(p, n, keys[k], strlen(keys[k])))
			return true;
	return false;
}

static void check_loaded(const struct config *c)
{
	FUZZ_CHECK(c->listen_count >= 1 && c->listen_count <= LISTENERS_MAX);
	FUZZ_CHECK(c->workers >= 1 && c->workers <= WORKERS_MAX);
	FUZZ_CHECK(c->max_command_line_bytes >= SMTP_COMMAND_LINE_MIN_BYTES &&
		   c->max_command_line_bytes <= SMTP_COMMAND_LINE_MAX_BYTES);
	FUZZ_CHECK(c->max_message_size_bytes <= SMTP_MESSAGE_SIZE_MAX_BYTES);
	FUZZ_CHECK(c->upstream_count <= UPSTREAMS_MAX);
	FUZZ_CHECK(c->policy != NULL && c->session.policy == c->policy);
	FUZZ_CHECK(c->session.hostname.len == strlen(c->hostname) && c->session.hostname.len > 0);
	FUZZ_CHECK(memchr(c->hostname, '\0', sizeof(c->hostname)) != NULL);
	FUZZ_CHECK(c->retry_min_s <= c->retry_max_s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t err_caps[4] = { 0, 1, 40, 512 };
	struct fuzz_input in = { data, size };
	size_t errlen = err_caps[fuzz_u8(&in) & 3];
	const uint8_t *nul = memchr(in.p, '\0', in.n);
	size_t text_len = nul ? (size_t)(nul - in.p) : in.n;
	if (names_a_file(in.p, text_len))
		return 0;

	char rcpt_path[64] = "", users_path[64] = "";
	int rcpt_fd = -1, users_fd = -1;
	if (nul) {
		const uint8_t *rest = nul + 1;
		size_t rest_len = in.n - text_len - 1;
		const uint8_t *nul2 = memchr(rest, '\0', rest_len);
		size_t rcpt_len = nul2 ? (size_t)(nul2 - rest) : rest_len;
		rcpt_fd = memory_file(rest, rcpt_len, rcpt_path, sizeof(rcpt_path));
		if (nul2)
			users_fd = memory_file(nul2 + 1, rest_len - rcpt_len - 1, users_path,
					       sizeof(users_path));
	}
	size_t cap = text_len + sizeof(rcpt_path) + sizeof(users_path) + 64;
	char *text = malloc(cap);
	FUZZ_CHECK(text != NULL);
	memcpy(text, in.p, text_len);
	size_t len = text_len;
	if (rcpt_fd >= 0)
		len += (size_t)snprintf(text + len, cap - len, "\nrecipients_file = %s\n", rcpt_path);
	if (users_fd >= 0)
		len += (size_t)snprintf(text + len, cap - len, "auth_users = %s\n", users_path);

	char path[64];
	int fd = memory_file(text, len, path, sizeof(path));
	char *err = malloc(errlen ? errlen : 1);
	FUZZ_CHECK(err != NULL);
	struct config *c = calloc(2, sizeof(*c));
	FUZZ_CHECK(c != NULL);
	int rc = config_load(&c[0], path, err, errlen);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc != 0) {
		FUZZ_CHECK(errlen == 0 || memchr(err, '\0', errlen) != NULL);
		FUZZ_CHECK(errlen < 2 || err[0] != '\0');
		FUZZ_CHECK(c[0].policy == NULL);
	} else {
		check_loaded(&c[0]);
		size_t first_len, second_len;
		char *first = printed(&c[0], &first_len);
		char again_path[64];
		int again_fd = memory_file(first, first_len, again_path, sizeof(again_path));
		char again_err[512];
		int again = config_load(&c[1], again_path, again_err, sizeof(again_err));
		if (again != 0)
			fprintf(stderr, "printed configuration fails to load: %s\n%s\n", again_err,
				first);
		FUZZ_CHECK(again == 0);
		check_loaded(&c[1]);
		char *second = printed(&c[1], &second_len);
		FUZZ_CHECK(first_len == second_len && memcmp(first, second, first_len) == 0);
		free(first);
		free(second);
		config_free(&c[1]);
		close(again_fd);
	}
	config_free(&c[0]);
	free(c);
	free(err);
	free(text);
	close(fd);
	if (rcpt_fd >= 0)
		close(rcpt_fd);
	if (users_fd >= 0)
		close(users_fd);
	return 0;
}
