/*
 * lookupgen: the client side of bench/lookup (docs/benchmarks.md). It
 * loads profiles into Weft, reads them back as fast as one thread can ask,
 * and times how soon a write becomes readable.
 *
 *   lookupgen load --target H:P --key WRITE --profiles N [--batch 500]
 *                  [--connections 4] [--run-id HEX]
 *       sends N identify calls (a userId, traits.email and ten small
 *       traits each, see put_identify) in POST /v1/batch requests, retrying
 *       a batch until it is acknowledged, and fails if any event is refused;
 *   lookupgen get --target H:P --key READ --space NAME --profiles N
 *                 [--connections 32] [--duration 10] [--warmup 2]
 *                 [--check-every 16]
 *       looks up random profiles' traits by user_id or email (one or the
 *       other at random) on keep-alive connections, one request in flight
 *       on each, and checks that every reply is a 200 and that every
 *       check-every-th one carries that profile's traits;
 *   lookupgen get --target H:P --path /healthz [...]
 *       the same loop on a fixed path, for the server's ceiling;
 *   lookupgen visibility --target H:P --key WRITE --read-key READ
 *                 --space NAME --profiles N [--duration 15]
 *       one identify at a time with a fresh trait value, then the traits
 *       endpoint polled until it shows it: the end-to-end visibility.
 *
 * load and get use one thread and epoll over non-blocking sockets;
 * visibility is a plain blocking loop. Latency is from the first byte of a
 * request written to the last byte of its reply read. The generator shares
 * the machine with Weft, so it reports its own CPU over the measured
 * window. The last line is "RESULT key=value ...".
 */
#define _GNU_SOURCE		/* memmem */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/gen.h"

#define MAX_STATUS 600
#define IDENTIFY_MAX 640	/* one generated identify, with room to spare */
#define REQ_HEAD_MAX 768	/* request line and headers */
#define NSEC 1000000000ULL

enum mode { MODE_LOAD, MODE_GET, MODE_VISIBILITY };

static struct {
	enum mode mode;
	char host[256], port[16];
	const char *key;	/* write key for load and visibility, read key for get */
	const char *read_key;	/* visibility: the key its lookups use */
	const char *space;	/* the workspace name in Segment paths */
	const char *path;	/* get: a fixed path instead of lookups */
	uint64_t profiles;
	unsigned batch, connections, check_every;
	double duration, warmup;
	uint64_t run_id;
} cfg = {
	.port = "8080", .batch = 500, .check_every = 16, .duration = 10, .warmup = 2,
};

static char auth_line[512];	/* "Authorization: Basic ...\r\n", or empty */
static char read_auth_line[512];
static struct sockaddr_storage peer;
static socklen_t peer_len;

/* "lookupgen: <message>" on stderr, and exit 1. */
#define die(...) errx(1, __VA_ARGS__)

