/*
 * The audience condition language's front end (audiences.h, docs/audiences.md):
 * a hand-written lexer, a recursive-descent parser with one function per
 * rule of the grammar, and the walks over a parsed expression (canonical
 * print, equality, dependencies).
 *
 * Types are checked while parsing, because every type is known where it is
 * written: a literal's is its own, an aggregation's is number, a value
 * (trait, computed trait, property) takes the type of what it is compared
 * with. So there is no separate checking pass, but every type error says
 * "type error" and points at the construct that breaks the rule.
 *
 * The tree grows in arrays owned by the parser, kids always before their
 * parent, then is packed with its strings and dependencies into one
 * allocation. Recursion is bounded by AUDIENCE_MAX_DEPTH: the parser counts
 * every construct that nests (parentheses, not, where), and each adds at
 * most three levels to the tree that print and equal walk.
 */
#include "audiences/audiences.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"

#define US_PER_HOUR INT64_C(3600000000)
#define US_PER_DAY (24 * US_PER_HOUR)
/* Code points of a name or string quoted in an error message. */
#define QUOTE_MAX 32

struct span {
	uint32_t off, len;	/* into chars; the bytes are followed by a NUL */
};

struct audience_expr {
	uint32_t nnodes, nlits, nstrs;
	size_t ndeps;
	size_t bytes;
	struct audience_node *nodes;
	struct audience_lit *lits;
	struct span *strs;
	struct audience_dep *deps;
	char *chars;
};

/* ---- tokens ---- */

enum tok_kind {
	T_EOF, T_WORD, T_STRING, T_NUMBER,
	T_LPAREN, T_RPAREN, T_COMMA, T_DOT,
	T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,	/* in enum audience_op's order */
	T_ERROR,	/* the lexer failed; p->rc says why */
};

enum kw {
	KW_NONE,
	KW_AND, KW_OR, KW_NOT, KW_IN, KW_TRUE, KW_FALSE, KW_NULL,
	KW_TRAIT, KW_COMPUTED, KW_PROPERTY, KW_EVENT, KW_AUDIENCE,
	KW_EXISTS, KW_CONTAINS, KW_WHERE, KW_WITHIN, KW_BETWEEN,
	KW_COUNT, KW_SUM, KW_AVG, KW_MIN, KW_MAX,
	KW_DAYS, KW_DAY, KW_HOURS, KW_HOUR,
	KW_COUNT_ALL,	/* not a keyword: how many there are */
};

static const char *const kw_names[KW_COUNT_ALL] = {
	[KW_AND] = "and", [KW_OR] = "or", [KW_NOT] = "not", [KW_IN] = "in",
	[KW_TRUE] = "true", [KW_FALSE] = "false", [KW_NULL] = "null",
	[KW_TRAIT] = "trait", [KW_COMPUTED] = "computed", [KW_PROPERTY] = "property",
	[KW_EVENT] = "event", [KW_AUDIENCE] = "audience",
	[KW_EXISTS] = "exists", [KW_CONTAINS] = "contains", [KW_WHERE] = "where",
	[KW_WITHIN] = "within", [KW_BETWEEN] = "between",
	[KW_COUNT] = "count", [KW_SUM] = "sum", [KW_AVG] = "avg", [KW_MIN] = "min",
	[KW_MAX] = "max",
	[KW_DAYS] = "days", [KW_DAY] = "day", [KW_HOURS] = "hours", [KW_HOUR] = "hour",
};

static const char *const op_text[] = {
	[AUDIENCE_EQ] = "=", [AUDIENCE_NE] = "!=", [AUDIENCE_LT] = "<", [AUDIENCE_LE] = "<=",
	[AUDIENCE_GT] = ">", [AUDIENCE_GE] = ">=",
};

static const char *const agg_text[] = {
	[AUDIENCE_AGG_NONE] = "exists", [AUDIENCE_AGG_COUNT] = "count", [AUDIENCE_AGG_SUM] = "sum",
	[AUDIENCE_AGG_AVG] = "avg", [AUDIENCE_AGG_MIN] = "min", [AUDIENCE_AGG_MAX] = "max",
};

struct tok {
	enum tok_kind kind;
	enum kw kw;		/* T_WORD: which keyword, KW_NONE if none */
	size_t off, len;	/* its bytes in the source */
	uint32_t line, col;
	bool integer;		/* T_NUMBER: no fraction */
	bool negative;		/* T_NUMBER: below zero */
};

struct parser {
	const char *src;
	size_t len;
	size_t pos;		/* the lexer's place */
	uint32_t line, col;
	struct tok tok;		/* the current token */
	struct buf sval;	/* T_STRING: its value, unescaped */
	struct buf nval;	/* T_NUMBER: its canonical text */
	unsigned depth;
	int rc;			/* 0, or the code of the first error */
	struct audience_error *err;
	char found[256];	/* scratch for "found ..." */
	char subj[256];		/* scratch for "trait('plan')" */

	struct audience_node *nodes;
	uint32_t nnodes, nodes_cap;
	struct audience_lit *lits;
	uint32_t nlits, lits_cap;
	struct span *strs;
	uint32_t nstrs, strs_cap;
	struct buf chars;
	uint32_t *itab;		/* intern table: string id + 1, 0 when empty */
	uint32_t itab_cap;	/* a power of two */
};

/* ---- UTF-8 ---- */

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes left) and its
 * code point, or 0 if malformed: overlong forms, surrogates and values past
 * U+10FFFF are (RFC 3629).
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	static const unsigned char lead_bits[5] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
	size_t len = s[0] < 0x80 ? 1 : buf_utf8_seq(s, n);
	uint32_t c;

	if (!len)
		return 0;
	c = s[0] & lead_bits[len];
	for (size_t i = 1; i < len; i++)
		c = c << 6 | (s[i] & 0x3f);
	*cp = c;
	return len;
}

/* Appends at most QUOTE_MAX code points of the valid UTF-8 s, "..." if cut. */
static void add_quoted(struct buf *b, const char *s, size_t n)
{
	size_t i = 0;

	for (unsigned cps = 0; i < n; cps++) {
		uint32_t cp;
		size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);

		if (cps == QUOTE_MAX) {
			buf_add(b, s, i);
			buf_adds(b, "...");
			return;
		}
		i += k ? k : 1;
	}
	buf_add(b, s, n);
}

/* Copies a buf into a fixed array, cut at a character boundary. */
static void copy_cut(char *dst, size_t cap, const struct buf *b)
{
	size_t n = b->len < cap - 1 ? b->len : cap - 1;

	while (n > 0 && n < b->len && ((unsigned char)b->data[n] & 0xc0) == 0x80)
		n--;
	if (n)
		memcpy(dst, b->data, n);
	dst[n] = '\0';
}

/* ---- errors ---- */

