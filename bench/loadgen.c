/*
 * loadgen: drives POST /v1/batch the way a fleet of Segment SDKs would, and
 * counts only what Weft acknowledged as durable.
 *
 * One thread, raw epoll (edge-triggered), N keep-alive connections, each
 * with one request in flight at a time: send a batch, wait for the reply,
 * send the next. The first seconds are a warm-up whose replies are not
 * counted; then replies are counted for a fixed window; then no new request
 * is sent and the ones in flight are awaited. Only 200 replies count as
 * durable events (Weft answers 200 only after the COMMIT).
 *
 * The generator shares the machine with Weft and PostgreSQL, so it reports
 * its own CPU time: the figure is only meaningful while that stays small.
 *
 *   loadgen --target 127.0.0.1:8080 --key WRITE_KEY [--connections 16]
 *           [--duration 20] [--warmup 3] [--events 100] [--users 100000]
 *   loadgen --sample 5      print five events and the mean event size
 *
 * The last line is machine-readable: "RESULT key=value ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/gen.h"

#define HEADER_ROOM 512		/* bytes reserved before the body for headers */
#define MAX_STATUS 600

enum conn_state {
	CONN_IDLE,		/* no socket; reconnect at retry_ns */
	CONN_CONNECTING,
	CONN_SENDING,
	CONN_READING,
	CONN_PAUSED,		/* connected; next request at retry_ns */
};

struct conn {
	int fd;
	enum conn_state state;
	char *req;		/* HEADER_ROOM, then the body */
	size_t req_start, req_end, req_off;
	char *resp;
	size_t resp_len, resp_cap;
	size_t header_len;	/* 0 until the reply's headers are complete */
	size_t total_len;	/* headers + Content-Length */
	unsigned nevents;	/* events in the request in flight */
	uint64_t sent_ns;	/* when its first byte was written */
	uint64_t retry_ns;	/* reconnect or send again not before this */
};

struct opts {
	char host[256];
	char port[16];
	const char *key;
	unsigned connections;
	double duration;
	double warmup;
	unsigned events;
	unsigned users;
	uint64_t run_id;
	double drain;
	unsigned sample;
};

struct stats {
	uint64_t requests;		/* replies of any status, whole run */
	uint64_t acked_events;		/* events in 200 replies, whole run */
	uint64_t sent_events;		/* events in requests written, whole run */
	uint64_t rejected_events;	/* refused inside a 200 batch */
	uint64_t window_requests;	/* 200 replies inside the window */
	uint64_t window_events;
	uint64_t status[MAX_STATUS];	/* replies by status, whole run */
	uint64_t conn_errors;		/* connections lost or refused */
	uint64_t body_bytes;		/* event bytes generated */
	uint64_t built_events;
	uint32_t *lat_us;		/* latencies of window requests */
	size_t nlat, lat_cap;
};

static struct opts opt = {
	.host = "127.0.0.1", .port = "8080", .connections = 16, .duration = 20,
	.warmup = 3, .events = 100, .users = 100000, .drain = 30,
};
static struct stats st;
static struct gen gen;
static char header_prefix[512];
static size_t header_prefix_len;
static struct sockaddr_storage target_addr;
static socklen_t target_addrlen;
static int epfd;
static uint64_t t_start, t_window, t_end;
static bool in_window, stopping;
static uint64_t last_ok_ns;
static bool connected_once;		/* some connection has been established */
static char last_error[128] = "no reply";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		die("out of memory");
	return p;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void base64(const char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16 |
			     (uint32_t)(unsigned char)in[i + 1] << 8 |
			     (unsigned char)in[i + 2];

		*out++ = tab[v >> 18];
		*out++ = tab[(v >> 12) & 63];
		*out++ = tab[(v >> 6) & 63];
		*out++ = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		*out++ = tab[v >> 18];
		*out++ = tab[(v >> 12) & 63];
		*out++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*out++ = '=';
	}
	*out = '\0';
}

/* ---- requests ---- */