static void *grow(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

/* A clock in nanoseconds: CLOCK_MONOTONIC, or this process's CPU time. */
static uint64_t ns_on(clockid_t which)
{
	struct timespec ts;

	clock_gettime(which, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

#define clock_ns() ns_on(CLOCK_MONOTONIC)
#define own_cpu() (ns_on(CLOCK_PROCESS_CPUTIME_ID) / 1e9)

/* xorshift64*: which profile the next lookup asks for. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* "Authorization: Basic base64(key:)\r\n", with OpenSSL's encoder. */
static void make_auth_line(char *out, size_t cap, const char *key)
{
	char cred[300];
	unsigned char b64[420];
	int n = snprintf(cred, sizeof(cred), "%s:", key);

	if (n < 0 || (size_t)n >= sizeof(cred))
		die("the key is too long");
	EVP_EncodeBlock(b64, (const unsigned char *)cred, n);
	if ((size_t)snprintf(out, cap, "Authorization: Basic %s\r\n", b64) >= cap)
		die("the key is too long");
}

/* ---- what the profiles hold: a pure function of their index ---- */

static const char *const plans[] = { "free", "starter", "pro", "enterprise" };
static const char *const tiers[] = { "bronze", "silver", "gold" };
static const char *const countries[] = { "FR", "DE", "US", "GB", "ES", "IT", "NL", "SE" };
static const char *const langs[] = { "fr", "de", "en", "en", "es", "it", "nl", "sv" };

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

static char *put_two(char *p, unsigned v)
{
	*p++ = (char)('0' + v / 10 % 10);
	*p++ = (char)('0' + v % 10);
	return p;
}

/*
 * Profile i's identify: userId "u-<i>", traits.email "user<i>@example.com"
 * and ten small traits (four short strings, a date, three numbers, two
 * booleans); about 330 bytes. The messageId depends only on (run id, i), so
 * a retried batch is deduplicated rather than applied twice.
 */
static char *put_identify(char *p, uint64_t i)
{
	char mid[36];

	gen_message_id(cfg.run_id, i, mid);
	p = put_str(p, "{\"type\":\"identify\",\"messageId\":\"");
	memcpy(p, mid, sizeof(mid));
	p += sizeof(mid);
	p = put_str(p, "\",\"userId\":\"u-");
	p = gen_put_u(p, i);
	p = put_str(p, "\",\"traits\":{\"email\":\"user");
	p = gen_put_u(p, i);
	p = put_str(p, "@example.com\",\"plan\":\"");
	p = put_str(p, plans[i % 4]);
	p = put_str(p, "\",\"tier\":\"");
	p = put_str(p, tiers[i / 4 % 3]);
	p = put_str(p, "\",\"country\":\"");
	p = put_str(p, countries[i % 8]);
	p = put_str(p, "\",\"lang\":\"");
	p = put_str(p, langs[i % 8]);
	p = put_str(p, "\",\"signup\":\"2024-");
	p = put_two(p, (unsigned)(1 + i % 12));
	*p++ = '-';
	p = put_two(p, (unsigned)(1 + i % 28));
	p = put_str(p, "\",\"age\":");
	p = gen_put_u(p, 18 + i % 60);
	p = put_str(p, ",\"score\":");
	p = gen_put_u(p, i % 100);
	*p++ = '.';
	p = gen_put_u(p, i % 10);
	p = put_str(p, i % 2 ? ",\"active\":true" : ",\"active\":false");
	p = put_str(p, i % 3 ? ",\"newsletter\":false" : ",\"newsletter\":true");
	p = put_str(p, ",\"n\":");
	p = gen_put_u(p, i);
	return put_str(p, "}}");
}

/* Does a traits reply carry profile i's traits? ("n" and "plan" suffice.) */
static bool traits_match(const char *body, size_t len, uint64_t i)
{
	char want[64], *e;
	const char *at;

	e = gen_put_u(put_str(want, "\"n\":"), i);
	at = memmem(body, len, want, (size_t)(e - want));
	if (!at || (at + (e - want) < body + len && at[e - want] >= '0' && at[e - want] <= '9'))
		return false;
	e = put_str(put_str(put_str(want, "\"plan\":\""), plans[i % 4]), "\"");
	return memmem(body, len, want, (size_t)(e - want)) != NULL;
}

/* The traits path of profile i, by user_id or by email. */
static char *put_traits_path(char *p, uint64_t i, bool by_email, const char *query)
{
	p = put_str(p, "/v1/spaces/");
	p = put_str(p, cfg.space);
	p = put_str(p, by_email ? "/collections/users/profiles/email:user" :
			 "/collections/users/profiles/user_id:u-");
	p = gen_put_u(p, i);
	if (by_email)
		p = put_str(p, "@example.com");
	p = put_str(p, "/traits");
	return put_str(p, query);
}

/* ---- replies ---- */

struct reply {
	int status;
	size_t head_len;	/* status line and headers, blank line included */
	size_t total;		/* head_len + Content-Length */
	bool closes;		/* Connection: close */
};

/* The value of a header in a reply's head, or NULL (names are case-blind). */
static const char *head_field(const char *head, size_t len, const char *name)
{
	size_t nl = strlen(name);
	const char *line = memchr(head, '\n', len), *end = head + len;

	while (line && ++line + nl + 1 < end) {
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			line += nl + 1;
			while (*line == ' ' || *line == '\t')
				line++;
			return line;
		}
		line = memchr(line, '\n', (size_t)(end - line));
	}
	return NULL;
}

/*
 * Reads the head of a reply at buf (len bytes, NUL-terminated); false while
 * it is incomplete. A reply without Content-Length is not one Weft sends.
 */
static bool reply_head(const char *buf, size_t len, struct reply *r)
{
	const char *blank = memmem(buf, len, "\r\n\r\n", 4), *v;

	if (!blank)
		return false;
	if (len < 12 || memcmp(buf, "HTTP/1.", 7))
		die("the server's reply is not HTTP/1.x: %.40s", buf);
	r->status = atoi(buf + 9);
	r->head_len = (size_t)(blank - buf) + 4;
	if (!(v = head_field(buf, r->head_len, "Content-Length")))
		die("a reply without Content-Length (status %d)", r->status);
	r->total = r->head_len + strtoul(v, NULL, 10);
	v = head_field(buf, r->head_len, "Connection");
	r->closes = v && strncasecmp(v, "close", 5) == 0;
	return true;
}

/* ---- connections ---- */

static void resolve(const char *target)
{
	const char *colon = strrchr(target, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int rc;

	if (!colon || colon == target || (size_t)(colon - target) >= sizeof(cfg.host) ||
	    !colon[1] || strlen(colon + 1) >= sizeof(cfg.port))
		die("--target wants HOST:PORT, not '%s'", target);
	memcpy(cfg.host, target, (size_t)(colon - target));
	cfg.host[colon - target] = '\0';
	strcpy(cfg.port, colon + 1);
	if ((rc = getaddrinfo(cfg.host, cfg.port, &hints, &ai)))
		die("cannot resolve '%s': %s", cfg.host, gai_strerror(rc));
	memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
	peer_len = ai->ai_addrlen;
	freeaddrinfo(ai);
}

/* A blocking connection with Nagle off; the caller may make it non-blocking. */
static int dial(void)
{
	int fd = socket(peer.ss_family, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&peer, peer_len))
		die("cannot connect to %s:%s: %s (is weft serving there?)", cfg.host, cfg.port,
		    strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Request head for method and path (path_len bytes), ending in the blank line. */
static char *put_request_head(char *p, const char *method, const char *path, size_t path_len,
			      const char *auth, const size_t *body_len)
{
	p = put_str(p, method);
	*p++ = ' ';
	memcpy(p, path, path_len);
	p += path_len;
	p = put_str(p, " HTTP/1.1\r\nHost: ");
	p = put_str(p, cfg.host);
	*p++ = ':';
	p = put_str(p, cfg.port);
	p = put_str(p, "\r\nUser-Agent: weft-bench-lookupgen\r\n");
	p = put_str(p, auth);
	if (body_len) {
		p = put_str(p, "Content-Type: application/json\r\nContent-Length: ");
		p = gen_put_u(p, *body_len);
		p = put_str(p, "\r\n");
	}
	return put_str(p, "\r\n");
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The q-quantile of n sorted latencies, in milliseconds. */
static double quantile_ms(const uint32_t *us, size_t n, double q)
{
	return n ? us[(size_t)(q * (double)(n - 1) + 0.5)] / 1000.0 : 0;
}

struct samples {
	uint32_t *us;
	size_t n, cap;
};

static void samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8192;
		s->us = grow(s->us, s->cap * sizeof(*s->us));
	}
	s->us[s->n++] = (uint32_t)(ns / 1000);
}

/* "404:3,503:1", or "none". */
static void format_statuses(const uint64_t *status, char *out, size_t cap)
{
	size_t used = 0;

	strcpy(out, "none");
	for (int s = 0; s < MAX_STATUS && used + 24 < cap; s++)
		if (s != 200 && status[s])
			used += (size_t)snprintf(out + used, cap - used, "%s%d:%llu",
						 used ? "," : "", s, (unsigned long long)status[s]);
}

/* ---- the epoll loop of load and get ---- */

/* One connection, with at most one request in flight. */
struct link {
	int fd;
	bool watching_out;	/* EPOLLOUT is asked for: the request is not all written */
	bool busy;		/* a request is in flight */
	char *out;		/* the request */
	size_t out_len, out_done, out_cap;
	char *in;		/* the reply so far, NUL-terminated */
	size_t in_len, in_cap;
	struct reply r;		/* r.total stays 0 until the head is read */
	uint64_t sent_ns;
	uint64_t again_ns;	/* load: a refused batch goes again at this time; 0: none */
	uint64_t what;		/* load: the batch; get: the profile */
};

static int ep;

static struct {
	uint64_t replies, status[MAX_STATUS];
	uint64_t window_ok;	/* 200s completed inside the measured window */
	uint64_t checked, check_failed, reconnects, resent;
	struct samples lat;	/* latencies of the window's 200s */
	char first_bad[240];	/* the first unexpected reply, for the report */
} tally;

/* get: the run's clock, warm-up until window_ns, measured until end_ns. */
static uint64_t window_ns, end_ns;
static bool stopping;
static char *fixed_request;	/* get --path: the same request every time */
static size_t fixed_len;

/* load: batches handed out and batches acknowledged. */
static uint64_t nbatches, next_batch, batches_done;

static void link_want_out(struct link *l, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.ptr = l };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, l->fd, &ev))
		die("epoll_ctl: %s", strerror(errno));
	l->watching_out = out;
}

