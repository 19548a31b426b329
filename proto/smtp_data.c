/*
 * smtp_data.c - the end-of-data DFA, the bare CR/LF repair and BDAT
 * dot-stuffing, as three transition tables and one scanner.
 *
 * Sits between the session and the record builder: the session hands every
 * body byte that arrives in DATA or in a BDAT chunk to smtp_data_scan(), and
 * the sink receives the body in DATA wire form (DESIGN.md rule 5).
 *
 * Invariants:
 *  - the tables are total over {CR, LF, '.', other} for every reachable
 *    state; what the scanner emits is exactly what stepping the table byte
 *    by byte emits (the fast path skips only bytes whose transition is
 *    "stay in MID, store as received, insert nothing");
 *  - DATA ends only on <CRLF>.<CRLF>, or "." CRLF as the first line; a bare
 *    CR or LF next to the dot never ends it (SMTP smuggling);
 *  - a stored body never holds a bare CR or LF (text kinds), and never a line
 *    that is exactly "." (any kind), so forwarding it through DATA is safe.
 */
#include "smtp_data.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Byte classes. "other" is zero so that the table below only names the three
 * bytes that matter. */
enum data_class { K_OTHER = 0, K_CR, K_LF, K_DOT, CLASS_COUNT };

static const uint8_t data_class[256] = {
	['\r'] = K_CR,
	['\n'] = K_LF,
	['.'] = K_DOT,
};

/*
 * States. DATA uses all of them; BDAT uses only BOL, MID and CR.
 *   BOL       at a line start after CRLF (or the start of the body)
 *   BOL_BARE  at a line start after a repaired bare CR/LF: a dot here is
 *             doubled and never starts the end-of-data sequence
 *   MID       inside a line
 *   CR        after a CR (stored), waiting to see whether LF follows
 *   DOT       a '.' at BOL, held back (it may be the terminator)
 *   DOT_CR    ".\r" at BOL, both held back
 *   END       <CRLF>.<CRLF> consumed (absorbing)
 */
enum data_state { DS_BOL = 0, DS_BOL_BARE, DS_MID, DS_CR, DS_DOT, DS_DOT_CR, DS_END, STATE_COUNT };

/* Constant strings a transition inserts before its byte. */
enum data_insert {
	INS_NONE = 0,
	INS_CR,              /* bare LF -> CRLF */
	INS_LF,              /* bare CR -> CRLF */
	INS_DOT,             /* dot-stuffing */
	INS_LF_DOT,          /* bare CR, then a dot opens the line */
	INS_DOTDOT_CR,       /* held ".", then a bare LF: "..\r" + LF */
	INS_DOTDOT_CRLF,     /* held ".\r", the CR was bare */
	INS_DOTDOT_CRLF_DOT, /* held ".\r" (bare CR), then a dot opens the line */
	INS_CRLF,            /* unterminated last line of a BDAT text body */
	INSERT_COUNT
};

static const struct span insert_text[INSERT_COUNT] = {
	[INS_NONE] = { (const uint8_t *)"", 0 },
	[INS_CR] = { (const uint8_t *)"\r", 1 },
	[INS_LF] = { (const uint8_t *)"\n", 1 },
	[INS_DOT] = { (const uint8_t *)".", 1 },
	[INS_LF_DOT] = { (const uint8_t *)"\n.", 2 },
	[INS_DOTDOT_CR] = { (const uint8_t *)"..\r", 3 },
	[INS_DOTDOT_CRLF] = { (const uint8_t *)"..\r\n", 4 },
	[INS_DOTDOT_CRLF_DOT] = { (const uint8_t *)"..\r\n.", 5 },
	[INS_CRLF] = { (const uint8_t *)"\r\n", 2 },
};

#define BCR SMTP_DATA_BARE_CR
#define BLF SMTP_DATA_BARE_LF
#define HOLD SMTP_DATA_HOLD
#define END SMTP_DATA_END
#define E(next, ins, flags) { (next), (ins), (flags) }

