/*
 * PII detectors: they find emails, phone numbers, payment cards, US SSNs,
 * IBANs, IP addresses and name=value secrets inside a string (and inside
 * its percent-decoded view), and field names that hold secrets. They are
 * heuristics tuned to miss little while leaving dates, versions, prices and
 * ids alone; docs/privacy.md lists what each accepts.
 *
 * Everything here works byte by byte on ASCII structure. A non-ASCII byte
 * never belongs to a number and always separates words, so a number written
 * right after CJK text is still found, and a hit never starts or ends inside
 * a multi-byte character, which keeps masked strings valid UTF-8.
 */
#include "privacy/privacy_int.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/alloc.h"

static const char *const det_names[] = {
	"email", "phone", "card", "ssn", "iban", "ip", "secret_key",
};

/* Countries that issue IBANs (the registry and its partial members). */
static const char iban_countries[] =
	"ADAEALAOATAZBABEBFBGBHBIBJBRBYCFCGCHCICMCRCVCYCZDEDJDKDODZEEEGESFIFK"
	"FOFRGAGBGEGIGLGQGRGTGWHNHRHUIEILIQIRISITJOKMKWKZLBLCLILTLULVLYMAMCMD"
	"MEMGMKMLMNMRMTMUMZNENINLNOOMPKPLPSPTQARORSRUSASCSDSESISKSMSNSOSTSVTD"
	"TGTLTNTRUAVAVGXKYE";

/* Byte classes, one table load each: these run on every byte of an event. */
enum {
	B_DIGIT = 1,
	B_UPPER = 2,
	B_LOWER = 4,
	B_HEX = 8,
	B_PHONE = 16,	/* '+', '(' and '%' (of "%2B") can start a phone number */
	B_COLON = 32,
};

static const unsigned char byte_flags[256] = {
	['0' ... '9'] = B_DIGIT | B_HEX,
	['A' ... 'F'] = B_UPPER | B_HEX,
	['G' ... 'Z'] = B_UPPER,
	['a' ... 'f'] = B_LOWER | B_HEX,
	['g' ... 'z'] = B_LOWER,
	['+'] = B_PHONE,
	['('] = B_PHONE,
	['%'] = B_PHONE,
	[':'] = B_COLON,
};

static bool is_digit(unsigned char c)
{
	return byte_flags[c] & B_DIGIT;
}

static bool is_upper(unsigned char c)
{
	return byte_flags[c] & B_UPPER;
}

static bool is_lower(unsigned char c)
{
	return byte_flags[c] & B_LOWER;
}

static bool is_alpha(unsigned char c)
{
	return byte_flags[c] & (B_UPPER | B_LOWER);
}

static bool is_alnum(unsigned char c)
{
	return byte_flags[c] & (B_DIGIT | B_UPPER | B_LOWER);
}

static bool is_hex(unsigned char c)
{
	return byte_flags[c] & B_HEX;
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int hex_value(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	return (c | 0x20) - 'a' + 10;
}

static unsigned char to_lower(unsigned char c)
{
	return is_upper(c) ? (unsigned char)(c | 0x20) : c;
}

/* Whether a hit may start at i: not in the middle of a word. */
static bool starts_word(const unsigned char *s, size_t i)
{
	if (i == 0 || !is_alnum(s[i - 1]))
		return true;
	/* a percent escape ends a word: "q=a%3D4111 1111..." */
	return i >= 3 && s[i - 3] == '%' && is_hex(s[i - 2]) && is_hex(s[i - 1]);
}

/* Whether a hit may end at e. */
static bool ends_word(const unsigned char *s, size_t n, size_t e)
{
	return e >= n || !is_alnum(s[e]);
}

const char *privacy_det_name(enum privacy_det d)
{
	return d < PRIVACY_DET_NONE ? det_names[d] : "none";
}

enum privacy_det privacy_det_parse(const char *name)
{
	for (int d = 0; d < PRIVACY_DET_NONE; d++) {
		if (strcmp(name, det_names[d]) == 0)
			return (enum privacy_det)d;
	}
	return PRIVACY_DET_NONE;
}

/*
 * Emails. Found from their '@' (or "%40" in a URL): the local part extends
 * left over letters, digits, . _ + - and percent escapes of those; the
 * domain extends right over two or more labels, the last one a TLD of two
 * or more letters.
 *
 * A local part has at most 64 characters, but a longer run before the '@'
 * is no reason to leave the address: it is something glued to one
 * ("mmm...m-jane@example.com" in an id, letters written right before it),
 * and where the address starts cannot be told, so the hit takes the whole
 * run. It takes at most LOCAL_RUN_MAX bytes of it, which keeps a hit within
 * PRIVACY_HIT_MAX (256 + "%40" + a 253-byte domain); what lies before
 * holds no '@', so no address of its own.
 */
#define LOCAL_RUN_MAX 256

static bool local_byte(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '+' || c == '-' || c >= 0x80;
}

/* Whether the three bytes before j are a percent escape of a local-part byte. */
static bool local_escape_before(const unsigned char *s, size_t from, size_t j)
{
	int c;

	if (j < from + 3 || s[j - 3] != '%' || !is_hex(s[j - 2]) || !is_hex(s[j - 1]))
		return false;
	c = hex_value(s[j - 2]) * 16 + hex_value(s[j - 1]);
	return c < 0x80 && local_byte((unsigned char)c);
}

static bool label_byte(unsigned char c)
{
	return is_alnum(c) || c == '-' || c >= 0x80;
}

static bool tld_ok(const unsigned char *s, size_t start, size_t end)
{
	if (end - start < 2)
		return false;
	for (size_t k = start; k < end; k++) {
		if (!is_alpha(s[k]) && s[k] < 0x80)
			return false;
	}
	return true;
}

/* The end of the email domain that starts at i, or 0 if there is none. */
static size_t email_domain(const unsigned char *s, size_t n, size_t i)
{
	size_t ends[128];
	size_t nlabels = 0, j = i;

	for (;;) {
		size_t k = j;

		while (k < n && label_byte(s[k]) && k - j <= 63)
			k++;
		if (k == j || k - j > 63 || s[j] == '-' || k - i > 253)
			break;
		ends[nlabels++] = k;
		if (nlabels == sizeof(ends) / sizeof(ends[0]))
			break;
		if (k + 1 < n && s[k] == '.' && label_byte(s[k + 1])) {
			j = k + 1;
			continue;
		}
		break;
	}
	/* back off until the last label is a TLD ("example.com.123") */
	while (nlabels >= 2) {
		size_t end = ends[nlabels - 1];

		if (tld_ok(s, ends[nlabels - 2] + 1, end) && end - i <= 253)
			return end;
		nlabels--;
	}
	return 0;
}

static bool find_email(const unsigned char *s, size_t n, size_t from, struct privacy_hit *hit)
{
	for (size_t i = from; i < n; i++) {
		size_t at_len, j, end;

		if (s[i] == '@')
			at_len = 1;
		else if (s[i] == '%' && i + 2 < n && s[i + 1] == '4' && s[i + 2] == '0')
			at_len = 3;
		else
			continue;
		j = i;
		while (j > from) {
			size_t step;

			if (local_escape_before(s, from, j))
				step = 3;
			else if (local_byte(s[j - 1]))
				step = 1;
			else
				break;
			if (i - j + step > LOCAL_RUN_MAX)
				break;
			j -= step;
		}
		while (j < i && s[j] == '.')
			j++;
		if (j == i)
			continue;
		end = email_domain(s, n, i + at_len);
		if (!end)
			continue;
		/*
		 * "a@b.org@c.com": the domain is the local part of another
		 * address. Take the chain whole, or masking would leave an
		 * address behind ("h:...@c.com").
		 */
		for (;;) {
			size_t next_at = end < n && s[end] == '@' ? 1 :
				end + 2 < n && s[end] == '%' && s[end + 1] == '4' && s[end + 2] == '0' ? 3 : 0;
			size_t next_end = next_at ? email_domain(s, n, end + next_at) : 0;

			if (!next_end || next_end - j > PRIVACY_HIT_MAX)
				break;
			end = next_end;
		}
		hit->start = j;
		hit->end = end;
		hit->det = PRIVACY_DET_EMAIL;
		return true;
	}
	return false;
}

/*
 * UUIDs (8-4-4-4-12 hex digits). One in four random UUIDs has a group of
 * four digits after a dash and the '4' of version 4 after it
 * ("...-8872-4552-..."), which is a formatted national phone number to the
 * phone detector's eyes; about one in a hundred, written inside a longer
 * string, passed all its checks. No number detector matches inside one.
 */
static bool is_uuid(const unsigned char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t k = 0; k < n; k++) {
		if (k == 8 || k == 13 || k == 18 || k == 23) {
			if (s[k] != '-')
				return false;
		} else if (!is_hex(s[k])) {
			return false;
		}
	}
	return true;
}

