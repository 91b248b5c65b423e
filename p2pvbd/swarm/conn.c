/* SPDX-License-Identifier: ISC */
/*
 * swarm/conn: connections and the address book. Accepting and dialling
 * peers, one connection per pair of processes (duplicates), the peer
 * callbacks that dispatch each message to its concern, reconnection with
 * back-off, and the trackers: announcing and the addresses they hand out.
 */
#include "swarm_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "tclient.h"

/* Longest wait between reconnection attempts to a peer address, seconds. */
#define SWARM_BACKOFF_MAX_S 16
/*
 * Peer addresses remembered (from the URI and from trackers). A tracker
 * hands out 50 per announce; a few hundred cover every site of a large
 * migration while keeping the table a few hundred KiB.
 */
#define SWARM_ADDRS_MAX 256
/* Outgoing connections at once: enough for a full mesh of a 32-host swarm. */
#define SWARM_CONNECT_MAX 32
/* A learned address that failed this many times in a row is forgotten. */
#define SWARM_LEARNED_TRIES 5
/* Output to one peer above which we stop reading its requests for roots and pages. */
#define SWARM_REPLY_OUT_MAX (4u * 1024u * 1024u)

/* A new connection: dialled by us (addr >= 0), or accepted and half-open (addr -1). */
static struct speer *speer_new(struct swarm *sw, int addr)
{
	struct speer *sp = xcalloc(1, sizeof(*sp));

	sp->sw = sw;
	sp->addr = addr;
	sp->id = ++sw->conn.next_id;
	sp->cur_chunk = -1;
	sp->halfopen = addr < 0;
	sp->next = sw->conn.peers;
	sw->conn.peers = sp;
	if (!sp->halfopen)
		sw->conn.npeers++;
	return sp;
}

void speer_unlink_free(struct swarm *sw, struct speer *sp)
{
	for (struct speer **pp = &sw->conn.peers; *pp; pp = &(*pp)->next)
		if (*pp == sp) {
			*pp = sp->next;
			if (sp->halfopen)
				preauth_remove(&sw->conn.pre, sp);
			else
				sw->conn.npeers--;
			break;
		}
	free(sp->pk.have);
	free(sp);
}

/* A READY peer other than sp that authenticated with key id, or NULL. */
static struct speer *speer_by_identity(struct swarm *sw, const uint8_t *id, const struct speer *sp)
{
	for (struct speer *o = sw->conn.peers; o; o = o->next)
		if (o != sp && peer_is_ready(o->p) &&
		    memcmp(peer_identity(o->p), id, VCRYPTO_PK_LEN) == 0)
			return o;
	return NULL;
}

/*
 * Two processes may connect to each other at once, or reach each other by two
 * addresses (the URI's and a tracker's): keep one connection per pair. Both
 * ends decide alike: the one opened by the side with the smaller key stays.
 * Returns 1 if sp was closed (a duplicate, or ourselves).
 */
static int drop_duplicate(struct swarm *sw, struct speer *sp)
{
	struct peer *p = sp->p;
	struct speer *o;
	int mine_smaller;

	if (memcmp(peer_identity(p), sw->o.identity->pk, VCRYPTO_PK_LEN) == 0) {
		if (sp->addr >= 0)
			sw->conn.addrs[sp->addr].dead = 1;
		peer_close(p, "this is ourselves");
		return 1;
	}
	o = speer_by_identity(sw, peer_identity(p), sp);
	if (o == NULL)
		return 0;
	mine_smaller = memcmp(sw->o.identity->pk, peer_identity(p), VCRYPTO_PK_LEN) < 0;
	if (peer_initiator(p) == mine_smaller) {
		peer_close(o->p, "duplicate connection");
		return 0;
	}
	peer_close(p, "duplicate connection");
	return 1;
}

