/* SPDX-License-Identifier: ISC */
/*
 * main: p2pvbd-tracker, a BitTorrent tracker (BEP 3, 7, 23, 48) on
 * libevent's HTTP server, plus the p2pvbd extensions POST /receipt and
 * GET /status, and GET /metrics for Prometheus. This file owns the command
 * line, the HTTP server and the expiry timer; the tables are in tracker.c,
 * the parser and encoder in announce.c and the metrics' text in tmetrics.c.
 *
 * Every request is first parsed and validated completely (announce.c);
 * only a valid request reaches the tables. Exit codes: 0 clean exit
 * (SIGINT/SIGTERM/SIGHUP), 1 failure, 2 usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <systemd/sd-daemon.h>

#include "announce.h"
#include "cli/cli.h"
#include "manifest.h"
#include "parse.h"
#include "ratelim.h"
#include "tconn.h"
#include "tmetrics.h"
#include "tracker.h"
#include "util.h"
#include "vcrypto.h"
#include "version.h"

/* Request headers: a long announce URL is ~1 KiB; more is not a BitTorrent client. */
#define MAX_HEADERS_SIZE (16 * 1024)
/* Request bodies: only POST /receipt has one (MANIFEST_RECEIPT_LEN bytes). */
#define MAX_BODY_SIZE 4096
/* Option bounds: keep the configured worst case within reason. */
#define MAX_INTERVAL     86400
#define MAX_SWARMS_LIMIT 10000000u
#define MAX_PEERS_LIMIT  100000u
#define MAX_CONNS_LIMIT  1000000u
#define MAX_TIMEOUT_S    3600
/* The longest expiry sweep period; a dropped peer lingers at most this much past its timeout. */
#define SWEEP_MAX_S 5

static const char usage_text[] =
    "usage: p2pvbd-tracker [OPTIONS]\n"
    "\n"
    "A BitTorrent tracker for p2pvbd volumes and ordinary torrents.\n"
    "\n"
    "  GET /announce   BEP 3 announce; compact peer lists (BEP 23): IPv4 peers in\n"
    "                  \"peers\", IPv6 peers in \"peers6\" (BEP 7). compact=0 is\n"
    "                  answered in the compact form too. numwant defaults to 50 and\n"
    "                  is capped at 200. The peer's address is the connection's\n"
    "                  address; the ip= parameter is used only for requests from\n"
    "                  loopback (127.0.0.0/8, ::1) and ignored otherwise.\n"
    "  GET /scrape     BEP 48; info_hash may repeat (64 at most); without one, the\n"
    "                  first 1000 swarms.\n"
    "  POST /receipt   a p2pvbd completion receipt (200 bytes); its signature is\n"
    "                  verified and it is kept (4096 in all, 256 per volume). Its\n"
    "                  MAC needs the volume's join secret, which the tracker does\n"
    "                  not have: the volume's source checks it.\n"
    "  GET /receipts   ?volume=<32 hex digits>: that volume's receipts, bencoded\n"
    "                  (d8:receipts<200 bytes each>e), for its source.\n"
    "  GET /status     per swarm (one per volume) the counts a scrape gives and the\n"
    "                  receipts kept, as JSON; no addresses, volume ids or receipts.\n"
    "  GET /metrics    counters and gauges in Prometheus' text format (0.0.4).\n"
    "\n"
    "A p2pvbd volume's info_hash is the first 20 bytes of\n"
    "BLAKE2b-256(\"p2pvbd-infohash-v1\" || volume id). Its members announce with\n"
    "key=<volume id><token from the join secret> (64 hex digits); once one has, the\n"
    "swarm admits only announces with such a key and hands each only the peers that\n"
    "sent the same key, so a client without the join secret cannot join or fill it.\n"
    "Ordinary torrents are unaffected.\n"
    "\n"
    "Limits per source address (IPv6: per /64): connections open at once, swarms\n"
    "created, peers in one swarm. A connection is closed --request-timeout seconds\n"
    "after it was accepted, however busy. At --max-connections, or when accept()\n"
    "runs out of file descriptors, the tracker stops accepting until a connection\n"
    "closes. At start the soft file descriptor limit is raised as far as the hard\n"
    "one allows, up to what --max-connections needs. Repeated log lines are\n"
    "suppressed after 5 in 10 s, and counted.\n"
    "\n"
    "Malformed requests get HTTP 400 and a bencoded \"failure reason\". A valid\n"
    "announce past a cap gets HTTP 200 and a \"failure reason\" saying which.\n"
    "A peer that does not announce for 2 x interval + 5 seconds is dropped; one\n"
    "that announces event=stopped is dropped at once.\n"
    "\n"
    "options:\n"
    "  -l, --listen HOST:PORT  listen address (default 0.0.0.0:6969; [::]:PORT for\n"
    "                          IPv6). Port 0 picks a free port. Once listening, prints\n"
    "                          \"listening on HOST:PORT\" on stdout.\n"
    "      --interval SECS     announce interval asked of clients (default 30,\n"
    "                          1 to 86400); \"min interval\" is half of it\n"
    "      --max-swarms N      swarms at once (default 10000)\n"
    "      --max-peers N       peers per swarm (default 1000); memory is about\n"
    "                          140 bytes per peer\n"
    "      --max-swarms-per-address N\n"
    "                          swarms one address may create (default 256)\n"
    "      --max-peers-per-address N\n"
    "                          peers one address may hold in one swarm (default 32)\n"
    "      --max-connections N connections open at once (default 16384, or fewer\n"
    "                          if the file descriptor limit allows fewer)\n"
    "      --max-connections-per-address N\n"
    "                          connections open at once from one address (default 32)\n"
    "      --request-timeout SECS\n"
    "                          seconds from accepting a connection until it is closed,\n"
    "                          request or not (default 10, 1 to 3600)\n"
    "  -q, --quiet             only log errors\n"
    "  -v, --verbose           log every request\n"
    "  -V, --version           print the version and exit\n"
    "  -h, --help              this text\n"
    "\n"
    "SIGINT, SIGTERM or SIGHUP stops the tracker. Exit codes: 0 clean exit, 1 failure,\n"
    "2 usage error.\n";

