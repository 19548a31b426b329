/*
 * fuzz_record.c - the record codec of storage/record: what recovery and
 * the store tool read from a segment, where any byte may be damaged.
 *
 * Input: a mode byte, eight bytes of segment salt, then the rest.
 *   mode 0: the rest is a segment's bytes, handed to record_check as they
 *           are, and to record_envelope_decode and record_env_next as an
 *           envelope;
 *   mode 1: the same, with the CRC field set so that it checks (the fuzzer
 *           cannot forge a CRC32C; a damaged record whose CRC happens to
 *           check must still never be read past its bytes);
 *   mode 2: the rest is a list of envelope items (tag, length byte,
 *           value) and a body, encoded with record_env_put, sealed with
 *           record_seal_parts and salted as the store does; record_check
 *           must accept exactly those bytes and give back the same
 *           envelope and body, and record_envelope_decode the facts put in.
 * Each buffer is exactly as large as its bytes, so any read past them is
 * an AddressSanitizer report.
 */
#include "../../common/le.h"
#include "../../storage/crc32c.h"
#include "../../storage/record.h"

#include "fuzz_common.h"

/* Walks an envelope both ways and checks they agree and stay inside it. */
static void check_envelope(struct span env)
{
	struct record_envelope e;
	record_envelope_decode(env, &e);
	struct span parts[] = { e.reverse_path, e.helo, e.client_addr, e.protocol };
	for (size_t i = 0; i < RMX_ARRAY_LEN(parts); i++)
		FUZZ_CHECK(parts[i].len == 0 ||
			   fuzz_span_within(parts[i].ptr, parts[i].len, env.ptr, env.len));
	struct record_recipient_cursor c = record_recipient_first(&e);
	struct span address;
	uint32_t seen = 0;
	while (record_recipient_next(&c, &address)) {
		FUZZ_CHECK(address.len == 0 ||
			   fuzz_span_within(address.ptr, address.len, env.ptr, env.len));
		seen++;
		FUZZ_CHECK(seen <= e.recipient_count);
	}
	FUZZ_CHECK(seen == e.recipient_count);

	struct span cursor = env, value;
	uint8_t tag;
	bool malformed = false;
	uint32_t items = 0;
	while (record_env_next(&cursor, &tag, &value, &malformed)) {
		FUZZ_CHECK(value.len == 0 || fuzz_span_within(value.ptr, value.len, env.ptr, env.len));
		items += tag == RECORD_TAG_RECIPIENT;
	}
	FUZZ_CHECK(items == e.recipient_count && malformed == e.malformed);
}

static void check_bytes(const uint8_t *p, size_t n, uint64_t salt)
{
	struct record_view v;
	enum record_check_result r = record_check(p, n, salt, &v);
	if (r == RECORD_OK) {
		FUZZ_CHECK(v.header.length >= RECORD_HEADER_BYTES && v.header.length <= n);
		FUZZ_CHECK(fuzz_span_within(v.envelope.ptr, v.envelope.len, p, n));
		FUZZ_CHECK(fuzz_span_within(v.body.ptr, v.body.len, p, n));
		FUZZ_CHECK(v.padded_length % RECORD_ALIGN_BYTES == 0);
		FUZZ_CHECK(v.padded_length >= v.header.length &&
			   v.padded_length < (uint64_t)v.header.length + RECORD_ALIGN_BYTES);
		check_envelope(v.envelope);
	}
	check_envelope(span_make(p, n));
}

/* Sets the CRC of the record at p so that record_check accepts it, when
 * its header says a length that the bytes hold. */
static void forge_crc(uint8_t *p, size_t n, uint64_t salt)
{
	if (n < RECORD_HEADER_BYTES)
		return;
	uint32_t length = get_le32(p + 12);
	if (length < 8 || length > n)
		return;
	uint32_t crc = crc32c(0, p + 8, length - 8);
	put_le32(p + 4, record_crc_salted(crc, salt));
}

struct expected {
	struct span reverse_path, helo, client_addr, protocol;
	struct span recipients[64];
	uint32_t recipient_count;
	uint32_t recipients_kept;
};

