/*
 * audgen: loads the profiles of bench/audiences (docs/benchmarks.md) into
 * Weft through POST /v1/batch, so that audiences of every kind have
 * members.
 *
 *   audgen load --target H:P --key WRITE --profiles N [--tracks 2]
 *               [--batch 500] [--connections 4] [--run-id HEX]
 *   audgen sample [--tracks 2]     prints one profile's events
 *
 * Profile i is the user bench/loadgen calls i (gen_put_user_id and
 * gen_put_anonymous_id), so the ingest benchmark's traffic with
 * --users N lands on the loaded profiles. It gets one identify with
 * traits the audiences read (plan as loadgen sets it, country, age, tags,
 * signup, logins, vip; no email: loadgen's identify brings the user's own,
 * and a second one would meet the identity rules' limits) and `tracks` track events (Order Completed
 * with total and coupon, Product Viewed with price and category, Checkout
 * Started with total) with timestamps spread over the last 120 days, so
 * that windows of 30 or 90 days hold some of them. Everything is a pure
 * function of i: a second load sends the same events with the same
 * messageIds, and Weft deduplicates them.
 *
 * The events of the load are numbered: event e belongs to profile
 * e / (1 + tracks); a batch is `batch` consecutive events. Each connection
 * is a thread with a blocking keep-alive socket that takes the next batch,
 * sends it until it is acknowledged (a 503 or a lost connection sends it
 * again: its messageIds make that idempotent), and fails the run if Weft
 * refuses any event. The last line is "RESULT key=value ...".
 */
#define _GNU_SOURCE		/* memmem, strcasestr */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/gen.h"

#define EVENT_MAX 1024		/* one generated event, with room to spare */
#define MAX_STATUS 600
#define NSEC 1000000000ULL
#define DAY_MS 86400000LL

static struct {
	char host[256], port[16];
	const char *key;
	uint64_t profiles;
	unsigned tracks, batch, connections;
	uint64_t run_id;
} cfg = {
	.host = "127.0.0.1", .port = "8080", .tracks = 2, .batch = 500, .connections = 4,
};

