/*
 * A small HTTP/1.1 server for api/. libevent's evhttp answers oversized
 * requests with its own HTML pages before any of our code runs, so Weft
 * frames requests itself: libevent bufferevents move the bytes, http-parser
 * splits them into requests, and this module enforces the size, time and
 * load limits, answering every error it detects as
 * {"error":{"code":"...","message":"..."}} (see docs/http.md).
 *
 * It knows nothing of Weft's routes: each complete request (body read and
 * decompressed) goes to one handler, which answers it exactly once with
 * http_reply(), at once or later. Everything runs on the thread that runs the
 * event_base; no function here may be called from another thread.
 *
 * A connection hands one request at a time to the handler, so pipelined
 * requests are answered in the order they came.
 */
#ifndef API_HTTP_H
#define API_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct http_server;
struct http_request;

/*
 * For the sizes and counts, 0 means "no limit" except for max_header_bytes
 * and max_body_bytes, which always apply. A timeout of 0 or less is off.
 */
struct http_limits {
	size_t max_header_bytes;	/* request line and headers; over: 431 */
	size_t max_body_bytes;		/* as sent and once decompressed; over: 413 */
	unsigned max_connections;	/* over: 503 and close */
	size_t max_inflight_requests;	/* with the handler, not yet replied */
	size_t max_inflight_bytes;	/* their bodies; over either: 503 */
	int header_timeout_ms;		/* first byte of a request to end of its headers */
	int idle_timeout_ms;		/* keep-alive connection waiting for a request */
	int body_timeout_ms;		/* end of the headers to end of the body */
};

/* Fills in the defaults listed in docs/http.md. */
void http_limits_init(struct http_limits *lim);

/* Counters for /metrics. */
struct http_stats {
	uint64_t connections_open;	/* including those flushing a last reply */
	uint64_t connections_accepted;
	uint64_t connections_rejected;	/* turned away at max_connections */
	uint64_t inflight_requests;	/* with the handler, not yet replied */
	uint64_t inflight_bytes;	/* their body bytes */
	uint64_t requests;		/* handed to the handler */
	uint64_t replies[6];		/* sent, by status class: replies[2] is 2xx */
	uint64_t replies_dropped;	/* the client was gone before the reply */
	uint64_t parse_errors;		/* malformed requests answered 400 */
	uint64_t timeouts;		/* requests cut off by a header or body timeout */
	uint64_t overloaded;		/* requests answered 503 by the server itself */
};

/*
 * Called on the base's thread for every complete request. The request stays
 * valid, even if the client goes away, until the handler passes it to
 * http_reply() or http_reply_json_error(); it is invalid after that call.
 */
typedef void (*http_handler_fn)(struct http_request *req, void *arg);

/* The limits are copied. Nothing listens until http_server_listen(). */
struct http_server *http_server_new(struct event_base *base,
	const struct http_limits *lim, http_handler_fn handler, void *arg);

/*
 * Listens on host (a numeric address or a name; NULL for every address) and
 * port (0 for one the kernel picks; see http_server_port()). Returns 0,
 * WEFT_EIO if the address cannot be bound, or WEFT_ECONFLICT if the server
 * already listens.
 */
int http_server_listen(struct http_server *s, const char *host, int port);

/*
 * Accepts connections on fd, a bound stream socket (listening or not, as
 * systemd passes one). The server owns fd from here on, even on failure.
 */
int http_server_listen_fd(struct http_server *s, int fd);

/* The port the server listens on, or -1 if it does not listen. */
int http_server_port(const struct http_server *s);

/*
 * Stops accepting, closes idle connections, lets requests already received
 * get their replies and have them flushed (each with Connection: close),
 * then calls done(arg) from the event loop. Requests whose first byte had
 * not arrived are not read.
 */
void http_server_shutdown(struct http_server *s, void (*done)(void *), void *arg);

/*
 * Closes every connection at once and frees the server; not from inside a
 * callback of this server. Requests still with the handler stay valid and
 * must still be replied to; their replies are dropped.
 */
void http_server_free(struct http_server *s);

void http_server_stats(const struct http_server *s, struct http_stats *st);

/*
 * Request accessors. Returned strings are NUL-terminated, belong to the
 * request and live as long as it does.
 */

/* "GET", "POST", ... */
const char *http_request_method(const struct http_request *req);
/* The path, without query string or fragment, not percent-decoded. */
const char *http_request_path(const struct http_request *req);
/* The raw query string without the '?'; "" if there is none. */
const char *http_request_query(const struct http_request *req);
/* The first header named name (case-insensitive), or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);
/* Iterates headers in the order sent: false once i is past the last. */
bool http_request_header_at(const struct http_request *req, size_t i,
	const char **name, const char **value);
/*
 * The body, decompressed if it had Content-Encoding gzip or deflate, and
 * followed by a NUL byte not counted in *len. "" if there was none.
 */
const char *http_request_body(const struct http_request *req, size_t *len);
/* The client's IP address as text ("127.0.0.1", "::1"). */
const char *http_request_peer(const struct http_request *req);
/* 16 random hex digits, also sent back as the Request-Id header. */
const char *http_request_id(const struct http_request *req);
/*
 * True once the client has closed or reset its end of the connection: the
 * handler may stop work early. It must still reply; the reply is then
 * usually dropped.
 */
bool http_request_client_gone(const struct http_request *req);

/*
 * Adds a header to the reply; name and value are copied. Content-Length,
 * Transfer-Encoding, Request-Id and Connection are the server's: adding
 * "Connection: close" closes the connection after the reply, anything else
 * under those names is ignored. A header whose name is empty or holds ':',
 * or whose name or value holds CR or LF, is dropped with a warning (header
 * injection).
 */
void http_reply_add_header(struct http_request *req, const char *name, const char *value);

/*
 * Answers req; exactly once per request, from the base's thread. The body is
 * copied; content_type may be NULL for none. req is invalid afterwards.
 */
void http_reply(struct http_request *req, int status, const char *content_type,
	const char *body, size_t len);

/*
 * Answers req with len bytes of the open file fd, from its start, which
 * the server owns from now on (and closes): the body is sent from the
 * file, never held in memory whole.
 */
void http_reply_file(struct http_request *req, int status, const char *content_type, int fd,
		     size_t len);

/*
 * Answers req with {"error":{"code":code,"message":message}} as
 * application/json, both strings JSON-escaped. For a 503, add
 * "Retry-After" with http_reply_add_header() first.
 */
void http_reply_json_error(struct http_request *req, int status, const char *code,
	const char *message);

#endif