static void round_trip(struct fuzz_input *in, uint64_t salt)
{
	struct bytebuf env = { 0 };
	struct expected want = { 0 };
	uint8_t items = fuzz_u8(in) % 32;
	for (uint8_t i = 0; i < items && in->n; i++) {
		uint8_t tag = (uint8_t)(1 + fuzz_u8(in) % 255); /* 0 is no tag */
		size_t len = fuzz_u8(in);
		if (len > in->n)
			len = in->n;
		struct span value = span_make(in->p, len);
		in->p += len;
		in->n -= len;
		FUZZ_CHECK(record_env_put(&env, (enum record_tag)tag, value) == 0);
		switch (tag) {
		case RECORD_TAG_REVERSE_PATH: want.reverse_path = value; break;
		case RECORD_TAG_HELO: want.helo = value; break;
		case RECORD_TAG_CLIENT_ADDR: want.client_addr = value; break;
		case RECORD_TAG_PROTOCOL: want.protocol = value; break;
		case RECORD_TAG_RECIPIENT:
			if (want.recipients_kept < RMX_ARRAY_LEN(want.recipients))
				want.recipients[want.recipients_kept++] = value;
			want.recipient_count++;
			break;
		default: break;
		}
	}
	struct iovec body = { (void *)in->p, in->n };
	struct record_header h;
	struct iovec parts[RECORD_SEALED_PARTS];
	uint64_t queue_id = queue_id_make(3, 7, 4096);
	record_seal_parts(&h, queue_id, 1700000000123, span_make(env.data, env.len), body, parts);

	/* Laid out as store_append writes it: the CRC salted. */
	size_t total = 0;
	for (int i = 0; i < RECORD_SEALED_PARTS; i++)
		total += parts[i].iov_len;
	FUZZ_CHECK(total == record_padded_length(env.len, in->n));
	uint8_t *rec = malloc(total);
	FUZZ_CHECK(rec != NULL);
	size_t at = 0;
	for (int i = 0; i < RECORD_SEALED_PARTS; i++) {
		if (parts[i].iov_len)
			memcpy(rec + at, parts[i].iov_base, parts[i].iov_len);
		at += parts[i].iov_len;
	}
	put_le32(rec + 4, record_crc_salted(h.crc32c, salt));

	struct record_view v;
	FUZZ_CHECK(record_check(rec, total, salt, &v) == RECORD_OK);
	FUZZ_CHECK(v.padded_length == total && v.header.queue_id == queue_id);
	FUZZ_CHECK(v.header.arrival_unix_ms == 1700000000123);
	FUZZ_CHECK(v.envelope.len == env.len &&
		   (env.len == 0 || memcmp(v.envelope.ptr, env.data, env.len) == 0));
	FUZZ_CHECK(v.body.len == in->n && (in->n == 0 || memcmp(v.body.ptr, in->p, in->n) == 0));
	/* Another segment's salt, or one flipped bit, and it no longer checks. */
	FUZZ_CHECK(record_check(rec, total, salt ^ 1, &v) == RECORD_BAD_CRC);
	rec[total / 2 > 8 ? total / 2 : 8] ^= 0x10;
	FUZZ_CHECK(record_check(rec, total, salt, &v) != RECORD_OK);
	free(rec);

	struct record_envelope e;
	record_envelope_decode(span_make(env.data, env.len), &e);
	FUZZ_CHECK(!e.malformed && e.recipient_count == want.recipient_count);
	struct span got[] = { e.reverse_path, e.helo, e.client_addr, e.protocol };
	struct span put[] = { want.reverse_path, want.helo, want.client_addr, want.protocol };
	for (size_t i = 0; i < RMX_ARRAY_LEN(got); i++)
		FUZZ_CHECK(got[i].len == put[i].len &&
			   (put[i].len == 0 || memcmp(got[i].ptr, put[i].ptr, put[i].len) == 0));
	struct record_recipient_cursor c = record_recipient_first(&e);
	struct span address;
	for (uint32_t i = 0; i < want.recipients_kept; i++) {
		FUZZ_CHECK(record_recipient_next(&c, &address));
		FUZZ_CHECK(address.len == want.recipients[i].len &&
			   (address.len == 0 ||
			    memcmp(address.ptr, want.recipients[i].ptr, address.len) == 0));
	}
	check_envelope(span_make(env.data, env.len));
	bytebuf_free(&env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = { data, size };
	uint8_t mode = fuzz_u8(&in) % 3;
	uint64_t salt = 0;
	for (int i = 0; i < 8; i++)
		salt |= (uint64_t)fuzz_u8(&in) << (8 * i);
	if (mode == 2) {
		round_trip(&in, salt);
		return 0;
	}
	uint8_t *buf = fuzz_exact_copy(in.p, in.n);
	if (mode == 1)
		forge_crc(buf, in.n, salt);
	check_bytes(buf, in.n, salt);
	free(buf);
	return 0;
}
