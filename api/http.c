/*
 * HTTP/1.1 server on libevent bufferevents, framed by http-parser; see
 * http.h for the contract and docs/http.md for the limits and error codes.
 *
 * Each connection runs one parser over its input buffer and holds at most
 * one request: while the handler has it, the parser is paused and further
 * input waits in the buffer (bounded by a read watermark). A reply unpauses
 * the parser, so pipelined requests are answered in order without a queue.
 *
 * The limits are enforced where the bytes arrive: header bytes in the data
 * callbacks, Content-Length in on_headers_complete before any body byte is
 * read, chunk sizes in on_chunk_header, and decompressed size inside the
 * inflate loop, whose output buffer never grows past max_body_bytes + 1.
 *
 * A request whose connection dies while the handler has it is detached
 * (req->conn becomes NULL) and freed by the reply, so the handler never
 * holds a dangling pointer. Connections themselves are only freed from
 * libevent callbacks, never while the parser runs over their input.
 */
#include "api/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <http_parser.h>
#include <zlib.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/log.h"

/* Input kept unparsed while a request is with the handler. */
#define CONN_READ_HIGH (64 * 1024)
/* Stop parsing pipelined requests while more than this waits to be sent. */
#define CONN_OUT_HIGH (256 * 1024)
/* How long a last reply may take to flush, and how long we then drain. */
#define CONN_FLUSH_MS 10000
#define CONN_LINGER_MS 2000
/* Per-request buffers bigger than this are freed rather than reused. */
#define REQ_KEEP_BYTES (64 * 1024)
#define REQ_KEEP_HEADERS 64
/* Bytes of a request line beyond the URL, and of a header line beyond its
 * name and value, for counting against max_header_bytes. */
#define REQ_LINE_EXTRA 16
#define HEADER_LINE_EXTRA 4
#define ACCEPT_RETRY_MS 100
#define LISTEN_BACKLOG 1024

enum conn_state {
	CONN_IDLE,	/* between requests */
	CONN_HEADERS,	/* reading a request line and headers */
	CONN_BODY,	/* reading a body */
	CONN_HELD,	/* a request is with the handler; the parser is paused */
	CONN_CLOSING,	/* a last reply is being flushed */
	CONN_LINGER,	/* write side shut; input is dropped until EOF */
};

enum req_part { PART_NONE, PART_URL, PART_FIELD, PART_VALUE };

/* A header as offsets into the request's head buffer. */
struct hdr {
	uint32_t name;
	uint32_t name_len;
	uint32_t value;
	uint32_t value_len;
};

struct http_request {
	struct http_server *srv;	/* NULL once the server is freed */
	struct conn *conn;		/* NULL once the connection is gone */
	struct http_request *prev;	/* the server's list of held requests */
	struct http_request *next;
	struct buf head;		/* URL, header names and values, each NUL-ended */
	struct hdr *hdrs;
	size_t nhdrs;
	size_t hdrs_cap;
	size_t head_bytes;		/* counted against max_header_bytes */
	size_t url_len;			/* the URL starts head */
	enum req_part part;		/* what the last data callback appended to */
	const char *path;		/* into head, set once the headers are done */
	const char *query;
	char *body;
	size_t body_len;
	size_t body_cap;
	uint64_t wire_bytes;		/* body bytes as sent, before inflating */
	struct buf extra;		/* reply headers from http_reply_add_header */
	unsigned char method;		/* enum http_method */
	bool headers_done;
	bool inflate;			/* Content-Encoding gzip or deflate */
	bool inflate_end;		/* the compressed stream is complete */
	bool keep_alive;
	bool http10;
	bool held;			/* with the handler */
	int reply_fd;			/* http_reply_file: the file to send, plus one; 0: none */
	char id[17];
	char peer[INET6_ADDRSTRLEN];	/* copied when the connection goes */
};

struct conn {
	struct http_server *srv;
	struct conn *prev;
	struct conn *next;
	struct bufferevent *bev;
	struct event *timer;
	struct event *kick;		/* resumes the connection from the loop */
	http_parser parser;
	enum conn_state state;
	struct http_request *req;	/* being read, or with the handler */
	struct http_request *spare;	/* a finished request kept for reuse */
	z_stream *z;			/* made for the first compressed body */
	int fail_status;		/* set by a parser callback that refuses */
	const char *fail_code;
	char fail_msg[200];
	bool in_parse;			/* inside http_parser_execute */
	bool rd_eof;			/* the client closed its end */
	bool reject;			/* turned away at max_connections */
	char peer[INET6_ADDRSTRLEN];
};

struct http_server {
	struct event_base *base;
	struct http_limits lim;
	http_handler_fn handler;
	void *arg;
	struct evconnlistener *listener;
	struct event *accept_retry;
	struct event *done_ev;
	void (*done)(void *);
	void *done_arg;
	bool shutting_down;
	struct conn *conns;
	struct http_request *held;	/* requests with the handler */
	unsigned nconns;		/* counted against max_connections */
	unsigned nrejecting;		/* connections flushing a 503 */
	const struct timeval *tv_header;	/* common timeouts; NULL is off */
	const struct timeval *tv_idle;
	const struct timeval *tv_body;
	const struct timeval *tv_flush;
	const struct timeval *tv_linger;
	http_parser_settings settings;
	struct buf scratch;		/* reply heads are built here */
	uint64_t rng;
	struct http_stats stats;
};

static void conn_free(struct conn *c);
static void conn_parse(struct conn *c);
static void conn_kick(struct conn *c);

static void fatal_oom(const char *what)
{
	fprintf(stderr, "level=fatal msg=\"out of memory\" what=%s\n", what);
	abort();
}

