/*
 * fuzz_smtp_data.c - the body framing DFA (proto/smtp_data) three ways:
 * scanned whole, scanned in the pieces the input chooses, and stepped byte
 * by byte through the pure table (smtp_data_next); all three must store the
 * same bytes and report the same end, bare bytes and stop. Then against a
 * reference written here from the rules, line by line, without the table:
 *
 *   DATA     a line ends at CRLF, at a bare LF, or at a CR not followed by
 *            LF (both repaired to CRLF). "." CRLF right after a CRLF (or as
 *            the first line) ends the data. A line that starts with '.' is
 *            stored as received after a CRLF, with its dot doubled after a
 *            repaired line end, and a lone "." not ended by CRLF is doubled.
 *   BDAT     every line's leading '.' doubled, bare CR/LF repaired, and the
 *            last line completed with CRLF by smtp_data_finish.
 *   BINARY   bytes as received, a '.' at the start or after CRLF doubled.
 *
 * With stop_on_bare the scan must stop just after the byte that reveals the
 * first bare CR or LF. An unfinished DATA body is completed with
 * "\r\n.\r\n" fed as one more piece, so the reference always has an end.
 *
 * Input: a settings byte (kind, stop_on_bare), split bytes up to a zero,
 * then the body bytes.
 */
#include "../../proto/smtp_data.h"

#include "fuzz_common.h"

struct sink_buf {
	uint8_t *p;
	size_t len, cap;
};

static void sink_put(void *ctx, const uint8_t *p, size_t n)
{
	struct sink_buf *b = ctx;
	FUZZ_CHECK(n > 0 && p != NULL);
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 16;
		b->p = realloc(b->p, b->cap);
		FUZZ_CHECK(b->p != NULL);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* What a scan of the whole body reported, summed over its pieces. */
struct outcome {
	struct sink_buf out;
	size_t consumed;
	unsigned bare;
	bool end, stopped;
};

static void outcome_free(struct outcome *o)
{
	free(o->out.p);
}

/* Feeds p[0..n) in pieces (all at once when nsplits is 0), each in a
 * buffer of exactly its size, until the end of the data or a stop. */
static void scan_pieces(enum smtp_data_kind kind, bool stop, const uint8_t *p, size_t n,
			const uint8_t *splits, size_t nsplits, struct smtp_data_scanner *d,
			struct outcome *o)
{
	size_t split = 0;
	while (o->consumed < n && !o->end && !o->stopped) {
		size_t piece = nsplits ? splits[split++ % nsplits] : n;
		if (piece > n - o->consumed)
			piece = n - o->consumed;
		uint8_t *view = fuzz_exact_copy(p + o->consumed, piece);
		struct smtp_data_result r = smtp_data_scan(d, view, piece, stop, sink_put, &o->out);
		free(view);
		FUZZ_CHECK(r.consumed <= piece);
		FUZZ_CHECK(kind == SMTP_DATA_DOT || !r.end);
		FUZZ_CHECK(r.end || r.stopped || r.consumed == piece);
		FUZZ_CHECK(!(r.end && r.stopped));
		o->consumed += r.consumed;
		o->bare |= r.bare;
		o->end = r.end;
		o->stopped = r.stopped;
	}
}

/* The table stepped one byte at a time: the contract of smtp_data_scan. */
static void step_bytes(enum smtp_data_kind kind, bool stop, const uint8_t *p, size_t n,
		       uint8_t *state, struct outcome *o)
{
	for (size_t i = 0; i < n && !o->end && !o->stopped; i++) {
		struct smtp_data_edge e = smtp_data_next(kind, *state, p[i]);
		unsigned bare = e.flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF);
		o->bare |= bare;
		o->consumed++;
		if (stop && bare) {
			o->stopped = true;
			break;
		}
		struct span ins = smtp_data_insert_text(e.insert);
		if (ins.len)
			sink_put(&o->out, ins.ptr, ins.len);
		if (!(e.flags & SMTP_DATA_HOLD))
			sink_put(&o->out, p + i, 1);
		*state = e.next;
		o->end = e.flags & SMTP_DATA_END;
	}
}

/* ---- the reference -------------------------------------------------------- */

struct ref {
	struct sink_buf out;
	size_t consumed;   /* through the end of the data (DATA), else n */
	bool end;
	size_t first_bare; /* consumed when stopping at the first bare byte; 0: none */
	bool bare_at_finish; /* that byte is a CR that only smtp_data_finish sees */
};

static void put_bytes(struct sink_buf *b, const void *p, size_t n)
{
	if (n)
		sink_put(b, p, n);
}

/* Lines of p[0..n): DATA and BDAT text. The last, unterminated line is
 * stored only when finish (BDAT) is asked for; a trailing CR counts as a
 * bare CR then. */