/* Builds the next batch into c->req, headers placed just before the body. */
static void build_request(struct conn *c)
{
	char *body = c->req + HEADER_ROOM, *p = body;
	int64_t now = real_ms();
	struct gen_event ev;
	char len[24], *e;

	memcpy(p, "{\"batch\":[", 10);
	p += 10;
	for (unsigned i = 0; i < opt.events; i++) {
		size_t n;

		if (i)
			*p++ = ',';
		n = gen_event(&gen, p, now, &ev);
		p += n;
		st.body_bytes += n;
	}
	st.built_events += opt.events;
	memcpy(p, "]}", 2);
	p += 2;

	e = gen_put_u(len, (size_t)(p - body));
	memcpy(e, "\r\n\r\n", 4);
	e += 4;
	size_t hlen = header_prefix_len + (size_t)(e - len);

	c->req_start = HEADER_ROOM - hlen;
	memcpy(c->req + c->req_start, header_prefix, header_prefix_len);
	memcpy(c->req + c->req_start + header_prefix_len, len, (size_t)(e - len));
	c->req_end = (size_t)(p - c->req);
	c->req_off = c->req_start;
	c->nevents = opt.events;
	c->resp_len = c->header_len = c->total_len = 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = CONN_IDLE;
}

static void conn_open(struct conn *c)
{
	int fd = socket(target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1;
	struct epoll_event ee = { .events = EPOLLIN | EPOLLOUT | EPOLLET };

	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	ee.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ee))
		die("epoll_ctl: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&target_addr, target_addrlen) == 0 ||
	    errno == EINPROGRESS) {
		c->state = CONN_CONNECTING;
		return;
	}
	die("cannot connect to %s:%s: %s", opt.host, opt.port, strerror(errno));
}

/* A connection broke: count it, and reconnect a little later. */
static void conn_fail(struct conn *c, const char *why)
{
	snprintf(last_error, sizeof(last_error), "%s", why);
	st.conn_errors++;
	conn_close(c);
	c->retry_ns = mono_ns() + 100000000ULL;
}

/* Writes what the socket takes; false when the connection broke. */
static bool conn_write(struct conn *c)
{
	while (c->req_off < c->req_end) {
		ssize_t n = send(c->fd, c->req + c->req_off, c->req_end - c->req_off,
				 MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			if (errno == EINTR)
				continue;
			conn_fail(c, strerror(errno));
			return false;
		}
		c->req_off += (size_t)n;
	}
	c->state = CONN_READING;
	return true;
}

static void conn_start_request(struct conn *c)
{
	build_request(c);
	c->state = CONN_SENDING;
	c->sent_ns = mono_ns();
	st.sent_events += c->nevents;
	conn_write(c);
}

/* Finds a header's value in the reply's header block (case-insensitive). */
static const char *find_header(const char *h, size_t len, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = h; p + nl + 2 < h + len; p++) {
		if ((p == h || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 &&
		    p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ')
				p++;
			return p;
		}
	}
	return NULL;
}

static size_t count_occurrences(const char *s, size_t len, const char *what)
{
	size_t n = 0, wl = strlen(what);

	for (const char *p = s; p + wl <= s + len; p++)
		if (memcmp(p, what, wl) == 0)
			n++;
	return n;
}

/* A whole reply is in c->resp: account for it. */
static void conn_reply(struct conn *c, uint64_t now)
{
	int status = atoi(c->resp + 9);
	const char *conn_hdr = find_header(c->resp, c->header_len, "Connection");
	bool close_after = conn_hdr && strncasecmp(conn_hdr, "close", 5) == 0;

	st.requests++;
	st.status[status > 0 && status < MAX_STATUS ? status : 0]++;
	if (status == 200) {
		/* A 200 may still list events refused inside the batch. */
		size_t rejected = count_occurrences(c->resp + c->header_len,
						    c->total_len - c->header_len,
						    "\"index\":");

		if (rejected > c->nevents)
			rejected = c->nevents;
		st.rejected_events += rejected;
		st.acked_events += c->nevents - rejected;
		last_ok_ns = now;
		if (in_window && now <= t_end) {
			st.window_requests++;
			st.window_events += c->nevents - rejected;
			if (st.nlat == st.lat_cap) {
				st.lat_cap = st.lat_cap ? st.lat_cap * 2 : 4096;
				st.lat_us = realloc(st.lat_us, st.lat_cap * sizeof(*st.lat_us));
				if (!st.lat_us)
					die("out of memory");
			}
			st.lat_us[st.nlat++] = (uint32_t)((now - c->sent_ns) / 1000);
		}
	} else if (status == 401 || status == 403) {
		die("Weft refused the write key (HTTP %d): %.*s", status,
		    (int)(c->total_len - c->header_len), c->resp + c->header_len);
	}
	if (stopping || close_after) {
		conn_close(c);
		c->retry_ns = 0;
		return;
	}
	if (status != 200) {
		/* As an SDK would: back off a little instead of hammering. */
		c->state = CONN_PAUSED;
		c->retry_ns = now + 100000000ULL;
		return;
	}
	conn_start_request(c);
}