/* Whether the byte at i, which starts a group, is inside a UUID. */
static bool inside_uuid(const unsigned char *s, size_t n, size_t i)
{
	static const size_t group_start[] = { 0, 9, 14, 19, 24 };

	for (size_t k = 0; k < sizeof(group_start) / sizeof(group_start[0]) && group_start[k] <= i; k++) {
		size_t p = i - group_start[k];

		if (p + 36 <= n && is_uuid(s + p, 36))
			return true;
	}
	return false;
}

/*
 * Payment cards: 13 to 19 digits, together or in groups of 3 to 6 split by
 * one kind of separator (space or dash), passing the Luhn check. The first
 * digit must be 2 to 6 (Mastercard, Amex, Diners, JCB, Visa, Discover,
 * UnionPay, Maestro): without that, one millisecond timestamp in ten would
 * pass as a card.
 */

static bool luhn_ok(const unsigned char *s, size_t start, size_t end)
{
	unsigned sum = 0;
	bool twice = false;

	for (size_t k = end; k-- > start;) {
		unsigned d;

		if (!is_digit(s[k]))
			continue;
		d = s[k] - '0';
		if (twice)
			d = d * 2 > 9 ? d * 2 - 9 : d * 2;
		sum += d;
		twice = !twice;
	}
	return sum % 10 == 0;
}

static bool card_at(const unsigned char *s, size_t n, size_t i, size_t *end)
{
	size_t ends[8], digits[8];
	size_t ngroups = 0, total = 0, j = i;
	unsigned char sep = 0;

	if (s[i] < '2' || s[i] > '6')
		return false;
	for (;;) {
		size_t g = j, len;

		while (j < n && is_digit(s[j]))
			j++;
		len = j - g;
		if (total + len > 19)
			break;
		total += len;
		ends[ngroups] = j;
		digits[ngroups] = total;
		ngroups++;
		/* only a group of 3 to 6 may have another after it */
		if (len < 3 || len > 6 || ngroups == 8 || j + 1 >= n || !is_digit(s[j + 1]))
			break;
		if (s[j] != ' ' && s[j] != '-')
			break;
		if (sep && s[j] != sep)
			break;
		sep = s[j];
		j++;
	}
	/* the longest prefix of whole groups that is a card wins */
	while (ngroups > 0) {
		ngroups--;
		if (digits[ngroups] >= 13 && ends_word(s, n, ends[ngroups]) &&
		    luhn_ok(s, i, ends[ngroups])) {
			*end = ends[ngroups];
			return true;
		}
	}
	return false;
}

/*
 * US social security numbers: NNN-NN-NNNN (or with spaces), not part of a
 * longer run of numbers, refusing what the SSA never issues: area 000, 666
 * or 900-999, group 00, serial 0000.
 */
