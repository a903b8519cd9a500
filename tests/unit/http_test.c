/*
 * Unit tests for api/http.c: a server on 127.0.0.1 port 0, driven by
 * stepping its event_base from the test's own thread, talked to with plain
 * non-blocking sockets. Replies are checked byte for byte where the server
 * owns them (status lines, error bodies), so a changed message fails here.
 */
#define _GNU_SOURCE	/* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <zlib.h>

#include "api/http.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"

enum mode {
	MODE_ECHO,	/* reply 200 at once, body "path=<path>" */
	MODE_HOLD,	/* keep the request for the test to answer */
	MODE_TIMER,	/* reply 200 from a timer 50 ms later */
	MODE_JSON_ERROR,	/* reply with a JSON error needing escapes */
	MODE_BIG,	/* reply 100 KiB: "path=<path>" then dots */
};

/* What the handler saw of the last request. */
struct seen {
	int calls;
	char method[16];
	char path[256];
	char query[256];
	char xtest[256];
	char peer[64];
	char id[17];
	struct buf body;
	bool xtest_found;
};

struct client {
	int fd;
	struct buf in;
	bool eof;
};

struct resp {
	int status;
	char line[128];
	char head[8192];	/* the header lines, CRLF-separated */
	struct buf body;
};

static struct event_base *base;
static struct http_server *srv;
static int port;
static enum mode mode;
static struct seen seen;
static struct http_request *held[16];
static int nheld;
static int done_calls;

/* --- the server side ---------------------------------------------------- */

static void copy_str(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

static void on_timer_reply(evutil_socket_t fd, short what, void *arg)
{
	struct http_request *req = arg;

	(void)fd;
	(void)what;
	http_reply(req, 200, "text/plain", "late", 4);
}

static void handler(struct http_request *req, void *arg)
{
	const char *x, *body;
	size_t len;
	char reply[300];
	struct timeval tv = { 0, 50000 };

	(void)arg;
	seen.calls++;
	copy_str(seen.method, sizeof(seen.method), http_request_method(req));
	copy_str(seen.path, sizeof(seen.path), http_request_path(req));
	copy_str(seen.query, sizeof(seen.query), http_request_query(req));
	x = http_request_header(req, "x-test");
	seen.xtest_found = x != NULL;
	copy_str(seen.xtest, sizeof(seen.xtest), x);
	copy_str(seen.peer, sizeof(seen.peer), http_request_peer(req));
	copy_str(seen.id, sizeof(seen.id), http_request_id(req));
	body = http_request_body(req, &len);
	buf_reset(&seen.body);
	buf_add(&seen.body, body, len);
	assert_int_equal(body[len], '\0');

	switch (mode) {
	case MODE_ECHO:
		snprintf(reply, sizeof(reply), "path=%s", http_request_path(req));
		http_reply(req, 200, "text/plain", reply, strlen(reply));
		return;
	case MODE_HOLD:
		assert_true(nheld < 16);
		held[nheld++] = req;
		return;
	case MODE_TIMER:
		assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, on_timer_reply, req, &tv), 0);
		return;
	case MODE_JSON_ERROR:
		http_reply_json_error(req, 422, "bad \"thing\"", "line one\nline \\two\x01");
		return;
	case MODE_BIG: {
		size_t n = 100 * 1024;
		char *big = xmalloc(n);

		memset(big, '.', n);
		snprintf(reply, sizeof(reply), "path=%s", http_request_path(req));
		memcpy(big, reply, strlen(reply));
		http_reply(req, 200, "text/plain", big, n);
		free(big);
		return;
	}
	}
}

static void test_limits(struct http_limits *lim)
{
	http_limits_init(lim);
	lim->max_header_bytes = 4096;
	lim->max_body_bytes = 512;
	lim->max_connections = 16;
	lim->max_inflight_requests = 4;
	lim->max_inflight_bytes = 1 << 20;
	lim->header_timeout_ms = 5000;
	lim->idle_timeout_ms = 5000;
	lim->body_timeout_ms = 5000;
}

static void start(const struct http_limits *lim)
{
	if (srv)
		http_server_free(srv);
	srv = http_server_new(base, lim, handler, NULL);
	assert_int_equal(http_server_listen(srv, "127.0.0.1", 0), 0);
	port = http_server_port(srv);
	assert_true(port > 0);
}

static int setup(void **state)
{
	struct http_limits lim;

	(void)state;
	memset(&seen, 0, sizeof(seen));
	buf_init(&seen.body);
	mode = MODE_ECHO;
	nheld = 0;
	done_calls = 0;
	base = event_base_new();
	assert_non_null(base);
	test_limits(&lim);
	srv = NULL;
	start(&lim);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_server_free(srv);
	srv = NULL;
	event_base_free(base);
	buf_release(&seen.body);
	return 0;
}

/* --- the client side ---------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* One step of the server's loop, then a short wait for the client socket. */
static void pump(struct client *cl)
{
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (cl) {
		struct pollfd pfd = { cl->fd, POLLIN, 0 };

		poll(&pfd, 1, 1);
	} else {
		poll(NULL, 0, 1);
	}
}

static void pump_for(int ms)
{
	double end = now_ms() + ms;

	while (now_ms() < end)
		pump(NULL);
}

