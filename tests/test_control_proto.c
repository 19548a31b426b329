/*
 * test_control_proto.c - the operator-request line grammar shared by the
 * gateway and ringmx-store: every line the tool formats parses back to the
 * same request, and what is not a request is malformed or empty.
 */
#include "../common/control_proto.h"
#include "test.h"

static enum control_line_result parse(const char *text, struct control_request *r)
{
	return control_line_parse(span_make(text, strlen(text)), r);
}

static void test_round_trip(void)
{
	char line[64];
	struct control_request r;
	size_t n = control_line_format(line, sizeof(line), CONTROL_VERB_REQUEUE, NULL);
	CHECK(n == strlen("requeue all\n") && strcmp(line, "requeue all\n") == 0);
	CHECK(control_line_parse(span_make(line, n - 1), &r) == CONTROL_LINE_OK);
	CHECK(r.verb == CONTROL_VERB_REQUEUE && r.all && r.id_text.len == 0);

	const char *id = "0100000200001000";
	n = control_line_format(line, sizeof(line), CONTROL_VERB_DELETE, id);
	CHECK(n == 7 + 16 + 1 && line[n - 1] == '\n');
	CHECK(control_line_parse(span_make(line, n - 1), &r) == CONTROL_LINE_OK);
	CHECK(r.verb == CONTROL_VERB_DELETE && !r.all);
	CHECK(r.id_text.len == 16 && memcmp(r.id_text.ptr, id, 16) == 0);

	n = control_line_format(line, sizeof(line), CONTROL_VERB_REQUEUE, id);
	CHECK(control_line_parse(span_make(line, n - 1), &r) == CONTROL_LINE_OK);
	CHECK(r.verb == CONTROL_VERB_REQUEUE && !r.all && r.id_text.len == 16);

	CHECK(control_line_format(line, sizeof(line), CONTROL_VERB_DELETE, NULL) == 0);
	CHECK(control_line_format(line, 10, CONTROL_VERB_DELETE, id) == 0);
}

static void test_grammar(void)
{
	struct control_request r;
	CHECK(parse("", &r) == CONTROL_LINE_EMPTY);
	CHECK(parse(" \t \r", &r) == CONTROL_LINE_EMPTY);
	CHECK(parse("\trequeue\t \tall \r", &r) == CONTROL_LINE_OK && r.all);
	CHECK(parse("requeue ABC", &r) == CONTROL_LINE_OK && r.id_text.len == 3);
	CHECK(parse("delete all", &r) == CONTROL_LINE_MALFORMED);
	CHECK(parse("requeue", &r) == CONTROL_LINE_MALFORMED);
	CHECK(parse("requeue a b", &r) == CONTROL_LINE_MALFORMED);
	CHECK(parse("REQUEUE all", &r) == CONTROL_LINE_MALFORMED);
	CHECK(parse("bounce 0100000200001000", &r) == CONTROL_LINE_MALFORMED);
	/* one CR is taken off; another stays in the id word (which is then no id) */
	CHECK(parse("requeue all\r\r", &r) == CONTROL_LINE_OK && !r.all && r.id_text.len == 4);
}

int main(void)
{
	test_round_trip();
	test_grammar();
	return test_main_end("test_control_proto");
}