static bool ssn_at(const unsigned char *s, size_t n, size_t i, size_t *end)
{
	static const int digit_at[] = { 0, 1, 2, 4, 5, 7, 8, 9, 10 };
	unsigned char sep;
	int area, group, serial;

	if (i + 11 > n)
		return false;
	sep = s[i + 3];
	if ((sep != '-' && sep != ' ') || s[i + 6] != sep)
		return false;
	for (size_t k = 0; k < sizeof(digit_at) / sizeof(digit_at[0]); k++) {
		if (!is_digit(s[i + digit_at[k]]))
			return false;
	}
	if (!ends_word(s, n, i + 11))
		return false;
	if (i + 12 < n && s[i + 11] == sep && is_digit(s[i + 12]))
		return false;
	if (i >= 2 && s[i - 1] == sep && is_digit(s[i - 2]))
		return false;
	area = (s[i] - '0') * 100 + (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
	group = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
	serial = (s[i + 7] - '0') * 1000 + (s[i + 8] - '0') * 100 +
		(s[i + 9] - '0') * 10 + (s[i + 10] - '0');
	if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
		return false;
	*end = i + 11;
	return true;
}

/*
 * IBANs: a country that issues them, two check digits, then letters and
 * digits, 15 to 34 in all, written together or in groups of four split by
 * single spaces, and valid under ISO 7064 mod 97. Upper case only.
 */

static bool iban_char(unsigned char c)
{
	return is_upper(c) || is_digit(c);
}

static bool iban_country(const unsigned char *s)
{
	for (const char *c = iban_countries; *c; c += 2) {
		if ((unsigned char)c[0] == s[0] && (unsigned char)c[1] == s[1])
			return true;
	}
	return false;
}

static bool mod97_ok(const unsigned char *s, size_t start, size_t end)
{
	unsigned char c[34];
	size_t m = 0;
	unsigned r = 0;

	for (size_t k = start; k < end; k++) {
		if (s[k] == ' ')
			continue;
		if (m == sizeof(c))
			return false;
		c[m++] = s[k];
	}
	/* the first four characters move to the end; letters count 10..35 */
	for (size_t k = 0; k < m; k++) {
		unsigned char ch = c[(k + 4) % m];

		if (is_digit(ch))
			r = (r * 10 + (unsigned)(ch - '0')) % 97;
		else
			r = (r * 100 + (unsigned)(ch - 'A' + 10)) % 97;
	}
	return r == 1;
}

static bool iban_at(const unsigned char *s, size_t n, size_t i, size_t *end)
{
	size_t ends[10], lens[10];
	size_t ngroups = 0, total = 4, run = 0, j;

	if (i + 4 > n || !is_upper(s[i]) || !is_upper(s[i + 1]) ||
	    !is_digit(s[i + 2]) || !is_digit(s[i + 3]) || !iban_country(s + i))
		return false;
	while (i + run < n && iban_char(s[i + run]))
		run++;
	if (run != 4 || i + 5 >= n || s[i + 4] != ' ') {
		if (run < 15 || run > 34 || !ends_word(s, n, i + run) || !mod97_ok(s, i, i + run))
			return false;
		*end = i + run;
		return true;
	}
	j = i + 4;
	while (ngroups < 10 && j + 1 < n && s[j] == ' ' && iban_char(s[j + 1])) {
		size_t k = j + 1, len;

		while (k < n && iban_char(s[k]) && k - (j + 1) < 5)
			k++;
		len = k - (j + 1);
		if (len > 4 || total + len > 34)
			break;
		total += len;
		j = k;
		ends[ngroups] = j;
		lens[ngroups] = total;
		ngroups++;
		if (len < 4)
			break;
	}
	while (ngroups > 0) {
		ngroups--;
		if (lens[ngroups] >= 15 && ends_word(s, n, ends[ngroups]) &&
		    mod97_ok(s, i, ends[ngroups])) {
			*end = ends[ngroups];
			return true;
		}
	}
	return false;
}

/*
 * IP addresses. IPv4: four decimal octets without leading zeros, not part
 * of a longer dotted number ("1.2.3.4.5"). IPv6: anything inet_pton()
 * accepts, with at least one hex digit; a zone ("%eth0") is left outside.
 */

static size_t octet_len(const unsigned char *s, size_t n, size_t j)
{
	size_t k = j;
	unsigned v = 0;

	while (k < n && is_digit(s[k]) && k - j < 4) {
		v = v * 10 + (unsigned)(s[k] - '0');
		k++;
	}
	if (k == j || k - j > 3 || v > 255 || (k - j > 1 && s[j] == '0'))
		return 0;
	return k - j;
}

static bool ipv4_at(const unsigned char *s, size_t n, size_t i, size_t *end)
{
	size_t j = i;

	if (i >= 2 && s[i - 1] == '.' && is_digit(s[i - 2]))
		return false;
	for (int q = 0; q < 4; q++) {
		size_t len = octet_len(s, n, j);

		if (!len)
			return false;
		j += len;
		if (q < 3) {
			if (j >= n || s[j] != '.')
				return false;
			j++;
		}
	}
	if (!ends_word(s, n, j) || (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])))
		return false;
	*end = j;
	return true;
}

static bool ipv6_at(const unsigned char *s, size_t n, size_t i, size_t *end)
{
	char text[48];
	unsigned char addr[16];
	size_t j = i, colons = 0;
	bool hexdigit = false;

	if (i > 0 && (s[i - 1] == ':' || s[i - 1] == '.'))
		return false;
	while (j < n && (is_hex(s[j]) || s[j] == ':' || s[j] == '.')) {
		if (j - i == 45)
			return false;
		j++;
	}
	/* a full stop or colon after the address belongs to the sentence */
	while (j > i && s[j - 1] == '.')
		j--;
	if (j - i > 2 && s[j - 1] == ':' && s[j - 2] != ':')
		j--;
	for (size_t k = i; k < j; k++) {
		colons += s[k] == ':';
		hexdigit |= is_hex(s[k]);
	}
	if (colons < 2 || !hexdigit || !ends_word(s, n, j))
		return false;
	memcpy(text, s + i, j - i);
	text[j - i] = '\0';
	if (inet_pton(AF_INET6, text, addr) != 1)
		return false;
	*end = j;
	return true;
}

/*
 * Phone numbers: E.164 ("+" or "%2B", then digits, separators allowed), or
 * a national number that is visibly formatted as one: groups split by
 * spaces, dashes, dots, one slash, or a parenthesised area code. 7 to 15
 * digits. The rules below turn away what merely looks similar: dates,
 * versions, decimals, thousands groupings, ZIP+4 and SSN shapes, and bare
 * runs of digits (ids, timestamps, prices).
 */

struct phone_group {
	unsigned len;		/* digits */
	unsigned val;		/* their value, for the date check */
	unsigned char first;	/* the first digit */
	unsigned char sep;	/* the separator after it, 0 if none */
	bool paren;
};

static bool phone_sep(unsigned char c)
{
	return c == ' ' || c == '-' || c == '.' || c == '/';
}

static bool is_year(const struct phone_group *g)
{
	return !g->paren && g->len == 4 && g->val >= 1900 && g->val <= 2099;
}

static bool is_day_or_month(const struct phone_group *g, unsigned max)
{
	return !g->paren && g->len <= 2 && g->val >= 1 && g->val <= max;
}

static bool looks_like_date(const struct phone_group *g, size_t ngroups)
{
	for (size_t k = 0; k + 2 < ngroups; k++) {
		const struct phone_group *a = &g[k], *b = &g[k + 1], *c = &g[k + 2];

		if (is_year(a) && is_day_or_month(b, 12) && is_day_or_month(c, 31))
			return true;
		if (is_year(c) && ((is_day_or_month(a, 31) && is_day_or_month(b, 12)) ||
				   (is_day_or_month(a, 12) && is_day_or_month(b, 31))))
			return true;
	}
	return false;
}

static bool national_ok(const struct phone_group *g, size_t ngroups)
{
	bool dots = false, thousands = true;
	unsigned slashes = 0;

	if (ngroups < 2)
		return false;
	/* the first group: an area code, or a 0/1 trunk prefix */
	if (g[0].paren) {
		if (g[0].len < 2 || g[0].len > 5)
			return false;
	} else if (g[0].len == 1) {
		if (g[0].first != '0' && g[0].first != '1')
			return false;
	} else if (g[0].len > 5 || (g[0].len == 5 && g[0].first != '0')) {
		return false;
	}
	for (size_t k = 0; k < ngroups; k++) {
		if (k > 0 && (g[k].len < 2 || g[k].len > 8))
			return false;
		if (k > 0 && (g[k].len != 3 || g[k - 1].sep != g[0].sep))
			thousands = false;
		dots |= g[k].sep == '.';
		slashes += g[k].sep == '/';
	}
	if (slashes > 1)
		return false;
	/* 1 234 567 and 12.345.678 are amounts */
	if (thousands && g[0].len <= 2 && !g[0].paren && (g[0].sep == ' ' || g[0].sep == '.'))
		return false;
	/* 10.0.19045 is a version, 1234567.89 a decimal */
	if (dots) {
		bool all3 = true;

		for (size_t k = 0; k < ngroups; k++) {
			if (g[k].len < 2)
				return false;
			all3 &= g[k].len >= 3;
		}
		if (ngroups < 4 && !all3)
			return false;
	}
	/* the SSN detector's shape */
	if (ngroups == 3 && g[0].len == 3 && g[1].len == 2 && g[2].len == 4 &&
	    g[0].sep == '-' && g[1].sep == '-')
		return false;
	return true;
}