static void link_connect(struct link *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };

	l->fd = dial();
	if (fcntl(l->fd, F_SETFL, O_NONBLOCK))
		die("fcntl: %s", strerror(errno));
	if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev))
		die("epoll_ctl: %s", strerror(errno));
	l->watching_out = false;
}

static void link_flush(struct link *l);

/* Starts writing the request in l->out. */
static void link_send(struct link *l)
{
	l->busy = true;
	l->out_done = l->in_len = l->r.total = 0;
	l->sent_ns = clock_ns();
	link_flush(l);
}

/*
 * The server closed the connection: open another and send the request in
 * flight again (a load batch is deduplicated by its messageIds).
 */
static void link_reconnect(struct link *l)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, NULL);
	close(l->fd);
	tally.reconnects++;
	link_connect(l);
	if (l->busy) {
		tally.resent++;
		link_send(l);
	}
}

/* Writes what the socket takes now; the rest waits for EPOLLOUT. */
static void link_flush(struct link *l)
{
	while (l->out_done < l->out_len) {
		ssize_t n = send(l->fd, l->out + l->out_done, l->out_len - l->out_done,
				 MSG_NOSIGNAL);

		if (n >= 0) {
			l->out_done += (size_t)n;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (!l->watching_out)
				link_want_out(l, true);
			return;
		} else if (errno != EINTR) {
			link_reconnect(l);
			return;
		}
	}
	if (l->watching_out)
		link_want_out(l, false);
}