static void fail_at(struct parser *p, int rc, uint32_t line, uint32_t col, size_t off,
		    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Records the first error; later ones (there are none by design) are dropped. */
static void fail_at(struct parser *p, int rc, uint32_t line, uint32_t col, size_t off,
		    const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	char what[1024];
	va_list ap;

	if (p->rc)
		return;
	p->rc = rc;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	buf_printf(&b, "line %u, column %u: %s", line, col, what);
	copy_cut(p->err->message, sizeof(p->err->message), &b);
	buf_release(&b);
	p->err->line = line;
	p->err->column = col;
	p->err->offset = off;
}

#define fail_tok(p, rc, ...) \
	fail_at((p), (rc), (p)->tok.line, (p)->tok.col, (p)->tok.off, __VA_ARGS__)

/* "found ..." for the current token, in p->found. */
static const char *found(struct parser *p)
{
	const struct tok *t = &p->tok;
	struct buf b = BUF_INIT;

	buf_adds(&b, "found ");
	switch (t->kind) {
	case T_EOF:
		buf_adds(&b, "the end of the input");
		break;
	case T_STRING:
		/* As written, escapes and all, between its quotes. */
		buf_adds(&b, "the string '");
		add_quoted(&b, p->src + t->off + 1, t->len - 2);
		buf_addc(&b, '\'');
		break;
	case T_NUMBER:
		buf_adds(&b, "the number ");
		add_quoted(&b, p->src + t->off, t->len);
		break;
	case T_WORD:
		buf_addc(&b, '\'');
		add_quoted(&b, p->src + t->off, t->len);
		buf_addc(&b, '\'');
		if (t->kw == KW_NONE) {
			/* Keywords are lower case; say so to whoever wrote AND. */
			for (int k = KW_AND; k < KW_COUNT_ALL; k++) {
				if (strlen(kw_names[k]) == t->len &&
				    strncasecmp(kw_names[k], p->src + t->off, t->len) == 0) {
					buf_printf(&b, " (words are lower case: '%s')", kw_names[k]);
					break;
				}
			}
		}
		break;
	default:
		buf_addc(&b, '\'');
		buf_add(&b, p->src + t->off, t->len);
		buf_addc(&b, '\'');
		break;
	}
	copy_cut(p->found, sizeof(p->found), &b);
	buf_release(&b);
	return p->found;
}

/* "fn('name')" with the name shortened, in p->subj. */
static const char *subject(struct parser *p, const char *fn, uint32_t name)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "%s('", fn);
	add_quoted(&b, p->chars.data + p->strs[name].off, p->strs[name].len);
	buf_adds(&b, "')");
	copy_cut(p->subj, sizeof(p->subj), &b);
	buf_release(&b);
	return p->subj;
}

/* ---- the lexer ---- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_word_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_word_char(char c)
{
	return is_word_start(c) || is_digit(c);
}

/* Moves the lexer n bytes on, counting lines and characters. */
static void advance(struct parser *p, size_t n)
{
	for (size_t end = p->pos + n; p->pos < end; p->pos++) {
		unsigned char c = (unsigned char)p->src[p->pos];

		if (c == '\n') {
			p->line++;
			p->col = 1;
		} else if ((c & 0xc0) != 0x80) {
			p->col++;
		}
	}
}

static char peek(const struct parser *p, size_t ahead)
{
	return p->pos + ahead < p->len ? p->src[p->pos + ahead] : '\0';
}

/* Invisible or control characters are named by code point, others shown. */
static void describe_char(struct parser *p, char *out, size_t cap)
{
	uint32_t cp;
	size_t k = utf8_decode((const unsigned char *)p->src + p->pos, p->len - p->pos, &cp);

	if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0xa0) || cp == 0xad ||
	    (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
	    (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff)
		snprintf(out, cap, "U+%04X", (unsigned)cp);
	else
		snprintf(out, cap, "'%.*s'", (int)k, p->src + p->pos);
}

static void lex_bad_char(struct parser *p)
{
	char c = p->src[p->pos];
	char what[32];
	const char *hint = "";
	uint32_t cp;

	utf8_decode((const unsigned char *)p->src + p->pos, p->len - p->pos, &cp);
	describe_char(p, what, sizeof(what));
	if (c == '"')
		hint = ": strings are written in single quotes, 'like this'";
	else if (c == '&')
		hint = ": use and";
	else if (c == '|')
		hint = ": use or";
	else if (cp >= 0x2018 && cp <= 0x201f)
		hint = ": strings are written in straight single quotes, 'like this'";
	fail_at(p, WEFT_EINVAL, p->line, p->col, p->pos, "unexpected character %s%s", what, hint);
}

/*
 * A number: an optional '-', digits, optionally '.' and digits. Its
 * canonical text (no leading zeros but one, no trailing fraction zeros,
 * no "-0") goes to p->nval.
 */
static void lex_number(struct parser *p)
{
	struct tok *t = &p->tok;
	size_t start = p->pos, int_start, int_end, frac_start = 0, frac_end = 0;
	bool neg = peek(p, 0) == '-';

	if (neg) {
		advance(p, 1);
		if (!is_digit(peek(p, 0))) {
			fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
				"expected a digit after '-' (a negative number is written -5)");
			return;
		}
	}
	int_start = p->pos;
	while (is_digit(peek(p, 0)))
		advance(p, 1);
	int_end = p->pos;
	if (peek(p, 0) == '.') {
		if (!is_digit(peek(p, 1))) {
			advance(p, 1);
			fail_at(p, WEFT_EINVAL, p->line, p->col, p->pos,
				"expected a digit after the decimal point");
			return;
		}
		advance(p, 1);
		frac_start = p->pos;
		while (is_digit(peek(p, 0)))
			advance(p, 1);
		frac_end = p->pos;
	}
	if (p->pos - start > AUDIENCE_MAX_NUMBER) {
		fail_at(p, WEFT_ETOOBIG, t->line, t->col, t->off,
			"a number is longer than %d characters", AUDIENCE_MAX_NUMBER);
		return;
	}
	while (int_end - int_start > 1 && p->src[int_start] == '0')
		int_start++;
	while (frac_end > frac_start && p->src[frac_end - 1] == '0')
		frac_end--;
	t->kind = T_NUMBER;
	t->integer = frac_end == frac_start;
	t->negative = neg && !(t->integer && int_end - int_start == 1 && p->src[int_start] == '0');
	buf_reset(&p->nval);
	if (t->negative)
		buf_addc(&p->nval, '-');
	buf_add(&p->nval, p->src + int_start, int_end - int_start);
	if (!t->integer) {
		buf_addc(&p->nval, '.');
		buf_add(&p->nval, p->src + frac_start, frac_end - frac_start);
	}
}

/* A string in single quotes; its value, unescaped, goes to p->sval. */
static void lex_string(struct parser *p)
{
	struct tok *t = &p->tok;

	buf_reset(&p->sval);
	advance(p, 1);
	for (;;) {
		char c = peek(p, 0);

		if (p->pos == p->len) {
			fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
				"this string is not closed: expected ' before the end of the input");
			return;
		}
		if (c == '\'') {
			advance(p, 1);
			break;
		}
		if (c == '\n' || c == '\r') {
			fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
				"this string is not closed: expected ' before the end of the line");
			return;
		}
		if ((unsigned char)c < 0x20 || c == 0x7f) {
			fail_at(p, WEFT_EINVAL, p->line, p->col, p->pos,
				"a string cannot hold control character U+%04X", (unsigned)c);
			return;
		}
		if (c == '\\') {
			char d = peek(p, 1);

			if (d != '\'' && d != '\\') {
				if (p->pos + 1 == p->len) {
					fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
						"this string is not closed: expected ' before the end of the input");
				} else if ((unsigned char)d > 0x20 && (unsigned char)d < 0x7f) {
					fail_at(p, WEFT_EINVAL, p->line, p->col, p->pos,
						"unknown escape '\\%c' in a string: only \\' and \\\\ are allowed",
						d);
				} else {
					fail_at(p, WEFT_EINVAL, p->line, p->col, p->pos,
						"a backslash in a string must be followed by ' or \\");
				}
				return;
			}
			buf_addc(&p->sval, d);
			advance(p, 2);
		} else {
			buf_addc(&p->sval, c);
			advance(p, 1);
		}
		if (p->sval.len > AUDIENCE_MAX_STRING) {
			fail_at(p, WEFT_ETOOBIG, t->line, t->col, t->off,
				"a string is longer than %d bytes", AUDIENCE_MAX_STRING);
			return;
		}
	}
	t->kind = T_STRING;
}

