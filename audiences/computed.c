/*
 * Computed traits' per-profile state (audiences.h, "computed traits"): the
 * blob is decoded into an array of time buckets, changed, and encoded
 * again, so the blob is the only form a state has between calls.
 *
 * Applying an event and merging two profiles are the same operation: an
 * event becomes a one-event bucket, which is folded into the state's bucket
 * of the same number exactly as a merged profile's bucket is. A value is
 * the fold of the live buckets. So merge equivalence holds by construction
 * wherever the fold is associative and commutative, which it is for every
 * kind but the floating point sums of SUM and AVG (equal up to rounding).
 *
 * Decoded strings are not copied: they point into the blobs being folded
 * or into the event's properties, all of which outlive the encoding.
 */
#include "audiences/audiences.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/err.h"

#define STATE_VERSION 1
#define HOUR_US (3600LL * 1000000LL)
#define DAY_US (24 * HOUR_US)

/* ---- where-conditions ---- */

static bool str_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* Bytewise order, a prefix before what extends it. */
static int str_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* True when s (n bytes) holds needle (len bytes) somewhere. */
static bool holds(const char *s, size_t n, const char *needle, size_t len)
{
	for (size_t i = 0; i + len <= n; i++)
		if (memcmp(s + i, needle, len) == 0)
			return true;
	return false;
}

static bool op_holds(enum audience_op op, int c)
{
	switch (op) {
	case AUDIENCE_EQ: return c == 0;
	case AUDIENCE_NE: return c != 0;
	case AUDIENCE_LT: return c < 0;
	case AUDIENCE_LE: return c <= 0;
	case AUDIENCE_GT: return c > 0;
	case AUDIENCE_GE: return c >= 0;
	default: return false;
	}
}

/* v op lit; a value of another type than the literal's fails every op. */
static bool compare(const struct audience_expr *e, const json_t *v, enum audience_op op,
		    const struct audience_lit *lit)
{
	switch (lit->type) {
	case AUDIENCE_TYPE_NUMBER: {
		double d;

		if (!json_is_number(v))
			return false;
		d = json_number_value(v);
		return op_holds(op, d < lit->number ? -1 : d > lit->number);
	}
	case AUDIENCE_TYPE_STRING: {
		size_t len;
		const char *s = audience_expr_str(e, lit->str, &len);

		if (!json_is_string(v))
			return false;
		return op_holds(op, str_cmp(json_string_value(v), json_string_length(v), s, len));
	}
	case AUDIENCE_TYPE_BOOL:
		if (!json_is_boolean(v) || (op != AUDIENCE_EQ && op != AUDIENCE_NE))
			return false;
		return op_holds(op, json_is_true(v) != lit->boolean);
	}
	return false;
}

static bool value_test(const struct audience_expr *e, const struct audience_node *n,
		       const json_t *v)
{
	if (n->op == AUDIENCE_EXISTS)
		return v && !json_is_null(v);
	if (!v)
		return false;
	if (n->op == AUDIENCE_CONTAINS) {
		size_t len, i;
		const char *s = audience_expr_str(e, audience_expr_lit(e, n->lit)->str, &len);
		const json_t *el;

		if (json_is_string(v))
			return holds(json_string_value(v), json_string_length(v), s, len);
		json_array_foreach(v, i, el)
			if (json_is_string(el) &&
			    str_eq(json_string_value(el), json_string_length(el), s, len))
				return true;
		return false;
	}
	if (n->op == AUDIENCE_IN) {
		for (uint32_t i = 0; i < n->nlit; i++)
			if (compare(e, v, AUDIENCE_EQ, audience_expr_lit(e, n->lit + i)))
				return true;
		return false;
	}
	return compare(e, v, n->op, audience_expr_lit(e, n->lit));
}

bool audience_value_test(const struct audience_expr *e, uint32_t id, const json_t *v)
{
	return value_test(e, audience_expr_node(e, id), v);
}

static bool property_test(const struct audience_expr *e, const struct audience_node *n,
			  const json_t *properties)
{
	const json_t *v = NULL;

	if (json_is_object(properties))
		v = json_object_get(properties, audience_expr_str(e, n->name, NULL));
	return value_test(e, n, v);
}