static void out_reserve(struct link *l, size_t n)
{
	if (l->out_cap < n) {
		l->out_cap = n;
		l->out = grow(l->out, n);
	}
}

/* load: batch b holds the profiles [b * batch, (b + 1) * batch) below profiles. */
static void fill_batch(struct link *l, uint64_t b)
{
	static const char path[] = "/v1/batch";
	uint64_t first = b * cfg.batch, last = first + cfg.batch;
	char *body, *p;
	size_t body_len;

	if (last > cfg.profiles)
		last = cfg.profiles;
	out_reserve(l, REQ_HEAD_MAX + 16 + (size_t)(last - first) * IDENTIFY_MAX);
	/* The body goes after room for the head, which is then written and the body moved to it. */
	body = p = l->out + REQ_HEAD_MAX;
	p = put_str(p, "{\"batch\":[");
	for (uint64_t i = first; i < last; i++) {
		if (i > first)
			*p++ = ',';
		p = put_identify(p, i);
	}
	p = put_str(p, "]}");
	body_len = (size_t)(p - body);
	p = put_request_head(l->out, "POST", path, sizeof(path) - 1, auth_line, &body_len);
	memmove(p, body, body_len);
	l->out_len = (size_t)(p - l->out) + body_len;
	l->what = b;
}

/* get: a lookup of a random profile, by user_id or by email. */
static void fill_lookup(struct link *l)
{
	char path[400];
	uint64_t r = rng_next();
	size_t n;

	if (fixed_request) {
		out_reserve(l, fixed_len);
		memcpy(l->out, fixed_request, fixed_len);
		l->out_len = fixed_len;
		return;
	}
	l->what = (r >> 1) % cfg.profiles;
	/* All eleven traits in one page (the default page is ten). */
	n = (size_t)(put_traits_path(path, l->what, r & 1, "?limit=20") - path);
	out_reserve(l, REQ_HEAD_MAX + sizeof(path));
	l->out_len = (size_t)(put_request_head(l->out, "GET", path, n, auth_line, NULL) - l->out);
}

static void note_bad(const struct link *l, const char *why)
{
	if (tally.first_bad[0])
		return;
	snprintf(tally.first_bad, sizeof(tally.first_bad), "%s: profile %llu, HTTP %d: %.150s",
		 why, (unsigned long long)l->what, l->r.status, l->in + l->r.head_len);
}

/* load: the next batch, if one is left. */
static void load_next(struct link *l)
{
	l->busy = false;
	if (next_batch < nbatches) {
		fill_batch(l, next_batch++);
		link_send(l);
	}
}