struct server {
	struct event_base *base;
	struct evhttp *http;
	struct tracker *tracker;
	struct tconn *tconn; /* which connections are taken, and for how long */
	struct event *sweep;
	struct event *sigs[CLI_NSIGNALS]; /* SIGINT, SIGTERM, SIGHUP: stop */
	struct tmetrics metrics;
	enum tmetrics_path path; /* of the request being answered, for the counters */
};

static uint64_t mono_s(void)
{
	return now_ns() / 1000000000ull;
}

/* Count a reply to the request being answered (every reply goes through here). */
static void count_reply(struct server *sv, int code)
{
	sv->metrics.http[sv->path][tmetrics_code_of(code)]++;
}

/*
 * Send body[0..len) with status code; text/plain for bencode, as most trackers
 * do. The body goes straight into the request's own output buffer: no buffer
 * of our own to allocate, fill, move and free on every announce.
 */
static void reply(struct server *sv, struct evhttp_request *req, int code, const char *ctype,
                  const void *body, size_t len)
{
	if (evbuffer_add(evhttp_request_get_output_buffer(req), body, len) < 0)
		fatal("out of memory");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	count_reply(sv, code);
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", NULL);
}

static void reply_failure(struct server *sv, struct evhttp_request *req, int code,
                          const char *reason)
{
	uint8_t buf[512];
	struct announce_benc b;

	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_failure(&b, reason);
	if (b.overflow)
		fatal("failure reason too long: %s", reason);
	reply(sv, req, code, "text/plain", buf, b.len);
}

/* The connection's remote address into a (port 0); 0 or -1. IPv4-mapped IPv6 becomes IPv4. */
static int remote_addr(struct evhttp_request *req, struct tracker_addr *a)
{
	char *host = NULL;
	ev_uint16_t port = 0;

	evhttp_connection_get_peer(evhttp_request_get_connection(req), &host, &port);
	if (host == NULL)
		return -1;
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, a->ip) == 1) {
		a->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, host, a->ip) == 1) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		a->family = 6;
		if (memcmp(a->ip, mapped, sizeof(mapped)) == 0) {
			memmove(a->ip, a->ip + 12, 4);
			memset(a->ip + 4, 0, 12);
			a->family = 4;
		}
		return 0;
	}
	return -1;
}

