/*
 * Synthetic Segment events for the benchmarks; see gen.h. Everything a
 * user carries (ids, email, phone, ip, browser) is a pure function of the
 * user's index, so a user looks the same in every event, as real traffic
 * does; what varies per event comes from the xorshift generator.
 */
#include "bench/gen.h"

#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Appends a string literal; p is advanced. */
#define PUTL(p, lit) ((p) = put((p), (lit), sizeof(lit) - 1))

static const char *const first_names[] = {
	"olivia", "liam", "emma", "noah", "amelia", "oliver", "sophia", "elijah",
	"mia", "lucas", "charlotte", "mateo", "ava", "levi", "isla", "hugo",
	"lea", "jonas", "chloe", "arthur", "ines", "louis", "nora", "felix",
	"sara", "adam", "julia", "leon", "alice", "paul", "zoe", "victor",
};

static const char *const last_names[] = {
	"smith", "johnson", "martin", "bernard", "garcia", "muller", "rossi",
	"silva", "jansen", "novak", "kowalski", "dubois", "schmidt", "lopez",
	"moreau", "fischer", "romano", "costa", "peeters", "nielsen", "horvat",
	"weber", "laurent", "ricci", "ferreira", "bakker", "lefebvre", "meyer",
	"conti", "santos", "visser", "fournier",
};

static const char *const email_domains[] = {
	"gmail.com", "yahoo.com", "outlook.com", "hotmail.fr", "gmx.de",
	"icloud.com", "proton.me", "example.org",
};

static const char *const user_agents[] = {
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
	"(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
	"like Gecko) Chrome/124.0.0.0 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/"
	"605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, "
	"like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 "
	"Firefox/125.0",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
	"Gecko) Chrome/123.0.0.0 Safari/537.36",
};

static const char *const locales[] = {
	"en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "nl-NL", "it-IT", "pt-BR",
};

static const char *const categories[] = {
	"Footwear", "Outerwear", "Accessories", "Bags", "Knitwear", "Sportswear",
};

static const char *const products[] = {
	"Trail Runner 3", "Merino Crew Sweater", "Packable Down Jacket",
	"Canvas Weekender", "Leather Card Holder", "Wool Beanie",
	"Waterproof Shell", "Everyday Sneaker",
};

static const char *const brands[] = {
	"Northwind", "Alder & Co", "Fjellstrom", "Lumen", "Ostara",
};

static const char *const coupons[] = {
	"SPRING24", "WELCOME10", "FREESHIP", "VIP20",
};

static const char *const plans[] = { "free", "starter", "pro", "enterprise" };

static const char *const referrers[] = {
	"https://www.google.com/", "https://www.bing.com/",
	"https://news.ycombinator.com/", "https://t.co/",
	"https://www.facebook.com/", "",
};

struct page_def {
	const char *name;
	const char *path;
	const char *title;
};

static const struct page_def pages[] = {
	{ "Home", "/", "Northwind Outfitters - Gear for every trail" },
	{ "Pricing", "/pricing", "Membership plans - Northwind Outfitters" },
	{ "Product", "/products/trail-runner-3", "Trail Runner 3 - Northwind" },
	{ "Category", "/c/outerwear", "Outerwear - Northwind Outfitters" },
	{ "Checkout", "/checkout/shipping", "Checkout - Northwind Outfitters" },
	{ "Blog", "/blog/how-to-layer-for-winter", "How to layer for winter" },
};

static char *put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

static char *puts_(char *p, const char *s)
{
	return put(p, s, strlen(s));
}

char *gen_put_u(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* v in exactly width digits, zero-padded (v must fit). */
static char *put_u_pad(char *p, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

static char *put_hex(char *p, uint64_t v, int digits)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--) {
		p[i] = hex[v & 15];
		v >>= 4;
	}
	return p + digits;
}

/* An amount in cents as a JSON number with two decimals: 8995 -> 89.95. */
static char *put_cents(char *p, uint64_t cents)
{
	p = gen_put_u(p, cents / 100);
	*p++ = '.';
	return put_u_pad(p, cents % 100, 2);
}