static bool phone_at(const unsigned char *s, size_t n, size_t i, size_t *end)
{
	struct phone_group g[8];
	size_t ngroups = 0, j = i;
	unsigned total = 0;
	bool intl = false;

	if (s[j] == '+') {
		intl = true;
		j++;
	} else if (s[j] == '%' && j + 2 < n && s[j + 1] == '2' && (s[j + 2] == 'B' || s[j + 2] == 'b')) {
		intl = true;
		j += 3;
	} else if (i >= 2 && is_digit(s[i - 2]) && (phone_sep(s[i - 1]) || s[i - 1] == ',')) {
		/* the middle of a longer run of numbers */
		return false;
	}
	for (;;) {
		struct phone_group *cur;
		bool paren = false;
		size_t k;

		if (ngroups == 8)
			return false;
		if (j < n && s[j] == '(') {
			paren = true;
			j++;
		}
		cur = &g[ngroups];
		cur->val = 0;
		for (k = j; k < n && is_digit(s[k]); k++) {
			if (k - j < 9)
				cur->val = cur->val * 10 + (unsigned)(s[k] - '0');
		}
		if (k == j)
			return false;
		cur->len = (unsigned)(k - j);
		cur->first = s[j];
		cur->paren = paren;
		cur->sep = 0;
		total += cur->len;
		if (total > 15)
			return false;
		ngroups++;
		if (paren) {
			if (k >= n || s[k] != ')')
				return false;
			k++;
		}
		j = k;
		if (j + 1 < n && phone_sep(s[j]) && (is_digit(s[j + 1]) || s[j + 1] == '(')) {
			cur->sep = s[j];
			j++;
			continue;
		}
		if (paren && j < n && is_digit(s[j])) {
			cur->sep = ')';
			continue;
		}
		break;
	}
	if (total < 7 || !ends_word(s, n, j))
		return false;
	if (j + 1 < n && s[j] == ',' && is_digit(s[j + 1]))
		return false;
	if (looks_like_date(g, ngroups))
		return false;
	if (intl ? g[0].first == '0' : !national_ok(g, ngroups))
		return false;
	*end = j;
	return true;
}

/* An internal mask bit: the rest of the string has a ':', so IPv6 is possible. */
#define DET_V6 (1u << 8)

/* Tries every detector in mask that may start at i, most specific first. */
static bool detect_at(const unsigned char *s, size_t n, size_t i, unsigned mask,
	struct privacy_hit *hit)
{
	unsigned char c = s[i];
	size_t end;

	if (is_digit(c)) {
		if ((mask & PRIVACY_DET_BIT(PRIVACY_DET_CARD)) && card_at(s, n, i, &end))
			hit->det = PRIVACY_DET_CARD;
		else if ((mask & PRIVACY_DET_BIT(PRIVACY_DET_SSN)) && ssn_at(s, n, i, &end))
			hit->det = PRIVACY_DET_SSN;
		else if ((mask & PRIVACY_DET_BIT(PRIVACY_DET_IP)) &&
			 (ipv4_at(s, n, i, &end) || ((mask & DET_V6) && ipv6_at(s, n, i, &end))))
			hit->det = PRIVACY_DET_IP;
		else if ((mask & PRIVACY_DET_BIT(PRIVACY_DET_PHONE)) && phone_at(s, n, i, &end))
			hit->det = PRIVACY_DET_PHONE;
		else
			return false;
		/* a hit is rare; only then is it worth asking */
		if (inside_uuid(s, n, i))
			return false;
	} else if (c == '+' || c == '(' || c == '%') {
		if (!(mask & PRIVACY_DET_BIT(PRIVACY_DET_PHONE)) || !phone_at(s, n, i, &end))
			return false;
		hit->det = PRIVACY_DET_PHONE;
	} else if (is_upper(c) && (mask & PRIVACY_DET_BIT(PRIVACY_DET_IBAN)) &&
		   iban_at(s, n, i, &end)) {
		hit->det = PRIVACY_DET_IBAN;
	} else if ((c == ':' || is_hex(c)) && (mask & DET_V6) && ipv6_at(s, n, i, &end)) {
		hit->det = PRIVACY_DET_IP;
	} else {
		return false;
	}
	hit->start = i;
	hit->end = end;
	return true;
}

/*
 * Secrets written as name=value pairs inside a string: a query string
 * ("?user=u1&password=hunter2"), a form body, a log line quoting a request.
 * The name is the run of letters, digits and _ - . [ ] % before the '=',
 * judged by privacy_key_is_secret() as a field name would be; the hit is
 * the value, up to the next '&', white space, quote or angle bracket, or
 * between the quotes when it is quoted. The value runs on over ';', ',' and
 * '#', which a secret may hold: masking a little more beats leaving the
 * rest of a password. An empty value is no hit, nor is one already hashed,
 * so masking twice changes nothing.
 */

static bool pair_name_byte(unsigned char c)
{
	return is_alnum(c) || c == '_' || c == '-' || c == '.' || c == '[' || c == ']' || c == '%';
}

static bool pair_value_end(unsigned char c)
{
	return c <= ' ' || c == 0x7f || c == '&' || c == '"' || c == '\'' || c == '<' || c == '>';
}

/* "h:" and 32 hex digits: what the hash action wrote. */
static bool is_hash_text(const unsigned char *s, size_t n)
{
	if (n != 2 + 2 * PRIVACY_KEY_BYTES || s[0] != 'h' || s[1] != ':')
		return false;
	for (size_t k = 2; k < n; k++) {
		if (!is_hex(s[k]))
			return false;
	}
	return true;
}

/* Field names are judged on at most this many bytes before the '='. */
#define PAIR_NAME_MAX 128

static bool find_secret_pair(const unsigned char *s, size_t n, size_t from,
	struct privacy_hit *hit)
{
	const unsigned char *eq;
	size_t i = from;

	while (i < n && (eq = memchr(s + i, '=', n - i)) != NULL) {
		size_t e = (size_t)(eq - s), name = e, vs = e + 1, ve;

		i = e + 1;
		while (name > from && e - name < PAIR_NAME_MAX && pair_name_byte(s[name - 1]))
			name--;
		if (name == e || !privacy_key_is_secret((const char *)s + name, e - name))
			continue;
		if (vs < n && (s[vs] == '"' || s[vs] == '\'')) {
			const unsigned char *close = memchr(s + vs + 1, s[vs], n - vs - 1);

			vs++;
			ve = close ? (size_t)(close - s) : n;
		} else {
			for (ve = vs; ve < n && !pair_value_end(s[ve]); ve++)
				;
		}
		if (ve == vs || is_hash_text(s + vs, ve - vs))
			continue;
		hit->start = vs;
		hit->end = ve;
		hit->det = PRIVACY_DET_SECRET_KEY;
		return true;
	}
	return false;
}