static void lex_token(struct parser *p)
{
	struct tok *t = &p->tok;
	char c;

	while (p->pos < p->len) {
		c = p->src[p->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		advance(p, 1);
	}
	memset(t, 0, sizeof(*t));
	t->off = p->pos;
	t->line = p->line;
	t->col = p->col;
	if (p->pos == p->len) {
		t->kind = T_EOF;
		return;
	}
	c = p->src[p->pos];
	if (is_word_start(c)) {
		while (is_word_char(peek(p, 0)))
			advance(p, 1);
		t->kind = T_WORD;
		t->len = p->pos - t->off;
		for (int k = KW_AND; k < KW_COUNT_ALL; k++) {
			if (strlen(kw_names[k]) == t->len && !memcmp(kw_names[k], p->src + t->off, t->len)) {
				t->kw = (enum kw)k;
				break;
			}
		}
		return;
	}
	if (is_digit(c) || c == '-') {
		lex_number(p);
	} else if (c == '\'') {
		lex_string(p);
	} else {
		char d = peek(p, 1);

		switch (c) {
		case '(': t->kind = T_LPAREN; advance(p, 1); break;
		case ')': t->kind = T_RPAREN; advance(p, 1); break;
		case ',': t->kind = T_COMMA; advance(p, 1); break;
		case '.': t->kind = T_DOT; advance(p, 1); break;
		case '=':
			if (d == '=') {
				fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
					"'==' is not an operator: use '='");
				return;
			}
			t->kind = T_EQ;
			advance(p, 1);
			break;
		case '!':
			if (d != '=') {
				fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
					"'!' is not an operator: use not, or != to compare");
				return;
			}
			t->kind = T_NE;
			advance(p, 2);
			break;
		case '<':
			if (d == '>') {
				fail_at(p, WEFT_EINVAL, t->line, t->col, t->off,
					"'<>' is not an operator: use '!='");
				return;
			}
			t->kind = d == '=' ? T_LE : T_LT;
			advance(p, d == '=' ? 2 : 1);
			break;
		case '>':
			t->kind = d == '=' ? T_GE : T_GT;
			advance(p, d == '=' ? 2 : 1);
			break;
		default:
			lex_bad_char(p);
			return;
		}
	}
	t->len = p->pos - t->off;
}

/* Reads the next token into p->tok; on an error sets p->rc and a T_ERROR token. */
static void lex(struct parser *p)
{
	lex_token(p);
	if (p->rc)
		p->tok.kind = T_ERROR;
}

/* ---- building the tree ---- */

static uint32_t add_node(struct parser *p, const struct audience_node *n)
{
	if (p->nnodes == p->nodes_cap) {
		p->nodes_cap = p->nodes_cap ? 2 * p->nodes_cap : 16;
		p->nodes = xrealloc(p->nodes, xmul(p->nodes_cap, sizeof(*p->nodes)));
	}
	p->nodes[p->nnodes] = *n;
	return p->nnodes++;
}

static uint32_t add_lit(struct parser *p, const struct audience_lit *l)
{
	if (p->nlits == p->lits_cap) {
		p->lits_cap = p->lits_cap ? 2 * p->lits_cap : 16;
		p->lits = xrealloc(p->lits, xmul(p->lits_cap, sizeof(*p->lits)));
	}
	p->lits[p->nlits] = *l;
	return p->nlits++;
}

static void node_init(struct audience_node *n, enum audience_kind kind, uint32_t line, uint32_t col)
{
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->name = n->kid = n->next = n->lit = AUDIENCE_NONE;
	n->agg_prop = n->from_str = n->to_str = AUDIENCE_NONE;
	n->line = line;
	n->column = col;
}

static uint32_t hash_bytes(const char *s, size_t n)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/* The id of the string s, n bytes, adding it the first time. */
static uint32_t intern(struct parser *p, const char *s, size_t n)
{
	uint32_t mask, i, id;

	if ((p->nstrs + 1) * 2 > p->itab_cap) {
		uint32_t cap = p->itab_cap ? 2 * p->itab_cap : 64;
		uint32_t *tab = xcalloc(cap, sizeof(*tab));

		for (uint32_t j = 0; j < p->nstrs; j++) {
			const struct span *sp = &p->strs[j];

			i = hash_bytes(p->chars.data + sp->off, sp->len) & (cap - 1);
			while (tab[i])
				i = (i + 1) & (cap - 1);
			tab[i] = j + 1;
		}
		free(p->itab);
		p->itab = tab;
		p->itab_cap = cap;
	}
	mask = p->itab_cap - 1;
	for (i = hash_bytes(s, n) & mask; p->itab[i]; i = (i + 1) & mask) {
		const struct span *sp = &p->strs[p->itab[i] - 1];

		if (sp->len == n && !memcmp(p->chars.data + sp->off, s, n))
			return p->itab[i] - 1;
	}
	if (p->nstrs == p->strs_cap) {
		p->strs_cap = p->strs_cap ? 2 * p->strs_cap : 16;
		p->strs = xrealloc(p->strs, xmul(p->strs_cap, sizeof(*p->strs)));
	}
	id = p->nstrs++;
	p->strs[id].off = (uint32_t)p->chars.len;
	p->strs[id].len = (uint32_t)n;
	buf_add(&p->chars, s, n);
	buf_addc(&p->chars, '\0');
	p->itab[i] = id + 1;
	return id;
}

/* ---- the parser: small helpers ---- */

static bool is_kw(const struct parser *p, enum kw k)
{
	return p->tok.kind == T_WORD && p->tok.kw == k;
}

static bool is_cmp(const struct parser *p)
{
	return p->tok.kind >= T_EQ && p->tok.kind <= T_GE;
}

static const char *tok_text(enum tok_kind k)
{
	switch (k) {
	case T_LPAREN: return "(";
	case T_RPAREN: return ")";
	case T_COMMA: return ",";
	case T_DOT: return ".";
	default: return "?";
	}
}

/* Consumes a token of kind k, or fails with "expected 'k' <where>, found ...". */
static bool expect(struct parser *p, enum tok_kind k, const char *where)
{
	if (p->rc)
		return false;
	if (p->tok.kind != k) {
		fail_tok(p, WEFT_EINVAL, "expected '%s' %s, %s", tok_text(k), where, found(p));
		return false;
	}
	lex(p);
	return !p->rc;
}

/* Counts one more level of nesting; false past AUDIENCE_MAX_DEPTH. */
static bool deeper(struct parser *p)
{
	if (++p->depth > AUDIENCE_MAX_DEPTH) {
		fail_tok(p, WEFT_ETOOBIG,
			 "conditions are nested more than %d deep (parentheses, not and where())",
			 AUDIENCE_MAX_DEPTH);
		return false;
	}
	return true;
}

/* "('name')" after fn: the name's string id, or AUDIENCE_NONE. */
static uint32_t parse_name(struct parser *p, const char *fn)
{
	char where[64];
	uint32_t line, col, id;
	size_t off;

	snprintf(where, sizeof(where), "after %s", fn);
	if (!expect(p, T_LPAREN, where))
		return AUDIENCE_NONE;
	if (p->tok.kind != T_STRING) {
		fail_tok(p, WEFT_EINVAL, "expected the %s name as a 'string' in %s(), %s", fn, fn,
			 found(p));
		return AUDIENCE_NONE;
	}
	line = p->tok.line;
	col = p->tok.col;
	off = p->tok.off;
	if (p->sval.len == 0) {
		fail_at(p, WEFT_EINVAL, line, col, off, "the %s name is empty", fn);
		return AUDIENCE_NONE;
	}
	if (p->sval.len > AUDIENCE_MAX_NAME) {
		fail_at(p, WEFT_ETOOBIG, line, col, off,
			"the %s name is %zu bytes; at most %d are allowed", fn, p->sval.len,
			AUDIENCE_MAX_NAME);
		return AUDIENCE_NONE;
	}
	id = intern(p, p->sval.data, p->sval.len);
	lex(p);
	snprintf(where, sizeof(where), "after the %s name", fn);
	if (!expect(p, T_RPAREN, where))
		return AUDIENCE_NONE;
	return id;
}