static const struct smtp_data_edge data_table[SMTP_DATA_KIND_COUNT][STATE_COUNT][CLASS_COUNT] = {
	[SMTP_DATA_DOT] = {
		/*               other                          CR                                  LF                                  '.' */
		[DS_BOL]      = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_BOL_BARE, INS_CR, BLF),        E(DS_DOT, 0, HOLD) },
		[DS_BOL_BARE] = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_BOL_BARE, INS_CR, BLF),        E(DS_MID, INS_DOT, 0) },
		[DS_MID]      = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_BOL_BARE, INS_CR, BLF),        E(DS_MID, 0, 0) },
		[DS_CR]       = { E(DS_MID, INS_LF, BCR),       E(DS_CR, INS_LF, BCR),              E(DS_BOL, 0, 0),                    E(DS_MID, INS_LF_DOT, BCR) },
		[DS_DOT]      = { E(DS_MID, INS_DOT, 0),        E(DS_DOT_CR, 0, HOLD),              E(DS_BOL_BARE, INS_DOTDOT_CR, BLF), E(DS_MID, INS_DOT, 0) },
		[DS_DOT_CR]   = { E(DS_MID, INS_DOTDOT_CRLF, BCR), E(DS_CR, INS_DOTDOT_CRLF, BCR), E(DS_END, 0, HOLD | END),          E(DS_MID, INS_DOTDOT_CRLF_DOT, BCR) },
		[DS_END]      = { E(DS_END, 0, HOLD | END),     E(DS_END, 0, HOLD | END),           E(DS_END, 0, HOLD | END),           E(DS_END, 0, HOLD | END) },
	},
	/* BDAT rows for BOL_BARE, DOT, DOT_CR and END are unreachable (no
	 * transition leads there); smtp_data_next asserts as much. */
	[SMTP_DATA_BDAT_TEXT] = {
		/*               other                          CR                                  LF                                  '.' */
		[DS_BOL]      = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_BOL, INS_CR, BLF),             E(DS_MID, INS_DOT, 0) },
		[DS_MID]      = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_BOL, INS_CR, BLF),             E(DS_MID, 0, 0) },
		[DS_CR]       = { E(DS_MID, INS_LF, BCR),       E(DS_CR, INS_LF, BCR),              E(DS_BOL, 0, 0),                    E(DS_MID, INS_LF_DOT, BCR) },
	},
	[SMTP_DATA_BDAT_BINARY] = {
		/*               other                          CR                                  LF                                  '.' */
		[DS_BOL]      = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_MID, 0, 0),                    E(DS_MID, INS_DOT, 0) },
		[DS_MID]      = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_MID, 0, 0),                    E(DS_MID, 0, 0) },
		[DS_CR]       = { E(DS_MID, 0, 0),              E(DS_CR, 0, 0),                     E(DS_BOL, 0, 0),                    E(DS_MID, 0, 0) },
	},
};

#undef E
#undef BCR
#undef BLF
#undef HOLD
#undef END

static bool state_valid(enum smtp_data_kind kind, unsigned state)
{
	if (kind == SMTP_DATA_DOT)
		return state < STATE_COUNT;
	return state == DS_BOL || state == DS_MID || state == DS_CR;
}

void smtp_data_init(struct smtp_data_scanner *d, enum smtp_data_kind kind)
{
	RMX_ASSERT((unsigned)kind < SMTP_DATA_KIND_COUNT);
	d->kind = (uint8_t)kind;
	d->state = DS_BOL;
}

uint8_t smtp_data_initial_state(void)
{
	return DS_BOL;
}

struct smtp_data_edge smtp_data_next(enum smtp_data_kind kind, uint8_t state, uint8_t byte)
{
	RMX_ASSERT((unsigned)kind < SMTP_DATA_KIND_COUNT);
	RMX_ASSERT(state_valid(kind, state));
	struct smtp_data_edge e = data_table[kind][state][data_class[byte]];
	RMX_ASSERT(state_valid(kind, e.next));
	return e;
}

struct span smtp_data_insert_text(uint8_t insert)
{
	RMX_ASSERT(insert < INSERT_COUNT);
	return insert_text[insert];
}

/*
 * Index of the first CR or LF in p[i..n), or n. This is the memchr-class
 * skip of DESIGN.md rule 4: in state MID every other byte maps to "stay,
 * store as received", so jumping over it cannot change the outcome.
 */
