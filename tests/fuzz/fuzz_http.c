/*
 * Fuzz harness for api/http.c: the input is the byte stream one client
 * sends on one connection. The server listens once, on an abstract unix
 * socket (no port, no file, nothing to clean up), and each input is one
 * connection: connect, send everything, shut the write side, then run the
 * event loop until the server has closed the connection and freed it.
 *
 * The handler answers 200 "ok" at once, or, for a path starting with
 * /defer, from a later turn of the loop (the request is held while more
 * pipelined input and the client's EOF arrive); a path starting with /close
 * also asks for Connection: close, and /echo sends the body back.
 *
 * Checks, beyond the sanitizers: what the handler sees is well formed (NUL
 * ended strings, a body within the limit), the connection always ends
 * (a watchdog catches a server that waits forever on a closed client), and
 * the bytes sent back are a sequence of complete responses: one 200 per
 * request the handler saw, in order, and at most one error reply, last.
 */
#define _GNU_SOURCE	/* memmem */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "api/http.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "tests/fuzz/fuzz.h"

#define MAX_HEADER_BYTES 4096
#define MAX_BODY_BYTES 8192
#define MAX_HELD 256		/* requests handled in one input, at most */
#define WATCHDOG_SECONDS 5

static struct event_base *base;
static struct http_server *server;
static struct sockaddr_un addr;
static socklen_t addr_len;
static struct event *defer_ev;

/* One input's state. */
static struct http_request *deferred[MAX_HELD];
static size_t ndeferred;
static bool head_method[MAX_HELD];	/* of each request handled, in order */
static size_t nhandled;

static void answer(struct http_request *req)
{
	const char *path = http_request_path(req);
	const char *body;
	size_t len;

	if (strncmp(path, "/close", 6) == 0)
		http_reply_add_header(req, "Connection", "close");
	http_reply_add_header(req, "X-Fuzz", "1");
	if (strncmp(path, "/echo", 5) == 0) {
		body = http_request_body(req, &len);
		http_reply(req, 200, "application/octet-stream", body, len);
		return;
	}
	http_reply(req, 200, "text/plain", "ok", 2);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
	size_t n = ndeferred;

	(void)fd;
	(void)what;
	(void)arg;
	ndeferred = 0;
	for (size_t i = 0; i < n; i++)
		answer(deferred[i]);
}

/* Everything the accessors return must be usable as the header says. */
static void check_request(struct http_request *req)
{
	const char *method = http_request_method(req);
	const char *path = http_request_path(req);
	const char *query = http_request_query(req);
	const char *name, *value, *body;
	size_t len, total = 0;

	fuzz_check(method && path && query, "a request accessor returned NULL");
	total += strlen(method) + strlen(path) + strlen(query);
	for (size_t i = 0; http_request_header_at(req, i, &name, &value); i++) {
		fuzz_check(name && value, "header %zu is NULL", i);
		total += strlen(name) + strlen(value);
		fuzz_check(http_request_header(req, name), "header '%s' not found by name", name);
	}
	fuzz_check(total <= MAX_HEADER_BYTES, "the handler got %zu bytes of head, over %d",
		   total, MAX_HEADER_BYTES);
	body = http_request_body(req, &len);
	fuzz_check(body && body[len] == '\0', "the body is not followed by a NUL");
	fuzz_check(len <= MAX_BODY_BYTES, "the handler got a body of %zu bytes, over %d",
		   len, MAX_BODY_BYTES);
	fuzz_check(strlen(http_request_peer(req)) > 0, "no peer");
	fuzz_check(strlen(http_request_id(req)) == 16, "request id is not 16 digits");
	(void)http_request_client_gone(req);
}

static void handler(struct http_request *req, void *arg)
{
	(void)arg;
	check_request(req);
	fuzz_check(nhandled < MAX_HELD, "more than %d requests in one input", MAX_HELD);
	head_method[nhandled++] = strcmp(http_request_method(req), "HEAD") == 0;
	if (strncmp(http_request_path(req), "/defer", 6) == 0) {
		deferred[ndeferred++] = req;
		event_active(defer_ev, EV_TIMEOUT, 1);
		return;
	}
	answer(req);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct http_limits lim;
	int fd;

	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	fuzz_check(base, "event_base_new failed");
	http_limits_init(&lim);
	lim.max_header_bytes = MAX_HEADER_BYTES;
	lim.max_body_bytes = MAX_BODY_BYTES;
	server = http_server_new(base, &lim, handler, NULL);
	defer_ev = event_new(base, -1, 0, on_defer, NULL);

	/* An abstract address: the leading NUL keeps it off the file system. */
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "weft-fuzz-http-%ld",
		 (long)getpid());
	addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
			       strlen(addr.sun_path + 1));
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	fuzz_check(fd >= 0 && bind(fd, (struct sockaddr *)&addr, addr_len) == 0,
		   "cannot bind the unix socket: %s", strerror(errno));
	fuzz_check(http_server_listen_fd(server, fd) == 0, "http_server_listen_fd failed");
	return 0;
}

/* The client's side of one connection. */
struct client {
	int fd;
	const uint8_t *data;
	size_t len;
	size_t sent;
	bool shut;
	bool eof;
	struct buf in;		/* everything the server sent */
};