/* libevent returns NULL from its constructors only when memory runs out. */
static void *must(void *p, const char *what)
{
	if (!p)
		fatal_oom(what);
	return p;
}

/* splitmix64: request ids need to be unique, not secret. */
static uint64_t next_random(struct http_server *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void buf_add_uint(struct buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_add(b, tmp + i, sizeof(tmp) - i);
}

static bool has_crlf(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* --- requests ----------------------------------------------------------- */

static void request_free(struct http_request *r)
{
	buf_release(&r->head);
	buf_release(&r->extra);
	free(r->hdrs);
	free(r->body);
	free(r);
}

/* Takes the connection's spare request or makes one, ready for a new message. */
static struct http_request *request_get(struct conn *c)
{
	struct http_request *r = c->spare;
	uint64_t v;

	if (r)
		c->spare = NULL;
	else
		r = xcalloc(1, sizeof(*r));
	r->srv = c->srv;
	r->conn = c;
	r->part = PART_NONE;
	r->head_bytes = REQ_LINE_EXTRA;
	r->method = HTTP_GET;	/* until the request line says otherwise */
	v = next_random(c->srv);
	for (int i = 15; i >= 0; i--) {
		r->id[i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	}
	r->id[16] = '\0';
	return r;
}

/* Keeps r as the connection's spare, or frees it if there already is one. */
static void request_recycle(struct conn *c, struct http_request *r)
{
	if (c->spare) {
		request_free(r);
		return;
	}
	if (r->head.cap > REQ_KEEP_BYTES)
		buf_release(&r->head);
	else
		buf_reset(&r->head);
	if (r->extra.cap > REQ_KEEP_BYTES)
		buf_release(&r->extra);
	else
		buf_reset(&r->extra);
	if (r->hdrs_cap > REQ_KEEP_HEADERS) {
		free(r->hdrs);
		r->hdrs = NULL;
		r->hdrs_cap = 0;
	}
	if (r->body_cap > REQ_KEEP_BYTES) {
		free(r->body);
		r->body = NULL;
		r->body_cap = 0;
	}
	r->nhdrs = 0;
	r->url_len = 0;
	r->path = NULL;
	r->query = NULL;
	r->body_len = 0;
	r->wire_bytes = 0;
	r->headers_done = false;
	r->inflate = false;
	r->inflate_end = false;
	r->keep_alive = false;
	r->http10 = false;
	r->held = false;
	c->spare = r;
}

/* Ends what the data callbacks were appending: the URL, a name or a value. */
static void request_end_part(struct http_request *r)
{
	struct hdr *h = r->nhdrs ? &r->hdrs[r->nhdrs - 1] : NULL;

	switch (r->part) {
	case PART_NONE:
		return;
	case PART_URL:
		r->url_len = r->head.len;
		break;
	case PART_FIELD:
		/* A header with an empty value. */
		h->name_len = (uint32_t)(r->head.len - h->name);
		buf_addc(&r->head, '\0');
		h->value = (uint32_t)r->head.len;
		h->value_len = 0;
		break;
	case PART_VALUE:
		/* http-parser leaves trailing whitespace in values. */
		while (r->head.len > h->value &&
		       (r->head.data[r->head.len - 1] == ' ' ||
			r->head.data[r->head.len - 1] == '\t'))
			r->head.len--;
		h->value_len = (uint32_t)(r->head.len - h->value);
		break;
	}
	buf_addc(&r->head, '\0');
	r->part = PART_NONE;
}

/*
 * Splits the URL into path and query, in place. Origin form ("/a?b") is the
 * norm; absolute form ("http://h/a?b") is allowed by HTTP/1.1.
 */
static void request_split_url(struct http_request *r)
{
	char *url = r->head.data;
	char *end = url + r->url_len;
	char *p;

	if (r->url_len && url[0] != '/' && url[0] != '*') {
		struct http_parser_url u;

		http_parser_url_init(&u);
		if (http_parser_parse_url(url, r->url_len, r->method == HTTP_CONNECT, &u) == 0 &&
		    (u.field_set & (1 << UF_PATH))) {
			url += u.field_data[UF_PATH].off;
		} else {
			r->path = "";
			r->query = "";
			return;
		}
	}
	p = memchr(url, '#', (size_t)(end - url));
	if (p) {
		*p = '\0';
		end = p;
	}
	r->path = url;
	p = memchr(url, '?', (size_t)(end - url));
	if (p) {
		*p = '\0';
		r->query = p + 1;
	} else {
		r->query = end;
	}
}

static const char *request_header(const struct http_request *r, const char *name)
{
	for (size_t i = 0; i < r->nhdrs; i++) {
		if (strcasecmp(r->head.data + r->hdrs[i].name, name) == 0)
			return r->head.data + r->hdrs[i].value;
	}
	return NULL;
}

/* Takes r off the server's held list and out of the in-flight budget. */
static void request_unhold(struct http_request *r)
{
	struct http_server *s = r->srv;

	r->held = false;
	if (!s)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		s->held = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	s->stats.inflight_requests--;
	s->stats.inflight_bytes -= r->body_len;
}

/* --- the server's own bookkeeping --------------------------------------- */

static void server_maybe_done(struct http_server *s)
{
	if (s->shutting_down && s->done && s->nconns == 0 && s->nrejecting == 0 &&
	    s->stats.inflight_requests == 0)
		event_active(s->done_ev, EV_TIMEOUT, 1);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;
	void (*done)(void *) = s->done;

	(void)fd;
	(void)what;
	s->done = NULL;
	if (done)
		done(s->done_arg);
}

/* True (and the reason in msg) when a request of body bytes must wait. */
static bool server_over_budget(struct http_server *s, uint64_t bytes, char *msg, size_t n)
{
	const struct http_limits *lim = &s->lim;

	if (lim->max_inflight_requests &&
	    s->stats.inflight_requests >= lim->max_inflight_requests) {
		snprintf(msg, n, "the server is busy with %zu requests, its limit; retry shortly",
			 lim->max_inflight_requests);
		return true;
	}
	if (lim->max_inflight_bytes &&
	    s->stats.inflight_bytes + bytes > lim->max_inflight_bytes) {
		snprintf(msg, n, "the server holds %llu bytes of requests in progress and "
			 "its limit is %zu bytes; retry shortly",
			 (unsigned long long)s->stats.inflight_bytes, lim->max_inflight_bytes);
		return true;
	}
	return false;
}

/* --- connections -------------------------------------------------------- */

static void conn_timer(struct conn *c, const struct timeval *tv)
{
	if (tv)
		event_add(c->timer, tv);
	else
		event_del(c->timer);
}

static const char *status_reason(int status)
{
	const char *s = http_status_str((enum http_status)status);

	return strcmp(s, "<unknown>") == 0 ? "Unknown" : s;
}

/* Queues the reply's head and body: one evbuffer_add each. */
static void conn_write_reply(struct conn *c, struct http_request *r, int status,
			     const char *content_type, const char *body, size_t len, bool closing)
{
	struct http_server *s = c->srv;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct buf *h = &s->scratch;
	bool bodiless = status < 200 || status == 204 || status == 304;

	buf_reset(h);
	buf_adds(h, "HTTP/1.1 ");
	buf_add_uint(h, (uint64_t)status);
	buf_addc(h, ' ');
	buf_adds(h, status_reason(status));
	if (content_type) {
		buf_adds(h, "\r\nContent-Type: ");
		buf_adds(h, content_type);
	}
	if (!bodiless) {
		buf_adds(h, "\r\nContent-Length: ");
		buf_add_uint(h, len);
	}
	buf_adds(h, "\r\nRequest-Id: ");
	buf_add(h, r->id, 16);
	if (closing)
		buf_adds(h, "\r\nConnection: close");
	else if (r->http10)
		buf_adds(h, "\r\nConnection: keep-alive");
	buf_adds(h, "\r\n");
	buf_add(h, r->extra.data, r->extra.len);
	buf_adds(h, "\r\n");
	evbuffer_add(out, h->data, h->len);
	if (r->reply_fd) {
		int fd = r->reply_fd - 1;

		r->reply_fd = 0;
		/* Sent from the file (sendfile where it can); libevent closes fd. */
		if (!len || bodiless || r->method == HTTP_HEAD) {
			close(fd);
		} else if (evbuffer_add_file(out, fd, 0, (ev_off_t)len)) {
			log_error("http_file_unsent", "request_id=%s", r->id);
			close(fd);
		}
	} else if (len && !bodiless && r->method != HTTP_HEAD) {
		evbuffer_add(out, body, len);
	}
	if (status >= 100 && status < 600)
		s->stats.replies[status / 100]++;
}

/* After a last reply: flush it, then shut our side and drain until EOF. */
static void conn_close_after_flush(struct conn *c)
{
	c->state = CONN_CLOSING;
	conn_timer(c, c->srv->tv_flush);
	if (c->in_parse)
		return;	/* conn_parse drains the input once the parser returns */
	evbuffer_drain(bufferevent_get_input(c->bev),
		       evbuffer_get_length(bufferevent_get_input(c->bev)));
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_kick(c);	/* no write will complete to move it on */
}

/*
 * Sends r's reply and moves the connection on: to the next request, or to
 * closing. r goes back to the connection for reuse.
 */
static void conn_finish(struct conn *c, struct http_request *r, int status,
			const char *content_type, const char *body, size_t len, bool close)
{
	close = close || !r->keep_alive || c->srv->shutting_down;
	conn_write_reply(c, r, status, content_type, body, len, close);
	assert(c->req == r);
	c->req = NULL;
	request_recycle(c, r);
	if (close) {
		conn_close_after_flush(c);
		return;
	}
	c->state = CONN_IDLE;
	conn_timer(c, c->srv->tv_idle);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > CONN_OUT_HIGH) {
		/* A client that pipelines but does not read: hold the next
		 * request back until the backlog is sent (on_write resumes). */
		if (HTTP_PARSER_ERRNO(&c->parser) == HPE_OK)
			http_parser_pause(&c->parser, 1);
		return;
	}
	if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
		http_parser_pause(&c->parser, 0);
	/* Inside the parser, it carries on by itself; otherwise wake it up
	 * from the loop, not from the handler's stack. */
	if (!c->in_parse)
		conn_kick(c);
}

/* Answers an error found by the server itself. */
static void conn_error(struct conn *c, int status, const char *code, const char *msg,
		       bool close)
{
	struct http_request *r = c->req;
	struct buf b = BUF_INIT;

	if (!r)
		r = c->req = request_get(c);
	if (status == 503)
		buf_adds(&r->extra, "Retry-After: 1\r\n");
	buf_adds(&b, "{\"error\":{\"code\":");
	buf_add_json_string(&b, code, strlen(code));
	buf_adds(&b, ",\"message\":");
	buf_add_json_string(&b, msg, strlen(msg));
	buf_adds(&b, "}}");
	log_debug("http_refused", "status=%d code=%s peer=%s request_id=%s",
		  status, code, c->peer, r->id);
	conn_finish(c, r, status, "application/json", b.data, b.len, close);
	buf_release(&b);
}

/* Records why a parser callback refuses the request; returns -1 for it. */
__attribute__((format(printf, 4, 5)))
static int conn_refuse(struct conn *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	c->fail_status = status;
	c->fail_code = code;
	va_start(ap, fmt);
	vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Answers a request the parser stopped on, then closes. */
static void conn_parse_failed(struct conn *c, enum http_errno e)
{
	struct http_server *s = c->srv;
	const char *msg;

	if (c->fail_status) {
		conn_error(c, c->fail_status, c->fail_code, c->fail_msg, true);
		return;
	}
	if (e == HPE_HEADER_OVERFLOW) {
		snprintf(c->fail_msg, sizeof(c->fail_msg),
			 "request line and headers are over the limit of %zu bytes",
			 s->lim.max_header_bytes);
		conn_error(c, 431, "header_too_large", c->fail_msg, true);
		return;
	}
	s->stats.parse_errors++;
	switch (e) {
	case HPE_UNEXPECTED_CONTENT_LENGTH:
		msg = c->parser.uses_transfer_encoding ?
		      "request has both Content-Length and Transfer-Encoding; send only one" :
		      "request has more than one Content-Length header";
		break;
	case HPE_INVALID_CONTENT_LENGTH:
		msg = "request has an invalid Content-Length header";
		break;
	case HPE_INVALID_TRANSFER_ENCODING:
		msg = "request has a Transfer-Encoding whose last coding is not chunked";
		break;
	case HPE_INVALID_CHUNK_SIZE:
		msg = "request has an invalid chunk size in its chunked body";
		break;
	default:
		snprintf(c->fail_msg, sizeof(c->fail_msg), "malformed request: %s",
			 http_errno_description(e));
		msg = c->fail_msg;
		break;
	}
	conn_error(c, 400, "bad_request", msg, true);
}

static void conn_detach_request(struct conn *c)
{
	struct http_request *r = c->req;

	c->req = NULL;
	if (!r)
		return;
	if (!r->held) {
		request_free(r);
		return;
	}
	memcpy(r->peer, c->peer, sizeof(r->peer));
	r->conn = NULL;
}

static void conn_free(struct conn *c)
{
	struct http_server *s = c->srv;

	assert(!c->in_parse);
	conn_detach_request(c);
	if (c->spare)
		request_free(c->spare);
	if (c->z) {
		inflateEnd(c->z);
		free(c->z);
	}
	event_free(c->timer);
	event_free(c->kick);
	bufferevent_free(c->bev);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->reject)
		s->nrejecting--;
	else
		s->nconns--;
	s->stats.connections_open--;
	free(c);
	server_maybe_done(s);
}

/*
 * Feeds buffered input to the parser until it is empty, a request is with
 * the handler, the reply backlog is too long, or the connection closes.
 * May free c.
 */
static void conn_parse(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);

	c->in_parse = true;
	while (c->state <= CONN_BODY && evbuffer_get_length(in) > 0 &&
	       evbuffer_get_length(out) <= CONN_OUT_HIGH) {
		struct evbuffer_iovec v;
		enum http_errno e;
		size_t n;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		/* Paused outside CONN_HELD means paused for a backlog now sent. */
		if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
			http_parser_pause(&c->parser, 0);
		n = http_parser_execute(&c->parser, &c->srv->settings, v.iov_base, v.iov_len);
		evbuffer_drain(in, n);
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (c->state >= CONN_HELD || e == HPE_PAUSED)
			break;
		if (e != HPE_OK) {
			conn_parse_failed(c, e);
			break;
		}
		if (n < v.iov_len) {
			/* The parser stops short only after an upgrade or
			 * CONNECT, which we answer as plain requests: what
			 * follows is not HTTP, so end the connection. */
			conn_close_after_flush(c);
			break;
		}
	}
	c->in_parse = false;
	if (c->state >= CONN_CLOSING) {
		evbuffer_drain(in, evbuffer_get_length(in));
		if (evbuffer_get_length(out) == 0)
			conn_kick(c);
		return;
	}
	if (c->rd_eof && c->state != CONN_HELD && evbuffer_get_length(in) == 0) {
		if (c->state == CONN_IDLE)
			conn_close_after_flush(c);
		else
			conn_free(c);	/* the client left halfway through a request */
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	switch (c->state) {
	case CONN_HELD:
		return;	/* kept for after the reply */
	case CONN_CLOSING:
	case CONN_LINGER:
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	default:
		conn_parse(c);
		return;
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	evutil_socket_t fd;

	switch (c->state) {
	case CONN_CLOSING:
		if (c->rd_eof) {
			conn_free(c);
			return;
		}
		/* Shutting only our side lets the client read the reply even
		 * if it is still sending; closing now could reset it. */
		fd = bufferevent_getfd(bev);
		shutdown(fd, SHUT_WR);
		c->state = CONN_LINGER;
		conn_timer(c, c->srv->tv_linger);
		bufferevent_enable(bev, EV_READ);
		return;
	case CONN_IDLE:
	case CONN_HEADERS:
	case CONN_BODY:
		/* Parsing may have stopped for the backlog just sent. */
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			conn_parse(c);
		else if (c->state == CONN_IDLE && c->srv->shutting_down)
			conn_free(c);
		return;
	default:
		return;
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_ERROR) {
		conn_free(c);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	c->rd_eof = true;
	switch (c->state) {
	case CONN_HELD:
	case CONN_CLOSING:
		return;	/* the reply, or its flush, decides */
	case CONN_LINGER:
		conn_free(c);
		return;
	default:
		conn_parse(c);	/* parses what is left, then closes */
		return;
	}
}

/*
 * A kick does what the next read or finished write would, for when neither
 * is coming: input left after an async reply, or a close with nothing left
 * to flush. (Our own event rather than a deferred bufferevent_trigger(),
 * whose reference libevent never drops if the base is freed first.)
 */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	switch (c->state) {
	case CONN_IDLE:
	case CONN_HEADERS:
	case CONN_BODY:
		conn_parse(c);
		return;
	case CONN_CLOSING:
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			on_write(c->bev, c);
		return;
	default:
		return;
	}
}

static void conn_kick(struct conn *c)
{
	event_active(c->kick, EV_TIMEOUT, 1);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct http_server *s = c->srv;

	(void)fd;
	(void)what;
	switch (c->state) {
	case CONN_HEADERS:
		s->stats.timeouts++;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
			 "the request headers did not arrive within %d ms",
			 s->lim.header_timeout_ms);
		conn_error(c, 408, "request_timeout", c->fail_msg, true);
		return;
	case CONN_BODY:
		s->stats.timeouts++;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
			 "the request body did not arrive within %d ms",
			 s->lim.body_timeout_ms);
		conn_error(c, 408, "request_timeout", c->fail_msg, true);
		return;
	case CONN_HELD:
		return;
	default:
		conn_free(c);	/* idle, or a client that will not read or close */
		return;
	}
}

static void peer_name(const struct sockaddr *sa, char *out, size_t n)
{
	const void *addr = NULL;

	if (sa->sa_family == AF_INET)
		addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (!addr || !inet_ntop(sa->sa_family, addr, out, (socklen_t)n))
		snprintf(out, n, "unknown");
}

static struct conn *conn_new(struct http_server *s, evutil_socket_t fd,
			     const struct sockaddr *sa, bool reject)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->srv = s;
	c->reject = reject;
	c->state = CONN_IDLE;
	peer_name(sa, c->peer, sizeof(c->peer));
	c->bev = must(bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE),
		      "bufferevent");
	c->timer = must(evtimer_new(s->base, on_timer, c), "event");
	c->kick = must(event_new(s->base, -1, 0, on_kick, c), "event");
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_READ_HIGH);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	if (reject)
		s->nrejecting++;
	else
		s->nconns++;
	s->stats.connections_open++;
	conn_timer(c, s->tv_header ? s->tv_header : s->tv_idle);
	return c;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct http_server *s = arg;
	struct conn *c;
	char msg[160];
	int one = 1;

	(void)l;
	(void)salen;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->stats.connections_accepted++;
	if (s->lim.max_connections == 0 || s->nconns < s->lim.max_connections) {
		conn_new(s, fd, sa, false);
		return;
	}
	s->stats.connections_rejected++;
	/* Answering costs a little memory for a while; past as many again,
	 * a plain close is all an overloaded server can afford. */
	if (s->nrejecting >= s->lim.max_connections) {
		evutil_closesocket(fd);
		return;
	}
	c = conn_new(s, fd, sa, true);
	snprintf(msg, sizeof(msg),
		 "the server has %u open connections, its limit; retry shortly",
		 s->lim.max_connections);
	s->stats.overloaded++;
	conn_error(c, 503, "overloaded", msg, true);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)fd;
	(void)what;
	if (s->listener)
		evconnlistener_enable(s->listener);
}

