/*
 * Privacy: PII masking and pseudonymised identity keys. The ingest pipeline
 * hands every event to privacy_mask_event() once, before the event is
 * queued; past that point nothing raw reaches PostgreSQL, logs, memory or
 * exports unless the workspace policy keeps it. Identifiers become 128-bit
 * keyed hashes, so the engine and a later lookup by raw value work on keys
 * and never need the value itself.
 *
 * Key derivation (exactly):
 *
 *   master  = the 32 bytes of the file named by WEFT_PII_KEY_FILE
 *   subkey  = HMAC-SHA256(master, "weft-workspace-subkey" 0x00 W)
 *             where W is the workspace id in decimal ASCII ("42", "-1")
 *   key     = first 16 bytes of HMAC-SHA256(subkey, T 0x00 N)
 *             where T is the identifier type ("email", "user_id") and N
 *             the value as privacy_normalise() returns it
 *
 * The "h:" values that the hash action writes into events use the same
 * key with the detector name as T ("email", "phone", "card", "ssn",
 * "iban", "ip", "secret_key" for the value of a password=... pair, or
 * "value" for a whole value no detector recognises), so a hashed email in
 * properties equals the email identifier's key.
 *
 * Thread safety: a master, a hasher and a policy are immutable once built
 * and may be used from several threads at once.
 */
#ifndef PRIVACY_PRIVACY_H
#define PRIVACY_PRIVACY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define PRIVACY_KEY_BYTES 16
#define PRIVACY_MASTER_BYTES 32

/* The master secret; its bytes are wiped when it is freed. */
struct privacy_master;

/*
 * Writes a new master secret (32 bytes from RAND_bytes) to path, created
 * with mode 0600 and O_EXCL, and fsyncs the file and its folder. Returns 0,
 * WEFT_ECONFLICT if path exists, or WEFT_EIO; failures are logged.
 */
int privacy_master_create(const char *path);

/*
 * Loads the master secret from path. Refuses, with a log line saying why,
 * a missing file (WEFT_ENOTFOUND), a file that group or others may access
 * or that is not a regular file or not exactly 32 bytes long (WEFT_EINVAL),
 * and a read error (WEFT_EIO).
 */
int privacy_master_load(const char *path, struct privacy_master **out);
void privacy_master_free(struct privacy_master *m);

/* The keyed hash of one workspace: its subkey's HMAC states, computed once. */
struct privacy_hasher;

struct privacy_hasher *privacy_hasher_new(const struct privacy_master *m, int64_t workspace_id);
void privacy_hasher_free(struct privacy_hasher *h);

/*
 * Writes the normalised form of raw (len bytes) into out, which has room
 * for at least len + 1 bytes, NUL-terminates it and returns its length.
 * "email": trimmed and lower-cased (ASCII). "phone": '+' if the number
 * started with one (or with "%2B"), then its digits only; a "(0)" trunk
 * prefix written after a country code is left out, so "+44 (0)20 7946 0958"
 * and "+44 20 7946 0958" agree. Every other type (or NULL): trimmed, case
 * kept. Trimming removes ASCII white space at both ends.
 */
size_t privacy_normalise(const char *type, const char *raw, size_t len, char *out);

/* The identity key of a normalised value of type (not NULL); see the top. */
void privacy_identifier_key(const struct privacy_hasher *h, const char *type,
	const char *norm, size_t len, uint8_t out[PRIVACY_KEY_BYTES]);

/* How an identifier is shown to a person, stored beside its key. */
enum privacy_display {
	PRIVACY_DISPLAY_KEEP,		/* the value, masked where a detector finds PII in it */
	PRIVACY_DISPLAY_PARTIAL,	/* j***@example.com, +*******1234, a*** */
	PRIVACY_DISPLAY_HASH,		/* only the key; no display value */
};

/* PARTIAL for "email" and "phone", KEEP for every other type. */
enum privacy_display privacy_display_default(const char *type);

/*
 * The display string (malloc'd, caller frees) of a normalised identifier, or
 * NULL for PRIVACY_DISPLAY_HASH. KEEP runs every detector over the value
 * with the hash action, so a user id that is an email comes out "h:<hex>".
 * PARTIAL keeps an email's first character and domain when the value is
 * exactly one address (one '@', a local part of at most 64 bytes), a
 * phone's '+' and last four digits when it is exactly one number ('+' if
 * any, then at most 15 digits); any other value, of any type, shows its
 * first character then "***", so nothing after it (a second address, a
 * phone number) reaches the display. With h NULL, KEEP redacts what it
 * would have hashed.
 */
char *privacy_identifier_display(const struct privacy_hasher *h, const char *type,
	const char *norm, size_t len, enum privacy_display mode);

/*
 * A masking policy: an ordered list of rules, compiled once. The JSON form,
 * the default policy and the meaning of every rule are in docs/privacy.md.
 */
struct privacy_policy;

/* The built-in default policy (docs/privacy.md). */
struct privacy_policy *privacy_policy_default(void);

/*
 * Parses a workspace policy. On success stores it in *out and returns 0; on
 * error returns WEFT_EINVAL and appends one message naming the rule (counted
 * from 0) and the problem to err, e.g. "rule 3: unknown action 'hide'".
 */
int privacy_policy_parse(const char *json, size_t len, struct privacy_policy **out,
	struct buf *err);

/* The policy as JSON (a new reference) that privacy_policy_parse() accepts. */
json_t *privacy_policy_to_json(const struct privacy_policy *p);
void privacy_policy_free(struct privacy_policy *p);

/*
 * Masks one event (the whole Segment event, a JSON object) in place: every
 * value and every object key, at any depth (a renamed key moves to the end
 * of its object). Returns how many values were
 * changed, removed or renamed, so 0 means untouched and the caller may keep
 * its original serialisation; WEFT_EINVAL if event is not an object.
 * p NULL means the default policy. h NULL turns the hash action into redact.
 */
int privacy_mask_event(const struct privacy_policy *p, const struct privacy_hasher *h,
	json_t *event);

/*
 * Masks free text (a log line, an error message quoting input) with the
 * policy's detector rules that have no path; drop acts as redact. A
 * secret_key rule applies to the values of name=value pairs whose name
 * looks like a secret ("?password=...&token=..."). Returns a malloc'd
 * NUL-terminated copy, masked. p and h may be NULL as above.
 */
char *privacy_mask_text(const struct privacy_policy *p, const struct privacy_hasher *h,
	const char *s, size_t len);

#endif