static void client_pump(struct client *c)
{
	char tmp[16384];
	ssize_t n;

	while (!c->shut && c->sent < c->len) {
		n = send(c->fd, c->data + c->sent, c->len - c->sent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			c->sent = c->len;	/* the server closed: stop sending */
			break;
		}
		c->sent += (size_t)n;
	}
	if (!c->shut && c->sent == c->len) {
		shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	while (!c->eof) {
		n = recv(c->fd, tmp, sizeof(tmp), 0);
		if (n > 0) {
			buf_add(&c->in, tmp, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		c->eof = true;	/* EOF, or a reset: the server is done with us */
	}
}

static void on_client(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	client_pump(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

static size_t content_length(const char *head, size_t n, bool *found)
{
	static const char name[] = "\r\nContent-Length: ";
	const char *p = memmem(head, n, name, sizeof(name) - 1);

	*found = p != NULL;
	return p ? strtoul(p + sizeof(name) - 1, NULL, 10) : 0;
}

/*
 * An error reply is {"error":{"code":..,"message":..}}. Its message may quote
 * the request's own bytes (a Transfer-Encoding it refuses), which need not
 * be UTF-8, so bytes over 0x7f are read as '?': this checks the escaping
 * and the shape, not the encoding.
 */
static void check_error_body(const char *body, size_t len)
{
	char *ascii = malloc(len + 1);
	json_t *j;

	fuzz_check(ascii, "out of memory");
	for (size_t i = 0; i < len; i++)
		ascii[i] = (unsigned char)body[i] > 0x7f ? '?' : body[i];
	j = json_loadb(ascii, len, 0, NULL);
	fuzz_check(json_is_string(json_object_get(json_object_get(j, "error"), "code")) &&
		   json_is_string(json_object_get(json_object_get(j, "error"), "message")),
		   "error reply body is not the JSON error: '%.*s'", (int)len, body);
	json_decref(j);
	free(ascii);
}

/*
 * The reply stream: interim 100s, one 200 per handled request in order
 * (bodiless for HEAD), then at most one error reply whose body is the JSON
 * error (absent if it answered a HEAD).
 */
static void check_replies(const char *out, size_t len)
{
	size_t pos = 0, replied = 0;
	bool closed = false;

	while (pos < len) {
		const char *r = out + pos, *end;
		size_t rest = len - pos, cl;
		int status;
		bool has_cl;

		fuzz_check(!closed, "bytes after the closing error reply: '%.*s'",
			   (int)rest, r);
		fuzz_check(rest >= 13 && memcmp(r, "HTTP/1.1 ", 9) == 0,
			   "reply does not start with a status line: '%.*s'", (int)rest, r);
		status = atoi(r + 9);
		end = memmem(r, rest, "\r\n\r\n", 4);
		fuzz_check(end, "reply head is not terminated");
		cl = content_length(r, (size_t)(end - r) + 2, &has_cl);
		pos += (size_t)(end - r) + 4;
		rest = len - pos;
		if (status == 100) {
			fuzz_check(!has_cl, "100 Continue with a Content-Length");
			continue;
		}
		fuzz_check(has_cl, "a %d reply without Content-Length", status);
		if (status == 200) {
			fuzz_check(replied < nhandled, "more 200 replies than requests handled");
			if (!head_method[replied++]) {
				fuzz_check(cl <= rest, "200 reply is cut short");
				pos += cl;
			}
			continue;
		}
		fuzz_check(status >= 400 && status < 600, "unexpected status %d", status);
		closed = true;
		if (rest == 0)
			continue;	/* the error answered a HEAD */
		fuzz_check(cl == rest, "error reply body is %zu bytes, Content-Length %zu",
			   rest, cl);
		check_error_body(out + pos, cl);
		pos += cl;
	}
	fuzz_check(replied == nhandled, "%zu requests handled, %zu replies", nhandled, replied);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client c = { .data = data, .len = size };
	struct timeval limit = { WATCHDOG_SECONDS, 0 };
	struct http_stats st;
	struct event *ev, *watchdog;
	bool expired = false, writing;

	nhandled = 0;
	ndeferred = 0;
	buf_init(&c.in);
	c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	fuzz_check(c.fd >= 0, "socket: %s", strerror(errno));
	fuzz_check(connect(c.fd, (struct sockaddr *)&addr, addr_len) == 0,
		   "connect: %s", strerror(errno));
	client_pump(&c);
	/* Inputs are far smaller than a socket buffer, so one send took them;
	 * should one not have, writability wakes the loop as well. */
	writing = !c.shut;
	ev = event_new(base, c.fd, writing ? EV_READ | EV_WRITE | EV_PERSIST
					   : EV_READ | EV_PERSIST, on_client, &c);
	event_add(ev, NULL);
	watchdog = evtimer_new(base, on_watchdog, &expired);
	evtimer_add(watchdog, &limit);

	for (;;) {
		http_server_stats(server, &st);
		if (c.eof && st.connections_open == 0 && ndeferred == 0)
			break;
		fuzz_check(!expired, "the connection is still open after %d s (client eof %d, "
			   "connections %llu, handled %zu)", WATCHDOG_SECONDS, c.eof,
			   (unsigned long long)st.connections_open, nhandled);
		if (writing && c.shut) {
			/* Sending is over: only the server's replies wake us now. */
			writing = false;
			event_del(ev);
			event_assign(ev, base, c.fd, EV_READ | EV_PERSIST, on_client, &c);
			event_add(ev, NULL);
		}
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(watchdog);
	event_free(ev);
	close(c.fd);

	http_server_stats(server, &st);
	fuzz_check(st.inflight_requests == 0 && st.inflight_bytes == 0,
		   "%llu requests (%llu bytes) still in flight",
		   (unsigned long long)st.inflight_requests,
		   (unsigned long long)st.inflight_bytes);
	check_replies(c.in.data ? c.in.data : "", c.in.len);
	buf_release(&c.in);
	return 0;
}