static int addr_is_loopback(const struct tracker_addr *a)
{
	static const uint8_t v6_loop[16] = {[15] = 1};

	return a->family == 4 ? a->ip[0] == 127 : memcmp(a->ip, v6_loop, 16) == 0;
}

/* "1.2.3.4:5" or "[::1]:5" into out (at least INET6_ADDRSTRLEN + 8 bytes). */
static void addr_format(const struct tracker_addr *a, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip));
	snprintf(out, len, a->family == 4 ? "%s:%u" : "[%s]:%u", ip, a->port);
}

static void handle_announce(struct server *sv, struct evhttp_request *req, const char *query)
{
	struct announce_req rq;
	struct announce_reply rep;
	struct tracker_addr from, src;
	char err[128], hex[2 * ANNOUNCE_HASH_LEN + 1], where[INET6_ADDRSTRLEN + 8];
	uint8_t peers4[ANNOUNCE_NUMWANT_MAX * ANNOUNCE_PEER4_LEN];
	uint8_t peers6[ANNOUNCE_NUMWANT_MAX * ANNOUNCE_PEER6_LEN];
	uint8_t buf[512 + sizeof(peers4) + sizeof(peers6)];
	struct announce_benc b;
	const char *why = NULL;
	uint64_t npeer;

	if (announce_parse(query, strlen(query), &rq, err, sizeof(err)) < 0) {
		log_debug("announce refused: %s", err);
		reply_failure(sv, req, 400, err);
		return;
	}
	if (remote_addr(req, &from) < 0) {
		reply_failure(sv, req, 400, "unknown remote address");
		return;
	}
	src = from; /* the per-address caps count the connection's address, not ip= */
	if (rq.ip[0] != '\0' && addr_is_loopback(&from)) {
		/* Only a local client may name another address (tests, NAT helpers on the host). */
		struct tracker_addr alt = {0};

		if (inet_pton(AF_INET, rq.ip, alt.ip) == 1)
			alt.family = 4;
		else if (inet_pton(AF_INET6, rq.ip, alt.ip) == 1)
			alt.family = 6;
		if (alt.family != 0)
			from = alt;
	}
	from.port = rq.port;
	src.port = rq.port; /* for the log */

	npeer = sv->tracker->npeer;
	if (tracker_announce_src(sv->tracker, &rq, &from, &src, mono_s(), &rep, peers4, peers6,
	                         &why) < 0) {
		sv->metrics.announces[rq.event][TMETRICS_REFUSED]++;
		hex_encode(rq.info_hash, ANNOUNCE_HASH_LEN, hex);
		addr_format(&src, where, sizeof(where));
		/* Limited: anyone can send refused announces as fast as they like. */
		log_limited(LOG_LEVEL_WARN, "announce for %s from %s refused: %s", hex, where, why);
		reply_failure(sv, req, 200, why);
		return;
	}
	sv->metrics.announces[rq.event][TMETRICS_OK]++;
	if (rq.event == ANNOUNCE_EV_STOPPED) /* it removed the peer, if the peer was there */
		sv->metrics.peers_stopped += npeer - sv->tracker->npeer;
	if (log_level() >= LOG_LEVEL_DEBUG) {
		hex_encode(rq.info_hash, ANNOUNCE_HASH_LEN, hex);
		addr_format(&from, where, sizeof(where));
		log_debug("announce %s from %s event %d left %" PRIu64 ": %zu+%zu peers", hex,
		          where, (int)rq.event, rq.left, rep.npeers4, rep.npeers6);
	}
	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_reply(&b, &rep);
	if (b.overflow)
		fatal("announce reply does not fit its buffer");
	reply(sv, req, 200, "text/plain", buf, b.len);
}

