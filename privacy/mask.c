/*
 * The masking walk: applies a policy to every value and every object key of
 * an event, and the same string rewriting to free text and to identifier
 * display values. An event without PII costs one cheap pass per string and
 * allocates nothing; a string is copied only once a hit really changes it.
 *
 * How rules apply (docs/privacy.md has the user's view): for each value the
 * walk finds the first rule that takes the value as a whole (a path rule
 * whose glob matches the value's path or a path above it, or a secret_key
 * rule on a secret-looking field name). Detector rules listed before that
 * rule still apply to hits inside the value; rules after it do not.
 */
#include "privacy/privacy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/digest.h"
#include "lib/err.h"

/* What rewriting a string came to. */
enum rewrite {
	REWRITE_SAME,
	REWRITE_CHANGED,	/* the new text is in the output buffer */
	REWRITE_DROP,		/* a drop hit covers the whole string */
};

/* What the parent does with a masked member or element. */
enum fate {
	FATE_KEEP,
	FATE_CHANGED,		/* changed in place */
	FATE_REPLACE,		/* replaced by a new value */
	FATE_DROP,
};

/* The rules that apply to one value. */
struct verdict {
	uint8_t acts[PRIVACY_DET_CONTENT];	/* for hits in the value (enum privacy_action) */
	uint8_t key_acts[PRIVACY_DET_CONTENT];	/* for hits in the field name */
	unsigned want;				/* detectors whose acts change something */
	unsigned key_want;			/* the same for key_acts */
	const struct privacy_rule *whole;	/* the rule for the value as a whole, or NULL */
	uint64_t matched;			/* rules whose path matches here or above */
	bool secret;				/* this field or one above is named like a secret */
};

/* Path frames kept without allocation up to this depth. */
#define LOCAL_DEPTH 32

struct walk {
	const struct privacy_policy *p;
	const struct privacy_hasher *h;
	struct verdict base;		/* the verdict where no path rule matched */
	struct privacy_path_seg *path;	/* the current value's path */
	char (*num)[24];		/* text of array indices in path */
	bool *is_num;
	size_t depth, cap;
	struct buf out;			/* rewritten strings */
	struct buf text;		/* a non-string value as text */
	int changes;
	struct privacy_path_seg local_path[LOCAL_DEPTH];
	char local_num[LOCAL_DEPTH][24];
	bool local_is_num[LOCAL_DEPTH];
};

/* "h:" and the hex of the keyed hash; 34 bytes. */
static size_t hash_text(const struct privacy_hasher *h, const char *type, const char *norm,
	size_t len, char *out)
{
	uint8_t key[PRIVACY_KEY_BYTES];

	privacy_identifier_key(h, type, norm, len, key);
	out[0] = 'h';
	out[1] = ':';
	hex_encode(key, sizeof(key), out + 2);
	return 2 + 2 * sizeof(key);
}

/* Whether s is all ASCII white space, as privacy_normalise() trims it. */
static bool is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		/* space, or \t \n \v \f \r */
		if (s[i] != ' ' && (s[i] < '\t' || s[i] > '\r'))
			return false;
	}
	return true;
}

static bool blank_outside(const char *s, size_t n, const struct privacy_hit *hit)
{
	return is_blank(s, hit->start) && is_blank(s + hit->end, n - hit->end);
}

/* Writes what replaces a hit under act into out; returns its length. */
static size_t render_hit(const struct privacy_hasher *h, const char *s,
	const struct privacy_hit *hit, enum privacy_action act, char out[PRIVACY_NORM_MAX])
{
	char buf[PRIVACY_NORM_MAX];
	const char *norm = buf;
	size_t len;

	if (act == PRIVACY_ACT_TRUNCATE_IP && hit->det == PRIVACY_DET_IP)
		return privacy_ip_truncate(s, hit, out);
	if (act == PRIVACY_ACT_PARTIAL || act == PRIVACY_ACT_SHA256 ||
	    (act == PRIVACY_ACT_HASH && h)) {
		/* a secret value may be of any length: it is read where it is */
		if (hit->det == PRIVACY_DET_SECRET_KEY) {
			norm = s + hit->start;
			len = hit->end - hit->start;
		} else {
			len = privacy_hit_normalise(s, hit, buf);
		}
		if (act == PRIVACY_ACT_PARTIAL)
			return privacy_partial(hit->det, norm, len, out);
		if (act == PRIVACY_ACT_HASH)
			return hash_text(h, privacy_det_name(hit->det), norm, len, out);
		privacy_sha256_hex(norm, len, out);
		return 64;
	}
	/* drop inside a longer string, redact, and hash without a hasher */
	return (size_t)snprintf(out, PRIVACY_NORM_MAX, "[redacted:%s]", privacy_det_name(hit->det));
}

