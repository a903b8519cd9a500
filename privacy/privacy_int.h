/*
 * Internals shared by the files of privacy/: the detectors (detect.c), the
 * compiled policy (policy.c) that the masking walk (mask.c) reads, and the
 * hashing helpers of key.c. Nothing outside privacy/ includes this.
 */
#ifndef PRIVACY_PRIVACY_INT_H
#define PRIVACY_PRIVACY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "privacy/privacy.h"

/*
 * The detectors. The first PRIVACY_DET_CONTENT look inside strings. The last
 * of those, secret_key, judges field names too: a field named like a secret
 * is taken whole, and inside a string it finds the values of name=value
 * pairs whose name looks like a secret ("?password=...").
 */
enum privacy_det {
	PRIVACY_DET_EMAIL,
	PRIVACY_DET_PHONE,
	PRIVACY_DET_CARD,
	PRIVACY_DET_SSN,
	PRIVACY_DET_IBAN,
	PRIVACY_DET_IP,
	PRIVACY_DET_SECRET_KEY,
	PRIVACY_DET_NONE,	/* a rule without a detector */
};

#define PRIVACY_DET_CONTENT 7
#define PRIVACY_DET_BIT(d) (1u << (d))
#define PRIVACY_DET_ALL_CONTENT ((1u << PRIVACY_DET_CONTENT) - 1)

enum privacy_action {
	PRIVACY_ACT_UNSET,	/* no rule matched: the value is kept */
	PRIVACY_ACT_KEEP,
	PRIVACY_ACT_DROP,
	PRIVACY_ACT_REDACT,
	PRIVACY_ACT_HASH,
	PRIVACY_ACT_PARTIAL,
	PRIVACY_ACT_TRUNCATE_IP,
	PRIVACY_ACT_SHA256,
};

/* One detector match inside a string: bytes [start, end). */
struct privacy_hit {
	size_t start;
	size_t end;
	enum privacy_det det;
};

/*
 * No hit is longer than PRIVACY_HIT_MAX bytes, and a hit's normalised,
 * partial or truncated form fits in PRIVACY_NORM_MAX bytes with its NUL;
 * the exception is a secret_key value, which has no length limit and is
 * hashed or shown where it stands, never normalised into a buffer.
 */
#define PRIVACY_HIT_MAX 512
#define PRIVACY_NORM_MAX 640

const char *privacy_det_name(enum privacy_det d);
/* The detector of that name, or PRIVACY_DET_NONE. */
enum privacy_det privacy_det_parse(const char *name);

/*
 * The detectors (a mask of PRIVACY_DET_BIT) that could match somewhere in s,
 * judged from one cheap pass: '@' for email, '=' for secret_key, enough
 * digits for the others.
 */
unsigned privacy_detect_prefilter(const char *s, size_t n);

/*
 * Finds the first hit of a detector in mask that starts at or after from.
 * Hits found by successive calls (from = the previous hit's end) do not
 * overlap.
 */
bool privacy_detect_next(const char *s, size_t n, size_t from, unsigned mask,
	struct privacy_hit *hit);

/*
 * Every hit of the detectors in mask in a string and in its percent-decoded
 * view, in order and without overlaps. URLs carry separators encoded:
 * "2001%3Adb8%3A%3A1" and "4111%201111%201111%201111" from
 * encodeURIComponent, "q=GB82+WEST+1234..." from a form, where '+' after an
 * '=' is a space. The view is only built for a string with a '%', or with
 * an '=' and a '+', whose counts once decoded (worked out without
 * decoding) could make a match. A hit in the view replaces the encoded
 * bytes it came from; where a hit in the string and one in the view overlap, the one that
 * starts first wins, the string's on a tie (so "jane+news@example.com" stays
 * one address, not "news@example.com").
 */
#define PRIVACY_SCAN_LOCAL 256