static void on_ready(struct peer *p)
{
	struct speer *sp = peer_owner(p);
	struct wire_msg m = {.type = WIRE_GET_ROOT};

	sp->pk.is_source = peer_is_source(p);
	if (sp->halfopen) {
		/* Authenticated: from the handshake table to the peers. */
		preauth_remove(&sp->sw->conn.pre, sp);
		sp->halfopen = 0;
		sp->sw->conn.npeers++;
	}
	if (sp->addr >= 0) {
		struct addr *a = &sp->sw->conn.addrs[sp->addr];

		a->backoff_s = 0;
		a->fails = 0;
		a->have_identity = 1;
		memcpy(a->identity, peer_identity(p), VCRYPTO_PK_LEN);
	}
	if (drop_duplicate(sp->sw, sp))
		return;
	/* The places of authenticated peers are never given to a newcomer. */
	if (sp->sw->conn.npeers > SWARM_PEERS_MAX) {
		peer_close_error(p, WIRE_E_BUSY, "too many peers (%d); try again later",
		                 SWARM_PEERS_MAX);
		return;
	}
	log_info("peer %s: connected%s", peer_name(p), peer_is_source(p) ? " (source)" : "");
	if (sp->sw->o.role == SWARM_FETCH) {
		peer_send(p, &m);
		if (sp->sw->complete && !sp->sw->receipts.sent && root_final(sp->sw))
			send_receipt(sp->sw);
	}
}

/*
 * A peer that keeps asking for roots and pages without reading the replies
 * must not make our output grow without bound: stop reading its requests
 * until the output drains (on_drain -> serve_pump resumes reading).
 */
static void limit_replies(struct speer *sp)
{
	if (peer_is_ready(sp->p) && peer_out_len(sp->p) > SWARM_REPLY_OUT_MAX)
		peer_pause_read(sp->p);
}

static void on_msg(struct peer *p, const struct wire_msg *m)
{
	struct speer *sp = peer_owner(p);
	struct swarm *sw = sp->sw;
	int serving = sw->o.role == SWARM_SEED || sw->have_root;

	switch (m->type) {
	case WIRE_GET_ROOT:
		/* A fetcher without the root yet answers once it has one. */
		if (!serving)
			sp->wants_root = 1;
		else
			send_root_and_map(sw, sp);
		limit_replies(sp);
		return;
	case WIRE_GET_PAGE:
		serve_page(sp, m->u.get_page.page);
		limit_replies(sp);
		return;
	case WIRE_REQUEST:
		serve_request(sp, m);
		return;
	case WIRE_CANCEL:
		serve_cancel(sp, &m->u.cancel);
		return;
	case WIRE_RECEIPT:
		if (sw->o.role != SWARM_SEED) {
			struct wire_msg ack = {.type = WIRE_RECEIPT_ACK};

			ack.u.error.code = WIRE_E_BAD_RECEIPT;
			ack.u.error.text = "not the source";
			ack.u.error.text_len = (uint16_t)strlen(ack.u.error.text);
			peer_send(p, &ack);
			return;
		}
		serve_receipt(sp, m);
		return;
	case WIRE_DELTA:
		if (sw->o.role == SWARM_FETCH)
			on_delta(sp, m);
		return; /* the source makes them */
	case WIRE_HAVE:
		if (sw->o.role == SWARM_SEED) {
			seed_have(sw, m);
			return;
		}
		break;
	default:
		break;
	}
	if (sw->o.role != SWARM_FETCH) {
		peer_close_error(p, WIRE_E_PROTOCOL, "unexpected %s", wire_type_name(m->type));
		return;
	}
	switch (m->type) {
	case WIRE_ROOT:
		on_root(sp, m);
		break;
	case WIRE_PAGE:
		on_page(sp, m);
		break;
	case WIRE_HAVE_MAP:
		on_have_map(sp, m);
		break;
	case WIRE_HAVE:
		on_have(sp, m);
		break;
	case WIRE_PIECE:
		on_piece(sp, m);
		break;
	case WIRE_REJECT:
		on_reject(sp, m);
		break;
	case WIRE_RECEIPT_ACK:
		on_receipt_ack(sp, m);
		break;
	default:
		peer_close_error(p, WIRE_E_PROTOCOL, "unexpected %s", wire_type_name(m->type));
	}
}

static void on_drain(struct peer *p)
{
	serve_pump(peer_owner(p));
}