/*
 * Rewrites every detector hit in s, or in its percent-decoded view, whose
 * action is not keep. A hit in the view replaces the encoded bytes it came
 * from. The output buffer is touched only once something changes.
 */
static enum rewrite rewrite_some(const struct privacy_hasher *h, const char *s, size_t n,
	const uint8_t *acts, unsigned want, struct buf *out)
{
	char rep[PRIVACY_NORM_MAX];
	struct privacy_scan sc;
	struct privacy_match m;
	size_t copied = 0;
	bool changed = false;

	if (!privacy_scan_init(&sc, s, n, want))
		return REWRITE_SAME;
	while (privacy_scan_next(&sc, &m)) {
		enum privacy_action act = acts[m.hit.det];
		size_t len;

		if (act == PRIVACY_ACT_DROP && !changed && blank_outside(m.text, m.text_len, &m.hit)) {
			privacy_scan_release(&sc);
			return REWRITE_DROP;
		}
		len = render_hit(h, m.text, &m.hit, act, rep);
		if (len == m.end - m.start && memcmp(rep, s + m.start, len) == 0)
			continue;
		if (!changed) {
			buf_reset(out);
			changed = true;
		}
		buf_add(out, s + copied, m.start - copied);
		buf_add(out, rep, len);
		copied = m.end;
	}
	privacy_scan_release(&sc);
	if (!changed)
		return REWRITE_SAME;
	buf_add(out, s + copied, n - copied);
	return REWRITE_CHANGED;
}

/* The detectors whose action in acts may change a string. */
static unsigned wanted(const uint8_t *acts)
{
	unsigned want = 0;

	for (int d = 0; d < PRIVACY_DET_CONTENT; d++) {
		if (acts[d] > PRIVACY_ACT_KEEP)
			want |= PRIVACY_DET_BIT(d);
	}
	return want;
}

static enum rewrite rewrite_hits(const struct privacy_hasher *h, const char *s, size_t n,
	const uint8_t *acts, struct buf *out)
{
	return rewrite_some(h, s, n, acts, wanted(acts), out);
}

/* Whether s, but for white space around it, is exactly one detector hit. */
static bool whole_hit(const char *s, size_t n, struct privacy_hit *hit)
{
	unsigned mask = privacy_detect_prefilter(s, n);

	return mask && privacy_detect_next(s, n, 0, mask, hit) && blank_outside(s, n, hit);
}

/*
 * Applies a rule that takes the value s as a whole (redact, hash, sha256,
 * partial). If s is exactly one detector hit and a rule before this one
 * covers that detector, that earlier rule wins, as first match should.
 */
static enum rewrite rewrite_whole(const struct privacy_hasher *h, const struct privacy_rule *r,
	const uint8_t *acts, const char *s, size_t n, struct buf *out)
{
	char norm[PRIVACY_NORM_MAX], rep[PRIVACY_NORM_MAX];
	struct privacy_hit hit;
	bool is_hit = whole_hit(s, n, &hit);
	const char *type = "value", *orig = s;
	size_t len, orig_len = n;
	enum privacy_action act;

	if (is_hit && acts[hit.det] != PRIVACY_ACT_UNSET) {
		uint8_t only[PRIVACY_DET_CONTENT] = { 0 };

		only[hit.det] = acts[hit.det];
		return rewrite_hits(h, s, n, only, out);
	}
	buf_reset(out);
	if (is_hit) {
		type = privacy_det_name(hit.det);
		len = privacy_hit_normalise(s, &hit, norm);
		s = norm;
		n = len;
	} else {
		/* the value trimmed, as privacy_normalise() does for other types */
		while (n > 0 && is_blank(s, 1)) {
			s++;
			n--;
		}
		while (n > 0 && is_blank(s + n - 1, 1))
			n--;
	}
	/* without a hasher a hash becomes a redaction */
	act = r->act == PRIVACY_ACT_HASH && !h ? PRIVACY_ACT_REDACT : r->act;
	switch (act) {
	case PRIVACY_ACT_HASH:
		len = hash_text(h, type, s, n, rep);
		buf_add(out, rep, len);
		break;
	case PRIVACY_ACT_REDACT:
		if (r->det == PRIVACY_DET_SECRET_KEY || is_hit)
			buf_printf(out, "[redacted:%s]", r->det == PRIVACY_DET_SECRET_KEY ?
				   privacy_det_name(r->det) : type);
		else
			buf_adds(out, "[redacted]");
		break;
	case PRIVACY_ACT_SHA256:
		privacy_sha256_hex(s, n, rep);
		buf_add(out, rep, 64);
		break;
	case PRIVACY_ACT_PARTIAL:
		if (is_hit) {
			len = privacy_partial(hit.det, s, n, rep);
			buf_add(out, rep, len);
		} else {
			buf_grow(out, n + 4);
			out->len = privacy_partial_generic(s, n, out->data);
			out->data[out->len] = '\0';
		}
		break;
	default:
		return REWRITE_SAME;
	}
	/* "a***" under partial stays "a***": not a change */
	if (out->len == orig_len && memcmp(out->data, orig, orig_len) == 0)
		return REWRITE_SAME;
	return REWRITE_CHANGED;
}

