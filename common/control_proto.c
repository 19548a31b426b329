/*
 * control_proto.c - the request-line grammar of control_proto.h: one
 * parser for the gateway, one formatter for the tool.
 */
#include "control_proto.h"

#include <stdio.h>
#include <string.h>

static bool is_blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* Splits the next blank-separated word off *rest; false at the end. */
static bool next_word(struct span *rest, struct span *word)
{
	size_t i = 0;
	while (i < rest->len && is_blank(rest->ptr[i]))
		i++;
	size_t start = i;
	while (i < rest->len && !is_blank(rest->ptr[i]))
		i++;
	*word = span_make(rest->ptr + start, i - start);
	*rest = span_make(rest->ptr + i, rest->len - i);
	return word->len > 0;
}

static bool word_is(struct span w, const char *text)
{
	size_t n = strlen(text);
	return w.len == n && memcmp(w.ptr, text, n) == 0;
}

enum control_line_result control_line_parse(struct span line, struct control_request *out)
{
	memset(out, 0, sizeof(*out));
	if (line.len > 0 && line.ptr[line.len - 1] == '\r')
		line.len--;
	struct span rest = line, verb, arg, extra;
	if (!next_word(&rest, &verb))
		return CONTROL_LINE_EMPTY;
	if (!next_word(&rest, &arg) || next_word(&rest, &extra))
		return CONTROL_LINE_MALFORMED;
	if (word_is(verb, "requeue"))
		out->verb = CONTROL_VERB_REQUEUE;
	else if (word_is(verb, "delete"))
		out->verb = CONTROL_VERB_DELETE;
	else
		return CONTROL_LINE_MALFORMED;
	if (word_is(arg, "all")) {
		if (out->verb != CONTROL_VERB_REQUEUE)
			return CONTROL_LINE_MALFORMED;
		out->all = true;
		return CONTROL_LINE_OK;
	}
	out->id_text = arg;
	return CONTROL_LINE_OK;
}

size_t control_line_format(char *buf, size_t cap, enum control_verb verb, const char *id_text)
{
	if (id_text == NULL && verb != CONTROL_VERB_REQUEUE)
		return 0;
	const char *word = verb == CONTROL_VERB_REQUEUE ? "requeue" : "delete";
	int n = snprintf(buf, cap, "%s %s\n", word, id_text ? id_text : "all");
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}
