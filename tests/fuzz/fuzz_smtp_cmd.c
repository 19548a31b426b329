/*
 * fuzz_smtp_cmd.c - the argument parsers of proto/smtp_cmd: paths (MAIL
 * and RCPT, with and without SMTPUTF8), MAIL and RCPT parameters, HELO
 * names and BDAT sizes, all on the same arbitrary argument.
 *
 * Input: a settings byte (which keyword to strip, whether <> and non-ASCII
 * are allowed), then the argument, copied to a buffer of exactly its size.
 * Invariants: every span a parser returns lies inside the argument; an
 * accepted path respects RFC 5321's lengths, carries no line-breaking or
 * NUL byte, is ASCII unless allowed, and parses again to itself when put
 * back between <>; an accepted HELO name is a bounded token that is safe
 * in Received:; parsing is a function of the bytes (same input, same
 * result).
 */
#include "../../common/bounds.h"
#include "../../proto/smtp_cmd.h"

#include "fuzz_common.h"

static void check_path(struct span arg, bool allow_null, bool utf8)
{
	struct smtp_path path;
	struct span rest;
	enum smtp_parse_result r = smtp_parse_path(arg, allow_null, utf8, &path, &rest);
	struct smtp_path again_path;
	struct span again_rest;
	FUZZ_CHECK(smtp_parse_path(arg, allow_null, utf8, &again_path, &again_rest) == r);
	if (r != SMTP_PARSE_OK)
		return;
	FUZZ_CHECK(fuzz_span_within(rest.ptr, rest.len, arg.ptr, arg.len));
	FUZZ_CHECK(rest.ptr + rest.len == arg.ptr + arg.len);
	if (path.null_path) {
		FUZZ_CHECK(allow_null && path.address.len == 0);
		return;
	}
	FUZZ_CHECK(path.address.len > 0 && path.address.len <= SMTP_PATH_MAX_BYTES);
	FUZZ_CHECK(fuzz_span_within(path.address.ptr, path.address.len, arg.ptr, arg.len));
	FUZZ_CHECK(path.address.ptr + path.address.len <= rest.ptr);
	FUZZ_CHECK(fuzz_span_within(path.local.ptr, path.local.len, path.address.ptr,
				    path.address.len));
	FUZZ_CHECK(path.domain.len <= SMTP_DOMAIN_MAX_BYTES);
	if (path.domain.len) {
		FUZZ_CHECK(fuzz_span_within(path.domain.ptr, path.domain.len, path.address.ptr,
					    path.address.len));
		/* address is local@domain, contiguous */
		FUZZ_CHECK(path.local.ptr == path.address.ptr);
		FUZZ_CHECK(path.local.len + 1 + path.domain.len == path.address.len);
		FUZZ_CHECK(path.address.ptr[path.local.len] == '@');
	} else {
		FUZZ_CHECK(!allow_null); /* only the bare postmaster has no domain */
	}
	bool high = false;
	for (size_t i = 0; i < path.address.len; i++) {
		uint8_t c = path.address.ptr[i];
		FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0');
		high |= c >= 0x80;
	}
	/* non_ascii also covers an ignored source route, so it may be set
	 * for an ASCII address, never the other way round. */
	FUZZ_CHECK(!high || path.non_ascii);
	FUZZ_CHECK(utf8 || !high);

	/* The address parses again to itself. */
	size_t n = path.address.len + 2;
	uint8_t *again = malloc(n);
	FUZZ_CHECK(again != NULL);
	again[0] = '<';
	memcpy(again + 1, path.address.ptr, path.address.len);
	again[n - 1] = '>';
	struct smtp_path p2;
	struct span r2;
	FUZZ_CHECK(smtp_parse_path(span_make(again, n), allow_null, utf8, &p2, &r2) ==
		   SMTP_PARSE_OK);
	FUZZ_CHECK(p2.address.len == path.address.len &&
		   memcmp(p2.address.ptr, path.address.ptr, path.address.len) == 0);
	FUZZ_CHECK(p2.local.len == path.local.len && p2.domain.len == path.domain.len);
	FUZZ_CHECK(r2.len == 0);
	free(again);
}

static void check_helo(struct span arg)
{
	struct span name;
	if (smtp_parse_helo(arg, &name) != SMTP_PARSE_OK)
		return;
	FUZZ_CHECK(name.len > 0 && name.len <= SMTP_DOMAIN_MAX_BYTES);
	FUZZ_CHECK(fuzz_span_within(name.ptr, name.len, arg.ptr, arg.len));
	/* A domain of letters, digits, '-' and '.', or an address literal,
	 * whose general form (RFC 5321 4.1.3) may hold any visible ASCII
	 * but "[\]" inside its brackets. */
	bool literal = name.ptr[0] == '[';
	FUZZ_CHECK(!literal || name.ptr[name.len - 1] == ']');
	for (size_t i = 0; i < name.len; i++) {
		uint8_t c = name.ptr[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '.';
		if (literal && i > 0 && i + 1 < name.len)
			ok = c > 0x20 && c < 0x7f && c != '[' && c != '\\' && c != ']';
		FUZZ_CHECK(ok || (literal && (i == 0 || i + 1 == name.len)));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	uint8_t *buf = fuzz_exact_copy(in.p, in.n);
	struct span arg = span_make(buf, in.n);

	struct span after = arg;
	const char *keyword = settings & 1 ? "TO:" : "FROM:";
	if (smtp_strip_keyword(arg, keyword, &after)) {
		FUZZ_CHECK(fuzz_span_within(after.ptr, after.len, arg.ptr, arg.len));
		FUZZ_CHECK(after.ptr + after.len == arg.ptr + arg.len);
	}
	check_path(after, !(settings & 1), settings & 2);

	struct smtp_mail_params mp, mp2;
	memset(&mp, 0xa5, sizeof(mp));
	enum smtp_parse_result r = smtp_parse_mail_params(arg, &mp);
	FUZZ_CHECK(smtp_parse_mail_params(arg, &mp2) == r);
	if (r == SMTP_PARSE_OK) {
		FUZZ_CHECK(mp.body <= SMTP_BODY_BINARYMIME);
		FUZZ_CHECK(mp.size_given || mp.size_bytes == 0);
	}
	(void)smtp_parse_rcpt_params(arg);
	check_helo(arg);

	uint64_t bdat_bytes = 0;
	bool last = false;
	if (smtp_parse_bdat(arg, &bdat_bytes, &last) == SMTP_PARSE_OK)
		FUZZ_CHECK(bdat_bytes <= (1ull << 63));
	free(buf);
	return 0;
}