/* The verdict for a value, from its parent's and the path now on the walk. */
static void judge(const struct walk *w, const char *key, size_t klen,
	const struct verdict *parent, struct verdict *v)
{
	const struct privacy_policy *p = w->p;
	uint64_t matched = parent->matched;
	bool secret = parent->secret;

	for (size_t k = 0; k < p->npath_rules; k++) {
		size_t i = p->path_rules[k];
		const struct privacy_rule *r = &p->rules[i];

		/* the depth alone rules most globs out, without a call */
		if (!(matched >> i & 1) && (r->dstar ? w->depth >= r->nfixed : w->depth == r->nfixed) &&
		    privacy_glob_match(r, w->path, w->depth))
			matched |= (uint64_t)1 << i;
	}
	if (key && p->has_secret && !secret)
		secret = privacy_key_is_secret(key, klen);
	if (!matched && !secret) {
		*v = w->base;
		return;
	}
	memset(v, 0, sizeof(*v));
	v->matched = matched;
	v->secret = secret;
	for (size_t i = 0; i < p->nrules; i++) {
		const struct privacy_rule *r = &p->rules[i];

		if (r->path && !(matched >> i & 1))
			continue;
		if (r->det == PRIVACY_DET_NONE || (r->det == PRIVACY_DET_SECRET_KEY && secret)) {
			if (!v->whole)
				v->whole = r;
			/* a field kept as a whole keeps its name too */
			if (r->act == PRIVACY_ACT_KEEP)
				break;
			continue;
		}
		if (r->det >= PRIVACY_DET_CONTENT)
			continue;
		if (!v->whole && !v->acts[r->det])
			v->acts[r->det] = (uint8_t)r->act;
		if (!v->key_acts[r->det])
			v->key_acts[r->det] = (uint8_t)r->act;
	}
	v->want = wanted(v->acts);
	v->key_want = wanted(v->key_acts);
}

static void walk_init(struct walk *w, const struct privacy_policy *p,
	const struct privacy_hasher *h)
{
	w->p = p;
	w->h = h;
	w->path = w->local_path;
	w->num = w->local_num;
	w->is_num = w->local_is_num;
	w->depth = 0;
	w->cap = LOCAL_DEPTH;
	buf_init(&w->out);
	buf_init(&w->text);
	w->changes = 0;
	/* what judge() finds where no path rule matched and no name is secret */
	memset(&w->base, 0, sizeof(w->base));
	for (size_t i = 0; i < p->nrules; i++) {
		const struct privacy_rule *r = &p->rules[i];

		if (r->path || r->det >= PRIVACY_DET_CONTENT)
			continue;
		if (!w->base.acts[r->det])
			w->base.acts[r->det] = (uint8_t)r->act;
	}
	memcpy(w->base.key_acts, w->base.acts, sizeof(w->base.acts));
	w->base.want = wanted(w->base.acts);
	w->base.key_want = wanted(w->base.key_acts);
}

static void walk_release(struct walk *w)
{
	if (w->path != w->local_path) {
		free(w->path);
		free(w->num);
		free(w->is_num);
	}
	buf_release(&w->out);
	buf_release(&w->text);
}