/*
 * The prefilter counts seven things at once: each byte adds 1 to one of
 * seven 9-bit fields of a 64-bit word (digits, colons, '@', '%', '.',
 * capitals, '='). A string is summed 511 bytes at a time, so no field can
 * overflow, and the sums of a longer one are added up field by field,
 * stopping at 511: no decision needs to count further than 13.
 */
enum {
	F_DIGIT = 0,
	F_COLON = 9,
	F_AT = 18,
	F_PERCENT = 27,
	F_DOT = 36,
	F_UPPER = 45,
	F_EQUALS = 54,
	F_CHUNK = 511,
};

static const uint64_t byte_counts[256] = {
	['0' ... '9'] = 1ull << F_DIGIT,
	[':'] = 1ull << F_COLON,
	['@'] = 1ull << F_AT,
	['%'] = 1ull << F_PERCENT,
	['.'] = 1ull << F_DOT,
	['A' ... 'Z'] = 1ull << F_UPPER,
	['='] = 1ull << F_EQUALS,
};

static size_t field(uint64_t sum, int shift)
{
	return (size_t)(sum >> shift) & F_CHUNK;
}

/* The seven counts of s, as the fields of one word. */
static inline uint64_t count_bytes(const unsigned char *s, size_t n)
{
	static const int shifts[] = { F_DIGIT, F_COLON, F_AT, F_PERCENT, F_DOT, F_UPPER, F_EQUALS };
	uint64_t total = 0;

	for (size_t i = 0; i < n;) {
		size_t end = n - i > F_CHUNK ? i + F_CHUNK : n;
		uint64_t sum = 0;

		for (; i < end; i++)
			sum += byte_counts[s[i]];
		if (!total) {
			total = sum;
			continue;
		}
		for (size_t k = 0; k < sizeof(shifts) / sizeof(shifts[0]); k++) {
			size_t v = field(total, shifts[k]) + field(sum, shifts[k]);

			total &= ~((uint64_t)F_CHUNK << shifts[k]);
			total |= (uint64_t)(v < F_CHUNK ? v : F_CHUNK) << shifts[k];
		}
	}
	return total;
}

#define F_ANY(f) ((uint64_t)F_CHUNK << (f))

/* Most strings: no digits, no '@', no '%', no '=', under two ':'. */
static bool holds_nothing(uint64_t counts)
{
	return !(counts & (F_ANY(F_DIGIT) | F_ANY(F_AT) | F_ANY(F_PERCENT) | F_ANY(F_EQUALS))) &&
	       field(counts, F_COLON) < 2;
}

/*
 * Strings every event carries that cannot hold a match: ISO 8601
 * timestamps ("2024-01-15T10:00:00.123Z", "2024-01-15 10:00:00+01:00") and
 * UUIDs. Recognising them costs less than running the number detectors.
 */
static bool digits_at(const unsigned char *s, size_t at, size_t count)
{
	for (size_t k = at; k < at + count; k++) {
		if (!is_digit(s[k]))
			return false;
	}
	return true;
}

static bool is_timestamp(const unsigned char *s, size_t n)
{
	size_t i = 19;

	if (n < 19 || n > 35 || !digits_at(s, 0, 4) || s[4] != '-' || !digits_at(s, 5, 2) ||
	    s[7] != '-' || !digits_at(s, 8, 2) || (s[10] != 'T' && s[10] != ' ') ||
	    !digits_at(s, 11, 2) || s[13] != ':' || !digits_at(s, 14, 2) || s[16] != ':' ||
	    !digits_at(s, 17, 2))
		return false;
	if (i < n && s[i] == '.') {
		for (i++; i < n && is_digit(s[i]); i++)
			;
	}
	if (i < n && s[i] == 'Z')
		i++;
	else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && digits_at(s, i + 1, 2) &&
		 s[i + 3] == ':' && digits_at(s, i + 4, 2))
		i += 6;
	return i == n;
}

/*
 * The detectors worth running on s, from its counts. With s NULL, from the
 * counts alone, which may name a detector that a look at s would rule out.
 */
static unsigned prefilter_mask(const unsigned char *s, size_t n, uint64_t counts)
{
	size_t digits = field(counts, F_DIGIT), colons = field(counts, F_COLON);
	size_t percent = field(counts, F_PERCENT), equals = field(counts, F_EQUALS);
	bool at = field(counts, F_AT);
	unsigned mask = 0;

	if (holds_nothing(counts))
		return 0;
	if (s && !at && !percent && !equals && (is_timestamp(s, n) || is_uuid(s, n)))
		return 0;
	if (!at && percent) {
		/* "%40", an '@' in a URL; without s, any '%' may be one */
		at = !s;
		for (size_t i = 0; s && i + 2 < n && !at; i++)
			at = s[i] == '%' && s[i + 1] == '4' && s[i + 2] == '0';
	}
	if (at)
		mask |= PRIVACY_DET_BIT(PRIVACY_DET_EMAIL);
	if (digits >= 7)
		mask |= PRIVACY_DET_BIT(PRIVACY_DET_PHONE) |
			(digits >= 9 ? PRIVACY_DET_BIT(PRIVACY_DET_SSN) : 0) |
			(digits >= 13 ? PRIVACY_DET_BIT(PRIVACY_DET_CARD) : 0);
	if (field(counts, F_UPPER) && digits >= 2 && n >= 15)
		mask |= PRIVACY_DET_BIT(PRIVACY_DET_IBAN);
	if ((field(counts, F_DOT) && digits >= 4) || colons >= 2)
		mask |= PRIVACY_DET_BIT(PRIVACY_DET_IP);
	if (equals)
		mask |= PRIVACY_DET_BIT(PRIVACY_DET_SECRET_KEY);
	return mask;
}

unsigned privacy_detect_prefilter(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	return prefilter_mask(s, n, count_bytes(s, n));
}

bool privacy_detect_next(const char *str, size_t n, size_t from, unsigned mask,
	struct privacy_hit *hit)
{
	const unsigned char *s = (const unsigned char *)str;
	struct privacy_hit first, pair;
	bool have_first = false;
	size_t limit = n;
	unsigned starts = 0;