/* rcvbuf: 0 for the kernel's default, else a small fixed receive window. */
static void client_open_rcvbuf(struct client *cl, int rcvbuf)
{
	struct sockaddr_in sin;

	memset(cl, 0, sizeof(*cl));
	buf_init(&cl->in);
	cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(cl->fd >= 0);
	if (rcvbuf)
		setsockopt(cl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		assert_int_equal(errno, EINPROGRESS);
}

static void client_open(struct client *cl)
{
	client_open_rcvbuf(cl, 0);
}

static void client_close(struct client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = -1;
	buf_release(&cl->in);
}

/* Closes with a reset rather than a FIN. */
static void client_reset(struct client *cl)
{
	struct linger lg = { 1, 0 };

	setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	client_close(cl);
}

/* Reads what is there; sets eof on end of stream or reset. */
static void client_recv(struct client *cl)
{
	char tmp[65536];

	for (;;) {
		ssize_t n = recv(cl->fd, tmp, sizeof(tmp), 0);

		if (n > 0) {
			buf_add(&cl->in, tmp, (size_t)n);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			cl->eof = true;
		return;
	}
}

/* Sends everything, stepping the server while the socket is full. False if
 * the server closed the connection first. */
static bool client_send(struct client *cl, const void *data, size_t len)
{
	const char *p = data;
	double end = now_ms() + 10000;

	while (len > 0) {
		ssize_t n = send(cl->fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR && errno != ENOTCONN)
			return false;
		assert_true(now_ms() < end);
		pump(NULL);
	}
	return true;
}

static void client_sends(struct client *cl, const char *s)
{
	assert_true(client_send(cl, s, strlen(s)));
}

static const char *resp_header(const struct resp *r, const char *name)
{
	static char value[512];
	size_t n = strlen(name);
	const char *p = r->head;

	while (*p) {
		const char *eol = strstr(p, "\r\n");
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;

			while (*v == ' ')
				v++;
			snprintf(value, sizeof(value), "%.*s", (int)(len - (size_t)(v - p)), v);
			return value;
		}
		if (!eol)
			break;
		p = eol + 2;
	}
	return NULL;
}

/* Takes one complete response off the client's input, if there is one. */
static bool take_response(struct client *cl, struct resp *r, bool no_body)
{
	char *data = cl->in.data;
	char *end, *eol;
	const char *cl_hdr;
	size_t hlen, blen = 0;

	if (!data)
		return false;
	end = memmem(data, cl->in.len, "\r\n\r\n", 4);
	if (!end)
		return false;
	hlen = (size_t)(end - data) + 4;
	eol = memmem(data, hlen, "\r\n", 2);
	snprintf(r->line, sizeof(r->line), "%.*s", (int)(eol - data), data);
	if (end > eol)
		snprintf(r->head, sizeof(r->head), "%.*s", (int)(end - eol - 2), eol + 2);
	else
		r->head[0] = '\0';
	r->status = atoi(r->line + 9);
	cl_hdr = resp_header(r, "Content-Length");
	if (cl_hdr && !no_body)
		blen = (size_t)strtoul(cl_hdr, NULL, 10);
	if (cl->in.len < hlen + blen)
		return false;
	buf_init(&r->body);
	buf_add(&r->body, data + hlen, blen);
	memmove(data, data + hlen + blen, cl->in.len - hlen - blen);
	cl->in.len -= hlen + blen;
	return true;
}

static bool read_response_opt(struct client *cl, struct resp *r, bool no_body)
{
	double end = now_ms() + 5000;

	memset(r, 0, sizeof(*r));
	while (now_ms() < end) {
		if (take_response(cl, r, no_body))
			return true;
		if (cl->eof)
			return false;
		pump(cl);
		client_recv(cl);
	}
	return false;
}

static void read_response(struct client *cl, struct resp *r)
{
	assert_true(read_response_opt(cl, r, false));
}

static void resp_release(struct resp *r)
{
	buf_release(&r->body);
}

/* True once the server has closed the connection. */
static bool wait_closed(struct client *cl)
{
	double end = now_ms() + 5000;

	while (now_ms() < end) {
		pump(cl);
		client_recv(cl);
		if (cl->eof)
			return true;
	}
	return false;
}

/* Steps the loop until the handler has been called n times in all. */
static void wait_calls(int n)
{
	double end = now_ms() + 5000;

	while (seen.calls < n && now_ms() < end)
		pump(NULL);
	assert_int_equal(seen.calls, n);
}

static void assert_json_error(struct client *cl, const char *line, const char *body)
{
	struct resp r;

	read_response(cl, &r);
	assert_string_equal(r.line, line);
	assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
	assert_int_equal(strlen(resp_header(&r, "Request-Id")), 16);
	assert_string_equal(r.body.data, body);
	resp_release(&r);
}

static void gzip_into(struct buf *out, const void *data, size_t len, int wbits)
{
	z_stream z;
	unsigned char tmp[65536];
	int ret;

	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		ret = deflate(&z, Z_FINISH);
		buf_add(out, tmp, sizeof(tmp) - z.avail_out);
	} while (ret == Z_OK);
	assert_int_equal(ret, Z_STREAM_END);
	deflateEnd(&z);
}

static void post_with(struct client *cl, const char *extra_headers, const void *body, size_t len)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "POST /in HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n",
		 extra_headers, len);
	client_sends(cl, head);
	assert_true(client_send(cl, body, len));
}

/* --- basic exchange ----------------------------------------------------- */