/* Out of descriptors, accept() fails at once again: pause instead of spinning. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct http_server *s = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_RETRY_MS * 1000 };

	log_warn("http_accept_failed", "error='%s' retry_ms=%d",
		 evutil_socket_error_to_string(err), ACCEPT_RETRY_MS);
	evconnlistener_disable(l);
	event_add(s->accept_retry, &tv);
}

/* --- parser callbacks --------------------------------------------------- */

static int head_count(struct conn *c, size_t n)
{
	struct http_request *r = c->req;
	size_t max = c->srv->lim.max_header_bytes;

	r->head_bytes += n;
	if (r->head_bytes > max)
		return conn_refuse(c, 431, "header_too_large",
				   "request line and headers are over the limit of %zu bytes",
				   max);
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;

	if (!c->req)
		c->req = request_get(c);
	c->state = CONN_HEADERS;
	conn_timer(c, c->srv->tv_header);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;
	struct http_request *r = c->req;

	if (head_count(c, n))
		return -1;
	r->part = PART_URL;
	r->method = (unsigned char)p->method;
	buf_add(&r->head, at, n);
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;
	struct http_request *r = c->req;

	if (r->part != PART_FIELD && head_count(c, HEADER_LINE_EXTRA))
		return -1;
	if (head_count(c, n))
		return -1;
	if (r->headers_done)
		return 0;	/* a trailer: counted, not kept */
	if (r->part != PART_FIELD) {
		request_end_part(r);
		if (r->nhdrs == r->hdrs_cap) {
			r->hdrs_cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
			r->hdrs = xrealloc(r->hdrs, xmul(r->hdrs_cap, sizeof(*r->hdrs)));
		}
		r->hdrs[r->nhdrs].name = (uint32_t)r->head.len;
		r->hdrs[r->nhdrs].name_len = 0;
		r->hdrs[r->nhdrs].value = 0;
		r->hdrs[r->nhdrs].value_len = 0;
		r->nhdrs++;
		r->part = PART_FIELD;
	}
	buf_add(&r->head, at, n);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;
	struct http_request *r = c->req;
	struct hdr *h;

	if (head_count(c, n))
		return -1;
	if (r->headers_done)
		return 0;
	if (r->part == PART_FIELD) {
		h = &r->hdrs[r->nhdrs - 1];
		h->name_len = (uint32_t)(r->head.len - h->name);
		buf_addc(&r->head, '\0');
		h->value = (uint32_t)r->head.len;
		r->part = PART_VALUE;
	}
	buf_add(&r->head, at, n);
	return 0;
}