static void ref_text(bool dot_kind, bool finish, const uint8_t *p, size_t n, struct ref *r)
{
	bool after_crlf = true; /* the previous line ended with a real CRLF */
	size_t start = 0;
	size_t i = 0;
	while (i <= n) {
		bool at_end = i == n;
		size_t content_end = i, next = i + 1;
		bool crlf = false, line_done = false;
		if (!at_end && p[i] == '\n') {
			line_done = true;
			if (!r->first_bare)
				r->first_bare = i + 1;
		} else if (!at_end && p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			line_done = crlf = true;
			next = i + 2;
		} else if (!at_end && p[i] == '\r' && i + 1 < n) {
			line_done = true; /* a bare CR, revealed by the byte after it */
			if (!r->first_bare)
				r->first_bare = i + 2;
		} else if (!at_end && p[i] == '\r') {
			if (!finish)
				break; /* undecided: not stored by the reference */
			line_done = true;
			if (!r->first_bare) {
				r->first_bare = i + 1;
				r->bare_at_finish = true;
			}
		} else if (at_end) {
			if (!finish || start == n)
				break;
			line_done = true;
			next = n;
		}
		if (!line_done) {
			i++;
			continue;
		}
		const uint8_t *c = p + start;
		size_t len = content_end - start;
		if (dot_kind && after_crlf && crlf && len == 1 && c[0] == '.') {
			r->end = true;
			r->consumed = next;
			return;
		}
		bool doubled = len > 0 && c[0] == '.' &&
			       (!dot_kind || !after_crlf || len == 1);
		if (doubled)
			put_bytes(&r->out, ".", 1);
		put_bytes(&r->out, c, len);
		put_bytes(&r->out, "\r\n", 2);
		after_crlf = crlf;
		start = i = next;
		if (at_end)
			break;
	}
	r->consumed = n;
}

static void ref_binary(const uint8_t *p, size_t n, struct ref *r)
{
	for (size_t i = 0; i < n; i++) {
		bool line_start = i == 0 || (i >= 2 && p[i - 2] == '\r' && p[i - 1] == '\n');
		if (p[i] == '.' && line_start)
			put_bytes(&r->out, ".", 1);
		put_bytes(&r->out, p + i, 1);
	}
	r->consumed = n;
}

static void same_outcome(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->consumed == b->consumed && a->end == b->end && a->stopped == b->stopped);
	FUZZ_CHECK(a->bare == b->bare);
	if (a->stopped)
		return; /* nothing stored after a stop is kept */
	FUZZ_CHECK(a->out.len == b->out.len);
	FUZZ_CHECK(a->out.len == 0 || memcmp(a->out.p, b->out.p, a->out.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t data_end[] = "\r\n.\r\n";
	struct fuzz_input in = { data, size };
	uint8_t settings = fuzz_u8(&in);
	enum smtp_data_kind kind = (enum smtp_data_kind)(settings % SMTP_DATA_KIND_COUNT);
	bool stop = settings & 0x80;
	uint8_t splits[64];
	size_t nsplits = fuzz_splits(&in, splits, sizeof(splits));
	/* The body, with the end of DATA after it for the DATA kind. */
	size_t n = in.n + (kind == SMTP_DATA_DOT ? sizeof(data_end) - 1 : 0);
	uint8_t *body = malloc(n + 1);
	FUZZ_CHECK(body != NULL);
	memcpy(body, in.p, in.n);
	if (kind == SMTP_DATA_DOT)
		memcpy(body + in.n, data_end, sizeof(data_end) - 1);

	struct outcome whole = { 0 }, pieces = { 0 }, stepped = { 0 };
	struct smtp_data_scanner d;
	smtp_data_init(&d, kind);
	scan_pieces(kind, stop, body, in.n, NULL, 0, &d, &whole);
	if (kind == SMTP_DATA_DOT && !whole.end && !whole.stopped) /* the end, as one more read */
		scan_pieces(kind, stop, body, n, NULL, 0, &d, &whole);
	bool finish = kind != SMTP_DATA_DOT && !whole.stopped;
	if (finish)
		whole.bare |= smtp_data_finish(&d, stop, sink_put, &whole.out);

	smtp_data_init(&d, kind);
	scan_pieces(kind, stop, body, n, splits, nsplits, &d, &pieces);
	if (finish)
		pieces.bare |= smtp_data_finish(&d, stop, sink_put, &pieces.out);

	uint8_t state = smtp_data_initial_state();
	step_bytes(kind, stop, body, n, &state, &stepped);
	if (finish) { /* what finish does, stated from the table's states */
		smtp_data_init(&d, kind);
		d.state = state;
		stepped.bare |= smtp_data_finish(&d, stop, sink_put, &stepped.out);
	}
	same_outcome(&whole, &pieces);
	same_outcome(&whole, &stepped);

	struct ref ref = { 0 };
	if (kind == SMTP_DATA_BDAT_BINARY)
		ref_binary(body, n, &ref);
	else
		ref_text(kind == SMTP_DATA_DOT, kind != SMTP_DATA_DOT, body, n, &ref);
	if (kind == SMTP_DATA_DOT)
		FUZZ_CHECK(ref.end); /* the appended end always ends it */
	bool ref_bare = kind != SMTP_DATA_BDAT_BINARY && ref.first_bare &&
			(!ref.end || ref.first_bare <= ref.consumed);
	if (stop && ref_bare && !ref.bare_at_finish) {
		FUZZ_CHECK(whole.stopped && whole.consumed == ref.first_bare);
	} else if (stop && ref_bare) {
		/* A CR left at the end of a BDAT body: finish reports it and
		 * the body is refused, unrepaired. */
		FUZZ_CHECK(!whole.stopped && (whole.bare & SMTP_DATA_BARE_CR));
	} else {
		FUZZ_CHECK(!whole.stopped);
		FUZZ_CHECK(whole.end == ref.end && whole.consumed == ref.consumed);
		FUZZ_CHECK(whole.out.len == ref.out.len);
		FUZZ_CHECK(ref.out.len == 0 || memcmp(whole.out.p, ref.out.p, ref.out.len) == 0);
		FUZZ_CHECK(kind == SMTP_DATA_BDAT_BINARY || (whole.bare != 0) == (ref.first_bare != 0));
	}
	outcome_free(&whole);
	outcome_free(&pieces);
	outcome_free(&stepped);
	free(ref.out.p);
	free(body);
	return 0;
}