static void path_grow(struct walk *w)
{
	size_t cap = xmul(w->cap, 2);
	struct privacy_path_seg *path = xmalloc(xmul(cap, sizeof(*path)));
	char (*num)[24] = xmalloc(xmul(cap, sizeof(*num)));
	bool *is_num = xmalloc(xmul(cap, sizeof(*is_num)));

	memcpy(path, w->path, w->depth * sizeof(*path));
	memcpy(num, w->num, w->depth * sizeof(*num));
	memcpy(is_num, w->is_num, w->depth * sizeof(*is_num));
	for (size_t d = 0; d < w->depth; d++) {
		if (is_num[d])
			path[d].s = num[d];
	}
	if (w->path != w->local_path) {
		free(w->path);
		free(w->num);
		free(w->is_num);
	}
	w->path = path;
	w->num = num;
	w->is_num = is_num;
	w->cap = cap;
}

static void path_push(struct walk *w, const char *s, size_t len)
{
	if (w->depth == w->cap)
		path_grow(w);
	w->path[w->depth].s = s;
	w->path[w->depth].len = len;
	w->is_num[w->depth] = false;
	w->depth++;
}

static void path_push_index(struct walk *w, size_t index)
{
	int len = 0;

	if (w->depth == w->cap)
		path_grow(w);
	/* only path rules read the segment, so only they pay for the digits */
	if (w->p->has_paths)
		len = snprintf(w->num[w->depth], sizeof(w->num[0]), "%zu", index);
	w->path[w->depth].s = w->num[w->depth];
	w->path[w->depth].len = (size_t)len;
	w->is_num[w->depth] = true;
	w->depth++;
}