static void handle_scrape(struct server *sv, struct evhttp_request *req, const char *query)
{
	static struct announce_scrape_req rq; /* 1.3 KiB: off the stack */
	struct announce_scrape_entry *e;
	struct announce_benc b;
	char err[128];
	size_t n, cap;
	uint8_t *buf;

	if (announce_parse_scrape(query, strlen(query), &rq, err, sizeof(err)) < 0) {
		reply_failure(sv, req, 400, err);
		return;
	}
	sv->metrics.scrapes++;
	n = rq.count ? rq.count : TRACKER_SCRAPE_ALL_MAX;
	e = xcalloc(n, sizeof(*e));
	if (rq.count) {
		for (unsigned i = 0; i < rq.count; i++)
			tracker_scrape_one(sv->tracker, rq.info_hash[i], &e[i]);
	} else {
		n = tracker_scrape_all(sv->tracker, e, n);
	}
	/* Per entry: "20:" + hash + the counts dictionary with three 20-digit integers. */
	cap = 64 + n * (3 + ANNOUNCE_HASH_LEN + 128);
	buf = xmalloc(cap);
	announce_benc_init(&b, buf, cap);
	announce_encode_scrape(&b, e, n);
	if (b.overflow)
		fatal("scrape reply does not fit its buffer");
	reply(sv, req, 200, "text/plain", buf, b.len);
	free(buf);
	free(e);
}

/*
 * POST /receipt: keep a receipt whose structure and signature verify. The
 * tracker has no join secret, so it cannot check the receipt's MAC: the
 * source does, and counts only receipts whose signer proved the secret.
 */
static void handle_receipt(struct server *sv, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	uint8_t raw[MANIFEST_RECEIPT_LEN];
	struct manifest_receipt rc;
	char signer[2 * VCRYPTO_PK_LEN + 1], vol[2 * MANIFEST_ID_LEN + 1];
	const char *why = NULL;
	static const char ok[] = "d2:oki1ee";

	sv->metrics.receipts_received++;
	if (len > sizeof(raw)) {
		reply_failure(sv, req, 400, "a receipt is 200 bytes");
		return;
	}
	evbuffer_copyout(in, raw, len);
	if (manifest_receipt_decode(raw, len, NULL, &rc, &why) < 0) {
		log_debug("receipt refused: %s", why);
		reply_failure(sv, req, 400, why);
		return;
	}
	if (tracker_receipt_add(sv->tracker, &rc, (uint64_t)time(NULL), &why) < 0) {
		reply_failure(sv, req, 503, why);
		return;
	}
	sv->metrics.receipts_accepted++;
	hex_encode(rc.signer, VCRYPTO_PK_LEN, signer);
	hex_encode(rc.volume_id, MANIFEST_ID_LEN, vol);
	log_info("receipt: %s holds volume %s at generation %" PRIu64, signer, vol, rc.generation);
	reply(sv, req, 200, "text/plain", ok, sizeof(ok) - 1);
}

/*
 * GET /receipts?volume=<32 hex digits>: the receipts kept for a volume, for
 * its source (seed --exit-after-receipts), as d8:receipts<200n bytes>e. The
 * source verifies every one itself; the tracker is not trusted with them.
 * They are handed to whoever names the volume id, which /status never shows:
 * a receipt's MAC (keyed from the join secret) and signature make it useless
 * for forging, since neither another signer nor other contents can be put on it.
 */