	mask &= PRIVACY_DET_ALL_CONTENT;
	/*
	 * Emails and secret values are found from their '@' and '=', not from
	 * where they start, so they are looked for first, and the other
	 * detectors only run before the earlier of the two. A value that
	 * holds an address is taken whole, as the secret it is. (A number
	 * cannot run on into an email: the local part takes every digit
	 * and letter before the '@'.)
	 */
	if (mask & PRIVACY_DET_BIT(PRIVACY_DET_EMAIL))
		have_first = find_email(s, n, from, &first);
	if ((mask & PRIVACY_DET_BIT(PRIVACY_DET_SECRET_KEY)) &&
	    find_secret_pair(s, n, from, &pair) && (!have_first || pair.start <= first.start)) {
		first = pair;
		have_first = true;
	}
	if (have_first)
		limit = first.start;
	if ((mask & PRIVACY_DET_BIT(PRIVACY_DET_IP)) && memchr(s + from, ':', limit - from))
		mask |= DET_V6;
	/* the bytes where one of the detectors asked for can start */
	if (mask & (PRIVACY_DET_BIT(PRIVACY_DET_CARD) | PRIVACY_DET_BIT(PRIVACY_DET_SSN) |
		    PRIVACY_DET_BIT(PRIVACY_DET_IP) | PRIVACY_DET_BIT(PRIVACY_DET_PHONE)))
		starts |= B_DIGIT;
	if (mask & PRIVACY_DET_BIT(PRIVACY_DET_PHONE))
		starts |= B_PHONE;
	if (mask & PRIVACY_DET_BIT(PRIVACY_DET_IBAN))
		starts |= B_UPPER;
	if (mask & DET_V6)
		starts |= B_HEX | B_COLON;
	/*
	 * The detectors see the text between `from` and `limit` only: what an
	 * earlier hit covered is not context ("0790" ending an address does
	 * not make the number after it the middle of a longer run of
	 * numbers), and neither is what a later one will replace. So a pass
	 * over masked text finds what the first pass found: "b::ffff:.0a@x.io"
	 * has the address "b::ffff" once "0a@x.io" is hashed, so it has it
	 * before too.
	 */
	for (size_t i = 0; starts && from + i < limit; i++) {
		if (!(byte_flags[s[from + i]] & starts) || !starts_word(s + from, i) ||
		    !detect_at(s + from, limit - from, i, mask, hit))
			continue;
		hit->start += from;
		hit->end += from;
		return true;
	}
	if (have_first)
		*hit = first;
	return have_first;
}

/*
 * The detectors worth running on the view of s, judged without building
 * it: its counts are those of s with every escape's three bytes taken out
 * and the byte it stands for put in ('+' and ' ' are not counted). Unless
 * an escape stands for a byte of a pair's name, an '=' or a quote, the view
 * holds no secret value that s does not ("%2F", "%20" and '+' only ever end
 * a value sooner). The counts of a string longer than a chunk may be
 * capped, so it is judged on mask alone.
 */
static unsigned view_prefilter(const unsigned char *s, size_t n, uint64_t counts, unsigned mask)
{
	const unsigned char *p = s, *end = s + n;
	bool pairs = false;

	if (n > F_CHUNK)
		return mask;
	while ((p = memchr(p, '%', (size_t)(end - p))) != NULL) {
		unsigned char c;

		if (end - p < 3 || !is_hex(p[1]) || !is_hex(p[2])) {
			p++;
			continue;
		}
		c = (unsigned char)(hex_value(p[1]) * 16 + hex_value(p[2]));
		pairs |= pair_name_byte(c) || c == '=' || c == '"' || c == '\'';
		counts -= byte_counts['%'] + byte_counts[p[1]] + byte_counts[p[2]];
		counts += byte_counts[c];
		p += 3;
	}
	if (!pairs)
		mask &= ~PRIVACY_DET_BIT(PRIVACY_DET_SECRET_KEY);
	return mask & prefilter_mask(NULL, n, counts);
}

/*
 * The percent-decoded view of sc->s: every "%XX" read as its byte, and
 * every '+' after an '=' as a space (a form's value). Returns false, with
 * no view, when there is nothing to decode.
 */
static bool decode_view(struct privacy_scan *sc)
{
	const unsigned char *s = (const unsigned char *)sc->s;
	size_t n = sc->n, k = 0;
	bool form = false, decoded = false;

	/* offsets are 32-bit; no string that long is worth a second look */
	if (n >= UINT32_MAX)
		return false;
	if (n <= PRIVACY_SCAN_LOCAL) {
		sc->d = sc->local_d;
		sc->off = sc->local_off;
	} else {
		sc->d = xmalloc(n);
		sc->off = xmalloc(xmul(n + 1, sizeof(*sc->off)));
	}
	for (size_t i = 0; i < n; k++) {
		sc->off[k] = (uint32_t)i;
		if (s[i] == '%' && i + 2 < n && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
			sc->d[k] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
			i += 3;
			decoded = true;
		} else if (s[i] == '+' && form) {
			sc->d[k] = ' ';
			i++;
			decoded = true;
		} else {
			form |= s[i] == '=';
			sc->d[k] = (char)s[i++];
		}
	}
	sc->off[k] = (uint32_t)n;
	sc->dn = k;
	if (!decoded)
		privacy_scan_release(sc);
	return decoded;
}

bool privacy_scan_init(struct privacy_scan *sc, const char *str, size_t n, unsigned mask)
{
	const unsigned char *s = (const unsigned char *)str;
	uint64_t counts;
	unsigned vmask = 0;

	mask &= PRIVACY_DET_ALL_CONTENT;
	if (!mask)
		return false;
	/* most strings end here: the caller then has nothing to call or release */
	counts = count_bytes(s, n);
	if (holds_nothing(counts))
		return false;
	sc->mask = mask & prefilter_mask(s, n, counts);
	if (field(counts, F_PERCENT) || (field(counts, F_EQUALS) && memchr(s, '+', n)))
		vmask = view_prefilter(s, n, counts, mask);
	if (!sc->mask && !vmask)
		return false;
	sc->s = str;
	sc->n = n;
	sc->d = NULL;
	sc->off = NULL;
	sc->dn = 0;
	sc->dmask = 0;
	sc->have_dec = false;
	sc->have_raw = sc->mask && privacy_detect_next(str, n, 0, sc->mask, &sc->raw);
	if (vmask && decode_view(sc)) {
		sc->dmask = vmask & privacy_detect_prefilter(sc->d, sc->dn);
		sc->have_dec = sc->dmask && privacy_detect_next(sc->d, sc->dn, 0, sc->dmask, &sc->dec);
		if (!sc->have_dec)
			privacy_scan_release(sc);
	}
	if (sc->have_raw || sc->have_dec)
		return true;
	privacy_scan_release(sc);
	return false;
}