enum lit_kind { L_STRING, L_NUMBER, L_BOOL, L_NULL, L_BAD };

/*
 * A literal: a string, a number, true, false or null. Fills *l (not for
 * null) and consumes it; L_BAD (and an error) when the token is none.
 */
static enum lit_kind parse_literal(struct parser *p, struct audience_lit *l)
{
	enum lit_kind k;

	memset(l, 0, sizeof(*l));
	l->str = AUDIENCE_NONE;
	switch (p->tok.kind) {
	case T_STRING:
		l->type = AUDIENCE_TYPE_STRING;
		l->str = intern(p, p->sval.data ? p->sval.data : "", p->sval.len);
		k = L_STRING;
		break;
	case T_NUMBER:
		l->type = AUDIENCE_TYPE_NUMBER;
		l->str = intern(p, p->nval.data, p->nval.len);
		l->number = strtod(p->nval.data, NULL);
		k = L_NUMBER;
		break;
	case T_WORD:
		if (p->tok.kw == KW_TRUE || p->tok.kw == KW_FALSE) {
			l->type = AUDIENCE_TYPE_BOOL;
			l->boolean = p->tok.kw == KW_TRUE;
			k = L_BOOL;
			break;
		}
		if (p->tok.kw == KW_NULL) {
			k = L_NULL;
			break;
		}
		/* fall through */
	default:
		fail_tok(p, WEFT_EINVAL, "expected a value ('text', a number, true or false), %s",
			 found(p));
		return L_BAD;
	}
	lex(p);
	return p->rc ? L_BAD : k;
}

static const char *lit_kind_name(enum lit_kind k, const struct audience_lit *l)
{
	switch (k) {
	case L_STRING: return "a string";
	case L_NUMBER: return "a number";
	case L_BOOL: return l->boolean ? "true" : "false";
	default: return "null";
	}
}

/* ---- the parser: conditions ---- */

static uint32_t parse_or(struct parser *p, bool in_where);

/*
 * The test after a value (trait, computed trait, property): a comparison,
 * in (...), .exists() or .contains(). Fills n's op and literals.
 */
static bool parse_value_test(struct parser *p, struct audience_node *n, const char *fn)
{
	struct audience_lit l;
	enum lit_kind k;
	uint32_t line, col;
	size_t off;

	if (p->tok.kind == T_DOT) {
		lex(p);
		if (p->rc)
			return false;
		if (is_kw(p, KW_EXISTS)) {
			lex(p);
			n->op = AUDIENCE_EXISTS;
			return expect(p, T_LPAREN, "after exists") &&
			       expect(p, T_RPAREN, "after exists( (it takes no arguments)");
		}
		if (!is_kw(p, KW_CONTAINS)) {
			fail_tok(p, WEFT_EINVAL, "expected exists() or contains() after %s., %s",
				 subject(p, fn, n->name), found(p));
			return false;
		}
		lex(p);
		if (!expect(p, T_LPAREN, "after contains"))
			return false;
		line = p->tok.line;
		col = p->tok.col;
		off = p->tok.off;
		k = parse_literal(p, &l);
		if (k == L_BAD)
			return false;
		if (k != L_STRING) {
			fail_at(p, WEFT_EINVAL, line, col, off,
				"type error: contains() takes a string, found %s", lit_kind_name(k, &l));
			return false;
		}
		n->op = AUDIENCE_CONTAINS;
		n->lit = add_lit(p, &l);
		n->nlit = 1;
		return expect(p, T_RPAREN, "after the string in contains(");
	}
	if (is_cmp(p)) {
		n->op = (enum audience_op)(p->tok.kind - T_EQ);
		lex(p);
		if (p->rc)
			return false;
		line = p->tok.line;
		col = p->tok.col;
		off = p->tok.off;
		k = parse_literal(p, &l);
		if (k == L_BAD)
			return false;
		if (k == L_NULL) {
			fail_at(p, WEFT_EINVAL, line, col, off,
				"type error: nothing compares with null; test presence with %s.exists() "
				"or not %s.exists()", subject(p, fn, n->name), p->subj);
			return false;
		}
		if (k == L_BOOL && n->op != AUDIENCE_EQ && n->op != AUDIENCE_NE) {
			fail_at(p, WEFT_EINVAL, line, col, off,
				"type error: %s can only be compared with = or !=", lit_kind_name(k, &l));
			return false;
		}
		n->lit = add_lit(p, &l);
		n->nlit = 1;
		return true;
	}
	if (is_kw(p, KW_IN)) {
		enum lit_kind first = L_BAD;

		lex(p);
		if (!expect(p, T_LPAREN, "after in"))
			return false;
		n->op = AUDIENCE_IN;
		for (;;) {
			line = p->tok.line;
			col = p->tok.col;
			off = p->tok.off;
			k = parse_literal(p, &l);
			if (k == L_BAD)
				return false;
			if (k != L_STRING && k != L_NUMBER) {
				fail_at(p, WEFT_EINVAL, line, col, off,
					"type error: in (...) takes strings or numbers, found %s",
					lit_kind_name(k, &l));
				return false;
			}
			if (first == L_BAD) {
				first = k;
			} else if (k != first) {
				fail_at(p, WEFT_EINVAL, line, col, off,
					"type error: in (...) mixes strings and numbers; a list holds "
					"values of one type");
				return false;
			}
			if (n->nlit == AUDIENCE_MAX_LIST) {
				fail_at(p, WEFT_ETOOBIG, line, col, off,
					"in (...) has more than %d values", AUDIENCE_MAX_LIST);
				return false;
			}
			if (n->lit == AUDIENCE_NONE)
				n->lit = p->nlits;
			add_lit(p, &l);
			n->nlit++;
			if (p->tok.kind == T_RPAREN)
				break;
			if (p->tok.kind != T_COMMA) {
				fail_tok(p, WEFT_EINVAL, "expected ',' or ')' in the in (...) list, %s",
					 found(p));
				return false;
			}
			lex(p);
			if (p->rc)
				return false;
		}
		lex(p);
		return !p->rc;
	}
	fail_tok(p, WEFT_EINVAL,
		 "type error: %s is a value, not a condition; expected a comparison, in (...), "
		 ".exists() or .contains() after it, %s", subject(p, fn, n->name), found(p));
	return false;
}

/* Reads N days|hours in within(...). */
static bool parse_within(struct parser *p, struct audience_node *n)
{
	uint32_t line, col, max;
	size_t off;
	double v;

	if (!expect(p, T_LPAREN, "after within"))
		return false;
	if (p->tok.kind != T_NUMBER) {
		fail_tok(p, WEFT_EINVAL, "expected a number of days or hours in within(), %s",
			 found(p));
		return false;
	}
	line = p->tok.line;
	col = p->tok.col;
	off = p->tok.off;
	v = strtod(p->nval.data, NULL);
	if (!p->tok.integer || p->tok.negative || v < 1) {
		fail_tok(p, WEFT_EINVAL,
			 "within() takes a whole number of days or hours above zero, %s", found(p));
		return false;
	}
	lex(p);
	if (p->rc)
		return false;
	if (is_kw(p, KW_DAYS) || is_kw(p, KW_DAY)) {
		n->unit = AUDIENCE_UNIT_DAYS;
		max = AUDIENCE_MAX_WITHIN_DAYS;
	} else if (is_kw(p, KW_HOURS) || is_kw(p, KW_HOUR)) {
		n->unit = AUDIENCE_UNIT_HOURS;
		max = AUDIENCE_MAX_WITHIN_HOURS;
	} else {
		fail_tok(p, WEFT_EINVAL, "expected days or hours after the number in within(), %s",
			 found(p));
		return false;
	}
	if (v > max) {
		fail_at(p, WEFT_EINVAL, line, col, off,
			"within() reaches back at most %d days (%d hours), found %s %s",
			AUDIENCE_MAX_WITHIN_DAYS, AUDIENCE_MAX_WITHIN_HOURS, p->nval.data,
			n->unit == AUDIENCE_UNIT_DAYS ? "days" : "hours");
		return false;
	}
	n->window = AUDIENCE_WINDOW_WITHIN;
	n->within = (uint32_t)v;
	n->span_us = n->within * (n->unit == AUDIENCE_UNIT_DAYS ? US_PER_DAY : US_PER_HOUR);
	lex(p);
	return expect(p, T_RPAREN, "to close within(");
}