static void handle_receipts(struct server *sv, struct evhttp_request *req, const char *query)
{
	static const char key[] = "volume=";
	const char *v = strstr(query, key);
	uint8_t id[MANIFEST_ID_LEN];
	struct announce_benc b;
	uint8_t *buf, *all;
	size_t cap, n = 0;

	if (v == NULL || (v != query && v[-1] != '&') ||
	    hex_decode(v + sizeof(key) - 1, strcspn(v + sizeof(key) - 1, "&"), id, sizeof(id)) !=
	        0) {
		reply_failure(sv, req, 400, "receipts needs volume=<32 hex digits>");
		return;
	}
	all = xmalloc((size_t)TRACKER_MAX_RECEIPTS_VOL * MANIFEST_RECEIPT_LEN);
	for (unsigned i = 0; i < sv->tracker->nreceipt && n < TRACKER_MAX_RECEIPTS_VOL; i++)
		if (memcmp(sv->tracker->receipt[i].rc.volume_id, id, MANIFEST_ID_LEN) == 0)
			manifest_receipt_encode(&sv->tracker->receipt[i].rc,
			                        all + MANIFEST_RECEIPT_LEN * n++);
	cap = 64 + n * MANIFEST_RECEIPT_LEN;
	buf = xmalloc(cap);
	announce_benc_init(&b, buf, cap);
	announce_benc_dict(&b);
	announce_benc_cstr(&b, "receipts");
	announce_benc_str(&b, all, n * MANIFEST_RECEIPT_LEN);
	announce_benc_end(&b);
	if (b.overflow)
		fatal("receipts reply does not fit its buffer");
	reply(sv, req, 200, "text/plain", buf, b.len);
	free(buf);
	free(all);
}

/* A kept receipt by the info_hash of its volume, to count a swarm's receipts. */
struct receipt_ref {
	uint8_t info_hash[MANIFEST_INFOHASH_LEN]; /* first: receipt_ref_cmp compares it */
	unsigned i;                               /* index in tracker->receipt */
};

static int receipt_ref_cmp(const void *a, const void *b)
{
	return memcmp(a, b, MANIFEST_INFOHASH_LEN);
}

/* The receipts kept, sorted by the info_hash of their volume; the caller frees it. */
static struct receipt_ref *receipt_refs(const struct tracker *t)
{
	struct receipt_ref *r = xcalloc(t->nreceipt ? t->nreceipt : 1, sizeof(*r));

	for (unsigned i = 0; i < t->nreceipt; i++) {
		manifest_infohash(t->receipt[i].rc.volume_id, r[i].info_hash);
		r[i].i = i;
	}
	qsort(r, t->nreceipt, sizeof(*r), receipt_ref_cmp);
	return r;
}