static void test_http__get_reaches_handler_with_exact_fields(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET /v1/profiles/p1?fields=a,b&x=%20 HTTP/1.1\r\n"
			  "Host: example\r\nX-Test:   Hello World  \r\n\r\n");
	read_response(&cl, &r);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.method, "GET");
	assert_string_equal(seen.path, "/v1/profiles/p1");
	assert_string_equal(seen.query, "fields=a,b&x=%20");
	assert_true(seen.xtest_found);
	assert_string_equal(seen.xtest, "Hello World");
	assert_string_equal(seen.peer, "127.0.0.1");
	assert_int_equal(strlen(seen.id), 16);
	assert_int_equal(strspn(seen.id, "0123456789abcdef"), 16);
	assert_int_equal(seen.body.len, 0);

	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_string_equal(resp_header(&r, "Content-Type"), "text/plain");
	assert_string_equal(resp_header(&r, "Content-Length"), "20");
	assert_string_equal(resp_header(&r, "Request-Id"), seen.id);
	assert_null(resp_header(&r, "Connection"));
	assert_string_equal(r.body.data, "path=/v1/profiles/p1");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__post_body_reaches_handler(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST /v1/track HTTP/1.1\r\nHost: t\r\n"
			  "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n"
			  "{\"event\":\"buy\"}\n");
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_string_equal(seen.method, "POST");
	assert_string_equal(seen.path, "/v1/track");
	assert_string_equal(seen.query, "");
	assert_false(seen.xtest_found);
	assert_int_equal(seen.body.len, 16);
	assert_memory_equal(seen.body.data, "{\"event\":\"buy\"}\n", 16);
	resp_release(&r);
	client_close(&cl);
}