static size_t skip_to_line_byte(const uint8_t *p, size_t i, size_t n)
{
#if defined(__SSE2__)
	const __m128i cr = _mm_set1_epi8('\r');
	const __m128i lf = _mm_set1_epi8('\n');
	while (n - i >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		__m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf));
		unsigned mask = (unsigned)_mm_movemask_epi8(hit);
		if (mask != 0)
			return i + (size_t)__builtin_ctz(mask);
		i += 16;
	}
#else
	/* Eight bytes at a time: a byte is zero in (w ^ pattern) exactly where
	 * w holds the pattern's byte. */
	const uint64_t ones = 0x0101010101010101ull;
	const uint64_t highs = 0x8080808080808080ull;
	while (n - i >= 8) {
		uint64_t w;
		memcpy(&w, p + i, sizeof(w));
		uint64_t x = w ^ (ones * '\r');
		uint64_t y = w ^ (ones * '\n');
		uint64_t zx = (x - ones) & ~x & highs;
		uint64_t zy = (y - ones) & ~y & highs;
		if ((zx | zy) != 0)
			break;
		i += 8;
	}
#endif
	while (i < n && data_class[p[i]] != K_CR && data_class[p[i]] != K_LF)
		i++;
	return i;
}

struct smtp_data_result smtp_data_scan(struct smtp_data_scanner *d, const uint8_t *p,
				       size_t n, bool stop_on_bare, smtp_data_sink sink,
				       void *ctx)
{
	struct smtp_data_result r = { 0, 0, false, false };
	const enum smtp_data_kind kind = (enum smtp_data_kind)d->kind;
	RMX_ASSERT((unsigned)kind < SMTP_DATA_KIND_COUNT);
	RMX_ASSERT(state_valid(kind, d->state) && d->state != DS_END);
	RMX_ASSERT(p != NULL || n == 0);

	const struct smtp_data_edge(*table)[CLASS_COUNT] = data_table[kind];
	unsigned state = d->state;
	size_t run = 0; /* start of the bytes stored as received, not yet sunk */
	size_t i = 0;

	while (i < n) {
		if (state == DS_MID) {
			i = skip_to_line_byte(p, i, n);
			if (i == n)
				break;
		}
		const struct smtp_data_edge e = table[state][data_class[p[i]]];
		r.bare |= e.flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF);
		if (stop_on_bare && (e.flags & (SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF))) {
			/* Reject policy: the body is abandoned, so nothing more
			 * is worth storing. */
			r.stopped = true;
			r.consumed = i + 1;
			d->state = (uint8_t)state;
			return r;
		}
		if (e.insert != INS_NONE || (e.flags & SMTP_DATA_HOLD)) {
			if (i > run)
				sink(ctx, p + run, i - run);
			if (e.insert != INS_NONE)
				sink(ctx, insert_text[e.insert].ptr, insert_text[e.insert].len);
			run = (e.flags & SMTP_DATA_HOLD) ? i + 1 : i;
		}
		state = e.next;
		i++;
		if (e.flags & SMTP_DATA_END) {
			r.end = true;
			break;
		}
	}
	if (i > run)
		sink(ctx, p + run, i - run);
	d->state = (uint8_t)state;
	r.consumed = i;
	return r;
}

unsigned smtp_data_finish(struct smtp_data_scanner *d, bool stop_on_bare,
			  smtp_data_sink sink, void *ctx)
{
	RMX_ASSERT(d->kind == SMTP_DATA_BDAT_TEXT || d->kind == SMTP_DATA_BDAT_BINARY);
	RMX_ASSERT(state_valid((enum smtp_data_kind)d->kind, d->state));
	unsigned bare = 0;
	if (d->kind == SMTP_DATA_BDAT_TEXT) {
		if (d->state == DS_CR) {
			bare = SMTP_DATA_BARE_CR;
			if (!stop_on_bare)
				sink(ctx, insert_text[INS_LF].ptr, insert_text[INS_LF].len);
		} else if (d->state == DS_MID) {
			sink(ctx, insert_text[INS_CRLF].ptr, insert_text[INS_CRLF].len);
		}
	}
	d->state = DS_BOL;
	return bare;
}