/* How many of the n sorted refs belong to info_hash; *first is the first one's index. */
static unsigned receipts_of(const struct receipt_ref *r, unsigned n, const uint8_t *info_hash,
                            unsigned *first)
{
	unsigned lo = 0, hi = n, k;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (memcmp(r[mid].info_hash, info_hash, MANIFEST_INFOHASH_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first = lo;
	for (k = lo; k < n && memcmp(r[k].info_hash, info_hash, MANIFEST_INFOHASH_LEN) == 0; k++)
		;
	return k - lo;
}

/*
 * GET /status: one entry per swarm with the counts a BitTorrent scrape gives
 * (seeders, leechers, completed downloads) and the number of receipts kept.
 * It needs no secret, so it shows no more than a scrape does: no peer
 * addresses or ids, no volume ids, no receipts or signer keys.
 */
static void handle_status(struct server *sv, struct evhttp_request *req)
{
	const struct tracker *t = sv->tracker;
	struct evbuffer *o = evbuffer_new();
	unsigned first = 1, nrc, rc0;
	char hex[2 * ANNOUNCE_HASH_LEN + 1];
	struct receipt_ref *refs = receipt_refs(t);
	struct tracker_iter it;

	if (o == NULL)
		fatal("out of memory");
	evbuffer_add_printf(o,
	                    "{\"interval\": %u, \"max_swarms\": %u, \"max_peers\": %u, "
	                    "\"swarm_count\": %u, \"peer_count\": %" PRIu64
	                    ", \"receipt_count\": %u,\n \"swarms\": [",
	                    t->cfg.interval, t->cfg.max_swarms, t->cfg.max_peers, t->nswarm,
	                    t->npeer, t->nreceipt);
	for (const struct tracker_swarm *s = tracker_first(t, &it); s != NULL;
	     s = tracker_next(t, &it)) {
		hex_encode(s->info_hash, ANNOUNCE_HASH_LEN, hex);
		nrc = receipts_of(refs, t->nreceipt, s->info_hash, &rc0);
		evbuffer_add_printf(o,
		                    "%s\n  {\"info_hash\": \"%s\", \"complete\": %" PRIu64
		                    ", \"incomplete\": %" PRIu64 ", \"downloaded\": %" PRIu64
		                    ", \"receipt_count\": %u}",
		                    first ? "" : ",", hex, s->complete, s->npeer - s->complete,
		                    s->downloaded, nrc);
		first = 0;
	}
	evbuffer_add_printf(o, "]}\n");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "application/json");
	count_reply(sv, 200);
	evhttp_send_reply(req, 200, "OK", o);
	evbuffer_free(o);
	free(refs);
}

/* GET /metrics: the counters and tables in Prometheus' text format (tmetrics.c). */
static void handle_metrics(struct server *sv, struct evhttp_request *req)
{
	struct tmetrics_out out = {0};

	tmetrics_render(&out, &sv->metrics, sv->tracker, mono_s());
	reply(sv, req, 200, "text/plain; version=0.0.4; charset=utf-8", out.buf, out.len);
	free(out.buf);
}

/* One entry point for every request: route by path and method. */
static void on_request(struct evhttp_request *req, void *arg)
{
	struct server *sv = arg;
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	const char *query = u ? evhttp_uri_get_query(u) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;

	sv->path = path ? tmetrics_path_of(path) : TMETRICS_P_OTHER;
	if (path == NULL) {
		reply_failure(sv, req, 400, "bad request URI");
		return;
	}
	if (query == NULL)
		query = "";
	if (strcmp(path, "/announce") == 0 && get)
		handle_announce(sv, req, query);
	else if (strcmp(path, "/scrape") == 0 && get)
		handle_scrape(sv, req, query);
	else if (strcmp(path, "/status") == 0 && get)
		handle_status(sv, req);
	else if (strcmp(path, "/receipts") == 0 && get)
		handle_receipts(sv, req, query);
	else if (strcmp(path, "/receipt") == 0 && cmd == EVHTTP_REQ_POST)
		handle_receipt(sv, req);
	else if (strcmp(path, "/metrics") == 0 && get)
		handle_metrics(sv, req);
	else if (sv->path != TMETRICS_P_OTHER)
		reply_failure(sv, req, 405, "method not allowed");
	else
		reply_failure(sv, req, 404, "not found (try /announce, /scrape, /status)");
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct server *sv = arg;
	unsigned n;

	(void)fd;
	(void)what;
	n = tracker_expire(sv->tracker, mono_s());
	sv->metrics.peers_expired += n;
	if (n > 0)
		log_info("expired %u silent peers; %u swarms, %" PRIu64 " peers left", n,
		         sv->tracker->nswarm, sv->tracker->npeer);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *sv = arg;

	(void)what;
	log_info("signal %d: stopping", (int)sig);
	event_base_loopbreak(sv->base);
}

/* A numeric option in [min, max] into *out (the shared parsers, parse.h); -1 if bad. */
static int opt_uint(const char *s, int duration, uint64_t min, uint64_t max, unsigned *out)
{
	uint64_t v;

	if ((duration ? parse_duration(s, min, max, &v) : parse_uint(s, min, max, &v)) != 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_INTERVAL = 256,
		OPT_MAX_SWARMS,
		OPT_MAX_PEERS,
		OPT_SWARMS_PER_ADDR,
		OPT_PEERS_PER_ADDR,
		OPT_MAX_CONNS,
		OPT_CONNS_PER_ADDR,
		OPT_TIMEOUT,
	};
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"interval", required_argument, NULL, OPT_INTERVAL},
	    {"max-swarms", required_argument, NULL, OPT_MAX_SWARMS},
	    {"max-peers", required_argument, NULL, OPT_MAX_PEERS},
	    {"max-swarms-per-address", required_argument, NULL, OPT_SWARMS_PER_ADDR},
	    {"max-peers-per-address", required_argument, NULL, OPT_PEERS_PER_ADDR},
	    {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
	    {"max-connections-per-address", required_argument, NULL, OPT_CONNS_PER_ADDR},
	    {"request-timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct tracker_config cfg = {
	    .interval = TRACKER_INTERVAL_DEFAULT,
	    .max_swarms = TRACKER_MAX_SWARMS_DEFAULT,
	    .max_peers = TRACKER_MAX_PEERS_DEFAULT,
	    .max_swarms_per_addr = TRACKER_MAX_SWARMS_PER_ADDR_DEFAULT,
	    .max_peers_per_addr = TRACKER_MAX_PEERS_PER_ADDR_DEFAULT,
	};
	struct tconn_config ccfg = {
	    .max_conns = TCONN_MAX_DEFAULT,
	    .max_per_addr = TCONN_PER_ADDR_DEFAULT,
	    .timeout_s = TCONN_TIMEOUT_DEFAULT_S,
	};
	unsigned budget;
	int conns_set = 0;
	const char *listen_addr = "0.0.0.0:6969";
	int level = LOG_LEVEL_INFO, c, rc = 1;
	char host[256], shown[300];
	uint16_t port;
	struct server sv = {0};
	struct event_config *ecfg;
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct timeval tv;

	log_init("p2pvbd-tracker", LOG_LEVEL_INFO);
	opterr = 0; /* cli_usage_error says what was wrong, in one line */
	while ((c = getopt_long(argc, argv, "l:qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_addr = optarg;
			break;
		case OPT_INTERVAL:
			if (opt_uint(optarg, 1, 1, MAX_INTERVAL, &cfg.interval) < 0)
				return cli_usage_error("p2pvbd-tracker", "bad --interval: %s",
				                       optarg);
			break;
		case OPT_MAX_SWARMS:
			if (opt_uint(optarg, 0, 1, MAX_SWARMS_LIMIT, &cfg.max_swarms) < 0)
				return cli_usage_error("p2pvbd-tracker", "bad --max-swarms: %s",
				                       optarg);
			break;
		case OPT_MAX_PEERS:
			if (opt_uint(optarg, 0, 1, MAX_PEERS_LIMIT, &cfg.max_peers) < 0)
				return cli_usage_error("p2pvbd-tracker", "bad --max-peers: %s",
				                       optarg);
			break;
		case OPT_SWARMS_PER_ADDR:
			if (opt_uint(optarg, 0, 1, MAX_SWARMS_LIMIT, &cfg.max_swarms_per_addr) < 0)
				return cli_usage_error("p2pvbd-tracker",
				                       "bad --max-swarms-per-address: %s", optarg);
			break;
		case OPT_PEERS_PER_ADDR:
			if (opt_uint(optarg, 0, 1, MAX_PEERS_LIMIT, &cfg.max_peers_per_addr) < 0)
				return cli_usage_error("p2pvbd-tracker",
				                       "bad --max-peers-per-address: %s", optarg);
			break;
		case OPT_MAX_CONNS:
			if (opt_uint(optarg, 0, 1, MAX_CONNS_LIMIT, &ccfg.max_conns) < 0)
				return cli_usage_error("p2pvbd-tracker",
				                       "bad --max-connections: %s", optarg);
			conns_set = 1;
			break;
		case OPT_CONNS_PER_ADDR:
			if (opt_uint(optarg, 0, 1, MAX_CONNS_LIMIT, &ccfg.max_per_addr) < 0)
				return cli_usage_error("p2pvbd-tracker",
				                       "bad --max-connections-per-address: %s",
				                       optarg);
			break;
		case OPT_TIMEOUT:
			if (opt_uint(optarg, 1, 1, MAX_TIMEOUT_S, &ccfg.timeout_s) < 0)
				return cli_usage_error("p2pvbd-tracker",
				                       "bad --request-timeout: %s", optarg);
			break;
		case 'q':
			level = LOG_LEVEL_ERROR;
			break;
		case 'v':
			level = LOG_LEVEL_DEBUG;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("p2pvbd-tracker %s\n", P2PVBD_VERSION);
			return 0;
		default:
			return cli_usage_error("p2pvbd-tracker",
			                       "unknown option or missing value: %s",
			                       argv[optind - 1]);
		}
	}
	if (optind != argc)
		return cli_usage_error("p2pvbd-tracker", "unexpected argument: %s", argv[optind]);
	if (parse_hostport(listen_addr, 1, host, sizeof(host), &port) < 0)
		return cli_usage_error("p2pvbd-tracker", "bad listen address (HOST:PORT): %s",
		                       listen_addr);
	log_init("p2pvbd-tracker", level);
	if (vcrypto_init() < 0) {
		log_error("cannot initialise libsodium");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	ratelim_route_libevent();

	/* Connections are capped below the descriptor limit, so that accept() never runs out. */
	budget = tconn_fd_budget(ccfg.max_conns);
	if (budget < ccfg.max_conns) {
		if (conns_set)
			log_warn("--max-connections %u is more than the file descriptor limit "
			         "allows (%u); accepting pauses whenever descriptors run out "
			         "(raise it with ulimit -n or LimitNOFILE=)",
			         ccfg.max_conns, budget);
		else
			ccfg.max_conns = budget;
	}

	/*
	 * evhttp adds and deletes read and write events several times for every
	 * connection; epoll's changelist folds them into one epoll_ctl per
	 * descriptor and loop turn, which saves a third of the system calls of
	 * an announce. It is unsafe only with dup()ed descriptors, which the
	 * tracker never makes. Other backends ignore the flag.
	 */
	ecfg = event_config_new();
	if (ecfg == NULL)
		fatal("out of memory");
	event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	sv.base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (sv.base == NULL)
		fatal("event_base_new failed");
	sv.http = evhttp_new(sv.base);
	if (sv.http == NULL)
		fatal("evhttp_new failed");
	evhttp_set_allowed_methods(sv.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(sv.http, MAX_HEADERS_SIZE);
	evhttp_set_max_body_size(sv.http, MAX_BODY_SIZE);
	evhttp_set_timeout(sv.http, (int)ccfg.timeout_s);
	evhttp_set_gencb(sv.http, on_request, &sv);

	bound = evhttp_bind_socket_with_handle(sv.http, host, (ev_uint16_t)port);
	if (bound == NULL) {
		log_error("cannot listen on %s: %s", listen_addr, strerror(errno));
		goto out;
	}
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sslen) < 0) {
		log_error("getsockname: %s", strerror(errno));
		goto out;
	}
	port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                      : ((struct sockaddr_in *)&ss)->sin_port);
	sv.tconn = tconn_new(sv.base, sv.http, bound, &ccfg);

	sv.tracker = tracker_new(&cfg);
	sv.metrics.start_wall = (uint64_t)time(NULL);
	sv.metrics.start_mono = mono_s();
	sv.sweep = event_new(sv.base, -1, EV_PERSIST, on_sweep, &sv);
	if (sv.sweep == NULL)
		fatal("event_new failed");
	tv.tv_sec = cfg.interval < SWEEP_MAX_S ? cfg.interval : SWEEP_MAX_S;
	tv.tv_usec = 0;
	event_add(sv.sweep, &tv);
	cli_signals_add(sv.base, on_signal, &sv, sv.sigs); /* SIGHUP: the terminal went away */

	snprintf(shown, sizeof(shown), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	printf("listening on %s\n", shown);
	fflush(stdout);
	log_info("listening on %s (interval %u s, max %u swarms of %u peers; per address: %u "
	         "swarms, %u peers per swarm, %u connections; %u connections, %u s each)",
	         shown, cfg.interval, cfg.max_swarms, cfg.max_peers, cfg.max_swarms_per_addr,
	         cfg.max_peers_per_addr, ccfg.max_per_addr, ccfg.max_conns, ccfg.timeout_s);

	/* Under systemd (Type=notify): the socket is bound and listening. */
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s", shown);
	if (event_base_dispatch(sv.base) < 0) {
		log_error("event loop failed");
		goto out;
	}
	sd_notify(0, "STOPPING=1");
	rc = 0;
out:
	if (sv.sweep)
		event_free(sv.sweep);
	cli_signals_free(sv.sigs);
	tconn_closing(sv.tconn);
	evhttp_free(sv.http);
	tconn_free(sv.tconn);
	tracker_free(sv.tracker);
	event_base_free(sv.base);
	return rc;
}