/* Writes a non-string value's text (compact JSON) into w->text. */
static void value_text(struct walk *w, json_t *val)
{
	char *s;

	buf_reset(&w->text);
	if (json_is_integer(val)) {
		buf_printf(&w->text, "%" JSON_INTEGER_FORMAT, json_integer_value(val));
		return;
	}
	s = json_dumps(val, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (s) {
		buf_adds(&w->text, s);
		free(s);
	}
}

/* Sets a string in place; text that jansson refuses becomes a redaction. */
static void set_string(json_t *val, const struct buf *b)
{
	if (json_string_setn(val, b->data, b->len) != 0)
		json_string_set(val, "[redacted]");
}

static json_t *new_string(const struct buf *b)
{
	json_t *s = json_stringn(b->data, b->len);

	return s ? s : json_string("[redacted]");
}

static void walk_object(struct walk *w, json_t *obj, const struct verdict *parent);
static void walk_array(struct walk *w, json_t *arr, const struct verdict *parent);

static enum fate mask_value(struct walk *w, json_t *val, const struct verdict *v, json_t **repl)
{
	enum privacy_action act = v->whole ? v->whole->act : PRIVACY_ACT_UNSET;
	uint8_t acts[PRIVACY_DET_CONTENT];
	bool whole, container = json_is_object(val) || json_is_array(val);
	unsigned want = v->want;
	enum rewrite rw;

	if (act == PRIVACY_ACT_DROP)
		return FATE_DROP;
	/* keep, truncate_ip and a container's partial reach the strings inside */
	whole = act == PRIVACY_ACT_REDACT || act == PRIVACY_ACT_HASH ||
		act == PRIVACY_ACT_SHA256 || (act == PRIVACY_ACT_PARTIAL && !container);
	memcpy(acts, v->acts, sizeof(acts));
	if (act == PRIVACY_ACT_TRUNCATE_IP && !acts[PRIVACY_DET_IP]) {
		acts[PRIVACY_DET_IP] = PRIVACY_ACT_TRUNCATE_IP;
		want |= PRIVACY_DET_BIT(PRIVACY_DET_IP);
	}

	switch (json_typeof(val)) {
	case JSON_OBJECT:
	case JSON_ARRAY:
		if (!whole) {
			if (json_is_object(val))
				walk_object(w, val, v);
			else
				walk_array(w, val, v);
			return FATE_KEEP;
		}
		value_text(w, val);
		rw = rewrite_whole(w->h, v->whole, acts, w->text.data, w->text.len, &w->out);
		break;
	case JSON_STRING:
		if (whole)
			rw = rewrite_whole(w->h, v->whole, acts, json_string_value(val),
					   json_string_length(val), &w->out);
		else
			rw = rewrite_some(w->h, json_string_value(val), json_string_length(val),
					  acts, want, &w->out);
		if (rw == REWRITE_DROP)
			return FATE_DROP;
		if (rw == REWRITE_SAME)
			return FATE_KEEP;
		set_string(val, &w->out);
		return FATE_CHANGED;
	case JSON_INTEGER:
		if (!whole) {
			/* card numbers sent as JSON numbers; 13 digits at least */
			json_int_t x = json_integer_value(val);
			uint8_t card[PRIVACY_DET_CONTENT] = { 0 };

			if (acts[PRIVACY_DET_CARD] <= PRIVACY_ACT_KEEP || x < 1000000000000)
				return FATE_KEEP;
			card[PRIVACY_DET_CARD] = acts[PRIVACY_DET_CARD];
			value_text(w, val);
			rw = rewrite_hits(w->h, w->text.data, w->text.len, card, &w->out);
			break;
		}
		value_text(w, val);
		rw = rewrite_whole(w->h, v->whole, acts, w->text.data, w->text.len, &w->out);
		break;
	case JSON_REAL:
	case JSON_TRUE:
	case JSON_FALSE:
		if (!whole)
			return FATE_KEEP;
		value_text(w, val);
		rw = rewrite_whole(w->h, v->whole, acts, w->text.data, w->text.len, &w->out);
		break;
	default:
		/* null holds nothing to hide */
		return FATE_KEEP;
	}
	if (rw == REWRITE_DROP)
		return FATE_DROP;
	if (rw == REWRITE_SAME)
		return FATE_KEEP;
	*repl = new_string(&w->out);
	return FATE_REPLACE;
}

/* A field whose name a detector rewrote; applied after the loop over fields. */
struct rename {
	char *from;
	size_t from_len;
	char *to;
	size_t to_len;
};

static void walk_object(struct walk *w, json_t *obj, const struct verdict *parent)
{
	struct rename *ren = NULL;
	size_t nren = 0, capren = 0;
	const char *key;
	size_t klen;
	json_t *val;
	void *next;

	json_object_keylen_foreach_safe(obj, next, key, klen, val) {
		struct verdict v;
		json_t *repl = NULL;
		enum rewrite krw;
		enum fate f;

		path_push(w, key, klen);
		judge(w, key, klen, parent, &v);
		krw = rewrite_some(w->h, key, klen, v.key_acts, v.key_want, &w->out);
		if (krw == REWRITE_DROP) {
			w->depth--;
			json_object_deln(obj, key, klen);
			w->changes++;
			continue;
		}
		if (krw == REWRITE_CHANGED) {
			if (nren == capren) {
				capren = capren ? capren * 2 : 4;
				ren = xrealloc(ren, xmul(capren, sizeof(*ren)));
			}
			ren[nren].from = xstrndup(key, klen);
			ren[nren].from_len = klen;
			ren[nren].to = xstrndup(w->out.data, w->out.len);
			ren[nren].to_len = w->out.len;
			nren++;
		}
		f = mask_value(w, val, &v, &repl);
		w->depth--;
		switch (f) {
		case FATE_DROP:
			if (krw == REWRITE_CHANGED) {
				/* nothing left to rename */
				nren--;
				free(ren[nren].from);
				free(ren[nren].to);
			}
			json_object_deln(obj, key, klen);
			break;
		case FATE_REPLACE:
			json_object_setn_new(obj, key, klen, repl);
			break;
		default:
			break;
		}
		w->changes += f != FATE_KEEP;
	}
	for (size_t i = 0; i < nren; i++) {
		json_t *x = json_object_getn(obj, ren[i].from, ren[i].from_len);

		if (x) {
			json_incref(x);
			json_object_deln(obj, ren[i].from, ren[i].from_len);
			json_object_setn_new(obj, ren[i].to, ren[i].to_len, x);
			w->changes++;
		}
		free(ren[i].from);
		free(ren[i].to);
	}
	free(ren);
}

static void walk_array(struct walk *w, json_t *arr, const struct verdict *parent)
{
	size_t i = 0, index = 0;

	while (i < json_array_size(arr)) {
		json_t *repl = NULL;
		struct verdict v;
		enum fate f;

		/* the path names the element by its place in the array as sent */
		path_push_index(w, index++);
		judge(w, NULL, 0, parent, &v);
		f = mask_value(w, json_array_get(arr, i), &v, &repl);
		w->depth--;
		w->changes += f != FATE_KEEP;
		if (f == FATE_DROP) {
			json_array_remove(arr, i);
			continue;
		}
		if (f == FATE_REPLACE)
			json_array_set_new(arr, i, repl);
		i++;
	}
}

int privacy_mask_event(const struct privacy_policy *p, const struct privacy_hasher *h,
	json_t *event)
{
	struct verdict root = { 0 };
	struct walk w;

	if (!json_is_object(event))
		return WEFT_EINVAL;
	walk_init(&w, p ? p : privacy_policy_builtin(), h);
	walk_object(&w, event, &root);
	walk_release(&w);
	return w.changes;
}

char *privacy_mask_text(const struct privacy_policy *p, const struct privacy_hasher *h,
	const char *s, size_t len)
{
	uint8_t acts[PRIVACY_DET_CONTENT] = { 0 };
	struct buf out = BUF_INIT;

	if (!p)
		p = privacy_policy_builtin();
	for (size_t i = 0; i < p->nrules; i++) {
		const struct privacy_rule *r = &p->rules[i];

		if (r->path || r->det >= PRIVACY_DET_CONTENT || acts[r->det])
			continue;
		acts[r->det] = (uint8_t)(r->act == PRIVACY_ACT_DROP ? PRIVACY_ACT_REDACT : r->act);
	}
	if (rewrite_hits(h, s, len, acts, &out) == REWRITE_CHANGED)
		return buf_detach(&out, NULL);
	buf_release(&out);
	return xstrndup(s, len);
}

enum privacy_display privacy_display_default(const char *type)
{
	if (type && (strcmp(type, "email") == 0 || strcmp(type, "phone") == 0))
		return PRIVACY_DISPLAY_PARTIAL;
	return PRIVACY_DISPLAY_KEEP;
}

/*
 * Whether s is one well-formed address and nothing else: the email
 * detector's hit from its first byte to its last, one '@' (not a chain,
 * not "%40") and a local part of at most 64 bytes. Only then may its
 * partial form show the domain.
 */
static bool one_email(const char *s, size_t n)
{
	const char *at = memchr(s, '@', n);
	struct privacy_hit hit;

	if (!at || at - s > 64 || memchr(at + 1, '@', n - (size_t)(at - s) - 1) ||
	    n >= PRIVACY_HIT_MAX)
		return false;
	return privacy_detect_next(s, n, 0, PRIVACY_DET_BIT(PRIVACY_DET_EMAIL), &hit) &&
	       hit.start == 0 && hit.end == n;
}

/* Whether s is one phone number as privacy_normalise() writes it: +?digits, 15 at most. */
static bool one_phone(const char *s, size_t n)
{
	size_t i = n > 0 && s[0] == '+';

	if (n == i || n - i > 15)
		return false;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

char *privacy_identifier_display(const struct privacy_hasher *h, const char *type,
	const char *norm, size_t len, enum privacy_display mode)
{
	uint8_t acts[PRIVACY_DET_CONTENT];
	struct buf out = BUF_INIT;
	enum privacy_det det = PRIVACY_DET_NONE;
	char *s;

	switch (mode) {
	case PRIVACY_DISPLAY_HASH:
		return NULL;
	case PRIVACY_DISPLAY_PARTIAL:
		/*
		 * Partial keeps a domain and the last digits, which is only
		 * safe for one address or number: of "a@x.org, b@y.org" it
		 * would keep the second whole. Anything else shows its
		 * first character.
		 */
		if (type && strcmp(type, "email") == 0 && one_email(norm, len))
			det = PRIVACY_DET_EMAIL;
		else if (type && strcmp(type, "phone") == 0 && one_phone(norm, len))
			det = PRIVACY_DET_PHONE;
		if (det != PRIVACY_DET_NONE) {
			char rep[PRIVACY_NORM_MAX];
			size_t n = privacy_partial(det, norm, len, rep);

			return xstrndup(rep, n);
		}
		s = xmalloc(len + 4);
		s[privacy_partial_generic(norm, len, s)] = '\0';
		return s;
	case PRIVACY_DISPLAY_KEEP:
		break;
	}
	memset(acts, PRIVACY_ACT_HASH, sizeof(acts));
	if (rewrite_hits(h, norm, len, acts, &out) == REWRITE_CHANGED)
		return buf_detach(&out, NULL);
	buf_release(&out);
	return xstrndup(norm, len);
}