static void test_http__request_sent_byte_by_byte(void **state)
{
	const char *req = "POST /drip?q=1 HTTP/1.1\r\nHost: t\r\nX-Test: slow value \r\n"
			  "Content-Length: 4\r\n\r\nbody";
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	for (const char *p = req; *p; p++) {
		assert_true(client_send(&cl, p, 1));
		pump(NULL);
		pump(NULL);
	}
	read_response(&cl, &r);
	assert_string_equal(seen.path, "/drip");
	assert_string_equal(seen.query, "q=1");
	assert_string_equal(seen.xtest, "slow value");
	assert_string_equal(seen.body.data, "body");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__pipelined_large_replies_keep_order_under_backpressure(void **state)
{
	struct client cl;
	struct resp r;
	char want[32];
	struct buf reqs = BUF_INIT;

	(void)state;
	mode = MODE_BIG;
	for (int i = 0; i < 64; i++)
		buf_printf(&reqs, "GET /big%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
	/* 6.4 MB of replies against a small receive window and the kernel's
	 * 4 MB send buffer at most: they cannot all be written yet. */
	client_open_rcvbuf(&cl, 8192);
	assert_true(client_send(&cl, reqs.data, reqs.len));
	pump_for(100);	/* the client reads nothing yet: the server must hold back */
	assert_true(seen.calls < 64);
	for (int i = 0; i < 64; i++) {
		read_response(&cl, &r);
		snprintf(want, sizeof(want), "path=/big%d.", i);
		assert_int_equal(r.body.len, 100 * 1024);
		assert_memory_equal(r.body.data, want, strlen(want));
		resp_release(&r);
	}
	assert_int_equal(seen.calls, 64);
	buf_release(&reqs);
	client_close(&cl);
}

static void test_http__header_lookup_and_iteration(void **state)
{
	struct client cl;
	const char *name, *value;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Multi: a\r\n"
			  "X-Multi: b\r\nx-test: v\r\n\r\n");
	wait_calls(1);
	assert_string_equal(http_request_header(held[0], "X-MULTI"), "a");
	assert_string_equal(http_request_header(held[0], "x-empty"), "");
	assert_null(http_request_header(held[0], "X-Absent"));
	assert_true(http_request_header_at(held[0], 0, &name, &value));
	assert_string_equal(name, "Host");
	assert_string_equal(value, "h");
	assert_true(http_request_header_at(held[0], 3, &name, &value));
	assert_string_equal(name, "X-Multi");
	assert_string_equal(value, "b");
	assert_true(http_request_header_at(held[0], 4, &name, &value));
	assert_false(http_request_header_at(held[0], 5, &name, &value));
	http_reply(held[0], 204, NULL, NULL, 0);
	client_close(&cl);
	pump_for(20);
}

static void test_http__absolute_form_url_gives_path(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET http://example.com:8080/a/b?q=1#frag HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(seen.path, "/a/b");
	assert_string_equal(seen.query, "q=1");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__keep_alive_two_requests_one_connection(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "path=/one");
	resp_release(&r);
	client_sends(&cl, "GET /two HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "path=/two");
	assert_false(cl.eof);
	resp_release(&r);
	assert_int_equal(seen.calls, 2);
	client_close(&cl);
}

static void test_http__pipelined_requests_answered_in_order(void **state)
{
	struct client cl;
	struct resp r;
	char want[32];

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n"
			  "POST /p2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
			  "GET /p3 HTTP/1.1\r\nHost: t\r\n\r\n"
			  "GET /p4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
			  "GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
	for (int i = 1; i <= 4; i++) {
		read_response(&cl, &r);
		snprintf(want, sizeof(want), "path=/p%d", i);
		assert_string_equal(r.body.data, want);
		resp_release(&r);
	}
	assert_true(wait_closed(&cl));
	assert_int_equal(cl.in.len, 0);
	assert_int_equal(seen.calls, 4);
	client_close(&cl);
}

static void test_http__pipelined_behind_held_request_waits_for_reply(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_calls(1);
	pump_for(30);
	assert_int_equal(seen.calls, 1);	/* the second waits for the first's reply */
	mode = MODE_ECHO;
	http_reply(held[0], 200, "text/plain", "first", 5);
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "first");
	resp_release(&r);
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "path=/second");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__async_reply_from_timer(void **state)
{
	struct client cl;
	struct resp r;
	double t0 = now_ms();

	(void)state;
	mode = MODE_TIMER;
	client_open(&cl);
	client_sends(&cl, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl, &r);
	assert_true(now_ms() - t0 >= 45);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_string_equal(r.body.data, "late");
	resp_release(&r);
	/* The connection is still usable. */
	client_sends(&cl, "GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "late");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__head_reply_has_length_but_no_body(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /g HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_true(read_response_opt(&cl, &r, true));
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_string_equal(resp_header(&r, "Content-Length"), "7");
	resp_release(&r);
	read_response(&cl, &r);	/* would be garbled had HEAD sent a body */
	assert_string_equal(r.body.data, "path=/g");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__json_error_is_escaped(void **state)
{
	struct client cl;

	(void)state;
	mode = MODE_JSON_ERROR;
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 422 Unprocessable Entity",
			  "{\"error\":{\"code\":\"bad \\\"thing\\\"\","
			  "\"message\":\"line one\\nline \\\\two\\u0001\"}}");
	client_close(&cl);
}

static void test_http__reply_headers_added_and_injection_dropped(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_calls(1);
	http_reply_add_header(held[0], "Cache-Control", "no-store");
	http_reply_add_header(held[0], "X-Evil", "a\r\nSet-Cookie: x=1");
	http_reply_add_header(held[0], "Content-Length", "99");
	http_reply_add_header(held[0], "Connection", "close");
	http_reply(held[0], 200, "text/plain", "ok", 2);
	read_response(&cl, &r);
	assert_string_equal(resp_header(&r, "Cache-Control"), "no-store");
	assert_null(resp_header(&r, "X-Evil"));
	assert_null(resp_header(&r, "Set-Cookie"));
	assert_string_equal(resp_header(&r, "Content-Length"), "2");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(wait_closed(&cl));
	client_close(&cl);
}

/* --- connection handling ------------------------------------------------ */

static void test_http__connection_close_is_honoured(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(wait_closed(&cl));
	client_close(&cl);
}

static void test_http__http10_closes_unless_keep_alive(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET /a HTTP/1.0\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(wait_closed(&cl));
	client_close(&cl);

	client_open(&cl);
	client_sends(&cl, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(resp_header(&r, "Connection"), "keep-alive");
	resp_release(&r);
	client_sends(&cl, "GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "path=/c");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__half_closed_client_still_gets_reply(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
	shutdown(cl.fd, SHUT_WR);
	wait_calls(1);
	pump_for(30);
	assert_true(http_request_client_gone(held[0]));
	http_reply(held[0], 200, "text/plain", "bye", 3);
	read_response(&cl, &r);
	assert_string_equal(r.body.data, "bye");
	resp_release(&r);
	assert_true(wait_closed(&cl));
	client_close(&cl);
}

static void test_http__idle_timeout_closes_connection(void **state)
{
	struct http_limits lim;
	struct client cl;
	struct resp r;

	(void)state;
	test_limits(&lim);
	lim.idle_timeout_ms = 100;
	start(&lim);
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl, &r);
	resp_release(&r);
	assert_true(wait_closed(&cl));
	assert_int_equal(cl.in.len, 0);
	client_close(&cl);
}

static void test_http__header_timeout_gives_408(void **state)
{
	struct http_limits lim;
	struct client cl;

	(void)state;
	test_limits(&lim);
	lim.header_timeout_ms = 100;
	start(&lim);
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/1.1\r\nHost: t\r\n");
	assert_json_error(&cl, "HTTP/1.1 408 Request Timeout",
			  "{\"error\":{\"code\":\"request_timeout\",\"message\":"
			  "\"the request headers did not arrive within 100 ms\"}}");
	assert_true(wait_closed(&cl));
	assert_int_equal(seen.calls, 0);
	client_close(&cl);
}

static void test_http__body_timeout_gives_408(void **state)
{
	struct http_limits lim;
	struct client cl;

	(void)state;
	test_limits(&lim);
	lim.body_timeout_ms = 100;
	start(&lim);
	client_open(&cl);
	client_sends(&cl, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
	assert_json_error(&cl, "HTTP/1.1 408 Request Timeout",
			  "{\"error\":{\"code\":\"request_timeout\",\"message\":"
			  "\"the request body did not arrive within 100 ms\"}}");
	assert_int_equal(seen.calls, 0);
	client_close(&cl);
}

/* --- limits ------------------------------------------------------------- */

static void test_http__content_length_over_limit_gives_413_before_body(void **state)
{
	struct client cl;
	struct resp r;
	struct http_stats st;

	(void)state;
	client_open(&cl);
	/* Only the headers: the answer must not wait for the body. */
	client_sends(&cl, "POST /in HTTP/1.1\r\nHost: t\r\nContent-Length: 600\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 413 Payload Too Large");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	assert_string_equal(resp_header(&r, "Content-Type"), "application/json");
	assert_string_equal(r.body.data,
			    "{\"error\":{\"code\":\"body_too_large\",\"message\":"
			    "\"request body is 600 bytes; the limit is 512 bytes\"}}");
	resp_release(&r);
	assert_true(wait_closed(&cl));
	assert_int_equal(seen.calls, 0);
	http_server_stats(srv, &st);
	assert_int_equal(st.replies[4], 1);
	client_close(&cl);
}

static void test_http__expect_continue_within_limit_gets_100(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST /in HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
			  "Content-Length: 5\r\n\r\n");
	assert_true(read_response_opt(&cl, &r, true));
	assert_string_equal(r.line, "HTTP/1.1 100 Continue");
	resp_release(&r);
	assert_int_equal(seen.calls, 0);
	client_sends(&cl, "hello");
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_string_equal(seen.body.data, "hello");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__expect_continue_over_limit_gets_413_at_once(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST /in HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
			  "Content-Length: 513\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 413 Payload Too Large",
			  "{\"error\":{\"code\":\"body_too_large\",\"message\":"
			  "\"request body is 513 bytes; the limit is 512 bytes\"}}");
	client_close(&cl);
}

static void test_http__body_at_limit_is_accepted(void **state)
{
	struct client cl;
	struct resp r;
	char body[512];

	(void)state;
	memset(body, 'x', sizeof(body));
	client_open(&cl);
	post_with(&cl, "", body, sizeof(body));
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_int_equal(seen.body.len, 512);
	resp_release(&r);
	client_close(&cl);
}

static void test_http__chunked_body_is_assembled(void **state)
{
	struct client cl;
	struct resp r;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n");
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_int_equal(seen.body.len, 12);
	assert_string_equal(seen.body.data, "hello, world");
	resp_release(&r);
	client_close(&cl);
}

static void test_http__chunked_body_over_limit_gives_413(void **state)
{
	struct client cl;
	char chunk[400];

	(void)state;
	memset(chunk, 'y', sizeof(chunk));
	client_open(&cl);
	client_sends(&cl, "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "190\r\n");
	assert_true(client_send(&cl, chunk, sizeof(chunk)));
	client_sends(&cl, "\r\n190\r\n");
	client_send(&cl, chunk, sizeof(chunk));
	assert_json_error(&cl, "HTTP/1.1 413 Payload Too Large",
			  "{\"error\":{\"code\":\"body_too_large\",\"message\":"
			  "\"chunked request body is over the limit of 512 bytes\"}}");
	assert_int_equal(seen.calls, 0);
	client_close(&cl);
}

static void test_http__one_megabyte_header_gives_431_quickly(void **state)
{
	struct client cl;
	size_t n = 1024 * 1024;
	char *req = xmalloc(n + 128);
	int k;
	double t0 = now_ms();

	(void)state;
	k = snprintf(req, 128, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(req + k, 'a', n);
	memcpy(req + k + n, "\r\n\r\n", 4);
	client_open(&cl);
	client_send(&cl, req, (size_t)k + n + 4);	/* may be cut short by the close */
	assert_json_error(&cl, "HTTP/1.1 431 Request Header Fields Too Large",
			  "{\"error\":{\"code\":\"header_too_large\",\"message\":"
			  "\"request line and headers are over the limit of 4096 bytes\"}}");
	assert_true(now_ms() - t0 < 2000);
	assert_int_equal(seen.calls, 0);
	free(req);
	client_close(&cl);
}

static void test_http__long_url_counts_against_header_limit(void **state)
{
	struct client cl;
	char req[6000];
	int k;

	(void)state;
	k = snprintf(req, sizeof(req), "GET /");
	memset(req + k, 'u', 5000);
	snprintf(req + k + 5000, sizeof(req) - (size_t)k - 5000, " HTTP/1.1\r\nHost: t\r\n\r\n");
	client_open(&cl);
	client_sends(&cl, req);
	assert_json_error(&cl, "HTTP/1.1 431 Request Header Fields Too Large",
			  "{\"error\":{\"code\":\"header_too_large\",\"message\":"
			  "\"request line and headers are over the limit of 4096 bytes\"}}");
	client_close(&cl);
}

static void test_http__content_length_and_chunked_gives_400(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 400 Bad Request",
			  "{\"error\":{\"code\":\"bad_request\",\"message\":"
			  "\"request has both Content-Length and Transfer-Encoding; send only one\"}}");
	assert_true(wait_closed(&cl));
	assert_int_equal(seen.calls, 0);
	client_close(&cl);
}

static void test_http__duplicate_content_length_gives_400(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
			  "Content-Length: 3\r\n\r\nabc");
	assert_json_error(&cl, "HTTP/1.1 400 Bad Request",
			  "{\"error\":{\"code\":\"bad_request\",\"message\":"
			  "\"request has more than one Content-Length header\"}}");
	client_close(&cl);
}

static void test_http__invalid_content_length_gives_400(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc");
	assert_json_error(&cl, "HTTP/1.1 400 Bad Request",
			  "{\"error\":{\"code\":\"bad_request\",\"message\":"
			  "\"request has an invalid Content-Length header\"}}");
	client_close(&cl);
}

static void test_http__invalid_chunk_size_gives_400(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "zz\r\nhello\r\n0\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 400 Bad Request",
			  "{\"error\":{\"code\":\"bad_request\",\"message\":"
			  "\"request has an invalid chunk size in its chunked body\"}}");
	client_close(&cl);
}

static void test_http__malformed_request_line_gives_400(void **state)
{
	struct client cl;
	struct http_stats st;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GARBAGE\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 400 Bad Request",
			  "{\"error\":{\"code\":\"bad_request\",\"message\":"
			  "\"malformed request: invalid HTTP method\"}}");
	assert_true(wait_closed(&cl));
	http_server_stats(srv, &st);
	assert_int_equal(st.parse_errors, 1);
	client_close(&cl);
}

static void test_http__unsupported_http_version_gives_505(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "GET / HTTP/2.0\r\nHost: t\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 505 HTTP Version Not Supported",
			  "{\"error\":{\"code\":\"http_version_not_supported\",\"message\":"
			  "\"HTTP/2.0 is not supported; use HTTP/1.1\"}}");
	client_close(&cl);
}