/* Content-Encoding: identity, gzip or deflate (zlib); anything else is 415. */
static int check_content_encoding(struct conn *c, struct http_request *r)
{
	const char *ce = request_header(r, "content-encoding");

	if (!ce || !*ce || strcasecmp(ce, "identity") == 0)
		return 0;
	if (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0 ||
	    strcasecmp(ce, "deflate") == 0) {
		r->inflate = true;
		r->inflate_end = false;
		if (!c->z) {
			c->z = xcalloc(1, sizeof(*c->z));
			/* 32: take either a gzip or a zlib header. */
			if (inflateInit2(c->z, 15 + 32) != Z_OK)
				fatal_oom("zlib inflater");
		} else {
			inflateReset(c->z);
		}
		return 0;
	}
	return conn_refuse(c, 415, "unsupported_encoding",
			   "Content-Encoding '%.60s' is not supported; use gzip, deflate or identity",
			   ce);
}

static int on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;
	struct http_server *s = c->srv;
	struct http_request *r = c->req;
	const char *te, *expect;
	bool has_body;
	char msg[160];

	request_end_part(r);
	r->headers_done = true;
	r->method = (unsigned char)p->method;
	request_split_url(r);
	if (p->http_major != 1)
		return conn_refuse(c, 505, "http_version_not_supported",
				   "HTTP/%u.%u is not supported; use HTTP/1.1",
				   p->http_major, p->http_minor);
	r->http10 = p->http_minor == 0;
	/* An upgrade is answered as a plain request; the connection ends there. */
	r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	te = request_header(r, "transfer-encoding");
	if (te && strcasecmp(te, "chunked") != 0)
		return conn_refuse(c, 501, "unsupported_transfer_encoding",
				   "Transfer-Encoding '%.60s' is not supported; send a body "
				   "with Content-Length or Transfer-Encoding: chunked", te);
	has_body = (p->flags & F_CHUNKED) ||
		   ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
	if (!has_body)
		return 0;
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > s->lim.max_body_bytes)
		return conn_refuse(c, 413, "body_too_large",
				   "request body is %llu bytes; the limit is %zu bytes",
				   (unsigned long long)p->content_length, s->lim.max_body_bytes);
	/* Refuse now rather than read a body only to refuse it. */
	if (server_over_budget(s, (p->flags & F_CONTENTLENGTH) ? p->content_length : 0,
			       msg, sizeof(msg))) {
		s->stats.overloaded++;
		return conn_refuse(c, 503, "overloaded", "%s", msg);
	}
	if (check_content_encoding(c, r))
		return -1;
	expect = request_header(r, "expect");
	if (expect && p->http_minor >= 1 && strcasecmp(expect, "100-continue") == 0)
		evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->state = CONN_BODY;
	conn_timer(c, s->tv_body);
	return 0;
}