/* A JSON string member "key":"value" preceded by a comma. */
static char *put_kv(char *p, const char *key, const char *val)
{
	*p++ = ',';
	*p++ = '"';
	p = puts_(p, key);
	p = put(p, "\":\"", 3);
	p = puts_(p, val);
	*p++ = '"';
	return p;
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t next(struct gen *g)
{
	g->rng ^= g->rng >> 12;
	g->rng ^= g->rng << 25;
	g->rng ^= g->rng >> 27;
	return g->rng * 0x2545f4914f6cdd1dULL;
}

static unsigned below(struct gen *g, unsigned n)
{
	return (unsigned)(((next(g) >> 32) * n) >> 32);
}

#define PICK(g, table) (table[below((g), ARRAY_LEN(table))])

void gen_init(struct gen *g, uint64_t seed, uint64_t run_id, unsigned users)
{
	g->rng = splitmix(seed) | 1;
	g->run_id = run_id;
	g->counter = 0;
	g->users = users ? users : 1;
}

uint64_t gen_random_seed(void)
{
	uint64_t v = 0;
	int fd = open("/dev/urandom", O_RDONLY);
	struct timespec ts;

	if (fd >= 0) {
		if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
			v = 0;
		close(fd);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	return v ^ splitmix((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32));
}

/* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)(yoe + era * 400) + (*m <= 2);
}

char *gen_put_iso(char *p, int64_t unix_ms)
{
	int64_t secs = unix_ms / 1000, days = secs / 86400;
	unsigned sod = (unsigned)(secs % 86400), m, d;
	int y;

	civil_from_days(days, &y, &m, &d);
	p = put_u_pad(p, (uint64_t)y, 4);
	*p++ = '-';
	p = put_u_pad(p, m, 2);
	*p++ = '-';
	p = put_u_pad(p, d, 2);
	*p++ = 'T';
	p = put_u_pad(p, sod / 3600, 2);
	*p++ = ':';
	p = put_u_pad(p, sod / 60 % 60, 2);
	*p++ = ':';
	p = put_u_pad(p, sod % 60, 2);
	*p++ = '.';
	p = put_u_pad(p, (uint64_t)(unix_ms % 1000), 3);
	*p++ = 'Z';
	return p;
}

/* ---- a user's fixed attributes ---- */

static char *put_user_id(char *p, unsigned u)
{
	PUTL(p, "usr_");
	return put_u_pad(p, u, 7);
}

static char *put_uuid(char *p, uint64_t a, uint64_t b)
{
	p = put_hex(p, a >> 32, 8);
	*p++ = '-';
	p = put_hex(p, a >> 16, 4);
	*p++ = '-';
	*p++ = '4';
	p = put_hex(p, a, 3);
	*p++ = '-';
	*p++ = '8';
	p = put_hex(p, b >> 48, 3);
	*p++ = '-';
	return put_hex(p, b, 12);
}

/* A bijection of the low 48 bits: distinct inputs, scattered outputs. */
static uint64_t scatter48(uint64_t x)
{
	const uint64_t mask = 0xffffffffffffULL;

	x = (x * 0x9e3779b97f4bULL) & mask;
	x ^= x >> 23;
	x = (x * 0xc2b2ae3d27d5ULL) & mask;
	return x ^ (x >> 21);
}

/*
 * The 48 low bits of one half are a bijection of the counter, and the
 * other half is the run id mixed with a bijection of the counter, so ids
 * never repeat within a run, nor across runs with different run ids, yet
 * land at random places in the message_id index as SDKs' UUIDs do.
 */
void gen_message_id(uint64_t run_id, uint64_t n, char *out)
{
	put_uuid(out, run_id ^ splitmix(n), scatter48(n));
}

static char *put_anonymous_id(char *p, unsigned u)
{
	return put_uuid(p, splitmix(u ^ 0x616e6f6eULL), splitmix(u ^ 0x6964ULL));
}

char *gen_put_user_id(char *p, unsigned u)
{
	return put_user_id(p, u);
}

char *gen_put_anonymous_id(char *p, unsigned u)
{
	return put_anonymous_id(p, u);
}

static char *put_email(char *p, unsigned u)
{
	p = puts_(p, first_names[u % ARRAY_LEN(first_names)]);
	*p++ = '.';
	p = puts_(p, last_names[(u / 32) % ARRAY_LEN(last_names)]);
	p = gen_put_u(p, u);
	*p++ = '@';
	return puts_(p, email_domains[splitmix(u) % ARRAY_LEN(email_domains)]);
}

/* Half the users have a North American number, half a British mobile. */
static char *put_phone(char *p, unsigned u)
{
	if (u % 2 == 0) {
		PUTL(p, "+1 (");
		p = put_u_pad(p, 201 + (u / 2) % 700, 3);
		PUTL(p, ") 555-");
		return put_u_pad(p, (u / 1400) % 10000, 4);
	}
	PUTL(p, "+44 7700 9");
	return put_u_pad(p, (u / 2) % 100000, 5);
}

static char *put_ip(char *p, unsigned u)
{
	uint64_t h = splitmix(u ^ 0x6970ULL);

	p = gen_put_u(p, 24 + (h & 0xff) % 200);
	*p++ = '.';
	p = gen_put_u(p, (h >> 8) & 0xff);
	*p++ = '.';
	p = gen_put_u(p, (h >> 16) & 0xff);
	*p++ = '.';
	return gen_put_u(p, 1 + ((h >> 24) & 0xff) % 254);
}

static char *put_context(char *p, unsigned u, const struct page_def *page,
			 const char *referrer, int utm)
{
	uint64_t h = splitmix(u ^ 0x637478ULL);

	PUTL(p, ",\"context\":{\"library\":{\"name\":\"analytics.js\","
	     "\"version\":\"next-1.62.0\"},\"userAgent\":\"");
	p = puts_(p, user_agents[h % ARRAY_LEN(user_agents)]);
	PUTL(p, "\",\"ip\":\"");
	p = put_ip(p, u);
	*p++ = '"';
	p = put_kv(p, "locale", locales[(h >> 8) % ARRAY_LEN(locales)]);
	if (page) {
		PUTL(p, ",\"page\":{\"path\":\"");
		p = puts_(p, page->path);
		*p++ = '"';
		p = put_kv(p, "referrer", referrer);
		p = put_kv(p, "search", utm ? "?utm_source=newsletter&utm_campaign=spring" : "");
		p = put_kv(p, "title", page->title);
		PUTL(p, ",\"url\":\"https://shop.northwind.example");
		p = puts_(p, page->path);
		if (utm)
			PUTL(p, "?utm_source=newsletter&utm_campaign=spring");
		PUTL(p, "\"}");
	}
	*p++ = '}';
	return p;
}

/* ---- event bodies ---- */

enum track_shape { VIEWED, ADDED, SEARCHED, CHECKOUT, ORDER, VIDEO };

static const struct {
	const char *name;
	enum track_shape shape;
} track_events[] = {
	{ "Product Viewed", VIEWED }, { "Product Viewed", VIEWED },
	{ "Product Added", ADDED }, { "Products Searched", SEARCHED },
	{ "Checkout Started", CHECKOUT }, { "Order Completed", ORDER },
	{ "Video Playback Started", VIDEO },
};

/* Writes ,"properties":{...} with 5 to 8 members for the event's shape. */
static char *put_track_properties(struct gen *g, char *p,
				  enum track_shape shape)
{
	unsigned item = below(g, 100000);
	unsigned price = 1500 + below(g, 30000);

	PUTL(p, ",\"properties\":{");
	switch (shape) {
	case VIEWED:
	case ADDED:
		PUTL(p, "\"product_id\":\"P-");
		p = put_u_pad(p, item, 6);
		PUTL(p, "\",\"sku\":\"SKU-");
		p = put_u_pad(p, item, 6);
		PUTL(p, "-B\"");
		p = put_kv(p, "category", PICK(g, categories));
		p = put_kv(p, "name", PICK(g, products));
		PUTL(p, ",\"price\":");
		p = put_cents(p, price);
		p = put_kv(p, "currency", "EUR");
		if (shape == ADDED) {
			PUTL(p, ",\"quantity\":");
			p = gen_put_u(p, 1 + below(g, 3));
			PUTL(p, ",\"cart_id\":\"c_");
			p = put_hex(p, next(g), 12);
			*p++ = '"';
		} else {
			p = put_kv(p, "brand", PICK(g, brands));
			if (below(g, 2)) {
				PUTL(p, ",\"position\":");
				p = gen_put_u(p, 1 + below(g, 24));
			}
		}
		break;
	case SEARCHED:
		PUTL(p, "\"query\":\"");
		p = puts_(p, PICK(g, categories));
		PUTL(p, " waterproof\",\"results\":");
		p = gen_put_u(p, below(g, 400));
		PUTL(p, ",\"sort\":\"relevance\",\"page_number\":");
		p = gen_put_u(p, 1 + below(g, 4));
		PUTL(p, ",\"filters\":{\"size\":\"M\",\"color\":\"navy\"}");
		break;
	case CHECKOUT:
	case ORDER:
		PUTL(p, "\"order_id\":\"ORD-");
		p = put_u_pad(p, next(g) % 100000000, 8);
		PUTL(p, "\",\"total\":");
		p = put_cents(p, price * 2 + 495);
		PUTL(p, ",\"revenue\":");
		p = put_cents(p, price * 2);
		PUTL(p, ",\"shipping\":4.95,\"tax\":");
		p = put_cents(p, price * 2 / 5);
		p = put_kv(p, "currency", "EUR");
		if (shape == ORDER)
			p = put_kv(p, "coupon", PICK(g, coupons));
		break;
	case VIDEO:
		PUTL(p, "\"session_id\":\"vs_");
		p = put_hex(p, next(g), 16);
		PUTL(p, "\",\"content_asset_id\":\"vid_");
		p = put_u_pad(p, item % 5000, 4);
		PUTL(p, "\",\"position\":0,\"total_length\":");
		p = gen_put_u(p, 30 + below(g, 600));
		PUTL(p, ",\"sound\":");
		p = gen_put_u(p, below(g, 101));
		PUTL(p, ",\"full_screen\":false,\"video_player\":\"html5\"");
		break;
	}
	*p++ = '}';
	return p;
}

static char *put_traits(struct gen *g, char *p, unsigned u)
{
	const char *first = first_names[u % ARRAY_LEN(first_names)];
	const char *last = last_names[(u / 32) % ARRAY_LEN(last_names)];

	PUTL(p, ",\"traits\":{\"email\":\"");
	p = put_email(p, u);
	PUTL(p, "\",\"phone\":\"");
	p = put_phone(p, u);
	PUTL(p, "\",\"firstName\":\"");
	*p++ = (char)(first[0] - 'a' + 'A');
	p = puts_(p, first + 1);
	PUTL(p, "\",\"lastName\":\"");
	*p++ = (char)(last[0] - 'a' + 'A');
	p = puts_(p, last + 1);
	*p++ = '"';
	p = put_kv(p, "plan", plans[u % ARRAY_LEN(plans)]);
	PUTL(p, ",\"createdAt\":\"");
	p = gen_put_iso(p, 1640995200000LL + (int64_t)(splitmix(u) % 70000000) * 1000);
	PUTL(p, "\",\"logins\":");
	p = gen_put_u(p, 1 + below(g, 200));
	*p++ = '}';
	return p;
}

size_t gen_event(struct gen *g, char *out, int64_t now_ms,
		 struct gen_event *ev)
{
	unsigned r = below(g, 100);
	uint64_t n = g->counter++;
	char *p = out;
	const struct page_def *page = NULL;
	int utm = 0;
	const char *referrer = "";
	unsigned track = 0;

	ev->kind = r < 60 ? GEN_TRACK : r < 85 ? GEN_IDENTIFY : GEN_PAGE;
	ev->user = below(g, g->users);
	ev->has_user_id = ev->kind == GEN_IDENTIFY || below(g, 10) < 7;
	ev->sent_at_ms = now_ms;
	ev->timestamp_ms = now_ms - below(g, 5000);
	ev->name = NULL;
	gen_message_id(g->run_id, n, ev->message_id);
	ev->message_id[36] = '\0';

	PUTL(p, "{\"type\":\"");
	if (ev->kind == GEN_TRACK) {
		track = below(g, ARRAY_LEN(track_events));
		ev->name = track_events[track].name;
		PUTL(p, "track\",\"event\":\"");
		p = puts_(p, ev->name);
	} else if (ev->kind == GEN_IDENTIFY) {
		PUTL(p, "identify");
	} else {
		page = &pages[below(g, ARRAY_LEN(pages))];
		referrer = PICK(g, referrers);
		utm = below(g, 4) == 0;
		ev->name = page->name;
		PUTL(p, "page\",\"name\":\"");
		p = puts_(p, ev->name);
	}
	*p++ = '"';
	if (ev->has_user_id) {
		PUTL(p, ",\"userId\":\"");
		p = put_user_id(p, ev->user);
		*p++ = '"';
	}
	PUTL(p, ",\"anonymousId\":\"");
	p = put_anonymous_id(p, ev->user);
	PUTL(p, "\",\"messageId\":\"");
	p = put(p, ev->message_id, 36);
	PUTL(p, "\",\"timestamp\":\"");
	p = gen_put_iso(p, ev->timestamp_ms);
	PUTL(p, "\",\"sentAt\":\"");
	p = gen_put_iso(p, ev->sent_at_ms);
	*p++ = '"';

	if (ev->kind == GEN_TRACK) {
		p = put_track_properties(g, p, track_events[track].shape);
	} else if (ev->kind == GEN_IDENTIFY) {
		p = put_traits(g, p, ev->user);
	} else {
		PUTL(p, ",\"properties\":{\"path\":\"");
		p = puts_(p, page->path);
		*p++ = '"';
		p = put_kv(p, "title", page->title);
		PUTL(p, ",\"url\":\"https://shop.northwind.example");
		p = puts_(p, page->path);
		PUTL(p, "\"}");
	}
	p = put_context(p, ev->user, page, referrer, utm);
	*p++ = '}';
	return (size_t)(p - out);
}

/* ---- the identifiers column ---- */

static char *put_id(char *p, int first, const char *type, unsigned u,
		    uint64_t salt)
{
	if (!first)
		*p++ = ',';
	PUTL(p, "{\"type\":\"");
	p = puts_(p, type);
	PUTL(p, "\",\"key\":\"");
	p = put_hex(p, splitmix(u ^ salt), 16);
	p = put_hex(p, splitmix(u ^ salt ^ 0x5a5a5a5aULL), 16);
	PUTL(p, "\",\"value\":\"");
	return p;
}

size_t gen_identifiers(const struct gen_event *ev, char *out)
{
	unsigned u = ev->user;
	char *p = out, digits[32], *q;
	int nd = 0;

	*p++ = '[';
	if (ev->has_user_id) {
		p = put_id(p, 1, "user_id", u, 0x75736572ULL);
		p = put_user_id(p, u);
		PUTL(p, "\"}");
	}
	p = put_id(p, !ev->has_user_id, "anonymous_id", u, 0x616e6f6eULL);
	p = put_anonymous_id(p, u);
	PUTL(p, "\"}");
	if (ev->kind == GEN_IDENTIFY) {
		/* Weft's default display: first character and domain. */
		p = put_id(p, 0, "email", u, 0x656d6169ULL);
		*p++ = first_names[u % ARRAY_LEN(first_names)][0];
		PUTL(p, "***@");
		p = puts_(p, email_domains[splitmix(u) % ARRAY_LEN(email_domains)]);
		PUTL(p, "\"}");
		/* And '+', the hidden digits as stars, the last four. */
		q = put_phone(digits, u);
		for (char *c = digits; c < q; c++)
			if (*c >= '0' && *c <= '9')
				digits[nd++] = *c;
		p = put_id(p, 0, "phone", u, 0x70686f6eULL);
		*p++ = '+';
		for (int i = 0; i < nd - 4; i++)
			*p++ = '*';
		p = put(p, digits + nd - 4, 4);
		PUTL(p, "\"}");
	}
	*p++ = ']';
	return (size_t)(p - out);
}