static void conn_read(struct conn *c)
{
	for (;;) {
		if (c->resp_cap - c->resp_len < 4096) {
			c->resp_cap *= 2;
			c->resp = realloc(c->resp, c->resp_cap);
			if (!c->resp)
				die("out of memory");
		}
		ssize_t n = recv(c->fd, c->resp + c->resp_len,
				 c->resp_cap - c->resp_len - 1, 0);

		if (n == 0) {
			conn_fail(c, "closed by the server");
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_fail(c, strerror(errno));
			return;
		}
		if (c->state != CONN_READING) {
			/* A reply before the request was fully sent (413, 503). */
			c->state = CONN_READING;
		}
		c->resp_len += (size_t)n;
		c->resp[c->resp_len] = '\0';
		if (!c->header_len) {
			char *end = strstr(c->resp, "\r\n\r\n");

			if (!end)
				continue;
			if (strncmp(c->resp, "HTTP/1.", 7) != 0) {
				conn_fail(c, "the reply is not HTTP/1.x");
				return;
			}
			c->header_len = (size_t)(end - c->resp) + 4;
			const char *cl = find_header(c->resp, c->header_len,
						     "Content-Length");

			c->total_len = c->header_len + (cl ? strtoul(cl, NULL, 10) : 0);
		}
		if (c->resp_len >= c->total_len) {
			conn_reply(c, mono_ns());
			return;
		}
	}
}

static void conn_event(struct conn *c, uint32_t events)
{
	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_fail(c, strerror(err));
			return;
		}
		connected_once = true;
		if (stopping) {
			conn_close(c);
			return;
		}
		conn_start_request(c);
		return;
	}
	if ((events & EPOLLOUT) && c->state == CONN_SENDING && !conn_write(c))
		return;
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->fd >= 0 &&
	    (c->state == CONN_READING || c->state == CONN_SENDING))
		conn_read(c);
}

/* ---- setup and report ---- */

static void resolve_target(void)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int rc = getaddrinfo(opt.host, opt.port, &hints, &ai);

	if (rc)
		die("cannot resolve '%s': %s", opt.host, gai_strerror(rc));
	memcpy(&target_addr, ai->ai_addr, ai->ai_addrlen);
	target_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
}