static void on_close(struct peer *p, int fatal_err, const char *reason)
{
	struct speer *sp = peer_owner(p);
	struct swarm *sw = sp->sw;

	if (sp->addr >= 0) {
		struct addr *a = &sw->conn.addrs[sp->addr];

		a->sp = NULL;
		snprintf(a->last_error, sizeof(a->last_error), "%s", reason);
		if (fatal_err || (a->learned && ++a->fails >= SWARM_LEARNED_TRIES))
			a->dead = 1;
		a->backoff_s = a->backoff_s ? a->backoff_s * 2 : 1;
		if (a->backoff_s > SWARM_BACKOFF_MAX_S)
			a->backoff_s = SWARM_BACKOFF_MAX_S;
		a->next_try_ns = now_ns() + (uint64_t)a->backoff_s * NS_PER_S;
		if (fatal_err)
			log_error("peer %s: %s", peer_name(p), reason);
		else
			log_info("peer %s: disconnected: %s", peer_name(p), reason);
	} else if (sp->evicted) {
		log_debug("peer %s: disconnected: %s", peer_name(p), reason);
	} else {
		log_info("peer %s: disconnected: %s", peer_name(p), reason);
	}
	if (sp->pk.have != NULL)
		for (uint32_t c = 0; c < sw->root.chunk_count; c++)
			have_clear(sw, sp, c);
	if (sp->slot)
		sw->serve.slots_used--;
	/* Give back what was in flight from this peer. */
	for (int i = sw->pipe.nxfers - 1; i >= 0; i--)
		if (sw->pipe.xfers[i].from == sp)
			xfer_drop(sw, &sw->pipe.xfers[i], 1);
	if (sw->pages.status != NULL)
		for (uint32_t pg = 0; pg < sw->root.page_count; pg++)
			if (sw->pages.status[pg] == PAGE_ASKED && sw->pages.from[pg] == sp)
				page_unask(sw, pg);
	speer_unlink_free(sw, sp);
	fetch_schedule(sw);
}

static void conn_dial(struct swarm *sw, int i)
{
	struct addr *a = &sw->conn.addrs[i];
	struct speer *sp = speer_new(sw, i);

	a->sp = sp;
	sp->p = peer_connect(&sw->conn.ctx, a->where.host, a->where.port, sp);
	if (sp->p == NULL) {
		/* Failed at once; peer_connect does not call on_close then. */
		a->sp = NULL;
		a->next_try_ns = now_ns() + NS_PER_S;
		speer_unlink_free(sw, sp);
	}
}

/*
 * Dial the addresses whose back-off has passed, within the bounds on
 * connections. Returns how many addresses are still worth trying.
 */
int conn_redial(struct swarm *sw, uint64_t now)
{
	int alive = 0, outgoing = 0;

	for (int i = 0; i < sw->conn.naddrs; i++)
		outgoing += sw->conn.addrs[i].sp != NULL;
	for (int i = 0; i < sw->conn.naddrs; i++) {
		struct addr *a = &sw->conn.addrs[i];

		if (a->dead)
			continue;
		alive++;
		if (a->sp != NULL || now < a->next_try_ns)
			continue;
		/* Already connected to that process, by its own connection to us. */
		if (a->have_identity && speer_by_identity(sw, a->identity, NULL) != NULL)
			continue;
		if (outgoing >= SWARM_CONNECT_MAX || sw->conn.npeers >= SWARM_PEERS_MAX)
			break;
		conn_dial(sw, i);
		outgoing++;
	}
	return alive;
}

/* Log each address's last error (the run is about to fail for want of peers). */
void conn_log_errors(const struct swarm *sw)
{
	for (int i = 0; i < sw->conn.naddrs; i++)
		log_error("  %s:%u: %s", sw->conn.addrs[i].where.host, sw->conn.addrs[i].where.port,
		          sw->conn.addrs[i].last_error[0] ? sw->conn.addrs[i].last_error : "?");
}

/*
 * Refuse an accepted socket at once, before anything is allocated for it:
 * a REFUSAL (PROTOCOL.md §4.2) if it fits the socket buffer, then close.
 * Bytes it already sent are read and dropped first, so that the close is a
 * FIN (the refusal is read) rather than a reset.
 */
