/*
 * test.h - the unit-test harness: checks that count and report, no framework.
 *
 * CHECK records a failure with file:line and goes on; REQUIRE stops the test
 * program. test_main_end() prints "N passed, N failed" and returns the exit
 * code (0, or 1 on any failure). Header-only; one test program per module.
 */
#ifndef RINGMX_TEST_H
#define RINGMX_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long test_checks_passed;
static unsigned long test_checks_failed;

#define CHECK(cond)                                                                \
	do {                                                                       \
		if (cond) {                                                        \
			test_checks_passed++;                                      \
		} else {                                                           \
			test_checks_failed++;                                      \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,     \
				__LINE__, #cond);                                  \
		}                                                                  \
	} while (0)

#define CHECK_EQ_U(a, b)                                                           \
	do {                                                                       \
		unsigned long long check_a_ = (unsigned long long)(a);             \
		unsigned long long check_b_ = (unsigned long long)(b);             \
		if (check_a_ == check_b_) {                                        \
			test_checks_passed++;                                      \
		} else {                                                           \
			test_checks_failed++;                                      \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%llu != %llu)\n", \
				__FILE__, __LINE__, #a, #b, check_a_, check_b_);   \
		}                                                                  \
	} while (0)

#define CHECK_MEM(p, n, q, m)                                                      \
	do {                                                                       \
		size_t check_n_ = (n), check_m_ = (m);                             \
		if (check_n_ == check_m_ && memcmp((p), (q), check_n_) == 0) {     \
			test_checks_passed++;                                      \
		} else {                                                           \
			test_checks_failed++;                                      \
			fprintf(stderr, "%s:%d: CHECK failed: \"%.*s\" == \"%.*s\"\n", \
				__FILE__, __LINE__, (int)check_n_, (const char *)(p), \
				(int)check_m_, (const char *)(q));                 \
		}                                                                  \
	} while (0)

#define REQUIRE(cond)                                                              \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__,   \
				__LINE__, #cond);                                  \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

static inline int test_main_end(const char *name)
{
	printf("%s: %lu passed, %lu failed\n", name, test_checks_passed, test_checks_failed);
	if (test_checks_passed == 0 && test_checks_failed == 0) {
		fprintf(stderr, "%s: no checks ran\n", name);
		return 1;
	}
	return test_checks_failed ? 1 : 0;
}

/* Unit tests that also check their output with a real program (python3's
 * email package, promtool, curl) do that in a separate ctest entry,
 * "<test>_peer", which runs the program with --peer: it exits 77 (skipped,
 * never passed) when the program is missing. True when argv asks for it. */
static inline bool test_peer_mode(int argc, char **argv)
{
	return argc > 1 && strcmp(argv[1], "--peer") == 0;
}

/* Exits 77 unless program is on PATH (the peer-check entry only). */
static inline void test_require_program(const char *test, const char *program,
					const char *package)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", program);
	if (system(cmd) != 0) {
		printf("%s: SKIP: %s is not installed (Debian package %s)\n", test, program,
		       package);
		exit(77);
	}
}

#endif