static bool two_digits(const char *s, int *out)
{
	if (!is_digit(s[0]) || !is_digit(s[1]))
		return false;
	*out = (s[0] - '0') * 10 + (s[1] - '0');
	return true;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (Howard Hinnant's). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * YYYY-MM-DD (midnight UTC) or an RFC 3339 time,
 * YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), to microseconds since
 * the epoch (a fraction past microseconds is cut).
 */
static bool parse_date(const char *s, size_t n, int64_t *us)
{
	int yh, yl, mo, d, h = 0, mi = 0, sec = 0, off_min = 0;
	int64_t frac = 0;

	if (n < 10 || !two_digits(s, &yh) || !two_digits(s + 2, &yl) || s[4] != '-' ||
	    !two_digits(s + 5, &mo) || s[7] != '-' || !two_digits(s + 8, &d))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(yh * 100 + yl, mo))
		return false;
	if (n > 10) {
		size_t i = 19;

		if (n < 20 || (s[10] != 'T' && s[10] != 't') || !two_digits(s + 11, &h) ||
		    s[13] != ':' || !two_digits(s + 14, &mi) || s[16] != ':' ||
		    !two_digits(s + 17, &sec) || h > 23 || mi > 59 || sec > 59)
			return false;
		if (s[i] == '.') {
			int digits = 0;

			for (i++; i < n && is_digit(s[i]); i++, digits++)
				if (digits < 6)
					frac = frac * 10 + (s[i] - '0');
			if (digits == 0 || digits > 9)
				return false;
			for (; digits < 6; digits++)
				frac *= 10;
		}
		if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
			i++;
		} else if (i < n && (s[i] == '+' || s[i] == '-')) {
			int oh, om;

			if (n - i != 6 || !two_digits(s + i + 1, &oh) || s[i + 3] != ':' ||
			    !two_digits(s + i + 4, &om) || oh > 23 || om > 59)
				return false;
			off_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
			i += 6;
		} else {
			return false;
		}
		if (i != n)
			return false;
	}
	*us = ((days_from_civil(yh * 100 + yl, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
		(int64_t)off_min * 60) * 1000000) + frac;
	return true;
}

/* One date string of between(): its string id and time. */
static bool parse_between_date(struct parser *p, uint32_t *id, int64_t *us)
{
	if (p->tok.kind != T_STRING) {
		fail_tok(p, WEFT_EINVAL, "expected a date as a 'string' in between(), %s", found(p));
		return false;
	}
	if (!parse_date(p->sval.data ? p->sval.data : "", p->sval.len, us)) {
		struct buf b = BUF_INIT;

		add_quoted(&b, p->src + p->tok.off, p->tok.len);
		fail_tok(p, WEFT_EINVAL,
			 "%s is not a date; expected 'YYYY-MM-DD' or an RFC 3339 time such as "
			 "'2026-01-01T00:00:00Z'", b.data);
		buf_release(&b);
		return false;
	}
	*id = intern(p, p->sval.data, p->sval.len);
	lex(p);
	return !p->rc;
}

static bool parse_between(struct parser *p, struct audience_node *n)
{
	uint32_t line, col;
	size_t off;

	if (!expect(p, T_LPAREN, "after between") ||
	    !parse_between_date(p, &n->from_str, &n->from_us) ||
	    !expect(p, T_COMMA, "after the first date in between("))
		return false;
	line = p->tok.line;
	col = p->tok.col;
	off = p->tok.off;
	if (!parse_between_date(p, &n->to_str, &n->to_us))
		return false;
	if (n->from_us >= n->to_us) {
		fail_at(p, WEFT_EINVAL, line, col, off,
			"between() needs its first date before its second");
		return false;
	}
	n->window = AUDIENCE_WINDOW_BETWEEN;
	return expect(p, T_RPAREN, "after the second date in between(");
}

/* The aggregation after event(...): exists(), count(), or sum(property('x')) and the like. */
static bool parse_aggregation(struct parser *p, struct audience_node *n, enum kw kw)
{
	char where[48];

	lex(p);
	snprintf(where, sizeof(where), "after %s", kw_names[kw]);
	if (!expect(p, T_LPAREN, where))
		return false;
	switch (kw) {
	case KW_EXISTS:
	case KW_COUNT:
		n->agg = kw == KW_EXISTS ? AUDIENCE_AGG_NONE : AUDIENCE_AGG_COUNT;
		n->op = AUDIENCE_EXISTS;
		if (p->tok.kind != T_RPAREN) {
			fail_tok(p, WEFT_EINVAL, "%s() takes no arguments, %s", kw_names[kw], found(p));
			return false;
		}
		break;
	default:
		n->agg = kw == KW_SUM ? AUDIENCE_AGG_SUM : kw == KW_AVG ? AUDIENCE_AGG_AVG :
			 kw == KW_MIN ? AUDIENCE_AGG_MIN : AUDIENCE_AGG_MAX;
		if (!is_kw(p, KW_PROPERTY)) {
			fail_tok(p, WEFT_EINVAL, "expected property('name') in %s(), %s",
				 kw_names[kw], found(p));
			return false;
		}
		lex(p);
		n->agg_prop = parse_name(p, "property");
		if (n->agg_prop == AUDIENCE_NONE)
			return false;
		snprintf(where, sizeof(where), "to close %s(", kw_names[kw]);
		if (p->tok.kind != T_RPAREN) {
			expect(p, T_RPAREN, where);
			return false;
		}
	}
	lex(p);
	return !p->rc;
}

/*
 * event('name') then, in any order, at most one where(...) and one window
 * (within or between), then exists() or an aggregation compared with a
 * number.
 */
