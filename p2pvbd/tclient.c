/* SPDX-License-Identifier: ISC */
/*
 * tclient: the tracker client. See tclient.h.
 *
 * Each request goes over its own short HTTP/1.1 connection (libevent's
 * evhttp client), so that one stuck request never holds up the next one.
 */
#include "tclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "util.h"

/* Kinds of request, each with at most one in flight. */
enum treq_kind { TREQ_ANNOUNCE, TREQ_RECEIPTS, TREQ_POST, TREQ_KINDS };

struct treq {
	struct tclient *t;
	enum treq_kind kind;
	/* The last request's connection: freed before the next one starts (never
	 * inside its own callback) or with the client. */
	struct evhttp_connection *conn;
	int busy; /* a request is in flight */
};

struct tclient {
	struct event_base *base;
	struct evdns_base *dns;
	const struct tclient_ops *ops;
	void *arg;
	char *url;
	char *host;
	int port;
	char *announce_path; /* the URL's path and query, without a trailing '?' */
	char *receipt_path;  /* the same directory's "receipt" */
	char *receipts_path; /* ... and "receipts?volume=..." */
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint8_t info_hash[MANIFEST_INFOHASH_LEN];
	uint8_t peer_id[TCLIENT_PEER_ID_LEN];
	char key[TCLIENT_KEY_HEX + 1]; /* tclient_announce_key */
	uint16_t listen_port;

	struct treq req[TREQ_KINDS];
	struct event *announce_timer;
	struct event *poll_timer;
	int started;   /* event=started was accepted */
	int completed; /* event=completed to be sent (1) or sent (2) */
	int backoff_s;
	int interval_s; /* the tracker's last interval (0 before any answer) */
	int polling;
	int warned;    /* "tracker unreachable" logged since the last success */
	int announced; /* an announce was sent: the tracker may know us */
	uint8_t receipt[MANIFEST_RECEIPT_LEN];
	int receipt_state; /* 0 none, 1 to post, 2 accepted */
};

static void schedule(struct event *ev, int secs)
{
	struct timeval tv = {secs, 0};

	event_add(ev, &tv);
}

/* %XX-escape n bytes for a query string (BEP 3 binary parameters). */
static void url_escape(char *out, const uint8_t *in, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		*out++ = '%';
		*out++ = hex[in[i] >> 4];
		*out++ = hex[in[i] & 15];
	}
	*out = '\0';
}

static void on_reply(struct evhttp_request *req, void *arg);

/* Start a request of kind q on a fresh connection. body may be NULL. */
static int treq_send(struct treq *q, enum evhttp_cmd_type cmd, const char *path, const void *body,
                     size_t body_len)
{
	struct tclient *t = q->t;
	struct evhttp_request *req;

	if (q->conn != NULL)
		evhttp_connection_free(q->conn);
	q->conn = evhttp_connection_base_new(t->base, t->dns, t->host, (unsigned short)t->port);
	if (q->conn == NULL)
		return -1;
	evhttp_connection_set_timeout(q->conn, TCLIENT_TIMEOUT_S);
	evhttp_connection_set_max_body_size(q->conn, TCLIENT_MAX_BODY);
	req = evhttp_request_new(on_reply, q);
	if (req == NULL) {
		evhttp_connection_free(q->conn);
		q->conn = NULL;
		return -1;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", t->host);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	if (body != NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
		                  "application/octet-stream");
		evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
	}
	/* On failure evhttp_make_request frees req itself. */
	if (evhttp_make_request(q->conn, req, cmd, path) != 0) {
		evhttp_connection_free(q->conn);
		q->conn = NULL;
		return -1;
	}
	q->busy = 1;
	return 0;
}