/* The first byte of the view that comes from at or after byte i of s. */
static size_t view_index(const struct privacy_scan *sc, size_t i)
{
	size_t lo = 0, hi = sc->dn;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sc->off[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool privacy_scan_next(struct privacy_scan *sc, struct privacy_match *m)
{
	bool use_view;

	if (!sc->have_raw && !sc->have_dec)
		return false;
	use_view = sc->have_dec && (!sc->have_raw || sc->off[sc->dec.start] < sc->raw.start);
	if (use_view) {
		m->hit = sc->dec;
		m->text = sc->d;
		m->text_len = sc->dn;
		m->start = sc->off[sc->dec.start];
		m->end = sc->off[sc->dec.end];
	} else {
		m->hit = sc->raw;
		m->text = sc->s;
		m->text_len = sc->n;
		m->start = sc->raw.start;
		m->end = sc->raw.end;
	}
	/* both go on after this hit; one that overlapped it is looked for again */
	if (sc->have_raw && sc->raw.start < m->end)
		sc->have_raw = m->end < sc->n &&
			privacy_detect_next(sc->s, sc->n, m->end, sc->mask, &sc->raw);
	if (sc->have_dec && sc->off[sc->dec.start] < m->end) {
		size_t k = view_index(sc, m->end);

		sc->have_dec = k < sc->dn && privacy_detect_next(sc->d, sc->dn, k, sc->dmask, &sc->dec);
	}
	return true;
}

void privacy_scan_release(struct privacy_scan *sc)
{
	if (sc->d && sc->d != sc->local_d) {
		free(sc->d);
		free(sc->off);
	}
	sc->d = NULL;
	sc->off = NULL;
	sc->have_dec = false;
}

/*
 * Normalisation. A phone keeps its leading '+' and its digits; a "(0)"
 * after the country code is the national trunk prefix, not part of the
 * E.164 number, so it is left out.
 */
static size_t phone_normalise(const unsigned char *s, size_t n, char *out)
{
	size_t i = 0, k = 0;
	bool intl = false;

	if (n > 0 && s[0] == '+') {
		intl = true;
		i = 1;
	} else if (n >= 3 && s[0] == '%' && s[1] == '2' && (s[2] == 'B' || s[2] == 'b')) {
		intl = true;
		i = 3;
	}
	if (intl)
		out[k++] = '+';
	for (; i < n; i++) {
		if (intl && k > 1 && s[i] == '(' && i + 2 < n && s[i + 1] == '0' && s[i + 2] == ')') {
			i += 2;
			continue;
		}
		if (is_digit(s[i]))
			out[k++] = (char)s[i];
	}
	out[k] = '\0';
	return k;
}

size_t privacy_normalise(const char *type, const char *raw, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *)raw;

	while (len > 0 && is_space(s[0])) {
		s++;
		len--;
	}
	while (len > 0 && is_space(s[len - 1]))
		len--;
	if (type && strcmp(type, "phone") == 0)
		return phone_normalise(s, len, out);
	if (type && strcmp(type, "email") == 0) {
		for (size_t k = 0; k < len; k++)
			out[k] = (char)to_lower(s[k]);
	} else if (len > 0) {
		memcpy(out, s, len);
	}
	out[len] = '\0';
	return len;
}

/* The canonical text of an IP address, optionally truncated to its network. */
static size_t ip_text(const unsigned char *s, size_t n, bool truncate, char out[PRIVACY_NORM_MAX])
{
	char text[48];
	unsigned char a[16];
	int af = memchr(s, ':', n) ? AF_INET6 : AF_INET;
	const unsigned char *last_dot = NULL;
	size_t dots = 0;

	/* the IPv4 the detector found is canonical already: no parsing needed */
	for (size_t k = 0; af == AF_INET && k < n; k++) {
		if (s[k] == '.') {
			dots++;
			last_dot = s + k;
		}
	}
	if (af == AF_INET && dots == 3 && n < PRIVACY_NORM_MAX - 1) {
		size_t keep = truncate ? (size_t)(last_dot - s) + 1 : n;

		memcpy(out, s, keep);
		if (truncate)
			out[keep++] = '0';
		out[keep] = '\0';
		return keep;
	}
	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	memcpy(text, s, n);
	text[n] = '\0';
	if (inet_pton(af, text, a) != 1) {
		memcpy(out, text, n + 1);
		return n;
	}
	if (truncate && af == AF_INET) {
		a[3] = 0;
	} else if (truncate) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		if (memcmp(a, mapped, sizeof(mapped)) == 0)
			a[15] = 0;	/* ::ffff:a.b.c.d is IPv4: its /24 */
		else
			memset(a + 6, 0, 10);
	}
	if (!inet_ntop(af, a, out, PRIVACY_NORM_MAX)) {
		memcpy(out, text, n + 1);
		return n;
	}
	return strlen(out);
}

size_t privacy_ip_truncate(const char *s, const struct privacy_hit *hit,
	char out[PRIVACY_NORM_MAX])
{
	return ip_text((const unsigned char *)s + hit->start, hit->end - hit->start, true, out);
}

size_t privacy_hit_normalise(const char *str, const struct privacy_hit *hit,
	char out[PRIVACY_NORM_MAX])
{
	const unsigned char *s = (const unsigned char *)str + hit->start;
	size_t n = hit->end - hit->start, k = 0;

	switch (hit->det) {
	case PRIVACY_DET_EMAIL:
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '%' && i + 2 < n && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
				out[k++] = (char)to_lower((unsigned char)(hex_value(s[i + 1]) * 16 +
									  hex_value(s[i + 2])));
				i += 2;
			} else {
				out[k++] = (char)to_lower(s[i]);
			}
		}
		break;
	case PRIVACY_DET_PHONE:
		return phone_normalise(s, n, out);
	case PRIVACY_DET_IP:
		return ip_text(s, n, false, out);
	case PRIVACY_DET_SECRET_KEY:
		/* as it stands; render_hit() reads a long one in place instead */
		k = n < PRIVACY_NORM_MAX ? n : PRIVACY_NORM_MAX - 1;
		memcpy(out, s, k);
		break;
	default:
		/* card and ssn: the digits; iban: without its spaces */
		for (size_t i = 0; i < n; i++) {
			if (is_digit(s[i]) || (hit->det == PRIVACY_DET_IBAN && s[i] != ' '))
				out[k++] = (char)s[i];
		}
		break;
	}
	out[k] = '\0';
	return k;
}

/* The length of the UTF-8 character that starts at s, at most n. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
	size_t len = 1;

	if (s[0] >= 0xf0)
		len = 4;
	else if (s[0] >= 0xe0)
		len = 3;
	else if (s[0] >= 0xc0)
		len = 2;
	return len < n ? len : n;
}

size_t privacy_partial_generic(const char *str, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t c;

	while (len > 0 && is_space(s[0])) {
		s++;
		len--;
	}
	if (len == 0)
		return 0;
	c = utf8_char_len(s, len);
	memcpy(out, s, c);
	memcpy(out + c, "***", 3);
	return c + 3;
}

/*
 * Stars for every digit but the last four (for all of them when there are
 * four or fewer: the last four would be the whole number); the rest as is.
 */
static size_t star_digits(const char *norm, size_t len, char *out)
{
	size_t digits = 0, seen = 0;

	for (size_t i = 0; i < len; i++)
		digits += is_digit((unsigned char)norm[i]);
	for (size_t i = 0; i < len; i++) {
		out[i] = norm[i];
		if (is_digit((unsigned char)norm[i]) && (digits <= 4 || seen++ + 4 < digits))
			out[i] = '*';
	}
	return len;
}