static void on_reply(struct link *l, uint64_t now)
{
	const char *body = l->in + l->r.head_len;
	size_t body_len = l->r.total - l->r.head_len;
	int st = l->r.status > 0 && l->r.status < MAX_STATUS ? l->r.status : 0;

	tally.replies++;
	tally.status[st]++;
	if (cfg.mode == MODE_LOAD) {
		if (st == 200 && memmem(body, body_len, "\"rejected\"", 10))
			die("Weft refused events of batch %llu: %.300s",
			    (unsigned long long)l->what, body);
		if (st == 401 || st == 403)
			die("Weft refused the write key (HTTP %d): %.200s", st, body);
		if (st == 200) {
			batches_done++;
			load_next(l);
		} else {
			/* Overloaded or unavailable: the same batch again a little later. */
			l->busy = false;
			l->again_ns = now + NSEC / 10;
		}
		return;
	}
	if (st != 200) {
		note_bad(l, "not a 200");
	} else {
		if (now >= window_ns && now < end_ns) {
			tally.window_ok++;
			samples_add(&tally.lat, now - l->sent_ns);
		}
		if (!fixed_request && cfg.check_every && tally.replies % cfg.check_every == 0) {
			tally.checked++;
			if (!traits_match(body, body_len, l->what)) {
				tally.check_failed++;
				note_bad(l, "not the profile's traits");
			}
		}
	}
	l->busy = false;
	if (!stopping) {
		fill_lookup(l);
		link_send(l);
	}
}

/* Reads what arrived; a complete reply goes to on_reply. */
static void link_read(struct link *l)
{
	for (;;) {
		ssize_t n;

		if (l->in_cap - l->in_len < 8192) {
			l->in_cap = l->in_cap ? 2 * l->in_cap : 65536;
			l->in = grow(l->in, l->in_cap);
		}
		n = recv(l->fd, l->in + l->in_len, l->in_cap - l->in_len - 1, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || !l->busy) {
			/* Closed (idle timeout, or an error): nothing else is expected here. */
			link_reconnect(l);
			return;
		}
		l->in_len += (size_t)n;
		l->in[l->in_len] = '\0';
		if (!l->r.total && !reply_head(l->in, l->in_len, &l->r))
			continue;
		if (l->in_len >= l->r.total) {
			bool closes = l->r.closes;

			on_reply(l, clock_ns());
			if (closes) {
				bool busy = l->busy;

				/* The next request, if any, goes on a new connection. */
				l->busy = false;
				link_reconnect(l);
				if (busy)
					link_send(l);
			}
			return;
		}
	}
}

static void usage(FILE *f)
{
	fputs("usage: lookupgen load --target H:P --key WRITE --profiles N [--batch 500]\n"
	      "                      [--connections 4] [--run-id HEX]\n"
	      "       lookupgen get --target H:P --key READ --space NAME --profiles N\n"
	      "                     [--connections 32] [--duration 10] [--warmup 2]\n"
	      "                     [--check-every 16]\n"
	      "       lookupgen get --target H:P --path /healthz [...]\n"
	      "       lookupgen visibility --target H:P --key WRITE --read-key READ\n"
	      "                     --space NAME --profiles N [--duration 15]\n", f);
}