/* The path and query of an announce with event ("" or "&event=..."); the caller frees it. */
static char *announce_query(struct tclient *t, const char *event)
{
	char ih[3 * MANIFEST_INFOHASH_LEN + 1], pid[3 * 20 + 1];
	uint64_t up = 0, down = 0, left = 0;

	t->ops->counters(t->arg, &up, &down, &left);
	url_escape(ih, t->info_hash, sizeof(t->info_hash));
	url_escape(pid, t->peer_id, sizeof(t->peer_id));
	return xasprintf("%s%cinfo_hash=%s&peer_id=%s&port=%u&uploaded=%llu&downloaded=%llu"
	                 "&left=%llu&compact=1&numwant=%d&key=%s%s",
	                 t->announce_path, strchr(t->announce_path, '?') ? '&' : '?', ih, pid,
	                 t->listen_port, (unsigned long long)up, (unsigned long long)down,
	                 (unsigned long long)left, TCLIENT_NUMWANT, t->key, event);
}

static void announce_now(struct tclient *t)
{
	const char *event = "";
	char *path;

	if (t->req[TREQ_ANNOUNCE].busy)
		return; /* one at a time; the reply reschedules */
	if (!t->started)
		event = "&event=started";
	else if (t->completed == 1)
		event = "&event=completed";
	path = announce_query(t, event);
	if (treq_send(&t->req[TREQ_ANNOUNCE], EVHTTP_REQ_GET, path, NULL, 0) != 0) {
		log_warn("tracker %s: cannot send an announce", t->url);
		schedule(t->announce_timer, TCLIENT_BACKOFF_MAX_S);
	} else {
		t->announced = 1;
	}
	free(path);
}

static void post_now(struct tclient *t)
{
	if (t->receipt_state != 1 || t->req[TREQ_POST].busy)
		return;
	if (treq_send(&t->req[TREQ_POST], EVHTTP_REQ_POST, t->receipt_path, t->receipt,
	              sizeof(t->receipt)) != 0)
		log_warn("tracker %s: cannot post the receipt", t->url);
}

static void failed(struct tclient *t, const char *what, const char *why)
{
	int cap = t->interval_s > 0 && t->interval_s < TCLIENT_BACKOFF_MAX_S
	              ? t->interval_s
	              : TCLIENT_BACKOFF_MAX_S;

	/* Never wait longer than the tracker's interval: a restarted tracker must
	 * relearn the swarm before its peers expire. */
	t->backoff_s = t->backoff_s ? 2 * t->backoff_s : 1;
	if (t->backoff_s > cap)
		t->backoff_s = cap;
	if (!t->warned)
		log_warn("tracker %s: %s failed: %s (retrying; peers already known are kept)",
		         t->url, what, why);
	else
		log_debug("tracker %s: %s failed: %s", t->url, what, why);
	t->warned = 1;
}

static void announce_reply(struct tclient *t, int code, const uint8_t *body, size_t len)
{
	struct treply *r = xmalloc(sizeof(*r));
	const char *why;
	int64_t next;

	if (code == 0) {
		failed(t, "announce", "no answer");
	} else if (treply_parse(body, len, r, &why) != 0) {
		failed(t, "announce", code == 200 ? why : "HTTP error");
	} else if (r->failure != NULL) {
		char text[200];

		snprintf(text, sizeof(text), "%.*s",
		         (int)(r->failure_len < 150 ? r->failure_len : 150), r->failure);
		failed(t, "announce", text);
	} else {
		if (t->warned)
			log_info("tracker %s: reachable again", t->url);
		t->warned = 0;
		t->backoff_s = 0;
		t->started = 1;
		if (t->completed == 1)
			t->completed = 2;
		log_debug("tracker %s: %d peers, interval %lld s", t->url, r->npeers,
		          (long long)r->interval);
		if (r->npeers > 0)
			t->ops->on_peers(t->arg, r->peers, r->npeers);
		next = r->interval > 0 ? r->interval : 60;
		if (r->min_interval > next)
			next = r->min_interval;
		if (next < TCLIENT_MIN_INTERVAL_S)
			next = TCLIENT_MIN_INTERVAL_S;
		if (next > TCLIENT_MAX_INTERVAL_S)
			next = TCLIENT_MAX_INTERVAL_S;
		t->interval_s = (int)next;
		schedule(t->announce_timer, (int)next);
		free(r);
		return;
	}
	free(r);
	schedule(t->announce_timer, t->backoff_s);
}

