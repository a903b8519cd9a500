/*
 * Masking policies: parsing the JSON a workspace stores (with error messages
 * that name the rule and the problem), the built-in default, the JSON view
 * for the admin API, and path globs compiled once so the masking walk only
 * compares segments.
 */
#include "privacy/privacy_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"

/* The default policy; docs/privacy.md explains it rule by rule. */
static const char default_policy_json[] =
	"{\"rules\":["
	"{\"detector\":\"secret_key\",\"action\":\"drop\"},"
	"{\"detector\":\"card\",\"action\":\"drop\"},"
	"{\"detector\":\"ssn\",\"action\":\"drop\"},"
	"{\"detector\":\"iban\",\"action\":\"drop\"},"
	"{\"detector\":\"email\",\"action\":\"hash\"},"
	"{\"detector\":\"phone\",\"action\":\"hash\"},"
	"{\"path\":\"context.ip\",\"action\":\"truncate_ip\"},"
	"{\"detector\":\"ip\",\"action\":\"truncate_ip\"}"
	"]}";

static const char *const action_names[] = {
	[PRIVACY_ACT_KEEP] = "keep",
	[PRIVACY_ACT_DROP] = "drop",
	[PRIVACY_ACT_REDACT] = "redact",
	[PRIVACY_ACT_HASH] = "hash",
	[PRIVACY_ACT_PARTIAL] = "partial",
	[PRIVACY_ACT_TRUNCATE_IP] = "truncate_ip",
	[PRIVACY_ACT_SHA256] = "sha256",
};

#define NACTIONS (sizeof(action_names) / sizeof(action_names[0]))

/* Longest path accepted, in bytes. */
#define PATH_MAX_LEN 1024

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static struct privacy_policy *builtin;

const char *privacy_action_name(enum privacy_action a)
{
	return a > PRIVACY_ACT_UNSET && (size_t)a < NACTIONS ? action_names[a] : "none";
}

static enum privacy_action action_parse(const char *name)
{
	for (size_t a = PRIVACY_ACT_KEEP; a < NACTIONS; a++) {
		if (strcmp(name, action_names[a]) == 0)
			return (enum privacy_action)a;
	}
	return PRIVACY_ACT_UNSET;
}

/*
 * Matching with one reachability flag per path position: reach[k] says the
 * glob segments seen so far can consume exactly the first k path segments.
 * Linear in glob length times path depth, however many "**" there are.
 */
bool privacy_glob_match(const struct privacy_rule *r, const struct privacy_path_seg *path,
	size_t depth)
{
	unsigned char local[2][64];
	unsigned char *cur = local[0], *next = local[1], *heap = NULL;
	bool ok;

	if (r->dstar ? depth < r->nfixed : depth != r->nfixed)
		return false;
	if (!r->dstar) {
		for (size_t k = 0; k < depth; k++) {
			const struct privacy_glob_seg *seg = &r->segs[k];

			if (seg->kind == PRIVACY_SEG_LITERAL &&
			    (seg->len != path[k].len || memcmp(seg->lit, path[k].s, seg->len) != 0))
				return false;
		}
		return true;
	}
	if (depth + 1 > sizeof(local[0])) {
		heap = xmalloc(xmul(depth + 1, 2));
		cur = heap;
		next = heap + depth + 1;
	}
	memset(cur, 0, depth + 1);
	cur[0] = 1;
	for (size_t g = 0; g < r->nsegs; g++) {
		const struct privacy_glob_seg *seg = &r->segs[g];
		unsigned char *t;

		memset(next, 0, depth + 1);
		if (seg->kind == PRIVACY_SEG_DSTAR) {
			/* zero or more segments; one or more when it ends the glob */
			bool last = g + 1 == r->nsegs, seen = false;

			for (size_t k = 0; k <= depth; k++) {
				if (seen)
					next[k] = 1;
				if (cur[k]) {
					seen = true;
					if (!last)
						next[k] = 1;
				}
			}
		} else {
			for (size_t k = 0; k < depth; k++) {
				if (cur[k] && (seg->kind == PRIVACY_SEG_STAR ||
					       (seg->len == path[k].len &&
						memcmp(seg->lit, path[k].s, seg->len) == 0)))
					next[k + 1] = 1;
			}
		}
		t = cur;
		cur = next;
		next = t;
	}
	ok = cur[depth];
	free(heap);
	return ok;
}