/* Runs the load or get loop on cfg.connections links until it is done. */
static void run_links(void)
{
	struct link *links = calloc(cfg.connections, sizeof(*links));
	struct epoll_event evs[64];
	double cpu0 = own_cpu(), cpu1 = 0;
	bool in_window = false;
	uint64_t t0, t1, last_progress;
	char statuses[256];

	if (!links)
		die("out of memory");
	if ((ep = epoll_create1(0)) < 0)
		die("epoll_create1: %s", strerror(errno));
	nbatches = (cfg.profiles + cfg.batch - 1) / cfg.batch;
	t0 = last_progress = clock_ns();
	window_ns = t0 + (uint64_t)(cfg.warmup * 1e9);
	end_ns = window_ns + (uint64_t)(cfg.duration * 1e9);
	for (unsigned i = 0; i < cfg.connections; i++) {
		struct link *l = &links[i];

		link_connect(l);
		if (cfg.mode == MODE_LOAD) {
			load_next(l);
		} else {
			fill_lookup(l);
			link_send(l);
		}
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 64, 5);
		uint64_t now, replies = tally.replies;
		bool idle = true;

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct link *l = evs[i].data.ptr;

			if ((evs[i].events & EPOLLOUT) && l->busy)
				link_flush(l);
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				link_read(l);
		}
		now = clock_ns();
		if (tally.replies != replies)
			last_progress = now;
		if (cfg.mode == MODE_GET && !in_window && now >= window_ns) {
			in_window = true;
			cpu0 = own_cpu();
		}
		if (cfg.mode == MODE_GET && !stopping && now >= end_ns) {
			stopping = true;
			cpu1 = own_cpu();
		}
		for (unsigned i = 0; i < cfg.connections; i++) {
			struct link *l = &links[i];

			if (l->again_ns && now >= l->again_ns) {
				l->again_ns = 0;
				link_send(l);
			}
			if (l->busy || l->again_ns)
				idle = false;
		}
		if (cfg.mode == MODE_LOAD && batches_done == nbatches)
			break;
		if (cfg.mode == MODE_GET && stopping && (idle || now > end_ns + 5 * NSEC))
			break;
		if (now - last_progress > 30 * NSEC)
			die("no reply for 30 s (%llu so far); is weft serving on %s:%s?",
			    (unsigned long long)tally.replies, cfg.host, cfg.port);
	}
	t1 = clock_ns();
	format_statuses(tally.status, statuses, sizeof(statuses));
	if (cfg.mode == MODE_LOAD) {
		double secs = (double)(t1 - t0) / 1e9;

		fprintf(stderr, "lookupgen: %llu profiles in %.1f s (%.0f events/s), %llu requests, "
			"non-200 %s, reconnects %llu (%llu requests sent again)\n",
			(unsigned long long)cfg.profiles, secs, (double)cfg.profiles / secs,
			(unsigned long long)tally.replies, statuses,
			(unsigned long long)tally.reconnects, (unsigned long long)tally.resent);
		printf("RESULT profiles=%llu seconds=%.2f events_s=%.0f requests=%llu statuses=%s "
		       "reconnects=%llu cpu_pct=%.1f\n", (unsigned long long)cfg.profiles, secs,
		       (double)cfg.profiles / secs, (unsigned long long)tally.replies, statuses,
		       (unsigned long long)tally.reconnects, 100 * (own_cpu() - cpu0) / secs);
		return;
	}
	qsort(tally.lat.us, tally.lat.n, sizeof(*tally.lat.us), cmp_u32);
	{
		double req_s = (double)tally.window_ok / cfg.duration;
		double p50 = quantile_ms(tally.lat.us, tally.lat.n, 0.50);
		double p99 = quantile_ms(tally.lat.us, tally.lat.n, 0.99);
		double max = quantile_ms(tally.lat.us, tally.lat.n, 1.0);
		uint64_t non200 = tally.replies - tally.status[200];
		/* Over the measured window only. */
		double cpu_pct = 100 * (cpu1 - cpu0) / cfg.duration;

		fprintf(stderr, "lookupgen: %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, "
			"%llu replies, non-200 %s, %llu checked (%llu wrong), reconnects %llu, "
			"own CPU %.1f%% of a core\n", fixed_request ? cfg.path : "traits lookups",
			req_s, p50, p99, max, (unsigned long long)tally.replies, statuses,
			(unsigned long long)tally.checked, (unsigned long long)tally.check_failed,
			(unsigned long long)tally.reconnects, cpu_pct);
		printf("RESULT req_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.2f replies=%llu "
		       "non200=%llu statuses=%s checked=%llu check_failed=%llu reconnects=%llu "
		       "cpu_pct=%.1f\n", req_s, p50, p99, max, (unsigned long long)tally.replies,
		       (unsigned long long)non200, statuses, (unsigned long long)tally.checked,
		       (unsigned long long)tally.check_failed, (unsigned long long)tally.reconnects,
		       cpu_pct);
		fflush(stdout);
		if (non200 || tally.check_failed)
			die("%s", tally.first_bad);
		if (!tally.window_ok)
			die("no reply in the measured window");
	}
}

/* ---- visibility: blocking, one write and its polls at a time ---- */

/*
 * Sends req on *fd and reads the whole reply into *buf (grown as needed);
 * reconnects once if the server had closed the connection.
 */
static void roundtrip(int *fd, const char *req, size_t len, char **buf, size_t *cap,
		      struct reply *r)
{
	for (int attempt = 0;; attempt++) {
		size_t have = 0, done = 0;
		bool lost = false;

		while (done < len && !lost) {
			ssize_t n = send(*fd, req + done, len - done, MSG_NOSIGNAL);

			if (n < 0 && errno != EINTR)
				lost = true;
			else if (n > 0)
				done += (size_t)n;
		}
		r->total = 0;
		while (!lost && (!r->total || have < r->total)) {
			ssize_t n;

			if (*cap - have < 4096)
				*buf = grow(*buf, *cap = *cap ? 2 * *cap : 65536);
			n = recv(*fd, *buf + have, *cap - have - 1, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				lost = true;
				break;
			}
			have += (size_t)n;
			(*buf)[have] = '\0';
			if (!r->total)
				reply_head(*buf, have, r);
		}
		if (!lost) {
			if (r->closes) {
				close(*fd);
				*fd = dial();
			}
			return;
		}
		if (attempt)
			die("the connection to %s:%s was lost twice in a row", cfg.host, cfg.port);
		close(*fd);
		*fd = dial();
	}
}