static void receipts_reply(struct tclient *t, int code, const uint8_t *body, size_t len)
{
	struct treply *r = xmalloc(sizeof(*r));
	const char *why;

	if (code != 200)
		log_debug("tracker %s: receipts: HTTP %d", t->url, code);
	else if (treply_parse(body, len, r, &why) != 0)
		log_warn("tracker %s: malformed receipts reply: %s", t->url, why);
	else if (r->receipts != NULL)
		t->ops->on_receipts(t->arg, r->receipts, r->receipts_len);
	free(r);
}

static void post_reply(struct tclient *t, int code, const uint8_t *body, size_t len)
{
	if (code == 200) {
		t->receipt_state = 2;
		log_info("tracker %s: accepted our receipt", t->url);
		t->ops->on_receipt_posted(t->arg, 1);
		return;
	}
	log_warn("tracker %s: receipt not accepted (HTTP %d%s%.*s)", t->url, code, len ? ": " : "",
	         (int)(len < 120 ? len : 120), (const char *)body);
	t->ops->on_receipt_posted(t->arg, 0);
	/* 4xx: the tracker will never take it; otherwise try again at the next announce. */
	if (code >= 400 && code < 500)
		t->receipt_state = 0;
}

static void on_reply(struct evhttp_request *req, void *arg)
{
	struct treq *q = arg;
	struct tclient *t = q->t;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	struct evbuffer *in = req ? evhttp_request_get_input_buffer(req) : NULL;
	size_t len = in ? evbuffer_get_length(in) : 0;
	const uint8_t *body = len ? evbuffer_pullup(in, -1) : (const uint8_t *)"";

	q->busy = 0;
	switch (q->kind) {
	case TREQ_ANNOUNCE:
		announce_reply(t, code, body, len);
		break;
	case TREQ_RECEIPTS:
		receipts_reply(t, code, body, len);
		break;
	case TREQ_POST:
		post_reply(t, code, body, len);
		break;
	default:
		break;
	}
}

static void on_announce_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tclient *t = arg;

	(void)fd;
	(void)what;
	announce_now(t);
	post_now(t);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tclient *t = arg;

	(void)fd;
	(void)what;
	if (!t->polling)
		return;
	if (!t->req[TREQ_RECEIPTS].busy &&
	    treq_send(&t->req[TREQ_RECEIPTS], EVHTTP_REQ_GET, t->receipts_path, NULL, 0) != 0)
		log_debug("tracker %s: cannot ask for receipts", t->url);
	schedule(t->poll_timer, TCLIENT_RECEIPT_POLL_S);
}

/* dir/announce -> dir/<leaf>: the BitTorrent convention scrape URLs follow too. */
static char *sibling_path(const char *path, const char *leaf)
{
	const char *slash = strrchr(path, '/');
	size_t dir = slash ? (size_t)(slash - path) : 0;

	return xasprintf("%.*s/%s", (int)dir, path, leaf);
}

void tclient_announce_key(const uint8_t volume_id[MANIFEST_ID_LEN],
                          const uint8_t join_secret[VCRYPTO_SECRET_LEN],
                          char out[TCLIENT_KEY_HEX + 1])
{
	static const char domain[] = TCLIENT_KEY_TOKEN_DOMAIN;
	uint8_t msg[sizeof(domain) - 1 + VCRYPTO_SECRET_LEN + MANIFEST_ID_LEN];
	uint8_t h[VCRYPTO_HASH_LEN];

	memcpy(msg, domain, sizeof(domain) - 1);
	memcpy(msg + sizeof(domain) - 1, join_secret, VCRYPTO_SECRET_LEN);
	memcpy(msg + sizeof(domain) - 1 + VCRYPTO_SECRET_LEN, volume_id, MANIFEST_ID_LEN);
	vcrypto_hash(h, msg, sizeof(msg));
	hex_encode(volume_id, MANIFEST_ID_LEN, out);
	hex_encode(h, (TCLIENT_KEY_HEX - 2 * MANIFEST_ID_LEN) / 2, out + 2 * MANIFEST_ID_LEN);
	vcrypto_wipe(msg, sizeof(msg));
}