/*
 * Makes room for need bytes of body, growing by doubling but never past
 * ceiling: the body's final size plus its NUL when Content-Length told it,
 * else the limit plus the byte that shows it is crossed plus the NUL. The
 * memory a client costs thus follows the bytes it actually sent.
 */
static void body_reserve(struct http_request *r, size_t need, size_t ceiling)
{
	size_t cap;

	if (need <= r->body_cap)
		return;
	cap = r->body_cap ? r->body_cap : 4096;
	while (cap < need)
		cap = xmul(cap, 2);
	if (cap > ceiling)
		cap = need > ceiling ? need : ceiling;
	r->body = xrealloc(r->body, cap);
	r->body_cap = cap;
}

/*
 * Inflates a piece of compressed body into r->body. The output window is cut
 * to one byte past the limit, so a bomb costs at most max_body_bytes + 2.
 */
static int body_inflate(struct conn *c, struct http_request *r, const char *at, size_t n)
{
	size_t limit = c->srv->lim.max_body_bytes;
	z_stream *z = c->z;

	z->next_in = (Bytef *)(uintptr_t)at;
	z->avail_in = (uInt)n;
	while (z->avail_in > 0) {
		size_t room, want, before;
		int ret;

		if (r->inflate_end)
			return conn_refuse(c, 400, "invalid_gzip",
					   "request body has data after the end of its compressed stream");
		room = limit + 1 - r->body_len;
		want = (size_t)z->avail_in * 4;
		if (want < 16384)
			want = 16384;
		if (want > room)
			want = room;
		body_reserve(r, r->body_len + want + 1, limit + 2);
		want = r->body_cap - r->body_len - 1;
		if (want > room)
			want = room;
		z->next_out = (Bytef *)r->body + r->body_len;
		z->avail_out = (uInt)want;
		before = want;
		ret = inflate(z, Z_NO_FLUSH);
		r->body_len += before - z->avail_out;
		if (r->body_len > limit)
			return conn_refuse(c, 413, "body_too_large",
					   "request body is over %zu bytes once decompressed; "
					   "the limit is %zu bytes", limit, limit);
		if (ret == Z_STREAM_END)
			r->inflate_end = true;
		else if (ret == Z_BUF_ERROR)
			break;	/* needs more input */
		else if (ret != Z_OK)
			return conn_refuse(c, 400, "invalid_gzip",
					   "request body is not valid gzip or deflate data: %s",
					   z->msg ? z->msg : "corrupt stream");
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;
	struct http_request *r = c->req;
	size_t limit = c->srv->lim.max_body_bytes;

	r->wire_bytes += n;
	if (r->wire_bytes > limit)
		return conn_refuse(c, 413, "body_too_large",
				   "request body is over the limit of %zu bytes", limit);
	if (r->inflate)
		return body_inflate(c, r, at, n);
	body_reserve(r, r->body_len + n + 1, (p->flags & F_CONTENTLENGTH) ?
		     r->wire_bytes + p->content_length + 1 : limit + 1);
	memcpy(r->body + r->body_len, at, n);
	r->body_len += n;
	return 0;
}

/* A chunk's size is known before its data: refuse before reading it. */
static int on_chunk_header(http_parser *p)
{
	struct conn *c = p->data;
	size_t limit = c->srv->lim.max_body_bytes;

	if (p->content_length > limit - c->req->wire_bytes)
		return conn_refuse(c, 413, "body_too_large",
				   "chunked request body is over the limit of %zu bytes", limit);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;
	struct http_server *s = c->srv;
	struct http_request *r = c->req;
	char msg[160];

	if (r->inflate && !r->inflate_end)
		return conn_refuse(c, 400, "invalid_gzip",
				   "request body ends before the end of its compressed stream");
	if (r->body)
		r->body[r->body_len] = '\0';
	if (server_over_budget(s, r->body_len, msg, sizeof(msg))) {
		s->stats.overloaded++;
		conn_error(c, 503, "overloaded", msg, false);
	} else {
		c->state = CONN_HELD;
		conn_timer(c, NULL);
		r->held = true;
		r->prev = NULL;
		r->next = s->held;
		if (s->held)
			s->held->prev = r;
		s->held = r;
		s->stats.inflight_requests++;
		s->stats.inflight_bytes += r->body_len;
		s->stats.requests++;
		http_parser_pause(p, 1);
		s->handler(r, s->arg);
	}
	/* A reply that closes the connection leaves nothing more to parse. */
	if (c->state >= CONN_CLOSING && HTTP_PARSER_ERRNO(p) == HPE_OK)
		http_parser_pause(p, 1);
	return 0;
}

/* --- public functions --------------------------------------------------- */

void http_limits_init(struct http_limits *lim)
{
	lim->max_header_bytes = 32 * 1024;
	lim->max_body_bytes = 512000;
	lim->max_connections = 4096;
	lim->max_inflight_requests = 4096;
	lim->max_inflight_bytes = 64 * 1024 * 1024;
	lim->header_timeout_ms = 10000;
	lim->idle_timeout_ms = 60000;
	lim->body_timeout_ms = 30000;
}

/* Timers of one duration share a queue in libevent: O(1) to re-arm. */
static const struct timeval *common_timeout(struct event_base *base, int ms)
{
	const struct timeval *common;
	struct timeval tv;

	if (ms <= 0)
		return NULL;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	common = event_base_init_common_timeout(base, &tv);
	if (!common)
		fatal_oom("common timeout");
	return common;
}

/*
 * http-parser's own header limit is one global; it backs ours up against
 * bytes our count does not see (whitespace, chunk extensions), so it only
 * ever rises, to fit the largest limit any server asked for.
 */
static void raise_parser_header_limit(size_t max)
{
	static uint32_t current;
	uint64_t want = (uint64_t)max + 1024;

	if (want > UINT32_MAX)
		want = UINT32_MAX;
	if (want > current) {
		current = (uint32_t)want;
		http_parser_set_max_header_size(current);
	}
}

struct http_server *http_server_new(struct event_base *base, const struct http_limits *lim,
				    http_handler_fn handler, void *arg)
{
	struct http_server *s = xcalloc(1, sizeof(*s));

	assert(lim->max_header_bytes > 0 && lim->max_body_bytes > 0);
	s->base = base;
	s->lim = *lim;
	s->handler = handler;
	s->arg = arg;
	s->accept_retry = must(evtimer_new(base, on_accept_retry, s), "event");
	s->done_ev = must(event_new(base, -1, 0, on_done, s), "event");
	s->tv_header = common_timeout(base, lim->header_timeout_ms);
	s->tv_idle = common_timeout(base, lim->idle_timeout_ms);
	s->tv_body = common_timeout(base, lim->body_timeout_ms);
	s->tv_flush = common_timeout(base, CONN_FLUSH_MS);
	s->tv_linger = common_timeout(base, CONN_LINGER_MS);
	buf_init(&s->scratch);
	if (getrandom(&s->rng, sizeof(s->rng), 0) != sizeof(s->rng))
		s->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	http_parser_settings_init(&s->settings);
	s->settings.on_message_begin = on_message_begin;
	s->settings.on_url = on_url;
	s->settings.on_header_field = on_header_field;
	s->settings.on_header_value = on_header_value;
	s->settings.on_headers_complete = on_headers_complete;
	s->settings.on_body = on_body;
	s->settings.on_chunk_header = on_chunk_header;
	s->settings.on_message_complete = on_message_complete;
	raise_parser_header_limit(lim->max_header_bytes);
	return s;
}

static int server_listen_on(struct http_server *s, struct evconnlistener *l)
{
	evconnlistener_set_error_cb(l, on_accept_error);
	s->listener = l;
	log_info("http_listen", "port=%d", http_server_port(s));
	return 0;
}

int http_server_listen(struct http_server *s, const char *host, int port)
{
	struct addrinfo hints, *res, *ai;
	struct evconnlistener *l = NULL;
	char service[16];
	int rc, err = 0;

	if (s->listener || s->shutting_down)
		return WEFT_ECONFLICT;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		log_error("http_listen_failed", "address='%s:%d' error='%s'",
			  host ? host : "*", port, gai_strerror(rc));
		return WEFT_EIO;
	}
	for (ai = res; ai && !l; ai = ai->ai_next) {
		l = evconnlistener_new_bind(s->base, on_accept, s,
					    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
					    LEV_OPT_REUSEABLE, LISTEN_BACKLOG,
					    ai->ai_addr, (int)ai->ai_addrlen);
		if (!l)
			err = errno;
	}
	freeaddrinfo(res);
	if (!l) {
		log_error("http_listen_failed", "address='%s:%d' error='%s'",
			  host ? host : "*", port, strerror(err));
		return WEFT_EIO;
	}
	return server_listen_on(s, l);
}