static void run_visibility(void)
{
	int wfd = dial(), rfd = dial();
	char req[2048], body[512], path[400], want[64];
	char *buf = NULL;
	size_t cap = 0;
	struct samples ack = { 0 }, visible = { 0 }, after = { 0 };
	uint64_t t_end = clock_ns() + (uint64_t)(cfg.duration * 1e9), polls = 0, timeouts = 0;
	uint64_t start = rng_next() % cfg.profiles;
	struct reply r;

	for (uint64_t k = 1; clock_ns() < t_end; k++) {
		uint64_t i = (start + k * 7919) % cfg.profiles, t0, t1, t2;
		char mid[36], *p, *w;
		size_t body_len, req_len, path_len, want_len;
		const struct timespec nap = { .tv_nsec = 500000 };

		/* A value no earlier write carried: "v<run>-<k>". */
		w = put_str(want, "\"probe\":\"v");
		w = gen_put_u(w, cfg.run_id & 0xffffff);
		*w++ = '-';
		w = gen_put_u(w, k);
		*w++ = '"';
		want_len = (size_t)(w - want);
		gen_message_id(cfg.run_id ^ 0x7669736962ULL, k, mid);
		p = put_str(body, "{\"messageId\":\"");
		memcpy(p, mid, sizeof(mid));
		p = put_str(p + sizeof(mid), "\",\"userId\":\"u-");
		p = gen_put_u(p, i);
		p = put_str(p, "\",\"traits\":{");
		memcpy(p, want, want_len);
		p = put_str(p + want_len, "}}");
		body_len = (size_t)(p - body);
		p = put_request_head(req, "POST", "/v1/identify", 12, auth_line, &body_len);
		memcpy(p, body, body_len);
		req_len = (size_t)(p - req) + body_len;

		t0 = clock_ns();
		roundtrip(&wfd, req, req_len, &buf, &cap, &r);
		t1 = clock_ns();
		if (r.status != 200)
			die("POST /v1/identify answered %d: %.200s", r.status, buf + r.head_len);
		path_len = (size_t)(put_traits_path(path, i, false, "?include=probe") - path);
		req_len = (size_t)(put_request_head(req, "GET", path, path_len, read_auth_line,
						    NULL) - req);
		for (;;) {
			roundtrip(&rfd, req, req_len, &buf, &cap, &r);
			polls++;
			t2 = clock_ns();
			if (r.status == 200 && memmem(buf + r.head_len, r.total - r.head_len, want,
						      want_len))
				break;
			if (r.status != 200 && r.status != 404)
				die("the traits lookup answered %d: %.200s", r.status,
				    buf + r.head_len);
			if (t2 - t1 > 10 * NSEC) {
				timeouts++;
				break;
			}
			nanosleep(&nap, NULL);
		}
		samples_add(&ack, t1 - t0);
		samples_add(&visible, t2 - t0);
		samples_add(&after, t2 - t1);
	}
	qsort(ack.us, ack.n, sizeof(*ack.us), cmp_u32);
	qsort(visible.us, visible.n, sizeof(*visible.us), cmp_u32);
	qsort(after.us, after.n, sizeof(*after.us), cmp_u32);
	fprintf(stderr, "lookupgen: %zu writes: acknowledged p50 %.1f ms p99 %.1f ms; readable "
		"p50 %.1f ms p99 %.1f ms max %.1f ms after the write was sent (%.1f / %.1f ms after "
		"its 200); %llu polls, %llu not readable within 10 s\n", visible.n,
		quantile_ms(ack.us, ack.n, 0.5), quantile_ms(ack.us, ack.n, 0.99),
		quantile_ms(visible.us, visible.n, 0.5), quantile_ms(visible.us, visible.n, 0.99),
		quantile_ms(visible.us, visible.n, 1), quantile_ms(after.us, after.n, 0.5),
		quantile_ms(after.us, after.n, 0.99), (unsigned long long)polls,
		(unsigned long long)timeouts);
	printf("RESULT samples=%zu ack_p50_ms=%.2f ack_p99_ms=%.2f visible_p50_ms=%.2f "
	       "visible_p99_ms=%.2f visible_max_ms=%.2f after_ack_p50_ms=%.2f after_ack_p99_ms=%.2f "
	       "polls=%llu timeouts=%llu\n", visible.n, quantile_ms(ack.us, ack.n, 0.5),
	       quantile_ms(ack.us, ack.n, 0.99), quantile_ms(visible.us, visible.n, 0.5),
	       quantile_ms(visible.us, visible.n, 0.99), quantile_ms(visible.us, visible.n, 1),
	       quantile_ms(after.us, after.n, 0.5), quantile_ms(after.us, after.n, 0.99),
	       (unsigned long long)polls, (unsigned long long)timeouts);
	close(wfd);
	close(rfd);
	free(buf);
}

