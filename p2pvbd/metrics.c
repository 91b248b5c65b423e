/* SPDX-License-Identifier: ISC */
/*
 * metrics: Prometheus text for /metrics and the monitoring part of
 * `p2pvbd status`. See metrics.h.
 */
#include "metrics.h"

#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "util.h"

/* A scrape is one short GET: headers beyond this are not a Prometheus server. */
#define METRICS_MAX_HEADERS (8 * 1024)
/* GET has no body; a little room for clients that send an empty one. */
#define METRICS_MAX_BODY 1024
/* Seconds a client may take to send its request (or read the reply) before it is dropped. */
#define METRICS_TIMEOUT_S 10

struct metrics {
	struct evhttp *http;
	struct swarm *sw; /* borrowed */
	uint16_t port;
};

static void put(struct evbuffer *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct evbuffer *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = evbuffer_add_vprintf(o, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("out of memory");
}

static void add(struct evbuffer *o, const void *data, size_t len)
{
	if (evbuffer_add(o, data, len) != 0)
		fatal("out of memory");
}

/* ---- Prometheus text (pure) -------------------------------------------- */

void metrics_label_value(struct evbuffer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			put(out, "\\\\");
		else if (*s == '"')
			put(out, "\\\"");
		else if (*s == '\n')
			put(out, "\\n");
		else
			add(out, s, 1);
	}
}

/* A sample value: integers exactly, anything else with 9 significant digits. */
static void value(struct evbuffer *o, double v)
{
	if (v != v)
		put(o, "NaN"); /* the format's spellings, not printf's "nan" and "inf" */
	else if (v > DBL_MAX || v < -DBL_MAX)
		put(o, v > 0 ? "+Inf" : "-Inf");
	else if (v >= -9e15 && v <= 9e15 && v == (double)(long long)v)
		put(o, "%lld", (long long)v);
	else
		put(o, "%.9g", v);
}