/* Recursion is bounded by AUDIENCE_MAX_DEPTH, which the parser enforces. */
bool audience_where_match(const struct audience_expr *e, uint32_t id, const json_t *properties)
{
	const struct audience_node *n = audience_expr_node(e, id);
	uint32_t k;

	switch (n->kind) {
	case AUDIENCE_PROPERTY:
		return property_test(e, n, properties);
	case AUDIENCE_NOT:
		return !audience_where_match(e, n->kid, properties);
	case AUDIENCE_AND:
		for (k = n->kid; k != AUDIENCE_NONE; k = audience_expr_node(e, k)->next)
			if (!audience_where_match(e, k, properties))
				return false;
		return true;
	case AUDIENCE_OR:
		for (k = n->kid; k != AUDIENCE_NONE; k = audience_expr_node(e, k)->next)
			if (audience_where_match(e, k, properties))
				return true;
		return false;
	default:
		assert(!"a where condition holds only property tests");
		return false;
	}
}

/* ---- buckets ---- */

struct cval {
	const char *s;		/* not owned */
	size_t len;
	uint64_t count;		/* MOST_FREQUENT */
};

struct bucket {
	int64_t idx;
	uint64_t n;		/* COUNT: events; SUM..MAX: numeric values; FIRST, LAST: 0 or 1 */
	double agg;		/* SUM, AVG: the sum; MIN, MAX: the extreme */
	int64_t ts;		/* FIRST, LAST: the value's event */
	struct cval *vals;	/* sorted; FIRST, LAST: one */
	size_t nvals, cap;
};

struct cstate {
	struct bucket *b;	/* ascending by idx */
	size_t nb, cap;
};

static void cstate_release(struct cstate *cs)
{
	for (size_t i = 0; i < cs->nb; i++)
		free(cs->b[i].vals);
	free(cs->b);
	memset(cs, 0, sizeof(*cs));
}

static bool is_numeric_kind(enum audience_computed_kind k)
{
	return k == AUDIENCE_COMPUTED_SUM || k == AUDIENCE_COMPUTED_AVG ||
	       k == AUDIENCE_COMPUTED_MIN || k == AUDIENCE_COMPUTED_MAX;
}

static bool is_string_kind(enum audience_computed_kind k)
{
	return k == AUDIENCE_COMPUTED_MOST_FREQUENT || k == AUDIENCE_COMPUTED_UNIQUE_LIST ||
	       k == AUDIENCE_COMPUTED_UNIQUE_COUNT;
}

static bool is_unique_kind(enum audience_computed_kind k)
{
	return k == AUDIENCE_COMPUTED_UNIQUE_LIST || k == AUDIENCE_COMPUTED_UNIQUE_COUNT;
}