static void test_http__transfer_coding_other_than_chunked_gives_501(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	client_sends(&cl, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
			  "0\r\n\r\n");
	assert_json_error(&cl, "HTTP/1.1 501 Not Implemented",
			  "{\"error\":{\"code\":\"unsupported_transfer_encoding\",\"message\":"
			  "\"Transfer-Encoding 'gzip, chunked' is not supported; send a body "
			  "with Content-Length or Transfer-Encoding: chunked\"}}");
	client_close(&cl);
}

/* --- compressed bodies -------------------------------------------------- */

static void test_http__gzip_body_is_inflated(void **state)
{
	const char *json = "{\"batch\":[{\"type\":\"track\",\"event\":\"a\"},"
			   "{\"type\":\"track\",\"event\":\"b\"}]}";
	struct buf gz = BUF_INIT;
	struct client cl;
	struct resp r;

	(void)state;
	gzip_into(&gz, json, strlen(json), 15 + 16);
	client_open(&cl);
	post_with(&cl, "Content-Encoding: gzip\r\n", gz.data, gz.len);
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_int_equal(seen.body.len, strlen(json));
	assert_string_equal(seen.body.data, json);
	resp_release(&r);

	/* deflate (zlib format), chunked, on the same connection. */
	buf_reset(&gz);
	gzip_into(&gz, "deflated!", 9, 15);
	client_sends(&cl, "POST /d HTTP/1.1\r\nHost: t\r\nContent-Encoding: deflate\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n");
	{
		char hex[16];

		snprintf(hex, sizeof(hex), "%zx\r\n", gz.len);
		client_sends(&cl, hex);
		assert_true(client_send(&cl, gz.data, gz.len));
		client_sends(&cl, "\r\n0\r\n\r\n");
	}
	read_response(&cl, &r);
	assert_string_equal(r.line, "HTTP/1.1 200 OK");
	assert_string_equal(seen.body.data, "deflated!");
	resp_release(&r);
	buf_release(&gz);
	client_close(&cl);
}