/* "# HELP" and "# TYPE" of a family; help is a constant without \ or newline. */
static void family(struct evbuffer *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct evbuffer *o, const char *name, const char *help, uint64_t v)
{
	family(o, name, "counter", help);
	put(o, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(struct evbuffer *o, const char *name, const char *help, double v)
{
	family(o, name, "gauge", help);
	put(o, "%s ", name);
	value(o, v);
	put(o, "\n");
}

/* One sample of a per-peer family: name{peer="…",role="…"} value. */
static void peer_sample(struct evbuffer *o, const char *name, const struct swarm_peer_info *p,
                        double v)
{
	put(o, "%s{peer=\"", name);
	metrics_label_value(o, p->address);
	put(o, "\",role=\"");
	metrics_label_value(o, p->role);
	put(o, "\"} ");
	value(o, v);
	put(o, "\n");
}

static void fault_histogram(struct evbuffer *o, const struct swarm_fault_hist *h)
{
	static const char name[] = "p2pvbd_fault_latency_seconds";
	uint64_t cum = 0;

	family(
	    o, name, "histogram",
	    "Seconds from a VM read of a missing chunk until the chunk was readable (fetch -e).");
	for (int b = 0; b < SWARM_FAULT_BUCKETS; b++) {
		cum += h->bucket[b];
		put(o, "%s_bucket{le=\"%g\"} %llu\n", name, swarm_fault_le_us[b] / 1e6,
		    (unsigned long long)cum);
	}
	/* +Inf holds every observation, the last bucket (slower than the largest bound) too. */
	put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
	put(o, "%s_sum %.9f\n", name, h->sum_s);
	put(o, "%s_count %llu\n", name, (unsigned long long)h->count);
}

void metrics_render(struct evbuffer *o, const struct swarm_status *st,
                    const struct swarm_stats *stats, const struct swarm_peer_info *peers,
                    int npeers)
{
	char id[2 * MANIFEST_ID_LEN + 1];

	hex_encode(st->volume_id, MANIFEST_ID_LEN, id);
	family(o, "p2pvbd_info", "gauge", "Always 1; the labels say what this process is.");
	put(o, "p2pvbd_info{role=\"%s\",volume_id=\"%s\",output=\"", st->seed ? "seed" : "fetch",
	    id);
	metrics_label_value(o, st->output ? st->output : "");
	put(o, "\"} 1\n");

	counter(o, "p2pvbd_fetched_bytes_total", "Chunk bytes received and verified.",
	        stats->bytes_fetched);
	counter(o, "p2pvbd_fetched_chunks_total", "Chunks received and verified.",
	        stats->chunks_fetched);
	counter(o, "p2pvbd_served_bytes_total", "Chunk bytes sent to peers.", stats->bytes_served);
	counter(o, "p2pvbd_served_chunks_total", "Chunks whose last block was sent to a peer.",
	        stats->chunks_served);
	counter(o, "p2pvbd_bad_pieces_total", "Chunks received that failed verification.",
	        stats->bad_pieces);
	counter(o, "p2pvbd_receipts_total", "Distinct valid completion receipts (seed).",
	        st->receipts);
	counter(o, "p2pvbd_deltas_total", "Deltas published (seed) or applied (fetch).",
	        stats->deltas);
	gauge(o, "p2pvbd_handshakes_in_progress", "Accepted connections not authenticated yet.",
	      st->handshakes);
	counter(o, "p2pvbd_handshakes_refused_total",
	        "Accepted connections closed at once: too many handshakes from their address.",
	        st->handshakes_refused);
	counter(o, "p2pvbd_handshakes_dropped_total",
	        "Handshakes closed to make room for a newer one: too many in progress.",
	        st->handshakes_dropped);
	counter(o, "p2pvbd_handshakes_late_total", "Handshakes not done within their deadline.",
	        st->handshakes_late);
	counter(o, "p2pvbd_frames_late_total", "Peers dropped for a frame that arrived too slowly.",
	        st->frames_late);

	gauge(o, "p2pvbd_generation", "Generation of the manifest in use.", (double)st->generation);
	gauge(o, "p2pvbd_final", "1 if the generation in use is final (the source froze).",
	      st->final ? 1 : 0);
	gauge(o, "p2pvbd_complete", "1 once every chunk is verified and durable (a seed: always).",
	      st->complete ? 1 : 0);
	gauge(o, "p2pvbd_image_size_bytes", "Size of the volume (0 until known).",
	      (double)st->image_size);
	gauge(o, "p2pvbd_image_done_bytes", "Verified bytes of the volume held (fetch).",
	      (double)st->bytes_done);
	gauge(o, "p2pvbd_image_left_bytes",
	      "Bytes still to receive, as far as the loaded chunk table tells (fetch).",
	      (double)st->bytes_left);
	gauge(o, "p2pvbd_dirty_bytes", "Bytes of the chunks the VM changed since hashed (seed -e).",
	      (double)st->dirty_bytes);
	gauge(o, "p2pvbd_faults_waiting", "Chunks the VM's reads wait for now (fetch -e).",
	      (double)st->faults_waiting);
	fault_histogram(o, &st->fault_latency);
	gauge(o, "p2pvbd_peers_connected", "Authenticated peers.", (double)st->peers);
	gauge(o, "p2pvbd_fetch_bytes_per_second", "Verified bytes received per second, smoothed.",
	      st->fetch_rate);
	gauge(o, "p2pvbd_serve_bytes_per_second", "Chunk bytes sent per second, smoothed.",
	      st->serve_rate);

	family(o, "p2pvbd_peer_receive_bytes_per_second", "gauge",
	       "Chunk bytes received from the peer per second, smoothed.");
	for (int i = 0; i < npeers; i++)
		peer_sample(o, "p2pvbd_peer_receive_bytes_per_second", &peers[i],
		            peers[i].fetch_rate);
	family(o, "p2pvbd_peer_send_bytes_per_second", "gauge",
	       "Chunk bytes sent to the peer per second, smoothed.");
	for (int i = 0; i < npeers; i++)
		peer_sample(o, "p2pvbd_peer_send_bytes_per_second", &peers[i], peers[i].serve_rate);
	family(o, "p2pvbd_peer_received_bytes_total", "counter",
	       "Chunk bytes received from the peer on this connection.");
	for (int i = 0; i < npeers; i++)
		peer_sample(o, "p2pvbd_peer_received_bytes_total", &peers[i],
		            (double)peers[i].bytes_fetched);
	family(o, "p2pvbd_peer_sent_bytes_total", "counter",
	       "Chunk bytes sent to the peer on this connection.");
	for (int i = 0; i < npeers; i++)
		peer_sample(o, "p2pvbd_peer_sent_bytes_total", &peers[i],
		            (double)peers[i].bytes_served);
	family(o, "p2pvbd_peer_chunks", "gauge",
	       "Chunks the peer holds by its have-map (only where known: at a fetch).");
	for (int i = 0; i < npeers; i++)
		if (peers[i].chunks >= 0)
			peer_sample(o, "p2pvbd_peer_chunks", &peers[i], (double)peers[i].chunks);
}

/* ---- status (pure) ----------------------------------------------------- */

double metrics_eta(const struct swarm_status *st)
{
	if (st->seed || !st->have_root)
		return -1;
	if (st->complete)
		return 0;
	if (st->fetch_rate < 1)
		return -1; /* nothing arriving: no honest estimate */
	return (double)st->bytes_left / st->fetch_rate;
}

/* s as a JSON string, with its quotes; NULL as null. */
static void json_string(struct evbuffer *o, const char *s)
{
	if (s == NULL) {
		put(o, "null");
		return;
	}
	put(o, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			put(o, "\\%c", c);
		else if (c < 0x20)
			put(o, "\\u%04x", c);
		else
			add(o, s, 1);
	}
	put(o, "\"");
}

void metrics_status_json(struct evbuffer *o, const struct swarm_status *st,
                         const struct swarm_peer_info *peers, int npeers)
{
	char id[2 * MANIFEST_ID_LEN + 1];
	double eta = metrics_eta(st);

	hex_encode(st->volume_id, MANIFEST_ID_LEN, id);
	put(o, ",\"volume_id\":\"%s\",\"output\":", id);
	json_string(o, st->output);
	if (eta < 0)
		put(o, ",\"eta_s\":null");
	else
		put(o, ",\"eta_s\":%.1f", eta);
	put(o, ",\"bytes_left\":%llu,\"faults_waiting\":%u", (unsigned long long)st->bytes_left,
	    st->faults_waiting);
	if (st->seed)
		put(o, ",\"receipts\":%llu", (unsigned long long)st->receipts);
	put(o,
	    ",\"handshakes_in_progress\":%d,\"handshakes_refused\":%llu,"
	    "\"handshakes_dropped\":%llu,\"handshakes_late\":%llu,\"frames_late\":%llu",
	    st->handshakes, (unsigned long long)st->handshakes_refused,
	    (unsigned long long)st->handshakes_dropped, (unsigned long long)st->handshakes_late,
	    (unsigned long long)st->frames_late);
	put(o, ",\"peers\":[");
	for (int i = 0; i < npeers; i++) {
		const struct swarm_peer_info *p = &peers[i];

		put(o, "%s{\"address\":", i ? "," : "");
		json_string(o, p->address);
		put(o,
		    ",\"role\":\"%s\",\"fetch_rate\":%.0f,\"serve_rate\":%.0f,\"chunks\":", p->role,
		    p->fetch_rate, p->serve_rate);
		if (p->chunks < 0)
			put(o, "null");
		else
			put(o, "%lld", (long long)p->chunks);
		put(o, ",\"bytes_fetched\":%llu,\"bytes_served\":%llu}",
		    (unsigned long long)p->bytes_fetched, (unsigned long long)p->bytes_served);
	}
	put(o, "]");
}

void metrics_status_text(struct evbuffer *o, const struct swarm_status *st,
                         const struct swarm_peer_info *peers, int npeers)
{
	char id[2 * MANIFEST_ID_LEN + 1], b1[16], b2[16];
	double eta = metrics_eta(st);

	hex_encode(st->volume_id, MANIFEST_ID_LEN, id);
	put(o, "volume %s, %s %s\n", id, st->seed ? "image" : "output",
	    st->output ? st->output : "?");
	if (!st->seed && !st->complete) {
		if (eta < 0)
			put(o, "eta: unknown, %s to go\n",
			    fmt_bytes(st->bytes_left, b1, sizeof(b1)));
		else
			put(o, "eta: %.0f s, %s to go\n", eta,
			    fmt_bytes(st->bytes_left, b1, sizeof(b1)));
	}
	if (st->seed)
		put(o, "receipts: %llu\n", (unsigned long long)st->receipts);
	if (st->faults_waiting > 0)
		put(o, "the VM waits for %u chunks\n", st->faults_waiting);
	if (npeers == 0)
		return;
	put(o, "  %-30s %-6s %12s %12s %8s\n", "peer", "role", "receiving", "sending", "chunks");
	for (int i = 0; i < npeers; i++) {
		const struct swarm_peer_info *p = &peers[i];
		char chunks[24], in[24], out[24];

		if (p->chunks < 0)
			snprintf(chunks, sizeof(chunks), "?");
		else
			snprintf(chunks, sizeof(chunks), "%lld", (long long)p->chunks);
		snprintf(in, sizeof(in), "%s/s",
		         fmt_bytes((uint64_t)p->fetch_rate, b1, sizeof(b1)));
		snprintf(out, sizeof(out), "%s/s",
		         fmt_bytes((uint64_t)p->serve_rate, b2, sizeof(b2)));
		put(o, "  %-30s %-6s %12s %12s %8s\n", p->address, p->role, in, out, chunks);
	}
}

/* ---- the HTTP server ----------------------------------------------------- */

int metrics_peers(const struct swarm *sw, struct swarm_peer_info **out)
{
	int n = swarm_peer_list(sw, NULL, 0);

	*out = xcalloc(n > 0 ? (size_t)n : 1, sizeof(**out));
	/* The list cannot change between the two calls: both run on the loop thread. */
	return swarm_peer_list(sw, *out, n);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (evbuffer_add(evhttp_request_get_output_buffer(req), text, strlen(text)) < 0)
		fatal("out of memory");
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	if (code == 405)
		evhttp_add_header(h, "Allow", "GET");
	evhttp_send_reply(req, code, reason, NULL);
}

/* Every request: GET /metrics gets the page, any other path 404, another method 405. */
static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	struct swarm_status st;
	struct swarm_peer_info *peers;
	struct evbuffer *body;
	int n;

	if (path == NULL || strcmp(path, "/metrics") != 0) {
		reply_text(req, 404, "Not Found", "not found: the metrics are at /metrics\n");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_text(req, 405, "Method Not Allowed", "only GET\n");
		return;
	}
	swarm_status(m->sw, &st);
	n = metrics_peers(m->sw, &peers);
	body = evhttp_request_get_output_buffer(req);
	metrics_render(body, &st, swarm_stats(m->sw), peers, n);
	free(peers);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  METRICS_CONTENT_TYPE);
	evhttp_send_reply(req, 200, "OK", NULL);
}

struct metrics *metrics_new(struct event_base *base, struct swarm *sw, const char *host,
                            uint16_t port)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);

	m->sw = sw;
	m->http = evhttp_new(base);
	if (m->http == NULL)
		fatal("evhttp_new failed");
	/* Every method reaches on_request, which answers 405 to all but GET. */
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                        EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                        EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(m->http, METRICS_MAX_BODY);
	evhttp_set_timeout(m->http, METRICS_TIMEOUT_S);
	evhttp_set_gencb(m->http, on_request, m);
	bound = evhttp_bind_socket_with_handle(m->http, host, port);
	if (bound == NULL) {
		log_error("cannot serve metrics on %s port %u: %s", host, port, strerror(errno));
		metrics_free(m);
		return NULL;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sslen) != 0)
		fatal("getsockname: %s", strerror(errno));
	m->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                         : ((struct sockaddr_in *)&ss)->sin_port);
	log_info(strchr(host, ':') ? "metrics on http://[%s]:%u/metrics"
	                           : "metrics on http://%s:%u/metrics",
	         host, m->port);
	return m;
}

uint16_t metrics_port(const struct metrics *m)
{
	return m->port;
}

void metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	if (m->http != NULL)
		evhttp_free(m->http);
	free(m);
}