static uint32_t parse_event(struct parser *p, uint32_t line, uint32_t col)
{
	struct audience_node n;
	enum kw kw;

	node_init(&n, AUDIENCE_EVENT, line, col);
	n.name = parse_name(p, "event");
	if (n.name == AUDIENCE_NONE)
		return AUDIENCE_NONE;
	for (;;) {
		if (p->tok.kind != T_DOT) {
			fail_tok(p, WEFT_EINVAL,
				 "type error: %s is not a condition by itself; expected .exists() or an "
				 "aggregation compared with a number (such as .count() >= 1), %s",
				 subject(p, "event", n.name), found(p));
			return AUDIENCE_NONE;
		}
		lex(p);
		if (p->rc)
			return AUDIENCE_NONE;
		kw = p->tok.kind == T_WORD ? p->tok.kw : KW_NONE;
		if (kw == KW_WHERE) {
			uint32_t wline = p->tok.line, wcol = p->tok.col;
			uint32_t where_id;

			if (n.kid != AUDIENCE_NONE) {
				fail_tok(p, WEFT_EINVAL,
					 "%s already has a where(); join its conditions with and in one",
					 subject(p, "event", n.name));
				return AUDIENCE_NONE;
			}
			lex(p);
			if (!expect(p, T_LPAREN, "after where") || !deeper(p))
				return AUDIENCE_NONE;
			where_id = parse_or(p, true);
			if (where_id == AUDIENCE_NONE)
				return AUDIENCE_NONE;
			if (p->tok.kind != T_RPAREN) {
				fail_tok(p, WEFT_EINVAL,
					 "expected 'and', 'or' or ')' to close the where( at line %u, "
					 "column %u, %s", wline, wcol, found(p));
				return AUDIENCE_NONE;
			}
			lex(p);
			p->depth--;
			n.kid = where_id;
			n.nkids = 1;
		} else if (kw == KW_WITHIN || kw == KW_BETWEEN) {
			if (n.window != AUDIENCE_WINDOW_ALL) {
				fail_tok(p, WEFT_EINVAL,
					 "%s already has a time window; use one within() or between()",
					 subject(p, "event", n.name));
				return AUDIENCE_NONE;
			}
			lex(p);
			if (!(kw == KW_WITHIN ? parse_within(p, &n) : parse_between(p, &n)))
				return AUDIENCE_NONE;
		} else if (kw == KW_EXISTS || kw == KW_COUNT || kw == KW_SUM || kw == KW_AVG ||
			   kw == KW_MIN || kw == KW_MAX) {
			if (!parse_aggregation(p, &n, kw))
				return AUDIENCE_NONE;
			break;
		} else {
			fail_tok(p, WEFT_EINVAL,
				 "expected where(), within(), between(), exists(), count(), sum(), avg(), "
				 "min() or max() after %s., %s", subject(p, "event", n.name), found(p));
			return AUDIENCE_NONE;
		}
	}
	if (p->tok.kind == T_DOT) {
		fail_tok(p, WEFT_EINVAL,
			 "nothing can follow %s(): where(), within() and between() come before it",
			 agg_text[n.agg]);
		return AUDIENCE_NONE;
	}
	if (n.agg != AUDIENCE_AGG_NONE) {
		struct audience_lit l;
		enum lit_kind k;
		uint32_t lline, lcol;
		size_t loff;

		if (!is_cmp(p)) {
			if (is_kw(p, KW_IN))
				fail_tok(p, WEFT_EINVAL,
					 "type error: %s() is compared with =, !=, <, <=, > or >=, not with in",
					 agg_text[n.agg]);
			else
				fail_tok(p, WEFT_EINVAL,
					 "type error: %s() is a number, not a condition; expected a "
					 "comparison with a number after it (such as >= 1), %s",
					 agg_text[n.agg], found(p));
			return AUDIENCE_NONE;
		}
		n.op = (enum audience_op)(p->tok.kind - T_EQ);
		lex(p);
		if (p->rc)
			return AUDIENCE_NONE;
		lline = p->tok.line;
		lcol = p->tok.col;
		loff = p->tok.off;
		k = parse_literal(p, &l);
		if (k == L_BAD)
			return AUDIENCE_NONE;
		if (k != L_NUMBER) {
			fail_at(p, WEFT_EINVAL, lline, lcol, loff,
				"type error: %s() is a number and cannot be compared with %s",
				agg_text[n.agg], lit_kind_name(k, &l));
			return AUDIENCE_NONE;
		}
		n.lit = add_lit(p, &l);
		n.nlit = 1;
	}
	return add_node(p, &n);
}

/* A condition that is not and, or, not: a test, an event, an audience, or (...). */
static uint32_t parse_primary(struct parser *p, bool in_where)
{
	uint32_t line = p->tok.line, col = p->tok.col, id;
	struct audience_node n;
	enum kw kw = p->tok.kind == T_WORD ? p->tok.kw : KW_NONE;

	if (p->tok.kind == T_LPAREN) {
		if (!deeper(p))
			return AUDIENCE_NONE;
		lex(p);
		if (p->rc || (id = parse_or(p, in_where)) == AUDIENCE_NONE)
			return AUDIENCE_NONE;
		if (p->tok.kind != T_RPAREN) {
			fail_tok(p, WEFT_EINVAL,
				 "expected 'and', 'or' or ')' to close the '(' at line %u, column %u, %s",
				 line, col, found(p));
			return AUDIENCE_NONE;
		}
		lex(p);
		p->depth--;
	} else if (in_where &&
		   (kw == KW_TRAIT || kw == KW_COMPUTED || kw == KW_EVENT || kw == KW_AUDIENCE)) {
		fail_tok(p, WEFT_EINVAL,
			 "where() takes conditions on property('name'), %s", found(p));
		return AUDIENCE_NONE;
	} else if (kw == KW_TRAIT || kw == KW_COMPUTED || kw == KW_PROPERTY) {
		const char *fn = kw_names[kw];

		if (kw == KW_PROPERTY && !in_where) {
			fail_tok(p, WEFT_EINVAL,
				 "property() can only be used inside an event's where(), or in sum(), "
				 "avg(), min() and max()");
			return AUDIENCE_NONE;
		}
		node_init(&n, kw == KW_TRAIT ? AUDIENCE_TRAIT : kw == KW_COMPUTED ? AUDIENCE_COMPUTED :
			  AUDIENCE_PROPERTY, line, col);
		lex(p);
		n.name = parse_name(p, fn);
		if (n.name == AUDIENCE_NONE || !parse_value_test(p, &n, fn))
			return AUDIENCE_NONE;
		id = add_node(p, &n);
	} else if (kw == KW_EVENT) {
		lex(p);
		if ((id = parse_event(p, line, col)) == AUDIENCE_NONE)
			return AUDIENCE_NONE;
	} else if (kw == KW_AUDIENCE) {
		node_init(&n, AUDIENCE_AUDIENCE, line, col);
		lex(p);
		n.name = parse_name(p, "audience");
		if (n.name == AUDIENCE_NONE)
			return AUDIENCE_NONE;
		id = add_node(p, &n);
	} else {
		if (in_where)
			fail_tok(p, WEFT_EINVAL,
				 "expected a condition on an event property (property('name') ..., "
				 "not or '('), %s", found(p));
		else
			fail_tok(p, WEFT_EINVAL,
				 "expected a condition (trait(), event(), computed(), audience(), not "
				 "or '('), %s", found(p));
		return AUDIENCE_NONE;
	}
	if (is_cmp(p) || is_kw(p, KW_IN)) {
		fail_tok(p, WEFT_EINVAL,
			 "type error: the condition before '%.*s' is already true or false and cannot "
			 "be compared (negate it with not)", (int)p->tok.len, p->src + p->tok.off);
		return AUDIENCE_NONE;
	}
	return id;
}

/* not ... | a primary. */
static uint32_t parse_unary(struct parser *p, bool in_where)
{
	struct audience_node n;
	uint32_t kid;

	if (!is_kw(p, KW_NOT))
		return parse_primary(p, in_where);
	node_init(&n, AUDIENCE_NOT, p->tok.line, p->tok.col);
	if (!deeper(p))
		return AUDIENCE_NONE;
	lex(p);
	if (p->rc || (kid = parse_unary(p, in_where)) == AUDIENCE_NONE)
		return AUDIENCE_NONE;
	p->depth--;
	n.kid = kid;
	n.nkids = 1;
	return add_node(p, &n);
}

/*
 * A chain joined by and (kind AUDIENCE_AND) or or (AUDIENCE_OR): one node with every
 * operand as a kid, or the operand alone.
 */
static uint32_t parse_chain(struct parser *p, bool in_where, enum audience_kind kind)
{
	enum kw joiner = kind == AUDIENCE_OR ? KW_OR : KW_AND;
	uint32_t first, last, nkids = 1;
	struct audience_node n;

	first = kind == AUDIENCE_OR ? parse_chain(p, in_where, AUDIENCE_AND) : parse_unary(p, in_where);
	if (first == AUDIENCE_NONE)
		return AUDIENCE_NONE;
	last = first;
	while (is_kw(p, joiner)) {
		uint32_t k;

		lex(p);
		if (p->rc)
			return AUDIENCE_NONE;
		k = kind == AUDIENCE_OR ? parse_chain(p, in_where, AUDIENCE_AND) : parse_unary(p, in_where);
		if (k == AUDIENCE_NONE)
			return AUDIENCE_NONE;
		p->nodes[last].next = k;
		last = k;
		nkids++;
	}
	if (nkids == 1)
		return first;
	node_init(&n, kind, p->nodes[first].line, p->nodes[first].column);
	n.kid = first;
	n.nkids = nkids;
	return add_node(p, &n);
}

