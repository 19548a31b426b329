/*
 * smtp_data.h - message body framing: the end-of-data DFA for DATA, the bare
 * CR/LF policy, and BDAT dot-stuffing (DESIGN.md rules 4 and 5).
 *
 * One engine, three transition tables over the byte classes {CR, LF, '.',
 * other}. Each transition names the next state, a short constant string to
 * insert before the byte, whether the byte itself is stored as received or
 * held back, and the facts it reveals (a bare CR, a bare LF, the end of the
 * data). What comes out is always DATA wire form: CRLF lines, dot-stuffed,
 * without the final ".CRLF".
 *
 *   SMTP_DATA_DOT          DATA input; only <CRLF>.<CRLF> (or "." CRLF as
 *                          the very first line) ends it.
 *   SMTP_DATA_BDAT_TEXT    BDAT chunks of a 7BIT/8BITMIME message: a '.' at a
 *                          line start is doubled; bare CR/LF are flagged.
 *   SMTP_DATA_BDAT_BINARY  BDAT chunks of BODY=BINARYMIME: opaque, except that
 *                          a '.' after CRLF is doubled.
 *
 * A bare CR or LF is always flagged. The caller either stops there
 * (stop_on_bare: the "reject" policy) or lets the table repair it: the bare
 * byte becomes CRLF, and a '.' opening the line after it is doubled, so the
 * stored body can never end a message early downstream.
 *
 * Bytes stored as received are handed to the sink as spans of the caller's
 * input (no copy); inserted bytes come from constant strings. The scanner
 * skips runs of ordinary bytes with a vector scan for CR/LF; it produces
 * exactly what stepping the table byte by byte produces (smtp_data_next).
 * Pure; any thread; the state lives in the caller's struct smtp_data_scanner.
 */
#ifndef RINGMX_SMTP_DATA_H
#define RINGMX_SMTP_DATA_H

#include "../common/base.h"

enum smtp_data_kind {
	SMTP_DATA_DOT = 0,
	SMTP_DATA_BDAT_TEXT,
	SMTP_DATA_BDAT_BINARY,
	SMTP_DATA_KIND_COUNT
};

/* Facts a transition reveals (bits of smtp_data_edge.flags and
 * smtp_data_result.bare). */
enum {
	SMTP_DATA_BARE_CR = 1u << 0, /* a CR not followed by LF */
	SMTP_DATA_BARE_LF = 1u << 1, /* an LF not preceded by CR */
	SMTP_DATA_HOLD = 1u << 2,    /* the byte is not stored as received */
	SMTP_DATA_END = 1u << 3,     /* this byte completed <CRLF>.<CRLF> */
};

/* Scanner state, embedded in the session (two bytes). */
struct smtp_data_scanner {
	uint8_t kind;  /* enum smtp_data_kind */
	uint8_t state; /* a state of that kind's table */
};

/* One transition of the pure table. */
struct smtp_data_edge {
	uint8_t next;   /* next state */
	uint8_t insert; /* index of the constant inserted before the byte */
	uint8_t flags;  /* SMTP_DATA_* */
};

/* Receives the body in stored form, piece by piece, in order. */
typedef void (*smtp_data_sink)(void *ctx, const uint8_t *p, size_t n);

struct smtp_data_result {
	size_t consumed; /* input bytes used (includes the final ".CRLF" on end) */
	unsigned bare;   /* SMTP_DATA_BARE_* seen during this call */
	bool end;        /* SMTP_DATA_DOT only: the data is complete */
	bool stopped;    /* stop_on_bare and a bare CR/LF was found: the scan
			    stopped after the byte that revealed it; the state
			    is dead (start a new scan for the next message) */
};

/* Starts a body of the given kind (at a line start). */
void smtp_data_init(struct smtp_data_scanner *d, enum smtp_data_kind kind);

/* The pure table: the transition from state on byte. */
struct smtp_data_edge smtp_data_next(enum smtp_data_kind kind, uint8_t state, uint8_t byte);

/* The constant string a transition's insert index stands for. */
struct span smtp_data_insert_text(uint8_t insert);

/* The state every kind starts in (a line start). */
uint8_t smtp_data_initial_state(void);

/*
 * Scans p[0..n): stores the body through sink and stops at the end of the
 * data (DOT), at a bare CR/LF when stop_on_bare, or at n. Bytes of p are
 * passed to sink only from p (no copy); after the call the state refers to
 * nothing in p, so the buffer may be recycled.
 */
struct smtp_data_result smtp_data_scan(struct smtp_data_scanner *d, const uint8_t *p,
				       size_t n, bool stop_on_bare, smtp_data_sink sink,
				       void *ctx);

/*
 * Completes a BDAT body after its LAST chunk: a pending CR is a bare CR
 * (repaired to CRLF unless stop_on_bare), and a text body whose last line
 * lacks its CRLF gets one, so the store holds DATA wire form. BINARYMIME
 * bodies are left as they are. Returns the SMTP_DATA_BARE_* bits seen.
 */
unsigned smtp_data_finish(struct smtp_data_scanner *d, bool stop_on_bare,
			  smtp_data_sink sink, void *ctx);

#endif