static char auth_header[512];	/* "Authorization: Basic ...\r\n" */
static struct sockaddr_storage peer;
static socklen_t peer_len;
static int64_t now_ms;		/* the load's "now": timestamps go back from it */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t next_batch, nbatches, nevents;
static uint64_t status_count[MAX_STATUS], conn_errors, bytes_sent;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("audgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* ---- the events ---- */

static const char *const plans[] = { "free", "starter", "pro", "enterprise" };	/* gen.c's */
static const char *const countries[] = { "FR", "DE", "US", "GB", "ES", "IT", "NL", "SE" };
static const char *const tag_sets[] = {
	"[]", "[\"beta\"]", "[\"newsletter\"]", "[\"newsletter\",\"beta\"]", "[\"churn-risk\"]",
};
static const char *const categories[] = { "Footwear", "Outerwear", "Accessories", "Bags" };
static const char *const coupons[] = { "SPRING24", "WELCOME10", "FREESHIP", "VIP20" };

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Appends printf output at *p; the caller sized the buffer. */
static void add(char **p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(char **p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	*p += vsprintf(*p, fmt, ap);
	va_end(ap);
}

static void add_head(char **p, const char *type, unsigned u, uint64_t e, int64_t ts_ms)
{
	char mid[36];

	gen_message_id(cfg.run_id, e, mid);
	add(p, "{\"type\":\"%s\",\"userId\":\"", type);
	*p = gen_put_user_id(*p, u);
	add(p, "\",\"anonymousId\":\"");
	*p = gen_put_anonymous_id(*p, u);
	add(p, "\",\"messageId\":\"%.36s\",\"timestamp\":\"", mid);
	*p = gen_put_iso(*p, ts_ms);
	*(*p)++ = '"';
}

/* Writes event e of the load (not NUL-terminated); returns its length. */
static size_t put_event(char *out, uint64_t e)
{
	unsigned per = 1 + cfg.tracks;
	unsigned u = (unsigned)(e / per), k = (unsigned)(e % per);
	uint64_t h = mix(u), r = mix(e ^ 0x7472616bULL);
	char *p = out;

	if (k == 0) {
		/* Signed up 2024-01-01 plus up to ~1,000 days. */
		int64_t signup = 1704067200000LL + (int64_t)(h % 1000) * DAY_MS;

		add_head(&p, "identify", u, e, now_ms - (int64_t)(h >> 40) % (120 * DAY_MS));
		add(&p, ",\"traits\":{\"plan\":\"%s\",\"country\":\"%s\",\"age\":%u,"
		    "\"tags\":%s,\"signup\":\"", plans[u % LEN(plans)],
		    countries[(h >> 8) % LEN(countries)], 18 + (unsigned)((h >> 16) % 60),
		    tag_sets[(h >> 24) % LEN(tag_sets)]);
		p = gen_put_iso(p, signup);
		add(&p, "\",\"logins\":%u,\"vip\":%s}}", 1 + (unsigned)((h >> 32) % 200),
		    (h >> 44) % 20 == 0 ? "true" : "false");
	} else {
		int64_t ts = now_ms - (int64_t)(r % (120 * DAY_MS));
		unsigned cents = 1000 + (unsigned)((r >> 20) % 49000);
		unsigned what = (unsigned)((r >> 40) % 10);

		if (what < 5) {
			add_head(&p, "track", u, e, ts);
			add(&p, ",\"event\":\"Order Completed\",\"properties\":{\"order_id\":\"ORD-%llu\","
			    "\"total\":%u.%02u,\"currency\":\"EUR\",\"coupon\":\"%s\"}}",
			    (unsigned long long)e, cents / 100, cents % 100,
			    coupons[(r >> 50) % LEN(coupons)]);
		} else if (what < 8) {
			add_head(&p, "track", u, e, ts);
			add(&p, ",\"event\":\"Product Viewed\",\"properties\":{\"product_id\":\"P-%u\","
			    "\"price\":%u.%02u,\"category\":\"%s\"}}", (unsigned)(r % 100000),
			    cents / 300, cents % 100, categories[(r >> 50) % LEN(categories)]);
		} else {
			add_head(&p, "track", u, e, ts);
			add(&p, ",\"event\":\"Checkout Started\",\"properties\":{\"total\":%u.%02u,"
			    "\"currency\":\"EUR\"}}", cents / 100, cents % 100);
		}
	}
	return (size_t)(p - out);
}

/* ---- HTTP ---- */

static void base64(const char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16 |
			     (uint32_t)(unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];

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

static int dial(void)
{
	int fd = socket(peer.ss_family, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&peer, peer_len)) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/*
 * Reads one reply into *buf; returns its status and sets *body, or 0 when
 * the connection broke. *close_after is set when the server closes next.
 */
static int read_reply(int fd, char **buf, size_t *cap, const char **body, size_t *body_len,
		      bool *close_after)
{
	size_t len = 0, head = 0, total = 0;

	for (;;) {
		if (*cap - len < 4096) {
			*cap *= 2;
			*buf = realloc(*buf, *cap);
			if (!*buf)
				die("out of memory");
		}
		ssize_t n = recv(fd, *buf + len, *cap - len - 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		len += (size_t)n;
		(*buf)[len] = '\0';
		if (!head) {
			char *end = strstr(*buf, "\r\n\r\n");
			const char *cl;

			if (!end)
				continue;
			head = (size_t)(end - *buf) + 4;
			cl = strcasestr(*buf, "\r\nContent-Length:");
			total = head + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
			*close_after = strcasestr(*buf, "\r\nConnection: close") != NULL;
		}
		if (len >= total) {
			*body = *buf + head;
			*body_len = total - head;
			return atoi(*buf + 9);
		}
	}
}

static void *worker(void *arg)
{
	size_t body_cap = (size_t)cfg.batch * EVENT_MAX + 64, cap = 16384;
	char *req = malloc(body_cap + 1024), *resp = malloc(cap);
	int fd = -1;

	(void)arg;
	if (!req || !resp)
		die("out of memory");
	for (;;) {
		uint64_t b, first, last;
		char *body, *p;
		size_t head_len, req_len;
		int tries = 0;

		pthread_mutex_lock(&lock);
		b = next_batch < nbatches ? next_batch++ : UINT64_MAX;
		pthread_mutex_unlock(&lock);
		if (b == UINT64_MAX)
			break;
		first = b * cfg.batch;
		last = first + cfg.batch < nevents ? first + cfg.batch : nevents;

		body = req + 1024;
		p = body;
		memcpy(p, "{\"batch\":[", 10);
		p += 10;
		for (uint64_t e = first; e < last; e++) {
			if (e > first)
				*p++ = ',';
			p += put_event(p, e);
		}
		memcpy(p, "]}", 2);
		p += 2;
		{
			char head[1024];
			int n = snprintf(head, sizeof(head),
					 "POST /v1/batch HTTP/1.1\r\nHost: %s:%s\r\n%s"
					 "Content-Type: application/json\r\n"
					 "User-Agent: weft-bench-audgen\r\nContent-Length: %zu\r\n\r\n",
					 cfg.host, cfg.port, auth_header, (size_t)(p - body));

			head_len = (size_t)n;
			memcpy(body - head_len, head, head_len);
		}
		req_len = head_len + (size_t)(p - body);

		for (;;) {
			const char *rbody;
			size_t rlen;
			bool close_after = false;
			int status;

			if (++tries > 600)
				die("batch %llu was not acknowledged after 600 tries",
				    (unsigned long long)b);
			if (fd < 0 && (fd = dial()) < 0) {
				__atomic_add_fetch(&conn_errors, 1, __ATOMIC_RELAXED);
				usleep(100000);
				continue;
			}
			if (!send_all(fd, body - head_len, req_len) ||
			    !(status = read_reply(fd, &resp, &cap, &rbody, &rlen, &close_after))) {
				__atomic_add_fetch(&conn_errors, 1, __ATOMIC_RELAXED);
				close(fd);
				fd = -1;
				usleep(100000);
				continue;
			}
			if (close_after) {
				close(fd);
				fd = -1;
			}
			__atomic_add_fetch(&status_count[status < MAX_STATUS ? status : 0], 1,
					   __ATOMIC_RELAXED);
			if (status == 200) {
				if (memmem(rbody, rlen, "\"rejected\"", 10))
					die("Weft refused events of batch %llu: %.*s",
					    (unsigned long long)b, (int)(rlen < 600 ? rlen : 600), rbody);
				__atomic_add_fetch(&bytes_sent, req_len, __ATOMIC_RELAXED);
				break;
			}
			if (status != 503)
				die("POST /v1/batch answered %d: %.*s", status,
				    (int)(rlen < 600 ? rlen : 600), rbody);
			usleep(100000);	/* overloaded: as an SDK would, back off and resend */
		}
	}
	if (fd >= 0)
		close(fd);
	free(req);
	free(resp);
	return NULL;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fputs("usage: audgen load --target H:P --key WRITE --profiles N [--tracks 2]\n"
	      "                   [--batch 500] [--connections 4] [--run-id HEX]\n"
	      "       audgen sample [--tracks 2]\n", f);
}

static double number(const char *name, const char *v, double min)
{
	char *end;
	double d = strtod(v, &end);

	if (*end || d < min)
		die("--%s wants a number of at least %g, not '%s'", name, min, v);
	return d;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "profiles", required_argument, NULL, 'p' },
		{ "tracks", required_argument, NULL, 'T' },
		{ "batch", required_argument, NULL, 'b' },
		{ "connections", required_argument, NULL, 'c' },
		{ "run-id", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool load;
	int o;

	if (argc < 2 || (strcmp(argv[1], "load") && strcmp(argv[1], "sample"))) {
		usage(stderr);
		return 2;
	}
	load = !strcmp(argv[1], "load");
	cfg.run_id = 0x61756467656eULL;	/* fixed: a second load is deduplicated */
	while ((o = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
		switch (o) {
		case 't': {
			const char *colon = strrchr(optarg, ':');

			if (!colon || colon == optarg || (size_t)(colon - optarg) >= sizeof(cfg.host) ||
			    strlen(colon + 1) >= sizeof(cfg.port))
				die("--target wants HOST:PORT, not '%s'", optarg);
			memcpy(cfg.host, optarg, (size_t)(colon - optarg));
			cfg.host[colon - optarg] = '\0';
			strcpy(cfg.port, colon + 1);
			break;
		}
		case 'k': cfg.key = optarg; break;
		case 'p': cfg.profiles = (uint64_t)number("profiles", optarg, 1); break;
		case 'T': cfg.tracks = (unsigned)number("tracks", optarg, 0); break;
		case 'b': cfg.batch = (unsigned)number("batch", optarg, 1); break;
		case 'c': cfg.connections = (unsigned)number("connections", optarg, 1); break;
		case 'r': cfg.run_id = strtoull(optarg, NULL, 16); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (cfg.batch > 2500)
		die("--batch: Weft takes at most 2500 events per batch");
	if (cfg.profiles > 9999999)
		die("--profiles: userIds have 7 digits, so at most 9999999");
	now_ms = (int64_t)time(NULL) * 1000;

	if (!load) {
		char buf[EVENT_MAX];

		for (uint64_t e = 0; e < 1 + cfg.tracks; e++)
			printf("%.*s\n", (int)put_event(buf, e), buf);
		return 0;
	}
	if (!cfg.key || !cfg.profiles)
		die("load needs --target, --key and --profiles");

	{
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
		char cred[300], b64[420];
		int rc = getaddrinfo(cfg.host, cfg.port, &hints, &ai);

		if (rc)
			die("cannot resolve '%s': %s", cfg.host, gai_strerror(rc));
		memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
		peer_len = ai->ai_addrlen;
		freeaddrinfo(ai);
		snprintf(cred, sizeof(cred), "%s:", cfg.key);
		base64(cred, strlen(cred), b64);
		snprintf(auth_header, sizeof(auth_header), "Authorization: Basic %s\r\n", b64);
	}
	signal(SIGPIPE, SIG_IGN);

	nevents = cfg.profiles * (1 + cfg.tracks);
	nbatches = (nevents + cfg.batch - 1) / cfg.batch;
	uint64_t t0 = mono_ns();
	pthread_t *th = calloc(cfg.connections, sizeof(*th));

	if (!th)
		die("out of memory");
	for (unsigned i = 0; i < cfg.connections; i++)
		if (pthread_create(&th[i], NULL, worker, NULL))
			die("pthread_create failed");
	for (unsigned i = 0; i < cfg.connections; i++)
		pthread_join(th[i], NULL);
	free(th);

	double secs = (double)(mono_ns() - t0) / NSEC;
	char statuses[256] = "none";
	size_t sl = 0;

	for (int s = 0; s < MAX_STATUS; s++) {
		if (s == 200 || !status_count[s])
			continue;
		sl += (size_t)snprintf(statuses + sl, sizeof(statuses) - sl, "%s%d:%llu",
				       sl ? "," : "", s, (unsigned long long)status_count[s]);
		if (sl >= sizeof(statuses))
			break;
	}
	fprintf(stderr, "audgen: %llu profiles, %llu events (%u tracks each) in %llu batches "
		"acknowledged in %.1f s: %.0f events/s, %.1f MB sent\n",
		(unsigned long long)cfg.profiles, (unsigned long long)nevents, cfg.tracks,
		(unsigned long long)nbatches, secs, (double)nevents / secs, (double)bytes_sent / 1e6);
	printf("RESULT profiles=%llu events=%llu seconds=%.1f events_s=%.0f statuses=%s "
	       "conn_errors=%llu bytes=%llu\n", (unsigned long long)cfg.profiles,
	       (unsigned long long)nevents, secs, (double)nevents / secs, statuses,
	       (unsigned long long)conn_errors, (unsigned long long)bytes_sent);
	return 0;
}