/* ---- arguments ---- */

static double number(const char *name, const char *v, double min)
{
	char *end;
	double d = strtod(v, &end);

	if (end == v || *end || !(d >= min))
		die("--%s wants a number of at least %g, not '%s'", name, min, v);
	return d;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "read-key", required_argument, NULL, 'K' },
		{ "space", required_argument, NULL, 's' },
		{ "path", required_argument, NULL, 'p' },
		{ "profiles", required_argument, NULL, 'n' },
		{ "batch", required_argument, NULL, 'b' },
		{ "connections", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "check-every", required_argument, NULL, 'e' },
		{ "run-id", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *target = NULL;
	bool conns_set = false;
	int o;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		exit(argc < 2 ? 2 : 0);
	}
	if (!strcmp(argv[1], "load"))
		cfg.mode = MODE_LOAD;
	else if (!strcmp(argv[1], "get"))
		cfg.mode = MODE_GET;
	else if (!strcmp(argv[1], "visibility"))
		cfg.mode = MODE_VISIBILITY;
	else
		die("unknown mode '%s' (load, get or visibility)", argv[1]);
	while ((o = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
		switch (o) {
		case 't': target = optarg; break;
		case 'k': cfg.key = optarg; break;
		case 'K': cfg.read_key = optarg; break;
		case 's': cfg.space = optarg; break;
		case 'p': cfg.path = optarg; break;
		case 'n': cfg.profiles = (uint64_t)number("profiles", optarg, 1); break;
		case 'b': cfg.batch = (unsigned)number("batch", optarg, 1); break;
		case 'c': cfg.connections = (unsigned)number("connections", optarg, 1);
			conns_set = true; break;
		case 'd': cfg.duration = number("duration", optarg, 0.1); break;
		case 'w': cfg.warmup = number("warmup", optarg, 0); break;
		case 'e': cfg.check_every = (unsigned)number("check-every", optarg, 0); break;
		case 'r': cfg.run_id = strtoull(optarg, NULL, 16); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		exit(2);
	}
	if (!target)
		die("--target HOST:PORT is needed");
	resolve(target);
	if (!conns_set)
		cfg.connections = cfg.mode == MODE_LOAD ? 4 : 32;
	if (cfg.batch > 2500)
		die("--batch: Weft takes at most 2500 events per batch");
	if (!cfg.path && (!cfg.profiles || (cfg.mode != MODE_LOAD && !cfg.space)))
		die("--profiles%s is needed", cfg.mode == MODE_LOAD ? "" : " and --space");
	if (cfg.space && strlen(cfg.space) > 63)
		die("--space is too long");
	if (cfg.key && *cfg.key)
		make_auth_line(auth_line, sizeof(auth_line), cfg.key);
	else if (cfg.mode != MODE_GET || !cfg.path)
		die("--key is needed");
	if (cfg.mode == MODE_VISIBILITY) {
		if (!cfg.read_key || !*cfg.read_key)
			die("--read-key is needed");
		make_auth_line(read_auth_line, sizeof(read_auth_line), cfg.read_key);
	}
	if (cfg.path) {
		if (cfg.mode != MODE_GET || strlen(cfg.path) > 300 || cfg.path[0] != '/')
			die("--path is for get, and must be an absolute path");
		fixed_request = grow(NULL, REQ_HEAD_MAX + 400);
		fixed_len = (size_t)(put_request_head(fixed_request, "GET", cfg.path,
						      strlen(cfg.path), auth_line, NULL) -
				     fixed_request);
	}
	if (!cfg.run_id)
		cfg.run_id = gen_random_seed();
	rng_state = gen_random_seed() | 1;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	parse_args(argc, argv);
	if (cfg.mode == MODE_VISIBILITY)
		run_visibility();
	else
		run_links();
	return 0;
}