static int compile_path(struct privacy_rule *r, size_t idx, struct buf *err)
{
	const char *p = r->path;
	size_t n = strlen(p), start = 0, k = 0;

	r->nsegs = 1;
	for (size_t i = 0; i < n; i++)
		r->nsegs += p[i] == '.';
	r->segs = xcalloc(r->nsegs, sizeof(*r->segs));
	for (size_t i = 0; i <= n; i++) {
		struct privacy_glob_seg *seg;
		const char *s = p + start;
		size_t len = i - start;

		if (i < n && p[i] != '.')
			continue;
		seg = &r->segs[k];
		if (len == 0) {
			buf_printf(err, "rule %zu: empty segment in path '%s'", idx, p);
			return WEFT_EINVAL;
		}
		if (len == 1 && s[0] == '*') {
			seg->kind = PRIVACY_SEG_STAR;
		} else if (len == 2 && s[0] == '*' && s[1] == '*') {
			if (k > 0 && r->segs[k - 1].kind == PRIVACY_SEG_DSTAR) {
				buf_printf(err, "rule %zu: bad glob in path '%s': '**.**' is one '**' twice",
					   idx, p);
				return WEFT_EINVAL;
			}
			seg->kind = PRIVACY_SEG_DSTAR;
		} else if (memchr(s, '*', len)) {
			buf_printf(err, "rule %zu: bad glob in path '%s': '*' and '**' must be whole "
				   "segments", idx, p);
			return WEFT_EINVAL;
		} else {
			seg->kind = PRIVACY_SEG_LITERAL;
			seg->lit = s;
			seg->len = len;
		}
		if (seg->kind == PRIVACY_SEG_DSTAR)
			r->dstar = true;
		else
			r->nfixed++;
		k++;
		start = i + 1;
	}
	return 0;
}

static void rule_release(struct privacy_rule *r)
{
	free(r->path);
	free(r->segs);
}

static int parse_rule(json_t *j, size_t idx, struct privacy_rule *r, struct buf *err)
{
	json_t *path, *det, *act;
	const char *key;
	json_t *val;

	r->det = PRIVACY_DET_NONE;
	if (!json_is_object(j)) {
		buf_printf(err, "rule %zu: must be an object", idx);
		return WEFT_EINVAL;
	}
	json_object_foreach(j, key, val) {
		if (strcmp(key, "path") != 0 && strcmp(key, "detector") != 0 &&
		    strcmp(key, "action") != 0) {
			buf_printf(err, "rule %zu: unknown field '%.64s' (a rule has 'path', "
				   "'detector' and 'action')", idx, key);
			return WEFT_EINVAL;
		}
	}
	path = json_object_get(j, "path");
	det = json_object_get(j, "detector");
	act = json_object_get(j, "action");
	if (path) {
		if (!json_is_string(path)) {
			buf_printf(err, "rule %zu: 'path' must be a string", idx);
			return WEFT_EINVAL;
		}
		if (json_string_length(path) > PATH_MAX_LEN ||
		    strlen(json_string_value(path)) != json_string_length(path)) {
			buf_printf(err, "rule %zu: 'path' must be under %d bytes, without NUL",
				   idx, PATH_MAX_LEN);
			return WEFT_EINVAL;
		}
		r->path = xstrdup(json_string_value(path));
		if (compile_path(r, idx, err) != 0)
			return WEFT_EINVAL;
	}
	if (det) {
		if (!json_is_string(det)) {
			buf_printf(err, "rule %zu: 'detector' must be a string", idx);
			return WEFT_EINVAL;
		}
		r->det = privacy_det_parse(json_string_value(det));
		if (r->det == PRIVACY_DET_NONE) {
			buf_printf(err, "rule %zu: unknown detector '%.64s' (email, phone, card, ssn, "
				   "iban, ip, secret_key)", idx, json_string_value(det));
			return WEFT_EINVAL;
		}
	}
	if (!act) {
		buf_printf(err, "rule %zu: missing 'action'", idx);
		return WEFT_EINVAL;
	}
	if (!json_is_string(act)) {
		buf_printf(err, "rule %zu: 'action' must be a string", idx);
		return WEFT_EINVAL;
	}
	r->act = action_parse(json_string_value(act));
	if (r->act == PRIVACY_ACT_UNSET) {
		buf_printf(err, "rule %zu: unknown action '%.64s'", idx, json_string_value(act));
		return WEFT_EINVAL;
	}
	if (!r->path && r->det == PRIVACY_DET_NONE) {
		buf_printf(err, "rule %zu: needs a 'path', a 'detector' or both", idx);
		return WEFT_EINVAL;
	}
	if (r->act == PRIVACY_ACT_TRUNCATE_IP && r->det != PRIVACY_DET_NONE &&
	    r->det != PRIVACY_DET_IP) {
		buf_printf(err, "rule %zu: action 'truncate_ip' needs detector 'ip', not '%s'",
			   idx, privacy_det_name(r->det));
		return WEFT_EINVAL;
	}
	return 0;
}

/* Parses rules into p->rules from p->nrules on; p->nrules counts what parsed. */
static int parse_rules(struct privacy_policy *p, json_t *rules, struct buf *err)
{
	size_t i;
	json_t *r;

	json_array_foreach(rules, i, r) {
		if (parse_rule(r, i, &p->rules[p->nrules], err) != 0) {
			rule_release(&p->rules[p->nrules]);
			return WEFT_EINVAL;
		}
		p->nrules++;
	}
	return 0;
}