static uint32_t parse_or(struct parser *p, bool in_where)
{
	return parse_chain(p, in_where, AUDIENCE_OR);
}

/* ---- packing ---- */

struct dep_tmp {
	struct audience_dep dep;
	const char *name;	/* into the parser's chars */
	uint32_t len;
};

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int dep_cmp(const void *va, const void *vb)
{
	const struct dep_tmp *a = va, *b = vb;
	uint32_t n = a->len < b->len ? a->len : b->len;
	int c;

	if (a->dep.kind != b->dep.kind)
		return a->dep.kind < b->dep.kind ? -1 : 1;
	c = memcmp(a->name, b->name, n);
	if (c || a->len != b->len)
		return c ? c : a->len < b->len ? -1 : 1;
	if (a->dep.window != b->dep.window)
		return a->dep.window < b->dep.window ? -1 : 1;
	if ((c = cmp_i64(a->dep.span_us, b->dep.span_us)))
		return c;
	if ((c = cmp_i64(a->dep.from_us, b->dep.from_us)))
		return c;
	return cmp_i64(a->dep.to_us, b->dep.to_us);
}

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* The parser's tree, strings and dependencies, in one allocation. */
static struct audience_expr *pack(struct parser *p)
{
	struct dep_tmp *tmp = xcalloc(p->nnodes, sizeof(*tmp));
	size_t ndeps = 0, o_nodes, o_lits, o_strs, o_deps, o_chars, total;
	struct audience_expr *e;
	char *base;

	for (uint32_t i = 0; i < p->nnodes; i++) {
		const struct audience_node *n = &p->nodes[i];
		struct dep_tmp *t = &tmp[ndeps];

		switch (n->kind) {
		case AUDIENCE_TRAIT: t->dep.kind = AUDIENCE_DEP_TRAIT; break;
		case AUDIENCE_COMPUTED: t->dep.kind = AUDIENCE_DEP_COMPUTED; break;
		case AUDIENCE_AUDIENCE: t->dep.kind = AUDIENCE_DEP_AUDIENCE; break;
		case AUDIENCE_EVENT:
			t->dep.kind = AUDIENCE_DEP_EVENT;
			t->dep.window = n->window;
			t->dep.span_us = n->span_us;
			t->dep.from_us = n->from_us;
			t->dep.to_us = n->to_us;
			break;
		default:
			continue;
		}
		t->dep.name = n->name;
		t->name = p->chars.data + p->strs[n->name].off;
		t->len = p->strs[n->name].len;
		ndeps++;
	}
	qsort(tmp, ndeps, sizeof(*tmp), dep_cmp);
	if (ndeps > 1) {
		size_t w = 1;

		for (size_t r = 1; r < ndeps; r++)
			if (dep_cmp(&tmp[w - 1], &tmp[r]) != 0)
				tmp[w++] = tmp[r];
		ndeps = w;
	}

	o_nodes = align8(sizeof(*e));
	o_lits = align8(o_nodes + xmul(p->nnodes, sizeof(*e->nodes)));
	o_strs = align8(o_lits + xmul(p->nlits, sizeof(*e->lits)));
	o_deps = align8(o_strs + xmul(p->nstrs, sizeof(*e->strs)));
	o_chars = o_deps + xmul(ndeps, sizeof(*e->deps));
	total = o_chars + p->chars.len + 1;
	base = xmalloc(total);
	e = (struct audience_expr *)(void *)base;
	e->nnodes = p->nnodes;
	e->nlits = p->nlits;
	e->nstrs = p->nstrs;
	e->ndeps = ndeps;
	e->bytes = total;
	e->nodes = (struct audience_node *)(void *)(base + o_nodes);
	e->lits = (struct audience_lit *)(void *)(base + o_lits);
	e->strs = (struct span *)(void *)(base + o_strs);
	e->deps = (struct audience_dep *)(void *)(base + o_deps);
	e->chars = base + o_chars;
	memcpy(e->nodes, p->nodes, p->nnodes * sizeof(*e->nodes));
	if (p->nlits)
		memcpy(e->lits, p->lits, p->nlits * sizeof(*e->lits));
	if (p->nstrs)
		memcpy(e->strs, p->strs, p->nstrs * sizeof(*e->strs));
	if (p->chars.len)
		memcpy(e->chars, p->chars.data, p->chars.len);
	e->chars[p->chars.len] = '\0';
	for (size_t i = 0; i < ndeps; i++) {
		e->deps[i] = tmp[i].dep;
		e->deps[i].name_str = e->chars + e->strs[tmp[i].dep.name].off;
	}
	free(tmp);
	return e;
}

/* ---- the entry point ---- */

static void parser_release(struct parser *p)
{
	buf_release(&p->sval);
	buf_release(&p->nval);
	buf_release(&p->chars);
	free(p->nodes);
	free(p->lits);
	free(p->strs);
	free(p->itab);
}

int audience_parse(const char *src, size_t len, struct audience_expr **out, struct audience_error *err)
{
	struct audience_error scratch;
	struct parser p;
	uint32_t root;
	int rc;

	*out = NULL;
	if (!err)
		err = &scratch;
	memset(err, 0, sizeof(*err));
	memset(&p, 0, sizeof(p));
	p.src = src ? src : "";
	p.len = src ? len : 0;
	p.line = 1;
	p.col = 1;
	p.err = err;
	if (p.len > AUDIENCE_MAX_SOURCE) {
		fail_at(&p, WEFT_ETOOBIG, 1, 1, 0,
			"the definition is %zu bytes; at most %d are allowed", p.len, AUDIENCE_MAX_SOURCE);
		return p.rc;
	}
	for (size_t i = 0; i < p.len;) {
		uint32_t cp;
		size_t k = utf8_decode((const unsigned char *)p.src + i, p.len - i, &cp);

		if (!k) {
			advance(&p, i);
			fail_at(&p, WEFT_EINVAL, p.line, p.col, i,
				"the text is not valid UTF-8 (byte 0x%02x)", (unsigned char)p.src[i]);
			return p.rc;
		}
		i += k;
	}

	lex(&p);
	root = p.rc ? AUDIENCE_NONE : parse_or(&p, false);
	if (root != AUDIENCE_NONE && p.tok.kind != T_EOF)
		fail_tok(&p, WEFT_EINVAL, "expected 'and', 'or' or the end of the input, %s",
			 found(&p));
	rc = p.rc;
	if (!rc) {
		assert(root == p.nnodes - 1 && p.depth == 0);
		*out = pack(&p);
	}
	parser_release(&p);
	return rc;
}

void audience_expr_free(struct audience_expr *e)
{
	free(e);
}

/* ---- walking ---- */

uint32_t audience_expr_root(const struct audience_expr *e)
{
	return e->nnodes - 1;
}

uint32_t audience_expr_nodes(const struct audience_expr *e)
{
	return e->nnodes;
}

const struct audience_node *audience_expr_node(const struct audience_expr *e, uint32_t id)
{
	assert(id < e->nnodes);
	return &e->nodes[id];
}

const struct audience_lit *audience_expr_lit(const struct audience_expr *e, uint32_t i)
{
	assert(i < e->nlits);
	return &e->lits[i];
}

const char *audience_expr_str(const struct audience_expr *e, uint32_t id, size_t *len)
{
	assert(id < e->nstrs);
	if (len)
		*len = e->strs[id].len;
	return e->chars + e->strs[id].off;
}