int http_server_listen_fd(struct http_server *s, int fd)
{
	struct evconnlistener *l;

	if (s->listener || s->shutting_down) {
		close(fd);
		return WEFT_ECONFLICT;
	}
	if (evutil_make_socket_nonblocking(fd) < 0 || evutil_make_socket_closeonexec(fd) < 0) {
		log_error("http_listen_failed", "fd=%d error='%s'", fd, strerror(errno));
		close(fd);
		return WEFT_EIO;
	}
	l = evconnlistener_new(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE, LISTEN_BACKLOG, fd);
	if (!l) {
		log_error("http_listen_failed", "fd=%d error='%s'", fd, strerror(errno));
		close(fd);
		return WEFT_EIO;
	}
	return server_listen_on(s, l);
}

int http_server_port(const struct http_server *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!s->listener)
		return -1;
	if (getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

void http_server_shutdown(struct http_server *s, void (*done)(void *), void *arg)
{
	struct conn *c, *next;

	s->shutting_down = true;
	s->done = done;
	s->done_arg = arg;
	if (s->listener) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	event_del(s->accept_retry);
	for (c = s->conns; c; c = next) {
		next = c->next;
		if (c->in_parse)
			continue;
		if (c->reject || c->state == CONN_LINGER ||
		    (c->state == CONN_IDLE &&
		     evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
		     evbuffer_get_length(bufferevent_get_input(c->bev)) == 0))
			conn_free(c);
	}
	server_maybe_done(s);
}

void http_server_free(struct http_server *s)
{
	struct http_request *r;

	if (!s)
		return;
	for (r = s->held; r; r = r->next)
		r->srv = NULL;
	s->held = NULL;
	s->done = NULL;
	while (s->conns)
		conn_free(s->conns);
	if (s->listener)
		evconnlistener_free(s->listener);
	event_free(s->accept_retry);
	event_free(s->done_ev);
	buf_release(&s->scratch);
	free(s);
}

void http_server_stats(const struct http_server *s, struct http_stats *st)
{
	*st = s->stats;
}

const char *http_request_method(const struct http_request *req)
{
	return http_method_str((enum http_method)req->method);
}

const char *http_request_path(const struct http_request *req)
{
	return req->path;
}

const char *http_request_query(const struct http_request *req)
{
	return req->query;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	return request_header(req, name);
}

bool http_request_header_at(const struct http_request *req, size_t i,
			    const char **name, const char **value)
{
	if (i >= req->nhdrs)
		return false;
	*name = req->head.data + req->hdrs[i].name;
	*value = req->head.data + req->hdrs[i].value;
	return true;
}

const char *http_request_body(const struct http_request *req, size_t *len)
{
	*len = req->body_len;
	return req->body_len ? req->body : "";
}

const char *http_request_peer(const struct http_request *req)
{
	return req->conn ? req->conn->peer : req->peer;
}

const char *http_request_id(const struct http_request *req)
{
	return req->id;
}

bool http_request_client_gone(const struct http_request *req)
{
	return !req->conn || req->conn->rd_eof;
}

void http_reply_add_header(struct http_request *req, const char *name, const char *value)
{
	if (!*name || has_crlf(name) || strchr(name, ':') || has_crlf(value)) {
		log_warn("http_header_dropped", "request_id=%s reason='invalid name or value'",
			 req->id);
		return;
	}
	if (strcasecmp(name, "Connection") == 0) {
		if (strcasecmp(value, "close") == 0)
			req->keep_alive = false;
		return;
	}
	if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Request-Id") == 0 ||
	    strcasecmp(name, "Transfer-Encoding") == 0)
		return;
	buf_adds(&req->extra, name);
	buf_adds(&req->extra, ": ");
	buf_adds(&req->extra, value);
	buf_adds(&req->extra, "\r\n");
}