size_t privacy_partial(enum privacy_det det, const char *norm, size_t len,
	char out[PRIVACY_NORM_MAX])
{
	const char *at;
	size_t c, k;

	switch (det) {
	case PRIVACY_DET_EMAIL:
		at = memchr(norm, '@', len);
		if (!at || at == norm)
			break;
		c = utf8_char_len((const unsigned char *)norm, (size_t)(at - norm));
		memcpy(out, norm, c);
		memcpy(out + c, "***", 3);
		memcpy(out + c + 3, at, len - (size_t)(at - norm));
		return c + 3 + len - (size_t)(at - norm);
	case PRIVACY_DET_PHONE:
	case PRIVACY_DET_CARD:
		return star_digits(norm, len, out);
	case PRIVACY_DET_SSN:
		if (len != 9)
			break;
		memcpy(out, "***-**-", 7);
		memcpy(out + 7, norm + 5, 4);
		return 11;
	case PRIVACY_DET_IBAN:
		if (len < 8)
			break;
		memcpy(out, norm, 2);
		for (k = 2; k < len - 4; k++)
			out[k] = '*';
		memcpy(out + k, norm + len - 4, 4);
		return len;
	case PRIVACY_DET_IP:
		return ip_text((const unsigned char *)norm, len, true, out);
	default:
		break;
	}
	return privacy_partial_generic(norm, len, out);
}

/*
 * Field names that hold secrets. A name is split into words at
 * punctuation, at lower-to-upper changes (camelCase), before the last
 * capital of a run followed by lower case (APIKey) and between letters and
 * digits (cvv2). A word equal to ssn, cvv or cvc or ending in "token"
 * matches; so does any name whose letters and digits, lower-cased and run
 * together, contain password, passwd, secret, apikey, cardnumber or
 * ccnumber. "total_tokens" and "classname" do not match.
 */

static bool word_is_secret(const unsigned char *w, size_t len)
{
	static const char *const exact[] = { "ssn", "cvv", "cvc" };
	char low[8];

	if (len >= 5) {
		size_t k;

		for (k = 0; k < 5 && to_lower(w[len - 5 + k]) == (unsigned char)"token"[k]; k++)
			;
		if (k == 5)
			return true;
	}
	if (len != 3)
		return false;
	for (size_t k = 0; k < len; k++)
		low[k] = (char)to_lower(w[k]);
	for (size_t e = 0; e < sizeof(exact) / sizeof(exact[0]); e++) {
		if (memcmp(low, exact[e], 3) == 0)
			return true;
	}
	return false;
}

/*
 * Looks for secret stems in the lower-case letters and digits of a name:
 * 2 for a stem that settles it (password, passwd, secret, apikey,
 * cardnumber, ccnumber), 1 for one that must also be a word of its own
 * (ssn, cvv, cvc, token), 0 for none. One pass; most names return 0.
 */
static int secret_stem(const char *c, size_t m)
{
	int found = 0;

	for (size_t i = 0; i < m; i++) {
		const char *rest = c + i;
		size_t left = m - i;

		switch (c[i]) {
		case 'p':
			if ((left >= 8 && memcmp(rest, "password", 8) == 0) ||
			    (left >= 6 && memcmp(rest, "passwd", 6) == 0))
				return 2;
			break;
		case 's':
			if (left >= 6 && memcmp(rest, "secret", 6) == 0)
				return 2;
			if (left >= 3 && memcmp(rest, "ssn", 3) == 0)
				found = 1;
			break;
		case 'a':
			if (left >= 6 && memcmp(rest, "apikey", 6) == 0)
				return 2;
			break;
		case 'c':
			if ((left >= 10 && memcmp(rest, "cardnumber", 10) == 0) ||
			    (left >= 8 && memcmp(rest, "ccnumber", 8) == 0))
				return 2;
			if (left >= 3 && (memcmp(rest, "cvv", 3) == 0 || memcmp(rest, "cvc", 3) == 0))
				found = 1;
			break;
		case 't':
			if (left >= 5 && memcmp(rest, "token", 5) == 0)
				found = 1;
			break;
		default:
			break;
		}
	}
	return found;
}

#define LETTER(c) (1u << ((c) - 'a'))

/* Each letter's bit, in either case; 0 for every other byte. */
#define LETTER_BIT(c) [c] = LETTER(c), [(c) - 'a' + 'A'] = LETTER(c)

static const uint32_t letter_bit[256] = {
	LETTER_BIT('a'), LETTER_BIT('b'), LETTER_BIT('c'), LETTER_BIT('d'), LETTER_BIT('e'),
	LETTER_BIT('f'), LETTER_BIT('g'), LETTER_BIT('h'), LETTER_BIT('i'), LETTER_BIT('j'),
	LETTER_BIT('k'), LETTER_BIT('l'), LETTER_BIT('m'), LETTER_BIT('n'), LETTER_BIT('o'),
	LETTER_BIT('p'), LETTER_BIT('q'), LETTER_BIT('r'), LETTER_BIT('s'), LETTER_BIT('t'),
	LETTER_BIT('u'), LETTER_BIT('v'), LETTER_BIT('w'), LETTER_BIT('x'), LETTER_BIT('y'),
	LETTER_BIT('z'),
};

/* The letters of each stem secret_stem() looks for. */
static const uint32_t stem_letters[] = {
	LETTER('p') | LETTER('a') | LETTER('s') | LETTER('w') | LETTER('d'),
	LETTER('s') | LETTER('e') | LETTER('c') | LETTER('r') | LETTER('t'),
	LETTER('a') | LETTER('p') | LETTER('i') | LETTER('k') | LETTER('e') | LETTER('y'),
	LETTER('c') | LETTER('n') | LETTER('u') | LETTER('m') | LETTER('b') | LETTER('e') | LETTER('r'),
	LETTER('s') | LETTER('n'),
	LETTER('c') | LETTER('v'),
	LETTER('t') | LETTER('o') | LETTER('k') | LETTER('e') | LETTER('n'),
};

/* A stem can only be in a name that has all its letters: most names stop here. */
static bool may_have_stem(uint32_t letters)
{
	for (size_t k = 0; k < sizeof(stem_letters) / sizeof(stem_letters[0]); k++) {
		if ((letters & stem_letters[k]) == stem_letters[k])
			return true;
	}
	return false;
}

bool privacy_key_is_secret(const char *key, size_t len)
{
	const unsigned char *s = (const unsigned char *)key;
	char compact[128];
	size_t m = 0, start = 0;
	uint32_t letters = 0;
	int stem;

	for (size_t i = 0; i < len; i++)
		letters |= letter_bit[s[i]];
	if (!may_have_stem(letters))
		return false;
	for (size_t i = 0; i < len && m < sizeof(compact); i++) {
		compact[m] = (char)(s[i] | 0x20);	/* lower case for letters */
		m += is_alnum(s[i]);
	}
	stem = secret_stem(compact, m);
	if (stem != 1)
		return stem == 2;
	/* ssn, cvv, cvc and token count only as words: split the name into them */
	for (size_t i = 0; i <= len; i++) {
		bool cut = false, skip = false;

		if (i == len || !is_alnum(s[i])) {
			cut = skip = true;
		} else if (i > start) {
			unsigned char p = s[i - 1], c = s[i];

			cut = (is_lower(p) && is_upper(c)) || is_digit(p) != is_digit(c) ||
			      (is_upper(p) && is_upper(c) && i + 1 < len && is_lower(s[i + 1]));
		}
		if (cut) {
			if (i > start && word_is_secret(s + start, i - start))
				return true;
			start = skip ? i + 1 : i;
		}
	}
	return false;
}