static void refuse_socket(evutil_socket_t fd, uint16_t code, const char *text)
{
	uint8_t rec[WIRE_MAGIC_LEN + 4 + WIRE_MAX_TEXT], junk[512];
	size_t n = wire_refuse_encode(code, text, rec, sizeof(rec));

	for (int i = 0; i < 4 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		;
	if (n > 0 && send(fd, rec, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("refusal not sent: %s", strerror(errno));
	evutil_closesocket(fd);
}

/* Make room for, or refuse, a handshake from a; 0 if it may go on. */
static int conn_admit(struct swarm *sw, const struct preauth_addr *a, const char *who)
{
	void *victim;
	struct speer *v;

	/* Handshakes that got past HELLO are the last to be dropped. */
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if (sp->halfopen && peer_hello_done(sp->p))
			preauth_hello_ok(&sw->conn.pre, sp);
	switch (preauth_check(&sw->conn.pre, a, &victim)) {
	case PREAUTH_ADMIT:
		return 0;
	case PREAUTH_REFUSE:
		sw->conn.hs_refused++;
		log_debug("refusing %s: %d handshakes from that address already", who,
		          PREAUTH_PER_ADDR);
		return -1;
	case PREAUTH_EVICT:
		v = victim;
		sw->conn.hs_dropped++;
		v->evicted = 1;
		log_debug("peer %s: dropped to make room for %s (%d handshakes in progress)",
		          peer_name(v->p), who, PREAUTH_MAX);
		peer_close(v->p, "dropped: too many handshakes in progress");
		return 0;
	}
	return -1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct swarm *sw = arg;
	struct preauth_addr a;
	struct speer *sp;
	char who[INET6_ADDRSTRLEN + 8] = "?";

	(void)l;
	if (sw->finished || preauth_addr_of(sa, &a) != 0) {
		evutil_closesocket(fd);
		return;
	}
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, who, sizeof(who));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, who, sizeof(who));
	if (conn_admit(sw, &a, who) != 0) {
		refuse_socket(fd, WIRE_E_BUSY,
		              "too many handshakes from your address; try again later");
		return;
	}
	sp = speer_new(sw, -1);
	sp->p = peer_accept(&sw->conn.ctx, fd, sa, salen, sp);
	if (sp->p == NULL) {
		speer_unlink_free(sw, sp);
		return;
	}
	if (preauth_add(&sw->conn.pre, &a, now_ns(), sp) != 0)
		fatal("the handshake table is full after making room");
}

/*
 * Once a minute at most, say how many handshakes were refused, dropped or
 * too slow since the last summary: one line however hard we are hammered.
 */
void conn_report(struct swarm *sw, uint64_t now)
{
	uint64_t cur[3] = {sw->conn.hs_refused, sw->conn.hs_dropped, sw->conn.ctx.handshakes_late};
	uint64_t *last = sw->conn.hs_reported;

	if (now - sw->conn.hs_report_ns < (uint64_t)SWARM_PREAUTH_REPORT_S * NS_PER_S)
		return;
	sw->conn.hs_report_ns = now;
	if (cur[0] == last[0] && cur[1] == last[1] && cur[2] == last[2])
		return;
	log_warn("handshakes in the last %d s: %llu refused (%d from one address already), "
	         "%llu dropped for room (%d in progress), %llu not done within %d s",
	         SWARM_PREAUTH_REPORT_S, (unsigned long long)(cur[0] - last[0]), PREAUTH_PER_ADDR,
	         (unsigned long long)(cur[1] - last[1]), PREAUTH_MAX,
	         (unsigned long long)(cur[2] - last[2]), peer_handshake_s(&sw->conn.ctx));
	memcpy(last, cur, sizeof(cur));
}

/* The handshake counters of status (swarm_status). */
void conn_status(const struct swarm *sw, struct swarm_status *st)
{
	st->handshakes = sw->conn.pre.n;
	st->handshakes_refused = sw->conn.hs_refused;
	st->handshakes_dropped = sw->conn.hs_dropped;
	st->handshakes_late = sw->conn.ctx.handshakes_late;
	st->frames_late = sw->conn.ctx.frames_late;
}

/* Remember a peer address; forgets dead learned ones to make room. 0, or -1 if full. */
int addr_add(struct swarm *sw, const struct uri_peer *where, int learned)
{
	for (int i = 0; i < sw->conn.naddrs; i++)
		if (sw->conn.addrs[i].where.port == where->port &&
		    strcmp(sw->conn.addrs[i].where.host, where->host) == 0)
			return 0;
	if (sw->conn.naddrs >= SWARM_ADDRS_MAX) {
		/* Compact: drop learned addresses that are dead and not in use. */
		int j = 0;

		for (int i = 0; i < sw->conn.naddrs; i++) {
			struct addr *a = &sw->conn.addrs[i];

			if (a->learned && a->dead && a->sp == NULL)
				continue;
			if (j != i) {
				sw->conn.addrs[j] = *a;
				if (a->sp != NULL)
					a->sp->addr = j;
			}
			j++;
		}
		sw->conn.naddrs = j;
		if (sw->conn.naddrs >= SWARM_ADDRS_MAX)
			return -1;
	}
	sw->conn.addrs = xgrow(sw->conn.addrs, &sw->conn.addrs_cap, (size_t)sw->conn.naddrs,
	                       sizeof(*sw->conn.addrs), 16);
	memset(&sw->conn.addrs[sw->conn.naddrs], 0, sizeof(sw->conn.addrs[0]));
	sw->conn.addrs[sw->conn.naddrs].where = *where;
	sw->conn.addrs[sw->conn.naddrs].learned = learned;
	sw->conn.naddrs++;
	return 0;
}

static void on_tracker_peers(void *arg, const struct treply_peer *peers, int n)
{
	struct swarm *sw = arg;
	int added = 0;

	if (sw->o.role != SWARM_FETCH || sw->finished)
		return; /* the source only serves: destinations come to it */
	for (int i = 0; i < n; i++) {
		struct uri_peer w;
		int before = sw->conn.naddrs;

		memset(&w, 0, sizeof(w));
		if (inet_ntop(peers[i].family == 4 ? AF_INET : AF_INET6, peers[i].addr, w.host,
		              sizeof(w.host)) == NULL)
			continue;
		w.port = peers[i].port;
		if (addr_add(sw, &w, 1) != 0)
			break;
		added += sw->conn.naddrs > before;
	}
	if (added > 0)
		log_info("trackers: %d new peer address%s (%d known)", added,
		         added == 1 ? "" : "es", sw->conn.naddrs);
}

static void on_tracker_counters(void *arg, uint64_t *up, uint64_t *down, uint64_t *left)
{
	struct swarm *sw = arg;
	uint64_t done, total;

	*up = sw->st.bytes_served;
	*down = sw->st.bytes_fetched;
	swarm_progress(sw, &done, &total);
	if (sw->o.role == SWARM_SEED || sw->complete)
		*left = 0;
	else
		*left = total ? total - done : 1; /* unknown yet, but not complete */
}

/*
 * A receipt a tracker relayed was refused: say so once per receipt (a tracker
 * sends the same ones at every poll), at most SWARM_RECEIPTS_REFUSED_MAX of them.
 */
static void receipt_refused_relayed(struct swarm *sw, const uint8_t *blob, const char *signer,
                                    const char *why)
{
	uint8_t h[VCRYPTO_HASH_LEN];

	vcrypto_hash(h, blob, MANIFEST_RECEIPT_LEN);
	for (unsigned i = 0; i < sw->receipts.nrefused; i++)
		if (memcmp(sw->receipts.refused[i], h, sizeof(h)) == 0)
			return;
	if (sw->receipts.nrefused == SWARM_RECEIPTS_REFUSED_MAX) {
		log_debug("a tracker relayed a receipt we do not count: %s", why);
		return;
	}
	if (sw->receipts.refused == NULL)
		sw->receipts.refused =
		    xcalloc(SWARM_RECEIPTS_REFUSED_MAX, sizeof(*sw->receipts.refused));
	memcpy(sw->receipts.refused[sw->receipts.nrefused++], h, sizeof(h));
	log_warn("receipt relayed by a tracker refused%s%s%s: %s", *signer ? " (signer " : "",
	         signer, *signer ? ")" : "", why);
}

static void on_tracker_receipts(void *arg, const uint8_t *blob, size_t len)
{
	struct swarm *sw = arg;

	if (len % MANIFEST_RECEIPT_LEN != 0) {
		log_warn("a tracker sent receipts of a bad length (%zu bytes)", len);
		return;
	}
	for (size_t off = 0; off < len && !sw->finished; off += MANIFEST_RECEIPT_LEN) {
		char signer[2 * VCRYPTO_PK_LEN + 1];
		const char *why =
		    receipt_take(sw, blob + off, MANIFEST_RECEIPT_LEN, "via a tracker", signer);

		if (why != NULL)
			receipt_refused_relayed(sw, blob + off, signer, why);
	}
	receipts_check_enough(sw);
}

static void on_tracker_receipt_posted(void *arg, int ok)
{
	struct swarm *sw = arg;

	if (!ok || sw->finished)
		return;
	sw->st.receipt_acked = 1;
	if (sw->complete && !sw->exp.keep_running)
		finish_run(sw, 0);
}

static const struct tclient_ops on_tracker_ops = {
    .on_peers = on_tracker_peers,
    .counters = on_tracker_counters,
    .on_receipts = on_tracker_receipts,
    .on_receipt_posted = on_tracker_receipt_posted,
};

static void on_error(struct peer *p, const struct wire_msg *m)
{
	struct speer *sp = peer_owner(p);
	struct swarm *sw = sp->sw;

	if (is_seed(sw) && sw->o.image_fixed && !sw->finished &&
	    m->u.error.code == WIRE_E_BAD_DATA && m->u.error.has_chunk)
		serve_recheck(sw, peer_name(p), m->u.error.chunk, m->u.error.gen);
}

/* The peers' shared context (sw->o is set): callbacks, keys, DNS, the upload limit. */
void conn_init(struct swarm *sw)
{
	const struct swarm_opts *o = &sw->o;

	sw->conn.ops.on_ready = on_ready;
	sw->conn.ops.on_msg = on_msg;
	sw->conn.ops.on_drain = on_drain;
	sw->conn.ops.on_close = on_close;
	sw->conn.ops.on_error = on_error;
	sw->conn.ctx.base = o->base;
	sw->conn.ctx.ops = &sw->conn.ops;
	memcpy(sw->conn.ctx.volume_id, o->volume_id, sizeof(sw->conn.ctx.volume_id));
	memcpy(sw->conn.ctx.source_key, o->source_key, sizeof(sw->conn.ctx.source_key));
	memcpy(sw->conn.ctx.join_secret, o->join_secret, sizeof(sw->conn.ctx.join_secret));
	sw->conn.ctx.identity = o->identity;
	sw->conn.ctx.is_source = o->role == SWARM_SEED;
	sw->conn.ctx.timeout_s = o->timeout_s > 0 ? o->timeout_s : PEER_TIMEOUT_DEFAULT;
	sw->conn.ctx.dns = evdns_base_new(o->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (o->upload_rate > 0) {
		/* Rates are per tick; 50 ms ticks keep the flow smooth. */
		struct timeval t = {0, 50000};
		size_t per_tick = (size_t)(o->upload_rate / 20 ? o->upload_rate / 20 : 1);
		struct ev_token_bucket_cfg *cfg = ev_token_bucket_cfg_new(
		    EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, per_tick, per_tick, &t);

		sw->conn.ctx.upload_limit = bufferevent_rate_limit_group_new(o->base, cfg);
		/* The group keeps its own copy of the configuration. */
		ev_token_bucket_cfg_free(cfg);
	}
}

int swarm_listen(struct swarm *sw, const char *host, uint16_t port, uint16_t *bound)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sslen;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		sslen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		sslen = sizeof(*s6);
	} else {
		log_error("cannot listen on %s: not a numeric address", host);
		return -1;
	}
	sw->conn.listener = evconnlistener_new_bind(sw->o.base, on_accept, sw,
	                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	                                            (struct sockaddr *)&ss, (int)sslen);
	if (sw->conn.listener == NULL) {
		log_error("cannot listen on %s port %u: %s", host, port, strerror(errno));
		return -1;
	}
	sslen = sizeof(ss);
	getsockname(evconnlistener_get_fd(sw->conn.listener), (struct sockaddr *)&ss, &sslen);
	*bound = ntohs(ss.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port);
	sw->conn.listen_port = *bound;
	return 0;
}