struct tclient *tclient_new(struct event_base *base, struct evdns_base *dns, const char *url,
                            const uint8_t volume_id[MANIFEST_ID_LEN],
                            const uint8_t join_secret[VCRYPTO_SECRET_LEN],
                            const uint8_t peer_id[TCLIENT_PEER_ID_LEN], uint16_t port,
                            const struct tclient_ops *ops, void *arg)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	struct tclient *t;
	const char *scheme, *host, *path, *query;
	char vol[2 * MANIFEST_ID_LEN + 1];

	if (u == NULL) {
		log_error("tracker URL %s: cannot parse it", url);
		return NULL;
	}
	scheme = evhttp_uri_get_scheme(u);
	host = evhttp_uri_get_host(u);
	if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL || host[0] == '\0') {
		log_error("tracker URL %s: only http://HOST[:PORT]/PATH is supported", url);
		evhttp_uri_free(u);
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	t->base = base;
	t->dns = dns;
	t->ops = ops;
	t->arg = arg;
	t->url = xstrdup(url);
	t->host = xstrdup(host);
	t->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
	path = evhttp_uri_get_path(u);
	if (path == NULL || path[0] == '\0')
		path = "/announce";
	query = evhttp_uri_get_query(u);
	t->announce_path = query && query[0] ? xasprintf("%s?%s", path, query) : xstrdup(path);
	t->receipt_path = sibling_path(path, "receipt");
	hex_encode(volume_id, MANIFEST_ID_LEN, vol);
	{
		char *leaf = xasprintf("receipts?volume=%s", vol);

		t->receipts_path = sibling_path(path, leaf);
		free(leaf);
	}
	evhttp_uri_free(u);
	memcpy(t->volume_id, volume_id, MANIFEST_ID_LEN);
	manifest_infohash(volume_id, t->info_hash);
	tclient_announce_key(volume_id, join_secret, t->key);
	memcpy(t->peer_id, peer_id, sizeof(t->peer_id));
	t->listen_port = port;
	for (int k = 0; k < TREQ_KINDS; k++) {
		t->req[k].t = t;
		t->req[k].kind = (enum treq_kind)k;
	}
	t->announce_timer = evtimer_new(base, on_announce_timer, t);
	t->poll_timer = evtimer_new(base, on_poll_timer, t);
	if (t->announce_timer == NULL || t->poll_timer == NULL)
		fatal("out of memory");
	return t;
}

void tclient_free(struct tclient *t)
{
	if (t == NULL)
		return;
	for (int k = 0; k < TREQ_KINDS; k++)
		if (t->req[k].conn != NULL)
			evhttp_connection_free(t->req[k].conn); /* a pending request goes with it */
	event_free(t->announce_timer);
	event_free(t->poll_timer);
	free(t->url);
	free(t->host);
	free(t->announce_path);
	free(t->receipt_path);
	free(t->receipts_path);
	free(t);
}

void tclient_start(struct tclient *t)
{
	schedule(t->announce_timer, 0);
}

void tclient_completed(struct tclient *t)
{
	if (t->completed)
		return;
	t->completed = 1;
	if (t->started)
		schedule(t->announce_timer, 0);
}

void tclient_post_receipt(struct tclient *t, const uint8_t *receipt)
{
	memcpy(t->receipt, receipt, sizeof(t->receipt));
	t->receipt_state = 1;
	post_now(t);
}