static void build_header_prefix(void)
{
	char cred[300], b64[420];
	int n;

	snprintf(cred, sizeof(cred), "%s:", opt.key);
	base64(cred, strlen(cred), b64);
	n = snprintf(header_prefix, sizeof(header_prefix),
		     "POST /v1/batch HTTP/1.1\r\nHost: %s:%s\r\n"
		     "Authorization: Basic %s\r\n"
		     "Content-Type: application/json\r\n"
		     "User-Agent: weft-bench-loadgen\r\n"
		     "Content-Length: ", opt.host, opt.port, b64);
	if (n < 0 || (size_t)n + 32 > HEADER_ROOM)
		die("the write key is too long");
	header_prefix_len = (size_t)n;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double percentile_ms(double q)
{
	if (!st.nlat)
		return 0;
	size_t i = (size_t)(q * (double)(st.nlat - 1) + 0.5);

	return st.lat_us[i] / 1000.0;
}

static void sample(unsigned n)
{
	char *buf = xmalloc(GEN_MAX_EVENT);
	struct gen_event ev;
	uint64_t bytes = 0, kinds[3] = { 0 };
	unsigned total = n < 100000 ? 100000 : n;
	int64_t now = real_ms();
	uint64_t t0 = mono_ns();

	for (unsigned i = 0; i < total; i++) {
		size_t len = gen_event(&gen, buf, now, &ev);

		bytes += len;
		kinds[ev.kind]++;
		if (i < n)
			printf("%.*s\n", (int)len, buf);
	}
	double ns = (double)(mono_ns() - t0) / total;

	fprintf(stderr, "loadgen: %u events: mean %.0f bytes, track %.1f%% "
		"identify %.1f%% page %.1f%%, %.0f ns each to build\n", total,
		(double)bytes / total, 100.0 * kinds[0] / total,
		100.0 * kinds[1] / total, 100.0 * kinds[2] / total, ns);
	free(buf);
}

static void usage(FILE *f)
{
	fputs("usage: loadgen --target HOST:PORT --key WRITE_KEY [--connections N]\n"
	      "               [--duration S] [--warmup S] [--events N] [--users N]\n"
	      "               [--run-id HEX] [--drain S]\n"
	      "       loadgen --sample N\n"
	      "The key may also come from WEFT_WRITE_KEY.\n", f);
}

static void parse_target(const char *s)
{
	const char *colon = strrchr(s, ':');

	if (!colon || colon == s || !colon[1] ||
	    (size_t)(colon - s) >= sizeof(opt.host) ||
	    strlen(colon + 1) >= sizeof(opt.port))
		die("--target wants HOST:PORT, not '%s'", s);
	memcpy(opt.host, s, (size_t)(colon - s));
	opt.host[colon - s] = '\0';
	strcpy(opt.port, colon + 1);
}

static double positive(const char *name, const char *v)
{
	char *end;
	double d = strtod(v, &end);

	if (*end || !(d > 0))
		die("--%s wants a positive number, not '%s'", name, v);
	return d;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "connections", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "events", required_argument, NULL, 'e' },
		{ "users", required_argument, NULL, 'u' },
		{ "run-id", required_argument, NULL, 'r' },
		{ "drain", required_argument, NULL, 'D' },
		{ "sample", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int o;

	opt.key = getenv("WEFT_WRITE_KEY");
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case 't': parse_target(optarg); break;
		case 'k': opt.key = optarg; break;
		case 'c': opt.connections = (unsigned)positive("connections", optarg); break;
		case 'd': opt.duration = positive("duration", optarg); break;
		case 'w': opt.warmup = strtod(optarg, NULL); break;
		case 'e': opt.events = (unsigned)positive("events", optarg); break;
		case 'u': opt.users = (unsigned)positive("users", optarg); break;
		case 'r': opt.run_id = strtoull(optarg, NULL, 16); break;
		case 'D': opt.drain = positive("drain", optarg); break;
		case 's': opt.sample = (unsigned)positive("sample", optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
	if (opt.events > 2500)
		die("--events: Weft takes at most 2500 events per batch");
	if (opt.warmup < 0)
		die("--warmup must not be negative");
	if (!opt.sample && (!opt.key || !*opt.key))
		die("no write key: pass --key or set WEFT_WRITE_KEY");
	if (!opt.run_id)
		opt.run_id = gen_random_seed();
}

int main(int argc, char **argv)
{
	struct conn *conns;
	struct epoll_event evs[64];
	double cpu0 = 0, cpu1 = 0;
	unsigned open_conns;

	parse_args(argc, argv);
	gen_init(&gen, opt.run_id ^ 0x6c6f6164ULL, opt.run_id, opt.users);
	if (opt.sample) {
		sample(opt.sample);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	resolve_target();
	build_header_prefix();
	epfd = epoll_create1(0);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));

	conns = calloc(opt.connections, sizeof(*conns));
	if (!conns)
		die("out of memory");
	for (unsigned i = 0; i < opt.connections; i++) {
		struct conn *c = &conns[i];

		c->fd = -1;
		c->req = xmalloc(HEADER_ROOM + (size_t)opt.events * (GEN_MAX_EVENT + 1) + 16);
		c->resp_cap = 16384;
		c->resp = xmalloc(c->resp_cap);
		conn_open(c);
	}
	fprintf(stderr, "loadgen: %u connections, %u events/request, %.0f s "
		"after a %.0f s warm-up, target %s:%s\n", opt.connections,
		opt.events, opt.duration, opt.warmup, opt.host, opt.port);

	t_start = last_ok_ns = mono_ns();
	t_window = t_start + (uint64_t)(opt.warmup * 1e9);
	t_end = t_window + (uint64_t)(opt.duration * 1e9);
	for (;;) {
		int n = epoll_wait(epfd, evs, 64, 20);
		uint64_t now;

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			conn_event(evs[i].data.ptr, evs[i].events);
		now = mono_ns();
		if (!in_window && now >= t_window) {
			in_window = true;
			cpu0 = cpu_seconds();
		}
		if (!stopping && now >= t_end) {
			stopping = true;
			cpu1 = cpu_seconds();
		}
		open_conns = 0;
		for (unsigned i = 0; i < opt.connections; i++) {
			struct conn *c = &conns[i];

			if (c->fd >= 0) {
				open_conns++;
				if (c->state == CONN_PAUSED && now >= c->retry_ns) {
					if (stopping)
						conn_close(c);
					else
						conn_start_request(c);
				}
			} else if (!stopping && now >= c->retry_ns) {
				conn_open(c);
				open_conns++;
			}
		}
		if (stopping && (open_conns == 0 ||
				 now >= t_end + (uint64_t)(opt.drain * 1e9)))
			break;
		if (!connected_once && now - t_start > 3000000000ULL)
			die("cannot connect to %s:%s: %s (is weft serving there?)",
			    opt.host, opt.port, last_error);
		if (now - last_ok_ns > 15000000000ULL)
			die("no request succeeded for 15 s (%llu replies so far, "
			    "%llu connection errors, last: %s); is weft serving "
			    "on %s:%s?", (unsigned long long)st.requests,
			    (unsigned long long)st.conn_errors, last_error,
			    opt.host, opt.port);
	}

	qsort(st.lat_us, st.nlat, sizeof(*st.lat_us), cmp_u32);
	double window = opt.duration;
	double events_s = (double)st.window_events / window;
	double req_s = (double)st.window_requests / window;
	double cpu_pct = 100.0 * (cpu1 - cpu0) / window;
	double event_bytes = st.built_events ? (double)st.body_bytes / st.built_events : 0;
	uint64_t non200 = st.requests - st.status[200];
	char statuses[512] = "none";
	size_t sl = 0;

	for (int s = 0; s < MAX_STATUS; s++) {
		if (s == 200 || !st.status[s])
			continue;
		sl += (size_t)snprintf(statuses + sl, sizeof(statuses) - sl,
				       "%s%d:%llu", sl ? "," : "", s,
				       (unsigned long long)st.status[s]);
		if (sl >= sizeof(statuses))
			break;
	}

	fprintf(stderr, "loadgen: mean event %.0f bytes, request body %.1f KB\n",
		event_bytes, event_bytes * opt.events / 1000);
	fprintf(stderr, "loadgen: %.0f events/s acknowledged (200), %.1f "
		"requests/s, latency p50 %.1f ms p99 %.1f ms\n", events_s, req_s,
		percentile_ms(0.50), percentile_ms(0.99));
	fprintf(stderr, "loadgen: non-200 replies by status: %s; events refused "
		"inside batches %llu; connection errors %llu; unanswered at the "
		"end %u\n", statuses, (unsigned long long)st.rejected_events,
		(unsigned long long)st.conn_errors, open_conns);
	fprintf(stderr, "loadgen: own CPU %.1f%% of one core (%.2f core-us per "
		"event)\n", cpu_pct,
		st.window_events ? (cpu1 - cpu0) * 1e6 / st.window_events : 0);
	printf("RESULT events_s=%.0f req_s=%.1f p50_ms=%.2f p99_ms=%.2f "
	       "acked_total=%llu sent_total=%llu window_events=%llu non200=%llu "
	       "statuses=%s conn_errors=%llu unanswered=%u cpu_pct=%.1f "
	       "event_bytes=%.0f\n", events_s, req_s, percentile_ms(0.50),
	       percentile_ms(0.99), (unsigned long long)st.acked_events,
	       (unsigned long long)st.sent_events,
	       (unsigned long long)st.window_events, (unsigned long long)non200,
	       statuses, (unsigned long long)st.conn_errors, open_conns, cpu_pct,
	       event_bytes);
	fflush(stdout);
	if (!st.acked_events)
		die("no event was acknowledged");
	return 0;
}