struct privacy_scan {
	const char *s;
	size_t n;
	unsigned mask;			/* the detectors worth running on s */
	unsigned dmask;			/* and on the view */
	char *d;			/* the decoded view, or NULL */
	uint32_t *off;			/* off[k]: where d[k] starts in s; off[dn] = n */
	size_t dn;
	struct privacy_hit raw;		/* the next hit in s, if have_raw */
	struct privacy_hit dec;		/* the next hit in d, if have_dec */
	bool have_raw;
	bool have_dec;
	char local_d[PRIVACY_SCAN_LOCAL];		/* the view of a short string */
	uint32_t local_off[PRIVACY_SCAN_LOCAL + 1];
};

/* One hit as privacy_scan_next() reports it. */
struct privacy_match {
	struct privacy_hit hit;		/* in text's coordinates */
	const char *text;		/* the string, or its decoded view */
	size_t text_len;
	size_t start;			/* the bytes of the string the hit covers */
	size_t end;
};

/*
 * Sets up a scan of s for the detectors in mask. Returns false when there
 * is nothing to find; then there is nothing to release either. Otherwise
 * privacy_scan_next() gives the hits one by one, and privacy_scan_release()
 * frees the view of a long string.
 */
bool privacy_scan_init(struct privacy_scan *sc, const char *s, size_t n, unsigned mask);
bool privacy_scan_next(struct privacy_scan *sc, struct privacy_match *m);
void privacy_scan_release(struct privacy_scan *sc);

/* Writes the detector-normalised form of a hit into out; returns its length. */
size_t privacy_hit_normalise(const char *s, const struct privacy_hit *hit,
	char out[PRIVACY_NORM_MAX]);

/* The partial form of a detector-normalised value (j***@example.com). */
size_t privacy_partial(enum privacy_det det, const char *norm, size_t len,
	char out[PRIVACY_NORM_MAX]);

/*
 * The partial form of any other value: its first character, then "***".
 * out has room for len + 4 bytes.
 */
size_t privacy_partial_generic(const char *s, size_t len, char *out);

/* An IP hit truncated to its /24 (IPv4) or /48 (IPv6) network. */
size_t privacy_ip_truncate(const char *s, const struct privacy_hit *hit,
	char out[PRIVACY_NORM_MAX]);

/* Whether a field name looks like it holds a secret (password, api_key...). */
bool privacy_key_is_secret(const char *key, size_t len);

/* Lower-case hex SHA-256 of data, 64 digits and a NUL. */
void privacy_sha256_hex(const char *data, size_t len, char out[65]);

/* A path glob, compiled: one entry per dotted segment. */
enum privacy_seg_kind {
	PRIVACY_SEG_LITERAL,
	PRIVACY_SEG_STAR,	/* "*": exactly one segment */
	PRIVACY_SEG_DSTAR,	/* "**": any number; one or more when last */
};

struct privacy_glob_seg {
	enum privacy_seg_kind kind;
	const char *lit;	/* into the rule's path text; LITERAL only */
	size_t len;
};

/* One segment of the path of a value inside an event. */
struct privacy_path_seg {
	const char *s;
	size_t len;
};

struct privacy_rule {
	char *path;			/* as written, or NULL */
	struct privacy_glob_seg *segs;	/* compiled path */
	size_t nsegs;
	size_t nfixed;			/* segments that are not "**" */
	bool dstar;			/* some segment is "**" */
	enum privacy_det det;		/* PRIVACY_DET_NONE if none */
	enum privacy_action act;
};

/* At most this many rules, so the walk can keep matches in a 64-bit mask. */
#define PRIVACY_MAX_RULES 64

struct privacy_policy {
	struct privacy_rule *rules;
	size_t nrules;
	size_t nown;		/* rules the workspace wrote; the rest are the default's */
	bool include_default;
	bool has_paths;		/* some rule has a path: the walk tracks paths */
	bool has_secret;	/* some rule uses the secret_key detector */
	uint8_t path_rules[PRIVACY_MAX_RULES];	/* indices of the rules with a path */
	size_t npath_rules;
};

bool privacy_glob_match(const struct privacy_rule *r, const struct privacy_path_seg *path,
	size_t depth);

/* The default policy, built once and never freed (for p == NULL). */
const struct privacy_policy *privacy_policy_builtin(void);

const char *privacy_action_name(enum privacy_action a);

#endif