void swarm_start(struct swarm *sw)
{
	if (sw->o.ntrackers > 0) {
		sw->conn.trackers = xcalloc((size_t)sw->o.ntrackers, sizeof(*sw->conn.trackers));
		for (int i = 0; i < sw->o.ntrackers; i++) {
			struct tclient *t =
			    tclient_new(sw->o.base, sw->conn.ctx.dns, sw->o.trackers[i],
			                sw->o.volume_id, sw->o.join_secret, sw->conn.peer_id,
			                sw->conn.listen_port, &on_tracker_ops, sw);

			if (t == NULL)
				continue; /* logged; the other trackers and peers may do */
			sw->conn.trackers[sw->conn.ntrackers++] = t;
			tclient_start(t);
			if (sw->o.role == SWARM_SEED && sw->o.exit_after_receipts > 0)
				tclient_poll_receipts(t, 1);
		}
	}
	if (sw->o.role != SWARM_FETCH)
		return;
	for (int i = 0; i < sw->conn.naddrs && i < SWARM_CONNECT_MAX; i++)
		conn_dial(sw, i);
	if (sw->conn.naddrs == 0 && sw->conn.ntrackers == 0) {
		log_error("the URI names no peer and no usable tracker to fetch from");
		finish_run(sw, -1);
	}
}