size_t audience_expr_bytes(const struct audience_expr *e)
{
	return e->bytes;
}

const struct audience_dep *audience_expr_deps(const struct audience_expr *e, size_t *n)
{
	*n = e->ndeps;
	return e->deps;
}

/* ---- printing ---- */

static void print_string(const struct audience_expr *e, uint32_t id, struct buf *out)
{
	size_t n;
	const char *s = audience_expr_str(e, id, &n);

	buf_addc(out, '\'');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\'' || s[i] == '\\')
			buf_addc(out, '\\');
		buf_addc(out, s[i]);
	}
	buf_addc(out, '\'');
}

static void print_lit(const struct audience_expr *e, uint32_t i, struct buf *out)
{
	const struct audience_lit *l = audience_expr_lit(e, i);

	switch (l->type) {
	case AUDIENCE_TYPE_STRING:
		print_string(e, l->str, out);
		break;
	case AUDIENCE_TYPE_NUMBER:
		buf_adds(out, audience_expr_str(e, l->str, NULL));
		break;
	case AUDIENCE_TYPE_BOOL:
		buf_adds(out, l->boolean ? "true" : "false");
		break;
	}
}

static void print_call(const struct audience_expr *e, const char *fn, uint32_t name, struct buf *out)
{
	buf_adds(out, fn);
	buf_addc(out, '(');
	print_string(e, name, out);
	buf_addc(out, ')');
}

static void print_test(const struct audience_expr *e, const struct audience_node *n, struct buf *out)
{
	switch (n->op) {
	case AUDIENCE_IN:
		buf_adds(out, " in (");
		for (uint32_t i = 0; i < n->nlit; i++) {
			if (i)
				buf_adds(out, ", ");
			print_lit(e, n->lit + i, out);
		}
		buf_addc(out, ')');
		break;
	case AUDIENCE_EXISTS:
		buf_adds(out, ".exists()");
		break;
	case AUDIENCE_CONTAINS:
		buf_adds(out, ".contains(");
		print_lit(e, n->lit, out);
		buf_addc(out, ')');
		break;
	default:
		buf_printf(out, " %s ", op_text[n->op]);
		print_lit(e, n->lit, out);
		break;
	}
}

static void print_event(const struct audience_expr *e, const struct audience_node *n, struct buf *out)
{
	print_call(e, "event", n->name, out);
	if (n->kid != AUDIENCE_NONE) {
		buf_adds(out, ".where(");
		audience_expr_print_node(e, n->kid, out);
		buf_addc(out, ')');
	}
	if (n->window == AUDIENCE_WINDOW_WITHIN) {
		buf_printf(out, ".within(%u %s%s)", n->within,
			   n->unit == AUDIENCE_UNIT_DAYS ? "day" : "hour", n->within == 1 ? "" : "s");
	} else if (n->window == AUDIENCE_WINDOW_BETWEEN) {
		buf_adds(out, ".between(");
		print_string(e, n->from_str, out);
		buf_adds(out, ", ");
		print_string(e, n->to_str, out);
		buf_addc(out, ')');
	}
	if (n->agg == AUDIENCE_AGG_NONE) {
		buf_adds(out, ".exists()");
		return;
	}
	buf_printf(out, ".%s(", agg_text[n->agg]);
	if (n->agg != AUDIENCE_AGG_COUNT)
		print_call(e, "property", n->agg_prop, out);
	buf_printf(out, ") %s ", op_text[n->op]);
	print_lit(e, n->lit, out);
}

void audience_expr_print_node(const struct audience_expr *e, uint32_t id, struct buf *out)
{
	const struct audience_node *n = audience_expr_node(e, id);

	switch (n->kind) {
	case AUDIENCE_OR:
	case AUDIENCE_AND:
		for (uint32_t k = n->kid; k != AUDIENCE_NONE; k = e->nodes[k].next) {
			enum audience_kind kk = e->nodes[k].kind;
			/* An and or or kid was parenthesised: keep it so. */
			bool paren = kk == AUDIENCE_OR || (n->kind == AUDIENCE_AND && kk == AUDIENCE_AND);

			if (k != n->kid)
				buf_adds(out, n->kind == AUDIENCE_OR ? " or " : " and ");
			if (paren)
				buf_addc(out, '(');
			audience_expr_print_node(e, k, out);
			if (paren)
				buf_addc(out, ')');
		}
		break;
	case AUDIENCE_NOT: {
		enum audience_kind kk = e->nodes[n->kid].kind;
		bool paren = kk == AUDIENCE_OR || kk == AUDIENCE_AND;

		buf_adds(out, paren ? "not (" : "not ");
		audience_expr_print_node(e, n->kid, out);
		if (paren)
			buf_addc(out, ')');
		break;
	}
	case AUDIENCE_TRAIT:
	case AUDIENCE_COMPUTED:
	case AUDIENCE_PROPERTY:
		print_call(e, n->kind == AUDIENCE_TRAIT ? "trait" : n->kind == AUDIENCE_COMPUTED ?
			   "computed" : "property", n->name, out);
		print_test(e, n, out);
		break;
	case AUDIENCE_EVENT:
		print_event(e, n, out);
		break;
	case AUDIENCE_AUDIENCE:
		print_call(e, "audience", n->name, out);
		break;
	}
}

void audience_expr_print(const struct audience_expr *e, struct buf *out)
{
	audience_expr_print_node(e, audience_expr_root(e), out);
}

/* ---- equality ---- */

static bool str_equal(const struct audience_expr *a, uint32_t ia, const struct audience_expr *b,
		      uint32_t ib)
{
	if (ia == AUDIENCE_NONE || ib == AUDIENCE_NONE)
		return ia == ib;
	return a->strs[ia].len == b->strs[ib].len &&
	       !memcmp(a->chars + a->strs[ia].off, b->chars + b->strs[ib].off, a->strs[ia].len);
}

static bool lit_equal(const struct audience_expr *a, uint32_t ia, const struct audience_expr *b,
		      uint32_t ib)
{
	const struct audience_lit *la = &a->lits[ia], *lb = &b->lits[ib];

	if (la->type != lb->type)
		return false;
	if (la->type == AUDIENCE_TYPE_BOOL)
		return la->boolean == lb->boolean;
	return str_equal(a, la->str, b, lb->str);
}

static bool node_equal(const struct audience_expr *a, uint32_t ia, const struct audience_expr *b,
		       uint32_t ib)
{
	const struct audience_node *na = &a->nodes[ia], *nb = &b->nodes[ib];
	uint32_t ka, kb;

	if (na->kind != nb->kind || na->op != nb->op || na->nkids != nb->nkids ||
	    na->nlit != nb->nlit || na->agg != nb->agg || na->window != nb->window ||
	    na->unit != nb->unit || na->within != nb->within || na->span_us != nb->span_us ||
	    na->from_us != nb->from_us || na->to_us != nb->to_us ||
	    !str_equal(a, na->name, b, nb->name) || !str_equal(a, na->agg_prop, b, nb->agg_prop) ||
	    !str_equal(a, na->from_str, b, nb->from_str) || !str_equal(a, na->to_str, b, nb->to_str))
		return false;
	for (uint32_t i = 0; i < na->nlit; i++)
		if (!lit_equal(a, na->lit + i, b, nb->lit + i))
			return false;
	for (ka = na->kid, kb = nb->kid; ka != AUDIENCE_NONE && kb != AUDIENCE_NONE;
	     ka = a->nodes[ka].next, kb = b->nodes[kb].next)
		if (!node_equal(a, ka, b, kb))
			return false;
	return ka == kb;
}

bool audience_expr_equal(const struct audience_expr *a, const struct audience_expr *b)
{
	return node_equal(a, audience_expr_root(a), b, audience_expr_root(b));
}