static long max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void test_http__gzip_bomb_gives_413_with_bounded_memory(void **state)
{
	struct http_limits lim;
	struct buf gz = BUF_INIT;
	static unsigned char zeros[65536];
	unsigned char tmp[65536];
	struct client cl;
	z_stream z;
	long before;

	(void)state;
	test_limits(&lim);
	lim.max_body_bytes = 512000;
	start(&lim);
	/* 50 MB of zeros, compressed a piece at a time (about 50 KB). */
	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
	for (int i = 0; i <= 800; i++) {
		int flush = i == 800 ? Z_FINISH : Z_NO_FLUSH;

		z.next_in = zeros;
		z.avail_in = i == 800 ? 0 : sizeof(zeros);
		do {
			z.next_out = tmp;
			z.avail_out = sizeof(tmp);
			deflate(&z, flush);
			buf_add(&gz, tmp, sizeof(tmp) - z.avail_out);
		} while (z.avail_out == 0);
	}
	deflateEnd(&z);
	assert_true(gz.len < 512000);

	before = max_rss_kb();
	client_open(&cl);
	post_with(&cl, "Content-Encoding: gzip\r\n", gz.data, gz.len);
	assert_json_error(&cl, "HTTP/1.1 413 Payload Too Large",
			  "{\"error\":{\"code\":\"body_too_large\",\"message\":"
			  "\"request body is over 512000 bytes once decompressed; "
			  "the limit is 512000 bytes\"}}");
	assert_int_equal(seen.calls, 0);
	/* Inflating it all would have cost 50 MB. */
	assert_true(max_rss_kb() - before < 16 * 1024);
	buf_release(&gz);
	client_close(&cl);
}

static void test_http__corrupt_gzip_gives_400(void **state)
{
	struct buf gz = BUF_INIT;
	struct client cl;

	(void)state;
	gzip_into(&gz, "hello hello hello hello", 23, 15 + 16);
	gz.data[12] ^= 0x55;
	gz.data[13] ^= 0x55;
	client_open(&cl);
	post_with(&cl, "Content-Encoding: gzip\r\n", gz.data, gz.len);
	{
		struct resp r;

		read_response(&cl, &r);
		assert_string_equal(r.line, "HTTP/1.1 400 Bad Request");
		assert_non_null(strstr(r.body.data,
			"{\"error\":{\"code\":\"invalid_gzip\",\"message\":"
			"\"request body is not valid gzip or deflate data: "));
		resp_release(&r);
	}
	assert_int_equal(seen.calls, 0);
	client_close(&cl);

	/* Not compressed at all. */
	client_open(&cl);
	post_with(&cl, "Content-Encoding: gzip\r\n", "plain text", 10);
	{
		struct resp r;

		read_response(&cl, &r);
		assert_string_equal(r.line, "HTTP/1.1 400 Bad Request");
		assert_non_null(strstr(r.body.data, "\"code\":\"invalid_gzip\""));
		resp_release(&r);
	}
	client_close(&cl);
	buf_release(&gz);
}

static void test_http__truncated_gzip_gives_400(void **state)
{
	struct buf gz = BUF_INIT;
	struct client cl;

	(void)state;
	gzip_into(&gz, "hello hello hello hello", 23, 15 + 16);
	client_open(&cl);
	post_with(&cl, "Content-Encoding: gzip\r\n", gz.data, gz.len - 6);
	assert_json_error(&cl, "HTTP/1.1 400 Bad Request",
			  "{\"error\":{\"code\":\"invalid_gzip\",\"message\":"
			  "\"request body ends before the end of its compressed stream\"}}");
	assert_int_equal(seen.calls, 0);
	buf_release(&gz);
	client_close(&cl);
}

static void test_http__unknown_content_encoding_gives_415(void **state)
{
	struct client cl;

	(void)state;
	client_open(&cl);
	post_with(&cl, "Content-Encoding: br\r\n", "xxxx", 4);
	assert_json_error(&cl, "HTTP/1.1 415 Unsupported Media Type",
			  "{\"error\":{\"code\":\"unsupported_encoding\",\"message\":"
			  "\"Content-Encoding 'br' is not supported; use gzip, deflate or identity\"}}");
	assert_int_equal(seen.calls, 0);
	client_close(&cl);
}