void tclient_poll_receipts(struct tclient *t, int on)
{
	t->polling = on;
	if (on)
		schedule(t->poll_timer, 0);
	else
		event_del(t->poll_timer);
}

const char *tclient_url(const struct tclient *t)
{
	return t->url;
}

/* One event=stopped request of tclient_stop_all, on its private event loop. */
struct stop_req {
	struct tclient *t;
	struct evhttp_connection *conn; /* owned; NULL if nothing was sent */
	struct event_base *base;        /* the private loop */
	int *pending;                   /* requests of the loop not yet ended */
	int ended;
};

static void on_stop_reply(struct evhttp_request *req, void *arg)
{
	struct stop_req *s = arg;
	int code = req ? evhttp_request_get_response_code(req) : 0;

	if (code == 200)
		log_debug("tracker %s: event=stopped sent", s->t->url);
	else if (code != 0)
		log_debug("tracker %s: event=stopped answered with HTTP %d", s->t->url, code);
	else
		log_debug("tracker %s: event=stopped failed: no answer", s->t->url);
	s->ended = 1;
	if (--*s->pending == 0)
		event_base_loopbreak(s->base);
}

static void on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/*
 * Why a private event loop: the caller's loop has ended and its events (peer
 * connections, timers, an NBD export) must not run again while we wait, and
 * the wait has to end at the deadline whatever else is pending.
 */
void tclient_stop_all(struct tclient *const *t, int n)
{
	struct event_base *base;
	struct evdns_base *dns;
	struct event *deadline;
	struct stop_req *s;
	struct timeval tv = {TCLIENT_STOP_WAIT_MS / 1000, (TCLIENT_STOP_WAIT_MS % 1000) * 1000};
	int pending = 0;

	if (n <= 0)
		return;
	base = event_base_new();
	if (base == NULL) {
		log_debug("trackers: cannot send event=stopped: no event base");
		return;
	}
	/* Names resolve on this loop too, so the deadline bounds the lookups (NULL: blocking). */
	dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	s = xcalloc((size_t)n, sizeof(*s));
	for (int i = 0; i < n; i++) {
		struct evhttp_request *req;
		char *path;

		s[i].t = t[i];
		s[i].base = base;
		s[i].pending = &pending;
		if (!t[i]->announced)
			continue; /* the tracker never heard of us */
		s[i].conn =
		    evhttp_connection_base_new(base, dns, t[i]->host, (unsigned short)t[i]->port);
		req = s[i].conn ? evhttp_request_new(on_stop_reply, &s[i]) : NULL;
		if (req == NULL) {
			log_debug("tracker %s: cannot send event=stopped", t[i]->url);
			s[i].ended = 1;
			continue;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Host", t[i]->host);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		path = announce_query(t[i], "&event=stopped");
		/* Counted first: the reply callback may run before evhttp_make_request returns. */
		pending++;
		/* On failure evhttp_make_request frees req itself. */
		if (evhttp_make_request(s[i].conn, req, EVHTTP_REQ_GET, path) != 0) {
			log_debug("tracker %s: cannot send event=stopped", t[i]->url);
			s[i].ended = 1;
			pending--;
		}
		free(path);
	}
	deadline = evtimer_new(base, on_stop_deadline, base);
	if (deadline == NULL)
		fatal("out of memory");
	if (pending > 0) {
		event_add(deadline, &tv);
		event_base_dispatch(base);
	}
	for (int i = 0; i < n; i++) {
		if (s[i].conn == NULL)
			continue;
		if (!s[i].ended)
			log_debug("tracker %s: event=stopped failed: no answer within %d ms",
			          t[i]->url, TCLIENT_STOP_WAIT_MS);
		evhttp_connection_free(s[i].conn); /* a request still pending goes with it */
	}
	event_free(deadline);
	free(s);
	if (dns != NULL)
		evdns_base_free(dns, 0);
	event_base_free(base);
}