static int policy_from_json(json_t *root, struct privacy_policy **out, struct buf *err)
{
	json_t *rules, *inc, *defaults = NULL, *val;
	struct privacy_policy *p;
	size_t total;
	const char *key;

	if (!json_is_object(root)) {
		buf_adds(err, "a policy must be a JSON object with a 'rules' array");
		return WEFT_EINVAL;
	}
	json_object_foreach(root, key, val) {
		if (strcmp(key, "rules") != 0 && strcmp(key, "include_default") != 0) {
			buf_printf(err, "unknown field '%.64s' (a policy has 'rules' and "
				   "'include_default')", key);
			return WEFT_EINVAL;
		}
	}
	rules = json_object_get(root, "rules");
	if (!json_is_array(rules)) {
		buf_adds(err, "'rules' must be an array");
		return WEFT_EINVAL;
	}
	inc = json_object_get(root, "include_default");
	if (inc && !json_is_boolean(inc)) {
		buf_adds(err, "'include_default' must be true or false");
		return WEFT_EINVAL;
	}
	total = json_array_size(rules);
	if (json_is_true(inc)) {
		defaults = json_loads(default_policy_json, 0, NULL);
		if (!defaults) {
			log_error("privacy_policy_default", "msg=\"cannot parse the default policy\"");
			abort();
		}
		total += json_array_size(json_object_get(defaults, "rules"));
	}
	if (total > PRIVACY_MAX_RULES) {
		buf_printf(err, "too many rules: %zu (at most %d, counting the default's with "
			   "include_default)", total, PRIVACY_MAX_RULES);
		json_decref(defaults);
		return WEFT_EINVAL;
	}

	p = xcalloc(1, sizeof(*p));
	p->rules = xcalloc(total ? total : 1, sizeof(*p->rules));
	if (parse_rules(p, rules, err) != 0)
		goto out_free;
	p->nown = p->nrules;
	p->include_default = defaults != NULL;
	if (defaults && parse_rules(p, json_object_get(defaults, "rules"), err) != 0)
		goto out_free;
	json_decref(defaults);
	for (size_t i = 0; i < p->nrules; i++) {
		if (p->rules[i].path)
			p->path_rules[p->npath_rules++] = (uint8_t)i;
		p->has_secret |= p->rules[i].det == PRIVACY_DET_SECRET_KEY;
	}
	p->has_paths = p->npath_rules > 0;
	*out = p;
	return 0;

out_free:
	json_decref(defaults);
	privacy_policy_free(p);
	return WEFT_EINVAL;
}

int privacy_policy_parse(const char *json, size_t len, struct privacy_policy **out,
	struct buf *err)
{
	json_error_t jerr;
	json_t *root;
	size_t start = err->len;
	int rc;

	*out = NULL;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		buf_printf(err, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
			   jerr.text);
		rc = WEFT_EINVAL;
	} else {
		rc = policy_from_json(root, out, err);
		json_decref(root);
	}
	/* Messages quote input cut at a byte count: never half a character. */
	if (rc)
		buf_scrub_utf8(err, start);
	return rc;
}

struct privacy_policy *privacy_policy_default(void)
{
	struct privacy_policy *p;
	struct buf err = BUF_INIT;

	if (privacy_policy_parse(default_policy_json, sizeof(default_policy_json) - 1, &p,
				 &err) != 0) {
		log_error("privacy_policy_default", "msg=\"%s\"", err.data);
		abort();
	}
	buf_release(&err);
	return p;
}

static void builtin_init(void)
{
	builtin = privacy_policy_default();
}

const struct privacy_policy *privacy_policy_builtin(void)
{
	pthread_once(&builtin_once, builtin_init);
	return builtin;
}

json_t *privacy_policy_to_json(const struct privacy_policy *p)
{
	json_t *root = json_object(), *rules = json_array();

	for (size_t i = 0; i < p->nown; i++) {
		const struct privacy_rule *r = &p->rules[i];
		json_t *o = json_object();

		if (r->path)
			json_object_set_new(o, "path", json_string(r->path));
		if (r->det != PRIVACY_DET_NONE)
			json_object_set_new(o, "detector", json_string(privacy_det_name(r->det)));
		json_object_set_new(o, "action", json_string(privacy_action_name(r->act)));
		json_array_append_new(rules, o);
	}
	json_object_set_new(root, "rules", rules);
	if (p->include_default)
		json_object_set_new(root, "include_default", json_true());
	return root;
}

void privacy_policy_free(struct privacy_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nrules; i++)
		rule_release(&p->rules[i]);
	free(p->rules);
	free(p);
}
