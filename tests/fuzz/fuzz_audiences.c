/*
 * Fuzz harness for audience_parse(), which reads audience definitions as users
 * type them (docs/audiences.md). The input is the definition's bytes,
 * exactly as many as there are (no NUL is added, so reading one past the
 * end is a sanitizer report).
 *
 * A refusal must be WEFT_EINVAL or WEFT_ETOOBIG with a message that is
 * UTF-8 text beginning "line L, column C: ", whose line and column are the
 * ones an independent count gives for the byte offset it reports. A
 * definition that parses must print to one line of UTF-8 text that parses
 * again to an equal expression printing the same, with the same
 * dependencies, and its nodes must keep the kids-before-parent order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audiences/audiences.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "tests/fuzz/fuzz.h"

/* Line and column of byte off, counted here apart from the lexer. */
static void position(const uint8_t *data, size_t off, uint32_t *line, uint32_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (data[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if ((data[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

static void check_error(const uint8_t *data, size_t size, int rc, const struct audience_error *err)
{
	char head[64];
	uint32_t line, col;
	size_t n = strlen(err->message);

	fuzz_check(rc == WEFT_EINVAL || rc == WEFT_ETOOBIG, "audience_parse returned %d", rc);
	fuzz_check(n > 0 && n < sizeof(err->message), "message of %zu bytes", n);
	fuzz_check(fuzz_utf8_text((const unsigned char *)err->message, n),
		   "message is not UTF-8 text: '%s'", err->message);
	snprintf(head, sizeof(head), "line %u, column %u: ", err->line, err->column);
	fuzz_check(strncmp(err->message, head, strlen(head)) == 0 && n > strlen(head),
		   "message '%s' does not start with '%s'", err->message, head);
	fuzz_check(err->line >= 1 && err->column >= 1, "position %u:%u", err->line, err->column);
	if (size > AUDIENCE_MAX_SOURCE) {
		fuzz_check(rc == WEFT_ETOOBIG && err->offset == 0, "an oversized input gives '%s'",
			   err->message);
		return;
	}
	fuzz_check(err->offset <= size, "offset %zu past the input's %zu bytes", err->offset, size);
	/* Only a malformed byte may be a stray continuation byte. */
	fuzz_check(err->offset == size || (data[err->offset] & 0xc0) != 0x80 ||
		   strstr(err->message, "not valid UTF-8"),
		   "offset %zu is inside a character", err->offset);
	position(data, err->offset, &line, &col);
	fuzz_check(line == err->line && col == err->column,
		   "offset %zu is line %u, column %u, but the error says %u, %u", err->offset, line,
		   col, err->line, err->column);
}

static void check_deps_equal(const struct audience_expr *a, const struct audience_expr *b)
{
	size_t na, nb;
	const struct audience_dep *da = audience_expr_deps(a, &na), *db = audience_expr_deps(b, &nb);

	fuzz_check(na == nb, "%zu dependencies, then %zu", na, nb);
	for (size_t i = 0; i < na; i++)
		fuzz_check(da[i].kind == db[i].kind && strcmp(da[i].name_str, db[i].name_str) == 0 &&
			   da[i].window == db[i].window && da[i].span_us == db[i].span_us &&
			   da[i].from_us == db[i].from_us && da[i].to_us == db[i].to_us,
			   "dependency %zu differs ('%s', '%s')", i, da[i].name_str, db[i].name_str);
}

static void check_tree(const struct audience_expr *e)
{
	uint32_t n = audience_expr_nodes(e);

	fuzz_check(n > 0 && audience_expr_root(e) == n - 1, "root %u of %u nodes", audience_expr_root(e), n);
	for (uint32_t id = 0; id < n; id++) {
		const struct audience_node *node = audience_expr_node(e, id);
		uint32_t kids = 0;

		for (uint32_t k = node->kid; k != AUDIENCE_NONE; k = audience_expr_node(e, k)->next) {
			fuzz_check(k < id, "node %u has kid %u", id, k);
			kids++;
		}
		fuzz_check(kids == node->nkids, "node %u has %u kids, says %u", id, kids, node->nkids);
		fuzz_check((node->kind != AUDIENCE_OR && node->kind != AUDIENCE_AND) || kids >= 2,
			   "and/or node %u has %u kids", id, kids);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audience_expr *e = NULL, *again = NULL;
	struct audience_error err;
	struct buf text = BUF_INIT, text2 = BUF_INIT;
	int rc = audience_parse((const char *)data, size, &e, &err);

	if (rc) {
		fuzz_check(e == NULL, "an error left an expression");
		check_error(data, size, rc, &err);
		return 0;
	}
	check_tree(e);
	audience_expr_print(e, &text);
	fuzz_check(text.len > 0 && fuzz_utf8_text((const unsigned char *)text.data, text.len) &&
		   !memchr(text.data, '\n', text.len),
		   "the print is not one line of text: '%s'", text.data);
	rc = audience_parse(text.data, text.len, &again, &err);
	fuzz_check(rc == 0, "the print '%s' does not parse: %s", text.data, err.message);
	fuzz_check(audience_expr_equal(e, again) && audience_expr_equal(again, e),
		   "the print '%s' parses to another expression", text.data);
	audience_expr_print(again, &text2);
	fuzz_check(text2.len == text.len && memcmp(text.data, text2.data, text.len) == 0,
		   "'%s' prints as '%s'", text.data, text2.data);
	check_deps_equal(e, again);
	buf_release(&text);
	buf_release(&text2);
	audience_expr_free(again);
	audience_expr_free(e);
	return 0;
}