/* Adds s (count times) to b's sorted values, within the kind's caps. */
static void bucket_add_val(enum audience_computed_kind kind, struct bucket *b, const char *s,
			   size_t len, uint64_t count)
{
	size_t lo = 0, hi = b->nvals;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = str_cmp(b->vals[mid].s, b->vals[mid].len, s, len);

		if (c == 0) {
			b->vals[mid].count += count;
			return;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (kind == AUDIENCE_COMPUTED_MOST_FREQUENT && b->nvals >= AUDIENCE_COMPUTED_MAX_DISTINCT)
		return;
	/* A unique list keeps the smallest strings: past the cap, the largest goes. */
	if (is_unique_kind(kind) && b->nvals >= AUDIENCE_COMPUTED_MAX_UNIQUE) {
		if (lo == b->nvals)
			return;
		b->nvals--;
	}
	if (b->nvals == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 4;
		b->vals = xrealloc(b->vals, xmul(b->cap, sizeof(*b->vals)));
	}
	memmove(b->vals + lo + 1, b->vals + lo, (b->nvals - lo) * sizeof(*b->vals));
	b->vals[lo] = (struct cval){ s, len, count };
	b->nvals++;
}

/* (ts, text) order, for first and last. */
static int when_cmp(const struct bucket *a, const struct bucket *b)
{
	if (a->ts != b->ts)
		return a->ts < b->ts ? -1 : 1;
	return str_cmp(a->vals[0].s, a->vals[0].len, b->vals[0].s, b->vals[0].len);
}

/* Folds src into dst: the one operation behind apply, merge and value. */
static void bucket_fold(enum audience_computed_kind kind, struct bucket *dst,
			const struct bucket *src)
{
	switch (kind) {
	case AUDIENCE_COMPUTED_COUNT:
		dst->n += src->n;
		break;
	case AUDIENCE_COMPUTED_SUM:
	case AUDIENCE_COMPUTED_AVG:
		if (src->n)
			dst->agg = dst->n ? dst->agg + src->agg : src->agg;
		dst->n += src->n;
		break;
	case AUDIENCE_COMPUTED_MIN:
		if (src->n && (!dst->n || src->agg < dst->agg))
			dst->agg = src->agg;
		dst->n += src->n;
		break;
	case AUDIENCE_COMPUTED_MAX:
		if (src->n && (!dst->n || src->agg > dst->agg))
			dst->agg = src->agg;
		dst->n += src->n;
		break;
	case AUDIENCE_COMPUTED_FIRST:
	case AUDIENCE_COMPUTED_LAST:
		if (!src->n)
			break;
		if (!dst->n || (kind == AUDIENCE_COMPUTED_FIRST ? when_cmp(src, dst) < 0
							      : when_cmp(src, dst) > 0)) {
			dst->ts = src->ts;
			if (!dst->n)
				bucket_add_val(kind, dst, src->vals[0].s, src->vals[0].len, 1);
			else
				dst->vals[0] = src->vals[0];
			dst->n = 1;
		}
		break;
	case AUDIENCE_COMPUTED_MOST_FREQUENT:
	case AUDIENCE_COMPUTED_UNIQUE_LIST:
	case AUDIENCE_COMPUTED_UNIQUE_COUNT:
		for (size_t i = 0; i < src->nvals; i++)
			bucket_add_val(kind, dst, src->vals[i].s, src->vals[i].len,
				       src->vals[i].count);
		break;
	}
}

/* The bucket numbered idx, made empty if cs has none. */
static struct bucket *cstate_bucket(struct cstate *cs, int64_t idx)
{
	size_t i = cs->nb;

	while (i > 0 && cs->b[i - 1].idx >= idx) {
		if (cs->b[i - 1].idx == idx)
			return &cs->b[i - 1];
		i--;
	}
	if (cs->nb == cs->cap) {
		cs->cap = cs->cap ? 2 * cs->cap : 4;
		cs->b = xrealloc(cs->b, xmul(cs->cap, sizeof(*cs->b)));
	}
	memmove(cs->b + i + 1, cs->b + i, (cs->nb - i) * sizeof(*cs->b));
	memset(&cs->b[i], 0, sizeof(cs->b[i]));
	cs->b[i].idx = idx;
	cs->nb++;
	return &cs->b[i];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t bucket_of(const struct audience_computed *def, int64_t ts_us)
{
	if (def->window == 0)
		return 0;
	return floor_div(ts_us, def->unit == AUDIENCE_UNIT_HOURS ? HOUR_US : DAY_US);
}

/* Buckets numbered at or below this are out of the window at now_us. */
static int64_t expired_up_to(const struct audience_computed *def, int64_t now_us)
{
	if (def->window == 0)
		return INT64_MIN;
	return bucket_of(def, now_us) - (int64_t)def->window;
}

static void cstate_expire(const struct audience_computed *def, struct cstate *cs, int64_t now_us)
{
	int64_t limit = expired_up_to(def, now_us);
	size_t k = 0;

	while (k < cs->nb && cs->b[k].idx <= limit)
		free(cs->b[k++].vals);
	if (k == 0)
		return;		/* and cs->b may be NULL, which memmove must not get */
	memmove(cs->b, cs->b + k, (cs->nb - k) * sizeof(*cs->b));
	cs->nb -= k;
}

/* ---- the blob ---- */

static void put_varint(struct buf *out, uint64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;

	do {
		tmp[n] = v & 0x7f;
		v >>= 7;
		if (v)
			tmp[n] |= 0x80;
		n++;
	} while (v);
	buf_add(out, tmp, n);
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static void put_double(struct buf *out, double d)
{
	unsigned char tmp[8];
	uint64_t bits;

	memcpy(&bits, &d, 8);
	for (int i = 0; i < 8; i++)
		tmp[i] = (unsigned char)(bits >> (8 * i));
	buf_add(out, tmp, 8);
}

static void put_str(struct buf *out, const struct cval *v)
{
	put_varint(out, v->len);
	buf_add(out, v->s, v->len);
}

static void cstate_encode(const struct audience_computed *def, const struct cstate *cs,
			  struct buf *out)
{
	int64_t prev = 0;

	buf_reset(out);
	if (cs->nb == 0)
		return;
	buf_addc(out, STATE_VERSION);
	buf_addc(out, (char)def->kind);
	put_varint(out, cs->nb);
	for (size_t i = 0; i < cs->nb; i++) {
		const struct bucket *b = &cs->b[i];

		put_varint(out, zigzag((int64_t)((uint64_t)b->idx - (uint64_t)prev)));
		prev = b->idx;
		switch (def->kind) {
		case AUDIENCE_COMPUTED_COUNT:
			put_varint(out, b->n);
			break;
		case AUDIENCE_COMPUTED_SUM:
		case AUDIENCE_COMPUTED_AVG:
		case AUDIENCE_COMPUTED_MIN:
		case AUDIENCE_COMPUTED_MAX:
			put_varint(out, b->n);
			if (b->n)
				put_double(out, b->agg);
			break;
		case AUDIENCE_COMPUTED_MOST_FREQUENT:
		case AUDIENCE_COMPUTED_UNIQUE_LIST:
		case AUDIENCE_COMPUTED_UNIQUE_COUNT:
			put_varint(out, b->nvals);
			for (size_t j = 0; j < b->nvals; j++) {
				put_str(out, &b->vals[j]);
				if (def->kind == AUDIENCE_COMPUTED_MOST_FREQUENT)
					put_varint(out, b->vals[j].count);
			}
			break;
		case AUDIENCE_COMPUTED_FIRST:
		case AUDIENCE_COMPUTED_LAST:
			assert(b->n == 1);
			put_varint(out, zigzag(b->ts));
			put_str(out, &b->vals[0]);
			break;
		}
	}
}

struct reader {
	const unsigned char *p, *end;
	bool bad;
};

static uint64_t get_varint(struct reader *r)
{
	uint64_t v = 0;

	for (int shift = 0; shift < 64; shift += 7) {
		if (r->p == r->end)
			break;
		unsigned char c = *r->p++;

		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static double get_double(struct reader *r)
{
	uint64_t bits = 0;
	double d;

	if (r->end - r->p < 8) {
		r->bad = true;
		return 0;
	}
	for (int i = 0; i < 8; i++)
		bits |= (uint64_t)r->p[i] << (8 * i);
	r->p += 8;
	memcpy(&d, &bits, 8);
	return d;
}

/* A string of the blob, or NULL (r->bad set) if it does not fit. */
static const char *get_str(struct reader *r, size_t *len)
{
	uint64_t n = get_varint(r);
	const char *s = (const char *)r->p;

	if (r->bad || n > AUDIENCE_COMPUTED_MAX_VALUE || n > (uint64_t)(r->end - r->p)) {
		r->bad = true;
		return NULL;
	}
	r->p += n;
	*len = n;
	return s;
}

/*
 * Decodes a blob into cs (empty on entry), checking it is def's and in the
 * canonical form encoding gives, so that decoding and encoding again gives
 * the same bytes. WEFT_EINVAL if not; cs is then released.
 */
static int cstate_decode(const struct audience_computed *def, const void *data, size_t len,
			 struct cstate *cs)
{
	struct reader r = { data, (const unsigned char *)data + len, false };
	uint64_t nb;
	int64_t prev = 0;

	if (len == 0)
		return 0;
	if (len < 2 || r.p[0] != STATE_VERSION || r.p[1] != def->kind)
		return WEFT_EINVAL;
	r.p += 2;
	nb = get_varint(&r);
	if (r.bad || nb == 0 || nb > len)
		return WEFT_EINVAL;
	for (uint64_t i = 0; i < nb && !r.bad; i++) {
		int64_t idx = (int64_t)((uint64_t)prev + (uint64_t)unzigzag(get_varint(&r)));
		struct bucket *b;

		if (r.bad || (i > 0 && idx <= prev) || (def->window == 0 && idx != 0))
			goto out_bad;
		prev = idx;
		b = cstate_bucket(cs, idx);
		switch (def->kind) {
		case AUDIENCE_COMPUTED_COUNT:
			b->n = get_varint(&r);
			break;
		case AUDIENCE_COMPUTED_SUM:
		case AUDIENCE_COMPUTED_AVG:
		case AUDIENCE_COMPUTED_MIN:
		case AUDIENCE_COMPUTED_MAX:
			b->n = get_varint(&r);
			if (b->n)
				b->agg = get_double(&r);
			break;
		case AUDIENCE_COMPUTED_MOST_FREQUENT:
		case AUDIENCE_COMPUTED_UNIQUE_LIST:
		case AUDIENCE_COMPUTED_UNIQUE_COUNT: {
			uint64_t nv = get_varint(&r);

			if (nv == 0 || nv > (uint64_t)(r.end - r.p) ||
			    nv > (def->kind == AUDIENCE_COMPUTED_MOST_FREQUENT
				  ? AUDIENCE_COMPUTED_MAX_DISTINCT : AUDIENCE_COMPUTED_MAX_UNIQUE))
				goto out_bad;
			for (uint64_t j = 0; j < nv && !r.bad; j++) {
				size_t slen = 0;
				const char *s = get_str(&r, &slen);
				uint64_t count = 1;

				if (def->kind == AUDIENCE_COMPUTED_MOST_FREQUENT)
					count = get_varint(&r);
				if (r.bad || count == 0 || (b->nvals &&
				    str_cmp(b->vals[b->nvals - 1].s, b->vals[b->nvals - 1].len,
					    s, slen) >= 0))
					goto out_bad;
				bucket_add_val(def->kind, b, s, slen, count);
			}
			break;
		}
		case AUDIENCE_COMPUTED_FIRST:
		case AUDIENCE_COMPUTED_LAST: {
			size_t slen = 0;
			const char *s;

			b->ts = unzigzag(get_varint(&r));
			s = get_str(&r, &slen);
			if (r.bad)
				goto out_bad;
			bucket_add_val(def->kind, b, s, slen, 1);
			b->n = 1;
			break;
		}
		}
		if (b->n == 0 && b->nvals == 0)
			goto out_bad;	/* encoding never writes an empty bucket */
	}
	if (r.bad || r.p != r.end)
		goto out_bad;
	return 0;

out_bad:
	cstate_release(cs);
	return WEFT_EINVAL;
}

/* ---- the API ---- */

/*
 * The one-event bucket ev for properties, false if the event adds nothing
 * to the kind. *text is the JSON text a FIRST or LAST value points into,
 * which the caller frees.
 */
static bool event_bucket(const struct audience_computed *def, const json_t *properties,
			 int64_t ts_us, struct bucket *ev, struct cval *one, char **text)
{
	const json_t *v = NULL;

	memset(ev, 0, sizeof(*ev));
	*text = NULL;
	if (def->kind == AUDIENCE_COMPUTED_COUNT) {
		ev->n = 1;
		return true;
	}
	assert(def->property);
	if (json_is_object(properties))
		v = json_object_get(properties, def->property);
	if (!v || json_is_null(v))
		return false;
	if (is_numeric_kind(def->kind)) {
		if (!json_is_number(v))
			return false;
		ev->n = 1;
		ev->agg = json_number_value(v);
		return true;
	}
	if (is_string_kind(def->kind)) {
		if (!json_is_string(v) || json_string_length(v) > AUDIENCE_COMPUTED_MAX_VALUE)
			return false;
		*one = (struct cval){ json_string_value(v), json_string_length(v), 1 };
	} else {
		*text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!*text || strlen(*text) > AUDIENCE_COMPUTED_MAX_VALUE)
			return false;
		*one = (struct cval){ *text, strlen(*text), 1 };
		ev->n = 1;
		ev->ts = ts_us;
	}
	ev->vals = one;
	ev->nvals = 1;
	return true;
}

int audience_computed_apply(const struct audience_computed *def, struct buf *state, int64_t now_us,
			    int64_t ts_us, const char *event_name, const json_t *properties)
{
	struct cstate cs = { 0 };
	struct buf out = BUF_INIT;
	struct bucket ev;
	struct cval one;
	char *text = NULL;
	bool use;
	int rc;

	rc = cstate_decode(def, state->data, state->len, &cs);
	if (rc)
		return rc;
	cstate_expire(def, &cs, now_us);
	use = strcmp(event_name, def->event) == 0 &&
	      (!def->where_expr || audience_where_match(def->where_expr, def->where, properties)) &&
	      (!def->between || (ts_us >= def->from_us && ts_us < def->to_us)) &&
	      bucket_of(def, ts_us) > expired_up_to(def, now_us) &&
	      event_bucket(def, properties, ts_us, &ev, &one, &text);
	if (use)
		bucket_fold(def->kind, cstate_bucket(&cs, bucket_of(def, ts_us)), &ev);
	/* Encode apart: the decoded strings point into the old blob. */
	cstate_encode(def, &cs, &out);
	cstate_release(&cs);
	free(text);
	buf_release(state);
	*state = out;
	return 0;
}

int audience_computed_merge(const struct audience_computed *def, struct buf *state,
			    const void *from, size_t from_len, int64_t now_us)
{
	struct cstate cs = { 0 }, other = { 0 };
	struct buf out = BUF_INIT;
	int rc;

	rc = cstate_decode(def, state->data, state->len, &cs);
	if (rc)
		return rc;
	rc = cstate_decode(def, from, from_len, &other);
	if (rc)
		goto out_release_cs;
	for (size_t i = 0; i < other.nb; i++)
		bucket_fold(def->kind, cstate_bucket(&cs, other.b[i].idx), &other.b[i]);
	cstate_expire(def, &cs, now_us);
	cstate_encode(def, &cs, &out);
	buf_release(state);
	*state = out;
	cstate_release(&other);
out_release_cs:
	cstate_release(&cs);
	return rc;
}

/* The fold of every bucket live at now_us, as a value. */
static json_t *value_of(const struct audience_computed *def, const struct cstate *cs,
			int64_t now_us)
{
	int64_t now_idx = bucket_of(def, now_us);
	struct bucket all = { 0 };
	json_t *v = NULL;

	for (size_t i = 0; i < cs->nb; i++)
		if (def->window == 0 || cs->b[i].idx <= now_idx)
			bucket_fold(def->kind, &all, &cs->b[i]);
	switch (def->kind) {
	case AUDIENCE_COMPUTED_COUNT:
		v = json_integer((json_int_t)all.n);
		break;
	case AUDIENCE_COMPUTED_SUM:
		v = json_real(all.n ? all.agg : 0);
		break;
	case AUDIENCE_COMPUTED_AVG:
		v = all.n ? json_real(all.agg / (double)all.n) : json_null();
		break;
	case AUDIENCE_COMPUTED_MIN:
	case AUDIENCE_COMPUTED_MAX:
		v = all.n ? json_real(all.agg) : json_null();
		break;
	case AUDIENCE_COMPUTED_MOST_FREQUENT: {
		const struct cval *best = NULL;

		/* vals are sorted, so a strict > keeps the first of a tie. */
		for (size_t i = 0; i < all.nvals; i++)
			if (!best || all.vals[i].count > best->count)
				best = &all.vals[i];
		v = best ? json_stringn(best->s, best->len) : json_null();
		break;
	}
	case AUDIENCE_COMPUTED_FIRST:
	case AUDIENCE_COMPUTED_LAST:
		v = all.n ? json_loadb(all.vals[0].s, all.vals[0].len, JSON_DECODE_ANY, NULL)
			  : json_null();
		break;
	case AUDIENCE_COMPUTED_UNIQUE_LIST:
		v = json_array();
		for (size_t i = 0; i < all.nvals; i++)
			json_array_append_new(v, json_stringn(all.vals[i].s, all.vals[i].len));
		break;
	case AUDIENCE_COMPUTED_UNIQUE_COUNT:
		v = json_integer((json_int_t)all.nvals);
		break;
	}
	free(all.vals);
	/* Only a FIRST or LAST text that is not JSON fails, which decode lets by. */
	return v ? v : json_null();
}

int audience_computed_value(const struct audience_computed *def, struct buf *state, int64_t now_us,
			    json_t **out)
{
	struct cstate cs = { 0 };
	struct buf enc = BUF_INIT;
	int rc;

	*out = NULL;
	rc = cstate_decode(def, state->data, state->len, &cs);
	if (rc)
		return rc;
	cstate_expire(def, &cs, now_us);
	*out = value_of(def, &cs, now_us);
	cstate_encode(def, &cs, &enc);
	cstate_release(&cs);
	buf_release(state);
	*state = enc;
	return 0;
}