void http_reply(struct http_request *req, int status, const char *content_type,
		const char *body, size_t len)
{
	struct http_server *s = req->srv;
	struct conn *c = req->conn;

	assert(req->held);
	request_unhold(req);
	if (!c) {
		if (s) {
			s->stats.replies_dropped++;
			server_maybe_done(s);
		}
		request_free(req);
		return;
	}
	assert(c->state == CONN_HELD && c->req == req);
	conn_finish(c, req, status, content_type, body, len, false);
	server_maybe_done(s);
}

void http_reply_json_error(struct http_request *req, int status, const char *code,
			   const char *message)
{
	struct buf b = BUF_INIT;

	buf_adds(&b, "{\"error\":{\"code\":");
	buf_add_json_string(&b, code, strlen(code));
	buf_adds(&b, ",\"message\":");
	buf_add_json_string(&b, message, strlen(message));
	buf_adds(&b, "}}");
	http_reply(req, status, "application/json", b.data, b.len);
	buf_release(&b);
}

void http_reply_file(struct http_request *req, int status, const char *content_type, int fd,
		     size_t len)
{
	if (!req->conn) {
		close(fd);
		http_reply(req, status, content_type, NULL, 0);
		return;
	}
	req->reply_fd = fd + 1;
	http_reply(req, status, content_type, NULL, len);
}