/* --- load limits -------------------------------------------------------- */

static void test_http__inflight_limit_gives_503_with_retry_after(void **state)
{
	struct client cl[5];
	struct resp r;
	struct http_stats st;

	(void)state;
	mode = MODE_HOLD;
	for (int i = 0; i < 4; i++) {
		client_open(&cl[i]);
		client_sends(&cl[i], "GET /held HTTP/1.1\r\nHost: t\r\n\r\n");
		wait_calls(i + 1);
	}
	client_open(&cl[4]);
	client_sends(&cl[4], "GET /extra HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl[4], &r);
	assert_string_equal(r.line, "HTTP/1.1 503 Service Unavailable");
	assert_string_equal(resp_header(&r, "Retry-After"), "1");
	assert_string_equal(r.body.data,
			    "{\"error\":{\"code\":\"overloaded\",\"message\":"
			    "\"the server is busy with 4 requests, its limit; retry shortly\"}}");
	resp_release(&r);
	assert_int_equal(seen.calls, 4);
	http_server_stats(srv, &st);
	assert_int_equal(st.inflight_requests, 4);
	assert_int_equal(st.overloaded, 1);

	/* The body was read, so the connection stays usable once there is room. */
	http_reply(held[0], 200, "text/plain", "ok", 2);
	mode = MODE_ECHO;
	client_sends(&cl[4], "GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&cl[4], &r);
	assert_string_equal(r.body.data, "path=/now");
	resp_release(&r);
	for (int i = 1; i < 4; i++)
		http_reply(held[i], 200, "text/plain", "ok", 2);
	for (int i = 0; i < 5; i++)
		client_close(&cl[i]);
	pump_for(20);
	http_server_stats(srv, &st);
	assert_int_equal(st.inflight_requests, 0);
	assert_int_equal(st.inflight_bytes, 0);
}

static void test_http__inflight_bytes_limit_refuses_before_body(void **state)
{
	struct http_limits lim;
	struct client a, b;
	struct resp r;
	char body[300];

	(void)state;
	test_limits(&lim);
	lim.max_inflight_bytes = 400;
	start(&lim);
	mode = MODE_HOLD;
	memset(body, 'b', sizeof(body));
	client_open(&a);
	post_with(&a, "", body, sizeof(body));
	wait_calls(1);
	client_open(&b);
	client_sends(&b, "POST /in HTTP/1.1\r\nHost: t\r\nContent-Length: 300\r\n\r\n");
	read_response(&b, &r);
	assert_string_equal(r.line, "HTTP/1.1 503 Service Unavailable");
	assert_string_equal(resp_header(&r, "Retry-After"), "1");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	assert_string_equal(r.body.data,
			    "{\"error\":{\"code\":\"overloaded\",\"message\":"
			    "\"the server holds 300 bytes of requests in progress and its limit "
			    "is 400 bytes; retry shortly\"}}");
	resp_release(&r);
	http_reply(held[0], 200, "text/plain", "ok", 2);
	client_close(&a);
	client_close(&b);
}

static void test_http__connection_limit_gives_503(void **state)
{
	struct http_limits lim;
	struct client cl[3];
	struct resp r;

	(void)state;
	test_limits(&lim);
	lim.max_connections = 2;
	start(&lim);
	for (int i = 0; i < 2; i++) {
		client_open(&cl[i]);
		client_sends(&cl[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
		read_response(&cl[i], &r);
		resp_release(&r);
	}
	client_open(&cl[2]);
	read_response(&cl[2], &r);
	assert_string_equal(r.line, "HTTP/1.1 503 Service Unavailable");
	assert_string_equal(resp_header(&r, "Retry-After"), "1");
	assert_string_equal(r.body.data,
			    "{\"error\":{\"code\":\"overloaded\",\"message\":"
			    "\"the server has 2 open connections, its limit; retry shortly\"}}");
	resp_release(&r);
	assert_true(wait_closed(&cl[2]));
	for (int i = 0; i < 3; i++)
		client_close(&cl[i]);
}

/* --- lifetimes ---------------------------------------------------------- */

static void test_http__client_reset_while_held_then_reply_is_safe(void **state)
{
	struct client cl;
	struct http_stats st;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
	wait_calls(1);
	client_reset(&cl);
	pump_for(50);
	http_server_stats(srv, &st);
	assert_int_equal(st.connections_open, 0);	/* the connection is gone ... */
	assert_true(http_request_client_gone(held[0]));	/* ... the request is not */
	assert_string_equal(http_request_peer(held[0]), "127.0.0.1");
	{
		size_t len;

		assert_string_equal(http_request_body(held[0], &len), "abc");
	}
	http_reply(held[0], 200, "text/plain", "too late", 8);
	http_server_stats(srv, &st);
	assert_int_equal(st.replies_dropped, 1);
	assert_int_equal(st.inflight_requests, 0);
}

static void test_http__client_close_while_held_then_reply_is_safe(void **state)
{
	struct client cl;
	struct http_stats st;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_calls(1);
	client_close(&cl);
	pump_for(30);
	assert_true(http_request_client_gone(held[0]));
	http_reply(held[0], 200, "text/plain", "too late", 8);
	pump_for(50);
	http_server_stats(srv, &st);
	assert_int_equal(st.connections_open, 0);
	assert_int_equal(st.inflight_requests, 0);
}

static void test_http__free_with_held_request_then_reply_is_safe(void **state)
{
	struct client cl;
	struct http_limits lim;

	(void)state;
	mode = MODE_HOLD;
	client_open(&cl);
	client_sends(&cl, "GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_calls(1);
	http_server_free(srv);
	srv = NULL;
	assert_true(http_request_client_gone(held[0]));
	http_reply(held[0], 200, "text/plain", "x", 1);
	client_close(&cl);
	test_limits(&lim);
	start(&lim);
}

static void on_shutdown_done(void *arg)
{
	(void)arg;
	done_calls++;
}

static void test_http__shutdown_waits_for_inflight_reply(void **state)
{
	struct client busy, idle, late;
	struct resp r;

	(void)state;
	client_open(&idle);
	client_sends(&idle, "GET /i HTTP/1.1\r\nHost: t\r\n\r\n");
	read_response(&idle, &r);
	resp_release(&r);
	mode = MODE_HOLD;
	client_open(&busy);
	client_sends(&busy, "GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
	wait_calls(2);

	http_server_shutdown(srv, on_shutdown_done, NULL);
	assert_true(wait_closed(&idle));	/* idle keep-alive: closed at once */
	pump_for(50);
	assert_int_equal(done_calls, 0);	/* a request is still in flight */
	assert_int_equal(http_server_port(srv), -1);
	client_open(&late);			/* nobody listens any more */
	assert_true(wait_closed(&late));

	http_reply(held[0], 200, "text/plain", "done", 4);
	read_response(&busy, &r);
	assert_string_equal(r.body.data, "done");
	assert_string_equal(resp_header(&r, "Connection"), "close");
	resp_release(&r);
	assert_true(wait_closed(&busy));
	/* The server drains the connection until the client closes its end. */
	client_close(&busy);
	pump_for(20);
	assert_int_equal(done_calls, 1);
	client_close(&idle);
	client_close(&late);
}

static void test_http__shutdown_with_nothing_open_calls_done(void **state)
{
	(void)state;
	http_server_shutdown(srv, on_shutdown_done, NULL);
	assert_int_equal(done_calls, 0);	/* from the loop, not from inside */
	pump_for(10);
	assert_int_equal(done_calls, 1);
}

static void test_http__listen_fd_and_errors(void **state)
{
	struct http_limits lim;
	struct http_server *other;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	(void)state;
	/* The port is taken by srv. */
	test_limits(&lim);
	other = http_server_new(base, &lim, handler, NULL);
	assert_int_equal(http_server_listen(other, "127.0.0.1", port), WEFT_EIO);
	assert_int_equal(http_server_port(other), -1);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	assert_int_equal(http_server_listen_fd(other, fd), 0);
	assert_int_equal(http_server_port(other), ntohs(sin.sin_port));
	assert_int_equal(http_server_listen(other, "127.0.0.1", 0), WEFT_ECONFLICT);
	{
		struct client cl;
		struct resp r;
		int saved = port;

		port = http_server_port(other);
		client_open(&cl);
		client_sends(&cl, "GET /fd HTTP/1.1\r\nHost: t\r\n\r\n");
		read_response(&cl, &r);
		assert_string_equal(r.body.data, "path=/fd");
		resp_release(&r);
		client_close(&cl);
		port = saved;
	}
	http_server_free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_http__get_reaches_handler_with_exact_fields),
		T(test_http__post_body_reaches_handler),
		T(test_http__request_sent_byte_by_byte),
		T(test_http__pipelined_large_replies_keep_order_under_backpressure),
		T(test_http__header_lookup_and_iteration),
		T(test_http__absolute_form_url_gives_path),
		T(test_http__keep_alive_two_requests_one_connection),
		T(test_http__pipelined_requests_answered_in_order),
		T(test_http__pipelined_behind_held_request_waits_for_reply),
		T(test_http__async_reply_from_timer),
		T(test_http__head_reply_has_length_but_no_body),
		T(test_http__json_error_is_escaped),
		T(test_http__reply_headers_added_and_injection_dropped),
		T(test_http__connection_close_is_honoured),
		T(test_http__http10_closes_unless_keep_alive),
		T(test_http__half_closed_client_still_gets_reply),
		T(test_http__idle_timeout_closes_connection),
		T(test_http__header_timeout_gives_408),
		T(test_http__body_timeout_gives_408),
		T(test_http__content_length_over_limit_gives_413_before_body),
		T(test_http__expect_continue_within_limit_gets_100),
		T(test_http__expect_continue_over_limit_gets_413_at_once),
		T(test_http__body_at_limit_is_accepted),
		T(test_http__chunked_body_is_assembled),
		T(test_http__chunked_body_over_limit_gives_413),
		T(test_http__one_megabyte_header_gives_431_quickly),
		T(test_http__long_url_counts_against_header_limit),
		T(test_http__content_length_and_chunked_gives_400),
		T(test_http__duplicate_content_length_gives_400),
		T(test_http__invalid_content_length_gives_400),
		T(test_http__invalid_chunk_size_gives_400),
		T(test_http__malformed_request_line_gives_400),
		T(test_http__unsupported_http_version_gives_505),
		T(test_http__transfer_coding_other_than_chunked_gives_501),
		T(test_http__gzip_body_is_inflated),
		T(test_http__gzip_bomb_gives_413_with_bounded_memory),
		T(test_http__corrupt_gzip_gives_400),
		T(test_http__truncated_gzip_gives_400),
		T(test_http__unknown_content_encoding_gives_415),
		T(test_http__inflight_limit_gives_503_with_retry_after),
		T(test_http__inflight_bytes_limit_refuses_before_body),
		T(test_http__connection_limit_gives_503),
		T(test_http__client_reset_while_held_then_reply_is_safe),
		T(test_http__client_close_while_held_then_reply_is_safe),
		T(test_http__free_with_held_request_then_reply_is_safe),
		T(test_http__shutdown_waits_for_inflight_reply),
		T(test_http__shutdown_with_nothing_open_calls_done),
		T(test_http__listen_fd_and_errors),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
